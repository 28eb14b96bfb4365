// The "ceiling for anything in Node": Node's own TLS server answering every request by
// itself, with no proxying, identity, audit or anything else. Same certificates, client
// certificate required and verified, same TLS versions and suites as the sidecar, HTTP/2 and
// HTTP/1.1 on one port (as the sidecar's listener): HTTP/1.1 through node:http's server (what
// node:https runs), HTTP/2 through node:http2's core stream API. The response is the upstream's
// body with a head the size of the sidecar's (request id and security headers).
//
//   node bench/node-ceiling.mjs PORT UNUSED_UPSTREAM CERT KEY CA
import http2 from 'node:http2';
import { referenceTlsOptions } from './lib/server-tls.mjs';

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

const server = http2.createSecureServer(referenceTlsOptions(cert, key, ca));

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
