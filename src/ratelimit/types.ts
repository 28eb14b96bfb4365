/**
 * Rate limiting (SPEC §3 `rateLimit`, §4 429): the whole public surface of src/ratelimit/.
 *
 *   Bucket        { rps, burst }: a token bucket that refills at `rps` tokens a second up to
 *                 `burst` tokens; a request spends one token. (Same shape as the config's Bucket.)
 *   Take          { key, bucket }: "spend one token from the bucket stored under `key`".
 *   RateLimiter   take(takes) -> RateDecision, all-or-nothing over `takes`: if any bucket lacks
 *                 a token, none is spent. close() releases connections.
 *     MemoryRateLimiter (memory.ts)  per process; answers synchronously.
 *     RedisRateLimiter  (redis.ts)   shared by every replica using the same Redis; answers with a
 *                                    Promise that settles within `timeoutMs`, or synchronously
 *                                    with `unavailable` while disconnected.
 *   RateDecision  allow | deny | unavailable. `unavailable` (Redis only) means "no answer":
 *                 the pipeline applies `rateLimit.redis.onError` (allow, or 503
 *                 ratelimit_unavailable).
 *   rateLimitHeaders(decision, policyName)  `RateLimit-Policy` and `RateLimit` for every allowed or
 *                 denied response, plus `Retry-After` on a denial (headers.ts).
 *   Keys and plans (keys.ts, plan.ts): how the sidecar names buckets — `id/<identity>`,
 *                 `cert/<sha256 hex>`, and `<subject key>/rt/<route>` for a route's own bucket —
 *                 and RatePlanner, which turns (identity, certificate, route) into the takes of
 *                 one request, cached per config snapshot. In a Redis Cluster each key is
 *                 stored as `{<subject key>}[/rt/<route>]` (keys.ts clusterKey), so one
 *                 decision's buckets share a hash slot.
 *
 * Semantics shared by both backends (bucket.ts is the one place the arithmetic lives):
 *   - A bucket is stored as the time it will be full again (`fullAt`, ms), i.e. a token bucket
 *     in GCRA form: tokens(now) = burst − max(0, fullAt − now) · rps / 1000. A key never seen, or
 *     whose record expired, is a full bucket.
 *   - allow.remaining      whole tokens left after this request, in the bucket with the fewest.
 *   - allow.resetSeconds   ceil(seconds until that bucket is full again).
 *   - deny.retryAfterSeconds  ceil(seconds until every bucket holds a token), at least 1: the
 *                          real time after which the same request would be admitted.
 *   - deny.resetSeconds    ceil(seconds until the binding bucket is full again).
 *   - policy / index       the bucket those numbers describe and its position in `takes` (on
 *                          allow the one with the fewest tokens left, on deny the one that frees
 *                          a token last), so the caller can name the policy in the headers.
 *   - `takes` must not be empty (RangeError): with no bucket to apply, don't call take().
 *     Keys within one call should be distinct, and on a Redis Cluster have one subject
 *     (RatePlanner's always do both).
 */

export interface Bucket {
  /** Refill rate, tokens per second (> 0; may be fractional). */
  readonly rps: number;
  /** Capacity, whole tokens (>= 1). */
  readonly burst: number;
}

export interface Take {
  readonly key: string;
  readonly bucket: Bucket;
}

export interface AllowDecision {
  readonly kind: 'allow';
  readonly remaining: number;
  readonly resetSeconds: number;
  readonly policy: Bucket;
  readonly index: number;
}

export interface DenyDecision {
  readonly kind: 'deny';
  readonly retryAfterSeconds: number;
  readonly resetSeconds: number;
  readonly policy: Bucket;
  readonly index: number;
}

export interface UnavailableDecision {
  readonly kind: 'unavailable';
}

export type RateDecision = AllowDecision | DenyDecision | UnavailableDecision;

export interface RateLimiter {
  /** All-or-nothing: if any bucket lacks a token, none is spent. Memory answers synchronously. */
  take(takes: readonly Take[]): RateDecision | Promise<RateDecision>;
  close(): Promise<void>;
}

/** The one `unavailable` value (decisions are immutable, so it is shared). */
export const UNAVAILABLE: UnavailableDecision = Object.freeze({ kind: 'unavailable' });
