/**
 * Rate limits across replicas (issue 4): two sidecars sharing one real Redis enforce one limit
 * per identity; Redis going away follows `onError`, and limits resume when it returns.
 */
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { request } from 'undici';
import { agentFor, call } from '../helpers/client.js';
import { REDIS_MISSING, redisServerBinary, startRedis } from '../helpers/redis.js';
import type { RedisServer } from '../helpers/redis.js';
import { startSidecar } from '../helpers/sidecar.js';
import { startUpstream } from '../helpers/upstream.js';
import type { Upstream } from '../helpers/upstream.js';
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
  it('admit together what one would: burst + rps x seconds (within 5%, real time, one test process)', async () => {
    const prefix = `two-${Date.now()}:`;
    const [a, b] = await Promise.all([startSidecar(redisConfig('deny', prefix)), startSidecar(redisConfig('deny', prefix))]);
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
      const starts = [...a.audit.requests(), ...b.audit.requests()]
        .filter((l) => l['path'] === '/orders/1')
        .map((l) => Date.parse(String(l['time'])) - Number(l['durationMs']));
      const expected = 100 + (50 * (Math.max(...starts) - Math.min(...starts))) / 1000;
      expect(refused).toBeGreaterThan(0);
      // Each sidecar alone would have admitted nearly this much: together they must not double it.
      expect(Math.abs(admitted - expected) / expected).toBeLessThanOrEqual(0.05);
      expect(a.audit.requests().some((l) => l['status'] === 200)).toBe(true);
      expect(b.audit.requests().some((l) => l['status'] === 200)).toBe(true);
    } finally {
      await agent.close();
      await Promise.all([a.close(), b.close()]);
    }
  }, 30_000);

  it('follows onError while Redis is down and limits again when it is back', async () => {
    const r = redis as RedisServer;
    // A small bucket, so "the limit holds again" shows within a few requests.
    const deny = await startSidecar(redisConfig('deny', `down-deny-${Date.now()}:`, { rps: 1, burst: 5 }));
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
      const deadline = Date.now() + 10_000;
      let status = 0;
      while (Date.now() < deadline) {
        status = (await call(agent, deny.origin, '/orders/1')).status;
        if (status !== 503) break;
        await new Promise((res) => setTimeout(res, 100));
      }
      expect([200, 429]).toContain(status);
      // And the limit holds again: burst 5 at 1 rps cannot admit 12 requests in a row.
      const statuses: number[] = [];
      for (let i = 0; i < 12; i++) statuses.push((await call(agent, deny.origin, '/orders/2')).status);
      expect(statuses).toContain(429);
      expect(statuses).not.toContain(503);
    } finally {
      await agent.close();
      await Promise.all([deny.close(), allow.close()]);
    }
  }, 40_000);
});
