#!/usr/bin/env bash
# System packages the tests use: a real Redis (rate limits), promtool (metrics and alert
# rules) and testssl.sh (the adversarial suite's scan of the listener). Installed only when missing, and only where we may (root with apt-get); elsewhere the
# tests that need them say they were skipped.
set -euo pipefail
need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || need+=(redis-tools)   # builds the test Redis Cluster
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v testssl >/dev/null 2>&1 || command -v testssl.sh >/dev/null 2>&1 || need+=(testssl.sh)
[ ${#need[@]} -eq 0 ] && exit 0
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "installing ${need[*]} (apt-get)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  # Debian starts these services on install; tests start their own on ephemeral loopback ports.
  (service redis-server stop || true) >/dev/null 2>&1
  (service prometheus stop || true) >/dev/null 2>&1
else
  echo "note: ${need[*]} not installed and not root: the tests that need them will be skipped" >&2
fi
