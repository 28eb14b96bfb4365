/**
 * transport/h2/session.ts on its own, over real mTLS sockets: a small app on H2Session, driven by
 * Node's HTTP/2 client (nghttp2) for the protocol's ordinary paths (concurrency, flow control
 * both ways, resets, graceful close), and by hand-built frames for what a well-behaved client
 * never sends (malformed heads, window overruns, floods).
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http2 from 'node:http2';
import net from 'node:net';
import tls from 'node:tls';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { inject } from 'vitest';
import { H2Session } from '../../../src/transport/h2/session.js';
import type { H2Limits, H2ServerStream } from '../../../src/transport/h2/session.js';
import { FrameReader, PREFACE, block, frame } from '../../adversarial/h2frames.js';
import { until } from '../../helpers/wait.js';

const pki = inject('pki');
const LIMITS: H2Limits = {
  maxConcurrentStreams: 100,
  maxHeaderListSize: 16384,
  streamWindow: 65535,
  connectionWindow: 1 << 20,
  maxHeaderPairs: 104,
  headersTimeoutMs: 10_000,
  idleTimeoutMs: 0,
};
const closers: (() => void)[] = [];
afterEach(() => {
  for (const c of closers.splice(0).reverse()) c();
});

interface Server {
  port: number;
  sessions: H2Session[];
  streams: H2ServerStream[];
  /** What the session reported through onInternalError: where, and the error's message. */
  internalErrors: string[];
}

/** The test app: /hello, /echo (body back), /big?n=N (N bytes), /hold (never answers). */
function app(stream: H2ServerStream): void {
  const path = stream.path;
  if (path === '/hello') {
    stream.respond(200, ['content-type', 'text/plain', 'x-method', stream.method]);
    stream.end(Buffer.from('hello'));
  } else if (path === '/echo') {
    const parts: Buffer[] = [];
    stream.body?.on('data', (c: Buffer) => parts.push(c));
    stream.body?.on('end', () => {
      stream.respond(200, ['x-fields', String(stream.fields.length / 2)]);
      stream.end(Buffer.concat(parts));
    });
  } else if (path.startsWith('/big?n=')) {
    const n = Number(path.slice(7));
    const chunk = Buffer.alloc(64 * 1024, 'b');
    stream.respond(200, ['content-length', String(n)]);
    let sent = 0;
    const pump = (): void => {
      while (sent < n) {
        const c = chunk.subarray(0, Math.min(chunk.length, n - sent));
        sent += c.length;
        if (sent >= n) {
          stream.end(c);
          return;
        }
        if (!stream.write(c)) {
          stream.on('drain', pump);
          return;
        }
      }
    };
    pump();
  } else if (path === '/early') {
    stream.respond(401, []);
    stream.end(Buffer.from('no'));
  } else if (path === '/throw') {
    throw new Error('a handler bug');
  } else if (path === '/throw-on-data') {
    // A body reader with a bug: it throws when DATA is handed to it, inside the session's frame handling.
    stream.body?.on('data', () => {
      throw new Error('a body reader bug');
    });
  } else if (path === '/hold') {
    // Never answered: the client resets or the session closes.
  } else {
    stream.respond(404, []);
    stream.end();
  }
}

async function startServer(limits: H2Limits = LIMITS, handler: (s: H2ServerStream) => void = app): Promise<Server> {
  const srv: Server = { port: 0, sessions: [], streams: [], internalErrors: [] };
  const server = tls.createServer(
    {
      cert: readFileSync(pki.server.cert),
      key: readFileSync(pki.server.key),
      ca: readFileSync(pki.rootCa.cert),
      requestCert: true,
      rejectUnauthorized: true,
      ALPNProtocols: ['h2'],
    },
    (socket) => {
      const session = new H2Session(socket, limits, {
        onStream: (s) => {
          srv.streams.push(s);
          handler(s);
        },
        onInternalError: (err, where) => srv.internalErrors.push(`${where}: ${(err as Error).message}`),
      });
      srv.sessions.push(session);
    },
  );
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  closers.push(() => server.close());
  srv.port = (server.address() as AddressInfo).port;
  return srv;
}

/** The stream for `path` once the server has it (failing clearly, not with a TypeError, if it never comes). */
async function arrived(srv: Server, path: string): Promise<H2ServerStream> {
  expect(await until(() => srv.streams.some((s) => s.path === path), 5000)).toBe(true);
  return srv.streams.findLast((s) => s.path === path) as H2ServerStream;
}

const clientTls = {
  ca: readFileSync(pki.rootCa.cert),
  cert: readFileSync(pki.clients.orders.cert),
  key: readFileSync(pki.clients.orders.key),
  servername: 'localhost',
};

function connect(port: number, settings: http2.Settings = {}): http2.ClientHttp2Session {
  const c = http2.connect(`https://localhost:${port}`, { ...clientTls, settings, host: '127.0.0.1' } as http2.SecureClientSessionOptions);
  c.on('error', () => undefined);
  closers.push(() => c.destroy());
  return c;
}

function fetch2(c: http2.ClientHttp2Session, headers: http2.OutgoingHttpHeaders, body?: Buffer): Promise<{ headers: http2.IncomingHttpHeaders; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = c.request(headers, { endStream: body === undefined });
    const parts: Buffer[] = [];
    let head: http2.IncomingHttpHeaders = {};
    req.on('response', (h) => (head = h));
    req.on('data', (d: Buffer) => parts.push(d));
    req.on('end', () => resolve({ headers: head, body: Buffer.concat(parts) }));
    req.on('error', reject);
    if (body !== undefined) req.end(body);
  });
}

describe('H2Session with Node\'s HTTP/2 client', () => {
  it('serves requests, 300 of them 100 at a time on one connection', async () => {
    const srv = await startServer();
    const c = connect(srv.port);
    const one = await fetch2(c, { ':path': '/hello', 'x-a': 'b' });
    expect(one.headers[':status']).toBe(200);
    expect(one.headers['content-type']).toBe('text/plain');
    expect(one.body.toString()).toBe('hello');
    for (let round = 0; round < 3; round++) {
      const all = await Promise.all(Array.from({ length: 100 }, () => fetch2(c, { ':path': '/hello' })));
      for (const r of all) expect([r.headers[':status'], r.body.toString()]).toEqual([200, 'hello']);
    }
    expect(srv.sessions).toHaveLength(1);
    expect(srv.sessions[0]?.openStreams).toBe(0);
    const missing = await fetch2(c, { ':path': '/nope' });
    expect(missing.headers[':status']).toBe(404);
  });

  it('reads a request body far larger than its windows, giving the windows back as it reads', async () => {
    const srv = await startServer();
    const c = connect(srv.port);
    const body = Buffer.alloc(3 * 1024 * 1024 + 7);
    for (let i = 0; i < body.length; i++) body[i] = (i * 131) & 0xff;
    const r = await fetch2(c, { ':path': '/echo', ':method': 'POST', 'content-length': String(body.length) }, body);
    expect(r.headers[':status']).toBe(200);
    expect(createHash('sha256').update(r.body).digest('hex')).toBe(createHash('sha256').update(body).digest('hex'));
    // Several bodies at once share the connection window.
    const many = await Promise.all(Array.from({ length: 8 }, (_, i) => fetch2(c, { ':path': '/echo', ':method': 'PUT' }, Buffer.alloc(300_000, i))));
    many.forEach((m, i) => expect(m.body.equals(Buffer.alloc(300_000, i))).toBe(true));
  });

  it('sends a response body under a small client window, and waits for it (write false, then drain)', async () => {
    const srv = await startServer();
    const c = connect(srv.port, { initialWindowSize: 8192 });
    const n = 2 * 1024 * 1024 + 3;
    const [a, b] = await Promise.all([fetch2(c, { ':path': `/big?n=${n}` }), fetch2(c, { ':path': '/hello' })]);
    expect(a.body.length).toBe(n);
    expect(a.body.every((x) => x === 0x62)).toBe(true);
    expect(b.body.toString()).toBe('hello');
  });

  it('uploads answered before their bodies are read (RST NO_ERROR) do not count against the client', async () => {
    const srv = await startServer();
    const c = connect(srv.port);
    let goaway = false;
    c.on('goaway', () => (goaway = true));
    // 40: before the fix the client got GOAWAY after 25. (Past ~50 such streams Node's client
    // itself stops reading the answers, against node:http2's own server as well.)
    for (let i = 0; i < 40; i++) {
      const r = await fetch2(c, { ':path': '/early', ':method': 'POST' }, Buffer.alloc(256 * 1024, 1));
      expect(r.headers[':status']).toBe(401);
    }
    expect(goaway).toBe(false);
  });

  it('reads a padded body (padding given back to the windows at once)', async () => {
    const srv = await startServer();
    const c = http2.connect(`https://localhost:${srv.port}`, { ...clientTls, host: '127.0.0.1', paddingStrategy: http2.constants.PADDING_STRATEGY_MAX } as http2.SecureClientSessionOptions);
    c.on('error', () => undefined);
    closers.push(() => c.destroy());
    const body = Buffer.alloc(1024 * 1024, 7);
    const r = await fetch2(c, { ':path': '/echo', ':method': 'POST' }, body);
    expect(r.body.equals(body)).toBe(true);
  });

  it('a stream the client resets before its response ended is not writableEnded', async () => {
    const srv = await startServer();
    const c = connect(srv.port);
    const req = c.request({ ':path': '/hold' });
    req.on('error', () => undefined);
    const held = await arrived(srv, '/hold');
    held.respond(200, []);
    held.write(Buffer.from('part'));
    const closed = new Promise<void>((r) => held.on('close', r));
    req.close(http2.constants.NGHTTP2_CANCEL);
    await closed;
    expect([held.aborted, held.writableEnded]).toEqual([true, false]);
  });

  it('a stream the client resets closes as aborted; the connection goes on', async () => {
    const srv = await startServer();
    const c = connect(srv.port);
    const req = c.request({ ':path': '/hold' });
    req.on('error', () => undefined);
    const held = await arrived(srv, '/hold');
    const closed = new Promise<void>((r) => held.on('close', r));
    req.close(http2.constants.NGHTTP2_CANCEL);
    await closed;
    expect(held.aborted).toBe(true);
    expect((await fetch2(c, { ':path': '/hello' })).body.toString()).toBe('hello');
  });

  it('a graceful close lets the open stream finish, refuses new ones, then ends the connection', async () => {
    let answer: (() => void) | null = null;
    const srv = await startServer(LIMITS, (s) => {
      if (s.path === '/later') {
        answer = () => {
          s.respond(200, []);
          s.end(Buffer.from('late'));
        };
      } else app(s);
    });
    const c = connect(srv.port);
    const pending = fetch2(c, { ':path': '/later' });
    await arrived(srv, '/later');
    const goaway = new Promise<number>((r) => c.once('goaway', (_code: number, lastStreamId: number) => r(lastStreamId)));
    srv.sessions[0]?.close();
    expect(await goaway).toBe(1);
    (answer as unknown as () => void)();
    expect((await pending).body.toString()).toBe('late');
    await new Promise<void>((r) => c.once('close', r));
    expect(srv.sessions[0]?.closed).toBe(true);
  });
});

// ---- hand-built frames ---------------------------------------------------------------------

// frame() and block() (literal fields without indexing, plain strings) from the adversarial suite's helpers.
const GET = (path: string, extra: [string, string][] = []): Buffer =>
  block([[':method', 'GET'], [':scheme', 'https'], [':path', path], [':authority', 'localhost'], ...extra]);
const u32 = (v: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v);
  return b;
};

interface Frame {
  type: number;
  flags: number;
  sid: number;
  payload: Buffer;
}

/** A raw client: preface and SETTINGS sent, frames collected until the socket closes. */
async function raw(port: number, halfOpen = false): Promise<{ send: (b: Buffer) => void; frames: Frame[]; closed: Promise<void>; waitFor(pred: (f: Frame) => boolean, timeoutMs?: number): Promise<Frame> }> {
  // halfOpen: the client never closes its side when the server ends its own.
  const tcp = net.connect({ port, host: '127.0.0.1', allowHalfOpen: halfOpen });
  const sock = tls.connect({ socket: tcp, ALPNProtocols: ['h2'], ...clientTls, ...(halfOpen ? { allowHalfOpen: true } : {}) } as tls.ConnectionOptions);
  closers.push(() => sock.destroy());
  await new Promise<void>((r, j) => sock.once('secureConnect', r).once('error', j));
  const frames: Frame[] = [];
  const waiters: [(f: Frame) => boolean, (f: Frame) => void][] = [];
  const reader = new FrameReader();
  sock.on('data', (d: Buffer) => {
    for (const { type, flags, streamId, payload } of reader.push(d)) {
      const f = { type, flags, sid: streamId, payload };
      frames.push(f);
      for (const w of waiters.splice(0)) {
        if (w[0](f)) w[1](f);
        else waiters.push(w);
      }
    }
  });
  sock.on('error', () => undefined);
  const closed = new Promise<void>((r) => sock.once('close', () => r()));
  sock.write(Buffer.concat([PREFACE, frame(4, 0, 0)]));
  return {
    send: (b) => sock.write(b),
    frames,
    closed,
    // Without a bound, a frame that never comes fails only at the test's timeout.
    waitFor: (pred, timeoutMs) => {
      const seen = frames.find(pred);
      if (seen !== undefined) return Promise.resolve(seen);
      return new Promise((r, j) => {
        waiters.push([pred, r]);
        if (timeoutMs !== undefined) setTimeout(() => j(new Error(`no such frame within ${timeoutMs} ms`)), timeoutMs).unref();
      });
    },
  };
}
const isGoaway = (f: Frame): boolean => f.type === 7;
const goawayCode = (f: Frame): number => f.payload.readUInt32BE(4);
const isRst = (sid: number) => (f: Frame): boolean => f.type === 3 && f.sid === sid;
const isResponse = (sid: number) => (f: Frame): boolean => f.type === 1 && f.sid === sid;

describe('H2Session against frames no good client sends', () => {
  it('a malformed head is a stream error; the next request on the connection is served', async () => {
    const srv = await startServer();
    const c = await raw(srv.port);
    const bad: [string, Buffer][] = [
      ['upper-case name', GET('/hello', [['X-Upper', 'v']])],
      ['connection header', GET('/hello', [['connection', 'close']])],
      ['te other than trailers', GET('/hello', [['te', 'gzip']])],
      ['value with CR', GET('/hello', [['x-v', 'a\rb']])],
      ['value with leading space', GET('/hello', [['x-v', ' a']])],
      ['pseudo after regular', block([[':method', 'GET'], ['x-a', 'b'], [':scheme', 'https'], [':path', '/hello']])],
      ['duplicate :path', block([[':method', 'GET'], [':scheme', 'https'], [':path', '/a'], [':path', '/b']])],
      ['missing :path', block([[':method', 'GET'], [':scheme', 'https']])],
      ['response pseudo-header', block([[':method', 'GET'], [':scheme', 'https'], [':path', '/'], [':status', '200']])],
      ['CONNECT', block([[':method', 'CONNECT'], [':authority', 'example.com:443']])],
      ['bad content-length', GET('/hello', [['content-length', '12x']])],
      ['value with a control character', GET('/hello', [['x-v', 'a\x01b']])],
      ['value with DEL', GET('/hello', [['x-v', 'a\x7fb']])],
      ['path with a space', GET('/he llo')],
      ['scheme that is not a token', block([[':method', 'GET'], [':scheme', 'ht tp'], [':path', '/hello']])],
      ['END_STREAM with a content-length promising a body', GET('/hello', [['content-length', '5']])],
    ];
    let sid = 1;
    for (const [, b] of bad) {
      c.send(frame(1, 0x4 | 0x1, sid, b));
      const rst = await c.waitFor(isRst(sid));
      expect(rst.payload.readUInt32BE(0)).toBe(1); // PROTOCOL_ERROR
      sid += 2;
    }
    expect(srv.streams).toHaveLength(0);
    c.send(frame(1, 0x4 | 0x1, sid, GET('/hello')));
    const head = await c.waitFor(isResponse(sid));
    expect(head.payload[0]).toBe(0x88); // :status 200, static index
    expect(c.frames.some(isGoaway)).toBe(false);
  });

  const connectionErrors: [string, number, (send: (b: Buffer) => void) => void][] = [
    ['HEADERS on stream 0', 1, (send) => send(frame(1, 0x5, 0, GET('/hello')))],
    ['an even stream id', 1, (send) => send(frame(1, 0x5, 2, GET('/hello')))],
    ['a stream id going backwards', 1, (send) => send(Buffer.concat([frame(1, 0x5, 5, GET('/hello')), frame(1, 0x5, 3, GET('/hello'))]))],
    ['a broken HPACK block', 9, (send) => send(frame(1, 0x5, 1, Buffer.from([0x80])))],
    ['CONTINUATION without HEADERS', 1, (send) => send(frame(9, 0x4, 1, GET('/hello')))],
    ['another frame inside a header block', 1, (send) => send(Buffer.concat([frame(1, 0x1, 1, GET('/hello')), frame(6, 0, 0, Buffer.alloc(8))]))],
    ['a CONTINUATION flood', 11, (send) => send(Buffer.concat([frame(1, 0x1, 1, GET('/hello')), ...Array.from({ length: 70 }, () => frame(9, 0, 1))]))],
    ['PUSH_PROMISE', 1, (send) => send(frame(5, 0x4, 1, Buffer.concat([u32(2), GET('/x')])))],
    ['DATA past the connection window', 3, (send) => {
      // 18 bodies nobody reads, each within its stream window: together past the 1 MiB connection window.
      for (let sid = 1; sid <= 35; sid += 2) {
        send(frame(1, 0x4, sid, block([[':method', 'POST'], [':scheme', 'https'], [':path', '/hold']])));
        for (let i = 0; i < 4; i++) send(frame(0, 0, sid, Buffer.alloc(16383)));
      }
    }],
    ['a frame over SETTINGS_MAX_FRAME_SIZE', 6, (send) => send(frame(0, 0, 1, Buffer.alloc(16385)))],
    ['a WINDOW_UPDATE of 0 on the connection', 1, (send) => send(frame(8, 0, 0, u32(0)))],
    ['a connection window past 2^31-1', 3, (send) => send(frame(8, 0, 0, u32(2 ** 31 - 1)))],
    ['SETTINGS_INITIAL_WINDOW_SIZE past 2^31-1', 3, (send) => send(frame(4, 0, 0, Buffer.from([0, 4, 0x80, 0, 0, 0])))],
    ['a PING of the wrong size', 6, (send) => send(frame(6, 0, 0, Buffer.alloc(7)))],
    ['a PING flood', 11, (send) => send(Buffer.concat(Array.from({ length: 1100 }, () => frame(6, 0, 0, Buffer.alloc(8)))))],
    ['an empty DATA flood', 11, (send) => {
      send(frame(1, 0x4, 1, GET('/echo')));
      send(Buffer.concat(Array.from({ length: 1100 }, () => frame(0, 0, 1))));
    }],
    ['RST_STREAM on an idle stream', 1, (send) => send(frame(3, 0, 9, u32(8)))],
    ['a GOAWAY shorter than 8 bytes', 6, (send) => send(frame(7, 0, 0, u32(0)))],
    ['an HPACK integer with endless continuation bytes', 9, (send) => send(frame(1, 0x5, 1, Buffer.from([0xff, ...new Array<number>(150).fill(0x80), 0])))],
  ];
  for (const [what, code, attack] of connectionErrors) {
    it(`${what}: GOAWAY ${code} and the connection closed`, async () => {
      // headersTimeout far beyond the wait: an unfinished header block (the CONTINUATION flood)
      // must be refused by its own guard, not end by timing out.
      const srv = await startServer({ ...LIMITS, connectionWindow: 1 << 20, headersTimeoutMs: 600_000 });
      const c = await raw(srv.port);
      attack(c.send);
      const g = await c.waitFor(isGoaway, 5000);
      expect(goawayCode(g)).toBe(code);
      await c.closed;
    });
  }

  it('a bad preface: GOAWAY PROTOCOL_ERROR', async () => {
    const srv = await startServer();
    const sock = tls.connect({ port: srv.port, host: '127.0.0.1', ALPNProtocols: ['h2'], ...clientTls });
    closers.push(() => sock.destroy());
    const got: Buffer[] = [];
    sock.on('data', (d: Buffer) => got.push(d));
    sock.write('GET / HTTP/1.1\r\nhost: x\r\n\r\n');
    await new Promise((r) => sock.once('close', r));
    const all = Buffer.concat(got);
    // Our SETTINGS, then GOAWAY(PROTOCOL_ERROR).
    const at = all.indexOf(Buffer.from([0, 0, 8, 7]));
    expect(at).toBeGreaterThan(0);
    expect(all.readUInt32BE(at + 13)).toBe(1);
  });

  it('DATA past a stream window is a stream error; PING is answered with its payload', async () => {
    const srv = await startServer();
    const c = await raw(srv.port);
    // A body nobody reads: its window is not given back.
    c.send(frame(1, 0x4, 1, block([[':method', 'POST'], [':scheme', 'https'], [':path', '/hold']])));
    for (let i = 0; i < 5; i++) c.send(frame(0, 0, 1, Buffer.alloc(16384)));
    expect((await c.waitFor(isRst(1))).payload.readUInt32BE(0)).toBe(3); // FLOW_CONTROL_ERROR
    c.send(frame(6, 0, 0, Buffer.from('12345678')));
    const pong = await c.waitFor((f) => f.type === 6);
    expect([pong.flags, pong.payload.toString()]).toEqual([1, '12345678']);
    expect(c.frames.some(isGoaway)).toBe(false);
  });

  it('a body longer or shorter than its content-length is a stream error', async () => {
    const srv = await startServer();
    const c = await raw(srv.port);
    c.send(frame(1, 0x4, 1, block([[':method', 'POST'], [':scheme', 'https'], [':path', '/echo'], ['content-length', '3']])));
    c.send(frame(0, 0x1, 1, Buffer.from('four')));
    expect((await c.waitFor(isRst(1))).payload.readUInt32BE(0)).toBe(1);
    c.send(frame(1, 0x4, 3, block([[':method', 'POST'], [':scheme', 'https'], [':path', '/echo'], ['content-length', '5']])));
    c.send(frame(0, 0x1, 3, Buffer.from('four')));
    expect((await c.waitFor(isRst(3))).payload.readUInt32BE(0)).toBe(1);
  });

  it('streams past SETTINGS_MAX_CONCURRENT_STREAMS are refused, retryably', async () => {
    const srv = await startServer({ ...LIMITS, maxConcurrentStreams: 2 });
    const c = await raw(srv.port);
    for (const sid of [1, 3, 5]) c.send(frame(1, 0x5, sid, GET('/hold')));
    expect((await c.waitFor(isRst(5))).payload.readUInt32BE(0)).toBe(7); // REFUSED_STREAM
    expect(srv.streams.map((s) => s.id)).toEqual([1, 3]);
  });

  it('a head over the list size or the field count is refused on its stream (ENHANCE_YOUR_CALM), before the app', async () => {
    const srv = await startServer();
    const c = await raw(srv.port);
    // 100 fields of ~16 + 126 bytes: 104 fields in all (the limit), ~17.5 KB decoded (over 16384).
    const big: [string, string][] = Array.from({ length: 100 }, (_, i) => [`x-big-header-${i}`, 'v'.repeat(126)]);
    c.send(frame(1, 0x5, 1, GET('/hello', big)));
    c.send(frame(1, 0x5, 3, GET('/hello', Array.from({ length: 101 }, (_, i): [string, string] => [`x-${i}`, 'v'])))); // 105 fields > 104
    c.send(frame(1, 0x5, 5, GET('/hello', Array.from({ length: 100 }, (_, i): [string, string] => [`x-${i}`, 'v'])))); // 104: fine
    expect((await c.waitFor(isRst(1))).payload.readUInt32BE(0)).toBe(11);
    expect((await c.waitFor(isRst(3))).payload.readUInt32BE(0)).toBe(11);
    expect((await c.waitFor(isResponse(5))).payload[0]).toBe(0x88);
    expect(srv.streams.map((st) => st.id)).toEqual([5]);
  });

  it('a head split over frames must complete within headersTimeout', async () => {
    const srv = await startServer({ ...LIMITS, headersTimeoutMs: 200 });
    const c = await raw(srv.port);
    c.send(frame(1, 0x1, 1, GET('/hello')));
    const t0 = performance.now();
    expect(goawayCode(await c.waitFor(isGoaway))).toBe(11);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(150);
    await c.closed;
  });

  const strikes: [string, (sid: number) => Buffer[]][] = [
    ['streams over the concurrency limit (refused)', (sid) => [frame(1, 0x5, sid, GET('/hold'))]],
    ['WINDOW_UPDATE 0 on a stream (MadeYouReset)', (sid) => [frame(1, 0x4, sid, block([[':method', 'POST'], [':scheme', 'https'], [':path', '/hold']])), frame(8, 0, sid, u32(0))]],
    ['DATA after END_STREAM (MadeYouReset)', (sid) => [frame(1, 0x5, sid, GET('/hold')), frame(0, 0, sid, Buffer.from('x'))]],
    ['malformed heads', (sid) => [frame(1, 0x5, sid, GET('/hello', [['Upper', 'x']]))]],
  ];
  for (const [what, make] of strikes) {
    it(`${what}, faster than streams complete: GOAWAY ENHANCE_YOUR_CALM`, async () => {
      const srv = await startServer({ ...LIMITS, maxConcurrentStreams: 10 });
      const c = await raw(srv.port);
      const frames: Buffer[] = [];
      for (let i = 0; i < 150; i++) frames.push(...make(1 + 2 * i));
      c.send(Buffer.concat(frames));
      expect(goawayCode(await c.waitFor(isGoaway))).toBe(11);
      await c.closed;
    });
  }

  it('rapid reset with RST_STREAM NO_ERROR counts too', async () => {
    const srv = await startServer();
    const c = await raw(srv.port);
    const burst: Buffer[] = [];
    for (let i = 0; i < 150; i++) burst.push(frame(1, 0x5, 1 + 2 * i, GET('/hold')), frame(3, 0, 1 + 2 * i, u32(0)));
    c.send(Buffer.concat(burst));
    expect(goawayCode(await c.waitFor(isGoaway))).toBe(11);
  });

  it('a stream that depends on itself is a stream error; trailers on a half-closed stream too; the connection goes on', async () => {
    const srv = await startServer();
    const c = await raw(srv.port);
    const prio = Buffer.concat([u32(1), Buffer.from([16]), GET('/hello')]);
    c.send(frame(1, 0x5 | 0x20, 1, prio));
    expect((await c.waitFor(isRst(1))).payload.readUInt32BE(0)).toBe(1);
    c.send(frame(1, 0x5, 3, GET('/hold')));
    await arrived(srv, '/hold');
    c.send(frame(1, 0x5, 3, block([['x-trailer', 'late']])));
    expect((await c.waitFor(isRst(3))).payload.readUInt32BE(0)).toBe(5); // STREAM_CLOSED
    c.send(frame(1, 0x5, 5, GET('/hello')));
    expect((await c.waitFor(isResponse(5))).payload[0]).toBe(0x88);
    expect(c.frames.some(isGoaway)).toBe(false);
  });

  it('never sends WINDOW_UPDATE 0, also with the connection window nearly spent by unread bodies', async () => {
    const srv = await startServer();
    const c = await raw(srv.port);
    // 16 bodies nobody reads, 65,532 bytes each: the connection window is down to 1,064.
    for (let sid = 1; sid <= 31; sid += 2) {
      c.send(frame(1, 0x4, sid, block([[':method', 'POST'], [':scheme', 'https'], [':path', '/hold']])));
      for (let i = 0; i < 4; i++) c.send(frame(0, 0, sid, Buffer.alloc(16383)));
    }
    c.send(frame(1, 0x4, 33, block([[':method', 'POST'], [':scheme', 'https'], [':path', '/echo']])));
    c.send(frame(0, 0x1, 33, Buffer.from('tail')));
    await c.waitFor(isResponse(33));
    expect(c.frames.filter((f) => f.type === 8 && f.payload.readUInt32BE(0) === 0)).toEqual([]);
    expect(c.frames.some(isGoaway)).toBe(false);
  });

  it('a request head and body delivered a byte per write is read whole', async () => {
    const srv = await startServer();
    const c = await raw(srv.port);
    const bytes = Buffer.concat([
      frame(1, 0x4, 1, block([[':method', 'POST'], [':scheme', 'https'], [':path', '/echo']])),
      frame(0, 0x1, 1, Buffer.from('split into many reads')),
    ]);
    for (const b of bytes) {
      c.send(Buffer.from([b]));
      await new Promise((r) => setImmediate(r));
    }
    await c.waitFor((f) => f.type === 0 && f.sid === 1);
    const data = c.frames.filter((f) => f.type === 0 && f.sid === 1).map((f) => f.payload.toString()).join('');
    expect(data).toBe('split into many reads');
  });

  it('a handler that throws costs its stream only, and is reported', async () => {
    const srv = await startServer();
    const c = await raw(srv.port);
    c.send(frame(1, 0x5, 1, GET('/throw')));
    expect((await c.waitFor(isRst(1))).payload.readUInt32BE(0)).toBe(2); // INTERNAL_ERROR
    c.send(frame(1, 0x5, 3, GET('/hello')));
    expect((await c.waitFor(isResponse(3))).payload[0]).toBe(0x88);
    expect(srv.internalErrors).toEqual(['h2: a handler bug']);
  });

  it('a bug met in frame handling costs the connection (GOAWAY INTERNAL_ERROR), is reported, and the server goes on', async () => {
    const srv = await startServer();
    const c = await raw(srv.port);
    c.send(frame(1, 0x4, 1, block([[':method', 'POST'], [':scheme', 'https'], [':path', '/throw-on-data']])));
    // The DATA in a later read, once the body is flowing: it reaches the reader inside the frame's handling.
    await vi.waitFor(() => expect(srv.streams).toHaveLength(1), { timeout: 5000 });
    c.send(frame(0, 0, 1, Buffer.from('x')));
    expect(goawayCode(await c.waitFor(isGoaway))).toBe(2);
    await c.closed;
    expect(srv.internalErrors).toEqual(['h2_frame: a body reader bug']);
    const next = await raw(srv.port);
    next.send(frame(1, 0x5, 1, GET('/hello')));
    expect((await next.waitFor(isResponse(1))).payload[0]).toBe(0x88);
  });

  it('idle: a connection with no streams gets GOAWAY; one stuck with an open stream is cut', async () => {
    const srv = await startServer({ ...LIMITS, idleTimeoutMs: 200 });
    const quiet = await raw(srv.port);
    expect(goawayCode(await quiet.waitFor(isGoaway))).toBe(0);
    await quiet.closed;
    const stuck = await raw(srv.port);
    stuck.send(frame(1, 0x5, 1, GET('/hold')));
    const t0 = performance.now();
    await stuck.closed;
    expect(performance.now() - t0).toBeGreaterThanOrEqual(150);
  });

  it('idle: a client that never closes its side after GOAWAY is cut at the next timeout', async () => {
    const srv = await startServer({ ...LIMITS, idleTimeoutMs: 150 });
    const c = await raw(srv.port, true);
    expect(goawayCode(await c.waitFor(isGoaway))).toBe(0);
    // The client holds its side open (it never learns of the cut): the server's socket closes.
    const socket = (srv.sessions[0] as H2Session).socket;
    const t0 = performance.now();
    if (!socket.destroyed) await new Promise((r) => socket.once('close', r));
    expect(performance.now() - t0).toBeGreaterThanOrEqual(100);
  });

  it('resets mixed with cheap completed streams: the reset budget still runs out', async () => {
    const srv = await startServer();
    const c = await raw(srv.port);
    // Each round: 10 streams the app answers at once, 10 reset before their answer.
    let sid = 1;
    for (let round = 0; round < 40 && c.frames.every((f) => !isGoaway(f)); round++) {
      const frames: Buffer[] = [];
      for (let i = 0; i < 10; i++) {
        frames.push(frame(1, 0x5, sid, GET('/hello')));
        frames.push(frame(1, 0x5, sid + 2, GET('/hold')), frame(3, 0, sid + 2, u32(8)));
        sid += 4;
      }
      c.send(Buffer.concat(frames));
      await new Promise((r) => setTimeout(r, 2));
    }
    expect(goawayCode(await c.waitFor(isGoaway))).toBe(11);
    // Past the burst (200) and before 400 resets.
    expect(srv.streams.filter((s) => s.path === '/hold').length).toBeLessThan(400);
  });

  // h2spec's three stream-state cases, and the late DATA RFC 9113 5.1 says to ignore, side by side.
  const POST = (path: string): Buffer => block([[':method', 'POST'], [':scheme', 'https'], [':path', path], [':authority', 'localhost']]);

  it('h2spec http2/5.1/8: DATA on a stream the client reset is a stream error STREAM_CLOSED, answered once; the connection goes on', async () => {
    const srv = await startServer();
    const c = await raw(srv.port);
    c.send(Buffer.concat([frame(1, 0x4, 1, POST('/hold')), frame(3, 0, 1, u32(8)), frame(0, 0x1, 1, Buffer.from('test'))]));
    expect((await c.waitFor(isRst(1))).payload.readUInt32BE(0)).toBe(5); // STREAM_CLOSED
    // Once we have reset it too, its late frames are ignored: no second RST_STREAM.
    c.send(frame(0, 0, 1, Buffer.from('more')));
    c.send(frame(1, 0x5, 3, GET('/hello')));
    expect((await c.waitFor(isResponse(3))).payload[0]).toBe(0x88);
    expect(c.frames.filter(isRst(1))).toHaveLength(1);
    expect(c.frames.some(isGoaway)).toBe(false);
  });

  it('h2spec http2/5.1/11: DATA on a stream closed by END_STREAM both ways is a connection error STREAM_CLOSED', async () => {
    const srv = await startServer();
    const c = await raw(srv.port);
    c.send(frame(1, 0x5, 1, GET('/hello')));
    await c.waitFor((f) => f.type === 0 && f.sid === 1 && (f.flags & 0x1) !== 0);
    c.send(frame(0, 0x1, 1, Buffer.from('test')));
    expect(goawayCode(await c.waitFor(isGoaway))).toBe(5); // STREAM_CLOSED
    await c.closed;
  });

  it('h2spec http2/5.3.1/2: a PRIORITY frame making a stream depend on itself is a stream error PROTOCOL_ERROR; other priorities are still ignored', async () => {
    const srv = await startServer();
    const c = await raw(srv.port);
    c.send(frame(2, 0, 1, Buffer.concat([u32(1), Buffer.from([255])])));
    expect((await c.waitFor(isRst(1))).payload.readUInt32BE(0)).toBe(1); // PROTOCOL_ERROR
    c.send(frame(2, 0, 3, Buffer.concat([u32(1), Buffer.from([16])])));
    c.send(frame(1, 0x5, 5, GET('/hello')));
    expect((await c.waitFor(isResponse(5))).payload[0]).toBe(0x88);
    expect(c.frames.filter(isRst(3))).toEqual([]);
    expect(c.frames.some(isGoaway)).toBe(false);
  });

  // h2spec http2/8.1.2.1/3 and 8.1.2.2: a trailer section with a pseudo-header or a
  // connection-specific field makes the request malformed (RFC 9113 8.1, 8.2.2).
  const badTrailers: [string, [string, string][]][] = [
    ['a pseudo-header', [[':path', '/admin']]],
    ['a connection-specific field', [['connection', 'close']]],
    ['an upper-case name', [['X-Trailer', 'a']]],
  ];
  for (const [what, trailer] of badTrailers) {
    it(`a trailer section with ${what} is a stream error PROTOCOL_ERROR; well-formed trailers end the request; the connection goes on`, async () => {
      const srv = await startServer();
      const c = await raw(srv.port);
      c.send(Buffer.concat([frame(1, 0x4, 1, POST('/hold')), frame(0, 0, 1, Buffer.from('abc')), frame(1, 0x5, 1, block(trailer))]));
      expect((await c.waitFor(isRst(1))).payload.readUInt32BE(0)).toBe(1); // PROTOCOL_ERROR
      c.send(Buffer.concat([frame(1, 0x4, 3, POST('/echo')), frame(0, 0, 3, Buffer.from('abc')), frame(1, 0x5, 3, block([['x-trailer', 'ok']]))]));
      expect((await c.waitFor(isResponse(3))).payload[0]).toBe(0x88);
      expect(c.frames.filter(isRst(3))).toEqual([]);
      expect(c.frames.some(isGoaway)).toBe(false);
    });
  }

  it('late DATA on a stream we closed first (answered early, RST_STREAM NO_ERROR) is ignored, unlike 5.1/8 and 5.1/11', async () => {
    const srv = await startServer();
    const c = await raw(srv.port);
    c.send(frame(1, 0x4, 1, POST('/early')));
    expect((await c.waitFor(isRst(1))).payload.readUInt32BE(0)).toBe(0); // NO_ERROR, after the whole answer
    c.send(Buffer.concat([frame(0, 0, 1, Buffer.from('late')), frame(0, 0x1, 1, Buffer.from('end'))]));
    c.send(frame(1, 0x5, 3, GET('/hello')));
    expect((await c.waitFor(isResponse(3))).payload[0]).toBe(0x88);
    expect(c.frames.filter(isRst(1))).toHaveLength(1);
    expect(c.frames.some(isGoaway)).toBe(false);
  });

  it('late DATA on a stream closed long ago is ignored (no RST, no strike)', async () => {
    const srv = await startServer({ ...LIMITS, maxConcurrentStreams: 2 });
    const c = await raw(srv.port);
    c.send(frame(1, 0x5, 1, GET('/hello')));
    await c.waitFor((f) => f.type === 0 && f.sid === 1);
    // 300 more streams come and go, then DATA arrives for stream 1.
    for (let i = 1; i <= 300; i++) c.send(frame(1, 0x5, 1 + 2 * i, GET('/hello')));
    await c.waitFor((f) => f.type === 0 && f.sid === 601);
    for (let i = 0; i < 150; i++) c.send(frame(0, 0, 1, Buffer.from('late')));
    c.send(frame(6, 0, 0, Buffer.from('pingpong')));
    await c.waitFor((f) => f.type === 6);
    expect(c.frames.filter(isRst(1))).toEqual([]);
    expect(c.frames.some(isGoaway)).toBe(false);
  });

  it('rapid reset: a client that opens and resets streams in a loop gets ENHANCE_YOUR_CALM', async () => {
    const srv = await startServer();
    const c = await raw(srv.port);
    const burst: Buffer[] = [];
    for (let i = 0; i < 150; i++) {
      const sid = 1 + 2 * i;
      burst.push(frame(1, 0x5, sid, GET('/hold')), frame(3, 0, sid, u32(8)));
    }
    c.send(Buffer.concat(burst));
    expect(goawayCode(await c.waitFor(isGoaway))).toBe(11);
    await c.closed;
    expect(srv.streams.length).toBeLessThanOrEqual(RAPID_CAP);
  });
});

/** Streams reach the app until the guard trips at RAPID_RESET_MIN resets. */
const RAPID_CAP = 101;
