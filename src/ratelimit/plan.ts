/**
 * Which buckets a request spends from (SPEC §3 `rateLimit`, routes[].rateLimit):
 *
 *  - its caller's own bucket: `rateLimit.identities.<identity>` if set, else `rateLimit.default`
 *    (none if neither). Key `id/<identity>`; a caller no identity rule matched (public routes)
 *    is keyed by certificate, `cert/<sha256 hex>`, with the default bucket;
 *  - plus, when the route has its own `rateLimit`, that route's bucket for this caller
 *    (`<caller key>/rt/<route>`), on top of the caller's own.
 *
 * Both are taken all-or-nothing. Policy names (for rateLimitHeaders): `default`,
 * `identity:<name>` for an identity's override, `route:<name>` for a route's bucket.
 *
 * Plans for identified callers are built once per (route, identity) and reused, so the hot path
 * allocates nothing; a plan keyed by certificate is built per request. Build a new planner
 * for each config snapshot (the limiter itself, and so the bucket state, outlives reloads).
 */
import { certKey, identityKey, routeKey } from './keys.js';
import type { Bucket, Take } from './types.js';

/** The `rateLimit` section of the compiled snapshot (null when the config has none). */
export interface RateLimitSettings {
  readonly default: Bucket | undefined;
  readonly identities: ReadonlyMap<string, Bucket>;
}

/** What a plan needs of a compiled route. */
export interface RouteLimit {
  readonly name: string;
  readonly rateLimit: Bucket | undefined;
}

export interface RatePlan {
  /** Non-empty. */
  readonly takes: readonly Take[];
  /** Policy name of each take, for rateLimitHeaders(decision, names[decision.index]). */
  readonly names: readonly string[];
}

export class RatePlanner {
  readonly #settings: RateLimitSettings | null;
  readonly #byRoute = new WeakMap<RouteLimit, Map<string, RatePlan | null>>();

  constructor(settings: RateLimitSettings | null) {
    this.#settings = settings;
  }

  /** True when no request can ever be limited (no buckets anywhere): skip the limiter. */
  static inert(settings: RateLimitSettings | null, routes: readonly RouteLimit[]): boolean {
    if (settings !== null && (settings.default !== undefined || settings.identities.size > 0)) return false;
    return routes.every((r) => r.rateLimit === undefined);
  }

  /**
   * The takes for one request, or null when no bucket applies to it.
   * `identity`: the matched config identity's name, or null; `certSha256`: the client leaf's
   * lower-case hex thumbprint (used only when `identity` is null).
   */
  plan(identity: string | null, certSha256: string, route: RouteLimit): RatePlan | null {
    if (identity === null) return this.#build(certKey(certSha256), this.#settings?.default, 'default', route);
    let perRoute = this.#byRoute.get(route);
    if (perRoute === undefined) {
      perRoute = new Map();
      this.#byRoute.set(route, perRoute);
    }
    let plan = perRoute.get(identity);
    if (plan === undefined) {
      const override = this.#settings?.identities.get(identity);
      plan =
        override !== undefined
          ? this.#build(identityKey(identity), override, `identity:${identity}`, route)
          : this.#build(identityKey(identity), this.#settings?.default, 'default', route);
      perRoute.set(identity, plan);
    }
    return plan;
  }

  #build(subject: string, own: Bucket | undefined, ownName: string, route: RouteLimit): RatePlan | null {
    const takes: Take[] = [];
    const names: string[] = [];
    if (own !== undefined) {
      takes.push({ key: subject, bucket: own });
      names.push(ownName);
    }
    if (route.rateLimit !== undefined) {
      takes.push({ key: routeKey(subject, route.name), bucket: route.rateLimit });
      names.push(`route:${route.name}`);
    }
    return takes.length === 0 ? null : { takes, names };
  }
}
