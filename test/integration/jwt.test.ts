/** JWT as a second layer, end to end (SPEC §3 jwt, §4; issue 8): real tokens over real mTLS. */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { Agent } from 'undici';
import { agentFor, call } from '../helpers/client.js';
import { TEST_AUDIENCE, TEST_ISSUER, hs256WithPublicKey, jwksOf, makeSigningKey, mintToken, thumbprintOfPem, unsignedToken, writeDenylist, writeJwksFile } from '../helpers/jwt.js';
import type { SigningKey } from '../helpers/jwt.js';
import { startSidecar } from '../helpers/sidecar.js';
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
    ['missing', async () => null, 401, 'jwt_missing'],
    ['expired', async () => mintToken(rsa, { exp: now - 120, iat: now - 600, x5t: ordersThumb }), 401, 'jwt_expired'],
    ['not yet valid', async () => mintToken(rsa, { nbf: now + 600, x5t: ordersThumb }), 401, 'jwt_invalid'],
    ['wrong issuer', async () => mintToken(rsa, { iss: 'https://evil.test', x5t: ordersThumb }), 401, 'jwt_invalid'],
    ['wrong audience', async () => mintToken(rsa, { aud: 'api://other', x5t: ordersThumb }), 401, 'jwt_invalid'],
    ['no exp', async () => mintToken(rsa, { exp: null, x5t: ordersThumb }), 401, 'jwt_invalid'],
    ['no jti', async () => mintToken(rsa, { jti: null, x5t: ordersThumb }), 401, 'jwt_invalid'],
    ['alg none', async () => unsignedToken({ x5t: ordersThumb }), 401, 'jwt_invalid'],
    ['HS256 keyed with the RSA public key', async () => hs256WithPublicKey(rsa, { x5t: ordersThumb }), 401, 'jwt_invalid'],
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
