import { describe, expect, it } from 'vitest';
import {
  hasToken,
  resetSeconds,
  retryAfterSeconds,
  secondsCeil,
  spend,
  tokenMs,
  tokensAt,
  waitMs,
  windowSeconds,
} from '../../../src/ratelimit/bucket.js';
import type { Bucket } from '../../../src/ratelimit/types.js';

const b = (rps: number, burst: number): Bucket => ({ rps, burst });

describe('bucket arithmetic', () => {
  // [bucket, fullAt, now, tokens, has a token, wait ms]
  const STATES: [Bucket, number, number, number, boolean, number][] = [
    [b(1, 1), 0, 0, 1, true, 0], // never used: full
    [b(1, 1), 1000, 0, 0, false, 1000], // just spent its only token
    [b(1, 1), 1000, 999, 0, false, 1],
    [b(1, 1), 1000, 1000, 1, true, 0],
    [b(1, 1), 1000, 5000, 1, true, 0], // long idle: capped at burst, no credit beyond
    [b(2, 3), 1000, 0, 1, true, 0], // T = 500: debt 1000 = 2 tokens owed of 3
    [b(2, 3), 1500, 0, 0, false, 500],
    [b(2, 3), 1500, 250, 0, false, 250],
    [b(2, 3), 1500, 499, 0, false, 1],
    [b(2, 3), 1500, 500, 1, true, 0],
    [b(100, 200), 2000, 0, 0, false, 10], // T = 10 ms
    [b(100, 200), 1990, 0, 1, true, 0],
    [b(0.5, 1), 2000, 0, 0, false, 2000], // fractional rate: T = 2 s
    [b(3, 1), 1000 / 3, 0, 0, false, 1000 / 3], // T = 333.33… ms
    [b(3, 1), 1000 / 3, 1000 / 3, 1, true, 0],
  ];
  it.each(STATES)('%o fullAt=%d now=%d: %d tokens, token=%s, wait %d ms', (bucket, fullAt, now, tokens, has, wait) => {
    expect(tokensAt(fullAt, bucket, now)).toBe(tokens);
    expect(hasToken(fullAt, bucket, now)).toBe(has);
    expect(Math.max(0, waitMs(fullAt, bucket, now))).toBeCloseTo(wait, 9);
  });

  it('spending moves fullAt one token later, from now when the bucket is full', () => {
    expect(spend(0, b(1, 5), 100)).toBe(1100);
    expect(spend(3000, b(1, 5), 100)).toBe(4000);
    expect(spend(0, b(4, 5), 0)).toBe(250);
    expect(tokenMs(b(4, 5))).toBe(250);
  });

  // Retry-After: whole seconds, rounded up, at least 1.
  const RETRY: [number, number][] = [
    [0, 1],
    [0.0001, 1],
    [1, 1],
    [999, 1],
    [1000, 1],
    [1000.0005, 1], // inside the 1 µs float slack
    [1000.5, 2],
    [1001, 2],
    [2500, 3],
    [59_999, 60],
  ];
  it.each(RETRY)('retryAfterSeconds(%d ms) = %d', (ms, s) => {
    expect(retryAfterSeconds(ms)).toBe(s);
  });

  const CEIL: [number, number][] = [
    [0, 0],
    [0.0005, 0],
    [1, 1],
    [1000, 1],
    [1001, 2],
  ];
  it.each(CEIL)('secondsCeil(%d) = %d', (ms, s) => {
    expect(secondsCeil(ms)).toBe(s);
  });

  it('resetSeconds is the whole seconds until full, 0 when full', () => {
    expect(resetSeconds(0, 10)).toBe(0);
    expect(resetSeconds(10, 10)).toBe(0);
    expect(resetSeconds(2010, 10)).toBe(2);
    expect(resetSeconds(2011, 10)).toBe(3);
  });

  const WINDOWS: [Bucket, number][] = [
    [b(100, 200), 2],
    [b(10, 20), 2],
    [b(1000, 1), 1],
    [b(0.5, 1), 2],
    [b(3, 10), 4],
    [b(7, 7), 1],
  ];
  it.each(WINDOWS)('windowSeconds(%o) = %d', (bucket, w) => {
    expect(windowSeconds(bucket)).toBe(w);
  });

  it('Retry-After is the real time until a token: denied one second earlier, admitted then', () => {
    // Pseudo-random buckets and states, deterministic.
    let seed = 42;
    const rand = (): number => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
    for (let k = 0; k < 2000; k++) {
      const bucket = b([0.1, 0.25, 0.5, 1, 3, 7, 100][Math.floor(rand() * 7)] ?? 1, 1 + Math.floor(rand() * 5));
      const now = Math.floor(rand() * 100_000);
      // Empty the bucket, then a bit more debt is impossible (spend only with a token): spend burst times.
      let fullAt = now;
      for (let i = 0; i < bucket.burst; i++) fullAt = spend(fullAt, bucket, now);
      const later = now + Math.floor(rand() * 3000);
      if (hasToken(fullAt, bucket, later)) continue;
      const retry = retryAfterSeconds(waitMs(fullAt, bucket, later));
      expect(hasToken(fullAt, bucket, later + retry * 1000)).toBe(true);
      if (retry > 1) expect(hasToken(fullAt, bucket, later + (retry - 1) * 1000)).toBe(false);
    }
  });
});
