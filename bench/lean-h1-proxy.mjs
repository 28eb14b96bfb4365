// A reference point, not a product: the leanest HTTP/1.1 mTLS proxy this repo's approach allows —
// llhttp (undici's wasm build) on the TLS socket, undici's Pool.dispatch with its core handler
// interface, each response head built from the raw upstream headers and written in one buffer
// with the body. No identity, policy, audit, metrics, limits, timeouts or header hygiene; GET/HEAD
// only. docs/performance.md compares it with bench/bare-undici-proxy.mjs (node:http) to show what
// node:http costs, and with the sidecar to show what the sidecar's own stages cost. Run by hand:
//
//   node bench/lean-h1-proxy.mjs PORT UPSTREAM_URL CERT KEY CA
import fs from 'node:fs';
import tls from 'node:tls';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const Pool = require('undici/lib/dispatcher/pool.js');
const wasm = require('undici/lib/llhttp/llhttp_simd-wasm.js');

const [port, upstream, cert, key, ca] = process.argv.slice(2);
if (ca === undefined) {
  console.error('usage: lean-h1-proxy.mjs PORT UPSTREAM_URL CERT KEY CA');
  process.exit(2);
}
const pool = new Pool(upstream, { connections: 256, pipelining: 1, keepAliveTimeout: 300_000 });

let current = null;
let view = Buffer.alloc(0);
let inPtr = 0;
let inSize = 0;
const str = (at, len) => view.toString('latin1', at, at + len);
const L = new WebAssembly.Instance(new WebAssembly.Module(wasm), {
  env: {
    wasm_on_message_begin: () => current.onBegin(),
    wasm_on_url: (_p, at, len) => ((current.url += str(at, len)), 0),
    wasm_on_status: () => 0,
    wasm_on_header_field: (_p, at, len) => current.onField(str(at, len)),
    wasm_on_header_value: (_p, at, len) => current.onValue(str(at, len)),
    wasm_on_headers_complete: (_p, _s, _u, keepAlive) => ((current.keepAlive = keepAlive === 1), 0),
    wasm_on_body: () => 0,
    wasm_on_message_complete: () => current.onComplete(),
  },
}).exports;
const METHOD = { 1: 'GET', 2: 'HEAD' };
const HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'proxy-connection', 'te']);

class Conn {
  constructor(socket) {
    this.socket = socket;
    this.ptr = L.llhttp_alloc(1);
    this.url = '';
    this.raw = [];
    this.inValue = true;
    this.keepAlive = true;
    socket.setNoDelay(true);
    socket.on('data', (chunk) => this.execute(chunk));
    socket.on('error', () => {});
    socket.on('close', () => L.llhttp_free(this.ptr));
  }
  onBegin() {
    this.url = '';
    this.raw = [];
    this.inValue = true;
    return 0;
  }
  onField(s) {
    if (this.inValue) this.raw.push(s);
    else this.raw[this.raw.length - 1] += s;
    this.inValue = false;
    return 0;
  }
  onValue(s) {
    if (!this.inValue) this.raw.push(s);
    else this.raw[this.raw.length - 1] += s;
    this.inValue = true;
    return 0;
  }
  onComplete() {
    const method = METHOD[L.llhttp_get_method(this.ptr)] ?? 'GET';
    const headers = [];
    for (let i = 0; i < this.raw.length; i += 2) if (!HOP.has(this.raw[i].toLowerCase())) headers.push(this.raw[i], this.raw[i + 1]);
    pool.dispatch({ path: this.url, method, headers, body: null }, new Forward(this.socket, this.keepAlive));
    return 0;
  }
  execute(chunk) {
    if (chunk.length > inSize) {
      if (inPtr !== 0) L.free(inPtr);
      inSize = Math.ceil(chunk.length / 16384) * 16384;
      inPtr = L.malloc(inSize);
    }
    if (view.buffer !== L.memory.buffer) view = Buffer.from(L.memory.buffer);
    view.set(chunk, inPtr);
    current = this;
    const rc = L.llhttp_execute(this.ptr, inPtr, chunk.length);
    current = null;
    if (rc !== 0) this.socket.destroy();
  }
}

class Forward {
  constructor(socket, keepAlive) {
    this.socket = socket;
    this.keepAlive = keepAlive;
    this.head = '';
    this.body = null;
  }
  onConnect() {}
  onError() {
    this.socket.end('HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');
  }
  onHeaders(status, raw, _resume, text) {
    let head = `HTTP/1.1 ${status} ${text}\r\n`;
    for (let i = 0; i < raw.length; i += 2) {
      const name = raw[i].toString('latin1');
      if (!HOP.has(name.toLowerCase())) head += `${name}: ${raw[i + 1].toString('latin1')}\r\n`;
    }
    this.head = this.keepAlive ? `${head}\r\n` : `${head}connection: close\r\n\r\n`;
    return true;
  }
  onData(chunk) {
    this.body = this.body === null ? chunk : Buffer.concat([this.body, chunk]);
    return true;
  }
  onComplete() {
    const head = Buffer.from(this.head, 'latin1');
    this.socket.write(this.body === null ? head : Buffer.concat([head, this.body]));
    if (!this.keepAlive) this.socket.end();
  }
}

const server = tls.createServer(
  { cert: fs.readFileSync(cert), key: fs.readFileSync(key), ca: fs.readFileSync(ca), minVersion: 'TLSv1.2', requestCert: true, rejectUnauthorized: true, ALPNProtocols: ['http/1.1'] },
  (socket) => new Conn(socket),
);
server.listen(Number(port), '127.0.0.1', () => console.log(`lean-h1-proxy on 127.0.0.1:${port} -> ${upstream}`));
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
