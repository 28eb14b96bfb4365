/**
 * Token-bucket arithmetic, pure and clock-free (the caller passes `now` in ms).
 *
 * A bucket's whole state is one number, `fullAt`: the time at which it will be full again
 * (the "theoretical arrival time" of GCRA, which is the same algorithm as a token bucket).
 * With T = 1000 / rps ms per token:
 *
 *   debt(now)   = max(0, fullAt − now)          ms of refill still owed
 *   tokens(now) = burst − debt / T              refilled by elapsed time, capped at burst
 *   a token is available  ⇔  tokens ≥ 1  ⇔  debt ≤ (burst − 1) · T
 *   spending one token:   fullAt' = max(fullAt, now) + T
 *
 * No timers, no per-bucket refill loop: elapsed time is the refill. The Redis Lua script
 * (redis.ts) is a line-by-line copy of these formulas; keep them in step.
 */
import type { Bucket } from './types.js';

/**
 * Float slack, ms: a token due within 1 µs counts as there. With whole-ms clocks and rates
 * that divide 1000 the arithmetic is exact; with others (rps = 3: T = 333.33… ms) rounding
 * could otherwise refuse a token a few ulps before it is due.
 */
export const EPSILON_MS = 1e-3;

/** ms of refill one token represents. */
export function tokenMs(b: Bucket): number {
  return 1000 / b.rps;
}

/** ms until the bucket holds one token; <= EPSILON_MS means it holds one now. */
export function waitMs(fullAt: number, b: Bucket, now: number): number {
  const debt = fullAt > now ? fullAt - now : 0;
  return debt - (b.burst - 1) * (1000 / b.rps);
}

/** True when the bucket holds at least one token at `now`. */
export function hasToken(fullAt: number, b: Bucket, now: number): boolean {
  return waitMs(fullAt, b, now) <= EPSILON_MS;
}

/** The new `fullAt` after spending one token at `now` (call only when hasToken). */
export function spend(fullAt: number, b: Bucket, now: number): number {
  return (fullAt > now ? fullAt : now) + 1000 / b.rps;
}

/** Whole tokens in the bucket at `now` (0..burst). */
export function tokensAt(fullAt: number, b: Bucket, now: number): number {
  const debt = fullAt > now ? fullAt - now : 0;
  const t = Math.floor(b.burst - (debt * b.rps) / 1000 + 1e-9);
  return t < 0 ? 0 : t;
}

/** Whole seconds until the bucket is full again (0 when full). */
export function resetSeconds(fullAt: number, now: number): number {
  return fullAt > now ? secondsCeil(fullAt - now) : 0;
}

/** `Retry-After` for a wait of `ms`: whole seconds, rounded up, at least 1. */
export function retryAfterSeconds(ms: number): number {
  const s = secondsCeil(ms);
  return s < 1 ? 1 : s;
}

/** ceil(ms / 1000), treating the float slack as zero (999.9999 ms of 1 s is still 1 s). */
export function secondsCeil(ms: number): number {
  const s = Math.ceil((ms - EPSILON_MS) / 1000);
  return s > 0 ? s : 0;
}

/** The advertised window of a bucket: seconds for an empty bucket to refill (>= 1). */
export function windowSeconds(b: Bucket): number {
  const w = Math.ceil(b.burst / b.rps - 1e-9);
  return w < 1 ? 1 : w;
}
