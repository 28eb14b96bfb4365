/**
 * Rate limits across replicas: two sidecars sharing one real Redis enforce one limit
 * per identity; Redis going away follows `onError`, and limits resume when it returns.
 */
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { request } from 'undici';
import type { AuditLine } from '../helpers/audit-sink.js';
import { agentFor, call } from '../helpers/client.js';
import { REDIS_MISSING, redisServerBinary, startRedis } from '../helpers/redis.js';
import type { RedisServer } from '../helpers/redis.js';
import { admitBounds } from '../helpers/rate-window.js';
import { startSidecar } from '../helpers/sidecar.js';
import { startUpstream } from '../helpers/upstream.js';
import type { Upstream } from '../helpers/upstream.js';
import { until } from '../helpers/wait.js';
import { baseConfig, creds } from './config.js';

const pki = inject('pki');
const haveRedis = redisServerBinary() !== null;
if (!haveRedis && process.env['MTLS_SIDECAR_REQUIRE_REDIS'] === '1') throw new Error(REDIS_MISSING);

let redis: RedisServer | null = null;
let app: Upstream;

beforeAll(async () => {
  app = await startUpstream();
  if (haveRedis) redis = await startRedis();
});
afterAll(async () => {
  await redis?.stop();
  await app.close();
});

function redisConfig(onError: 'allow' | 'deny', prefix: string, bucket = { rps: 50, burst: 100 }): Record<string, unknown> {
  return baseConfig(pki, app.url, {
    rateLimit: {
      identities: { billing: bucket },
      backend: 'redis',
      redis: { url: (redis as RedisServer).url, keyPrefix: prefix, onError },
    },
  });
}

describe.skipIf(!haveRedis)('two sidecars, one Redis', () => {
  // Real time (Redis's clock decides): the expected count is bounded from the audit lines
  // (helpers/rate-window.ts), whatever the machine's speed. A small rate keeps four sequential
  // clients above it even on a loaded machine (each request would have to take 400 ms for them to
  // fall behind). Two limiters not sharing would admit twice the burst and twice the refill.
  it('admit together what one would: burst + rps x seconds, to the token (real time, one test process)', async () => {
    const prefix = `two-${Date.now()}:`;
    const bucket = { rps: 10, burst: 20 };
    // Exact counts: a decision past the default 75 ms deadline on a loaded machine would be a 503.
    const exact = { redisTimeoutMs: 1000 };
    const [a, b] = await Promise.all([startSidecar(redisConfig('deny', prefix, bucket), exact), startSidecar(redisConfig('deny', prefix, bucket), exact)]);
    const agent = agentFor(creds(pki, 'billing'), { connections: 4 });
    try {
      await Promise.all([call(agent, a.origin, '/warm-up'), call(agent, b.origin, '/warm-up')]);
      const start = Date.now();
      let admitted = 0;
      let refused = 0;
      const worker = async (origin: string): Promise<void> => {
        while (Date.now() - start < 2000) {
          const res = await request(`${origin}/orders/1`, { dispatcher: agent });
          await res.body.dump();
          if (res.statusCode === 200) admitted++;
          else if (res.statusCode === 429) refused++;
        }
      };
      await Promise.all([worker(a.origin), worker(a.origin), worker(b.origin), worker(b.origin)]);
      // The audit line is written as the response closes, which may be just after the client read it.
      const lines = (): AuditLine[] => [...a.audit.requests(), ...b.audit.requests()].filter((l) => l['path'] === '/orders/1');
      await until(() => lines().length >= admitted + refused, 2000);
      expect(lines()).toHaveLength(admitted + refused);
      expect(refused).toBeGreaterThan(0);
      const { min, max } = admitBounds(lines(), bucket);
      expect(admitted).toBeGreaterThanOrEqual(min);
      expect(admitted).toBeLessThanOrEqual(max);
      expect(a.audit.requests().some((l) => l['status'] === 200)).toBe(true);
      expect(b.audit.requests().some((l) => l['status'] === 200)).toBe(true);
    } finally {
      await agent.close();
      await Promise.all([a.close(), b.close()]);
    }
  }, 30_000);

  it('follows onError while Redis is down and limits again when it is back', async () => {
    const r = redis as RedisServer;
    // A small, slow bucket, so "the limit holds again" shows within a few requests, however long each takes.
    const deny = await startSidecar(redisConfig('deny', `down-deny-${Date.now()}:`, { rps: 0.2, burst: 5 }));
    const allow = await startSidecar(redisConfig('allow', `down-allow-${Date.now()}:`));
    const agent = agentFor(creds(pki, 'billing'));
    try {
      expect((await call(agent, deny.origin, '/orders/1')).status).toBe(200);
      await r.kill();
      const refused = await call(agent, deny.origin, '/orders/1');
      expect(refused.status).toBe(503);
      expect(refused.json()).toMatchObject({ error: 'service_unavailable' });
      await deny.audit.waitFor((l) => l.requestId === refused.headers['x-request-id'] && l.reason === 'ratelimit_unavailable' && l.decision === 'deny');
      const let_through = await call(agent, allow.origin, '/orders/1');
      expect(let_through.status).toBe(200);
      await allow.audit.waitFor((l) => l.requestId === let_through.headers['x-request-id'] && l.reason === 'ratelimit_unavailable' && l.decision === 'allow');
      await r.start();
      // The client reconnects on its own; within a few seconds decisions are made again.
      let status = 0;
      await until(async () => (status = (await call(agent, deny.origin, '/orders/1')).status) !== 503, 10_000, 100);
      expect([200, 429]).toContain(status);
      // And the limit holds again: burst 5 at 0.2 rps cannot admit 12 requests in a row.
      const statuses: number[] = [];
      for (let i = 0; i < 12; i++) statuses.push((await call(agent, deny.origin, '/orders/2')).status);
      // A 429 is a decision made by Redis again. (A lone 503 here is one decision past its 75 ms
      // bound on a loaded machine, not Redis still down: that is asserted above, by its audit line.)
      expect(statuses).toContain(429);
    } finally {
      await agent.close();
      await Promise.all([deny.close(), allow.close()]);
    }
  }, 40_000);
});
