/** Rate limiting: see types.ts for the API and its semantics. */
export type { AllowDecision, Bucket, DenyDecision, RateDecision, RateLimiter, Take, UnavailableDecision } from './types.js';
export { UNAVAILABLE } from './types.js';
export { rateLimitHeaders } from './headers.js';
export { certKey, identityKey, isPinnedKey, routeKey } from './keys.js';
export { RatePlanner } from './plan.js';
export type { RatePlan, RateLimitSettings, RouteLimit } from './plan.js';
export { MemoryRateLimiter } from './memory.js';
export type { MemoryRateLimiterOptions, MemoryRateLimiterStats } from './memory.js';
export { RedisRateLimiter } from './redis.js';
export type { RedisRateLimiterOptions } from './redis.js';
