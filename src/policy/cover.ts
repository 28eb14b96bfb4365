/**
 * Route shadowing, for `check`: does an earlier route match every request a later one could, so
 * that the later one is never chosen (routes.ts: first match in config order wins)? Proved, not
 * guessed: true only when every (method, path) the later route matches, the earlier one matches
 * too; false when that is not shown.
 *
 * Each pattern is read as a segment glob over the path after its leading "/" (glob-cover.ts),
 * with exactly the sets of paths routes.ts matches:
 *   path /a/b      -> a/b                  (that path only)
 *   prefix /a      -> a/**                 (/a, /a/, /a/...: whole segments)
 *   prefix /a/     -> a/<any>/**           (everything that starts with /a/; "/" is <any>/**)
 *   glob           -> its own segments     (a whole `**` segment; `*` a non-empty run within one)
 */
import { globCovers, parseSegmentGlob } from '../glob-cover.js';
import type { Segment, SegmentGlob } from '../glob-cover.js';
import type { RouteSpec } from './routes.js';

/** `path` and `prefix` are literal text: a `*` in them is matched as itself. */
function literal(text: string): Segment {
  return { kind: 'literal', text };
}

/** The segment glob of a validated route's path pattern. */
export function routeGlob(r: RouteSpec): SegmentGlob {
  if (r.path !== undefined) return { head: r.path.slice(1).split('/').map(literal), tail: null };
  if (r.prefix !== undefined) {
    const segments = r.prefix.slice(1).split('/');
    if (!r.prefix.endsWith('/')) return { head: segments.map(literal), tail: [] };
    // Every path has a first segment, so `/` (<any>/**) is `**` alone: the form globCovers sees through.
    if (r.prefix === '/') return { head: [], tail: [] };
    // The last split segment is the empty text after the trailing slash: any text may follow.
    return { head: [...segments.slice(0, -1).map(literal), { kind: 'any' }], tail: [] };
  }
  return parseSegmentGlob((r.glob ?? '/').slice(1).split('/'));
}

/** Every method `b` allows, `a` allows (absent = any method). */
export function methodsCover(a: readonly string[] | undefined, b: readonly string[] | undefined): boolean {
  if (a === undefined) return true;
  return b !== undefined && b.every((m) => a.includes(m));
}

/** Every path `b` matches, `a` matches. */
export function pathCovers(a: RouteSpec, b: RouteSpec): boolean {
  return globCovers(routeGlob(a), routeGlob(b));
}

/** Every request `b` matches, `a` matches: placed before `b`, `a` leaves it nothing. */
export function routeCovers(a: RouteSpec, b: RouteSpec): boolean {
  return methodsCover(a.methods, b.methods) && pathCovers(a, b);
}

/**
 * For each route, the earlier routes whose path patterns cover its own, in config order. Each
 * glob is computed once, and routes are bucketed by a literal first segment (as RouteTable
 * does): a route whose first segment is the literal L can only cover a route whose first
 * segment is the literal L too, so a pair in different buckets is never compared.
 */
export function pathCoverers(routes: readonly RouteSpec[]): number[][] {
  const globs = routes.map(routeGlob);
  const anyFirst: number[] = [];
  const byFirst = new Map<string, number[]>();
  globs.forEach((g, i) => {
    const first = g.head[0];
    if (first === undefined || first.kind !== 'literal') anyFirst.push(i);
    else byFirst.set(first.text, [...(byFirst.get(first.text) ?? []), i]);
  });
  return globs.map((b, j) => {
    const first = b.head[0];
    const bucket = first !== undefined && first.kind === 'literal' ? (byFirst.get(first.text) ?? []) : [];
    return [...anyFirst, ...bucket]
      .filter((i) => i < j)
      .sort((x, y) => x - y)
      .filter((i) => {
        const a = globs[i];
        return a !== undefined && globCovers(a, b);
      });
  });
}
