import { describe, expect, it } from 'vitest';
import { MemoryRateLimiter } from '../../../src/ratelimit/memory.js';
import { certKey, identityKey, routeKey } from '../../../src/ratelimit/keys.js';
import type { Bucket, RateDecision, Take } from '../../../src/ratelimit/types.js';

/** A clock the test moves by hand (ms). */
function clock(start = 0): { now: () => number; set: (t: number) => void; advance: (ms: number) => void } {
  let t = start;
  return { now: () => t, set: (v) => void (t = v), advance: (ms) => void (t += ms) };
}

function sync(d: RateDecision | Promise<RateDecision>): RateDecision {
  if (d instanceof Promise) throw new Error('memory limiter must answer synchronously');
  return d;
}

const one = (key: string, bucket: Bucket): Take[] => [{ key, bucket }];

describe('MemoryRateLimiter: exact token bucket', () => {
  // [rps, burst, seconds, step ms, attempts per step]
  const LOADS: [number, number, number, number, number][] = [
    [100, 200, 10, 1, 3],
    [10, 20, 30, 1, 2],
    [1, 1, 60, 1, 1],
    [0.5, 3, 40, 1, 1],
    [3, 5, 20, 1, 2], // T = 333.33… ms: float rounding must not lose or gain a token
    [7, 2, 13, 0.25, 1], // T = 142.857… ms, off the attempt grid (burst >= 2: the bucket never sits full)
    [1000, 50, 5, 0.1, 2],
    [250, 10, 8, 7, 5], // coarse steps: several tokens accrue between attempts
  ];
  it.each(LOADS)('rps %d burst %d over %d s (step %d ms, %d per step): admits burst + rps × seconds exactly', (rps, burst, seconds, step, per) => {
    const c = clock(1_000_000);
    const rl = new MemoryRateLimiter({ now: c.now });
    const bucket = { rps, burst };
    const start = c.now();
    const end = start + seconds * 1000;
    let admitted = 0;
    let lastAt = start;
    for (let k = 0; ; k++) {
      const t = start + k * step;
      if (t > end + 1e-9) break;
      c.set(t);
      lastAt = t;
      for (let j = 0; j < per; j++) if (sync(rl.take(one('id/x', bucket))).kind === 'allow') admitted++;
    }
    // Starting full, tokens accrue continuously: burst + floor(rps × elapsed), where elapsed is
    // up to the last attempt. When steps land on `end` exactly that is burst + rps × seconds.
    // (With burst 1 and token times off the attempt grid a real bucket admits fewer: it is full
    // between a token's arrival and the next attempt, and a full bucket stops refilling.)
    expect(admitted).toBe(burst + Math.floor((rps * (lastAt - start)) / 1000 + 1e-9));
    if (Math.abs(lastAt - end) < 1e-9 && Number.isInteger(rps * seconds)) expect(admitted).toBe(burst + rps * seconds);
  });

  it('answers synchronously, refuses with the real Retry-After, and admits exactly then', () => {
    const c = clock();
    const rl = new MemoryRateLimiter({ now: c.now });
    const bucket = { rps: 0.25, burst: 2 }; // a token every 4 s
    expect(sync(rl.take(one('id/a', bucket)))).toEqual({ kind: 'allow', remaining: 1, resetSeconds: 4, policy: bucket, index: 0 });
    expect(sync(rl.take(one('id/a', bucket)))).toEqual({ kind: 'allow', remaining: 0, resetSeconds: 8, policy: bucket, index: 0 });
    c.set(1500);
    const d = sync(rl.take(one('id/a', bucket)));
    expect(d).toEqual({ kind: 'deny', retryAfterSeconds: 3, resetSeconds: 7, policy: bucket, index: 0 }); // token at 4000: 2.5 s → 3
    c.set(1500 + 2999);
    expect(sync(rl.take(one('id/a', bucket))).kind).toBe('allow'); // the token was due at 4000
    c.set(4499 + 1);
    const d2 = sync(rl.take(one('id/a', bucket)));
    expect(d2.kind).toBe('deny');
    if (d2.kind !== 'deny') return;
    expect(d2.retryAfterSeconds).toBe(4); // next token at 8000: 3.5 s → 4
    c.advance(d2.retryAfterSeconds * 1000 - 1);
    expect(sync(rl.take(one('id/a', bucket))).kind).toBe('allow');
  });

  it('Retry-After is never 0, even when the token is due in under a millisecond', () => {
    const c = clock();
    const rl = new MemoryRateLimiter({ now: c.now });
    const bucket = { rps: 1, burst: 1 };
    rl.take(one('id/a', bucket));
    c.set(999.5);
    expect(sync(rl.take(one('id/a', bucket)))).toMatchObject({ kind: 'deny', retryAfterSeconds: 1 });
  });

  it('is all-or-nothing over several buckets and reports the binding one', () => {
    const c = clock();
    const rl = new MemoryRateLimiter({ now: c.now });
    const own = { rps: 1, burst: 10 };
    const route = { rps: 0.5, burst: 2 };
    const takes: Take[] = [
      { key: identityKey('orders'), bucket: own },
      { key: routeKey(identityKey('orders'), 'write'), bucket: route },
    ];
    // Allowed: the route bucket has fewer tokens left, so it is reported.
    expect(sync(rl.take(takes))).toEqual({ kind: 'allow', remaining: 1, resetSeconds: 2, policy: route, index: 1 });
    expect(sync(rl.take(takes))).toEqual({ kind: 'allow', remaining: 0, resetSeconds: 4, policy: route, index: 1 });
    // The route bucket is empty: refused, and the identity bucket keeps its 8 tokens.
    for (let i = 0; i < 5; i++) expect(sync(rl.take(takes))).toEqual({ kind: 'deny', retryAfterSeconds: 2, resetSeconds: 4, policy: route, index: 1 });
    let ownOnly = 0;
    while (sync(rl.take(one(identityKey('orders'), own))).kind === 'allow') ownOnly++;
    expect(ownOnly).toBe(8);
    // Now both are empty: Retry-After is the later of the two (all must hold a token).
    c.set(900);
    const d = sync(rl.take(takes));
    expect(d).toMatchObject({ kind: 'deny', retryAfterSeconds: 2, index: 1 }); // route token at 2000 > own at 1000
    c.set(2000);
    expect(sync(rl.take(takes))).toMatchObject({ kind: 'allow', index: 1 });
  });

  it('a tie in remaining tokens reports the bucket that takes longer to refill', () => {
    const rl = new MemoryRateLimiter({ now: () => 0 });
    const fast = { rps: 10, burst: 5 };
    const slow = { rps: 1, burst: 5 };
    expect(sync(rl.take([{ key: 'id/a', bucket: fast }, { key: 'id/a/rt/r', bucket: slow }]))).toMatchObject({ kind: 'allow', remaining: 4, index: 1, resetSeconds: 1 });
  });

  it('a clock that steps backwards does not refill', () => {
    const c = clock(10_000);
    const rl = new MemoryRateLimiter({ now: c.now });
    const bucket = { rps: 1, burst: 1 };
    expect(sync(rl.take(one('id/a', bucket))).kind).toBe('allow');
    c.set(5_000);
    expect(sync(rl.take(one('id/a', bucket)))).toMatchObject({ kind: 'deny', retryAfterSeconds: 6 });
    c.set(11_000);
    expect(sync(rl.take(one('id/a', bucket))).kind).toBe('allow');
  });

  it('refuses an empty take list', () => {
    expect(() => new MemoryRateLimiter().take([])).toThrow(RangeError);
  });
});

describe('MemoryRateLimiter: bounded memory', () => {
  it('200,000 distinct certificates never hold more than maxIdleKeys buckets; identities are kept', () => {
    const c = clock();
    const maxIdleKeys = 100_000;
    const rl = new MemoryRateLimiter({ now: c.now, maxIdleKeys, idleMs: 60_000 });
    const bucket = { rps: 1, burst: 2 };
    const slow = { rps: 0.001, burst: 2 };
    // An identity spends its whole bucket first…
    sync(rl.take(one(identityKey('orders'), slow)));
    sync(rl.take(one(identityKey('orders'), slow)));
    let peak = 0;
    for (let i = 0; i < 200_000; i++) {
      c.advance(0.01); // 200k keys in 2 s: far more than fit, none idle yet
      const hex = i.toString(16).padStart(64, '0');
      expect(sync(rl.take(one(certKey(hex), bucket))).kind).toBe('allow');
      if ((i & 1023) === 0) peak = Math.max(peak, rl.stats().transient);
    }
    const s = rl.stats();
    expect(Math.max(peak, s.transient)).toBeLessThanOrEqual(maxIdleKeys);
    expect(s.transient).toBe(maxIdleKeys);
    expect(s.pinned).toBe(1);
    expect(s.evictedEarly).toBe(100_000);
    // …and is still empty after the flood: its bucket was not evicted.
    expect(sync(rl.take(one(identityKey('orders'), slow))).kind).toBe('deny');
    // The most recent certificate is remembered, the oldest was evicted (starts full again).
    expect(sync(rl.take(one(certKey((199_999).toString(16).padStart(64, '0')), bucket)))).toMatchObject({ kind: 'allow', remaining: 0 });
    expect(sync(rl.take(one(certKey('0'.padStart(64, '0')), bucket)))).toMatchObject({ kind: 'allow', remaining: 1 });
  });

  it('idle, refilled buckets are dropped as new keys arrive; a bucket still owed is not', () => {
    const c = clock();
    const rl = new MemoryRateLimiter({ now: c.now, maxIdleKeys: 1000, idleMs: 60_000 });
    const quick = { rps: 10, burst: 1 };
    const slow = { rps: 0.001, burst: 1 }; // full again only after 1000 s
    sync(rl.take(one('cert/slow', slow)));
    for (let i = 0; i < 100; i++) sync(rl.take(one(`cert/${i}`, quick)));
    expect(rl.stats().transient).toBe(101);
    c.advance(61_000);
    // Each insertion examines the oldest two entries; `cert/slow` is oldest but still owed.
    for (let i = 0; i < 10; i++) sync(rl.take(one(`cert/new${i}`, quick)));
    expect(rl.stats().transient).toBe(111); // blocked behind cert/slow: nothing lossy happens
    expect(sync(rl.take(one('cert/slow', slow))).kind).toBe('deny'); // its debt was kept
    // sweep() drops what is idle and full, stopping at the first entry that is not.
    c.advance(61_000);
    expect(rl.sweep()).toBeGreaterThan(0);
    expect(rl.stats().transient).toBeLessThan(111);
  });

  it('sweep on insert drops idle entries at the old end without a sweep() call', () => {
    const c = clock();
    const rl = new MemoryRateLimiter({ now: c.now, maxIdleKeys: 1000, idleMs: 1000 });
    const bucket = { rps: 100, burst: 1 };
    for (let i = 0; i < 100; i++) sync(rl.take(one(`cert/old${i}`, bucket)));
    c.advance(2000);
    for (let i = 0; i < 100; i++) sync(rl.take(one(`cert/new${i}`, bucket)));
    // Up to two idle entries are dropped per insertion: the 100 old ones are gone.
    expect(rl.stats().transient).toBe(100);
  });

  it('at the cap, evicts the least recently used entry', () => {
    const c = clock();
    const rl = new MemoryRateLimiter({ now: c.now, maxIdleKeys: 3, idleMs: 3_600_000 });
    const bucket = { rps: 0.001, burst: 2 };
    sync(rl.take(one('cert/a', bucket)));
    c.advance(2000);
    sync(rl.take(one('cert/b', bucket)));
    c.advance(2000);
    sync(rl.take(one('cert/c', bucket)));
    c.advance(2000);
    sync(rl.take(one('cert/a', bucket))); // a is now the most recent; b the least
    c.advance(2000);
    sync(rl.take(one('cert/d', bucket))); // evicts b
    expect(rl.stats().transient).toBe(3);
    expect(sync(rl.take(one('cert/a', bucket))).kind).toBe('deny'); // a kept: 2 spent
    expect(sync(rl.take(one('cert/b', bucket)))).toMatchObject({ kind: 'allow', remaining: 1 }); // b started over
  });
});
