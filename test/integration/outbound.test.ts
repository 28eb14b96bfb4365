/**
 * Outbound mTLS end to end (SPEC §3 `outbound`, §4, §5, §6): app A calls plain HTTP on loopback,
 * sidecar A carries the call over mTLS to sidecar B, which verifies A as any client; sidecar A
 * verifies B's chain and identity first. Two real sidecars, real certificates, real apps.
 */
import { readFile } from 'node:fs/promises';
import net from 'node:net';
import tls from 'node:tls';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { Pool, request } from 'undici';
import { startSidecar } from '../helpers/sidecar.js';
import type { ConfigObject, RunningSidecar } from '../helpers/sidecar.js';
import { startUpstream } from '../helpers/upstream.js';
import type { Upstream } from '../helpers/upstream.js';
import { parseProm, value } from '../helpers/prom.js';
import type { PkiEntry } from '../helpers/pki.js';
import { nativeTimerFires } from '../helpers/wait.js';

const pki = inject('pki');
const spiffe = (n: string): string => `spiffe://cluster.local/ns/shop/sa/${n}`;
const hex = (e: PkiEntry): string => e.sha256.replaceAll(':', '').toLowerCase();

/** Sidecar B: serves with a workload certificate, admits orders (read) and nobody else. */
function inboundConfig(server: PkiEntry, appUrl: string, http2: boolean): ConfigObject {
  return {
    version: 1,
    listen: { address: '127.0.0.1', port: 0, http2 },
    tls: { cert: server.cert, key: server.key, clientCAs: [pki.rootCa.cert, pki.foreignCa.cert] },
    identities: [{ name: 'orders', match: { uri: spiffe('orders') }, scopes: ['billing:read'] }],
    routes: [
      { name: 'read', prefix: '/invoices', methods: ['GET', 'POST'], scopes: ['billing:read'] },
      { name: 'admin', prefix: '/admin', scopes: ['billing:admin'] },
    ],
    upstream: { url: appUrl, connectTimeout: '1s', timeout: '2s' },
  };
}

/** Sidecar A: an inbound side nobody calls here, and the outbound destinations under test. */
function outboundConfig(appUrl: string, destinations: ConfigObject[], extra: ConfigObject = {}): ConfigObject {
  return {
    version: 1,
    tls: { cert: pki.workloads.orders.cert, key: pki.workloads.orders.key, clientCAs: [pki.rootCa.cert] },
    routes: [{ name: 'health', path: '/healthz', public: true }],
    upstream: { url: appUrl },
    outbound: { proxy: { port: 0 }, destinations, ...extra },
  };
}

function destination(name: string, port: number, over: ConfigObject = {}): ConfigObject {
  return {
    name,
    listen: { port: 0 },
    target: `127.0.0.1:${port}`,
    serverName: 'billing.shop.svc',
    expect: { uri: spiffe('billing') },
    connectTimeout: '1s',
    timeout: '2s',
    ...over,
  };
}

interface Plain {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
}

/** The app's own plain-HTTP call to its sidecar (no TLS, as an app in the pod makes it). */
async function plain(port: number, path: string, opts: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<Plain> {
  const res = await request(`http://127.0.0.1:${port}${path}`, {
    method: opts.method ?? 'GET',
    ...(opts.headers !== undefined ? { headers: opts.headers } : {}),
    ...(opts.body !== undefined ? { body: opts.body } : {}),
  });
  return { status: res.statusCode, headers: res.headers, text: await res.body.text() };
}

/**
 * One raw HTTP/1.1 exchange on a plain loopback socket (proxy-form requests, CONNECT): until the
 * first response is whole, or with `untilClose` until the sidecar closes (pipelined requests).
 */
function rawPlain(port: number, bytes: string, untilClose = false): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => s.write(bytes));
    let out = '';
    s.setEncoding('latin1');
    s.on('data', (d: string) => {
      out += d;
      if (!untilClose && /\r\n\r\n/.test(out) && /content-length: (\d+)/i.test(out)) {
        const len = Number(/content-length: (\d+)/i.exec(out)?.[1]);
        if (out.length - out.indexOf('\r\n\r\n') - 4 >= len) s.end();
      }
    });
    s.on('end', () => resolve(out));
    s.on('close', () => resolve(out));
    s.on('error', reject);
    s.setTimeout(5000, () => s.destroy(new Error('raw exchange timed out')));
  });
}

describe.each([false, true])('outbound mTLS, http2 %s', (http2) => {
  let appA: Upstream;
  let appB: Upstream;
  let b: RunningSidecar;
  let a: RunningSidecar;
  /** Servers that must be refused: another SPIFFE ID, another CA, expired (raw TLS: they count what reaches them). */
  const wrong: Record<string, CountingServer> = {};

  beforeAll(async () => {
    appA = await startUpstream();
    appB = await startUpstream();
    b = await startSidecar(inboundConfig(pki.workloads.billing, appB.url, http2));
    wrong['payments'] = await countingServer(pki.workloads.payments, http2);
    wrong['foreign'] = await countingServer(pki.workloads.billingForeign, http2);
    wrong['expired'] = await countingServer(pki.workloads.billingExpired, http2);
    a = await startSidecar(
      outboundConfig(appA.url, [
        destination('billing', b.port, { http2, hosts: ['billing', 'billing.shop.svc'] }),
        destination('payments', wrong['payments'].port, { http2 }),
        destination('foreign', wrong['foreign'].port, { http2 }),
        destination('expired', wrong['expired'].port, { http2 }),
      ]),
    );
  });
  afterAll(async () => {
    await a.close();
    for (const s of Object.values(wrong)) await s.close();
    await b.close();
    for (const app of [appA, appB]) await app.close();
  });

  it("carries the app's call to B, which sees A's identity and certificate", async () => {
    const res = await plain(a.outboundPort('billing'), '/invoices/7?x=1', { headers: { 'x-request-id': 'req-outbound-1', traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' } });
    expect(res.status).toBe(200);
    const seen = appB.seen.at(-1)!;
    expect(seen.url).toBe('/invoices/7?x=1');
    expect(seen.headers['x-client-identity']).toBe('orders');
    expect(seen.headers['x-forwarded-client-cert']).toContain(`Hash=${hex(pki.workloads.orders)}`);
    expect(seen.headers['x-forwarded-client-cert']).toContain(`URI=${spiffe('orders')}`);
    expect(seen.headers['x-request-id']).toBe('req-outbound-1');
    expect(seen.headers.traceparent).toBe('00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01');
    expect(res.headers['x-request-id']).toBe('req-outbound-1');
    const line = await a.audit.waitFor((l) => l['direction'] === 'outbound' && l['requestId'] === 'req-outbound-1');
    expect(line).toMatchObject({
      msg: 'request',
      destination: 'billing',
      peerUri: spiffe('billing'),
      peerSha256: hex(pki.workloads.billing),
      method: 'GET',
      path: '/invoices/7?x=1',
      status: 200,
      reason: 'ok',
      protocol: http2 ? 'HTTP/2' : 'HTTP/1.1',
    });
    expect(line['bytesOut']).toBeGreaterThan(0);
    // Milliseconds to 3 decimals, as on the inbound line.
    expect(String(line['durationMs'])).toMatch(/^\d+(\.\d{1,3})?$/);
    const inbound = await b.audit.waitFor((l) => l['requestId'] === 'req-outbound-1');
    expect(inbound).toMatchObject({ direction: 'inbound', identity: 'orders', certSha256: hex(pki.workloads.orders), protocol: http2 ? 'HTTP/2' : 'HTTP/1.1' });
  });

  it('streams a request body out and the response back', async () => {
    const body = 'x'.repeat(200_000);
    const res = await plain(a.outboundPort('billing'), '/invoices', { method: 'POST', body, headers: { 'content-type': 'text/plain' } });
    expect(res.status).toBe(200);
    expect(JSON.parse(res.text)).toMatchObject({ method: 'POST', bodyLength: 200_000 });
  });

  it("lets B's scopes decide: a route A's identity lacks is B's 403, relayed", async () => {
    const res = await plain(a.outboundPort('billing'), '/admin/x');
    expect(res.status).toBe(403);
    expect(JSON.parse(res.text)).toMatchObject({ error: 'forbidden' });
    await b.audit.waitFor((l) => l['path'] === '/admin/x' && l['reason'] === 'scope_missing');
  });

  it.each([
    ['payments', 'identity_mismatch'],
    ['foreign', 'untrusted'],
    ['expired', 'expired'],
  ])('refuses the %s server (%s): 502 to the app, not a byte of the request reaches it', async (name, reason) => {
    const res = await plain(a.outboundPort(name), '/invoices/1', { headers: { 'x-request-id': `refused-${name}` } });
    expect(res.status).toBe(502);
    expect(JSON.parse(res.text)).toEqual({ error: 'bad_gateway', requestId: `refused-${name}` });
    expect(wrong[name]!.received()).toBe(0);
    const hs = await a.audit.waitFor((l) => l.msg === 'outbound_handshake_rejected' && l['destination'] === name);
    expect(hs['reason']).toBe(reason);
    const line = await a.audit.waitFor((l) => l['requestId'] === `refused-${name}`);
    expect(line).toMatchObject({ direction: 'outbound', destination: name, status: 502, reason, peerUri: null });
  });

  it('routes proxy-form requests by authority, and refuses unknown ones and CONNECT', async () => {
    const proxy = a.outboundProxyPort();
    const ok = await rawPlain(proxy, 'GET http://billing.shop.svc/invoices/9 HTTP/1.1\r\nHost: billing.shop.svc\r\nConnection: close\r\n\r\n');
    expect(ok).toMatch(/^HTTP\/1\.1 200 /);
    expect(appB.seen.at(-1)?.url).toBe('/invoices/9');
    const byHost = await rawPlain(proxy, 'GET /invoices/10 HTTP/1.1\r\nHost: billing:8080\r\nConnection: close\r\n\r\n');
    expect(byHost).toMatch(/^HTTP\/1\.1 200 /);
    const unknown = await rawPlain(proxy, 'GET http://evil.example/ HTTP/1.1\r\nHost: evil.example\r\nx-request-id: unknown-dest\r\nConnection: close\r\n\r\n');
    expect(unknown).toMatch(/^HTTP\/1\.1 403 /);
    expect(unknown).toContain('"error":"unknown_destination"');
    const connect = await rawPlain(proxy, 'CONNECT billing.shop.svc:443 HTTP/1.1\r\nHost: billing.shop.svc:443\r\nConnection: close\r\n\r\n');
    expect(connect).toMatch(/^HTTP\/1\.1 405 /);
    const line = await a.audit.waitFor((l) => l['requestId'] === 'unknown-dest');
    expect(line).toMatchObject({ direction: 'outbound', destination: null, status: 403, reason: 'unknown_destination' });
  });

  it('counts outbound requests and handshakes on /metrics', async () => {
    const text = await (await request(`${a.admin}/metrics`)).body.text();
    const samples = parseProm(text);
    expect(value(samples, 'mtls_sidecar_outbound_requests_total', { destination: 'billing', method: 'GET', code: '200' })).toBeGreaterThanOrEqual(1);
    expect(value(samples, 'mtls_sidecar_outbound_handshakes_total', { destination: 'billing', result: 'accepted', reason: 'ok' })).toBeGreaterThanOrEqual(1);
    expect(value(samples, 'mtls_sidecar_outbound_handshakes_total', { destination: 'payments', result: 'rejected', reason: 'identity_mismatch' })).toBeGreaterThanOrEqual(1);
    expect(value(samples, 'mtls_sidecar_outbound_duration_seconds_count', { destination: 'billing' })).toBeGreaterThanOrEqual(1);
  });
});

interface CountingServer {
  readonly port: number;
  /** Bytes of application data received after the handshake, over all connections. */
  received(): number;
  close(): Promise<void>;
}

/** A TLS server with the given certificate that never answers and counts what it is sent. */
async function countingServer(entry: PkiEntry, http2: boolean): Promise<CountingServer> {
  let received = 0;
  const server = tls.createServer({ cert: await readFile(entry.cert), key: await readFile(entry.key), ALPNProtocols: http2 ? ['h2', 'http/1.1'] : ['http/1.1'] }, (socket) => {
    socket.on('data', (d: Buffer) => (received += d.length));
    socket.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    received: () => received,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** A TLS server with billing's certificate that records each raw request head and answers 200. */
async function recordingRemote(): Promise<{ port: number; heads: string[]; close(): Promise<void> }> {
  const heads: string[] = [];
  const server = tls.createServer({ cert: await readFile(pki.workloads.billing.cert), key: await readFile(pki.workloads.billing.key), ALPNProtocols: ['http/1.1'] }, (socket) => {
    let buf = '';
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => {
      buf += d;
      let end: number;
      while ((end = buf.indexOf('\r\n\r\n')) !== -1) {
        heads.push(buf.slice(0, end));
        buf = buf.slice(end + 4);
        socket.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
      }
    });
    socket.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    heads,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

describe('outbound headers', () => {
  let appA: Upstream;
  let remote: Awaited<ReturnType<typeof recordingRemote>>;
  let a: RunningSidecar;
  beforeAll(async () => {
    appA = await startUpstream();
    remote = await recordingRemote();
    a = await startSidecar(outboundConfig(appA.url, [destination('billing', remote.port, { hosts: ['billing'] })]));
  });
  afterAll(async () => {
    await a.close();
    await remote.close();
    await appA.close();
  });

  it('removes hop-by-hop and inbound identity headers an app copies, keeps the rest, generates a request id', async () => {
    const raw = await rawPlain(
      a.outboundPort('billing'),
      'GET /x HTTP/1.1\r\nHost: 127.0.0.1\r\nx-forwarded-client-cert: Hash=aa;URI=spiffe://evil\r\nx-client-identity: admin\r\n' +
        'x-client-scopes: everything\r\nx-jwt-sub: root\r\nkeep-alive: timeout=5\r\nConnection: close, x-drop-me\r\nx-drop-me: 1\r\n' +
        'x-app: kept\r\nauthorization: Bearer app-token\r\n\r\n',
    );
    expect(raw).toMatch(/^HTTP\/1\.1 200 /);
    const id = /\r\nx-request-id: ([^\r]+)/i.exec(raw)?.[1];
    const head = remote.heads.at(-1)!.toLowerCase();
    for (const h of ['x-forwarded-client-cert', 'x-client-identity', 'x-client-scopes', 'x-jwt-sub', 'keep-alive', 'x-drop-me']) expect(head).not.toContain(`\r\n${h}:`);
    expect(head).toContain('\r\nx-app: kept');
    expect(head).toContain('\r\nauthorization: bearer app-token');
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
    expect(head).toContain(`\r\nx-request-id: ${id ?? 'none'}`);
    expect(head).toMatch(/\r\nhost: billing\.shop\.svc/);
  });

  it.each([
    ['a destination listener', 'billing', 'GET /x HTTP/1.1\r\nHost: billing\r\nno colon here\r\n\r\n'],
    ['the proxy listener', null, 'POST http://billing/x HTTP/1.1\r\nHost: billing\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n'],
  ])('answers a malformed request on %s 400, audits it as an outbound line, and sends nothing out', async (_where, destination, bytes) => {
    const port = destination === null ? a.outboundProxyPort() : a.outboundPort(destination);
    const sent = remote.heads.length;
    const raw = await rawPlain(port, bytes, true);
    expect(raw).toMatch(/^HTTP\/1\.1 400 /);
    expect(raw.toLowerCase()).toContain('\r\nconnection: close\r\n');
    const id = /\r\nx-request-id: ([^\r]+)/i.exec(raw)?.[1];
    expect(JSON.parse(raw.slice(raw.indexOf('\r\n\r\n') + 4))).toEqual({ error: 'bad_request', requestId: id });
    const line = await a.audit.waitFor((l) => l['requestId'] === id);
    expect(line).toMatchObject({ msg: 'request', direction: 'outbound', destination, status: 400, reason: 'bad_request', peerUri: null, protocol: null });
    expect(remote.heads.length).toBe(sent);
    const samples = parseProm(await (await request(`${a.admin}/metrics`)).body.text());
    expect(value(samples, 'mtls_sidecar_outbound_requests_total', { destination: destination ?? 'unknown', code: '400' })).toBeGreaterThanOrEqual(1);
  });

  it('reuses pooled connections across requests', async () => {
    const pool = new Pool(`http://127.0.0.1:${a.outboundPort('billing')}`, { connections: 1 });
    try {
      for (let i = 0; i < 5; i++) {
        const r = await pool.request({ path: `/ka/${i}`, method: 'GET' });
        await r.body.text();
        expect(r.statusCode).toBe(200);
      }
    } finally {
      await pool.close();
    }
    const handshakes = parseProm(await (await request(`${a.admin}/metrics`)).body.text());
    // One verified connection carried all of them (and the earlier test's).
    expect(value(handshakes, 'mtls_sidecar_outbound_handshakes_total', { destination: 'billing', result: 'accepted', reason: 'ok' })).toBe(1);
  });
});

describe('outbound failures', () => {
  it('answers 502 when the remote is down and 504 when it stalls; /readyz stays 200', async () => {
    const appA = await startUpstream();
    const dead = net.createServer();
    await new Promise<void>((resolve) => dead.listen(0, '127.0.0.1', resolve));
    const deadPort = (dead.address() as AddressInfo).port;
    await new Promise<void>((resolve) => dead.close(() => resolve()));
    const stall = tls.createServer({ cert: await readFile(pki.workloads.billing.cert), key: await readFile(pki.workloads.billing.key) }, (s) => {
      s.on('error', () => undefined);
    });
    await new Promise<void>((resolve) => stall.listen(0, '127.0.0.1', resolve));
    const a = await startSidecar(
      outboundConfig(appA.url, [
        destination('down', deadPort),
        destination('slow', (stall.address() as AddressInfo).port, { timeout: '300ms' }),
      ]),
    );
    try {
      const down = await plain(a.outboundPort('down'), '/x', { headers: { 'x-request-id': 'to-down' } });
      expect(down.status).toBe(502);
      const slow = await plain(a.outboundPort('slow'), '/x', { headers: { 'x-request-id': 'to-slow' } });
      expect(slow.status).toBe(504);
      expect(JSON.parse(slow.text)).toMatchObject({ error: 'gateway_timeout' });
      expect(await a.audit.waitFor((l) => l['requestId'] === 'to-down')).toMatchObject({ status: 502, reason: 'upstream_unreachable' });
      expect(await a.audit.waitFor((l) => l['requestId'] === 'to-slow')).toMatchObject({ status: 504, reason: 'upstream_timeout' });
      const ready = await request(`${a.admin}/readyz`);
      await ready.body.text();
      expect(ready.statusCode).toBe(200);
    } finally {
      await a.close();
      stall.close();
      await appA.close();
    }
  });

  it('answers 504 when the timeout is due and 502 when connectTimeout is, not later (1.5 s: undici alone fired them ~0.5 s late)', async () => {
    const appA = await startUpstream();
    // A server that completes the handshake and never answers; one that never answers the handshake.
    const stall = tls.createServer({ cert: await readFile(pki.workloads.billing.cert), key: await readFile(pki.workloads.billing.key) }, (s) => {
      s.on('error', () => undefined);
    });
    const mute = net.createServer((s) => s.on('error', () => undefined));
    await Promise.all([stall, mute].map((srv) => new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve))));
    const a = await startSidecar(
      outboundConfig(appA.url, [
        destination('slow', (stall.address() as AddressInfo).port, { timeout: '1500ms' }),
        destination('mute', (mute.address() as AddressInfo).port, { connectTimeout: '1500ms' }),
      ]),
    );
    const timed = async (name: string): Promise<{ status: number; took: number; afterNative: number }> => {
      const t0 = performance.now();
      const native = nativeTimerFires(1_500);
      const res = await plain(a.outboundPort(name), '/x', { headers: { 'x-request-id': `due-${name}` } });
      const end = performance.now();
      return { status: res.status, took: end - t0, afterNative: end - (await native) };
    };
    try {
      // Side by side: one wait for both.
      const [slow, handshake] = await Promise.all([timed('slow'), timed('mute')]);
      expect(slow.status).toBe(504);
      expect(handshake.status).toBe(502);
      for (const { took, afterNative } of [slow, handshake]) {
        // Never early (1 ms: the timer clock's resolution); late only as a native timer armed at
        // the same moment is (the event loop's lag on a busy machine), plus the way back.
        expect(took).toBeGreaterThanOrEqual(1_499);
        expect(afterNative).toBeLessThan(250);
      }
      expect(await a.audit.waitFor((l) => l['requestId'] === 'due-slow')).toMatchObject({ status: 504, reason: 'upstream_timeout' });
      expect(await a.audit.waitFor((l) => l['requestId'] === 'due-mute')).toMatchObject({ status: 502, reason: 'upstream_unreachable' });
    } finally {
      await a.close();
      stall.close();
      mute.close();
      await appA.close();
    }
  });

  it('answers 502 to a malformed or smuggling-shaped response and keeps serving the next request', async () => {
    const appA = await startUpstream();
    let n = 0;
    const bad = tls.createServer({ cert: await readFile(pki.workloads.billing.cert), key: await readFile(pki.workloads.billing.key), ALPNProtocols: ['http/1.1'] }, (s) => {
      s.on('error', () => undefined);
      s.once('data', () => {
        n++;
        if (n === 1) s.end('HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n');
        else if (n === 2) s.end('NOT HTTP AT ALL\r\n\r\n');
        else s.end('HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok');
      });
    });
    await new Promise<void>((resolve) => bad.listen(0, '127.0.0.1', resolve));
    const a = await startSidecar(outboundConfig(appA.url, [destination('bad', (bad.address() as AddressInfo).port)]));
    try {
      const r1 = await plain(a.outboundPort('bad'), '/1');
      const r2 = await plain(a.outboundPort('bad'), '/2');
      expect(r1.status).toBe(502);
      expect(r2.status).toBe(502);
      const good = await plain(a.outboundPort('bad'), '/3');
      expect(good.status).toBe(200);
      expect(good.text).toBe('ok');
    } finally {
      await a.close();
      bad.close();
      await appA.close();
    }
  });
});

describe('the app side is served as the inbound side is', () => {
  let appA: Upstream;
  let appB: Upstream;
  let b: RunningSidecar;
  let a: RunningSidecar;
  beforeAll(async () => {
    appA = await startUpstream();
    appB = await startUpstream();
    b = await startSidecar(inboundConfig(pki.workloads.billing, appB.url, true));
    a = await startSidecar(outboundConfig(appA.url, [destination('billing', b.port, { http2: true })]));
  });
  afterAll(async () => {
    await a.close();
    await b.close();
    await appA.close();
    await appB.close();
  });

  it('streams a chunked upload, answers Expect: 100-continue, serves pipelined requests in order and honours Connection: close', async () => {
    const port = a.outboundPort('billing');
    const chunked = await rawPlain(port, 'POST /invoices HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n');
    expect(chunked).toMatch(/^HTTP\/1\.1 200 /);
    expect(chunked).toContain('"bodyLength":11');
    expect(appB.seen.at(-1)?.body.toString()).toBe('hello world');

    // Expect: 100-continue: the interim response comes first, then the body is read and sent on.
    const cont = await new Promise<string>((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1', () => s.write('POST /invoices HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n'));
      let out = '';
      s.setEncoding('latin1');
      s.on('data', (d: string) => {
        if (out === '' && d.startsWith('HTTP/1.1 100')) s.write('ping');
        out += d;
      });
      s.on('close', () => resolve(out));
      s.on('error', reject);
    });
    expect(cont).toMatch(/^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 /);
    expect(appB.seen.at(-1)?.body.toString()).toBe('ping');

    const pipelined = await rawPlain(port, 'GET /invoices/p1 HTTP/1.1\r\nHost: x\r\n\r\nGET /invoices/p2 HTTP/1.1\r\nHost: x\r\n\r\nGET /invoices/p3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', true);
    const urls = [...pipelined.matchAll(/"url":"([^"]+)"/g)].map((m) => m[1]);
    expect(urls).toEqual(['/invoices/p1', '/invoices/p2', '/invoices/p3']);
    expect(pipelined.match(/HTTP\/1\.1 200 /g)).toHaveLength(3);
  });

  it('multiplexes concurrent requests on one HTTP/2 connection', async () => {
    const port = a.outboundPort('billing');
    const before = value(parseProm(await (await request(`${a.admin}/metrics`)).body.text()), 'mtls_sidecar_outbound_handshakes_total', { destination: 'billing', result: 'accepted', reason: 'ok' });
    // The pool is warm (the test above); 24 requests at once then share its HTTP/2 connection.
    await plain(port, '/invoices/warm');
    const replies = await Promise.all(Array.from({ length: 24 }, (_, i) => plain(port, `/invoices/m${i}`)));
    expect(replies.every((r) => r.status === 200)).toBe(true);
    const after = value(parseProm(await (await request(`${a.admin}/metrics`)).body.text()), 'mtls_sidecar_outbound_handshakes_total', { destination: 'billing', result: 'accepted', reason: 'ok' });
    // 24 requests at once: HTTP/1.1 would have needed a connection each; HTTP/2's default cap is 4.
    expect(after - before).toBeLessThanOrEqual(4);
    expect(after).toBeGreaterThanOrEqual(1);
    const lines = a.audit.lines.filter((l) => l['direction'] === 'outbound' && String(l['path']).startsWith('/invoices/m'));
    expect(lines.every((l) => l['protocol'] === 'HTTP/2')).toBe(true);
  });

  it('drains: an in-flight call finishes, the listener stops accepting', async () => {
    const slowApp = await startUpstream((_req, res) => {
      setTimeout(() => {
        res.writeHead(200, { 'content-length': '4' });
        res.end('slow');
      }, 400);
    });
    const bs = await startSidecar(inboundConfig(pki.workloads.billing, slowApp.url, false));
    const as = await startSidecar(outboundConfig(appA.url, [destination('billing', bs.port)]));
    const port = as.outboundPort('billing');
    try {
      const inflight = plain(port, '/invoices/slow');
      await new Promise((r) => setTimeout(r, 100));
      const closing = as.sidecar.close(5000);
      const res = await inflight;
      expect(res.status).toBe(200);
      expect(res.text).toBe('slow');
      await closing;
      await expect(plain(port, '/invoices/after')).rejects.toThrow();
    } finally {
      await as.close();
      await bs.close();
      await slowApp.close();
    }
  });
});
