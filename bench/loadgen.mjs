// A small mTLS load generator (presents a client certificate). One JSON line on stdout.
//
// Modes:
//   ka       HTTP/1.1 keep-alive over raw TLS sockets, --conns N, one request in flight per
//            connection, responses parsed minimally (status line, Content-Length or chunked)
//   newconn  a new TLS connection (full handshake, no resumption) per request, --conns N clients
//   h2       HTTP/2, --conns C connections x --streams S concurrent streams each: a lean client
//            on raw TLS (pre-encoded HPACK request, minimal frame parsing); GET/HEAD only
//   h2node   the same with node:http2's client (much heavier per stream; bodies allowed)
//   hold     open --conns N connections (bounded parallelism), one request each, then keep them
//            idle; prints {"ready":...} and holds until stdin closes or --hold-seconds pass
//
// --plain   ka and newconn over plain TCP instead of TLS (an app calling its sidecar's outbound
//           listener on loopback); --ca/--cert/--key are then not read.
// --rate R  ka only: a fixed offered rate, R requests/s in all, spread evenly over the
//           connections (each still has one request in flight at most; a late response delays
//           that connection's next request, so the rate is a ceiling, reported as offered).
//
// Bounded: --warmup seconds (not counted), then --seconds measured, and at most --max-requests
// requests in all (the window closes early if the cap is hit). Latencies of the requests that
// complete in the window go into a Float64Array; p50/p90/p99/max from it.
// --watch name=pid,pid,...  reads /proc/<pid>/stat at the window's edges: CPU % of those
// processes (summed; 100 = one core) over exactly the measured window.
import fs from 'node:fs';
import http2 from 'node:http2';
import net from 'node:net';
import tls from 'node:tls';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { execFileSync } from 'node:child_process';

const { values: a } = parseArgs({
  options: {
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string' },
    servername: { type: 'string', default: 'localhost' },
    path: { type: 'string', default: '/bench/item' },
    mode: { type: 'string', default: 'ka' },
    conns: { type: 'string', default: '64' },
    streams: { type: 'string', default: '8' },
    method: { type: 'string', default: 'GET' },
    body: { type: 'string', default: '0' },
    seconds: { type: 'string', default: '5' },
    warmup: { type: 'string', default: '1' },
    'max-requests': { type: 'string', default: '2000000' },
    'hold-seconds': { type: 'string', default: '120' },
    'open-parallel': { type: 'string', default: '64' },
    ca: { type: 'string' },
    cert: { type: 'string' },
    key: { type: 'string' },
    groups: { type: 'string', default: 'X25519:P-256' },
    watch: { type: 'string', multiple: true, default: [] },
    cores: { type: 'string', default: '' },
    plain: { type: 'boolean', default: false },
    rate: { type: 'string', default: '0' },
  },
  strict: true,
});

const PORT = Number(a.port);
const CONNS = Number(a.conns);
const STREAMS = Number(a.streams);
const SECONDS = Number(a.seconds);
const WARMUP = Number(a.warmup);
const MAX_REQ = Number(a['max-requests']);
const BODY = Buffer.alloc(Number(a.body), 'x');
const MODE = a.mode;
const PLAIN = a.plain;
const RATE = Number(a.rate);
if (!Number.isInteger(PORT) || !(CONNS > 0) || !(SECONDS > 0) || !(MAX_REQ > 0)) {
  console.error('loadgen: bad arguments');
  process.exit(2);
}

const secureContext = PLAIN
  ? null
  : tls.createSecureContext({
      ca: fs.readFileSync(a.ca),
      cert: fs.readFileSync(a.cert),
      key: fs.readFileSync(a.key),
      ecdhCurve: a.groups,
    });
/** An HTTP/1.1 connection: TLS, or plain TCP with --plain; `ready` is the event to send on. */
function connect1() {
  return PLAIN ? net.connect({ host: a.host, port: PORT }) : tls.connect(tlsOpts(['http/1.1']));
}
const READY = PLAIN ? 'connect' : 'secureConnect';
const noop = () => {};
const tlsOpts = (alpn) => ({
  host: a.host,
  port: PORT,
  servername: a.servername,
  secureContext,
  ALPNProtocols: alpn,
  rejectUnauthorized: true, // chain verified against the bench CA...
  checkServerIdentity: () => undefined, // ...but no JS hostname check per connection
});

// ---- CPU of watched processes -------------------------------------------------------------
const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();
const watches = a.watch.map((w) => {
  const [name, pids] = w.split('=');
  return { name, pids: pids.split(',').filter(Boolean).map(Number) };
});
function cpuOf(pids) {
  let t = 0;
  for (const pid of pids) {
    try {
      const s = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
      const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
      t += (Number(f[11]) + Number(f[12])) / CLK_TCK;
    } catch {
      /* gone */
    }
  }
  return t;
}

// ---- measurement state ----------------------------------------------------------------------
const lat = new Float64Array(Math.min(MAX_REQ, 4_000_000));
let nLat = 0;
let measuring = false;
let issuing = true;
let issued = 0;
let completedTotal = 0;
let windowCount = 0;
let windowErrors = 0;
let errorsTotal = 0;
const errorKinds = Object.create(null);
const statuses = Object.create(null);
let reconnects = 0;
let tStart = 0;
let tEnd = 0;
let cpuStart = null;
let cpuEnd = null;
let selfStart = null;
let selfEnd = null;
let tlsInfo = null;
// CLOCK_MONOTONIC in µs at the window's edges: the clock V8 stamps --cpu-prof samples with, so
// a profile of the target can be cut to exactly the measured window.
let monoStart = 0n;
let monoEnd = 0n;
let inFlight = 0;
let finished = false;

function error(kind) {
  errorsTotal++;
  if (measuring) windowErrors++;
  errorKinds[kind] = (errorKinds[kind] ?? 0) + 1;
  if (errorsTotal > 100_000 && completedTotal === 0) finish('too many errors, nothing succeeded');
}

function completed(t0, status) {
  completedTotal++;
  if (measuring) {
    if (status >= 200 && status < 300) {
      windowCount++;
      if (nLat < lat.length) lat[nLat++] = performance.now() - t0;
    } else windowErrors++;
    statuses[status] = (statuses[status] ?? 0) + 1;
  } else if (status < 200 || status >= 300) {
    statuses[status] = (statuses[status] ?? 0) + 1;
  }
  if (status < 200 || status >= 300) errorKinds[`status_${status}`] = (errorKinds[`status_${status}`] ?? 0) + 1;
}

/** May another request be sent? Counts it if so. */
function take() {
  if (!issuing) return false;
  if (issued >= MAX_REQ) {
    endWindow('max-requests reached');
    return false;
  }
  issued++;
  return true;
}

// Per-core time from /proc/stat (jiffies): busy = user+nice+system, softirq apart, so that the
// harness can tell how much of each core went to processes it did not start.
const CORES = a.cores === '' ? [] : a.cores.split(',').map(Number);
function coreTimes() {
  const out = {};
  if (CORES.length === 0) return out;
  const text = fs.readFileSync('/proc/stat', 'latin1');
  for (const c of CORES) {
    const m = new RegExp(`^cpu${c} (.*)$`, 'm').exec(text);
    if (m === null) continue;
    const f = m[1].trim().split(/\s+/).map(Number);
    out[c] = { busy: f[0] + f[1] + f[2], irq: f[5] + f[6], total: f.slice(0, 8).reduce((x, y) => x + y, 0) };
  }
  return out;
}
function snapshotCpu() {
  return { ...Object.fromEntries(watches.map((w) => [w.name, cpuOf(w.pids)])), __cores: coreTimes() };
}

function beginWindow() {
  if (finished || !issuing) return;
  cpuStart = snapshotCpu();
  selfStart = process.cpuUsage();
  tStart = performance.now();
  monoStart = process.hrtime.bigint();
  measuring = true;
}

let endNote = null;
function endWindow(note) {
  if (!issuing) return;
  issuing = false;
  if (measuring) {
    tEnd = performance.now();
    monoEnd = process.hrtime.bigint();
    cpuEnd = snapshotCpu();
    selfEnd = process.cpuUsage(selfStart);
    measuring = false;
  }
  endNote = note ?? null;
  // Let in-flight requests finish (bounded), then report.
  const deadline = Date.now() + 3000;
  const check = () => {
    if (inFlight <= 0 || Date.now() > deadline) finish();
    else setTimeout(check, 10);
  };
  check();
}

function pct(sorted, p) {
  if (sorted.length === 0) return null;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i];
}

const closers = new Set();
function finish(abort) {
  if (finished) return;
  finished = true;
  for (const c of closers) c();
  const dur = tEnd > tStart ? (tEnd - tStart) / 1000 : 0;
  const sorted = lat.subarray(0, nLat).sort();
  const cpu = {};
  const cores = {};
  if (cpuStart !== null && cpuEnd !== null && dur > 0) {
    for (const w of watches) cpu[w.name] = (100 * (cpuEnd[w.name] - cpuStart[w.name])) / dur;
    cpu.loadgen = (100 * (selfEnd.user + selfEnd.system)) / 1e6 / dur;
    for (const c of Object.keys(cpuEnd.__cores)) {
      const e = cpuEnd.__cores[c];
      const b = cpuStart.__cores[c];
      if (b === undefined) continue;
      const total = e.total - b.total || 1;
      cores[c] = { busy: (100 * (e.busy - b.busy)) / total, softirq: (100 * (e.irq - b.irq)) / total };
    }
  }
  const round = (x) => (x === null ? null : Math.round(x * 1000) / 1000);
  const out = {
    mode: MODE,
    plain: PLAIN,
    offeredRps: RATE > 0 ? RATE : null,
    conns: CONNS,
    streams: MODE === 'h2' || MODE === 'h2node' ? STREAMS : 1,
    method: a.method,
    bodyBytes: BODY.length,
    seconds: round(dur),
    requests: windowCount,
    rps: dur > 0 ? Math.round(windowCount / dur) : 0,
    p50ms: round(pct(sorted, 50)),
    p90ms: round(pct(sorted, 90)),
    p99ms: round(pct(sorted, 99)),
    maxms: round(sorted.length ? sorted[sorted.length - 1] : null),
    errors: windowErrors,
    errorsTotal,
    errorKinds,
    statuses,
    reconnects,
    issued,
    cpu,
    cores,
    tls: tlsInfo,
    windowMonoUs: [Number(monoStart / 1000n), Number(monoEnd / 1000n)],
    note: abort ?? endNote,
  };
  process.stdout.write(JSON.stringify(out) + '\n', () => process.exit(abort ? 1 : 0));
}

function noteTls(sock) {
  if (tlsInfo !== null || typeof sock.getProtocol !== 'function') return;
  try {
    const eph = sock.getEphemeralKeyInfo?.();
    tlsInfo = {
      protocol: sock.getProtocol(),
      cipher: sock.getCipher()?.name ?? null,
      group: eph?.name ?? eph?.type ?? null,
      alpn: sock.alpnProtocol || null,
    };
  } catch {
    /* informational only */
  }
}

// ---- HTTP/1.1 request bytes and a minimal response parser --------------------------------------
function requestBytes(close) {
  const lines = [
    `${a.method} ${a.path} HTTP/1.1`,
    `host: ${a.servername}:${PORT}`,
    'user-agent: mtls-bench/1',
    'accept: */*',
  ];
  if (BODY.length > 0) lines.push('content-type: application/octet-stream', `content-length: ${BODY.length}`);
  if (close) lines.push('connection: close');
  const head = Buffer.from(lines.join('\r\n') + '\r\n\r\n', 'latin1');
  return BODY.length > 0 ? Buffer.concat([head, BODY]) : head;
}

const CRLFCRLF = Buffer.from('\r\n\r\n');
const RE_CL = /\r\ncontent-length:[ \t]*(\d+)/i;
const RE_CHUNKED = /\r\ntransfer-encoding:[ \t]*chunked/i;
const RE_CLOSE = /\r\nconnection:[ \t]*close/i;

/**
 * Per-connection response parser. feed(chunk) returns undefined while the response is
 * incomplete, else { status, close }. One response in flight at a time.
 */
class ResponseParser {
  constructor() {
    this.reset();
  }
  reset() {
    this.pending = null;
    this.status = 0;
    this.inBody = false;
    this.remaining = 0;
    this.chunked = false;
    this.close = false;
  }
  feed(chunk) {
    let buf = this.pending === null ? chunk : Buffer.concat([this.pending, chunk]);
    this.pending = null;
    if (!this.inBody) {
      const idx = buf.indexOf(CRLFCRLF);
      if (idx < 0) {
        if (buf.length > 65536) throw new Error('response head too large');
        this.pending = buf;
        return undefined;
      }
      const head = buf.latin1Slice(0, idx);
      this.status = Number(head.slice(9, 12));
      this.close = RE_CLOSE.test(head);
      const cl = RE_CL.exec(head);
      this.inBody = true;
      if (cl !== null) {
        this.chunked = false;
        this.remaining = Number(cl[1]);
      } else if (RE_CHUNKED.test(head)) {
        this.chunked = true;
      } else if (this.status === 204 || this.status === 304 || (this.status >= 100 && this.status < 200)) {
        this.remaining = 0;
      } else {
        throw new Error('response without length');
      }
      buf = buf.subarray(idx + 4);
    }
    if (!this.chunked) {
      if (buf.length >= this.remaining) return this.done();
      this.remaining -= buf.length;
      return undefined;
    }
    // chunked: walk size lines; keep the unparsed tail
    let pos = 0;
    for (;;) {
      const eol = buf.indexOf('\r\n', pos, 'latin1');
      if (eol < 0) break;
      const size = parseInt(buf.latin1Slice(pos, eol), 16);
      if (Number.isNaN(size)) throw new Error('bad chunk size');
      if (size === 0) {
        if (buf.length >= eol + 4) return this.done();
        break;
      }
      if (buf.length < eol + 2 + size + 2) break;
      pos = eol + 2 + size + 2;
    }
    this.pending = buf.subarray(pos);
    return undefined;
  }
  done() {
    const r = { status: this.status, close: this.close };
    this.reset();
    return r;
  }
}

// ---- mode: keep-alive ---------------------------------------------------------------------------
function runKeepAlive() {
  const req = requestBytes(false);
  const interval = RATE > 0 ? (1000 * CONNS) / RATE : 0; // ms between one connection's requests
  const sockets = new Set();
  closers.add(() => {
    for (const s of sockets) s.destroy();
  });
  const open = () => {
    if (!issuing) return;
    const sock = connect1();
    sockets.add(sock);
    const parser = new ResponseParser();
    let t0 = 0;
    let busy = false;
    let due = 0; // --rate: when this connection may send its next request
    const send = () => {
      if (RATE > 0) {
        const now = performance.now();
        if (due === 0) due = now + Math.random() * interval; // spread the connections' phases
        if (now < due) {
          setTimeout(send, due - now);
          return;
        }
        due += interval;
        if (due < now) due = now; // late: no catching up in a burst
      }
      if (!take()) return;
      busy = true;
      inFlight++;
      t0 = performance.now();
      sock.write(req);
    };
    sock.setNoDelay(true);
    sock.on(READY, () => {
      noteTls(sock);
      send();
    });
    sock.on('data', (chunk) => {
      let r;
      try {
        r = parser.feed(chunk);
      } catch (err) {
        error(err.message);
        sock.destroy();
        return;
      }
      if (r === undefined) return;
      busy = false;
      inFlight--;
      completed(t0, r.status);
      if (r.close) {
        sock.destroy();
        return;
      }
      send();
    });
    sock.on('error', (err) => error(err.code ?? err.message));
    sock.on('close', () => {
      sockets.delete(sock);
      if (busy) {
        busy = false;
        inFlight--;
        error('closed_mid_request');
      }
      if (issuing && !finished) {
        reconnects++;
        setTimeout(open, reconnects > 1000 ? 10 : 0);
      }
    });
  };
  for (let i = 0; i < CONNS; i++) open();
}

// ---- mode: new connection per request ---------------------------------------------------------
function runNewConn() {
  const req = requestBytes(true);
  const sockets = new Set();
  closers.add(() => {
    for (const s of sockets) s.destroy();
  });
  const client = () => {
    if (!take()) return;
    inFlight++;
    const t0 = performance.now();
    const sock = connect1();
    sockets.add(sock);
    const parser = new ResponseParser();
    let done = false;
    const next = (ok) => {
      if (done) return;
      done = true;
      inFlight--;
      sockets.delete(sock);
      sock.destroy();
      if (ok) setImmediate(client);
      else setTimeout(client, 5);
    };
    sock.setNoDelay(true);
    sock.on(READY, () => {
      noteTls(sock);
      sock.write(req);
    });
    sock.on('data', (chunk) => {
      let r;
      try {
        r = parser.feed(chunk);
      } catch (err) {
        error(err.message);
        next(false);
        return;
      }
      if (r === undefined) return;
      completed(t0, r.status);
      next(true);
    });
    sock.on('error', (err) => {
      error(err.code ?? err.message);
      next(false);
    });
    sock.on('close', () => {
      if (!done) {
        error('closed_before_response');
        next(false);
      }
    });
  };
  for (let i = 0; i < CONNS; i++) client();
}

// ---- mode: HTTP/2, lean client over raw TLS ------------------------------------------------------
// node:http2's client costs ~150 µs of CPU per stream, far more than the proxies under test, so
// the h2 mode speaks the protocol itself: one pre-encoded HPACK request (static-table indices
// and literals without indexing, so no HPACK state is needed on our side), a frame parser that
// only reads what it needs (END_STREAM, the response's first header byte for :status, SETTINGS,
// PING, RST_STREAM, GOAWAY), all frames produced while handling one read written at once, and
// the receive windows opened wide at the start (re-opened as DATA arrives).
const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
function h2frame(type, flags, sid, payload) {
  const f = Buffer.allocUnsafe(9 + payload.length);
  f.writeUIntBE(payload.length, 0, 3);
  f[3] = type;
  f[4] = flags;
  f.writeUInt32BE(sid, 5);
  payload.copy(f, 9);
  return f;
}
function hpackInt(value, prefixBits, firstByte) {
  const max = (1 << prefixBits) - 1;
  if (value < max) return [firstByte | value];
  const out = [firstByte | max];
  value -= max;
  while (value >= 128) {
    out.push((value & 127) | 128);
    value >>= 7;
  }
  out.push(value);
  return out;
}
/** Literal header field without indexing, name from the static table (RFC 7541 §6.2.2). */
function hpackLiteral(nameIndex, value) {
  const v = Buffer.from(value, 'latin1');
  return Buffer.from([...hpackInt(nameIndex, 4, 0x00), ...hpackInt(v.length, 7, 0x00), ...v]);
}
// First byte of a response header block -> :status, when it is a static-table index (it is for
// the common codes; anything else reads as 0 and counts as an error, as a non-2xx would).
const H2_STATUS = { 0x88: 200, 0x89: 204, 0x8a: 206, 0x8b: 304, 0x8c: 400, 0x8d: 404, 0x8e: 500 };
const WINDOW = 1 << 30;

function runH2Raw() {
  if (BODY.length > 0) {
    console.error('loadgen: h2 mode sends no bodies; use --mode h2node for POSTs over HTTP/2');
    process.exit(2);
  }
  const method = { GET: 0x82, POST: 0x83 }[a.method];
  const block = Buffer.concat([
    method !== undefined ? Buffer.from([method]) : Buffer.concat([hpackLiteral(2, a.method)]),
    Buffer.from([0x87]), // :scheme https
    hpackLiteral(4, a.path), // :path
    hpackLiteral(1, `${a.servername}:${PORT}`), // :authority
    hpackLiteral(58, 'mtls-bench/1'), // user-agent
    hpackLiteral(19, '*/*'), // accept
  ]);
  const reqTemplate = h2frame(0x1, 0x1 | 0x4, 0, block); // HEADERS, END_STREAM | END_HEADERS
  const settings = Buffer.alloc(12);
  settings.writeUInt16BE(0x2, 0); // ENABLE_PUSH = 0
  settings.writeUInt32BE(0, 2);
  settings.writeUInt16BE(0x4, 6); // INITIAL_WINDOW_SIZE
  settings.writeUInt32BE(WINDOW, 8);
  const windowUpdate = (sid, inc) => {
    const b = Buffer.allocUnsafe(4);
    b.writeUInt32BE(inc, 0);
    return h2frame(0x8, 0, sid, b);
  };
  const opening = Buffer.concat([H2_PREFACE, h2frame(0x4, 0, 0, settings), windowUpdate(0, WINDOW - 65535)]);
  const SETTINGS_ACK = h2frame(0x4, 0x1, 0, Buffer.alloc(0));

  const sockets = new Set();
  closers.add(() => {
    for (const s of sockets) s.destroy();
  });
  const open = () => {
    if (!issuing) return;
    const sock = tls.connect(tlsOpts(['h2']));
    sockets.add(sock);
    const streams = new Map(); // sid -> [t0, status]
    let nextId = 1;
    let out = [];
    let pending = null;
    let received = 0;
    let live = true;
    const request = () => {
      if (!live || nextId > 0x3fffffff || !take()) return;
      const f = Buffer.allocUnsafe(reqTemplate.length);
      reqTemplate.copy(f);
      f.writeUInt32BE(nextId, 5);
      streams.set(nextId, [performance.now(), 0]);
      nextId += 2;
      inFlight++;
      out.push(f);
    };
    const flush = () => {
      if (out.length === 0) return;
      sock.write(out.length === 1 ? out[0] : Buffer.concat(out));
      out = [];
    };
    const endStream = (sid, ok) => {
      const st = streams.get(sid);
      if (st === undefined) return;
      streams.delete(sid);
      inFlight--;
      if (ok) completed(st[0], st[1]);
      else error('rst_stream');
      request();
    };
    sock.setNoDelay(true);
    sock.on('secureConnect', () => {
      noteTls(sock);
      if (sock.alpnProtocol !== 'h2') {
        error('no_h2_alpn');
        sock.destroy();
        return;
      }
      out.push(opening);
      for (let i = 0; i < STREAMS; i++) request();
      flush();
    });
    sock.on('data', (chunk) => {
      const buf = pending === null ? chunk : Buffer.concat([pending, chunk]);
      pending = null;
      let pos = 0;
      while (buf.length - pos >= 9) {
        const len = (buf[pos] << 16) | (buf[pos + 1] << 8) | buf[pos + 2];
        if (buf.length - pos - 9 < len) break;
        const type = buf[pos + 3];
        const flags = buf[pos + 4];
        const sid = buf.readUInt32BE(pos + 5) & 0x7fffffff;
        const p = pos + 9;
        switch (type) {
          case 0x0: // DATA
            received += len;
            if (flags & 0x1) endStream(sid, true);
            break;
          case 0x1: {
            // HEADERS: skip pad length / priority to the block's first byte
            const st = streams.get(sid);
            if (st !== undefined && st[1] === 0) {
              let off = p;
              if (flags & 0x8) off += 1;
              if (flags & 0x20) off += 5;
              st[1] = H2_STATUS[buf[off]] ?? 0;
            }
            if (flags & 0x1) endStream(sid, true);
            break;
          }
          case 0x3: // RST_STREAM
            endStream(sid, false);
            break;
          case 0x4: // SETTINGS
            if (!(flags & 0x1)) out.push(SETTINGS_ACK);
            break;
          case 0x6: // PING
            if (!(flags & 0x1)) out.push(h2frame(0x6, 0x1, 0, buf.subarray(p, p + len)));
            break;
          case 0x7: // GOAWAY
            error('goaway');
            live = false;
            break;
          default: // WINDOW_UPDATE, CONTINUATION, PRIORITY, unknown: nothing to do
        }
        pos = p + len;
      }
      if (pos < buf.length) pending = buf.subarray(pos);
      if (received > WINDOW / 2) {
        out.push(windowUpdate(0, received));
        received = 0;
      }
      flush();
      if (!live && streams.size === 0) sock.destroy();
    });
    sock.on('error', (err) => error(err.code ?? err.message));
    sock.on('close', () => {
      sockets.delete(sock);
      live = false;
      for (const sid of [...streams.keys()]) {
        streams.delete(sid);
        inFlight--;
        error('closed_mid_stream');
      }
      if (issuing && !finished) {
        reconnects++;
        setTimeout(open, reconnects > 1000 ? 10 : 0);
      }
    });
  };
  for (let i = 0; i < CONNS; i++) open();
}

// ---- mode: HTTP/2 with node:http2 (heavier; kept for POST bodies and as a cross-check) ----------
function runH2() {
  const sessions = new Set();
  closers.add(() => {
    for (const s of sessions) s.destroy();
  });
  const headers = {
    ':method': a.method,
    ':path': a.path,
    ':scheme': 'https',
    ':authority': `${a.servername}:${PORT}`,
    'user-agent': 'mtls-bench/1',
    accept: '*/*',
  };
  if (BODY.length > 0) {
    headers['content-type'] = 'application/octet-stream';
    headers['content-length'] = String(BODY.length);
  }
  const openSession = () => {
    if (!issuing) return;
    const session = http2.connect(`https://${a.host}:${PORT}`, { ...tlsOpts(['h2']), peerMaxConcurrentStreams: 1000 });
    sessions.add(session);
    let live = true;
    const stream = () => {
      if (!live || !take()) return;
      inFlight++;
      const t0 = performance.now();
      let status = 0;
      let settled = false;
      const settle = (ok) => {
        if (settled) return;
        settled = true;
        inFlight--;
        if (ok) completed(t0, status);
        stream();
      };
      let req;
      try {
        req = session.request(headers, { endStream: BODY.length === 0 });
      } catch (err) {
        inFlight--;
        error(err.code ?? err.message);
        return;
      }
      if (BODY.length > 0) req.end(BODY);
      req.on('response', (h) => {
        status = h[':status'];
      });
      req.on('data', noop);
      req.on('end', () => settle(true));
      req.on('error', (err) => {
        error(err.code ?? err.message);
        settle(false);
      });
      req.on('close', () => {
        if (!settled) {
          error('stream_closed');
          settle(false);
        }
      });
    };
    session.on('connect', () => {
      noteTls(session.socket);
      if (tlsInfo !== null) tlsInfo.alpn = session.alpnProtocol ?? tlsInfo.alpn;
      for (let i = 0; i < STREAMS; i++) stream();
    });
    session.on('error', (err) => error(err.code ?? err.message));
    session.on('close', () => {
      live = false;
      sessions.delete(session);
      if (issuing && !finished) {
        reconnects++;
        setTimeout(openSession, reconnects > 1000 ? 10 : 0);
      }
    });
  };
  for (let i = 0; i < CONNS; i++) openSession();
}

// ---- mode: hold N idle keep-alive connections -----------------------------------------------
function runHold() {
  const req = requestBytes(false);
  const sockets = new Set();
  let started = 0;
  let ready = 0;
  let failed = 0;
  let reported = false;
  const t0 = performance.now();
  const end = (code) => {
    for (const s of sockets) s.destroy();
    process.exit(code);
  };
  const report = () => {
    if (reported) return;
    reported = true;
    process.stdout.write(JSON.stringify({ mode: 'hold', ready, failed, open: sockets.size, openSeconds: (performance.now() - t0) / 1000, errorKinds }) + '\n');
  };
  const maybeDone = () => {
    if (ready + failed === CONNS) report();
    else if (started < CONNS) one();
  };
  const one = () => {
    started++;
    const sock = tls.connect(tlsOpts(['http/1.1']));
    const parser = new ResponseParser();
    let settled = false;
    sock.on('secureConnect', () => sock.write(req));
    sock.on('data', (chunk) => {
      if (settled) return;
      let r;
      try {
        r = parser.feed(chunk);
      } catch {
        return;
      }
      if (r === undefined) return;
      settled = true;
      if (r.status >= 200 && r.status < 300 && !r.close) {
        ready++;
        sockets.add(sock);
      } else {
        failed++;
        sock.destroy();
      }
      maybeDone();
    });
    sock.on('error', (err) => {
      errorKinds[err.code ?? err.message] = (errorKinds[err.code ?? err.message] ?? 0) + 1;
    });
    sock.on('close', () => {
      sockets.delete(sock);
      if (!settled) {
        settled = true;
        failed++;
        maybeDone();
      }
    });
  };
  for (let i = 0; i < Math.min(CONNS, Number(a['open-parallel'])); i++) one();
  // Bounded: report whatever is open after the hold time at the latest, then exit.
  setTimeout(() => {
    report();
    end(0);
  }, Number(a['hold-seconds']) * 1000);
  process.stdin.on('end', () => end(0));
  process.stdin.on('error', () => end(0));
  process.stdin.resume();
}

// ---- main -----------------------------------------------------------------------------------------
if (MODE === 'hold') runHold();
else {
  if (MODE === 'ka') runKeepAlive();
  else if (MODE === 'newconn') runNewConn();
  else if (MODE === 'h2') runH2Raw();
  else if (MODE === 'h2node') runH2();
  else {
    console.error(`loadgen: unknown mode ${MODE}`);
    process.exit(2);
  }
  setTimeout(beginWindow, WARMUP * 1000);
  setTimeout(() => endWindow(), (WARMUP + SECONDS) * 1000);
  // Hard stop whatever happens.
  setTimeout(() => finish('hard timeout'), (WARMUP + SECONDS + 15) * 1000).unref();
}
