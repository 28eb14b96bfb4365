/** The `identities` and `routes` sections -> the snapshot's rules and the matchers built over them. */
import { IdentityMatcher } from '../identity/match.js';
import { RouteTable } from '../policy/routes.js';
import type { RawConfig } from './schema.js';
import type { IdentityRule, RouteRule, Snapshot } from './snapshot.js';

/** Both already validated by the schema, so nothing here can fail. */
export function compileRules(
  rawIdentities: RawConfig['identities'],
  rawRoutes: RawConfig['routes'],
  policyMode: RawConfig['policy']['mode'],
): Pick<Snapshot, 'identities' | 'identityMatcher' | 'routes' | 'routeTable' | 'policyAudit'> {
  const identities: IdentityRule[] = rawIdentities.map((id, index) =>
    Object.freeze({
      index,
      name: id.name,
      match: Object.freeze({ ...id.match }),
      scopes: Object.freeze([...id.scopes]),
      scopeSet: new Set(id.scopes),
      scopesHeader: id.scopes.join(' '),
    }),
  );
  const routes: RouteRule[] = rawRoutes.map((r, index) =>
    Object.freeze({
      index,
      name: r.name,
      ...(r.path !== undefined ? { path: r.path } : {}),
      ...(r.prefix !== undefined ? { prefix: r.prefix } : {}),
      ...(r.glob !== undefined ? { glob: r.glob } : {}),
      ...(r.methods !== undefined ? { methods: Object.freeze([...r.methods]) } : {}),
      public: r.public,
      scopes: Object.freeze([...r.scopes]),
      tokenScopes: r.tokenScopes === undefined ? undefined : Object.freeze([...r.tokenScopes]),
      rateLimit: r.rateLimit === undefined ? undefined : Object.freeze({ ...r.rateLimit }),
      audit: (r.mode ?? policyMode) === 'audit',
    }),
  );
  return {
    identities: Object.freeze(identities),
    identityMatcher: new IdentityMatcher(identities),
    routes: Object.freeze(routes),
    routeTable: new RouteTable(routes),
    policyAudit: policyMode === 'audit',
  };
}
