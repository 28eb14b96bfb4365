/**
 * The decisions of one request, as plain functions over the snapshot: the identity a
 * certificate maps to, what authorization says of a route for that identity, whether a refusal
 * is enforced or only noted (policy.mode audit), which rate-limit buckets apply, and the reason
 * a served request is audited with. server/pipeline.ts decides live requests with them and
 * server/explain.ts (`mtls-sidecar explain`) decides a certificate and a path with the very
 * same ones, so the two cannot drift apart. Each is synchronous; those called per request
 * allocate nothing (ratePlannerOf runs at load time).
 */
import type { IdentityRule, RouteRule, Snapshot } from '../config/snapshot.js';
import type { PeerInfo } from '../identity/peer.js';
import { RatePlanner } from '../ratelimit/plan.js';
import type { RatePlan } from '../ratelimit/plan.js';
import type { RequestReason } from '../reasons.js';

/** What authorization (route, identity, scopes) refuses a request for. */
export type AuthorizationRefusal = 'no_route' | 'no_identity' | 'scope_missing';

/** The identity rule a peer certificate maps to (first match wins), or null. Once per connection. */
export function identityOf(s: Snapshot, peer: PeerInfo): IdentityRule | null {
  return s.identityMatcher.match(peer.fields) ?? null;
}

/** The first of the route's scopes the identity does not hold, or null when it holds them all. */
export function missingScope(route: RouteRule, identity: IdentityRule): string | null {
  for (const scope of route.scopes) if (!identity.scopeSet.has(scope)) return scope;
  return null;
}

/**
 * Default deny: no route (undefined) refuses; a public route admits any trusted certificate;
 * any other route needs an identity holding every one of its scopes.
 */
export function authorizationRefusal(route: RouteRule | undefined, identity: IdentityRule | null): AuthorizationRefusal | null {
  if (route === undefined) return 'no_route';
  if (route.public) return null;
  if (identity === null) return 'no_identity';
  return missingScope(route, identity) === null ? null : 'scope_missing';
}

/**
 * Audit mode: an authorization refusal (route, identity, scopes, token) is noted as wouldDeny and
 * the request goes on. A request no route matched follows `policy.mode`; one on a route follows
 * the route's own mode (`routes[].mode`, else `policy.mode`). Trust and limits are never relaxed.
 */
export function refusalAudited(s: Snapshot, route: RouteRule | null | undefined): boolean {
  return route == null ? s.policyAudit : route.audit;
}

/** The reason on the audit line of a request the app answered. */
export function servedReason(wouldDeny: RequestReason | null): 'ok' | 'audit_mode' {
  return wouldDeny === null ? 'ok' : 'audit_mode';
}

/** The rate plan of a request no route matched (audit mode): identity buckets, no route bucket. */
const UNROUTED = Object.freeze({ name: 'unknown', rateLimit: undefined });

/** The rate-limit planner of a snapshot, or null when no request can ever be limited. */
export function ratePlannerOf(s: Snapshot): RatePlanner | null {
  const rl = s.rateLimit;
  const settings = rl === null ? null : { default: rl.default, identities: rl.identities };
  return RatePlanner.inert(settings, s.routes) ? null : new RatePlanner(settings);
}

/** The buckets a request spends from, or null when none applies. Without a route the identity's own bucket still does. */
export function ratePlanOf(planner: RatePlanner, identity: IdentityRule | null, peer: PeerInfo, route: RouteRule | null): RatePlan | null {
  return planner.plan(identity === null ? null : identity.name, peer.sha256Hex, route ?? UNROUTED);
}
