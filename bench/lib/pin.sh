# Sourced by bench/ab.sh and bench/pair-ab.sh. As `make bench` does (bench/lib/proc.mjs): pinned
# processes at nice -10 when root, so other work on a shared machine gets a smaller share of the
# bench cores. BENCH_NICE=0 turns it off.
NICE=0
[ "$(id -u)" = 0 ] && NICE=${BENCH_NICE:--10}
pin() { # core command... (pinned, and niced like the bench)
  local core=$1; shift
  # exec: run in the background (&) or in $(...), the PID is the process itself
  if [ "$NICE" != 0 ]; then exec nice -n "$NICE" taskset -c "$core" "$@"; else exec taskset -c "$core" "$@"; fi
}
