/**
 * HTTP/2 (SPEC §4 "HTTP/2"): frame-level attacks with raw frames over TLS + ALPN h2
 * (h2frames.ts), each bounded by the settings and limits, and HTTP/2-to-HTTP/1.1 downgrade
 * smuggling. After each attack a well-behaved client on another connection is still served;
 * sustained floods are in floods-h2-*.test.ts (latency and memory under them: `make flood-budgets`).
 * `make test` runs this file on both HTTP/2 engines (the own one, and MTLS_SIDECAR_HTTP2=node).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { h2Request, tlsOptions } from '../helpers/client.js';
import { echo } from '../helpers/upstream.js';
import { CONTROL_FRAMES_PER_SECOND, RAPID_RESET_MIN } from '../../src/transport/h2/guard.js';
import * as F from './h2frames.js';
import { orders, sleep, startTarget, until } from './harness.js';
import type { Target } from './harness.js';

const MAX_STREAMS = 20;
let t: Target;
/** Requests the app is holding right now, and the most it ever held at once. */
let inFlight = 0;
let maxInFlight = 0;
let appDelayMs = 0;

beforeAll(async () => {
  t = await startTarget({ limits: { maxConcurrentStreams: MAX_STREAMS, maxHeaders: 50, maxHeaderSize: '8KiB', requestTimeout: '2s', headersTimeout: '1s' } });
  t.app.handler = (req: IncomingMessage, res: ServerResponse, body: Buffer) => {
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    const done = (): void => {
      inFlight--;
      if (!res.destroyed) echo(req, res, body);
    };
    if (appDelayMs > 0) setTimeout(done, appDelayMs).unref();
    else done();
  };
});
// eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- undefined when beforeAll failed
afterAll(async () => t?.close());

const tls = (): ReturnType<typeof tlsOptions> => tlsOptions(orders());
const request = F.requestBlock('/orders/1');

/** A well-behaved client on its own connection still gets 200 (SPEC §4 "other clients keep being served"). */
async function othersServed(): Promise<void> {
  const res = await h2Request(t.sc.origin, orders(), '/healthz');
  expect(res.status).toBe(200);
}

/** Every request of a finished exchange has been to the app and back: the sidecar's upstream pool is idle. */
async function settled(): Promise<void> {
  expect(await until(() => t.sc.sidecar.pool.stats.running === 0, 3000)).toBe(true);
}

function rstCodes(c: F.RawH2): number[] {
  return c.frames.filter((f) => f.type === F.FrameType.RST_STREAM).map((f) => f.payload.readUInt32BE(0));
}

const CALM_OR_ERROR = [F.ErrorCode.ENHANCE_YOUR_CALM, F.ErrorCode.INTERNAL_ERROR, F.ErrorCode.PROTOCOL_ERROR];

describe('rapid reset (CVE-2023-44487)', () => {
  it('a burst of HEADERS+RST_STREAM pairs gets GOAWAY and is closed; the app sees at most a bounded number', async () => {
    const before = t.app.seen.length;
    const c = await F.connectH2(t.sc.port, tls());
    const bufs: Buffer[] = [];
    for (let i = 0; i < 2000; i++) bufs.push(F.headers(i * 2 + 1, request, { endStream: true }), F.rstStream(i * 2 + 1));
    await c.write(Buffer.concat(bufs));
    expect(await c.waitClosed(3000)).toBe(true);
    expect(CALM_OR_ERROR).toContain(c.goaway?.errorCode);
    await settled();
    expect(t.app.seen.length - before).toBeLessThanOrEqual(RAPID_RESET_MIN + MAX_STREAMS);
    await othersServed();
  });

  // Regression test for the premature-reset guard (h2/guard.ts; node:http2's in h2-node.ts): paced
  // so that nghttp2/Node's own burst limits never trip, every reset stream used to become an
  // upstream request (1,200 resets -> ~1,240 app requests) until something else gave way.
  it('a paced reset loop (never more than a few streams open) gets GOAWAY ENHANCE_YOUR_CALM after RAPID_RESET_MIN resets', async () => {
    const before = t.app.seen.length;
    const c = await F.connectH2(t.sc.port, tls());
    let id = 1;
    for (let round = 0; round < 300 && !c.closed; round++) {
      const bufs: Buffer[] = [];
      for (let i = 0; i < 5; i++, id += 2) bufs.push(F.headers(id, request, { endStream: true }), F.rstStream(id));
      await c.write(Buffer.concat(bufs));
      await sleep(4);
    }
    expect(await c.waitClosed(2000)).toBe(true);
    expect(c.goaway?.errorCode).toBe(F.ErrorCode.ENHANCE_YOUR_CALM);
    expect((id - 1) / 2).toBeLessThan(1500); // cut long before the loop's own bound
    await settled();
    expect(t.app.seen.length - before).toBeLessThanOrEqual(2 * RAPID_RESET_MIN);
    await othersServed();
  });

  it('a client that cancels some streams but completes more is not cut off (no false positive)', async () => {
    const c = await F.connectH2(t.sc.port, tls());
    let id = 1;
    // 150 cancelled streams (past RAPID_RESET_MIN), 300 completed: cancelling is not the attack,
    // cancelling more than completing is.
    for (let round = 0; round < 150; round++) {
      // Two completed requests for every cancelled one.
      await c.write(Buffer.concat([F.headers(id, request, { endStream: true }), F.headers(id + 2, request, { endStream: true })]));
      const cancelled = id + 4;
      await c.write(Buffer.concat([F.headers(cancelled, request, { endStream: true }), F.rstStream(cancelled)]));
      id += 6;
      await c.waitFrame((f) => f.streamId === id - 4 && f.type === F.FrameType.DATA && (f.flags & F.Flag.END_STREAM) !== 0, 2000);
    }
    expect(c.closed).toBe(false);
    expect(c.goaway).toBeNull();
    c.destroy();
  });

  // CVE-2025-8671 "MadeYouReset": the client makes the *server* reset streams (WINDOW_UPDATE 0 on
  // a stream, DATA after END_STREAM), which a client-RST counter does not see.
  it.each([
    ['WINDOW_UPDATE with increment 0', (id: number) => [F.headers(id, F.requestBlock('/orders/1', [], 'POST')), F.windowUpdate(id, 0)]],
    ['DATA after END_STREAM', (id: number) => [F.headers(id, request, { endStream: true }), F.data(id, Buffer.from('x'))]],
  ])('server-provoked resets (MadeYouReset, CVE-2025-8671): %s ends the connection quickly', async (_name, make) => {
    const before = t.app.seen.length;
    const c = await F.connectH2(t.sc.port, tls());
    for (let round = 0; round < 100 && !c.closed; round++) {
      await c.write(Buffer.concat(Array.from({ length: 10 }, (_, i) => make((round * 10 + i) * 2 + 1)).flat()));
      await sleep(2);
    }
    expect(await c.waitClosed(2000)).toBe(true);
    expect(c.goaway).not.toBeNull();
    await settled();
    expect(t.app.seen.length - before).toBeLessThanOrEqual(RAPID_RESET_MIN + MAX_STREAMS);
    await othersServed();
  });
});

describe('CONTINUATION flood (CVE-2024-27316; Node CVE-2024-27983, nghttp2 CVE-2024-28182)', () => {
  it.each([
    ['64-byte header per frame', (i: number) => F.literal(`x-c${i}`, 'v'.repeat(64))],
    ['empty frames', () => Buffer.alloc(0)],
  ])('a HEADERS frame followed by endless CONTINUATION frames (%s) gets GOAWAY and is closed; nothing reaches the app', async (_name, fragment) => {
    const before = t.app.seen.length;
    const c = await F.connectH2(t.sc.port, tls());
    const t0 = performance.now();
    await c.write(F.headers(1, request, { endStream: true, endHeaders: false }));
    let sent = 0;
    for (let batch = 0; batch < 100 && !c.closed; batch++) {
      await c.write(Buffer.concat(Array.from({ length: 100 }, (_, i) => F.continuation(1, fragment(batch * 100 + i)))));
      sent += 100;
      await sleep(2);
    }
    expect(await c.waitClosed(2000)).toBe(true);
    expect(performance.now() - t0).toBeLessThan(3000);
    expect(c.goaway).not.toBeNull();
    expect(sent).toBeLessThan(10_000); // cut before the attacker ran out of frames
    expect(t.app.seen.slice(before).filter((s) => s.headers['x-c0'] !== undefined)).toEqual([]);
    await othersServed();
  });
});

describe('control-frame floods (CVE-2019-9512 ping, CVE-2019-9515 settings, CVE-2019-9518 empty frames)', () => {
  /** Write batches without reading the replies until the server stops taking them or cuts us off. */
  async function flood(c: F.RawH2, frame: () => Buffer, batches = 300): Promise<number> {
    let written = 0;
    for (let b = 0; b < batches && !c.closed; b++) {
      // A write that does not complete within 2 s means the server stopped reading us.
      const ok = await Promise.race([c.write(Buffer.concat(Array.from({ length: 100 }, frame))), sleep(2000).then(() => false)]);
      if (!ok) break;
      written += 100;
    }
    return written;
  }

  it.each([
    ['PING (CVE-2019-9512)', () => F.ping()],
    ['SETTINGS (CVE-2019-9515)', () => F.settings([[F.Setting.INITIAL_WINDOW_SIZE, 65_535]])],
  ])('a %s flood from a client that never reads the ACKs is cut off, not buffered', async (_name, frame) => {
    const c = await F.connectH2(t.sc.port, tls(), { read: false });
    const written = await flood(c, frame);
    c.socket.resume();
    // Node counts the unsent ACKs against maxSessionMemory and ends the session (nghttp2's own
    // 1,000-queued-ACK limit, the CVE fix, only bites once the socket buffers are full).
    expect(await c.waitClosed(10_000)).toBe(true);
    expect(written).toBeLessThan(30_000);
    await othersServed();
  }, 30_000);

  // Regression test for the control-frame guard (h2/guard.ts; node:http2's in h2-node.ts): a client
  // that reads its ACKs was never cut off (nghttp2's limit is on ACKs queued unsent) and could
  // send PINGs forever.
  it.each([
    ['PING', () => F.ping()],
    ['SETTINGS', () => F.settings([[F.Setting.INITIAL_WINDOW_SIZE, 65_535]])],
  ])('a %s flood from a client that does read its ACKs (4,000/s, paced) gets GOAWAY ENHANCE_YOUR_CALM', async (_name, frame) => {
    const c = await F.connectH2(t.sc.port, tls(), { keepFrames: false });
    const t0 = performance.now();
    for (let b = 0; b < 60 && !c.closed; b++) {
      await c.write(Buffer.concat(Array.from({ length: 200 }, frame)));
      await sleep(50);
    }
    expect(await c.waitClosed(2000)).toBe(true);
    expect(c.goaway?.errorCode).toBe(F.ErrorCode.ENHANCE_YOUR_CALM);
    expect(performance.now() - t0).toBeLessThan(2000);
    await othersServed();
  });

  it(`a client pinging and re-sending SETTINGS below ${CONTROL_FRAMES_PER_SECOND}/s keeps its connection`, async () => {
    const c = await F.connectH2(t.sc.port, tls(), { keepFrames: false });
    for (let i = 0; i < 20; i++) {
      await c.write(Buffer.concat([...Array.from({ length: 20 }, () => F.ping()), F.settings([[F.Setting.INITIAL_WINDOW_SIZE, 2 ** 31 - 1]])]));
      await sleep(50);
    }
    await c.write(F.headers(1, request, { endStream: true }));
    expect(await c.waitClosed(300)).toBe(false);
    expect(c.goaway).toBeNull();
    c.destroy();
  });

  it('a flood of empty DATA frames on an open request (CVE-2019-9518) is bounded by requestTimeout or cut off', async () => {
    const before = t.app.seen.length;
    const c = await F.connectH2(t.sc.port, tls(), { keepFrames: false });
    await c.write(F.headers(1, F.requestBlock('/orders/1', [], 'POST')));
    const t0 = performance.now();
    for (let b = 0; b < 200 && !c.closed && performance.now() - t0 < 4000; b++) {
      await c.write(Buffer.concat(Array.from({ length: 200 }, () => F.data(1, Buffer.alloc(0)))));
      await sleep(5);
    }
    expect(c.closed || c.goaway !== null || performance.now() - t0 >= 4000).toBe(true);
    c.destroy();
    expect(t.app.seen.length - before).toBeLessThanOrEqual(1);
    await othersServed();
  });
});

describe('concurrent streams (RFC 9113 §5.1.2, SETTINGS_MAX_CONCURRENT_STREAMS)', () => {
  it('advertises maxConcurrentStreams in its SETTINGS', async () => {
    const c = await F.connectH2(t.sc.port, tls());
    const s = c.frames.find((f) => f.type === F.FrameType.SETTINGS && (f.flags & F.Flag.ACK) === 0);
    const entries = new Map<number, number>();
    for (let i = 0; s !== undefined && i + 6 <= s.payload.length; i += 6) entries.set(s.payload.readUInt16BE(i), s.payload.readUInt32BE(i + 2));
    expect(entries.get(F.Setting.MAX_CONCURRENT_STREAMS)).toBe(MAX_STREAMS);
    expect(entries.get(F.Setting.MAX_HEADER_LIST_SIZE)).toBe(8 * 1024);
    expect(entries.get(F.Setting.ENABLE_PUSH)).toBe(0);
    c.destroy();
  });

  it('opening 3x the limit at once: the app never holds more than maxConcurrentStreams of them', async () => {
    appDelayMs = 400;
    maxInFlight = 0;
    try {
      const c = await F.connectH2(t.sc.port, tls());
      const ids = Array.from({ length: 3 * MAX_STREAMS }, (_, i) => i * 2 + 1);
      await c.write(Buffer.concat(ids.map((id) => F.headers(id, request, { endStream: true }))));
      // Until every stream has its answer (response or reset) or the connection is ended, and
      // every forwarded request is back from the app.
      const ended = (id: number): boolean =>
        c.frames.some((f) => f.streamId === id && (f.type === F.FrameType.RST_STREAM || (f.flags & F.Flag.END_STREAM) !== 0));
      expect(await until(() => c.goaway !== null || c.closed || ids.every(ended), 5000)).toBe(true);
      await settled();
      // Either the excess streams were refused one by one (and the first ones served), or the
      // whole connection was ended; then its forwarded requests are aborted too (no upstream
      // work for a client that is gone), so the app may see none.
      if (c.goaway === null) expect(maxInFlight).toBeGreaterThan(0);
      expect(maxInFlight).toBeLessThanOrEqual(MAX_STREAMS);
      // The excess was refused: REFUSED_STREAM per stream, or the connection ended (PROTOCOL_ERROR).
      expect(rstCodes(c).includes(F.ErrorCode.REFUSED_STREAM) || c.goaway !== null).toBe(true);
      c.destroy();
    } finally {
      appDelayMs = 0;
    }
    await othersServed();
  });
});

describe('header list bombs (RFC 7541 §7.3 "HPACK bomb", CVE-2016-6581 class; RFC 9113 §6.5.2 MAX_HEADER_LIST_SIZE)', () => {
  it('a 4 KiB dynamic-table entry referenced 4,000 times (16 MiB decoded) is refused; nothing reaches the app', async () => {
    const before = t.app.seen.length;
    const c = await F.connectH2(t.sc.port, tls());
    const bomb = Buffer.concat([request, F.literalIndexed('x-bomb', 'a'.repeat(4000)), ...Array.from({ length: 4000 }, () => F.indexed(62))]);
    await c.write(F.headers(1, bomb, { endStream: true }));
    const refused = await c.waitFrame((f) => (f.type === F.FrameType.RST_STREAM && f.streamId === 1) || f.type === F.FrameType.GOAWAY, 2000);
    expect(refused).not.toBeNull();
    await settled();
    expect(t.app.seen.length - before).toBe(0);
    c.destroy();
    await othersServed();
  });

  it('more header fields than maxHeaders is refused on the stream (ENHANCE_YOUR_CALM), the connection stays usable', async () => {
    const before = t.app.seen.length;
    const c = await F.connectH2(t.sc.port, tls());
    const many = Buffer.concat([request, ...Array.from({ length: 200 }, (_, i) => F.literal(`x-h${i}`, 'v'))]);
    await c.write(F.headers(1, many, { endStream: true }));
    expect(await c.waitFrame((f) => f.type === F.FrameType.RST_STREAM && f.streamId === 1, 2000)).not.toBeNull();
    expect(rstCodes(c)).toContain(F.ErrorCode.ENHANCE_YOUR_CALM);
    await c.write(F.headers(3, request, { endStream: true }));
    const ok = await c.waitFrame((f) => f.type === F.FrameType.HEADERS && f.streamId === 3, 2000);
    expect(ok === null ? null : F.responseStatus(ok.payload)).toBe(200);
    expect(t.app.seen.length - before).toBe(1);
    c.destroy();
  });

  it('a header list over maxHeaderSize (one 20 KiB value) is refused; nothing reaches the app', async () => {
    const before = t.app.seen.length;
    const c = await F.connectH2(t.sc.port, tls());
    const big = Buffer.concat([request, F.literal('x-big', 'b'.repeat(20_000))]);
    await c.write(Buffer.concat([F.headers(1, big.subarray(0, 16_000), { endStream: true, endHeaders: false }), F.continuation(1, big.subarray(16_000), true)]));
    expect(await c.waitFrame((f) => (f.type === F.FrameType.RST_STREAM && f.streamId === 1) || f.type === F.FrameType.GOAWAY, 2000)).not.toBeNull();
    await settled();
    expect(t.app.seen.length - before).toBe(0);
    c.destroy();
  });
});

describe('HTTP/2 -> HTTP/1.1 downgrade smuggling (J. Kettle, "HTTP/2: The Sequel is Always Worse", 2021; RFC 9113 §8.1.1, §8.2)', () => {
  const SMUGGLED = 'GET /admin/smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n';
  const base = (path = '/orders/1', method = 'GET'): Array<[string, string]> => [
    [':method', method],
    [':scheme', 'https'],
    [':authority', 'localhost'],
    [':path', path],
  ];

  interface Outcome {
    status: number | null;
    rst: number | null;
    goaway: F.GoAway | null;
    app: Array<{ method: string; url: string; body: string; rawHeaders: string[] }>;
  }

  async function send(fields: Array<[string, string]>, data?: Buffer): Promise<Outcome> {
    const before = t.app.seen.length;
    const c = await F.connectH2(t.sc.port, tls());
    const frames = [F.headers(1, F.block(fields), { endStream: data === undefined })];
    if (data !== undefined) frames.push(F.data(1, data, true));
    await c.write(Buffer.concat(frames));
    const f = await c.waitFrame((x) => (x.streamId === 1 && (x.type === F.FrameType.HEADERS || x.type === F.FrameType.RST_STREAM)) || x.type === F.FrameType.GOAWAY, 2000);
    await settled();
    c.destroy();
    return {
      status: f?.type === F.FrameType.HEADERS ? F.responseStatus(f.payload) : null,
      rst: f?.type === F.FrameType.RST_STREAM ? f.payload.readUInt32BE(0) : null,
      goaway: c.goaway,
      app: t.app.seen.slice(before).map((s) => ({ method: s.method, url: s.url, body: s.body.toString('latin1'), rawHeaders: s.rawHeaders })),
    };
  }

  /** Nothing the app received is /admin, and at most the one request the client sent. */
  function noSmuggling(o: Outcome): void {
    expect(o.app.length).toBeLessThanOrEqual(1);
    expect(o.app.filter((a) => a.url.includes('admin'))).toEqual([]);
    for (const a of o.app) {
      expect(a.rawHeaders.join('\n')).not.toMatch(/\r|\n.*admin|transfer-encoding/i);
      expect(a.body).not.toContain('GET /admin');
    }
  }

  it('H2.CL: content-length 0 with a DATA frame carrying a request: the app gets an empty body, never a second request', async () => {
    const o = await send([...base('/orders/1', 'POST'), ['content-length', '0']], Buffer.from(SMUGGLED));
    noSmuggling(o);
    expect(o.app.every((a) => a.body === '')).toBe(true);
  });

  it('H2.CL: content-length shorter than the DATA: no second request at the app', async () => {
    const o = await send([...base('/orders/1', 'POST'), ['content-length', '3']], Buffer.from(`abc${SMUGGLED}`));
    noSmuggling(o);
  });

  it('H2.TE: transfer-encoding in an HTTP/2 request is malformed (RFC 9113 §8.2.2): refused, nothing forwarded', async () => {
    const o = await send([...base('/orders/1', 'POST'), ['transfer-encoding', 'chunked']], Buffer.from(`0\r\n\r\n${SMUGGLED}`));
    noSmuggling(o);
    expect(o.app).toEqual([]);
    expect(o.rst ?? o.goaway?.errorCode).toBe(F.ErrorCode.PROTOCOL_ERROR);
  });

  it.each([
    ['connection', 'keep-alive'],
    ['keep-alive', 'timeout=5'],
    ['upgrade', 'websocket'],
    ['te', 'gzip'],
  ])('connection-specific field %s is malformed in HTTP/2 (RFC 9113 §8.2.2): refused, nothing forwarded', async (name, value) => {
    const o = await send([...base(), [name, value]]);
    noSmuggling(o);
    expect(o.app).toEqual([]);
  });

  it.each([
    ['CRLF in a value (request header injection)', [...base(), ['x-a', 'b\r\ntransfer-encoding: chunked']]],
    ['LF in a value', [...base(), ['x-a', 'b\nhost: admin.internal']]],
    ['NUL in a value', [...base(), ['x-a', 'a\x00b']]],
    ['colon inside a field name', [...base(), ['x:a', 'b']]],
  ] as Array<[string, Array<[string, string]>]>)('%s never reaches the app (RFC 9113 §8.2.1)', async (_name, fields) => {
    const o = await send(fields);
    noSmuggling(o);
    for (const a of o.app) expect(a.rawHeaders.map((h) => h.toLowerCase())).not.toContain('x-a');
  });

  it.each([
    ['CRLF and a request in :path', base('/orders/1 HTTP/1.1\r\nHost: x\r\n\r\nGET /admin')],
    ['space in :path', base('/orders/1 x')],
    ['request line in :method', base('/orders/1', 'GET /admin HTTP/1.1\r\n')],
    ['CRLF in :authority', [[':method', 'GET'], [':scheme', 'https'], [':authority', 'localhost\r\nX: y'], [':path', '/orders/1']]],
    ['upper-case field name (RFC 9113 §8.2.1)', [...base(), ['X-Client-Identity', 'admin']]],
    ['pseudo-header after a regular field (§8.3)', [[':method', 'GET'], [':scheme', 'https'], ['x-a', 'b'], [':authority', 'localhost'], [':path', '/orders/1']]],
    ['unknown pseudo-header (§8.3)', [...base(), [':foo', 'bar']]],
    ['duplicate :path (§8.3.1)', [...base(), [':path', '/admin']]],
    ['duplicate :authority', [...base(), [':authority', 'admin.internal']]],
    ['missing :path', [[':method', 'GET'], [':scheme', 'https'], [':authority', 'localhost']]],
    ['empty :path', base('')],
    ['absolute-form :path', base('http://localhost/admin')],
    ['extended CONNECT (RFC 8441) without SETTINGS_ENABLE_CONNECT_PROTOCOL', [[':method', 'CONNECT'], [':protocol', 'websocket'], [':scheme', 'https'], [':authority', 'localhost'], [':path', '/orders/1']]],
  ] as Array<[string, Array<[string, string]>]>)('malformed request (%s) is refused; nothing reaches the app', async (_name, fields) => {
    const o = await send(fields);
    noSmuggling(o);
    expect(o.app).toEqual([]);
    expect(o.rst !== null || o.goaway !== null || (o.status !== null && o.status >= 400)).toBe(true);
  });

  it('host disagreeing with :authority (RFC 9113 §8.3.1) is 400, nothing forwarded', async () => {
    const o = await send([...base(), ['host', 'admin.internal']]);
    expect(o.status).toBe(400);
    expect(o.app).toEqual([]);
  });

  it('CONNECT (RFC 9113 §8.5) opens no tunnel: refused, nothing forwarded', async () => {
    const o = await send([
      [':method', 'CONNECT'],
      [':authority', 'admin.internal:443'],
    ]);
    expect(o.app).toEqual([]);
    expect(o.rst !== null || o.goaway !== null || (o.status !== null && o.status >= 400)).toBe(true);
  });
});

describe('limits on HTTP/2 streams (SPEC §4: requestTimeout and headersTimeout apply to HTTP/2 streams as well)', () => {
  // requestTimeout bounds an HTTP/2 body as it does an HTTP/1.1 one (server/pipeline.ts): without
  // it a stream sending its body one byte at a time holds an upstream request until the upstream
  // timeout, or for ever if the app waits for the body.
  it('a slow HTTP/2 request body is cut with 408 after requestTimeout (2 s)', async () => {
    const c = await F.connectH2(t.sc.port, tls());
    await c.write(F.headers(1, F.requestBlock('/orders/1', [['x-request-id', 'slow-h2-body']], 'POST')));
    const t0 = performance.now();
    for (let i = 0; i < 40 && !c.closed; i++) {
      await c.write(F.data(1, Buffer.from('a')));
      const f = c.frames.find((x) => x.streamId === 1 && (x.type === F.FrameType.HEADERS || x.type === F.FrameType.RST_STREAM));
      if (f !== undefined) break;
      await sleep(100);
    }
    const answer = await c.waitFrame((x) => x.streamId === 1 && x.type === F.FrameType.HEADERS, 100);
    c.destroy();
    expect(answer === null ? null : F.responseStatus(answer.payload)).toBe(408);
    expect(performance.now() - t0).toBeLessThan(3500);
    const line = await t.sc.audit.waitFor((l) => l.requestId === 'slow-h2-body');
    expect([line.status, line.decision, line.reason]).toEqual([408, 'deny', 'request_timeout']);
  }, 10_000);
});

describe('upstream resources after reset streams (CVE-2023-44487 amplification)', () => {
  // A stream reset (or a session killed) before or after its request left for the app cancels
  // that upstream request at once (proxy/forward.ts): otherwise each one holds an upstream
  // request and a pooled connection until the app answers or upstream.timeout passes. Here the
  // app never answers and upstream.timeout is 30 s, so only the cancellation frees them.
  let u: Target;
  let held = 0;
  beforeAll(async () => {
    u = await startTarget({ limits: { maxConcurrentStreams: MAX_STREAMS }, upstream: { timeout: '30s' } }, (_req, res) => {
      held++;
      res.once('close', () => held--);
    });
  });
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- undefined when beforeAll failed
  afterAll(async () => u?.close());

  it.each([
    ['RST_STREAM on every stream', 'reset'],
    ['the connection dropped', 'drop'],
  ] as const)('streams the app is holding, then %s: every upstream request and app connection is freed at once', async (_name, how) => {
    for (let k = 0; k < 3; k++) {
      const c = await F.connectH2(u.sc.port, tls());
      const ids = Array.from({ length: MAX_STREAMS }, (_, i) => i * 2 + 1);
      await c.write(Buffer.concat(ids.map((id) => F.headers(id, request, { endStream: true }))));
      expect(await until(() => held === MAX_STREAMS, 5000)).toBe(true);
      if (how === 'reset') await c.write(Buffer.concat(ids.map((id) => F.rstStream(id, F.ErrorCode.CANCEL))));
      else c.destroy();
      const freed = await until(() => u.sc.sidecar.pool.stats.running === 0 && held === 0, 5000);
      c.destroy();
      expect({ freed, running: u.sc.sidecar.pool.stats.running, held }).toEqual({ freed: true, running: 0, held: 0 });
    }
  }, 30_000);
});
