// The Node reference: a bare mTLS proxy with undici and nothing else. Client certificate
// required and verified by Node/OpenSSL (rejectUnauthorized), HTTP/2 with HTTP/1.1 fallback on
// one port (the sidecar's default listener shape), each request forwarded with undici to the
// upstream: HTTP/1.1 through node:http's server and Pool.stream; HTTP/2 on node:http2's core
// stream API (as the sidecar), skipping the compat layer that costs a bare proxy ~35 %, with
// Pool.dispatch. No identity, routes, audit, metrics, limits or header hygiene beyond what
// HTTP/2 itself requires (pseudo-headers and connection-specific headers cannot cross).
//
//   node bench/bare-undici-proxy.mjs PORT UPSTREAM_URL CERT KEY CA
import http2 from 'node:http2';
import { referenceTlsOptions } from './lib/server-tls.mjs';
import { Pool } from 'undici';

const [port, upstream, cert, key, ca] = process.argv.slice(2);
if (ca === undefined) {
  console.error('usage: bare-undici-proxy.mjs PORT UPSTREAM_URL CERT KEY CA');
  process.exit(2);
}

const pool = new Pool(upstream, { connections: 256, pipelining: 1, keepAliveTimeout: 300_000 });
const HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'http2-settings']);

const server = http2.createSecureServer(
  referenceTlsOptions(cert, key, ca),
  (req, res) => {
    const headers = {};
    for (const name in req.headers) {
      if (name.charCodeAt(0) === 58 /* : */ || HOP.has(name)) continue;
      headers[name] = req.headers[name];
    }
    if (headers.host === undefined) headers.host = req.headers[':authority'] ?? 'localhost';
    const hasBody = req.method !== 'GET' && req.method !== 'HEAD';
    pool.stream(
      { path: req.url, method: req.method, headers, body: hasBody ? req : null },
      ({ statusCode, headers: up }) => {
        for (const h of HOP) delete up[h];
        res.writeHead(statusCode, up);
        return res;
      },
      (err) => {
        if (err === null || err === undefined) return;
        if (!res.headersSent) {
          res.writeHead(502, { 'content-type': 'text/plain' });
          res.end('bad gateway\n');
        } else res.destroy(err);
      },
    );
  },
);
// HTTP/2 streams on the core API: the 'request' listener above routed them through the compat
// layer; take that off. Backpressure both ways: the app's body pauses while the client is full.
server.removeAllListeners('stream');
server.on('stream', (stream, h) => {
  const headers = {};
  for (const name in h) {
    if (name.charCodeAt(0) === 58 /* : */ || HOP.has(name)) continue;
    headers[name] = h[name];
  }
  headers.host = h[':authority'] ?? 'localhost';
  const method = h[':method'];
  const hasBody = method !== 'GET' && method !== 'HEAD';
  if (!hasBody) stream.resume();
  stream.on('error', () => {});
  let done = false;
  // The body as an iterator that leaves the stream open: undici destroys a stream body once it
  // is read, and that would reset the HTTP/2 stream before the response.
  const body = hasBody ? stream.iterator({ destroyOnReturn: false }) : null;
  pool.dispatch({ path: h[':path'], method, headers, body }, {
    onRequestStart(controller) {
      stream.once('close', () => {
        if (!done) controller.abort(new Error('client went away'));
      });
    },
    onResponseStart(_c, statusCode, up) {
      for (const x of HOP) delete up[x];
      up[':status'] = statusCode;
      if (!stream.destroyed) stream.respond(up);
    },
    onResponseData(controller, chunk) {
      if (!stream.write(chunk)) {
        controller.pause();
        stream.once('drain', () => controller.resume());
      }
    },
    onResponseEnd() {
      done = true;
      stream.end();
    },
    onResponseError(_c, err) {
      done = true;
      if (stream.destroyed) return;
      if (!stream.headersSent) {
        stream.respond({ ':status': 502, 'content-type': 'text/plain' });
        stream.end('bad gateway\n');
      } else stream.destroy(err);
    },
  });
});
// Idle keep-alive like the other targets (Node's HTTP/1 default is 5 s).
server.keepAliveTimeout = 300_000;
server.listen(Number(port), '127.0.0.1', () => console.log(`bare-undici-proxy on 127.0.0.1:${port} -> ${upstream}`));
for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => {
    server.close();
    pool.close().finally(() => process.exit(0));
    setTimeout(() => process.exit(0), 1000).unref();
  });
}
