/**
 * Probable mistakes in a valid config (SPEC §2 `check`): the config loads and serves, but some
 * part of it can never take effect or leaks identity. Each warning is a proven fact about the
 * compiled rules, never a guess: `check` prints them (exit stays 0) and `run` logs them at start
 * and on every reload that applies.
 *
 *  - scope_unheld            a route needs a scope that no identity holds (route `scopes` are
 *                            checked against the certificate's identity only; a token's scopes
 *                            count for `tokenScopes`, which the token issuer decides, so those
 *                            are never warned about)
 *  - scopes_unheld_together  each scope is held by someone, but no one identity holds them all
 *  - no_identity_defined     a non-public route while `identities` is empty
 *  - route_shadowed          earlier routes match every request the route could (policy/cover.ts)
 *  - identity_shadowed       an earlier identity matches every certificate this one could
 *                            (identity/cover.ts)
 *  - upstream_not_loopback   upstream.url is not on this host: the identity headers would cross
 *                            the network in cleartext
 * A shadowed route gets no scope warning (its scopes never apply), and scope holders include
 * shadowed identities (the shadowing is the one thing to fix).
 */
import { BlockList, isIP } from 'node:net';
import type { Log } from '../log.js';
import { shadowedBy } from '../identity/cover.js';
import { methodsCover, pathCoverers } from '../policy/cover.js';
import { closestKey } from './cascade.js';
import type { Locator } from './load.js';
import { formatPath } from './load.js';
import type { IdentityRule, RouteRule } from './snapshot.js';

export type WarningCode = 'scope_unheld' | 'scopes_unheld_together' | 'no_identity_defined' | 'route_shadowed' | 'identity_shadowed' | 'upstream_not_loopback';

export interface ConfigWarning {
  readonly code: WarningCode;
  /** Dotted YAML path, e.g. `routes[2].scopes[0]`. */
  readonly path: string;
  readonly line: number;
  readonly col: number;
  readonly message: string;
}

/** The parts of a compiled config the warnings read (a Snapshot has them all). */
export interface WarningInput {
  readonly identities: readonly IdentityRule[];
  readonly routes: readonly RouteRule[];
  readonly upstream: { readonly origin: string };
}

export function configWarnings(c: WarningInput, locate: Locator): ConfigWarning[] {
  const out: ConfigWarning[] = [];
  const add = (code: WarningCode, p: readonly PropertyKey[], message: string): void => {
    out.push({ code, path: formatPath(p), ...locate(p), message });
  };
  identityWarnings(c.identities, add);
  routeWarnings(c.routes, c.identities, add);
  upstreamWarning(c.upstream.origin, add);
  // In the order of the file, as a reader goes through it.
  return out.sort((a, b) => a.line - b.line || a.col - b.col);
}

type Add = (code: WarningCode, p: readonly PropertyKey[], message: string) => void;

function identityWarnings(ids: readonly IdentityRule[], add: Add): void {
  const by = shadowedBy(ids.map((id) => id.match));
  ids.forEach((b, j) => {
    const a = ids[by[j] ?? -1];
    if (a !== undefined) {
      add('identity_shadowed', ['identities', j, 'match'], `identity "${b.name}" can never match: identity "${a.name}" (identities[${a.index}]) comes before it and matches every certificate it would`);
    }
  });
}

/** The earlier routes that together leave `b` nothing, or null when that is not shown. */
function shadowing(routes: readonly RouteRule[], coverers: readonly number[], j: number): readonly { route: RouteRule; methods: readonly string[] | undefined }[] | null {
  const b = routes[j];
  if (b === undefined) return null;
  const earlier = coverers.flatMap((i) => routes[i] ?? []);
  const whole = earlier.find((a) => methodsCover(a.methods, b.methods));
  if (whole !== undefined) return [{ route: whole, methods: undefined }];
  if (b.methods === undefined) return null;
  // Several earlier routes over the same paths may share out b's methods between them.
  const byRoute = new Map<RouteRule, string[]>();
  for (const m of b.methods) {
    const a = earlier.find((r) => r.methods === undefined || r.methods.includes(m));
    if (a === undefined) return null;
    byRoute.set(a, [...(byRoute.get(a) ?? []), m]);
  }
  return [...byRoute].map(([route, methods]) => ({ route, methods }));
}

function routeWarnings(routes: readonly RouteRule[], ids: readonly IdentityRule[], add: Add): void {
  const coverers = pathCoverers(routes);
  const held = new Set(ids.flatMap((id) => id.scopes));
  routes.forEach((r, j) => {
    const shadow = shadowing(routes, coverers[j] ?? [], j);
    if (shadow !== null) {
      const [only] = shadow;
      const by =
        shadow.length === 1 && only !== undefined
          ? `route "${only.route.name}" (routes[${only.route.index}]) comes before it and matches every request it would`
          : `earlier routes match every request it would (${shadow.map((s) => `"${s.route.name}" for ${(s.methods ?? []).join(', ')}`).join('; ')})`;
      add('route_shadowed', ['routes', j], `route "${r.name}" can never match: ${by}`);
      return;
    }
    if (r.public) return;
    // In audit mode the requests still pass, each one logged and counted as a wouldDeny.
    const refuses = (subject: string, reason: string): string =>
      r.audit ? `every request to ${subject} passes only as a wouldDeny (${reason}, audit mode)` : `${subject} refuses every request (${reason})`;
    if (ids.length === 0) {
      add('no_identity_defined', ['routes', j], `route "${r.name}" is not public and no identity is defined, so ${refuses('it', 'no_identity')}`);
      return;
    }
    let unheld = false;
    for (const [k, scope] of r.scopes.entries()) {
      if (r.scopes.indexOf(scope) !== k || held.has(scope)) continue;
      unheld = true;
      const near = closestKey(scope, [...held]);
      const hint =
        r.tokenScopes?.includes(scope) === true
          ? " (a token's scopes count only for tokenScopes; scopes are the certificate identity's)"
          : near === null
            ? ''
            : ` (did you mean "${near}"?)`;
      add('scope_unheld', ['routes', j, 'scopes', k], `no identity holds scope "${scope}", so ${refuses(`route "${r.name}"`, 'scope_missing')}${hint}`);
    }
    if (!unheld && r.scopes.length > 1 && !ids.some((id) => r.scopes.every((s) => id.scopeSet.has(s)))) {
      add('scopes_unheld_together', ['routes', j, 'scopes'], `no one identity holds all of route "${r.name}"'s scopes (${r.scopes.join(', ')}), so ${refuses('it', 'scope_missing')}`);
    }
  });
}

const LOOPBACK = new BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
LOOPBACK.addAddress('::1', 'ipv6');

/**
 * Loopback: 127.0.0.0/8, ::1 (also IPv4-mapped), `localhost`. The unspecified addresses 0.0.0.0
 * and :: connect to this host too, so they are not warned about either.
 */
function upstreamWarning(origin: string, add: Add): void {
  let host: string;
  try {
    host = new URL(origin).hostname;
  } catch {
    return; // the schema already refused anything that is not an http:// origin
  }
  const bare = host.startsWith('[') ? host.slice(1, -1) : host;
  const family = isIP(bare);
  if (family === 0) {
    if (bare === 'localhost') return;
    add('upstream_not_loopback', ['upstream', 'url'], `upstream host "${bare}" is a name, not localhost: if it resolves to another host, the identity headers (x-forwarded-client-cert, x-client-identity, x-client-scopes) and the request cross the network in cleartext`);
    return;
  }
  const type = family === 4 ? 'ipv4' : 'ipv6';
  if (LOOPBACK.check(bare, type) || bare === '0.0.0.0' || bare === '::') return;
  add('upstream_not_loopback', ['upstream', 'url'], `upstream address ${bare} is not a loopback address: the identity headers (x-forwarded-client-cert, x-client-identity, x-client-scopes) and the request cross the network in cleartext`);
}

/** `file:line:col path: warning: message`, the error line's layout with "warning:" before the text. */
export function formatWarning(file: string, w: ConfigWarning): string {
  return `${file}:${w.line}:${w.col}: ${w.path}: warning: ${w.message}`;
}

/** One warn-level operational line per warning (`run` at start and after each applied reload). */
export function logWarnings(log: Log, file: string, warnings: readonly ConfigWarning[]): void {
  for (const w of warnings) log.warn({ component: 'config', code: w.code, at: `${file}:${w.line}:${w.col}`, path: w.path }, `config warning: ${w.message}`);
}
