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
 */

export const PINNED_PREFIX = 'id/';

export function identityKey(identity: string): string {
  return PINNED_PREFIX + identity;
}

/** `sha256Hex`: the leaf certificate's lower-case hex thumbprint (as in XFCC `Hash`). */
export function certKey(sha256Hex: string): string {
  return 'cert/' + sha256Hex;
}

/** The bucket of `route` for the caller whose own key is `subjectKey`. */
export function routeKey(subjectKey: string, route: string): string {
  return subjectKey + '/rt/' + route;
}

export function isPinnedKey(key: string): boolean {
  return key.startsWith(PINNED_PREFIX);
}
