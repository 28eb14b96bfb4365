/**
 * Bucket keys. Config names match /^[A-Za-z0-9][A-Za-z0-9._:-]*$/ and thumbprints are hex, so
 * `/` cannot occur inside a part and every key below is unambiguous.
 *
 *   id/<identity>                  an identity's own bucket (rateLimit.identities.<name> or default)
 *   cert/<sha256 hex>              a caller no identity rule matched (public routes), by certificate
 *   <one of the above>/rt/<route>  a route's own bucket (routes[].rateLimit) for that caller
 *
 * Keys that start with `id/` are *pinned*: there is one per config identity (times routes), so
 * MemoryRateLimiter keeps them without eviction. Every other key (one per client certificate)
 * lives in its bounded, idle-evicting map. Never build an `id/` key from anything a client
 * chose — only from a matched config identity's name.
 *
 * In a Redis Cluster (`rateLimit.redis.cluster: true`) each key is stored as `clusterKey(key)`:
 * the subject (`id/<identity>` or `cert/<sha256 hex>`) in a hash tag, the route part after it.
 */

export const PINNED_PREFIX = 'id/';
/** Between a subject key and a route name; cannot occur inside a subject key (no `/` in a part). */
const ROUTE_INFIX = '/rt/';

export function identityKey(identity: string): string {
  return PINNED_PREFIX + identity;
}

/** `sha256Hex`: the leaf certificate's lower-case hex thumbprint (as in XFCC `Hash`). */
export function certKey(sha256Hex: string): string {
  return 'cert/' + sha256Hex;
}

/** The bucket of `route` for the caller whose own key is `subjectKey`. */
export function routeKey(subjectKey: string, route: string): string {
  return subjectKey + ROUTE_INFIX + route;
}

/**
 * `key` as stored in a Redis Cluster: `{id/orders}`, `{id/orders}/rt/admin`, `{cert/ab…}`.
 * Redis hashes only what is inside the first `{…}`, so every bucket of one decision (one
 * subject: its own bucket and a route's) lands in one slot and one Lua script can take them
 * all, while different identities and certificates spread over the cluster's masters.
 */
export function clusterKey(key: string): string {
  const rt = key.indexOf(ROUTE_INFIX);
  return rt < 0 ? '{' + key + '}' : '{' + key.slice(0, rt) + '}' + key.slice(rt);
}

export function isPinnedKey(key: string): boolean {
  return key.startsWith(PINNED_PREFIX);
}
