/**
 * RedisRateLimiter against a real redis-server on a loopback port (test/helpers/redis.ts).
 * Skipped, with a message, only when redis-server is not installed; CI installs it.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import type { Log } from '../../src/log.js';
import { RedisRateLimiter, SCRIPT_SHA1 } from '../../src/ratelimit/redis.js';
import type { Bucket, RateDecision, Take } from '../../src/ratelimit/types.js';
import { REDIS_MISSING, redisServerBinary, startRedis } from '../helpers/redis.js';
import type { RedisServer } from '../helpers/redis.js';
import { captureLog } from '../helpers/log.js';

const HAVE_REDIS = redisServerBinary() !== null;
const TIMEOUT_MS = 75;

let server: RedisServer | null = null;
let admin: Redis | null = null;
const cleanups: (() => Promise<void>)[] = [];
let prefixSeq = 0;

beforeAll(async () => {
  if (!HAVE_REDIS) return;
  server = await startRedis();
  admin = new Redis(server.url, { maxRetriesPerRequest: 1 });
});

afterAll(async () => {
  admin?.disconnect();
  await server?.stop();
});

beforeEach((ctx) => {
  if (HAVE_REDIS) return;
  // CI can insist (MTLS_SIDECAR_REQUIRE_REDIS=1) so a missing install step fails instead of skipping.
  if (process.env['MTLS_SIDECAR_REQUIRE_REDIS'] === '1') throw new Error(REDIS_MISSING);
  ctx.skip(REDIS_MISSING);
});

afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()?.();
});

function limiter(url: string, prefix: string, extra: { timeoutMs?: number; log?: Log } = {}): RedisRateLimiter {
  const rl = new RedisRateLimiter({ url, keyPrefix: prefix, timeoutMs: extra.timeoutMs ?? TIMEOUT_MS, maxReconnectDelayMs: 200, ...(extra.log ? { log: extra.log } : {}) });
  cleanups.push(() => rl.close());
  return rl;
}

/**
 * The worst event-loop stall while it runs (ms): no limiter can answer faster than the loop
 * turns, so latency bounds below are "timeout + slack + this" on a machine busy with other work.
 */
function loopLag(): { stop(): number } {
  const h = monitorEventLoopDelay({ resolution: 5 });
  h.enable();
  return {
    stop: () => {
      h.disable();
      return h.max / 1e6;
    },
  };
}

function freshPrefix(): string {
  return `t${process.pid}-${++prefixSeq}:`;
}

/** Poll until the limiter answers (connected and scripted). */
async function untilAnswering(rl: RedisRateLimiter, take: readonly Take[], withinMs = 5000): Promise<RateDecision> {
  const deadline = Date.now() + withinMs;
  for (;;) {
    const d = await rl.take(take);
    if (d.kind !== 'unavailable') return d;
    if (Date.now() > deadline) throw new Error(`limiter still unavailable after ${withinMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function serverMs(r: Redis): Promise<number> {
  const [s, us] = await r.time();
  return Number(s) * 1000 + Number(us) / 1000;
}

function adminClient(): Redis {
  if (admin === null) throw new Error('no redis');
  return admin;
}

function url(): string {
  if (server === null) throw new Error('no redis');
  return server.url;
}

describe('RedisRateLimiter', () => {
  it('allows up to the burst, then denies with the real Retry-After; same numbers as the memory limiter', async () => {
    const rl = limiter(url(), freshPrefix());
    const bucket: Bucket = { rps: 1, burst: 3 };
    const take = [{ key: 'id/orders', bucket }];
    expect(await untilAnswering(rl, take)).toEqual({ kind: 'allow', remaining: 2, resetSeconds: 1, policy: bucket, index: 0 });
    expect(await rl.take(take)).toEqual({ kind: 'allow', remaining: 1, resetSeconds: 2, policy: bucket, index: 0 });
    expect(await rl.take(take)).toEqual({ kind: 'allow', remaining: 0, resetSeconds: 3, policy: bucket, index: 0 });
    const d = await rl.take(take);
    expect(d).toEqual({ kind: 'deny', retryAfterSeconds: 1, resetSeconds: 3, policy: bucket, index: 0 });
  });

  it('is all-or-nothing across the takes of one call and reports the binding bucket', async () => {
    const prefix = freshPrefix();
    const rl = limiter(url(), prefix);
    const own: Bucket = { rps: 1, burst: 10 };
    const route: Bucket = { rps: 0.5, burst: 1 };
    const takes: Take[] = [
      { key: 'id/a', bucket: own },
      { key: 'id/a/rt/w', bucket: route },
    ];
    expect(await untilAnswering(rl, takes)).toMatchObject({ kind: 'allow', remaining: 0, index: 1, resetSeconds: 2 });
    const before = await adminClient().get(`${prefix}id/a`);
    for (let i = 0; i < 5; i++) expect(await rl.take(takes)).toMatchObject({ kind: 'deny', retryAfterSeconds: 2, index: 1, policy: route });
    // Denials spent nothing from the identity's own bucket.
    expect(await adminClient().get(`${prefix}id/a`)).toBe(before);
    expect(await rl.take([{ key: 'id/a', bucket: own }])).toMatchObject({ kind: 'allow', remaining: 8 });
  });

  it('keys carry the Redis-clock time the bucket is full again and expire then', async () => {
    const prefix = freshPrefix();
    const rl = limiter(url(), prefix);
    const r = adminClient();
    const bucket: Bucket = { rps: 10, burst: 5 }; // T = 100 ms
    const before = await serverMs(r);
    await untilAnswering(rl, [{ key: 'cert/x', bucket }]);
    await rl.take([{ key: 'cert/x', bucket }]);
    const after = await serverMs(r);
    const fullAt = Number(await r.get(`${prefix}cert/x`));
    expect(fullAt).toBeGreaterThanOrEqual(before + 200 - 1);
    expect(fullAt).toBeLessThanOrEqual(after + 200 + 1);
    const pttl = await r.pttl(`${prefix}cert/x`);
    expect(pttl).toBeGreaterThan(100);
    expect(pttl).toBeLessThanOrEqual(201);
    await new Promise((res) => setTimeout(res, 260));
    expect(await r.exists(`${prefix}cert/x`)).toBe(0);
    // A missing key is a full bucket.
    expect(await rl.take([{ key: 'cert/x', bucket }])).toMatchObject({ kind: 'allow', remaining: 4 });
  });

  it('two limiters sharing Redis admit together what one would: at most burst + rps × seconds, and close to it', async () => {
    const prefix = freshPrefix();
    const a = limiter(url(), prefix);
    const b = limiter(url(), prefix);
    const bucket: Bucket = { rps: 500, burst: 100 }; // T = 2 ms
    const probe = [{ key: 'id/probe', bucket }];
    await untilAnswering(a, probe);
    await untilAnswering(b, probe);
    const take = [{ key: 'id/shared', bucket }];
    const r = adminClient();
    // The window starts at the first admission, which Redis ran between TIME readings s0 and s1.
    const s0 = await serverMs(r);
    expect(await a.take(take)).toMatchObject({ kind: 'allow' });
    const s1 = await serverMs(r);

    const counts = { a: 0, b: 0, deny: 0, unavailable: 0 };
    const stopAt = Date.now() + 2500;
    const worker = async (rl: RedisRateLimiter, name: 'a' | 'b'): Promise<void> => {
      while (Date.now() < stopAt) {
        const d = await rl.take(take);
        if (d.kind === 'allow') counts[name]++;
        else if (d.kind === 'deny') counts.deny++;
        else counts.unavailable++;
      }
    };
    await Promise.all([worker(a, 'a'), worker(a, 'a'), worker(a, 'a'), worker(b, 'b'), worker(b, 'b'), worker(b, 'b')]);
    // Redis clock and the bucket's state at one instant, after the run.
    const [[, time], [, stored]] = (await r.multi().time().get(`${prefix}id/shared`).exec()) as [[null, [string, string]], [null, string | null]];
    const end = Number(time[0]) * 1000 + Number(time[1]) / 1000;
    const tokensLeft = stored === null ? bucket.burst : bucket.burst - (Math.max(0, Number(stored) - end) * bucket.rps) / 1000;
    const admitted = 1 + counts.a + counts.b;
    // One bucket, from the first admission (between s0 and s1) to `end`, hands out at most
    // burst + rps × seconds tokens: what was admitted plus what is still in the bucket.
    const high = bucket.burst + (bucket.rps * (end - s0)) / 1000;
    const low = bucket.burst + (bucket.rps * (end - s1)) / 1000;
    const detail = JSON.stringify({ ...counts, admitted, tokensLeft, low, high });
    // On a loaded machine a call may miss the 75 ms deadline (it may or may not have spent a token).
    expect(counts.unavailable, detail).toBeLessThanOrEqual(10);
    expect(counts.deny, detail).toBeGreaterThan(admitted); // the load was well over the limit
    expect(counts.a, detail).toBeGreaterThan(0);
    expect(counts.b, detail).toBeGreaterThan(0);
    // The limit holds across both replicas (measured on Redis's clock, not the limiters' own)…
    expect(admitted, detail).toBeLessThanOrEqual(Math.floor(high + 1e-6));
    // …and the shared bucket was really used, not starved: admitted + unspent comes close to
    // burst + rps × seconds. Not exactly: while this test process itself stalls (a busy 2-core
    // machine) nobody takes, the bucket fills past `burst` and the overflow is rightly lost (2-3 %
    // seen under load), so the margin is 10 %; the limit above is the exact property.
    expect(admitted + tokensLeft + counts.unavailable, detail).toBeGreaterThanOrEqual(low * 0.9);
    expect(admitted + tokensLeft, detail).toBeLessThanOrEqual(high + 1);
  });

  it('runs the script by SHA and falls back to EVAL after SCRIPT FLUSH', async () => {
    const rl = limiter(url(), freshPrefix());
    const bucket: Bucket = { rps: 5, burst: 5 };
    await untilAnswering(rl, [{ key: 'id/s', bucket }]);
    expect(await adminClient().script('EXISTS', SCRIPT_SHA1)).toEqual([1]);
    await adminClient().script('FLUSH');
    expect(await rl.take([{ key: 'id/s', bucket }])).toMatchObject({ kind: 'allow', remaining: 3 });
    expect(await adminClient().script('EXISTS', SCRIPT_SHA1)).toEqual([1]);
  });

  it('answers unavailable at once while disconnected, and resumes when Redis comes back', async () => {
    const own = await startRedis();
    cleanups.push(() => own.stop());
    await own.kill();
    const rl = limiter(own.url, freshPrefix());
    const take = [{ key: 'id/x', bucket: { rps: 100, burst: 100 } }];
    for (let i = 0; i < 100; i++) {
      const d = rl.take(take);
      expect(d).not.toBeInstanceOf(Promise); // fail fast: nothing queued
      expect(d).toEqual({ kind: 'unavailable' });
    }
    await own.start();
    expect(await untilAnswering(rl, take)).toMatchObject({ kind: 'allow' });
  });

  it('Redis killed mid-run: unavailable within the timeout, no crash, no unhandled rejection; restarted: decisions resume', async () => {
    const own = await startRedis();
    cleanups.push(() => own.stop());
    const logged: { level: number; msg: string }[] = [];
    const rl = limiter(own.url, freshPrefix(), { log: captureLog(logged) });
    const take = [{ key: 'id/x', bucket: { rps: 10_000, burst: 10_000 } }];
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown): void => void unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    cleanups.push(() => {
      process.off('unhandledRejection', onUnhandled);
      return Promise.resolve();
    });
    await untilAnswering(rl, take);
    const lag = loopLag();

    // A steady load through the outage: 4 concurrent callers.
    const seen: { kind: RateDecision['kind']; ms: number; phase: string }[] = [];
    let phase = 'up';
    let running = true;
    const worker = async (): Promise<void> => {
      while (running) {
        const t0 = performance.now();
        const d = await rl.take(take);
        seen.push({ kind: d.kind, ms: performance.now() - t0, phase });
        if (d.kind === 'unavailable') await new Promise((r) => setTimeout(r, 2));
      }
    };
    const workers = Promise.all([worker(), worker(), worker(), worker()]);
    await new Promise((r) => setTimeout(r, 200));
    phase = 'killed';
    await own.kill();
    await new Promise((r) => setTimeout(r, 500));
    phase = 'restarting';
    await own.start();
    const deadline = Date.now() + 5000;
    while (Date.now() < deadline && !seen.some((s) => s.phase === 'restarting' && s.kind === 'allow')) await new Promise((r) => setTimeout(r, 20));
    running = false;
    await workers;
    const maxLag = lag.stop();

    expect(seen.filter((s) => s.phase === "up").every((s) => s.kind === 'allow')).toBe(true);
    const down = seen.filter((s) => s.phase === 'killed');
    expect(down.length).toBeGreaterThan(10);
    expect(down.filter((s) => s.kind === 'unavailable').length).toBeGreaterThan(0);
    // Never hung: every decision, before, during and after the outage, within the timeout (+ scheduling slack).
    expect(Math.max(...seen.map((s) => s.ms))).toBeLessThan(TIMEOUT_MS + 100 + maxLag);
    expect(seen.some((s) => s.phase === 'restarting' && s.kind === 'allow')).toBe(true);
    expect(unhandled).toEqual([]);
    // One line when the outage starts, one when it ends (not one per reconnect attempt or request).
    expect(logged.map((l) => [l.level, l.msg])).toEqual([
      [40, 'rate limit: redis unavailable, decisions are "unavailable" until it is back'],
      [30, 'rate limit: redis connection restored'],
    ]);
  });

  it('a Redis that stops answering (SIGSTOP): each decision unavailable within the timeout; SIGCONT: resumes', async () => {
    const own = await startRedis();
    cleanups.push(async () => {
      own.resume();
      await own.stop();
    });
    const rl = limiter(own.url, freshPrefix());
    const take = [{ key: 'id/x', bucket: { rps: 1000, burst: 1000 } }];
    await untilAnswering(rl, take);
    own.pause();
    const lag = loopLag();
    const started = performance.now();
    const decisions = await Promise.all(Array.from({ length: 50 }, () => Promise.resolve(rl.take(take))));
    const elapsed = performance.now() - started;
    const maxLag = lag.stop();
    expect(decisions.every((d) => d.kind === 'unavailable')).toBe(true);
    expect(elapsed).toBeGreaterThanOrEqual(TIMEOUT_MS - 1);
    expect(elapsed).toBeLessThan(TIMEOUT_MS + 100 + maxLag);
    expect(rl.stats().timeouts).toBeGreaterThanOrEqual(50);
    own.resume();
    expect(await untilAnswering(rl, take)).toMatchObject({ kind: 'allow' });
  });

  it('bounds the calls waiting on Redis: beyond maxInFlight, unavailable at once', async () => {
    const own = await startRedis();
    cleanups.push(async () => {
      own.resume();
      await own.stop();
    });
    const rl = new RedisRateLimiter({ url: own.url, keyPrefix: freshPrefix(), timeoutMs: TIMEOUT_MS, maxInFlight: 5 });
    cleanups.push(() => rl.close());
    const take = [{ key: 'id/x', bucket: { rps: 1000, burst: 1000 } }];
    await untilAnswering(rl, take);
    own.pause();
    // Each is a Promise (checked next): queued behind the paused Redis.
    const waiting = Array.from({ length: 5 }, () => rl.take(take) as Promise<RateDecision>);
    for (const w of waiting) expect(w).toBeInstanceOf(Promise);
    expect(rl.stats().inFlight).toBe(5);
    expect(rl.take(take)).toEqual({ kind: 'unavailable' }); // synchronously: nothing more is queued
    expect(await Promise.all(waiting)).toEqual(Array.from({ length: 5 }, () => ({ kind: 'unavailable' })));
    own.resume();
    expect(await untilAnswering(rl, take)).toMatchObject({ kind: 'allow' });
  });

  it('close() is prompt even when Redis does not answer, and later takes are unavailable', async () => {
    const own = await startRedis();
    cleanups.push(async () => {
      own.resume();
      await own.stop();
    });
    const rl = new RedisRateLimiter({ url: own.url, keyPrefix: freshPrefix(), timeoutMs: TIMEOUT_MS });
    const take = [{ key: 'id/x', bucket: { rps: 1, burst: 1 } }];
    await untilAnswering(rl, take);
    own.pause();
    const lag = loopLag();
    const t0 = performance.now();
    await rl.close();
    const took = performance.now() - t0;
    expect(took).toBeLessThan(TIMEOUT_MS + 100 + lag.stop());
    expect(rl.take(take)).toEqual({ kind: 'unavailable' });
  });
});
