/**
 * JWT as a second layer, end to end (SPEC §3 jwt, §4): real tokens over real mTLS; and
 * what a reload keeps (a JWKS URL's cached keys) and what it applies (rewritten key and denylist files).
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { request } from 'undici';
import type { Agent } from 'undici';
import { silentLog } from '../../src/log.js';
import { createCa, issueLeaf } from '../../src/pki/devca.js';
import { Reloader } from '../../src/runtime/reload.js';
import type { AuditLine } from '../helpers/audit-sink.js';
import { agentFor, call } from '../helpers/client.js';
import {
  TEST_AUDIENCE,
  TEST_ISSUER,
  hs256WithPublicKey,
  jwksOf,
  makeSigningKey,
  mintToken,
  startJwksServer,
  thumbprintOfPem,
  unsignedToken,
  writeDenylist,
  writeJwksFile,
} from '../helpers/jwt.js';
import type { SigningKey } from '../helpers/jwt.js';
import { parseProm, value } from '../helpers/prom.js';
import { memoryLog, startSidecar } from '../helpers/sidecar.js';
import type { RunningSidecar } from '../helpers/sidecar.js';
import { startUpstream } from '../helpers/upstream.js';
import type { Upstream } from '../helpers/upstream.js';
import { baseConfig, creds } from './config.js';
import { readFileSync } from 'node:fs';

const pki = inject('pki');
let dir = '';
let app: Upstream;
let sc: RunningSidecar;
let rsa: SigningKey;
let ec: SigningKey;
let ed: SigningKey;
let orders: Agent;
let ordersThumb = '';
let billingThumb = '';
let denylist = '';

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'mtls-sidecar-jwt-'));
  [rsa, ec, ed] = await Promise.all([makeSigningKey('RS256'), makeSigningKey('ES256'), makeSigningKey('EdDSA')]);
  const jwksFile = path.join(dir, 'jwks.json');
  await writeJwksFile(jwksFile, jwksOf(rsa, ec, ed));
  denylist = path.join(dir, 'revoked.txt');
  await writeDenylist(denylist, ['revoked-1']);
  ordersThumb = thumbprintOfPem(readFileSync(pki.clients.orders.cert));
  billingThumb = thumbprintOfPem(readFileSync(pki.clients.billing.cert));
  app = await startUpstream();
  sc = await startSidecar(
    baseConfig(pki, app.url, {
      jwt: {
        issuer: TEST_ISSUER,
        audience: TEST_AUDIENCE,
        jwks: { file: jwksFile },
        algorithms: ['RS256', 'ES256', 'EdDSA'],
        clockSkew: '30s',
        requireJti: true,
        certificateBound: true,
        required: true,
        denylist,
      },
      routes: [
        { name: 'health', path: '/healthz', methods: ['GET'], public: true },
        { name: 'read', prefix: '/orders', methods: ['GET', 'HEAD'], scopes: ['orders:read'] },
        { name: 'write', prefix: '/orders', methods: ['POST'], scopes: ['orders:write'], tokenScopes: ['orders.write'] },
      ],
    }),
  );
  orders = agentFor(creds(pki, 'orders'));
});
afterAll(async () => {
  await orders.close();
  await sc.close();
  await app.close();
  await rm(dir, { recursive: true, force: true });
});

async function withToken(token: string | null, p = '/orders/1', method = 'GET'): Promise<Awaited<ReturnType<typeof call>>> {
  return call(orders, sc.origin, p, { method, headers: token === null ? {} : { authorization: `Bearer ${token}` }, ...(method === 'POST' ? { body: '{}' } : {}) });
}

async function reasonOf(res: Awaited<ReturnType<typeof call>>): Promise<unknown> {
  return (await sc.audit.waitFor((l) => l.requestId === res.headers['x-request-id']))['reason'];
}

describe('valid tokens', () => {
  it.each(['RS256', 'ES256', 'EdDSA'] as const)('%s: passes, the app sees x-jwt-* and no Authorization', async (alg) => {
    const key = alg === 'RS256' ? rsa : alg === 'ES256' ? ec : ed;
    const res = await withToken(await mintToken(key, { sub: 'user-7', scope: 'orders.read orders.write', x5t: ordersThumb }));
    expect(res.status).toBe(200);
    const h = res.json<{ headers: Record<string, string> }>().headers;
    expect(h['x-jwt-sub']).toBe('user-7');
    expect(h['x-jwt-scopes']).toBe('orders.read orders.write');
    expect(h['authorization']).toBeUndefined();
  });

  it('public routes need no token', async () => {
    expect((await withToken(null, '/healthz')).status).toBe(200);
  });

  it('removes client-sent x-jwt-* headers', async () => {
    const token = await mintToken(rsa, { sub: 'real', x5t: ordersThumb });
    const res = await call(orders, sc.origin, '/orders/1', { headers: { authorization: `Bearer ${token}`, 'x-jwt-sub': 'forged', 'x-jwt-admin': '1' } });
    const h = res.json<{ headers: Record<string, string> }>().headers;
    expect(h['x-jwt-sub']).toBe('real');
    expect(h['x-jwt-admin']).toBeUndefined();
  });
});

describe('refused tokens', () => {
  const now = Math.floor(Date.now() / 1000);
  const cases: Array<[string, () => Promise<string | null>, number, string]> = [
    ['missing', () => Promise.resolve(null), 401, 'jwt_missing'],
    ['expired', async () => mintToken(rsa, { exp: now - 120, iat: now - 600, x5t: ordersThumb }), 401, 'jwt_expired'],
    ['not yet valid', async () => mintToken(rsa, { nbf: now + 600, x5t: ordersThumb }), 401, 'jwt_invalid'],
    ['wrong issuer', async () => mintToken(rsa, { iss: 'https://evil.test', x5t: ordersThumb }), 401, 'jwt_invalid'],
    ['wrong audience', async () => mintToken(rsa, { aud: 'api://other', x5t: ordersThumb }), 401, 'jwt_invalid'],
    ['no exp', async () => mintToken(rsa, { exp: null, x5t: ordersThumb }), 401, 'jwt_invalid'],
    ['no jti', async () => mintToken(rsa, { jti: null, x5t: ordersThumb }), 401, 'jwt_invalid'],
    ['alg none', () => Promise.resolve(unsignedToken({ x5t: ordersThumb })), 401, 'jwt_invalid'],
    ['HS256 keyed with the RSA public key', () => Promise.resolve(hs256WithPublicKey(rsa, { x5t: ordersThumb })), 401, 'jwt_invalid'],
    ['unknown crit header', async () => mintToken(rsa, { crit: ['x-unknown'], x5t: ordersThumb }), 401, 'jwt_invalid'],
    ['revoked jti', async () => mintToken(rsa, { jti: 'revoked-1', x5t: ordersThumb }), 401, 'jwt_revoked'],
    ['bound to another certificate', async () => mintToken(rsa, { x5t: billingThumb }), 401, 'jwt_cert_mismatch'],
    ['not bound at all (certificateBound: true)', async () => mintToken(rsa, {}), 401, 'jwt_cert_mismatch'],
  ];
  it.each(cases)('%s -> %i %s', async (_name, make, status, reason) => {
    const before = app.seen.length;
    const res = await withToken(await make());
    expect(res.status).toBe(status);
    expect(res.headers['www-authenticate']).toBe('Bearer error="invalid_token"');
    expect(res.json()).toMatchObject({ error: 'unauthorized' });
    expect(await reasonOf(res)).toBe(reason);
    expect(app.seen.length).toBe(before);
  });

  it('a token without the route tokenScopes -> 403 insufficient_scope', async () => {
    const res = await withToken(await mintToken(rsa, { scope: 'orders.read', x5t: ordersThumb }), '/orders', 'POST');
    expect(res.status).toBe(403);
    expect(res.headers['www-authenticate']).toBe('Bearer error="insufficient_scope"');
    expect(await reasonOf(res)).toBe('token_scope_missing');
  });

  it('never writes a token into the audit log', async () => {
    const token = await mintToken(rsa, { x5t: ordersThumb });
    await withToken(token);
    await withToken(`${token}x`);
    const all = sc.audit.raw.join('\n');
    expect(all).not.toContain(token.split('.')[2] ?? 'never');
    expect(all).not.toMatch(/Bearer|eyJ/);
  });
});

describe('across reloads', () => {
  /** A server certificate the test can rotate, from its own CA (the clients trust that CA). */
  async function rotatable(work: string): Promise<{ tls: { cert: string; key: string }; ca: string; rotate(): Promise<string> }> {
    const ca = await createCa({ commonName: 'JWT reload CA', days: 30 });
    const caFile = path.join(work, 'server-ca.crt');
    await writeFile(caFile, ca.certPem);
    const tlsFiles = { cert: path.join(work, 'server.crt'), key: path.join(work, 'server.key') };
    const rotate = async (): Promise<string> => {
      const leaf = await issueLeaf(ca, { commonName: 'localhost', dnsNames: ['localhost'], ips: ['127.0.0.1'], eku: ['serverAuth'], days: 30 });
      await writeFile(tlsFiles.cert, leaf.certPem);
      await writeFile(tlsFiles.key, leaf.keyPem);
      return leaf.sha256;
    };
    await rotate();
    return { tls: tlsFiles, ca: caFile, rotate };
  }

  async function until(what: string, pred: () => Promise<boolean> | boolean, timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!(await pred())) {
      if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  it('a certificate rotation while the issuer is down keeps the cached JWKS: tokens still verify; the failures are counted, logged once, and the recovery logged', async () => {
    const work = await mkdtemp(path.join(os.tmpdir(), 'mtls-sidecar-jwt-reload-'));
    const server = await rotatable(work);
    const issuer = await startJwksServer({ cert: readFileSync(pki.server.cert), key: readFileSync(pki.server.key), ca: readFileSync(pki.rootCa.cert) }, jwksOf(rsa));
    // The JWT clock (claims and the JWKS cache) is the test's, so "past cacheFor" is one step.
    let clock = Date.now();
    const { log, lines } = memoryLog('info');
    const s = await startSidecar(
      baseConfig(pki, app.url, {
        tls: server.tls,
        jwt: { issuer: TEST_ISSUER, audience: TEST_AUDIENCE, jwks: { url: issuer.url, cacheFor: '10m' }, algorithms: ['RS256'], required: true },
      }),
      { log, jwt: { fetch: issuer.fetch, now: () => clock } },
    );
    const reloader = new Reloader(s.sidecar, s.configFile, log);
    const agent = agentFor({ ...creds(pki, 'orders'), ca: server.ca });
    // A fresh token each time (new jti), so every check goes to the keys, not to a connection's token cache.
    const status = async (): Promise<number> => {
      const token = await mintToken(rsa, { now: clock, exp: Math.floor(clock / 1000) + 24 * 3600 });
      return (await call(agent, s.origin, '/orders/1', { headers: { authorization: `Bearer ${token}` } })).status;
    };
    const failures = async (): Promise<number> => value(parseProm(await (await request(`${s.admin}/metrics`)).body.text()), 'mtls_sidecar_jwks_fetch_failures_total');
    const logged = (msg: string): AuditLine[] => lines.lines.filter((l) => l.msg.startsWith(msg));
    try {
      expect(await status()).toBe(200);
      expect(issuer.requests).toBe(1);
      const verifier = s.sidecar.jwt?.verifier;

      issuer.mode = 'reset';
      await server.rotate();
      expect(await reloader.reload('test')).toBe('applied');
      expect(s.sidecar.snapshot.generation).toBe(2);
      // Past cacheFor, within the stale bound: the keys fetched before the reload still serve.
      clock += 11 * 60_000;
      expect(await status()).toBe(200);
      expect(s.sidecar.jwt?.verifier).toBe(verifier);
      // ...while the refresh that started in the background fails: counted and logged.
      await until('first failure counted', async () => (await failures()) === 1);
      await until('first failure logged', () => logged('JWKS fetch failed').length === 1);
      expect(logged('JWKS fetch failed')[0]).toMatchObject({ level: 40, code: 'ERR_JWKS_FETCH' });
      expect(logged('JWKS fetch failed')[0]?.['err']).toContain(`cannot fetch ${issuer.url}`);

      // Another attempt once the failure cooldown has passed: counted, not logged again.
      clock += 6_000;
      expect(await status()).toBe(200);
      await until('second failure counted', async () => (await failures()) === 2);
      expect(logged('JWKS fetch failed')).toHaveLength(1);

      // The issuer is back: the next refresh works, and the log says so.
      issuer.mode = 'up';
      const served = issuer.requests;
      clock += 6_000;
      expect(await status()).toBe(200);
      await until('recovery logged', () => logged('JWKS fetch works again').length === 1);
      expect(logged('JWKS fetch works again')[0]).toMatchObject({ level: 30, notLogged: 1 });
      expect(issuer.requests).toBeGreaterThan(served);
      expect(await failures()).toBe(2);
    } finally {
      reloader.close();
      await agent.close();
      await s.close();
      await issuer.close();
      await rm(work, { recursive: true, force: true });
    }
  });

  it('a JWKS file and a denylist rewritten in place take effect on reload', async () => {
    const work = await mkdtemp(path.join(os.tmpdir(), 'mtls-sidecar-jwt-files-'));
    const jwksFile = path.join(work, 'jwks.json');
    const denyFile = path.join(work, 'revoked.txt');
    await writeJwksFile(jwksFile, jwksOf(rsa));
    await writeDenylist(denyFile, []);
    const s = await startSidecar(
      baseConfig(pki, app.url, {
        jwt: { issuer: TEST_ISSUER, audience: TEST_AUDIENCE, jwks: { file: jwksFile }, algorithms: ['RS256', 'ES256'], required: true, denylist: denyFile },
      }),
    );
    const reloader = new Reloader(s.sidecar, s.configFile, silentLog());
    const agent = agentFor(creds(pki, 'orders'));
    const reason = async (token: string): Promise<unknown> => {
      const res = await call(agent, s.origin, '/orders/1', { headers: { authorization: `Bearer ${token}` } });
      if (res.status === 200) return 'ok';
      return (await s.audit.waitFor((l) => l.requestId === res.headers['x-request-id']))['reason'];
    };
    try {
      const listed = await mintToken(rsa, { jti: 'leaked-1' });
      expect(await reason(listed)).toBe('ok');
      await writeDenylist(denyFile, ['leaked-1']);
      expect(await reloader.reload('test')).toBe('applied');
      expect(await reason(listed)).toBe('jwt_revoked');

      expect(await reason(await mintToken(ec))).toBe('jwt_invalid');
      await writeJwksFile(jwksFile, jwksOf(ec));
      expect(await reloader.reload('test')).toBe('applied');
      expect(await reason(await mintToken(ec))).toBe('ok');
      expect(await reason(await mintToken(rsa))).toBe('jwt_invalid');
    } finally {
      reloader.close();
      await agent.close();
      await s.close();
      await rm(work, { recursive: true, force: true });
    }
  });
});
