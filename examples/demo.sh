#!/usr/bin/env bash
# `make run`: two services, each a small app behind its own sidecar, on this machine:
#   orders:  app 127.0.0.1:8080, sidecar https://localhost:8443 (examples/sidecar.yaml, admin :9901),
#            whose outbound listener 127.0.0.1:15001 carries the app's calls to billing over mTLS;
#   billing: app 127.0.0.1:8081, sidecar https://localhost:9443 (examples/billing.yaml, admin :9902).
# Ctrl-C stops everything (the sidecars drain first).
set -euo pipefail
cd "$(dirname "$0")/.."
NODE=node_modules/.bin/node

PIDS=()
SIDECAR_B=
INTERRUPTED=
trap 'INTERRUPTED=1' INT
stop() {
  kill "${PIDS[@]}" 2>/dev/null || true
  if [ -n "$SIDECAR_B" ]; then
    # Ctrl-C reached billing's sidecar too (same process group), and it is draining: a second
    # signal would cut it short.
    [ -n "$INTERRUPTED" ] || kill -TERM "$SIDECAR_B" 2>/dev/null || true
    wait "$SIDECAR_B" 2>/dev/null || true
  fi
}
trap stop EXIT

$NODE examples/demo-app.mjs orders 8080 &
PIDS+=($!)
$NODE examples/demo-app.mjs billing 8081 &
PIDS+=($!)
$NODE dist/main.js run --config examples/billing.yaml &
SIDECAR_B=$!

cat <<MSG

  mtls-sidecar demo: two services, each an app behind its own sidecar
    orders:  app on 127.0.0.1:8080, sidecar on https://localhost:8443, outbound to billing on 127.0.0.1:15001
    billing: app on 127.0.0.1:8081, sidecar on https://localhost:9443 (admits orders by SPIFFE ID)

  Try it (as the "orders" service):
    curl --cacert certs/ca.crt --cert certs/orders.crt --key certs/orders.key https://localhost:8443/orders/42

  App to app, as the orders app calls billing: plain HTTP to its sidecar, which presents orders.crt
  and checks the server is spiffe://cluster.local/ns/default/sa/billing before sending a byte;
  billing's app shows what it received (x-client-identity: orders, the XFCC header):
    curl http://127.0.0.1:15001/invoices/1

  The whole chain (you -> sidecar A -> orders app -> sidecar A -> sidecar B -> billing app):
    curl --cacert certs/ca.crt --cert certs/orders.crt --key certs/orders.key https://localhost:8443/orders/42/invoice

  Refused (billing may read but not write):
    curl --cacert certs/ca.crt --cert certs/billing.crt --key certs/billing.key -X POST https://localhost:8443/orders

  Refused for its certificate (none here): a 400 {"error":"certificate_refused"} over HTTP/1.1
  (over HTTP/2 a GOAWAY, which curl reports as "Error in the HTTP2 framing layer"):
    curl --http1.1 --cacert certs/ca.crt https://localhost:8443/orders/42

  Audit lines of both sidecars appear below (outbound ones: "direction":"outbound",
  "destination":"billing"). Ctrl-C drains and stops both.

MSG
$NODE dist/main.js run --config examples/sidecar.yaml
