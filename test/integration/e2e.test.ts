import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { agentFor, call } from '../helpers/client.js';
import { startSidecar } from '../helpers/sidecar.js';
import type { RunningSidecar } from '../helpers/sidecar.js';
import { startUpstream } from '../helpers/upstream.js';
import type { Upstream } from '../helpers/upstream.js';
import { baseConfig, creds } from './config.js';

const pki = inject('pki');
let app: Upstream;
let sc: RunningSidecar;

beforeAll(async () => {
  app = await startUpstream();
  sc = await startSidecar(baseConfig(pki, app.url));
});
afterAll(async () => {
  await sc.close();
  await app.close();
});

describe('a trusted client end to end', () => {
  it('reaches the app with XFCC and identity headers, and is audited', async () => {
    const agent = agentFor(creds(pki, 'orders'));
    const res = await call(agent, sc.origin, '/orders/42?x=1');
    expect(res.status).toBe(200);
    const seen = res.json<{ url: string; headers: Record<string, string> }>();
    expect(seen.url).toBe('/orders/42?x=1');
    expect(seen.headers['x-client-identity']).toBe('orders');
    expect(seen.headers['x-client-scopes']).toBe('orders:read orders:write');
    const hash = pki.clients.orders.sha256.replaceAll(':', '').toLowerCase();
    expect(seen.headers['x-forwarded-client-cert']).toBe(
      `Hash=${hash};Subject="CN=orders,OU=backend,O=shop";URI=spiffe://cluster.local/ns/shop/sa/orders`,
    );
    expect(res.headers['x-request-id']).toBeTypeOf('string');
    expect(res.headers['x-content-type-options']).toBe('nosniff');
    const line = await sc.audit.waitFor((l) => l.msg === 'request' && l.requestId === res.headers['x-request-id']);
    expect(line).toMatchObject({
      identity: 'orders',
      certSha256: hash,
      uri: 'spiffe://cluster.local/ns/shop/sa/orders',
      method: 'GET',
      path: '/orders/42',
      route: 'read',
      decision: 'allow',
      reason: 'ok',
      status: 200,
      protocol: 'HTTP/1.1',
    });
    await agent.close();
  });
});
