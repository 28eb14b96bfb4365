#!/bin/bash
# Interleaved A/B of two targets on the bench core, for "what did this change buy" questions on a
# noisy machine: A and B alternate, RUNS times each, SECS seconds per measurement, same load.
# Needs the files a `make bench` run leaves in bench/out (PKI, configs, upstream nginx config):
# `node bench/run.mjs --setup-only` writes them without running the bench. And a build (dist/).
#
#   bench/ab.sh A B      A, B: sidecar | sidecar@DIR | noaudit | nginx | path/to/proxy.mjs (argv: PORT UPSTREAM CERT KEY CA)
#                        sidecar@DIR: another build (DIR/dist/main.js, e.g. a git worktree of an
#                        older commit) with the same config on its own ports; `sidecar sidecar`
#                        runs this build twice (B on its own ports), told apart by A_ENV/B_ENV or
#                        A_FLAGS/B_FLAGS, e.g. B_ENV=MTLS_SIDECAR_HTTP2=node
#   RUNS [3]  SECS [3]  LG ["--mode ka --conns 64"] (loadgen arguments)
#   A_FLAGS, B_FLAGS: extra node flags for a sidecar or script target (e.g. A_FLAGS=--max-semi-space-size=64)
#   A_ENV, B_ENV: environment for a sidecar or script target (e.g. B_ENV=GLIBC_TUNABLES=glibc.malloc.mmap_threshold=65536)
#   BENCH_UPSTREAM [nginx] or node: the app behind both (node: bench/upstream.mjs, when nginx is not installed)
#
# Prints req/s, target CPU %, errors and p99 ms per measurement, A/B per pair (req/s, req/s per
# CPU-second of the target, and p99), and the medians.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=$HERE/out
N=$HERE/../node_modules/.bin/node
PKI=$OUT/pki
. "$HERE/lib/pin.sh"
[ -f "$OUT/sidecar.yaml" ] || { echo "ab.sh: bench/out is missing: run \`node bench/run.mjs --setup-only\` (or make bench) once first" >&2; exit 2; }
A=${1:?usage: ab.sh A B}
B=${2:?usage: ab.sh A B}
# The same build twice: B as sidecar@ this checkout, so it gets its own ports and audit file.
[ "$A" = sidecar ] && [ "$B" = sidecar ] && B="sidecar@$HERE/.."
# In the foreground (daemon off), as every process here: each is stopped by its PID at the end.
if [ "${BENCH_UPSTREAM:-nginx}" = node ]; then
  UP=$(pin 1 "$N" "$HERE/upstream.mjs" 28480 >/dev/null 2>&1 & echo $!)
else
  UP=$(pin 1 nginx -c "$OUT/nginx-upstream.conf" -p "$OUT/nginx-tmp" -g 'daemon off;' >/dev/null 2>&1 & echo $!)
fi
trap 'kill ${AP:-} ${BP:-} $UP 2>/dev/null || true' EXIT
start() { # target port flags env -> pid
  # shellcheck disable=SC2086
  case "$1" in
    sidecar) pin 0 env $4 "$N" $3 "$HERE/../dist/main.js" run --config "$OUT/sidecar.yaml" >/dev/null 2>&1 & ;;
    nginx) # the bench's nginx config, pointed at bench/out/pki and its own pid file and port
      sed -e "s#/pki-mem/#/pki/#g; s#nginx-nginx\.pid#nginx-ab-$2.pid#; s#127\.0\.0\.1:28445#127.0.0.1:$2#" \
        "$OUT/nginx-nginx.conf" >"$OUT/nginx-ab-$2.conf"
      pin 0 nginx -c "$OUT/nginx-ab-$2.conf" -p "$OUT/nginx-tmp" -g 'daemon off;' >/dev/null 2>&1 & ;;
    sidecar@*) # another build, same config, its own ports and audit file
      sed -e "s#port: 28443#port: $2#; s#port: 28491#port: $(($2 + 100))#; s#/audit.log#/audit-ab-$2.log#" \
        "$OUT/sidecar.yaml" >"$OUT/sidecar-ab-$2.yaml"
      pin 0 env $4 "$N" $3 "${1#sidecar@}/dist/main.js" run --config "$OUT/sidecar-ab-$2.yaml" >/dev/null 2>&1 & ;;
    noaudit) pin 0 "$N" --import "$HERE/observability-off.mjs" "$HERE/../dist/main.js" run --config "$OUT/sidecar-noaudit.yaml" >/dev/null 2>&1 & ;;
    *) pin 0 env $4 "$N" $3 "$1" "$2" http://127.0.0.1:28480 "$PKI/server.crt" "$PKI/server.key" "$PKI/ca.crt" >/dev/null 2>&1 & ;;
  esac
  echo $!
}
port() { case "$1" in sidecar) echo 28443 ;; noaudit) echo 28444 ;; *) echo "$2" ;; esac; }
AP=$(start "$A" 28447 "${A_FLAGS:-}" "${A_ENV:-}"); BP=$(start "$B" 28448 "${B_FLAGS:-}" "${B_ENV:-}")
APORT=$(port "$A" 28447); BPORT=$(port "$B" 28448)
sleep 1.5
for pid in $AP $BP; do kill -0 "$pid" 2>/dev/null || { echo "ab.sh: a target exited at start (port in use? another bench running?)" >&2; exit 1; }; done
# shellcheck disable=SC2086
for i in $(seq "${RUNS:-3}"); do
  for T in a b; do
    if [ $T = a ]; then P=$APORT; PID=$AP; else P=$BPORT; PID=$BP; fi
    W=$(pgrep -P "$PID" | paste -sd, - || true); W=$PID${W:+,$W} # nginx: master and worker
    R=$(pin 1 "$N" "$HERE/loadgen.mjs" --port "$P" --ca "$PKI/ca.crt" --cert "$PKI/client.crt" --key "$PKI/client.key" ${LG:---mode ka --conns 64} \
      --seconds "${SECS:-3}" --warmup 1 --watch target=$W | "$N" -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const d=JSON.parse(s);console.log(d.rps,Math.round(d.cpu.target),d.errors,d.p99ms)})')
    echo "$i $T $R"
  done
done | awk '{print; if ($2=="a") {a=$3; ac=$4; ap=$6} else {c=(ac>0&&$4>0)?(a/ac)/($3/$4):0; printf("   A/B %.2f  per CPU-s %.2f  p99 %.2f\n", a/$3, c, ($6>0)?ap/$6:0)}}' | tee "$OUT/ab-last.txt"
# Medians of the pairs (mawk has no sort of its own).
med() { sort -n | awk '{v[NR]=$1} END {if (NR) print v[int((NR+1)/2)]}'; }
echo "median A/B $(awk '/A\/B/ {print $2}' "$OUT/ab-last.txt" | med)  per CPU-s $(awk '/A\/B/ {print $5}' "$OUT/ab-last.txt" | med)  p99 $(awk '/A\/B/ {print $7}' "$OUT/ab-last.txt" | med)  ($(grep -c 'A/B' "$OUT/ab-last.txt") pairs)"
