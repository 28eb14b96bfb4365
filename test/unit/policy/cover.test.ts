/**
 * Route shadowing (policy/cover.ts): a route "covers" a later one only when every request the
 * later one matches, it matches too. Tables for the cases a reader expects, then soundness
 * against the real RouteTable: for random route pairs said to cover, every path of a small
 * exhaustive set that the later route matches, the earlier one matches too.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { pathCoverers, routeCovers } from '../../../src/policy/cover.js';
import { RouteTable, validateRouteSpec } from '../../../src/policy/routes.js';
import type { RouteSpec } from '../../../src/policy/routes.js';

const r = (spec: Omit<RouteSpec, 'name'>): RouteSpec => ({ name: 'r', ...spec });

describe('routeCovers', () => {
  const covered: [string, RouteSpec, RouteSpec][] = [
    ['the same prefix', r({ prefix: '/orders' }), r({ prefix: '/orders' })],
    ['a prefix over a longer one', r({ prefix: '/orders' }), r({ prefix: '/orders/archive' })],
    ['a prefix over a path below it', r({ prefix: '/orders' }), r({ path: '/orders/1' })],
    ['a prefix over the path it names', r({ prefix: '/orders' }), r({ path: '/orders' })],
    ['prefix / over anything', r({ prefix: '/' }), r({ glob: '/**/x' })],
    ['prefix /a/ over a path below it', r({ prefix: '/a/' }), r({ path: '/a/' })],
    ['prefix /a/ over prefix /a/b', r({ prefix: '/a/' }), r({ prefix: '/a/b' })],
    ['prefix /a over prefix /a/', r({ prefix: '/a' }), r({ prefix: '/a/' })],
    ['glob /** over anything', r({ glob: '/**' }), r({ prefix: '/' })],
    ['glob /a/** is prefix /a', r({ glob: '/a/**' }), r({ prefix: '/a' })],
    ['glob /a/* over a path one below', r({ glob: '/a/*' }), r({ path: '/a/b' })],
    ['glob /a/* over glob /a/x*', r({ glob: '/a/*' }), r({ glob: '/a/x*' })],
    ['glob /v1/*.json over glob /v1/a*.json', r({ glob: '/v1/*.json' }), r({ glob: '/v1/a*.json' })],
    ['glob /**/*.png over glob /img/**/x*.png', r({ glob: '/**/*.png' }), r({ glob: '/img/**/x*.png' })],
    ['glob /a/**/z over path /a/b/c/z', r({ glob: '/a/**/z' }), r({ path: '/a/b/c/z' })],
    ['any method over some', r({ prefix: '/a' }), r({ prefix: '/a', methods: ['GET'] })],
    ['a wider method set', r({ prefix: '/a', methods: ['GET', 'HEAD'] }), r({ path: '/a/1', methods: ['HEAD'] })],
  ];
  it.each(covered)('%s', (_, a, b) => {
    expect(routeCovers(a, b)).toBe(true);
  });

  const notCovered: [string, RouteSpec, RouteSpec][] = [
    ['a longer prefix does not cover a shorter one', r({ prefix: '/orders/archive' }), r({ prefix: '/orders' })],
    ['prefix /orders is whole segments, not /ordersx', r({ prefix: '/orders' }), r({ prefix: '/ordersx' })],
    ['prefix /a/ does not match /a itself', r({ prefix: '/a/' }), r({ prefix: '/a' })],
    ['a path does not cover the prefix it names', r({ path: '/a' }), r({ prefix: '/a' })],
    ['different paths', r({ path: '/a' }), r({ path: '/b' })],
    ['glob /a/* is one segment only', r({ glob: '/a/*' }), r({ prefix: '/a' })],
    ['glob /a/* needs a non-empty segment', r({ glob: '/a/*' }), r({ path: '/a/' })],
    ['glob /a/x* does not cover /a/*', r({ glob: '/a/x*' }), r({ glob: '/a/*' })],
    ['a fixed glob does not cover one with **', r({ glob: '/*/*' }), r({ glob: '/a/**' })],
    ['a * in a prefix is literal', r({ prefix: '/a*' }), r({ path: '/ab' })],
    ['fewer methods', r({ prefix: '/a', methods: ['GET'] }), r({ prefix: '/a', methods: ['GET', 'POST'] })],
    ['some methods do not cover any method', r({ prefix: '/', methods: ['GET'] }), r({ path: '/a' })],
    ['HEAD is not implied by GET', r({ prefix: '/a', methods: ['GET'] }), r({ prefix: '/a', methods: ['HEAD'] })],
  ];
  it.each(notCovered)('%s', (_, a, b) => {
    expect(routeCovers(a, b)).toBe(false);
  });
});

describe('routeCovers is sound (the real RouteTable agrees)', () => {
  const SEGMENTS = ['a', 'b', 'ab', ''];
  /** Every path of up to three segments over a small alphabet: "/", "/a", "/a/", "/ab/b/a", ... */
  const PATHS: string[] = ['/'];
  let level = [''];
  for (let depth = 1; depth <= 3; depth++) {
    level = level.flatMap((p) => SEGMENTS.map((s) => `${p}/${s}`));
    PATHS.push(...level.filter((p) => p !== '/'));
  }
  const METHODS = ['GET', 'POST'];

  const segment = fc.constantFrom('a', 'b', 'ab', '*', 'a*', '*b', '**', '');
  const pattern = fc.array(segment, { minLength: 1, maxLength: 3 }).map((s) => `/${s.join('/')}`);
  const route = fc
    .record({
      kind: fc.constantFrom('path', 'prefix', 'glob'),
      pattern,
      methods: fc.option(fc.subarray(METHODS, { minLength: 1 }), { nil: undefined }),
    })
    .map(({ kind, pattern: p, methods }): RouteSpec => ({ name: 'r', [kind]: kind === 'glob' ? p : p.replaceAll('*', ''), ...(methods === undefined ? {} : { methods }) }))
    .filter((spec) => validateRouteSpec(spec) === null);

  it('no request the later route matches escapes the earlier one', () => {
    const pairs = fc.sample(fc.tuple(route, route), { numRuns: 4000, seed: 7 });
    let covers = 0;
    const escapes: unknown[] = [];
    for (const [a, b] of pairs) {
      if (!routeCovers(a, b)) continue;
      covers++;
      const ta = new RouteTable([a]);
      const tb = new RouteTable([b]);
      for (const m of [...METHODS, 'PUT']) {
        const p = PATHS.find((path) => tb.match(m, path) !== undefined && ta.match(m, path) === undefined);
        if (p !== undefined) escapes.push({ a, b, m, p });
      }
    }
    expect(escapes).toEqual([]);
    // The property is not vacuous: a fair share of the pairs do cover.
    expect(covers).toBeGreaterThan(200);
  });

  it('pathCoverers (bucketed by first segment) lists the same earlier routes as comparing every pair', () => {
    const lists = fc.sample(fc.array(route, { minLength: 1, maxLength: 12 }), { numRuns: 500, seed: 3 });
    let found = 0;
    for (const list of lists) {
      const pathOnly = list.map((r) => ({ ...r, methods: undefined }));
      const naive = pathOnly.map((b, j) => pathOnly.flatMap((a, i) => (i < j && routeCovers(a, b) ? [i] : [])));
      expect(pathCoverers(list)).toEqual(naive);
      found += naive.flat().length;
    }
    expect(found).toBeGreaterThan(200);
  });
});
