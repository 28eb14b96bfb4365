#!/bin/bash
# Interleaved A/B of two targets on the bench core, for "what did this change buy" questions on a
# noisy machine: A and B alternate, RUNS times each, SECS seconds per measurement, same load.
# Needs the files a `make bench` run leaves in bench/out (PKI, configs, upstream nginx config).
#
#   bench/ab.sh A B      A, B: sidecar | sidecar@DIR | noaudit | nginx | path/to/proxy.mjs (argv: PORT UPSTREAM CERT KEY CA)
#                        sidecar@DIR: another build (DIR/dist/main.js, e.g. a git worktree of an
#                        older commit) with the same config on its own ports
#   RUNS [3]  SECS [3]  LG ["--mode ka --conns 64"] (loadgen arguments)
#
# Prints req/s, target CPU % and errors per measurement, A/B per pair (req/s, and req/s per
# CPU-second of the target), and the medians.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=$HERE/out
N=$HERE/../node_modules/.bin/node
PKI=$OUT/pki
[ -f "$OUT/sidecar.yaml" ] || { echo "ab.sh: run make bench once first (bench/out is missing)" >&2; exit 2; }
A=${1:?usage: ab.sh A B}
B=${2:?usage: ab.sh A B}
nginx -c "$OUT/nginx-upstream.conf" -p "$OUT/nginx-tmp" >/dev/null 2>&1 &
start() { # target port -> pid
  case "$1" in
    sidecar) taskset -c 0 "$N" "$HERE/../dist/main.js" run --config "$OUT/sidecar.yaml" >/dev/null 2>&1 & ;;
    nginx) # the bench's nginx config, pointed at bench/out/pki and its own pid file and port
      sed -e "s#/pki-mem/#/pki/#g; s#nginx-nginx\.pid#nginx-ab-$2.pid#; s#127\.0\.0\.1:28445#127.0.0.1:$2#" \
        "$OUT/nginx-nginx.conf" >"$OUT/nginx-ab-$2.conf"
      taskset -c 0 nginx -c "$OUT/nginx-ab-$2.conf" -p "$OUT/nginx-tmp" -g 'daemon off;' >/dev/null 2>&1 & ;;
    sidecar@*) # another build, same config, its own ports and audit file
      sed -e "s#port: 28443#port: $2#; s#port: 28491#port: $(($2 + 100))#; s#/audit.log#/audit-ab-$2.log#" \
        "$OUT/sidecar.yaml" >"$OUT/sidecar-ab-$2.yaml"
      taskset -c 0 "$N" "${1#sidecar@}/dist/main.js" run --config "$OUT/sidecar-ab-$2.yaml" >/dev/null 2>&1 & ;;
    noaudit) taskset -c 0 "$N" --import "$HERE/observability-off.mjs" "$HERE/../dist/main.js" run --config "$OUT/sidecar-noaudit.yaml" >/dev/null 2>&1 & ;;
    *) taskset -c 0 "$N" "$1" "$2" http://127.0.0.1:28480 "$PKI/server.crt" "$PKI/server.key" "$PKI/ca.crt" >/dev/null 2>&1 & ;;
  esac
  echo $!
}
port() { case "$1" in sidecar) echo 28443 ;; noaudit) echo 28444 ;; *) echo "$2" ;; esac; }
AP=$(start "$A" 28447); BP=$(start "$B" 28448)
APORT=$(port "$A" 28447); BPORT=$(port "$B" 28448)
trap 'kill $AP $BP 2>/dev/null; pkill -f "$OUT/nginx-upstream.conf" || true; pkill -f "$OUT/nginx-ab-" || true' EXIT
sleep 1.5
for pid in $AP $BP; do kill -0 "$pid" 2>/dev/null || { echo "ab.sh: a target exited at start (port in use? another bench running?)" >&2; exit 1; }; done
# shellcheck disable=SC2086
for i in $(seq "${RUNS:-3}"); do
  for T in a b; do
    if [ $T = a ]; then P=$APORT; PID=$AP; else P=$BPORT; PID=$BP; fi
    W=$(pgrep -P "$PID" | paste -sd, - || true); W=$PID${W:+,$W} # nginx: master and worker
    R=$(taskset -c 1 "$N" "$HERE/loadgen.mjs" --port "$P" --ca "$PKI/ca.crt" --cert "$PKI/client.crt" --key "$PKI/client.key" ${LG:---mode ka --conns 64} \
      --seconds "${SECS:-3}" --warmup 1 --watch target=$W | "$N" -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const d=JSON.parse(s);console.log(d.rps,Math.round(d.cpu.target),d.errors)})')
    echo "$i $T $R"
  done
done | awk '{print; if ($2=="a") {a=$3; ac=$4} else {c=(ac>0&&$4>0)?(a/ac)/($3/$4):0; printf("   A/B %.2f  per CPU-s %.2f\n", a/$3, c)}}' | tee "$OUT/ab-last.txt"
# Medians of the pairs (mawk has no sort of its own).
med() { sort -n | awk '{v[NR]=$1} END {if (NR) print v[int((NR+1)/2)]}'; }
echo "median A/B $(awk '/A\/B/ {print $2}' "$OUT/ab-last.txt" | med)  per CPU-s $(awk '/A\/B/ {print $5}' "$OUT/ab-last.txt" | med)  ($(grep -c 'A/B' "$OUT/ab-last.txt") pairs)"
