#!/bin/bash
# Interleaved A/B of two outbound pairs (bench/ab.sh's method for the pair scenario): the app's
# plain keep-alive calls through pair X and pair Y alternately, RUNS times each, SECS seconds per
# measurement, same load. A pair is A (outbound, plain in, mTLS out) in front of B (inbound).
# Needs bench/out from `node bench/run.mjs --setup-only` and a build (dist/).
#
#   bench/pair-ab.sh X Y   X, Y: sidecar | sidecar@DIR (another build: DIR/dist/main.js) | nginx |
#                          half | half@DIR (sidecar A in front of nginx B: A's own cost, with
#                          B_CPU=1 A alone on its core and at full CPU when the load core keeps up)
#   RUNS [3]  SECS [3]  LG ["--mode ka --conns 64"] (loadgen arguments; --plain is added)
#   A_CPU [0]  B_CPU [A_CPU]  LOAD_CPU [1]   cores of A, B and of the load generator + upstream
#                         (by default A and B share one core, as `make bench` does on 2 cores)
#   X_FLAGS, Y_FLAGS: extra node flags for both sidecars of that pair (e.g. --cpu-prof)
#
# Prints per measurement req/s, A and B CPU %, µs of CPU per request of A, B and A+B; per pair of
# measurements X/Y req/s and per CPU-s of A+B; and the medians.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=$HERE/out
N=$HERE/../node_modules/.bin/node
PKI=$OUT/pki
A_CPU=${A_CPU:-0}; B_CPU=${B_CPU:-$A_CPU}; LOAD_CPU=${LOAD_CPU:-1}
. "$HERE/lib/pin.sh"
[ -f "$OUT/sidecar-pair-a.yaml" ] || { echo "pair-ab.sh: bench/out is missing: run \`node bench/run.mjs --setup-only\` first" >&2; exit 2; }
X=${1:?usage: pair-ab.sh X Y}
Y=${2:?usage: pair-ab.sh X Y}
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true' EXIT
pin "$LOAD_CPU" nginx -c "$OUT/nginx-upstream.conf" -p "$OUT/nginx-tmp" -g 'daemon off;' >/dev/null 2>&1 &
PIDS+=($!)

# start_pair KIND OFFSET FLAGS -> sets APORT, AW (A's pids), BW (B's pids). Ports: the bench's
# pair ports + OFFSET, so both pairs run side by side.
start_pair() {
  local kind=$1 off=$2 flags=$3 main=$HERE/../dist/main.js ap bp
  case "$kind" in
    sidecar|sidecar@*)
      [ "$kind" != sidecar ] && main=${kind#sidecar@}/dist/main.js
      for s in a b; do # every port + off, and A's target (B's port); the upstream's stays
        "$N" -e 'const [f, off, s] = process.argv.slice(1); process.stdout.write(require("fs").readFileSync(f, "utf8")
          .replace(/port: (\d+)/g, (m, p) => `port: ${+p + +off}`).replace(/"127\.0\.0\.1:28452"/, `"127.0.0.1:${28452 + +off}"`)
          .replace(`audit-pair-${s}.log`, `audit-pab-${off}-${s}.log`))' "$OUT/sidecar-pair-$s.yaml" "$off" "$s" >"$OUT/pab-$off-$s.yaml"
      done
      # shellcheck disable=SC2086
      bp=$(pin "$B_CPU" "$N" $flags "$main" run --config "$OUT/pab-$off-b.yaml" >"$OUT/pab-$off-b.log" 2>&1 & echo $!)
      sleep 1
      # shellcheck disable=SC2086
      ap=$(pin "$A_CPU" "$N" $flags "$main" run --config "$OUT/pab-$off-a.yaml" >"$OUT/pab-$off-a.log" 2>&1 & echo $!)
      APORT=$((28451 + off)) ;;
    half@*|half) # sidecar A (this build, or DIR's) in front of nginx B: A's cost with a B that costs little
      [ "$kind" != half ] && main=${kind#half@}/dist/main.js
      "$N" -e 'const [f, off] = process.argv.slice(1); process.stdout.write(require("fs").readFileSync(f, "utf8")
        .replace(/port: (\d+)/g, (m, p) => `port: ${+p + +off}`).replace(/"127\.0\.0\.1:28452"/, `"127.0.0.1:${28454 + +off}"`)
        .replace("audit-pair-a.log", `audit-pab-${off}-a.log`))' "$OUT/sidecar-pair-a.yaml" "$off" >"$OUT/pab-$off-a.yaml"
      sed -e "s#127\.0\.0\.1:28454#127.0.0.1:$((28454 + off))#; s#nginx-pair-b\.pid#nginx-pab-$off-b.pid#" "$OUT/nginx-pair-b.conf" >"$OUT/pab-$off-b.conf"
      bp=$(pin "$B_CPU" nginx -c "$OUT/pab-$off-b.conf" -p "$OUT/nginx-tmp" -g 'daemon off;' >/dev/null 2>&1 & echo $!)
      sleep 1
      # shellcheck disable=SC2086
      ap=$(pin "$A_CPU" "$N" $flags "$main" run --config "$OUT/pab-$off-a.yaml" >"$OUT/pab-$off-a.log" 2>&1 & echo $!)
      APORT=$((28451 + off)) ;;
    nginx)
      sed -e "s#127\.0\.0\.1:28454#127.0.0.1:$((28454 + off))#; s#nginx-pair-b\.pid#nginx-pab-$off-b.pid#" "$OUT/nginx-pair-b.conf" >"$OUT/pab-$off-b.conf"
      sed -e "s#127\.0\.0\.1:28453#127.0.0.1:$((28453 + off))#; s#127\.0\.0\.1:28454#127.0.0.1:$((28454 + off))#; s#nginx-pair-a\.pid#nginx-pab-$off-a.pid#" "$OUT/nginx-pair-a.conf" >"$OUT/pab-$off-a.conf"
      bp=$(pin "$B_CPU" nginx -c "$OUT/pab-$off-b.conf" -p "$OUT/nginx-tmp" -g 'daemon off;' >/dev/null 2>&1 & echo $!)
      ap=$(pin "$A_CPU" nginx -c "$OUT/pab-$off-a.conf" -p "$OUT/nginx-tmp" -g 'daemon off;' >/dev/null 2>&1 & echo $!)
      APORT=$((28453 + off)) ;;
    *) echo "pair-ab.sh: unknown pair $kind" >&2; exit 2 ;;
  esac
  PIDS+=("$ap" "$bp")
  AP=$ap; BP=$bp
}
start_pair "$X" 0 "${X_FLAGS:-}"; XA=$AP; XB=$BP; XPORT=$APORT
start_pair "$Y" 200 "${Y_FLAGS:-}"; YA=$AP; YB=$BP; YPORT=$APORT
sleep 2
for pid in $XA $XB $YA $YB; do kill -0 "$pid" 2>/dev/null || { echo "pair-ab.sh: a process exited at start (port in use? see bench/out/pab-*.log)" >&2; exit 1; }; done
# With autogroup scheduling a nice value weighs only within a session: give this script's session
# (every process here) the same weight against other sessions, as bench/lib/proc.mjs does.
[ "$NICE" != 0 ] && [ -w /proc/$$/autogroup ] && { echo "$NICE" >/proc/$$/autogroup || true; }
watch() { local w; w=$(pgrep -P "$1" | paste -sd, - || true); echo "$1${w:+,$w}"; } # nginx: master and worker
measure() { # port a-pid b-pid warmup secs
  # shellcheck disable=SC2086
  pin "$LOAD_CPU" "$N" "$HERE/loadgen.mjs" --port "$1" --plain ${LG:---mode ka --conns 64} --seconds "$5" --warmup "$4" \
    --watch "a=$(watch "$2")" --watch "b=$(watch "$3")" |
    "$N" -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const d=JSON.parse(s);const u=(c)=>Math.round(c*1e4/d.rps);console.log(d.rps,Math.round(d.cpu.a),Math.round(d.cpu.b),u(d.cpu.a),u(d.cpu.b),u(d.cpu.a+d.cpu.b),d.errors,d.p50ms)})'
}
# Both pairs start cold: one unmeasured pass each.
measure "$XPORT" "$XA" "$XB" 0 3 >/dev/null
measure "$YPORT" "$YA" "$YB" 0 3 >/dev/null
echo "# run pair req/s A% B% Aus/req Bus/req A+Bus/req errors p50ms"
# The order alternates (X first in odd runs, Y first in even ones): the second measurement of a
# run tends to do a little better, and alternating cancels that out of the medians.
for i in $(seq "${RUNS:-3}"); do
  if [ $((i % 2)) = 1 ]; then order="x y"; else order="y x"; fi
  for p in $order; do
    if [ "$p" = x ]; then echo "$i x $(measure "$XPORT" "$XA" "$XB" 1 "${SECS:-3}")"; else echo "$i y $(measure "$YPORT" "$YA" "$YB" 1 "${SECS:-3}")"; fi
  done
done | awk '{print; r[$2]=$3; u[$2]=$8; n++; if (n % 2 == 0) printf("   X/Y %.2f  per CPU-s %.2f\n", r["x"]/r["y"], (u["x"]>0)?u["y"]/u["x"]:0)}' | tee "$OUT/pair-ab-last.txt"
med() { sort -n | awk '{v[NR]=$1} END {if (NR) print v[int((NR+1)/2)]}'; }
col() { awk -v p="$1" -v c="$2" '$2==p {print $c}' "$OUT/pair-ab-last.txt" | med; }
echo "median X/Y $(awk '/X\/Y/ {print $2}' "$OUT/pair-ab-last.txt" | med)  per CPU-s $(awk '/X\/Y/ {print $5}' "$OUT/pair-ab-last.txt" | med)  ($(grep -c 'X/Y' "$OUT/pair-ab-last.txt") pairs)"
echo "median µs/req  X: A $(col x 6) B $(col x 7) A+B $(col x 8)   Y: A $(col y 6) B $(col y 7) A+B $(col y 8)"
