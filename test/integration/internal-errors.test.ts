/**
 * A bug inside request handling is never silent and never fatal (docs/reference.md "Refusals"): the request
 * gets a 500 (or its stream is cut), the operational log one line with the request id and where,
 * mtls_sidecar_internal_errors_total{where} moves, and every other connection keeps being served.
 *
 * The exception is a real one on a real connection: the in-memory rate limiter's clock, a
 * dependency the Sidecar takes, throws when a request is rate-limited inside the pipeline. It is
 * provoked on HTTP/1.1 and on both HTTP/2 engines, in the pipeline's synchronous run and in the
 * continuation after an asynchronous token check (where it would be an unhandled rejection).
 * Below that, each transport has its own guard for code outside the pipeline: a request hook
 * that throws on a bare listener. And the forward handler runs inside the upstream client's
 * callbacks, outside the pipeline's guard: a throw there is a bug too (where `upstream`), not the
 * app failing (502).
 */
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import http2 from 'node:http2';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { pino } from 'pino';
import type { Agent } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it, vi } from 'vitest';
import { AuditSink } from '../helpers/audit-sink.js';
import { agentFor, call, tlsOptions } from '../helpers/client.js';
import { TEST_AUDIENCE, TEST_ISSUER, jwksOf, makeSigningKey, mintToken, thumbprintOfPem, writeJwksFile } from '../helpers/jwt.js';
import type { SigningKey } from '../helpers/jwt.js';
import { parseProm, value } from '../helpers/prom.js';
import { startSidecar, withEphemeralPorts, writeConfig } from '../helpers/sidecar.js';
import type { RunningSidecar } from '../helpers/sidecar.js';
import { loadAndCompile } from '../../src/config/index.js';
import { ForwardHandler } from '../../src/proxy/forward.js';
import { Listener } from '../../src/transport/listener.js';
import type { InternalErrorWhere, SidecarServer } from '../../src/transport/listener.js';
import type { AddressInfo } from 'node:net';
import { startUpstream } from '../helpers/upstream.js';
import type { Upstream } from '../helpers/upstream.js';
import { baseConfig, creds } from './config.js';

const pki = inject('pki');
/** In the message only: the log line must not carry it (a message may quote request data). */
const MESSAGE_SECRET = 'message-text-never-logged';

describe.each(['own', 'node'] as const)('a bug in request handling (HTTP/2 engine: %s)', (engine) => {
  let app: Upstream;
  let sc: RunningSidecar;
  let dir = '';
  let key: SigningKey;
  const log = new AuditSink();
  /** Calls of the rate limiter's clock left to throw. */
  let boom = 0;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'mtls-sidecar-bug-'));
    key = await makeSigningKey('ES256');
    const jwksFile = path.join(dir, 'jwks.json');
    await writeJwksFile(jwksFile, jwksOf(key));
    app = await startUpstream();
    const before = process.env['MTLS_SIDECAR_HTTP2'];
    process.env['MTLS_SIDECAR_HTTP2'] = engine;
    try {
      sc = await startSidecar(
        baseConfig(pki, app.url, {
          rateLimit: { default: { rps: 10_000, burst: 10_000 } },
          jwt: { issuer: TEST_ISSUER, audience: TEST_AUDIENCE, jwks: { file: jwksFile }, algorithms: ['ES256'] },
          routes: [
            { name: 'health', path: '/healthz', methods: ['GET'], public: true },
            { name: 'read', prefix: '/orders', methods: ['GET'], scopes: ['orders:read'] },
            // A fresh token is checked asynchronously: the rate limit runs in a promise continuation.
            { name: 'token', prefix: '/token', methods: ['GET'], scopes: ['orders:read'], tokenScopes: ['orders.read'] },
          ],
        }),
        {
          log: pino({ level: 'info' }, log),
          rateClock: () => {
            if (boom > 0) {
              boom--;
              throw new TypeError(`the rate clock broke (${MESSAGE_SECRET})`);
            }
            return performance.now();
          },
        },
      );
    } finally {
      if (before === undefined) delete process.env['MTLS_SIDECAR_HTTP2'];
      else process.env['MTLS_SIDECAR_HTTP2'] = before;
    }
  });
  afterAll(async () => {
    await sc.close();
    await app.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function counted(where: string): Promise<number> {
    const text = await (await fetch(`${sc.admin}/metrics`)).text();
    return value(parseProm(text), 'mtls_sidecar_internal_errors_total', { where });
  }

  /** The 500, its log line (request id and where, no message text), its audit line. */
  async function expectReported(id: string, where: string, res: { status: number; body: string }): Promise<void> {
    expect(res.status).toBe(500);
    expect(JSON.parse(res.body)).toEqual({ error: 'internal_error', requestId: id });
    const line = await log.waitFor((l) => l.requestId === id);
    expect(line).toMatchObject({ msg: 'internal error in request handling', where, requestId: id, error: 'TypeError' });
    expect((line['at'] as string[]).length).toBeGreaterThan(0);
    expect(JSON.stringify(line)).not.toContain(MESSAGE_SECRET);
    expect(log.lines.filter((l) => l.requestId === id)).toHaveLength(1);
    expect(await sc.audit.waitFor((l) => l.requestId === id)).toMatchObject({ status: 500, reason: 'internal_error' });
  }

  function h2Session(): http2.ClientHttp2Session {
    const s = http2.connect(sc.origin, tlsOptions(creds(pki, 'orders')));
    s.on('error', () => undefined);
    return s;
  }

  function h2Get(s: http2.ClientHttp2Session, p: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
      const req = s.request({ ':path': p, ':method': 'GET', ...headers });
      let status = 0;
      const parts: Buffer[] = [];
      req.on('response', (h) => (status = Number(h[':status'])));
      req.on('data', (c: Buffer) => parts.push(c));
      req.on('end', () => resolve({ status, body: Buffer.concat(parts).toString() }));
      req.on('error', reject);
    });
  }

  it('HTTP/1.1: a 500 with the request id, one log line, counted and audited; that connection ends, the others are served', async () => {
    const other = agentFor(creds(pki, 'orders'));
    const victim = agentFor(creds(pki, 'orders'));
    try {
      expect((await call(other, sc.origin, '/orders/1')).status).toBe(200);
      const before = await counted('h1');
      boom = 1;
      const res = await call(victim, sc.origin, '/orders/2', { headers: { 'x-request-id': `bug-h1-${engine}` } });
      expect(res.headers['connection']).toBe('close');
      await expectReported(`bug-h1-${engine}`, 'h1', { status: res.status, body: res.text });
      expect(await counted('h1')).toBe(before + 1);
      // The connection opened before keeps being served, and so is a new one.
      expect((await call(other, sc.origin, '/orders/3')).status).toBe(200);
      expect((await call(victim, sc.origin, '/orders/4')).status).toBe(200);
    } finally {
      await Promise.all([other.close(), victim.close()]);
    }
  });

  it('HTTP/2: a 500 on its stream, one log line, counted and audited; the same session and the others keep being served', async () => {
    const other = h2Session();
    const victim = h2Session();
    try {
      expect((await h2Get(other, '/orders/1')).status).toBe(200);
      const before = await counted('h2');
      boom = 1;
      await expectReported(`bug-h2-${engine}`, 'h2', await h2Get(victim, '/orders/2', { 'x-request-id': `bug-h2-${engine}` }));
      expect(await counted('h2')).toBe(before + 1);
      expect((await h2Get(victim, '/orders/3')).status).toBe(200);
      expect((await h2Get(other, '/orders/4')).status).toBe(200);
    } finally {
      victim.close();
      other.close();
    }
  });

  it('after an asynchronous token check (a promise continuation), on HTTP/1.1 and HTTP/2: reported the same way, never an unhandled rejection', async () => {
    const token = (): Promise<string> => mintToken(key, { scope: 'orders.read', x5t: thumbprintOfPem(readFileSync(pki.clients.orders.cert)) });
    const agent: Agent = agentFor(creds(pki, 'orders'));
    const session = h2Session();
    try {
      const h1Before = await counted('h1');
      const h2Before = await counted('h2');
      boom = 1;
      const r1 = await call(agent, sc.origin, '/token/1', { headers: { authorization: `Bearer ${await token()}`, 'x-request-id': `bug-async-h1-${engine}` } });
      await expectReported(`bug-async-h1-${engine}`, 'h1', { status: r1.status, body: r1.text });
      boom = 1;
      const r2 = await h2Get(session, '/token/2', { authorization: `Bearer ${await token()}`, 'x-request-id': `bug-async-h2-${engine}` });
      await expectReported(`bug-async-h2-${engine}`, 'h2', r2);
      expect(await counted('h1')).toBe(h1Before + 1);
      expect(await counted('h2')).toBe(h2Before + 1);
      // Nothing left broken: the same token route serves again on the same session.
      expect((await h2Get(session, '/token/3', { authorization: `Bearer ${await token()}` })).status).toBe(200);
    } finally {
      session.close();
      await agent.close();
    }
  });
});

describe.each(['own', 'node'] as const)('outside the pipeline, each transport catches too (HTTP/2 engine: %s)', (engine) => {
  let server: SidecarServer;
  let origin = '';
  let dir = '';
  const caught: string[] = [];

  beforeAll(async () => {
    const cfg = await writeConfig(withEphemeralPorts(baseConfig(pki, 'http://127.0.0.1:9')));
    dir = cfg.dir;
    const outcome = await loadAndCompile(cfg.file, 1);
    if (!outcome.ok) throw new Error(outcome.lines.join('\n'));
    const before = process.env['MTLS_SIDECAR_HTTP2'];
    process.env['MTLS_SIDECAR_HTTP2'] = engine;
    try {
      server = new Listener(outcome.snapshot, {
        onSecureConnection: () => true,
        onTlsClientError: (_err, socket) => socket.destroy(),
        onRequest: (req, res) => {
          if (req.url === '/boom') throw new TypeError('a bug outside the pipeline');
          res.writeHead(200, { 'content-length': 2 });
          res.end('ok');
        },
        onClientError: (_err, socket) => socket.destroy(),
        // The runtime's hook, reduced to what the transport relies on: it answers the response it is given.
        onInternalError: (err: unknown, where: InternalErrorWhere, res) => {
          caught.push(`${where}: ${(err as Error).message}`);
          if (res !== null && !res.headersSent) {
            res.writeHead(500, { 'content-length': 0 });
            res.end();
          }
        },
        onSession: () => undefined,
      }).server;
    } finally {
      if (before === undefined) delete process.env['MTLS_SIDECAR_HTTP2'];
      else process.env['MTLS_SIDECAR_HTTP2'] = before;
    }
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    origin = `https://localhost:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await new Promise<void>((r) => server.close(() => r()));
    await rm(dir, { recursive: true, force: true });
  });

  it('HTTP/1.1 and HTTP/2: the request that met the bug gets its 500, the next ones are served', async () => {
    caught.length = 0;
    const agent = agentFor(creds(pki, 'orders'));
    const session = http2.connect(origin, tlsOptions(creds(pki, 'orders')));
    session.on('error', () => undefined);
    try {
      expect((await call(agent, origin, '/boom')).status).toBe(500);
      expect((await call(agent, origin, '/fine')).status).toBe(200);
      const h2 = (p: string): Promise<number> =>
        new Promise((resolve, reject) => {
          const req = session.request({ ':path': p });
          req.on('response', (h) => resolve(Number(h[':status'])));
          req.on('error', reject);
          req.resume();
        });
      expect(await h2('/boom')).toBe(500);
      expect(await h2('/fine')).toBe(200);
      expect(caught).toEqual(['h1: a bug outside the pipeline', 'h2: a bug outside the pipeline']);
    } finally {
      session.destroy();
      await agent.destroy();
    }
  });
});

describe('a bug in the forward handler, inside an upstream callback', () => {
  let app: Upstream;
  let sc: RunningSidecar;
  const log = new AuditSink();

  beforeAll(async () => {
    app = await startUpstream();
    sc = await startSidecar(baseConfig(pki, app.url, { routes: [{ name: 'read', prefix: '/orders', methods: ['GET'], scopes: ['orders:read'] }] }), { log: pino({ level: 'info' }, log) });
  });
  afterAll(async () => {
    await sc.close();
    await app.close();
  });
  afterEach(() => {
    vi.restoreAllMocks();
  });

  /** The handler's `method` throws for the request with this id: a bug in the sidecar's own code, met while the app answers. */
  function breakFor(method: 'onHeaders' | 'onData', id: string): void {
    // eslint-disable-next-line @typescript-eslint/unbound-method -- called below with the handler as `this`
    const original = ForwardHandler.prototype[method] as (this: ForwardHandler, ...args: unknown[]) => boolean;
    vi.spyOn(ForwardHandler.prototype, method).mockImplementation(function (this: ForwardHandler, ...args: unknown[]) {
      if (this.ctx.requestId === id) throw new TypeError(`${method} broke (${MESSAGE_SECRET})`);
      return original.apply(this, args);
    });
  }

  async function counted(): Promise<number> {
    return value(parseProm(await (await fetch(`${sc.admin}/metrics`)).text()), 'mtls_sidecar_internal_errors_total', { where: 'upstream' });
  }

  async function expectLogged(id: string): Promise<void> {
    const line = await log.waitFor((l) => l.requestId === id);
    expect(line).toMatchObject({ msg: 'internal error in request handling', where: 'upstream', requestId: id, error: 'TypeError' });
    expect(JSON.stringify(line)).not.toContain(MESSAGE_SECRET);
    expect(log.lines.filter((l) => l.requestId === id)).toHaveLength(1);
  }

  it('before the response head: a 500 internal_error (not a 502 from the app), logged and counted as upstream, the connection ends; the next request is served', async () => {
    const id = 'bug-upstream-head';
    const agent = agentFor(creds(pki, 'orders'));
    try {
      const before = await counted();
      breakFor('onHeaders', id);
      const res = await call(agent, sc.origin, '/orders/1', { headers: { 'x-request-id': id } });
      expect(res.status).toBe(500);
      expect(JSON.parse(res.text)).toEqual({ error: 'internal_error', requestId: id });
      expect(res.headers['connection']).toBe('close');
      await expectLogged(id);
      expect(await counted()).toBe(before + 1);
      expect(await sc.audit.waitFor((l) => l.requestId === id)).toMatchObject({ status: 500, reason: 'internal_error' });
      expect((await call(agent, sc.origin, '/orders/2')).status).toBe(200);
    } finally {
      await agent.close();
    }
  });

  it('after the response head (HTTP/2): the stream is cut, logged and counted as upstream; the session goes on', async () => {
    const id = 'bug-upstream-body';
    const session = http2.connect(sc.origin, tlsOptions(creds(pki, 'orders')));
    session.on('error', () => undefined);
    const get = (headers: Record<string, string>): Promise<{ status: number; ended: boolean }> =>
      new Promise((resolve) => {
        const req = session.request({ ':path': '/orders/3', ...headers });
        let status = 0;
        let ended = false;
        req.on('response', (h) => (status = Number(h[':status'])));
        req.on('end', () => (ended = true));
        req.on('error', () => undefined);
        req.on('close', () => resolve({ status, ended: ended && req.rstCode === http2.constants.NGHTTP2_NO_ERROR }));
        req.resume();
      });
    try {
      const before = await counted();
      breakFor('onData', id);
      expect(await get({ 'x-request-id': id })).toEqual({ status: 200, ended: false });
      await expectLogged(id);
      expect(await counted()).toBe(before + 1);
      expect(await sc.audit.waitFor((l) => l.requestId === id)).toMatchObject({ reason: 'internal_error' });
      expect(await get({})).toEqual({ status: 200, ended: true });
    } finally {
      session.close();
    }
  });
});
