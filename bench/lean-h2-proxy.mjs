// A reference point, not a product: what HTTP/2 proxying costs in Node without node:http2's
// per-stream machinery. Its own HTTP/2 framing on the TLS socket (frames, HPACK with the dynamic
// table, connection and stream flow control, SETTINGS/PING/RST_STREAM/GOAWAY), undici's
// Pool.dispatch to the app, and every frame produced in one turn of the event loop written at
// once. Not here: Huffman-coded header strings (refused: the bench's load generator sends
// plain literals), request bodies (GET/HEAD only), priorities, trailers, and the limits and
// flood guards a server facing real clients needs. docs/performance.md compares it with
// bench/bare-undici-proxy.mjs (node:http2's stream API), to show how much of the HTTP/2 gap to
// nginx is node:http2 itself. Run by hand, or with bench/ab.sh:
//
//   node bench/lean-h2-proxy.mjs PORT UPSTREAM_URL CERT KEY CA   (after a build: it takes the HPACK
//   static table from dist/)
import tls from 'node:tls';
import { createRequire } from 'node:module';
import { referenceTlsOptions } from './lib/server-tls.mjs';
import { STATIC_TABLE } from '../dist/transport/h2/hpack.js';

const require = createRequire(import.meta.url);
const Pool = require('undici/lib/dispatcher/pool.js');

const [port, upstream, cert, key, ca] = process.argv.slice(2);
if (ca === undefined) {
  console.error('usage: lean-h2-proxy.mjs PORT UPSTREAM_URL CERT KEY CA');
  process.exit(2);
}
const pool = new Pool(upstream, { connections: 256, pipelining: 1, keepAliveTimeout: 300_000 });
const HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'proxy-connection', 'te']);

// RFC 7541 Appendix A: the sidecar's copy (index 0 unused).
const STATIC = STATIC_TABLE;
const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
const DATA = 0, HEADERS = 1, RST_STREAM = 3, SETTINGS = 4, PING = 6, GOAWAY = 7, WINDOW_UPDATE = 8, CONTINUATION = 9;
const END_STREAM = 1, ACK = 1, END_HEADERS = 4, PADDED = 8, PRIORITY = 0x20;

function frame(type, flags, sid, payload) {
  const f = Buffer.allocUnsafe(9 + payload.length);
  f[0] = payload.length >>> 16;
  f[1] = (payload.length >>> 8) & 0xff;
  f[2] = payload.length & 0xff;
  f[3] = type;
  f[4] = flags;
  f.writeUInt32BE(sid, 5);
  payload.copy(f, 9);
  return f;
}
const SERVER_SETTINGS = frame(SETTINGS, 0, 0, Buffer.from([0, 3, 0, 0, 0, 128])); // MAX_CONCURRENT_STREAMS 128
const SETTINGS_ACK = frame(SETTINGS, ACK, 0, Buffer.alloc(0));

class HpackError extends Error {}

/** HPACK decoding state of one connection (RFC 7541): the dynamic table and its size. */
class Decoder {
  table = [];
  size = 0;
  max = 4096;
  entry(i) {
    if (i > 0 && i < STATIC.length) return STATIC[i];
    const e = this.table[i - STATIC.length];
    if (e === undefined) throw new HpackError('index');
    return e;
  }
  add(name, value) {
    const sz = name.length + value.length + 32;
    this.table.unshift([name, value]);
    this.size += sz;
    this.evict();
  }
  evict() {
    while (this.size > this.max && this.table.length > 0) {
      const [n, v] = this.table.pop();
      this.size -= n.length + v.length + 32;
    }
  }
  /** -> flat [name, value, ...] */
  decode(buf, start, end) {
    const out = [];
    let p = start;
    const int = (prefix) => {
      const mask = (1 << prefix) - 1;
      let v = buf[p++] & mask;
      if (v < mask) return v;
      let m = 0;
      let b;
      do {
        if (p >= end || m > 21) throw new HpackError('int');
        b = buf[p++];
        v += (b & 127) * 2 ** m;
        m += 7;
      } while (b & 128);
      return v;
    };
    const str = () => {
      if (p >= end) throw new HpackError('str');
      if (buf[p] & 0x80) throw new HpackError('huffman not supported by this reference');
      const len = int(7);
      if (p + len > end) throw new HpackError('str len');
      const s = buf.latin1Slice(p, p + len);
      p += len;
      return s;
    };
    while (p < end) {
      const b = buf[p];
      if (b & 0x80) {
        const e = this.entry(int(7));
        out.push(e[0], e[1]);
      } else if (b & 0x40) {
        const idx = int(6);
        const name = idx === 0 ? str() : this.entry(idx)[0];
        const value = str();
        this.add(name, value);
        out.push(name, value);
      } else if (b & 0x20) {
        const size = int(5);
        if (size > 4096) throw new HpackError('table size');
        this.max = size;
        this.evict();
      } else {
        const idx = int(4);
        const name = idx === 0 ? str() : this.entry(idx)[0];
        out.push(name, str());
      }
    }
    return out;
  }
}

/** Literal header field without indexing, new name (RFC 7541 6.2.2): names and values < 127 bytes here, else longer ints. */
function encodeLiteral(parts, name, value) {
  parts.push(0, ...lenPrefix(name.length));
  parts.push(name);
  parts.push(...lenPrefix(Buffer.byteLength(value, 'latin1')));
  parts.push(value);
}
function lenPrefix(n) {
  if (n < 127) return [n];
  const out = [127];
  n -= 127;
  while (n >= 128) {
    out.push((n & 127) | 128);
    n >>>= 7;
  }
  out.push(n);
  return out;
}
const STATUS_INDEX = { 200: 0x88, 204: 0x89, 206: 0x8a, 304: 0x8b, 400: 0x8c, 404: 0x8d, 500: 0x8e };

function headerBlock(status, raw) {
  const parts = [];
  const idx = STATUS_INDEX[status];
  if (idx !== undefined) parts.push(idx);
  else parts.push(0x08, 3, String(status));
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i].toString('latin1').toLowerCase();
    if (HOP.has(name)) continue;
    encodeLiteral(parts, name, raw[i + 1].toString('latin1'));
  }
  // One pass into one buffer: numbers are bytes, strings are latin1.
  let len = 0;
  for (const x of parts) len += typeof x === 'number' ? 1 : x.length;
  const b = Buffer.allocUnsafe(len);
  let o = 0;
  for (const x of parts) {
    if (typeof x === 'number') b[o++] = x;
    else o += b.latin1Write(x, o);
  }
  return b;
}

class Conn {
  constructor(socket) {
    this.socket = socket;
    this.buf = null;
    this.preface = false;
    this.hpack = new Decoder();
    this.out = [];
    this.scheduled = false;
    this.sendWindow = 65535;
    this.initialWindow = 65535;
    this.maxFrame = 16384;
    this.streams = new Map(); // sid -> Stream
    this.lastSid = 0;
    this.block = null; // header block being continued: [sid, flags, Buffer[]]
    this.recvConsumed = 0;
    socket.setNoDelay(true);
    socket.on('data', (c) => this.read(c));
    socket.on('error', () => {});
    socket.on('close', () => {
      for (const s of this.streams.values()) s.closed = true;
      this.streams.clear();
    });
    this.send(SERVER_SETTINGS);
  }
  send(b) {
    this.out.push(b);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(flush, this);
    }
  }
  fail(code) {
    const p = Buffer.alloc(8);
    p.writeUInt32BE(this.lastSid, 0);
    p.writeUInt32BE(code, 4);
    this.socket.end(Buffer.concat([...this.out, frame(GOAWAY, 0, 0, p)]));
    this.out = [];
  }
  read(chunk) {
    let buf = this.buf === null ? chunk : Buffer.concat([this.buf, chunk]);
    let p = 0;
    if (!this.preface) {
      if (buf.length < 24) {
        this.buf = buf;
        return;
      }
      if (!buf.subarray(0, 24).equals(PREFACE)) return this.socket.destroy();
      this.preface = true;
      p = 24;
    }
    while (buf.length - p >= 9) {
      const len = (buf[p] << 16) | (buf[p + 1] << 8) | buf[p + 2];
      if (len > 16384) return this.fail(6); // FRAME_SIZE_ERROR
      if (buf.length - p - 9 < len) break;
      try {
        this.frame(buf[p + 3], buf[p + 4], buf.readUInt32BE(p + 5) & 0x7fffffff, buf, p + 9, p + 9 + len);
      } catch (err) {
        return this.fail(err instanceof HpackError ? 9 : 1); // COMPRESSION_ERROR / PROTOCOL_ERROR
      }
      p += 9 + len;
    }
    this.buf = p === buf.length ? null : buf.subarray(p);
  }
  frame(type, flags, sid, buf, s, e) {
    if (this.block !== null && type !== CONTINUATION) throw new Error('expected CONTINUATION');
    switch (type) {
      case HEADERS: {
        if ((sid & 1) === 0 || sid <= this.lastSid) throw new Error('bad stream id');
        this.lastSid = sid;
        if (flags & PADDED) e -= buf[s++];
        if (flags & PRIORITY) s += 5;
        if (s > e) throw new Error('padding');
        if (flags & END_HEADERS) return this.headers(sid, flags, buf, s, e);
        this.block = [sid, flags, [buf.subarray(s, e)]];
        return;
      }
      case CONTINUATION: {
        if (this.block === null || this.block[0] !== sid) throw new Error('unexpected CONTINUATION');
        this.block[2].push(buf.subarray(s, e));
        if (flags & END_HEADERS) {
          const [bsid, bflags, parts] = this.block;
          this.block = null;
          const all = Buffer.concat(parts);
          return this.headers(bsid, bflags, all, 0, all.length);
        }
        return;
      }
      case DATA: {
        // GET/HEAD only here: bodies are consumed and given back to the flow-control windows.
        this.recvConsumed += e - s;
        if (this.recvConsumed >= 32768) {
          const p = Buffer.allocUnsafe(4);
          p.writeUInt32BE(this.recvConsumed, 0);
          this.send(frame(WINDOW_UPDATE, 0, 0, p));
          this.recvConsumed = 0;
        }
        return;
      }
      case SETTINGS: {
        if (flags & ACK) return;
        for (let i = s; i + 6 <= e; i += 6) {
          const id = buf.readUInt16BE(i);
          const v = buf.readUInt32BE(i + 2);
          if (id === 4) {
            const delta = v - this.initialWindow;
            this.initialWindow = v;
            for (const st of this.streams.values()) st.window += delta;
          } else if (id === 5) this.maxFrame = v;
        }
        this.send(SETTINGS_ACK);
        return this.drain();
      }
      case PING:
        if (!(flags & ACK)) this.send(frame(PING, ACK, 0, buf.subarray(s, e)));
        return;
      case WINDOW_UPDATE: {
        const inc = buf.readUInt32BE(s) & 0x7fffffff;
        if (sid === 0) this.sendWindow += inc;
        else {
          const st = this.streams.get(sid);
          if (st !== undefined) st.window += inc;
        }
        return this.drain();
      }
      case RST_STREAM: {
        const st = this.streams.get(sid);
        if (st !== undefined) {
          st.closed = true;
          this.streams.delete(sid);
          st.abort?.(new Error('stream reset'));
        }
        return;
      }
      case GOAWAY:
        this.socket.end();
        return;
      default:
        return; // PRIORITY and unknown types are ignored (RFC 9113 5.5)
    }
  }
  headers(sid, flags, buf, s, e) {
    const h = this.hpack.decode(buf, s, e);
    let method = 'GET';
    let path = '/';
    let authority = 'localhost';
    const headers = [];
    for (let i = 0; i < h.length; i += 2) {
      const n = h[i];
      if (n.charCodeAt(0) === 58) {
        if (n === ':method') method = h[i + 1];
        else if (n === ':path') path = h[i + 1];
        else if (n === ':authority') authority = h[i + 1];
      } else if (!HOP.has(n)) headers.push(n, h[i + 1]);
    }
    headers.push('host', authority);
    const st = new Stream(this, sid);
    this.streams.set(sid, st);
    pool.dispatch({ path, method, headers, body: null }, st);
  }
  /** Send queued response bodies the windows now allow. */
  drain() {
    for (const st of this.streams.values()) if (st.pending !== null) st.sendData();
  }
}

function flush(conn) {
  conn.scheduled = false;
  const out = conn.out;
  if (out.length === 0 || conn.socket.destroyed) return;
  conn.out = [];
  conn.socket.write(out.length === 1 ? out[0] : Buffer.concat(out));
}

/** One request: the undici handler, and the response's DATA under flow control. */
class Stream {
  constructor(conn, sid) {
    this.conn = conn;
    this.sid = sid;
    this.window = conn.initialWindow;
    this.closed = false;
    this.pending = null; // body bytes waiting for window
    this.ended = false;
    this.abort = null;
  }
  onConnect(abort) {
    this.abort = abort;
  }
  onError() {
    if (this.closed) return;
    const b = Buffer.from([0x08, 3, 0x35, 0x30, 0x32]); // :status 502
    this.conn.send(frame(HEADERS, END_HEADERS | END_STREAM, this.sid, b));
    this.finish();
  }
  onHeaders(status, raw) {
    if (this.closed) return false;
    this.conn.send(frame(HEADERS, END_HEADERS, this.sid, headerBlock(status, raw)));
    return true;
  }
  onData(chunk) {
    if (this.closed) return false;
    this.pending = this.pending === null ? chunk : Buffer.concat([this.pending, chunk]);
    return true;
  }
  onComplete() {
    if (this.closed) return;
    this.ended = true;
    this.sendData();
  }
  sendData() {
    const conn = this.conn;
    let body = this.pending ?? Buffer.alloc(0);
    while (true) {
      const n = Math.min(body.length, this.window, conn.sendWindow, conn.maxFrame);
      const last = n === body.length && this.ended;
      if (n === 0 && !last) break;
      conn.send(frame(DATA, last ? END_STREAM : 0, this.sid, body.subarray(0, n)));
      this.window -= n;
      conn.sendWindow -= n;
      body = body.subarray(n);
      if (last) return this.finish();
    }
    this.pending = body;
  }
  finish() {
    this.closed = true;
    this.pending = null;
    this.conn.streams.delete(this.sid);
  }
}

const server = tls.createServer({ ...referenceTlsOptions(cert, key, ca), ALPNProtocols: ['h2'] }, (socket) => {
  if (socket.alpnProtocol !== 'h2') return socket.destroy();
  new Conn(socket);
});
server.listen(Number(port), '127.0.0.1', () => console.log(`lean-h2-proxy on 127.0.0.1:${port} -> ${upstream}`));
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
