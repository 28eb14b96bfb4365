/**
 * Rate limits on a real Redis Cluster (`rateLimit.redis.cluster: true`): three masters, no
 * replicas, on loopback ports, built with `redis-cli --cluster create` (test/helpers/redis.ts).
 * One decision's keys share a hash slot, identities spread over the masters, two sidecars share
 * exact limits through the cluster, and a master killed mid-run takes only its own identities'
 * decisions with it, which then follow `onError`.
 *
 * Skipped, with a message, only when redis-server or redis-cli is not installed; CI sets
 * MTLS_SIDECAR_REQUIRE_REDIS=1 so a missing install fails instead.
 */
import { writeFile } from 'node:fs/promises';
import { afterAll, beforeAll, beforeEach, describe, expect, inject, it } from 'vitest';
import type { Dispatcher } from 'undici';
import { stringify } from 'yaml';
import { silentLog } from '../../src/log.js';
import { RedisRateLimiter } from '../../src/ratelimit/redis.js';
import { Reloader } from '../../src/runtime/reload.js';
import type { Bucket, RateDecision, Take } from '../../src/ratelimit/types.js';
import { agentFor, call } from '../helpers/client.js';
import { captureLog } from '../helpers/log.js';
import type { LogLine } from '../helpers/log.js';
import type { Reply } from '../helpers/client.js';
import { REDIS_CLUSTER_MISSING, rawCommand, redisCliBinary, redisServerBinary, startRedisCluster } from '../helpers/redis.js';
import type { RedisCluster } from '../helpers/redis.js';
import { startSidecar, withEphemeralPorts } from '../helpers/sidecar.js';
import type { RunningSidecar } from '../helpers/sidecar.js';
import { startUpstream } from '../helpers/upstream.js';
import type { Upstream } from '../helpers/upstream.js';
import { baseConfig, creds } from './config.js';

const pki = inject('pki');
const HAVE_CLUSTER = redisServerBinary() !== null && redisCliBinary() !== null;

let cluster: RedisCluster | null = null;
let app: Upstream;
let prefixSeq = 0;

beforeAll(async () => {
  app = await startUpstream();
  if (HAVE_CLUSTER) cluster = await startRedisCluster({ masters: 3 });
});
afterAll(async () => {
  await cluster?.stop();
  await app.close();
});

beforeEach((ctx) => {
  if (HAVE_CLUSTER) return;
  if (process.env['MTLS_SIDECAR_REQUIRE_REDIS'] === '1') throw new Error(REDIS_CLUSTER_MISSING);
  ctx.skip(REDIS_CLUSTER_MISSING);
});

function theCluster(): RedisCluster {
  if (cluster === null) throw new Error('no redis cluster');
  return cluster;
}

/**
 * These tests assert exact sequences (200 … 429, or 503 only where a node is gone): a decision
 * past the default 75 ms deadline on a loaded machine would be `unavailable` and break them, so
 * the sidecars here wait up to a second for Redis. The deadline itself is tested with the
 * limiter alone.
 */
const EXACT = { redisTimeoutMs: 1000 };

function freshPrefix(): string {
  return `c${process.pid}-${++prefixSeq}:`;
}

/** The config routes, with a bucket of their own on `read` and/or `write`. */
function routes(read?: Bucket, write?: Bucket): Record<string, unknown>[] {
  return [
    { name: 'health', path: '/healthz', methods: ['GET'], public: true },
    { name: 'read', prefix: '/orders', methods: ['GET', 'HEAD'], scopes: ['orders:read'], ...(read ? { rateLimit: read } : {}) },
    { name: 'write', prefix: '/orders', methods: ['POST', 'PUT', 'PATCH', 'DELETE'], scopes: ['orders:write'], ...(write ? { rateLimit: write } : {}) },
  ];
}

/**
 * The billing certificate's identity is called `payments` here: `{id/payments}` hashes to
 * another master than `{id/orders}` (`{id/billing}` would share it), so the tests span two
 * masters. The tests check that rather than trust it.
 */
function identities(): Record<string, unknown>[] {
  const uri = (name: string): string => `spiffe://cluster.local/ns/shop/sa/${name}`;
  return [
    { name: 'orders', match: { uri: uri('orders') }, scopes: ['orders:read', 'orders:write'] },
    { name: 'payments', match: { uri: uri('billing') }, scopes: ['orders:read'] },
  ];
}

function clusterConfig(onError: 'allow' | 'deny', prefix: string, buckets: Record<string, Bucket>, read?: Bucket, write?: Bucket, cluster = true): Record<string, unknown> {
  return baseConfig(pki, app.url, {
    identities: identities(),
    routes: routes(read, write),
    rateLimit: {
      identities: buckets,
      backend: 'redis',
      redis: { url: theCluster().url, keyPrefix: prefix, onError, cluster },
    },
  });
}

/** Poll until the sidecar makes decisions (its cluster client is ready): not a 503. */
async function untilDecided(agent: Dispatcher, origin: string, path: string, opts: { method?: string } = {}): Promise<Reply> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const r = await call(agent, origin, path, opts);
    if (r.status !== 503) return r;
    if (Date.now() > deadline) throw new Error(`${origin}${path}: still 503 after 10 s: ${r.text}`);
    await new Promise((res) => setTimeout(res, 50));
  }
}

async function untilAnswering(rl: RedisRateLimiter, takes: readonly Take[]): Promise<RateDecision> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const d = await rl.take(takes);
    if (d.kind !== 'unavailable') return d;
    if (Date.now() > deadline) throw new Error('cluster limiter still unavailable after 10 s');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('Redis Cluster backend', () => {
  it('stores one decision in one slot ({subject} hash tag), spreads identities over the masters, same numbers as one Redis', async () => {
    const c = theCluster();
    const prefix = freshPrefix();
    const logged: LogLine[] = [];
    const rl = new RedisRateLimiter({ url: c.url, keyPrefix: prefix, cluster: true, timeoutMs: 75, log: captureLog(logged) });
    try {
      const own: Bucket = { rps: 1, burst: 10 };
      const route: Bucket = { rps: 0.5, burst: 2 };
      const takes: Take[] = [
        { key: 'id/orders', bucket: own },
        { key: 'id/orders/rt/read', bucket: route },
      ];
      // A two-key script: without the shared tag this is a CROSSSLOT error, i.e. `unavailable`.
      expect(await untilAnswering(rl, takes)).toMatchObject({ kind: 'allow', remaining: 1, index: 1, resetSeconds: 2 });
      expect(await rl.take(takes)).toMatchObject({ kind: 'allow', remaining: 0, index: 1, resetSeconds: 4 });
      expect(await rl.take(takes)).toMatchObject({ kind: 'deny', retryAfterSeconds: 2, index: 1, policy: route });
      // Denials spent nothing from the identity's own bucket: 10 - 2 spent, minus this one.
      expect(await rl.take([{ key: 'id/orders', bucket: own }])).toMatchObject({ kind: 'allow', remaining: 7 });

      // Layout: <keyPrefix>{<subject>}[/rt/<route>], both keys on the master serving the tag.
      const owner = c.nodes[await c.ownerOf(`${prefix}{id/orders}`)];
      expect(owner).toBeDefined();
      for (const key of [`${prefix}{id/orders}`, `${prefix}{id/orders}/rt/read`]) {
        expect(await rawCommand(owner?.port ?? 0, ['EXISTS', key]), key).toBe(':1');
      }
      // Different identities land on different masters: the tag is per subject, not per prefix.
      const owners = new Set<number>();
      for (const name of ['orders', 'billing', 'a', 'b', 'c', 'd', 'e', 'f']) owners.add(await c.ownerOf(`${prefix}{id/${name}}`));
      expect(owners.size).toBe(3);
      // It connected without going round a reconnect loop (ioredis' ready check, which a node
      // still connecting fails, is off), so nothing was logged.
      expect(logged).toEqual([]);
    } finally {
      await rl.close();
    }
  });

  it('two sidecars share exact limits through the cluster (identity and route buckets, all or nothing)', async () => {
    const prefix = freshPrefix();
    // ~0 refill during the test: the counts below are exact.
    const slow = (burst: number): Bucket => ({ rps: 0.01, burst });
    const config = clusterConfig('deny', prefix, { orders: slow(8), payments: slow(4) }, slow(5));
    const [a, b] = await Promise.all([startSidecar(config, EXACT), startSidecar(config, EXACT)]);
    const orders = agentFor(creds(pki, 'orders'));
    const billing = agentFor(creds(pki, 'billing'));
    try {
      const c = theCluster();
      // The two identities' buckets sit on different masters: the test spans the cluster.
      expect(await c.ownerOf(`${prefix}{id/orders}`)).not.toBe(await c.ownerOf(`${prefix}{id/payments}`));
      const via = (i: number): RunningSidecar => (i % 2 === 0 ? a : b);
      // Each sidecar's first answer (polled until its cluster client is ready) spends a token.
      expect((await untilDecided(orders, a.origin, '/orders/1')).status).toBe(200);
      expect((await untilDecided(orders, b.origin, '/orders/1')).status).toBe(200);
      expect((await untilDecided(billing, a.origin, '/orders/1')).status).toBe(200);
      expect((await untilDecided(billing, b.origin, '/orders/1')).status).toBe(200);

      // orders, GET: own bucket (8) and the read route's (5), alternating sidecars.
      const reads: Reply[] = [];
      for (let i = 0; i < 5; i++) reads.push(await call(orders, via(i).origin, '/orders/1'));
      expect(reads.map((r) => r.status)).toEqual([200, 200, 200, 429, 429]);
      expect(reads[3]?.headers['ratelimit-policy']).toMatch(/^"route:read"/);
      // orders, POST (write has no bucket of its own): 8 - 5 spent by the reads = 3 left.
      const writes: Reply[] = [];
      for (let i = 0; i < 5; i++) writes.push(await call(orders, via(i).origin, '/orders', { method: 'POST', body: '{}' }));
      expect(writes.map((r) => r.status)).toEqual([200, 200, 200, 429, 429]);
      expect(writes[3]?.headers['ratelimit-policy']).toMatch(/^"identity:orders"/);
      // payments (billing's certificate), GET: own 4 (and the route's 5): 2 more, then refused.
      const billed: number[] = [];
      for (let i = 0; i < 4; i++) billed.push((await call(billing, via(i).origin, '/orders/1')).status);
      expect(billed).toEqual([200, 200, 429, 429]);
      expect(a.audit.requests().some((l) => l['status'] === 429)).toBe(true);
      expect(b.audit.requests().some((l) => l['status'] === 429)).toBe(true);
    } finally {
      await Promise.all([orders.close(), billing.close()]);
      await Promise.all([a.close(), b.close()]);
    }
  });

  it('a reload that turns cluster on replaces the single-node client', async () => {
    const c = theCluster();
    // Without `cluster` the key carries no hash tag (`<prefix>id/orders`): take a prefix whose
    // untagged key lives on another master than the seed, so a single-node client gets MOVED,
    // which it does not follow, and every decision is `unavailable` (503 with onError: deny).
    // (One prefix in three hashes to the seed; checking the tagged key instead made this flaky.)
    let prefix = freshPrefix();
    for (let i = 0; i < 20 && (await c.ownerOf(`${prefix}id/orders`)) === 0; i++) prefix = freshPrefix();
    expect(await c.ownerOf(`${prefix}id/orders`)).not.toBe(0);
    const config = (cluster: boolean): Record<string, unknown> =>
      withEphemeralPorts(clusterConfig('deny', prefix, { orders: { rps: 100, burst: 100 } }, undefined, undefined, cluster));
    const sc = await startSidecar(config(false), EXACT);
    const orders = agentFor(creds(pki, 'orders'));
    try {
      expect((await call(orders, sc.origin, '/orders/1')).status).toBe(503);
      await writeFile(sc.configFile, stringify(config(true)));
      expect(await new Reloader(sc.sidecar, sc.configFile, silentLog()).reload('test')).toBe('applied');
      expect((await untilDecided(orders, sc.origin, '/orders/1')).status).toBe(200);
    } finally {
      await orders.close();
      await sc.close();
    }
  });

  it('a master killed mid-run: its identities follow onError (allow admits, deny 503), the others keep exact limits; back: decided again', async () => {
    const c = theCluster();
    const prefix = freshPrefix();
    const big: Bucket = { rps: 10_000, burst: 10_000 };
    const buckets = { orders: big, payments: big };
    // POST /orders has a small bucket of its own, to show exact decisions after the kill.
    const write: Bucket = { rps: 0.01, burst: 3 };
    const [deny, allow] = await Promise.all([
      startSidecar(clusterConfig('deny', prefix, buckets, undefined, write), EXACT),
      startSidecar(clusterConfig('allow', `${prefix}allow:`, buckets, undefined, write), EXACT),
    ]);
    const orders = agentFor(creds(pki, 'orders'), { connections: 2 });
    const billing = agentFor(creds(pki, 'billing'), { connections: 2 });
    const victim = await c.ownerOf(`${prefix}{id/payments}`);
    const node = c.nodes[victim];
    if (node === undefined) throw new Error('no victim node');
    // And a limiter of its own, to read the operational log through the outage. Its deadline
    // is long, so what answers below is the client, not the deadline.
    const logged: LogLine[] = [];
    const rl = new RedisRateLimiter({ url: c.url, keyPrefix: `${prefix}direct:`, cluster: true, timeoutMs: 5000, log: captureLog(logged) });
    const direct: Take[] = [{ key: 'id/payments', bucket: big }];
    try {
      expect(await untilAnswering(rl, direct)).toMatchObject({ kind: 'allow' });
      expect(await c.ownerOf(`${prefix}{id/orders}`)).not.toBe(victim);
      expect(await c.ownerOf(`${prefix}allow:{id/payments}`)).toBe(victim); // the tag decides, not the prefix
      await untilDecided(billing, deny.origin, '/orders/1');
      await untilDecided(billing, allow.origin, '/orders/1');
      await untilDecided(orders, deny.origin, '/orders/1');

      // A steady load through the kill: billing on both sidecars, orders on the deny one.
      type Seen = { who: 'billing@deny' | 'billing@allow' | 'orders@deny'; phase: 'up' | 'killed'; status: number; ms: number; id: string };
      const seen: Seen[] = [];
      let phase: Seen['phase'] = 'up';
      let running = true;
      const worker = async (who: Seen['who'], agent: Dispatcher, origin: string): Promise<void> => {
        for (let n = 0; running && n < 5000; n++) {
          const t0 = performance.now();
          const r = await call(agent, origin, '/orders/1');
          seen.push({ who, phase, status: r.status, ms: performance.now() - t0, id: String(r.headers['x-request-id']) });
        }
      };
      const workers = Promise.all([
        worker('billing@deny', billing, deny.origin),
        worker('billing@allow', billing, allow.origin),
        worker('orders@deny', orders, deny.origin),
      ]);
      const settle = async (pred: () => boolean, what: string): Promise<void> => {
        const deadline = Date.now() + 10_000;
        while (!pred()) {
          if (Date.now() > deadline) {
            running = false;
            await workers;
            throw new Error(`${what} within 10 s`);
          }
          await new Promise((r) => setTimeout(r, 20));
        }
      };
      await settle(() => seen.filter((s) => s.who === 'billing@allow').length >= 5 && seen.filter((s) => s.who === 'orders@deny').length >= 5, 'no load');
      phase = 'killed';
      await node.kill();
      const after = (who: Seen['who']): Seen[] => seen.filter((s) => s.phase === 'killed' && s.who === who);
      await settle(
        () => after('billing@deny').filter((s) => s.status === 503).length >= 10 && after('billing@allow').length >= 10 && after('orders@deny').length >= 10,
        'billing@deny not refused 10 times after the kill',
      );
      running = false;
      await workers;
      // A dead node's decisions fail at once. ioredis would retry them (100 ms apart, up to 16
      // redirections: ~1 s a call, seen), holding each past the 75 ms deadline.
      const t0 = performance.now();
      for (let i = 0; i < 5; i++) expect(await rl.take(direct)).toEqual({ kind: 'unavailable' });
      expect(performance.now() - t0).toBeLessThan(2500);
      expect(rl.stats()).toMatchObject({ inFlight: 0, timeouts: 0 });

      const up = seen.filter((s) => s.phase === 'up');
      expect(up.every((s) => s.status === 200), JSON.stringify(up.filter((s) => s.status !== 200))).toBe(true);
      // deny: refused (503, reason ratelimit_unavailable) once the kill is seen; nothing else.
      const refusedBilling = after('billing@deny');
      expect(refusedBilling.every((s) => s.status === 200 || s.status === 503)).toBe(true);
      expect(refusedBilling.slice(-5).map((s) => s.status)).toEqual([503, 503, 503, 503, 503]);
      const refused = refusedBilling.find((s) => s.status === 503) as Seen;
      await deny.audit.waitFor((l) => l.requestId === refused.id && l.reason === 'ratelimit_unavailable' && l.decision === 'deny' && l.status === 503);
      // allow: every request still admitted, and the audit line says why.
      const admitted = after('billing@allow');
      expect(admitted.every((s) => s.status === 200)).toBe(true);
      const late = admitted[admitted.length - 1] as Seen;
      await allow.audit.waitFor((l) => l.requestId === late.id && l.reason === 'ratelimit_unavailable' && l.decision === 'allow');
      // Another identity, on a surviving master, is still decided by the cluster.
      expect(after('orders@deny').every((s) => s.status === 200)).toBe(true);
      // No hang: each request answered in bounded time (the decision itself is bounded by 75 ms).
      expect(Math.max(...seen.map((s) => s.ms))).toBeLessThan(2000);

      // The surviving master still keeps exact limits: POST's own bucket holds 3.
      const posts: number[] = [];
      for (let i = 0; i < 5; i++) posts.push((await call(orders, deny.origin, '/orders', { method: 'POST', body: '{}' })).status);
      expect(posts).toEqual([200, 200, 200, 429, 429]);

      // The master restarts (same port and nodes.conf, empty data): billing is decided again.
      await node.start();
      const back = await untilDecided(billing, deny.origin, '/orders/2');
      expect(back.status).toBe(200);
      expect(await untilAnswering(rl, direct)).toMatchObject({ kind: 'allow' });
      // One line when the node goes, one when it is back: not one per request routed to it.
      const nodeKey = `127.0.0.1:${node.port}`;
      expect(logged.map((l) => [l.level, l.msg, l['node']])).toEqual([
        [40, 'rate limit: redis cluster node unavailable, decisions for its slots are "unavailable" until it is back', nodeKey],
        [30, 'rate limit: redis cluster node restored', nodeKey],
      ]);
      await c.waitUntilOk();
    } finally {
      await rl.close();
      await Promise.all([orders.close(), billing.close()]);
      await Promise.all([deny.close(), allow.close()]);
    }
  });
});
