// The demo apps behind the sidecars: plain HTTP on loopback, echoing who called them.
//   node examples/demo-app.mjs [NAME] [PORT]     (defaults: orders 8080; PORT also from $PORT)
// "orders" also calls "billing" the way an app in a pod would: plain HTTP to its own sidecar's
// outbound listener (BILLING_URL, default http://127.0.0.1:15001), on GET /orders/ID/invoice.
import http from 'node:http';

const name = process.argv[2] ?? 'orders';
const port = Number(process.argv[3] ?? process.env.PORT ?? 8080);
const billingUrl = process.env.BILLING_URL ?? 'http://127.0.0.1:15001';

function echo(req) {
  return {
    service: name,
    hello: req.headers['x-client-identity'] ?? 'anonymous',
    scopes: req.headers['x-client-scopes'] ?? '',
    method: req.method,
    path: req.url,
    xfcc: req.headers['x-forwarded-client-cert'] ?? null,
    requestId: req.headers['x-request-id'] ?? null,
  };
}

function send(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(`${JSON.stringify(body, null, 2)}\n`);
}

http
  .createServer((req, res) => {
    const invoice = name === 'orders' && req.method === 'GET' ? /^\/orders\/([^/?]+)\/invoice$/.exec(req.url ?? '') : null;
    if (invoice === null) return send(res, 200, echo(req));
    // The outbound call: no TLS, no certificate here; the sidecar adds both and checks billing.
    // Passing x-request-id on ties the two services' audit lines together.
    fetch(`${billingUrl}/invoices/${invoice[1]}`, { headers: { 'x-request-id': req.headers['x-request-id'] ?? '' } })
      .then(async (r) => send(res, r.status, { ...echo(req), billing: await r.json() }))
      .catch((err) => send(res, 502, { ...echo(req), billing: String(err) }));
  })
  .listen(port, '127.0.0.1', () => console.error(`demo app ${name} on http://127.0.0.1:${port}`));
