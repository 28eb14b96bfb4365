#!/usr/bin/env bash
# `make run`: start the demo app, then the sidecar in front of it; Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
NODE=node_modules/.bin/node

$NODE examples/demo-app.mjs &
APP=$!
trap 'kill $APP 2>/dev/null || true' EXIT

cat <<MSG

  mtls-sidecar demo: app on 127.0.0.1:8080, sidecar on https://localhost:8443

  Try it (as the "orders" service):
    curl --cacert certs/ca.crt --cert certs/orders.crt --key certs/orders.key https://localhost:8443/orders/42

  Refused (billing may read but not write):
    curl --cacert certs/ca.crt --cert certs/billing.crt --key certs/billing.key -X POST https://localhost:8443/orders

  Refused for its certificate (none here): a 400 {"error":"certificate_refused"} over HTTP/1.1
  (over HTTP/2 a GOAWAY, which curl reports as "Error in the HTTP2 framing layer"):
    curl --http1.1 --cacert certs/ca.crt https://localhost:8443/orders/42

  Audit lines appear below; Ctrl-C drains and stops.

MSG
$NODE dist/main.js run --config examples/sidecar.yaml
