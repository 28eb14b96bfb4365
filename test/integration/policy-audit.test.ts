/**
 * policy.mode: audit (and a route's own mode): requests authorization would refuse reach the app,
 * their audit line says what would have happened (`wouldDeny`), and
 * mtls_sidecar_policy_would_deny_total counts them; certificate trust and rate limits still refuse.
 * A refused token is authorization too (SPEC §3: "token missing/invalid/scope"): noted, not
 * enforced, and never handed to the app.
 */
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { request } from 'undici';
import type { Agent } from 'undici';
import { agentFor, call, tryRequest, tlsOptions } from '../helpers/client.js';
import { TEST_AUDIENCE, TEST_ISSUER, jwksOf, makeSigningKey, mintToken, thumbprintOfPem, writeJwksFile } from '../helpers/jwt.js';
import type { SigningKey } from '../helpers/jwt.js';
import { parseProm, value } from '../helpers/prom.js';
import { startSidecar } from '../helpers/sidecar.js';
import type { RunningSidecar } from '../helpers/sidecar.js';
import { startUpstream } from '../helpers/upstream.js';
import type { Upstream } from '../helpers/upstream.js';
import { baseConfig, creds } from './config.js';

const pki = inject('pki');
let app: Upstream;
let sc: RunningSidecar;
let mixed: RunningSidecar;
const agents: Agent[] = [];

beforeAll(async () => {
  app = await startUpstream();
  sc = await startSidecar(
    baseConfig(pki, app.url, {
      policy: { mode: 'audit' },
      // Only billing is limited: one request, then (practically) never again.
      rateLimit: { identities: { billing: { rps: 0.001, burst: 1 } } },
    }),
  );
  const cfg = baseConfig(pki, app.url);
  mixed = await startSidecar({ ...cfg, routes: [{ name: 'beta', prefix: '/beta', scopes: ['beta:use'], mode: 'audit' }, ...(cfg['routes'] as object[])] });
});
afterAll(async () => {
  await Promise.all(agents.map((a) => a.close()));
  await sc.close();
  await mixed.close();
  await app.close();
});

function agent(name: Parameters<typeof creds>[1]): Agent {
  const a = agentFor(creds(pki, name));
  agents.push(a);
  return a;
}

async function wouldDeny(s: RunningSidecar, identity: string, route: string, reason: string): Promise<number> {
  return value(parseProm(await (await request(`${s.admin}/metrics`)).body.text()), 'mtls_sidecar_policy_would_deny_total', { identity, route, reason });
}

describe('policy.mode: audit', () => {
  it("lets a stranger's request through to the app, and says what would have been refused", async () => {
    const before = app.seen.length;
    const res = await call(agent('interClient'), sc.origin, '/orders/1', { headers: { 'x-request-id': 'audit-stranger' } });
    expect(res.status).toBe(200);
    expect(app.seen.length).toBe(before + 1);
    const line = await sc.audit.waitFor((l) => l['requestId'] === 'audit-stranger');
    expect(line).toMatchObject({ decision: 'allow', reason: 'audit_mode', wouldDeny: 'no_identity', route: 'read', status: 200, identity: null });
    expect(await wouldDeny(sc, 'unknown', 'read', 'no_identity')).toBe(1);
  });

  it('no route and a missing scope: served, noted', async () => {
    const orders = agent('orders');
    expect((await call(orders, sc.origin, '/nowhere', { headers: { 'x-request-id': 'audit-noroute' } })).status).toBe(200);
    expect(await sc.audit.waitFor((l) => l['requestId'] === 'audit-noroute')).toMatchObject({ decision: 'allow', reason: 'audit_mode', wouldDeny: 'no_route', route: null });
    expect(await wouldDeny(sc, 'orders', 'unknown', 'no_route')).toBe(1);
  });

  it('an allowed request has no wouldDeny', async () => {
    await call(agent('orders'), sc.origin, '/orders/2', { headers: { 'x-request-id': 'audit-fine' } });
    const line = await sc.audit.waitFor((l) => l['requestId'] === 'audit-fine');
    expect(line).toMatchObject({ decision: 'allow', reason: 'ok' });
    expect(line).not.toHaveProperty('wouldDeny');
  });

  it('still refuses an untrusted certificate and a spent rate limit', async () => {
    const foreign = await tryRequest(sc.port, { ...tlsOptions(creds(pki, 'foreign')) });
    expect(foreign.ok ? foreign.status : 400).toBe(400);
    await sc.audit.waitFor((l) => l.msg === 'handshake_rejected' && l['reason'] === 'untrusted');
    const billing = agent('billing');
    // billing may read (scope) — and in audit mode it may also write (would be scope_missing) — but only once.
    expect((await call(billing, sc.origin, '/orders/3', { method: 'POST', body: 'x', headers: { 'x-request-id': 'audit-rl-1' } })).status).toBe(200);
    expect(await sc.audit.waitFor((l) => l['requestId'] === 'audit-rl-1')).toMatchObject({ reason: 'audit_mode', wouldDeny: 'scope_missing' });
    const limited = await call(billing, sc.origin, '/orders/4', { headers: { 'x-request-id': 'audit-rl-2' } });
    expect(limited.status).toBe(429);
    expect(await sc.audit.waitFor((l) => l['requestId'] === 'audit-rl-2')).toMatchObject({ decision: 'deny', reason: 'rate_limited' });
  });
});

describe('a route in audit mode under an enforcing policy', () => {
  it('the audited route lets a missing scope through; the others still refuse', async () => {
    const orders = agent('orders');
    expect((await call(orders, mixed.origin, '/beta/x', { headers: { 'x-request-id': 'beta-1' } })).status).toBe(200);
    expect(await mixed.audit.waitFor((l) => l['requestId'] === 'beta-1')).toMatchObject({ reason: 'audit_mode', wouldDeny: 'scope_missing', route: 'beta' });
    const billing = agent('billing');
    expect((await call(billing, mixed.origin, '/orders/1', { method: 'POST', body: 'x' })).status).toBe(403);
    expect((await call(orders, mixed.origin, '/nowhere')).status).toBe(403);
  });
});

describe('policy.mode: audit with jwt', () => {
  let dir = '';
  let key: SigningKey;
  let withJwt: RunningSidecar;
  let ordersThumb = '';
  let billingThumb = '';

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'mtls-sidecar-audit-jwt-'));
    key = await makeSigningKey('RS256');
    const jwksFile = path.join(dir, 'jwks.json');
    await writeJwksFile(jwksFile, jwksOf(key));
    ordersThumb = thumbprintOfPem(readFileSync(pki.clients.orders.cert));
    billingThumb = thumbprintOfPem(readFileSync(pki.clients.billing.cert));
    const cfg = baseConfig(pki, app.url, {
      policy: { mode: 'audit' },
      jwt: { issuer: TEST_ISSUER, audience: TEST_AUDIENCE, jwks: { file: jwksFile }, algorithms: ['RS256'], required: true, certificateBound: true },
    });
    const routes = cfg['routes'] as Record<string, unknown>[];
    withJwt = await startSidecar({ ...cfg, routes: routes.map((r) => (r['name'] === 'write' ? { ...r, tokenScopes: ['orders.write'] } : r)) });
  });
  afterAll(async () => {
    await withJwt.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function send(who: Parameters<typeof creds>[1], id: string, token: string | null, method = 'GET', extra: Record<string, string> = {}): Promise<{ status: number; seen: Record<string, unknown> | undefined }> {
    const before = app.seen.length;
    const headers = { 'x-request-id': id, ...extra, ...(token === null ? {} : { authorization: `Bearer ${token}` }) };
    const res = await call(agent(who), withJwt.origin, '/orders/1', { method, headers, ...(method === 'POST' ? { body: '{}' } : {}) });
    return { status: res.status, seen: app.seen.length === before + 1 ? app.seen.at(-1)?.headers : undefined };
  }

  it.each([
    ['missing', 'jwt_missing', () => Promise.resolve(null), 'GET', 'read'],
    ['not a token', 'jwt_invalid', () => Promise.resolve('not.a.token'), 'GET', 'read'],
    ['bound to another certificate', 'jwt_cert_mismatch', () => mintToken(key, { x5t: billingThumb }), 'GET', 'read'],
    ['without the route tokenScopes', 'token_scope_missing', () => mintToken(key, { scope: 'orders.read', x5t: ordersThumb }), 'POST', 'write'],
  ])('a token %s: served, noted as wouldDeny %s, and the app gets neither the token nor x-jwt-*', async (_name, reason, make, method, route) => {
    const id = `audit-jwt-${reason}`;
    // A forged identity header too: the app must not take it for a verified token.
    const { status, seen } = await send('orders', id, await make(), method, { 'x-jwt-sub': 'forged' });
    expect(status).toBe(200);
    expect(seen).toBeDefined();
    expect(seen?.['authorization']).toBeUndefined();
    expect(seen?.['x-jwt-sub']).toBeUndefined();
    expect(seen?.['x-jwt-scopes']).toBeUndefined();
    const line = await withJwt.audit.waitFor((l) => l['requestId'] === id);
    expect(line).toMatchObject({ decision: 'allow', reason: 'audit_mode', wouldDeny: reason, identity: 'orders', route, status: 200 });
    expect(await wouldDeny(withJwt, 'orders', route, reason)).toBe(1);
  });

  it('a valid token: served as in enforce mode, nothing noted', async () => {
    const { status, seen } = await send('orders', 'audit-jwt-ok', await mintToken(key, { sub: 'user-9', x5t: ordersThumb }));
    expect(status).toBe(200);
    expect(seen?.['x-jwt-sub']).toBe('user-9');
    const line = await withJwt.audit.waitFor((l) => l['requestId'] === 'audit-jwt-ok');
    expect(line).toMatchObject({ decision: 'allow', reason: 'ok' });
    expect(line).not.toHaveProperty('wouldDeny');
  });

  it('the first refusal is the one noted: a missing scope before a missing token', async () => {
    // billing may not write (scope orders:write) and sends no token either.
    const { status } = await send('billing', 'audit-jwt-first', null, 'POST');
    expect(status).toBe(200);
    expect(await withJwt.audit.waitFor((l) => l['requestId'] === 'audit-jwt-first')).toMatchObject({ reason: 'audit_mode', wouldDeny: 'scope_missing', route: 'write' });
    expect(await wouldDeny(withJwt, 'billing', 'write', 'scope_missing')).toBe(1);
    expect(await wouldDeny(withJwt, 'billing', 'write', 'jwt_missing')).toBe(0);
  });
});
