/**
 * Route table (SPEC §3 `routes`): first match in config order wins, no match means deny.
 *
 * Matching is against the normalized path (normalize.ts) and is case-sensitive:
 *  - `path`: exact string equality.
 *  - `prefix`: whole segments. `/orders` matches `/orders`, `/orders/` and `/orders/1`, not
 *    `/ordersx`. A prefix written with a trailing slash (`/orders/`) matches `/orders/` and below
 *    but not `/orders`. `/` matches every path.
 *  - `glob`: the path is split at "/" (a trailing slash makes an empty last segment) and the
 *    glob segment by segment:
 *      `**`       any number of whole segments, including none (`/a/**` matches `/a`, `/a/`,
 *                 `/a/b/c`; `/a/**` + `/b` matches `/a/b`, `/a/x/y/b`);
 *      `*`        exactly one non-empty segment (`/orders/*` matches `/orders/1`, not `/orders/`
 *                 nor `/orders/1/2`);
 *      `a*b`      Decision: `*` may also appear inside a segment (`/v1/*.json`, `/files/img-*`)
 *                 and then matches a non-empty run of characters within that one segment. So
 *                 `/v1/*.json` matches `/v1/a.json`, not `/v1/.json` nor `/v1/a/b.json`.
 *                 `**` inside a longer segment (`/a**`) is refused: it would be ambiguous.
 *      otherwise  literal text. There is no escape: a glob cannot match a literal `*` (use
 *                 `path` or `prefix` for that) and `?`, `[`, `{` have no special meaning.
 *  - `methods`: absent = any method; otherwise exact, case-sensitive membership (HEAD is not
 *    implied by GET).
 * Patterns must already be in normalized form (validateRouteSpec checks this with
 * normalizeTarget), since a pattern such as `/a/../b` or `/%7Eu` could never equal a
 * normalized request path.
 *
 * Index (trade-offs): routes are bucketed at construction by the first path segment they can
 * match (`/orders/1` -> "/orders"; `prefix: /` or a glob starting with `*`/`**` -> "any"). Each
 * bucket holds, in config order, its own routes merged with every "any" route, so a lookup is one
 * Map.get on the request's first segment plus a scan of only the routes that could possibly
 * match, and still returns the first match in config order. The cost is memory:
 * (#buckets x #"any" routes) entries, which is small for real configs. A request path with
 * several segments costs one short string slice for the bucket key; a one-segment path is its
 * own key. Per-route method sets are precomputed. Matching allocates nothing else, builds no
 * regex and runs no closures: globs are precompiled to segment tokens (consecutive literal
 * segments merged into one comparison) and matched char by char with the classic wildcard
 * algorithm, O(segments x tokens) in the worst case: no regex backtracking blow-up whatever the
 * path.
 */
import { normalizeTarget } from './normalize.js';

export interface RouteSpec {
  readonly name: string;
  readonly path?: string;
  readonly prefix?: string;
  readonly glob?: string;
  readonly methods?: readonly string[];
}

const METHOD_TOKEN = /^[A-Z][A-Z0-9_-]*$/;

/** A readable problem with one route for the config loader, or null when it is usable. */
export function validateRouteSpec(r: RouteSpec): string | null {
  if (typeof r.name !== 'string' || r.name === '') return 'a route needs a name';
  const label = `route "${r.name}"`;
  const given = (['path', 'prefix', 'glob'] as const).filter((k) => r[k] !== undefined);
  if (given.length !== 1) {
    return `${label}: give exactly one of path, prefix or glob (got ${given.length === 0 ? 'none' : given.join(', ')})`;
  }
  const kind = given[0] ?? 'path';
  const pattern = r[kind];
  if (typeof pattern !== 'string' || !pattern.startsWith('/')) return `${label}: ${kind} must start with "/"`;
  if (pattern.includes('?') || pattern.includes('#')) return `${label}: ${kind} must not contain "?" or "#" (query strings and fragments are not routed)`;
  const normalized = normalizeTarget(pattern);
  if (!normalized.ok) return `${label}: ${kind} "${pattern}" is not a valid path (${normalized.detail})`;
  if (normalized.path !== pattern) {
    return `${label}: ${kind} "${pattern}" is not in normalized form; requests are normalized before routing, so write it as "${normalized.path}"`;
  }
  if (kind === 'glob') {
    for (const segment of pattern.slice(1).split('/')) {
      if (segment !== '**' && segment.includes('**')) {
        return `${label}: glob "${pattern}": "**" must be a whole segment (use "*" for part of a segment)`;
      }
    }
  }
  if (r.methods !== undefined) {
    if (r.methods.length === 0) return `${label}: methods must list at least one method (omit it to allow any)`;
    for (const m of r.methods) {
      if (typeof m !== 'string' || !METHOD_TOKEN.test(m)) return `${label}: method "${String(m)}" must be an upper-case token such as GET`;
    }
  }
  return null;
}

// ---- compiled form -------------------------------------------------------------------------

const K_EXACT = 0;
const K_PREFIX_SEGMENT = 1; // prefix without trailing slash: equal, or followed by '/'
const K_PREFIX_RAW = 2; // prefix with trailing slash (incl. "/"): startsWith
const K_GLOB = 3;

const SLASH = 0x2f;

const T_LITERAL = 0; // one or more whole segments equal to text (consecutive literal segments are merged: "a/b")
const T_ONE = 1; // `*`: one non-empty segment
const T_PARTIAL = 2; // `a*b`: pieces around non-empty wildcards, within one segment
const T_ANY = 3; // `**`: zero or more segments

class GlobToken {
  constructor(
    readonly kind: number,
    readonly text: string,
    /** T_PARTIAL only: the literal pieces between the `*`s (first and last may be ''). */
    readonly pieces: readonly string[],
    /** T_PARTIAL only: the fewest characters the segment can have. */
    readonly minLength: number,
  ) {}
}

class CompiledRoute<T> {
  constructor(
    readonly route: T,
    readonly kind: number,
    readonly pattern: string,
    readonly methods: ReadonlySet<string> | null,
    readonly tokens: readonly GlobToken[],
  ) {}
}

function compileGlob(glob: string): GlobToken[] {
  const tokens: GlobToken[] = [];
  for (const segment of glob.slice(1).split('/')) {
    const prev = tokens.at(-1);
    if (segment === '**') {
      // `**/**` is the same as `**`; collapsing keeps the matcher's backtracking single-level.
      if (prev?.kind !== T_ANY) tokens.push(new GlobToken(T_ANY, segment, [], 0));
    } else if (segment === '*') {
      tokens.push(new GlobToken(T_ONE, segment, [], 1));
    } else if (segment.includes('*')) {
      const pieces = segment.split('*');
      const literal = pieces.reduce((n, p) => n + p.length, 0);
      tokens.push(new GlobToken(T_PARTIAL, segment, pieces, literal + pieces.length - 1));
    } else if (prev !== undefined && prev.kind === T_LITERAL) {
      tokens[tokens.length - 1] = new GlobToken(T_LITERAL, `${prev.text}/${segment}`, [], 0);
    } else {
      tokens.push(new GlobToken(T_LITERAL, segment, [], 0));
    }
  }
  return tokens;
}

/** The bucket key (see header) a route is confined to, or null if it can match any first segment. */
function bucketKey(kind: number, pattern: string): string | null {
  const slash = pattern.indexOf('/', 1);
  const first = slash === -1 ? pattern : pattern.slice(0, slash);
  if (kind === K_GLOB) return first.includes('*') ? null : first;
  if (pattern === '/') return kind === K_EXACT ? '/' : null;
  return first;
}

/** The index of the '/' ending the segment that starts at pos, or s.length. */
function segmentEnd(s: string, pos: number): number {
  const n = s.length;
  while (pos < n && s.charCodeAt(pos) !== SLASH) pos++;
  return pos;
}

/** s[pos, pos + text.length) === text; the caller guarantees the range is inside s. */
function textAt(s: string, pos: number, text: string): boolean {
  for (let j = 0; j < text.length; j++) {
    if (s.charCodeAt(pos + j) !== text.charCodeAt(j)) return false;
  }
  return true;
}

/** Does path[start, end) (one segment, no '/') match a T_PARTIAL token? Stars are non-empty. */
function partialMatches(token: GlobToken, path: string, start: number, end: number): boolean {
  if (end - start < token.minLength) return false;
  const pieces = token.pieces;
  const count = pieces.length;
  const first = pieces[0] ?? '';
  const lastPiece = pieces[count - 1] ?? '';
  const tail = end - lastPiece.length;
  if (!textAt(path, start, first) || !textAt(path, tail, lastPiece)) return false;
  // Leftmost placement of each middle piece is optimal; each `*` takes at least one character.
  // Pieces hold no '/', so a hit past `end` lies beyond the segment and fails the bound.
  let pos = start + first.length + 1;
  for (let i = 1; i < count - 1; i++) {
    const piece = pieces[i] ?? '';
    const at = path.indexOf(piece, pos);
    if (at === -1 || at + piece.length > tail - 1) return false;
    pos = at + piece.length + 1;
  }
  return pos <= tail;
}

/**
 * Glob match over the path's segments without splitting it. Every token but `**` consumes a
 * fixed run of segments, so on a mismatch it suffices to let the most recent `**` absorb one
 * more segment and retry (the classic wildcard algorithm): O(segments x tokens) at worst.
 */
function globMatches(tokens: readonly GlobToken[], path: string): boolean {
  const n = path.length;
  const m = tokens.length;
  let ti = 0;
  let pos = 1; // start of the current segment; n + 1 once all segments are consumed
  let anyTi = -1;
  let anyPos = 0;
  while (pos <= n) {
    const token = ti < m ? tokens[ti] : undefined;
    if (token !== undefined) {
      if (token.kind === T_ANY) {
        anyTi = ti++;
        anyPos = pos;
        continue;
      }
      if (token.kind === T_LITERAL) {
        const end = pos + token.text.length;
        if (end <= n && (end === n || path.charCodeAt(end) === SLASH) && textAt(path, pos, token.text)) {
          ti++;
          pos = end + 1;
          continue;
        }
      } else {
        const end = segmentEnd(path, pos);
        if (token.kind === T_ONE ? end > pos : partialMatches(token, path, pos, end)) {
          ti++;
          pos = end + 1;
          continue;
        }
      }
    }
    if (anyTi === -1) return false;
    anyPos = segmentEnd(path, anyPos) + 1;
    pos = anyPos;
    ti = anyTi + 1;
  }
  while (ti < m && tokens[ti]?.kind === T_ANY) ti++;
  return ti === m;
}

export class RouteTable<T extends RouteSpec> {
  readonly #buckets = new Map<string, readonly CompiledRoute<T>[]>();
  /** Routes for a path whose first segment has no bucket: only the "any" routes. */
  readonly #anyRoutes: readonly CompiledRoute<T>[];

  /** Compiles once. Input is assumed validated; an invalid route throws. */
  constructor(routes: readonly T[]) {
    const compiled: { route: CompiledRoute<T>; key: string | null }[] = [];
    for (const r of routes) {
      const problem = validateRouteSpec(r);
      if (problem !== null) throw new Error(problem);
      let kind: number;
      let pattern: string;
      if (r.path !== undefined) {
        kind = K_EXACT;
        pattern = r.path;
      } else if (r.prefix !== undefined) {
        pattern = r.prefix;
        kind = pattern.endsWith('/') ? K_PREFIX_RAW : K_PREFIX_SEGMENT;
      } else {
        kind = K_GLOB;
        pattern = r.glob ?? '/';
      }
      const tokens = kind === K_GLOB ? compileGlob(pattern) : [];
      const methods = r.methods === undefined ? null : new Set(r.methods);
      compiled.push({ route: new CompiledRoute(r, kind, pattern, methods, tokens), key: bucketKey(kind, pattern) });
    }
    const keys = new Set<string>();
    for (const c of compiled) if (c.key !== null) keys.add(c.key);
    for (const key of keys) {
      this.#buckets.set(key, compiled.filter((c) => c.key === null || c.key === key).map((c) => c.route));
    }
    this.#anyRoutes = compiled.filter((c) => c.key === null).map((c) => c.route);
  }

  /** The first route, in config order, matching this method and normalized path. */
  match(method: string, path: string): T | undefined {
    let candidates = this.#anyRoutes;
    if (this.#buckets.size !== 0) {
      const end = segmentEnd(path, 1);
      candidates = this.#buckets.get(end === path.length ? path : path.slice(0, end)) ?? this.#anyRoutes;
    }
    for (let i = 0; i < candidates.length; i++) {
      const c = candidates[i];
      if (c === undefined) continue;
      if (c.methods !== null && !c.methods.has(method)) continue;
      if (routeMatches(c, path)) return c.route;
    }
    return undefined;
  }
}

function routeMatches<T>(c: CompiledRoute<T>, path: string): boolean {
  switch (c.kind) {
    case K_EXACT:
      return path === c.pattern;
    case K_PREFIX_SEGMENT:
      return path.startsWith(c.pattern) && (path.length === c.pattern.length || path.charCodeAt(c.pattern.length) === SLASH);
    case K_PREFIX_RAW:
      return path.startsWith(c.pattern);
    default:
      return globMatches(c.tokens, path);
  }
}
