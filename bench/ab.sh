#!/bin/bash
# Interleaved A/B of two targets on the bench core, for "what did this change buy" questions on a
# noisy machine: A and B alternate, RUNS times each, SECS seconds per measurement, same load.
# Needs the files a `make bench` run leaves in bench/out (PKI, configs, upstream nginx config).
#
#   bench/ab.sh A B      A, B: sidecar | noaudit | path/to/proxy.mjs (argv: PORT UPSTREAM CERT KEY CA)
#   RUNS [3]  SECS [3]  LG ["--mode ka --conns 64"] (loadgen arguments)
#
# Prints req/s, target CPU % and errors per measurement, and A/B per pair.
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
    noaudit) taskset -c 0 "$N" --import "$HERE/observability-off.mjs" "$HERE/../dist/main.js" run --config "$OUT/sidecar-noaudit.yaml" >/dev/null 2>&1 & ;;
    *) taskset -c 0 "$N" "$1" "$2" http://127.0.0.1:28480 "$PKI/server.crt" "$PKI/server.key" "$PKI/ca.crt" >/dev/null 2>&1 & ;;
  esac
  echo $!
}
port() { case "$1" in sidecar) echo 28443 ;; noaudit) echo 28444 ;; *) echo "$2" ;; esac; }
AP=$(start "$A" 28447); BP=$(start "$B" 28448)
APORT=$(port "$A" 28447); BPORT=$(port "$B" 28448)
trap 'kill $AP $BP 2>/dev/null; pkill -f "$OUT/nginx-upstream.conf" || true' EXIT
sleep 1.5
for pid in $AP $BP; do kill -0 "$pid" 2>/dev/null || { echo "ab.sh: a target exited at start (port in use? another bench running?)" >&2; exit 1; }; done
# shellcheck disable=SC2086
for i in $(seq "${RUNS:-3}"); do
  for T in a b; do
    if [ $T = a ]; then P=$APORT; PID=$AP; else P=$BPORT; PID=$BP; fi
    R=$(taskset -c 1 "$N" "$HERE/loadgen.mjs" --port "$P" --ca "$PKI/ca.crt" --cert "$PKI/client.crt" --key "$PKI/client.key" ${LG:---mode ka --conns 64} \
      --seconds "${SECS:-3}" --warmup 1 --watch target=$PID | "$N" -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const d=JSON.parse(s);console.log(d.rps,Math.round(d.cpu.target),d.errors)})')
    echo "$i $T $R"
  done
done | awk '{print; if ($2=="a") a=$3; else printf("   A/B %.2f\n", a/$3)}'
