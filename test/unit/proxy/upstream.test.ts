/**
 * The upstream client (undici's Pool behind the UpstreamClient interface, proxy/undici-upstream.ts),
 * against scripted apps on real loopback sockets: each app is a raw TCP server that answers with
 * exactly the bytes a test needs (keep-alive races, interim responses, close-delimited bodies,
 * oversized heads, extra bytes).
 */
import net from 'node:net';
import { once } from 'node:events';
import { Worker } from 'node:worker_threads';
import { Readable } from 'node:stream';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { UndiciUpstream } from '../../../src/proxy/undici-upstream.js';
import { BodyMeter } from '../../../src/proxy/forward.js';
import type { UpstreamClient, UpstreamControl, UpstreamHandler, UpstreamOptions, UpstreamRequest } from '../../../src/proxy/upstream.js';
import { nativeTimerFires, until } from '../../helpers/wait.js';

interface Result {
  status: number;
  headers: string[];
  body: string;
  error: (Error & { code?: string }) | null;
}

/**
 * After the immediates queued in this turn of the event loop, undici's among them: undici hands
 * a connection back to its pool only in a setImmediate queued after the response's end (it waits
 * for a close the app may send right after it), so a request made before that opens a new one.
 */
function afterTurn(f: () => void): void {
  setImmediate(() => setImmediate(f));
}

/**
 * Collects one exchange; resolves when it completes or fails, after the turn (afterTurn).
 * `slowReader`: the handler says it is full on every chunk and resumes `slowReader` ms later (a
 * client slower than the app).
 */
function exchange(pool: UpstreamClient, req: Partial<UpstreamRequest> & { path: string }, slowReader = 0, reads?: { chunks: number; sinceResume: number; most: number }): Promise<Result> {
  return new Promise((resolve) => {
    const r: Result = { status: 0, headers: [], body: '', error: null };
    let control: UpstreamControl | null = null;
    const h: UpstreamHandler = {
      onConnect(c: UpstreamControl) {
        control = c;
      },
      onHeaders(status, raw) {
        r.status = status;
        r.headers = raw;
        return true;
      },
      onData(chunk) {
        r.body += chunk.toString('latin1');
        if (reads !== undefined) {
          reads.chunks++;
          reads.most = Math.max(reads.most, ++reads.sinceResume);
        }
        if (slowReader === 0) return true;
        setTimeout(() => {
          if (reads !== undefined) reads.sinceResume = 0;
          control?.resume();
        }, slowReader);
        return false;
      },
      onComplete() {
        afterTurn(() => resolve(r));
      },
      onError(err) {
        r.error = err;
        afterTurn(() => resolve(r));
      },
    };
    pool.dispatch({ method: 'GET', headers: ['host', 'app'], body: null, ...req }, h);
  });
}

/** A raw app: `answer` gets each connection's received bytes so far and may write/close. */
interface ScriptedApp {
  port: number;
  connections: number;
  received: string[];
  close(): Promise<void>;
}

async function scriptedApp(answer: (sock: net.Socket, request: string, index: number, conn: number) => void): Promise<ScriptedApp> {
  const app: ScriptedApp = { port: 0, connections: 0, received: [], close: () => Promise.resolve() };
  const sockets = new Set<net.Socket>();
  const server = net.createServer((sock) => {
    const conn = app.connections++;
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    sock.on('error', () => undefined);
    let buf = '';
    sock.on('data', (d) => {
      buf += d.toString('latin1');
      // One request per head (bodies in these tests are framed by Content-Length or chunked and small).
      for (;;) {
        const end = buf.indexOf('\r\n\r\n');
        if (end === -1) return;
        let total = end + 4;
        const cl = /content-length: (\d+)/i.exec(buf.slice(0, end));
        if (cl) total += Number(cl[1]);
        else if (/transfer-encoding: chunked/i.test(buf.slice(0, end))) {
          const z = buf.indexOf('0\r\n\r\n', end);
          if (z === -1) return;
          total = z + 5;
        }
        if (buf.length < total) return;
        const request = buf.slice(0, total);
        buf = buf.slice(total);
        app.received.push(request);
        answer(sock, request, app.received.length - 1, conn);
      }
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  app.port = (server.address() as net.AddressInfo).port;
  app.close = async () => {
    for (const s of sockets) s.destroy();
    await new Promise((r) => server.close(() => r(undefined)));
  };
  return app;
}

const OK = 'HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok';

/** A request as the app received it, its header lines sorted (undici puts its own where it likes). */
function normalized(request: string): string {
  const end = request.indexOf('\r\n\r\n');
  const [line, ...headers] = request.slice(0, end).split('\r\n');
  return [line, ...headers.sort(), '', request.slice(end + 4)].join('\n');
}

/**
 * A limit above 1 s (undici's own timers for those tick every ~0.5 s: a 1.5 s limit fired up to
 * ~0.5 s late), and how long after a native timer armed at the same moment the answer may come:
 * the path from the timer to the caller. The event loop's lag on a busy machine delays both
 * alike. A limit never fires early; 1 ms is the timer clock's resolution.
 */
const LIMIT_MS = 1_500;
const AFTER_NATIVE_MS = 250;

/** A request body as the app received it: de-chunked, or as it came. */
function bodyOf(request: string): string {
  const end = request.indexOf('\r\n\r\n');
  const rest = request.slice(end + 4);
  if (!/transfer-encoding: chunked/i.test(request.slice(0, end))) return rest;
  let out = '';
  for (let at = 0; ; ) {
    const eol = rest.indexOf('\r\n', at);
    const size = parseInt(rest.slice(at, eol), 16);
    if (size === 0) return out;
    out += rest.slice(eol + 2, eol + 2 + size);
    at = eol + 2 + size + 2;
  }
}

let pools: UpstreamClient[] = [];
let apps: ScriptedApp[] = [];
function track<P extends UpstreamClient>(p: P): P {
  pools.push(p);
  return p;
}
async function app(answer: Parameters<typeof scriptedApp>[0]): Promise<ScriptedApp> {
  const a = await scriptedApp(answer);
  apps.push(a);
  return a;
}
afterEach(async () => {
  await Promise.all(pools.map((p) => p.close()));
  await Promise.all(apps.map((a) => a.close()));
  pools = [];
  apps = [];
});

describe("upstream client (undici's Pool)", () => {
  function pool(port: number, timeoutMs = 5_000, o: Partial<UpstreamOptions> = {}): UpstreamClient {
    return track(new UndiciUpstream({ origin: `http://127.0.0.1:${port}`, connectTimeoutMs: 1_000, timeoutMs, ...o }));
  }

  it('keeps one connection alive across sequential requests and writes one well-formed head', async () => {
    const a = await app((s) => s.write(OK));
    const p = pool(a.port);
    for (let i = 0; i < 3; i++) expect((await exchange(p, { path: `/r${i}` })).body).toBe('ok');
    expect(a.connections).toBe(1);
    expect(normalized(a.received[0] as string)).toBe(normalized('GET /r0 HTTP/1.1\r\nhost: app\r\nconnection: keep-alive\r\n\r\n'));
    expect(p.stats).toEqual({ running: 0, connected: 1, free: 1 });
  });

  it('sends a bodiless GET again on a new connection when the reused one was closed by the app (keep-alive race)', async () => {
    // The app answers the first request of each connection, and closes instead of answering the second.
    const a = await app((s) => {
      if ((s as net.Socket & { n?: number }).n === undefined) {
        (s as net.Socket & { n?: number }).n = 1;
        s.write(OK);
      } else s.destroy();
    });
    const p = pool(a.port);
    expect((await exchange(p, { path: '/1' })).status).toBe(200);
    const second = await exchange(p, { path: '/2' });
    expect(second.error).toBeNull();
    expect(second.status).toBe(200);
    expect(a.connections).toBe(2);
    expect(a.received.map((r) => r.split(' ')[1])).toEqual(['/1', '/2', '/2']);
  });

  it('does not send a POST again after the same race: the exchange fails as unreachable', async () => {
    const a = await app((s) => {
      if ((s as net.Socket & { n?: number }).n === undefined) {
        (s as net.Socket & { n?: number }).n = 1;
        s.write(OK);
      } else s.destroy();
    });
    const p = pool(a.port);
    expect((await exchange(p, { path: '/1' })).status).toBe(200);
    const post = await exchange(p, { path: '/2', method: 'POST', headers: ['host', 'app', 'content-length', '2'], body: Readable.from([Buffer.from('hi')]) });
    expect(post.error?.code).toMatch(/^(ERR_UPSTREAM_CLOSED|ECONNRESET|EPIPE)$/);
    expect(a.received.filter((r) => r.startsWith('POST')).length).toBe(1);
  });

  it("closes an idle connection before the app's Keep-Alive timeout (timeout=1 leaves no time: never reused)", async () => {
    const a = await app((s) => s.write('HTTP/1.1 200 OK\r\nkeep-alive: timeout=1\r\ncontent-length: 2\r\n\r\nok'));
    const p = pool(a.port);
    await exchange(p, { path: '/1' });
    await exchange(p, { path: '/2' });
    expect(a.connections).toBe(2);
  });

  it('skips interim responses, reads a close-delimited body to the end, and never reuses that connection', async () => {
    const a = await app((s) => {
      s.write('HTTP/1.1 103 Early Hints\r\nlink: </a.css>; rel=preload\r\n\r\n');
      s.end('HTTP/1.1 200 OK\r\nx-app: 1\r\n\r\nall of it, until the end');
    });
    const p = pool(a.port);
    const r = await exchange(p, { path: '/' });
    expect(r.status).toBe(200);
    expect(r.headers).toEqual(['x-app', '1']);
    expect(r.body).toBe('all of it, until the end');
    await exchange(p, { path: '/again' });
    expect(a.connections).toBe(2);
  });

  it('reads no body after a HEAD response with a Content-Length, and reuses the connection', async () => {
    const a = await app((s) => s.write('HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n'));
    const p = pool(a.port);
    const r = await exchange(p, { path: '/', method: 'HEAD' });
    expect(r.error).toBeNull();
    expect(r.body).toBe('');
    const a2 = await exchange(p, { path: '/', method: 'HEAD' });
    expect(a2.status).toBe(200);
    expect(a.connections).toBe(1);
  });

  it('fails a response head over 64 KiB, and one that does not parse, as bad responses', async () => {
    const big = await app((s) => s.write(`HTTP/1.1 200 OK\r\nx-big: ${'a'.repeat(70 * 1024)}\r\ncontent-length: 0\r\n\r\n`));
    expect((await exchange(pool(big.port), { path: '/' })).error?.code).toBe('ERR_UPSTREAM_BAD_RESPONSE');
    const junk = await app((s) => s.write('HTTP/1.1 2OO OK\r\n\r\n'));
    expect((await exchange(pool(junk.port), { path: '/' })).error?.code).toBe('ERR_UPSTREAM_BAD_RESPONSE');
  });

  it('delivers a response followed by bytes nobody asked for, then drops that connection', async () => {
    const a = await app((s) => s.write(`${OK}HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nextra`));
    const p = pool(a.port);
    const r = await exchange(p, { path: '/' });
    expect(r.body).toBe('ok');
    await exchange(p, { path: '/2' });
    expect(a.connections).toBe(2);
  });

  it('refuses a header value with CR/LF before writing anything, and the connection stays usable', async () => {
    const a = await app((s) => s.write(OK));
    const p = pool(a.port);
    await exchange(p, { path: '/warm' });
    const r = await exchange(p, { path: '/', headers: ['host', 'app', 'x-sub', 'a\r\nx-admin: 1'] });
    expect(r.error?.code).toBe('ERR_UPSTREAM_BAD_HEADER');
    expect((await exchange(p, { path: '/after' })).body).toBe('ok');
    expect(a.received.join('')).not.toContain('x-admin');
    expect(a.connections).toBe(1);
  });

  it('refuses a bodiless request that declares a Content-Length (the next request would be its body), nothing written', async () => {
    const a = await app((s) => s.write(OK));
    const p = pool(a.port);
    await exchange(p, { path: '/warm' });
    const r = await exchange(p, { path: '/', method: 'POST', headers: ['host', 'app', 'content-length', '40'] });
    expect(r.error?.code).toBe('ERR_UPSTREAM_BAD_HEADER');
    expect((await exchange(p, { path: '/after' })).body).toBe('ok');
    expect(a.received.join('')).not.toContain('content-length: 40');
    expect(a.connections).toBe(1);
  });

  it('sends a body of unknown length chunked, and frames an empty POST with content-length: 0', async () => {
    const a = await app((s) => s.write(OK));
    const p = pool(a.port);
    await exchange(p, { path: '/c', method: 'POST', body: Readable.from([Buffer.from('abc'), Buffer.from('defgh')]) });
    await exchange(p, { path: '/e', method: 'POST' });
    expect(normalized(a.received[0] as string)).toBe(normalized('POST /c HTTP/1.1\r\nhost: app\r\nconnection: keep-alive\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n5\r\ndefgh\r\n0\r\n\r\n'));
    expect(a.received[1]).toContain('\r\ncontent-length: 0\r\n');
  });

  it('fails a body shorter than its Content-Length instead of leaving the app waiting', async () => {
    const a = await app((s) => s.write(OK));
    const p = pool(a.port);
    const r = await exchange(p, { path: '/', method: 'PUT', headers: ['host', 'app', 'content-length', '10'], body: Readable.from([Buffer.from('short')]) });
    expect(r.error?.code).toBe('ERR_UPSTREAM_LENGTH_MISMATCH');
  });

  it('times out an app that sends no response head, and one that stalls mid-body', async () => {
    const silent = await app(() => undefined);
    const r1 = await exchange(pool(silent.port, 150), { path: '/' });
    expect(r1.error?.code).toBe('ERR_UPSTREAM_HEADERS_TIMEOUT');
    const stall = await app((s) => s.write('HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nfive!'));
    const r2 = await exchange(pool(stall.port, 150), { path: '/' });
    expect(r2.status).toBe(200);
    expect(r2.error?.code).toBe('ERR_UPSTREAM_BODY_TIMEOUT');
  });

  it('fires a timeout above 1 s when it is due: no response head, and a body that stalls', async () => {
    const silent = await app(() => undefined);
    const stall = await app((s) => s.write('HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nfive!'));
    const timed = async (port: number): Promise<{ r: Result; took: number; afterNative: number }> => {
      const t0 = performance.now();
      const native = nativeTimerFires(LIMIT_MS);
      const r = await exchange(pool(port, LIMIT_MS), { path: '/' });
      const end = performance.now();
      return { r, took: end - t0, afterNative: end - (await native) };
    };
    // Side by side: one wait for both.
    const [head, body] = await Promise.all([timed(silent.port), timed(stall.port)]);
    expect(head.r.error?.code).toBe('ERR_UPSTREAM_HEADERS_TIMEOUT');
    expect(body.r.error?.code).toBe('ERR_UPSTREAM_BODY_TIMEOUT');
    expect(body.r.body).toBe('five!');
    for (const { took, afterNative } of [head, body]) {
      expect(took).toBeGreaterThanOrEqual(LIMIT_MS - 1);
      expect(afterNative).toBeLessThan(AFTER_NATIVE_MS);
    }
  });

  it('gives up on a connection the app never accepts after connectTimeout, and does not send the request again', async () => {
    // An app whose accept queue is full: a listener (backlog 1; Node reads 0 as its default) in a worker whose event loop is
    // blocked, so nothing is ever accepted; queued connections fill it and Linux then drops
    // further SYNs, so a connect neither succeeds nor fails. All on loopback.
    const gate = new Int32Array(new SharedArrayBuffer(4));
    const worker = new Worker(
      `const net = require('node:net');
       const { parentPort, workerData } = require('node:worker_threads');
       const server = net.createServer().listen({ port: 0, host: '127.0.0.1', backlog: 1 }, () => {
         parentPort.postMessage(server.address().port);
         Atomics.wait(workerData, 0, 0);
         server.close();
       });`,
      { eval: true, workerData: gate },
    );
    const fillers: net.Socket[] = [];
    try {
      const [port] = (await once(worker, 'message')) as [number];
      for (let i = 0; i < 4; i++) fillers.push(net.connect(port, '127.0.0.1').on('error', () => undefined));
      // Two fill the queue (backlog 1 holds two); the other two, and the pool's, are dropped.
      await Promise.all(fillers.slice(0, 2).map((f) => once(f, 'connect')));
      const connects = vi.spyOn(net, 'connect');
      const p = pool(port, 5_000, { connectTimeoutMs: LIMIT_MS });
      const t0 = performance.now();
      const native = nativeTimerFires(LIMIT_MS);
      const r = await exchange(p, { path: '/' });
      const end = performance.now();
      const took = end - t0;
      expect(r.error?.code).toBe('ERR_UPSTREAM_CONNECT_TIMEOUT');
      expect(took).toBeGreaterThanOrEqual(LIMIT_MS - 1);
      // One connection tried, not a second one for the (bodiless, retryable) GET.
      expect(connects).toHaveBeenCalledTimes(1);
      expect(end - (await native)).toBeLessThan(AFTER_NATIVE_MS);
      connects.mockRestore();
    } finally {
      for (const f of fillers) f.destroy();
      Atomics.store(gate, 0, 1);
      Atomics.notify(gate, 0);
      await worker.terminate();
    }
  });

  it('a request body that fails before the connection is up ends the exchange with its error (nothing uncaught)', async () => {
    const a = await app(() => undefined);
    const meter = new BodyMeter(10);
    Readable.from([Buffer.alloc(100)]).pipe(meter);
    const r = await exchange(pool(a.port), { path: '/', method: 'POST', body: meter });
    expect(r.error?.code).toBe('ERR_BODY_TOO_LARGE');
  });

  it('stops parsing when the reader is full and goes on where it stopped on resume (one chunk per resume)', async () => {
    let body = '';
    for (let i = 0; i < 50; i++) body += `1\r\n${String.fromCharCode(65 + (i % 26))}\r\n`;
    const a = await app((s) => s.write(`HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n${body}0\r\n\r\n`));
    const reads = { chunks: 0, sinceResume: 0, most: 0 };
    const p = pool(a.port);
    const r = await exchange(p, { path: '/' }, 2, reads);
    expect(r.error).toBeNull();
    expect(r.body).toBe('ABCDEFGHIJKLMNOPQRSTUVWXYZABCDEFGHIJKLMNOPQRSTUVWX');
    expect(reads.chunks).toBe(50);
    // Never a second chunk before the resume that follows the first (all 50 arrived in one read).
    expect(reads.most).toBe(1);
    // The connection went back to the pool and carries the next request.
    expect((await exchange(p, { path: '/2' })).status).toBe(200);
    expect(a.connections).toBe(1);
  });

  it('does not time the app out while the client is the slow one (reading, or uploading)', async () => {
    const big = 'x'.repeat(200_000);
    const a = await app((s) => s.write(`HTTP/1.1 200 OK\r\ncontent-length: ${big.length}\r\n\r\n${big}`));
    const p = pool(a.port, 100);
    // The reader pauses 300 ms per chunk: longer than the 100 ms timeout, every time.
    const slowRead = await exchange(p, { path: '/' }, 300);
    expect(slowRead.error).toBeNull();
    expect(slowRead.body.length).toBe(big.length);
    const upload = new Readable({ read() {} });
    upload.push(Buffer.from('ab'));
    setTimeout(() => {
      upload.push(Buffer.from('cd'));
      upload.push(null);
    }, 350);
    const slowUpload = await exchange(p, { path: '/up', method: 'PUT', headers: ['host', 'app', 'content-length', '4'], body: upload });
    expect(slowUpload.error).toBeNull();
    expect(slowUpload.status).toBe(200);
  }, 20_000);

  it("never reuses an idle connection past the app's Keep-Alive timeout less 2 s", async () => {
    const a = await app((s) => s.write('HTTP/1.1 200 OK\r\nkeep-alive: timeout=3\r\ncontent-length: 2\r\n\r\nok'));
    const p = pool(a.port);
    await exchange(p, { path: '/1' });
    await exchange(p, { path: '/2' });
    expect(a.connections).toBe(1); // young: reused
    await new Promise((r) => setTimeout(r, 1_100));
    await exchange(p, { path: '/3' });
    expect(a.connections).toBe(2); // past 3 s - 2 s: a new connection, before the app's own close
  });

  it('timeout 0 and connectTimeout 0 mean no limit (as with undici)', async () => {
    const a = await app((s) => setTimeout(() => s.write(OK), 60));
    const p = pool(a.port, 0, { connectTimeoutMs: 0 });
    const r = await exchange(p, { path: '/' });
    expect(r.error).toBeNull();
    expect(r.body).toBe('ok');
  });

  it('skips an empty chunk of a body of unknown length (it would read as the last chunk: smuggling)', async () => {
    const a = await app((s) => s.write(OK));
    const p = pool(a.port);
    const body = new Readable({ read() {} });
    body.push(Buffer.from('a'));
    body.push(Buffer.alloc(0));
    body.push(Buffer.from('GET /smuggled HTTP/1.1\r\nhost: x\r\n\r\n'));
    body.push(null);
    await exchange(p, { path: '/', method: 'POST', body });
    expect(a.received).toHaveLength(1);
    // undici reads a body that has already ended to its end first and sends it with a length.
    expect(bodyOf(a.received[0] as string)).toBe('aGET /smuggled HTTP/1.1\r\nhost: x\r\n\r\n');
  });

  it('fails an exchange over a 100 Continue the app sends unasked: a bad response', async () => {
    const a = await app((s) => s.write(`HTTP/1.1 100 Continue\r\n\r\n${OK}`));
    const r = await exchange(pool(a.port), { path: '/' });
    // undici destroys the connection over a 100 before the handler hears of it (the sidecar
    // never sends Expect upstream, so an app that sends one is misbehaving).
    expect(r.error?.code).toBe('ERR_UPSTREAM_BAD_RESPONSE');
  });

  it('ends an exchange held open by endless interim responses', async () => {
    const a = await app((s) => s.write('HTTP/1.1 103 Early Hints\r\n\r\n'.repeat(11) + OK));
    expect((await exchange(pool(a.port), { path: '/' })).error?.code).toBe('ERR_UPSTREAM_BAD_RESPONSE');
  });

  it('sends the origin as Host when the request carries none', async () => {
    const a = await app((s) => s.write(OK));
    await exchange(pool(a.port), { path: '/', headers: ['x-a', '1'] });
    expect(normalized(a.received[0] as string)).toBe(normalized(`GET / HTTP/1.1\r\nx-a: 1\r\nhost: 127.0.0.1:${a.port}\r\nconnection: keep-alive\r\n\r\n`));
  });

  it('does not relay a switch of protocols (101): a bad response', async () => {
    const a = await app((s) => s.write('HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n'));
    expect((await exchange(pool(a.port), { path: '/' })).error?.code).toBe('ERR_UPSTREAM_BAD_RESPONSE');
  });

  it('keeps trailers of a chunked response out of the headers it handed on', async () => {
    const a = await app((s) => s.write('HTTP/1.1 200 OK\r\nx-head: 1\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nx-trailer: t\r\n\r\n'));
    const r = await exchange(pool(a.port), { path: '/' });
    expect(r.body).toBe('ok');
    expect(r.headers).toEqual(['x-head', '1', 'transfer-encoding', 'chunked']);
  });

  it('releases the request body when a header value is refused (nothing is left unread)', async () => {
    const a = await app((s) => s.write(OK));
    const body = new Readable({ read() {} });
    body.push(Buffer.from('hi'));
    const r = await exchange(pool(a.port), { path: '/', method: 'POST', headers: ['host', 'app', 'x-bad', 'a\nb', 'content-length', '2'], body });
    expect(r.error?.code).toBe('ERR_UPSTREAM_BAD_HEADER');
    expect(body.destroyed).toBe(true);
    expect(a.received).toHaveLength(0);
  });

  /**
   * A handler that throws in `at` (a bug on the sidecar's side): resolves once the pool has
   * reported it, and a turn later, so anything the pool still did would have been seen.
   */
  async function throwing(port: number, at: keyof UpstreamHandler, timeoutMs = 5_000): Promise<{ p: UpstreamClient; bug: Error; told: (Error & { code?: string })[]; completed: number; reported: unknown[]; handlers: unknown[] }> {
    const bug = new TypeError(`a bug in ${at}`);
    const out = { bug, told: [] as (Error & { code?: string })[], completed: 0, reported: [] as unknown[], handlers: [] as unknown[] };
    let reported: () => void = () => undefined;
    const done = new Promise<void>((resolve) => (reported = () => afterTurn(resolve)));
    const p = pool(port, timeoutMs, {
      onInternalError: (err, h) => {
        out.reported.push(err);
        out.handlers.push(h);
        reported();
      },
    });
    const handler: UpstreamHandler = {
      onConnect: () => {
        if (at === 'onConnect') throw bug;
      },
      onHeaders: () => {
        if (at === 'onHeaders') throw bug;
        return true;
      },
      onData: () => {
        if (at === 'onData') throw bug;
        return true;
      },
      onComplete: () => {
        out.completed++;
        if (at === 'onComplete') throw bug;
      },
      onError: (err) => {
        out.told.push(err);
        if (at === 'onError') throw bug;
      },
    };
    p.dispatch({ method: 'GET', path: '/', headers: ['host', 'app'], body: null }, handler);
    await done;
    expect(out.handlers).toEqual(out.reported.map(() => handler));
    return { p, ...out };
  }

  it('a handler that throws before the request, on the head or on the body ends its exchange as an internal error, never as the app failing', async () => {
    const a = await app((s) => s.write(OK));
    for (const at of ['onConnect', 'onHeaders', 'onData'] as const) {
      const before = a.connections;
      const { p, bug, told, completed, reported } = await throwing(a.port, at);
      // Reported once, with the handler's own exception; the handler hears ERR_UPSTREAM_HANDLER
      // (answered 500 internal_error by the forward stage), not an upstream error.
      expect(reported).toEqual([bug]);
      expect(told.map((e) => e.code)).toEqual(['ERR_UPSTREAM_HANDLER']);
      expect(told[0]?.cause).toBe(bug);
      expect(completed).toBe(0);
      expect(p.stats.running).toBe(0);
      // The pool goes on; a connection left mid-response is not reused (onConnect threw before any was made).
      expect((await exchange(p, { path: '/next' })).body).toBe('ok');
      expect(a.connections - before).toBe(at === 'onConnect' ? 1 : 2);
      await p.close();
    }
  });

  it('a handler that throws in onComplete or onError is reported and not told again; the process and the pool go on', async () => {
    const a = await app((s) => s.write(OK));
    const c = await throwing(a.port, 'onComplete');
    expect(c.reported).toEqual([c.bug]);
    expect(c.completed).toBe(1);
    expect(c.told).toEqual([]);
    expect((await exchange(c.p, { path: '/next' })).body).toBe('ok');
    const silent = await app(() => undefined);
    const e = await throwing(silent.port, 'onError', 150);
    expect(e.reported).toEqual([e.bug]);
    expect(e.told.map((x) => x.code)).toEqual(['ERR_UPSTREAM_HEADERS_TIMEOUT']);
    expect(e.p.stats.running).toBe(0);
  });

  it('drops an idle connection the app has closed: a POST after it goes on a new one', async () => {
    const a = await app((s, _r, i) => {
      s.write(OK);
      if (i === 0) setTimeout(() => s.end(), 30);
    });
    const p = pool(a.port);
    await exchange(p, { path: '/warm' });
    // The app's FIN ends the idle connection in the pool (a POST is not sent again if it lands on a closing one).
    expect(await until(() => p.stats.connected === 0, 5000, 5)).toBe(true);
    const r = await exchange(p, { path: '/post', method: 'POST', headers: ['host', 'app', 'content-length', '2'], body: Readable.from([Buffer.from('hi')]) });
    expect(r.error).toBeNull();
    expect(r.body).toBe('ok');
    expect(a.connections).toBe(2);
  });

  it('answers a closed pool at once, and close() waits for the exchange in flight', async () => {
    let hold: net.Socket | null = null;
    const a = await app((s) => {
      hold = s;
    });
    const p = pool(a.port);
    const inFlight = exchange(p, { path: '/slow' });
    expect(await until(() => hold !== null, 5000, 5)).toBe(true);
    let closed = false;
    const closing = p.close().then(() => (closed = true));
    expect((await exchange(p, { path: '/late' })).error?.code).toBe('ERR_UPSTREAM_POOL_CLOSED');
    await new Promise((r) => setTimeout(r, 30));
    expect(closed).toBe(false);
    (hold as unknown as net.Socket).write(OK);
    expect((await inFlight).body).toBe('ok');
    await closing;
    // Its connection is destroyed as the exchange ends; 'close' follows within a few turns.
    expect(await until(() => p.stats.connected === 0, 2000, 5)).toBe(true);
  });
});
