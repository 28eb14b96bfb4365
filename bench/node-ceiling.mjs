// The "ceiling for anything in Node": Node's own TLS server answering every request by
// itself, with no proxying, identity, audit or anything else. Same certificates, client
// certificate required and verified, same TLS versions and suites as the sidecar, HTTP/2 and
// HTTP/1.1 on one port (as the sidecar's listener): HTTP/1.1 through node:http's server (what
// node:https runs), HTTP/2 through node:http2's core stream API. The response is the upstream's
// body with a head the size of the sidecar's (request id and security headers).
//
//   node bench/node-ceiling.mjs PORT UNUSED_UPSTREAM CERT KEY CA
import fs from 'node:fs';
import http2 from 'node:http2';

const [port, , cert, key, ca] = process.argv.slice(2);
if (ca === undefined) {
  console.error('usage: node-ceiling.mjs PORT UPSTREAM_URL CERT KEY CA (the upstream is not used)');
  process.exit(2);
}

const BODY = Buffer.from('{"ok":true}\n');
const HEAD = {
  'content-type': 'application/json',
  'content-length': String(BODY.length),
  'x-request-id': '00000000-0000-4000-8000-000000000000',
  'strict-transport-security': 'max-age=31536000',
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
};
const H2_HEAD = { ':status': 200, ...HEAD };

const server = http2.createSecureServer({
  cert: fs.readFileSync(cert),
  key: fs.readFileSync(key),
  ca: fs.readFileSync(ca),
  // The same TLS versions, suites and server preference as the sidecar (src/tls/context.ts).
  minVersion: 'TLSv1.2',
  ciphers: [
    'TLS_AES_128_GCM_SHA256', 'TLS_AES_256_GCM_SHA384', 'TLS_CHACHA20_POLY1305_SHA256',
    'ECDHE-ECDSA-AES128-GCM-SHA256', 'ECDHE-RSA-AES128-GCM-SHA256', 'ECDHE-ECDSA-AES256-GCM-SHA384',
    'ECDHE-RSA-AES256-GCM-SHA384', 'ECDHE-ECDSA-CHACHA20-POLY1305', 'ECDHE-RSA-CHACHA20-POLY1305',
  ].join(':'),
  honorCipherOrder: true,
  requestCert: true,
  rejectUnauthorized: true,
  allowHTTP1: true,
});

// HTTP/1.1 connections (allowHTTP1) come through node:http's server as 'request'.
server.on('request', (req, res) => {
  const body = () => {
    res.writeHead(200, HEAD);
    res.end(BODY);
  };
  if (req.method === 'GET' || req.method === 'HEAD') body();
  else req.resume().on('end', body);
});
// Adding the 'request' listener also routed HTTP/2 streams through the compat layer: take it
// off, so HTTP/2 is answered on the stream API as the sidecar does.
server.removeAllListeners('stream');
server.on('stream', (stream, headers) => {
  const method = headers[':method'];
  if (method === 'GET' || method === 'HEAD') {
    stream.respond(H2_HEAD);
    stream.end(BODY);
  } else {
    stream.resume();
    stream.on('end', () => {
      stream.respond(H2_HEAD);
      stream.end(BODY);
    });
  }
  stream.on('error', () => {});
});
server.on('sessionError', () => {});
// As bench/bare-undici-proxy.mjs: idle HTTP/1.1 connections are not closed during a run.
server.keepAliveTimeout = 300_000;
server.listen(Number(port), '127.0.0.1');
process.on('SIGTERM', () => process.exit(0));
