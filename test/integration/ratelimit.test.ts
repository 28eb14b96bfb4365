/** Rate limits per identity through the real pipeline (SPEC §3 rateLimit, §4 429). */
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { request } from 'undici';
import type { Agent } from 'undici';
import type { AuditLine } from '../helpers/audit-sink.js';
import { agentFor, call } from '../helpers/client.js';
import { parseProm, value } from '../helpers/prom.js';
import { admitBounds } from '../helpers/rate-window.js';
import { startSidecar } from '../helpers/sidecar.js';
import type { RunningSidecar } from '../helpers/sidecar.js';
import { startUpstream } from '../helpers/upstream.js';
import type { Upstream } from '../helpers/upstream.js';
import { until } from '../helpers/wait.js';
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
      rateLimit: { default: { rps: 20, burst: 10 }, identities: { billing: { rps: 2, burst: 3 } }, backend: 'memory' },
      routes: [
        { name: 'health', path: '/healthz', methods: ['GET'], public: true },
        { name: 'slowlane', prefix: '/orders/export', methods: ['GET'], scopes: ['orders:read'], rateLimit: { rps: 1, burst: 2 } },
        { name: 'read', prefix: '/orders', methods: ['GET', 'HEAD'], scopes: ['orders:read'] },
        { name: 'write', prefix: '/orders', methods: ['POST'], scopes: ['orders:write'] },
      ],
    }),
  );
  orders = agentFor(creds(pki, 'orders'));
  billing = agentFor(creds(pki, 'billing'));
  stranger = agentFor(creds(pki, 'interClient'));
});
afterAll(async () => {
  await Promise.all([orders.close(), billing.close(), stranger.close()]);
  await sc.close();
  await app.close();
});

describe('per-identity token buckets', () => {
  it('admits the burst, then answers 429 with Retry-After and RateLimit headers; the app never sees refusals', async () => {
    const before = app.seen.length;
    const statuses: number[] = [];
    let refusal: Awaited<ReturnType<typeof call>> | null = null;
    for (let i = 0; i < 6; i++) {
      const r = await call(billing, sc.origin, `/orders/${i}`);
      statuses.push(r.status);
      if (r.status === 429 && refusal === null) refusal = r;
    }
    expect(statuses.filter((s) => s === 200).length).toBeGreaterThanOrEqual(3);
    expect(statuses.filter((s) => s === 200).length).toBeLessThanOrEqual(4); // burst 3 (+1 refilled at 2 rps)
    expect(refusal).not.toBeNull();
    const r = refusal as NonNullable<typeof refusal>;
    expect(r.json()).toMatchObject({ error: 'rate_limited' });
    const retry = Number(r.headers['retry-after']);
    expect(Number.isInteger(retry) && retry >= 1).toBe(true);
    expect(String(r.headers['ratelimit-policy'])).toMatch(/q=3/);
    expect(String(r.headers['ratelimit'])).toMatch(/r=0/);
    expect(app.seen.length - before).toBe(statuses.filter((s) => s === 200).length);
    const line = await sc.audit.waitFor((l) => l.requestId === r.headers['x-request-id']);
    expect(line).toMatchObject({ reason: 'rate_limited', status: 429, decision: 'deny', identity: 'billing' });
  });

  it('leaves other identities unaffected and puts RateLimit headers on allowed responses', async () => {
    const r = await call(orders, sc.origin, '/orders/1');
    expect(r.status).toBe(200);
    expect(String(r.headers['ratelimit-policy'])).toMatch(/q=10/);
    expect(String(r.headers['ratelimit'])).toMatch(/r=\d+/);
  });

  it('honours Retry-After: waiting that long gets through', async () => {
    let r = await call(billing, sc.origin, '/orders/x');
    for (let i = 0; i < 10 && r.status !== 429; i++) r = await call(billing, sc.origin, '/orders/x');
    expect(r.status).toBe(429);
    await new Promise((res) => setTimeout(res, Number(r.headers['retry-after']) * 1000));
    expect((await call(billing, sc.origin, '/orders/x')).status).toBe(200);
  });

  it("applies a route's own limit on top of the identity's", async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) statuses.push((await call(orders, sc.origin, '/orders/export/all')).status);
    expect(statuses.slice(0, 2)).toEqual([200, 200]);
    expect(statuses.slice(2)).toContain(429);
    // The same identity still has its own bucket elsewhere.
    expect((await call(orders, sc.origin, '/orders/2')).status).toBe(200);
  });

  it('does not spend tokens on requests refused before the limiter', async () => {
    // billing may not POST: scope_missing; those refusals must not drain its bucket. The clock
    // stands still, so the whole burst is left exactly when none of them took a token.
    const clock = 1_000_000;
    const s = await startSidecar(baseConfig(pki, app.url, { rateLimit: { identities: { billing: { rps: 2, burst: 3 } } } }), { rateClock: () => clock });
    const agent = agentFor(creds(pki, 'billing'));
    try {
      for (let i = 0; i < 10; i++) expect((await call(agent, s.origin, '/orders', { method: 'POST', body: 'x' })).status).toBe(403);
      const statuses: number[] = [];
      for (let i = 0; i < 4; i++) statuses.push((await call(agent, s.origin, `/orders/ok-${i}`)).status);
      expect(statuses).toEqual([200, 200, 200, 429]);
    } finally {
      await agent.close();
      await s.close();
    }
  });

  it('limits certificates without an identity on public routes per certificate', async () => {
    // Default bucket: burst 10, 20 rps. 30 at once over two warm connections cannot all fit
    // (fresh handshakes would spread them out long enough to refill).
    const two = agentFor(creds(pki, 'interClient'), { connections: 2 });
    await Promise.all([call(two, sc.origin, '/warm-up'), call(two, sc.origin, '/warm-up')]);
    const statuses = await Promise.all(Array.from({ length: 30 }, async () => (await call(two, sc.origin, '/healthz')).status));
    await two.close();
    expect(statuses).toContain(429);
    expect(statuses.filter((st) => st === 200).length).toBeLessThan(20);
  });

  it('counts refusals in mtls_sidecar_rate_limited_total by identity', async () => {
    const samples = parseProm(await (await request(`${sc.admin}/metrics`)).body.text());
    expect(value(samples, 'mtls_sidecar_rate_limited_total', { identity: 'billing' })).toBeGreaterThanOrEqual(1);
    expect(value(samples, 'mtls_sidecar_rate_limited_total', { identity: 'unknown' })).toBeGreaterThanOrEqual(1);
  });
});

describe('steady over-limit load', () => {
  it('admits exactly rps x seconds + burst under a stepped clock, and another identity is unaffected', async () => {
    let clock = 1_000_000;
    const s = await startSidecar(baseConfig(pki, app.url, { rateLimit: { default: { rps: 200, burst: 50 }, identities: { billing: { rps: 100, burst: 20 } } } }), {
      rateClock: () => clock,
    });
    const heavy = agentFor(creds(pki, 'billing'), { connections: 8 });
    const light = agentFor(creds(pki, 'orders'));
    try {
      let admitted = 0;
      let refused = 0;
      const fire = async (n: number): Promise<void> => {
        const statuses = await Promise.all(Array.from({ length: n }, async () => (await call(heavy, s.origin, '/orders/1')).status));
        admitted += statuses.filter((st) => st === 200).length;
        refused += statuses.filter((st) => st === 429).length;
      };
      // Four simulated seconds in 50 ms steps, each step offered three times what refills.
      await fire(60);
      for (let step = 0; step < 80; step++) {
        clock += 50;
        await fire(15);
        expect((await call(light, s.origin, '/orders/2')).status).toBe(200);
      }
      expect(admitted).toBe(20 + 100 * 4);
      expect(refused).toBe(60 + 80 * 15 - admitted);
    } finally {
      await Promise.all([heavy.close(), light.close()]);
      await s.close();
    }
  }, 60_000);

  it('holds the limit in real time too: burst + rps x seconds, to the token', async () => {
    // A small rate, so that eight clients stay above it even on a loaded machine (client, sidecar
    // and app share one event loop); the count is bounded from the audit lines
    // (helpers/rate-window.ts), not from the test's own clock.
    const bucket = { rps: 10, burst: 20 };
    const s = await startSidecar(baseConfig(pki, app.url, { rateLimit: { identities: { billing: bucket } } }));
    const heavy = agentFor(creds(pki, 'billing'), { connections: 8 });
    try {
      // Open the 8 connections with requests refused before the limiter (no route).
      await Promise.all(Array.from({ length: 8 }, () => call(heavy, s.origin, '/warm-up')));
      const start = Date.now();
      let admitted = 0;
      let refused = 0;
      const worker = async (): Promise<void> => {
        while (Date.now() - start < 3000) {
          const res = await request(`${s.origin}/orders/1`, { dispatcher: heavy });
          await res.body.dump();
          if (res.statusCode === 200) admitted++;
          else if (res.statusCode === 429) refused++;
        }
      };
      await Promise.all(Array.from({ length: 8 }, worker));
      // The audit line is written as the response closes, which may be just after the client read it.
      const lines = (): AuditLine[] => s.audit.requests().filter((l) => l['path'] === '/orders/1');
      await until(() => lines().length >= admitted + refused, 2000);
      expect(lines()).toHaveLength(admitted + refused);
      expect(refused).toBeGreaterThan(admitted);
      const { min, max } = admitBounds(lines(), bucket);
      expect(admitted).toBeGreaterThanOrEqual(min);
      expect(admitted).toBeLessThanOrEqual(max);
    } finally {
      await heavy.close();
      await s.close();
    }
  }, 30_000);
});
