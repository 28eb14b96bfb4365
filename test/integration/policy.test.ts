/** Identity, scopes, routes and path normalization over real mTLS (SPEC §3, §4). */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import type { Agent } from 'undici';
import { agentFor, call, rawRequest } from '../helpers/client.js';
import { startSidecar } from '../helpers/sidecar.js';
import type { RunningSidecar } from '../helpers/sidecar.js';
import { startUpstream } from '../helpers/upstream.js';
import type { Upstream } from '../helpers/upstream.js';
import { baseConfig, creds } from './config.js';

const pki = inject('pki');
let app: Upstream;
let sc: RunningSidecar;
let orders: Agent;
let billing: Agent;
let stranger: Agent;

beforeAll(async () => {
  app = await startUpstream();
  sc = await startSidecar(
    baseConfig(pki, app.url, {
      routes: [
        { name: 'health', path: '/healthz', methods: ['GET'], public: true },
        { name: 'read', prefix: '/orders', methods: ['GET', 'HEAD'], scopes: ['orders:read'] },
        { name: 'write', prefix: '/orders', methods: ['POST', 'PUT', 'PATCH', 'DELETE'], scopes: ['orders:write'] },
        { name: 'admin', prefix: '/admin', scopes: ['admin'] },
        { name: 'files', glob: '/files/*/meta', methods: ['GET'] },
      ],
    }),
  );
  orders = agentFor(creds(pki, 'orders'));
  billing = agentFor(creds(pki, 'billing'));
  // Trusted by the CA but matched by no identity rule.
  stranger = agentFor(creds(pki, 'interClient'));
});
afterAll(async () => {
  await Promise.all([orders.close(), billing.close(), stranger.close()]);
  await sc.close();
  await app.close();
});

async function auditOf(requestId: unknown): Promise<Record<string, unknown>> {
  return sc.audit.waitFor((l) => l.msg === 'request' && l.requestId === requestId);
}

describe('authorization', () => {
  it('lets an identity with the scope through', async () => {
    const res = await call(billing, sc.origin, '/orders/7');
    expect(res.status).toBe(200);
  });

  it('refuses a missing scope with 403 and a generic body; the reason is in the audit line', async () => {
    const before = app.seen.length;
    const res = await call(billing, sc.origin, '/orders', { method: 'POST', body: '{}' });
    expect(res.status).toBe(403);
    expect(res.headers['content-type']).toBe('application/json');
    expect(res.json()).toEqual({ error: 'forbidden', requestId: res.headers['x-request-id'] });
    expect(res.headers['cache-control']).toBe('no-store');
    expect(app.seen.length).toBe(before);
    expect(await auditOf(res.headers['x-request-id'])).toMatchObject({ decision: 'deny', reason: 'scope_missing', status: 403, identity: 'billing', route: 'write' });
  });

  it('refuses an unknown identity on a non-public route', async () => {
    const res = await call(stranger, sc.origin, '/orders/1');
    expect(res.status).toBe(403);
    expect(await auditOf(res.headers['x-request-id'])).toMatchObject({ reason: 'no_identity', identity: null, route: 'read' });
  });

  it('admits an unknown identity on a public route, without identity headers', async () => {
    const res = await call(stranger, sc.origin, '/healthz');
    expect(res.status).toBe(200);
    const seen = res.json<{ headers: Record<string, string> }>();
    expect(seen.headers['x-client-identity']).toBeUndefined();
    expect(seen.headers['x-forwarded-client-cert']).toMatch(/^Hash=[0-9a-f]{64};/);
  });

  it('denies by default when no route matches (path or method)', async () => {
    const a = await call(orders, sc.origin, '/nowhere');
    expect(a.status).toBe(403);
    expect(await auditOf(a.headers['x-request-id'])).toMatchObject({ reason: 'no_route', route: null });
    const b = await call(orders, sc.origin, '/healthz', { method: 'DELETE' });
    expect(b.status).toBe(403);
    expect(await auditOf(b.headers['x-request-id'])).toMatchObject({ reason: 'no_route' });
  });

  it('matches prefixes on whole segments only', async () => {
    expect((await call(orders, sc.origin, '/orders')).status).toBe(200);
    expect((await call(orders, sc.origin, '/ordersx')).status).toBe(403);
  });

  it('matches globs one segment per *', async () => {
    expect((await call(orders, sc.origin, '/files/a/meta')).status).toBe(200);
    expect((await call(orders, sc.origin, '/files/a/b/meta')).status).toBe(403);
  });
});

describe('path normalization (SPEC §4)', () => {
  const c = (): ReturnType<typeof creds> => creds(pki, 'orders');
  const get = (target: string): string => `GET ${target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`;

  it('resolves /a/../admin before routing and forwards the resolved path', async () => {
    const before = app.seen.length;
    const res = await rawRequest(sc.port, c(), get('/orders/../admin/x'));
    // orders lacks the admin scope: the resolved path is what was judged.
    expect(res.status).toBe(403);
    expect(app.seen.length).toBe(before);
    const ok = await rawRequest(sc.port, c(), get('/admin/../orders/./5'));
    expect(ok.status).toBe(200);
    expect(app.seen.at(-1)?.url).toBe('/orders/5');
  });

  it('merges repeated slashes: //orders//5 is /orders/5', async () => {
    const res = await rawRequest(sc.port, c(), get('//orders//5'));
    expect(res.status).toBe(200);
    expect(app.seen.at(-1)?.url).toBe('/orders/5');
  });

  it('refuses encoded dot-dot above the root with 400', async () => {
    const res = await rawRequest(sc.port, c(), get('/%2e%2e/admin'));
    expect(res.status).toBe(400);
    expect(JSON.parse(res.body)).toMatchObject({ error: 'bad_request' });
  });

  it('refuses an encoded slash or backslash with 400 and audits bad_path', async () => {
    const res = await rawRequest(sc.port, c(), get('/orders%2F..%2Fadmin'));
    expect(res.status).toBe(400);
    const id = /x-request-id: ([^\r]+)/i.exec(res.head)?.[1];
    expect(await auditOf(id)).toMatchObject({ reason: 'bad_path', decision: 'deny', status: 400 });
    expect((await rawRequest(sc.port, c(), get('/x%2Fadmin'))).status).toBe(400);
    expect((await rawRequest(sc.port, c(), get('/orders%5c1'))).status).toBe(400);
  });

  it('decodes unreserved characters and forwards the normalized path byte for byte', async () => {
    const res = await rawRequest(sc.port, c(), get('/%6Frders/%7E1?q=%2F'));
    expect(res.status).toBe(200);
    expect(app.seen.at(-1)?.url).toBe('/orders/~1?q=%2F');
  });
});
