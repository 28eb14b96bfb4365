import { describe, expect, it } from 'vitest';
import { RouteTable, validateRouteSpec } from '../../../src/policy/routes.js';
import type { RouteSpec } from '../../../src/policy/routes.js';

describe('validateRouteSpec', () => {
  const valid: RouteSpec[] = [
    { name: 'health', path: '/healthz', methods: ['GET'] },
    { name: 'root', path: '/' },
    { name: 'all', prefix: '/' },
    { name: 'orders', prefix: '/orders', methods: ['GET', 'HEAD'] },
    { name: 'below', prefix: '/orders/' },
    { name: 'g1', glob: '/orders/*/items/**' },
    { name: 'g2', glob: '/**' },
    { name: 'g3', glob: '/v1/*.json' },
    { name: 'g4', glob: '/**/img-*.png' },
    { name: 'g5', glob: '/a/' },
    { name: 'tilde', path: '/~user' },
    { name: 'enc', path: '/caf%C3%A9' },
    { name: 'dav', prefix: '/dav', methods: ['PROPFIND', 'VERSION-CONTROL', 'M_1'] },
  ];
  it.each(valid)('accepts $name', (r) => {
    expect(validateRouteSpec(r)).toBeNull();
  });

  const invalid: [RouteSpec, RegExp][] = [
    [{ name: '', path: '/' }, /needs a name/],
    [{ name: 'none' }, /exactly one of path, prefix or glob \(got none\)/],
    [{ name: 'two', path: '/a', prefix: '/a' }, /exactly one .*got path, prefix/],
    [{ name: 'three', path: '/a', prefix: '/a', glob: '/a' }, /exactly one/],
    [{ name: 'rel', path: 'orders' }, /must start with "\/"/],
    [{ name: 'empty', prefix: '' }, /must start with "\/"/],
    [{ name: 'q', path: '/a?x=1' }, /"\?" or "#"/],
    [{ name: 'frag', prefix: '/a#b' }, /"\?" or "#"/],
    [{ name: 'dots', path: '/a/../b' }, /normalized form.*"\/b"/],
    [{ name: 'dot', prefix: '/a/./b' }, /normalized form.*"\/a\/b"/],
    [{ name: 'slashes', prefix: '//a' }, /normalized form.*"\/a"/],
    [{ name: 'unreserved', path: '/%7Euser' }, /normalized form.*"\/~user"/],
    [{ name: 'lowerhex', path: '/caf%c3%a9' }, /normalized form.*"\/caf%C3%A9"/],
    [{ name: 'above', path: '/..' }, /not a valid path \(dot_dot_above_root\)/],
    [{ name: 'encslash', prefix: '/a%2Fb' }, /encoded_slash/],
    [{ name: 'backslash', path: '/a\\b' }, /backslash/],
    [{ name: 'space', path: '/a b' }, /bad_char/],
    [{ name: 'starstar', glob: '/a**' }, /"\*\*" must be a whole segment/],
    [{ name: 'starstar2', glob: '/x/**.json' }, /"\*\*" must be a whole segment/],
    [{ name: 'twostars', glob: '/f/img-*-*.png' }, /at most one "\*" per segment/],
    [{ name: 'twoany', glob: '/a/**/b/**' }, /at most one "\*\*" per glob/],
    [{ name: 'twoanyadj', glob: '/a/**/**' }, /at most one "\*\*" per glob/],
    [{ name: 'nomethods', prefix: '/', methods: [] }, /at least one method/],
    [{ name: 'lower', prefix: '/', methods: ['get'] }, /method "get" must be an upper-case token/],
    [{ name: 'spacey', prefix: '/', methods: ['GET '] }, /upper-case token/],
  ];
  it.each(invalid)('refuses %j', (r, message) => {
    expect(validateRouteSpec(r)).toMatch(message);
  });

  it('the RouteTable constructor throws on an invalid route', () => {
    expect(() => new RouteTable([{ name: 'x', path: 'nope' }])).toThrow(/must start with/);
  });
});

type Case = [pattern: RouteSpec, path: string, matches: boolean];

const matching: Case[] = [
  // path: exact, case-sensitive
  [{ name: 'p', path: '/healthz' }, '/healthz', true],
  [{ name: 'p', path: '/healthz' }, '/healthz/', false],
  [{ name: 'p', path: '/healthz' }, '/Healthz', false],
  [{ name: 'p', path: '/healthz' }, '/healthzz', false],
  [{ name: 'p', path: '/' }, '/', true],
  [{ name: 'p', path: '/' }, '/a', false],
  [{ name: 'p', path: '/a/b/' }, '/a/b/', true],
  [{ name: 'p', path: '/a/b/' }, '/a/b', false],
  // prefix: whole segments
  [{ name: 'p', prefix: '/orders' }, '/orders', true],
  [{ name: 'p', prefix: '/orders' }, '/orders/', true],
  [{ name: 'p', prefix: '/orders' }, '/orders/1', true],
  [{ name: 'p', prefix: '/orders' }, '/orders/1/items/', true],
  [{ name: 'p', prefix: '/orders' }, '/ordersx', false],
  [{ name: 'p', prefix: '/orders' }, '/order', false],
  [{ name: 'p', prefix: '/orders' }, '/Orders', false],
  [{ name: 'p', prefix: '/orders' }, '/', false],
  [{ name: 'p', prefix: '/orders/' }, '/orders/', true],
  [{ name: 'p', prefix: '/orders/' }, '/orders/1', true],
  [{ name: 'p', prefix: '/orders/' }, '/orders', false],
  [{ name: 'p', prefix: '/orders/' }, '/ordersx/', false],
  [{ name: 'p', prefix: '/a/b' }, '/a/b/c', true],
  [{ name: 'p', prefix: '/a/b' }, '/a/bc', false],
  [{ name: 'p', prefix: '/a/b' }, '/a', false],
  [{ name: 'p', prefix: '/' }, '/', true],
  [{ name: 'p', prefix: '/' }, '/anything/at/all', true],
  // glob: `*` is one non-empty segment
  [{ name: 'g', glob: '/orders/*' }, '/orders/1', true],
  [{ name: 'g', glob: '/orders/*' }, '/orders/', false],
  [{ name: 'g', glob: '/orders/*' }, '/orders', false],
  [{ name: 'g', glob: '/orders/*' }, '/orders/1/2', false],
  [{ name: 'g', glob: '/orders/*' }, '/orders/1/', false],
  [{ name: 'g', glob: '/orders/*/items' }, '/orders/42/items', true],
  [{ name: 'g', glob: '/orders/*/items' }, '/orders/42/items/', false],
  [{ name: 'g', glob: '/*' }, '/x', true],
  [{ name: 'g', glob: '/*' }, '/', false],
  [{ name: 'g', glob: '/*/' }, '/x/', true],
  // glob: `**` is any number of segments, including none
  [{ name: 'g', glob: '/orders/**' }, '/orders', true],
  [{ name: 'g', glob: '/orders/**' }, '/orders/', true],
  [{ name: 'g', glob: '/orders/**' }, '/orders/1/2/3', true],
  [{ name: 'g', glob: '/orders/**' }, '/ordersx', false],
  [{ name: 'g', glob: '/**' }, '/', true],
  [{ name: 'g', glob: '/**' }, '/a/b/c/', true],
  [{ name: 'g', glob: '/**/b' }, '/b', true],
  [{ name: 'g', glob: '/**/b' }, '/a/b', true],
  [{ name: 'g', glob: '/**/b' }, '/a/x/y/b', true],
  [{ name: 'g', glob: '/**/b' }, '/a/b/c', false],
  [{ name: 'g', glob: '/**/b' }, '/ab', false],
  [{ name: 'g', glob: '/a/**/b' }, '/a/b', true],
  [{ name: 'g', glob: '/a/**/b' }, '/a/b/b', true],
  [{ name: 'g', glob: '/a/**/b' }, '/a/x/b/y/b', true],
  [{ name: 'g', glob: '/a/**/b' }, '/a/x/b/y', false],
  [{ name: 'g', glob: '/a/**/*/c' }, '/a/x/y/c', true],
  [{ name: 'g', glob: '/a/**/*/c' }, '/a/x/c', true],
  [{ name: 'g', glob: '/a/**/*/c' }, '/a/c', false],
  [{ name: 'g', glob: '/a/*/**' }, '/a/x', true],
  [{ name: 'g', glob: '/a/*/**' }, '/a/x/y/', true],
  [{ name: 'g', glob: '/a/*/**' }, '/a/', false],
  [{ name: 'g', glob: '/**/' }, '/', true],
  [{ name: 'g', glob: '/**/' }, '/a/', true],
  [{ name: 'g', glob: '/**/' }, '/a', false],
  [{ name: 'g', glob: '/**/*.json' }, '/v1/a/b.json', true],
  // glob: `*` inside a segment is a non-empty run within that segment
  [{ name: 'g', glob: '/v1/*.json' }, '/v1/a.json', true],
  [{ name: 'g', glob: '/v1/*.json' }, '/v1/a.b.json', true],
  [{ name: 'g', glob: '/v1/*.json' }, '/v1/.json', false],
  [{ name: 'g', glob: '/v1/*.json' }, '/v1/a/b.json', false],
  [{ name: 'g', glob: '/v1/*.json' }, '/v1/a.jsonx', false],
  [{ name: 'g', glob: '/f/img-*.png' }, '/f/img-1-2.png', true],
  [{ name: 'g', glob: '/f/img-*.png' }, '/f/img-.png', false],
  [{ name: 'g', glob: '/f/img-*.png' }, '/f/img-1.png/x', false],
  [{ name: 'g', glob: '/f/a*a' }, '/f/aa', false],
  [{ name: 'g', glob: '/f/a*a' }, '/f/aba', true],
  [{ name: 'g', glob: '/f/x*' }, '/f/x', false],
  [{ name: 'g', glob: '/f/x*' }, '/f/xy', true],
  // glob: no other special characters, case-sensitive
  [{ name: 'g', glob: "/a.b/[x]/(y)+/$^|{1}/*.c" }, "/a.b/[x]/(y)+/$^|{1}/z.c", true],
  [{ name: 'g', glob: '/a.b/[x]' }, '/aXb/x', false],
  [{ name: 'g', glob: '/a.b/*.c' }, '/a.b/zXc', false],
  [{ name: 'g', glob: '/A/*' }, '/a/x', false],
  [{ name: 'g', glob: '/' }, '/', true],
  [{ name: 'g', glob: '/' }, '/a', false],
];

describe('RouteTable semantics', () => {
  it.each(matching)('%j on %s -> %s', (spec, path, expected) => {
    const table = new RouteTable([spec]);
    expect(table.match('GET', path) === spec).toBe(expected);
  });

  it('checks methods exactly; absent means any', () => {
    const read = { name: 'read', prefix: '/orders', methods: ['GET', 'HEAD'] };
    const write = { name: 'write', prefix: '/orders', methods: ['POST', 'PUT', 'PATCH', 'DELETE'] };
    const any = { name: 'any', prefix: '/misc' };
    const table = new RouteTable([read, write, any]);
    expect(table.match('GET', '/orders/1')).toBe(read);
    expect(table.match('HEAD', '/orders')).toBe(read);
    expect(table.match('POST', '/orders')).toBe(write);
    expect(table.match('get', '/orders')).toBeUndefined();
    expect(table.match('OPTIONS', '/orders')).toBeUndefined();
    expect(table.match('BREW', '/misc/pot')).toBe(any);
    expect(table.match('GET', '/nowhere')).toBeUndefined();
  });

  it('matches the SPEC example routes', () => {
    const routes = [
      { name: 'health', path: '/healthz', methods: ['GET'], public: true },
      { name: 'read', prefix: '/orders', methods: ['GET', 'HEAD'] },
      { name: 'write', prefix: '/orders', methods: ['POST', 'PUT', 'PATCH', 'DELETE'] },
    ];
    const table = new RouteTable(routes);
    expect(table.match('GET', '/healthz')?.name).toBe('health');
    expect(table.match('POST', '/healthz')).toBeUndefined();
    expect(table.match('GET', '/orders/7')?.name).toBe('read');
    expect(table.match('DELETE', '/orders/7')?.name).toBe('write');
    expect(table.match('GET', '/ordersx')).toBeUndefined();
    expect(table.match('GET', '/')).toBeUndefined();
  });

  it('an empty table matches nothing', () => {
    expect(new RouteTable<RouteSpec>([]).match('GET', '/')).toBeUndefined();
  });
});

describe('RouteTable first-match order with the index', () => {
  it('an earlier catch-all beats a later exact path, and vice versa', () => {
    const all = { name: 'all', prefix: '/' };
    const exact = { name: 'exact', path: '/admin' };
    expect(new RouteTable([all, exact]).match('GET', '/admin')).toBe(all);
    expect(new RouteTable([exact, all]).match('GET', '/admin')).toBe(exact);
    expect(new RouteTable([exact, all]).match('GET', '/other')).toBe(all);
  });

  it('interleaves bucketed and unbucketed routes in config order', () => {
    const routes = [
      { name: 'r0', path: '/a/x', methods: ['POST'] },
      { name: 'r1', glob: '/*/x' },
      { name: 'r2', path: '/a/x' },
      { name: 'r3', prefix: '/a' },
      { name: 'r4', glob: '/**' },
      { name: 'r5', prefix: '/b', methods: ['GET'] },
    ];
    const table = new RouteTable(routes);
    expect(table.match('POST', '/a/x')?.name).toBe('r0');
    expect(table.match('GET', '/a/x')?.name).toBe('r1');
    expect(table.match('GET', '/a/y')?.name).toBe('r3');
    expect(table.match('GET', '/b')?.name).toBe('r4');
    expect(table.match('GET', '/c/x')?.name).toBe('r1');
    expect(table.match('GET', '/')?.name).toBe('r4');
  });

  it('agrees with a naive linear scan on random tables and paths', () => {
    let seed = 42;
    const rand = (n: number): number => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    const pick = <V>(xs: readonly V[]): V => {
      const v = xs[rand(xs.length)];
      if (v === undefined) throw new Error('empty');
      return v;
    };
    const segs = ['a', 'b', 'ab', 'x.json', 'x'];
    const globSegs = ['a', 'b', '*', '**', '*.json', 'a*'];
    const methods = ['GET', 'POST', 'DELETE'];
    const randomPath = (segments: readonly string[], max: number): string => {
      const n = rand(max + 1);
      let p = '';
      for (let i = 0; i < n; i++) p += `/${pick(segments)}`;
      return p === '' || rand(4) === 0 ? `${p}/` : p;
    };
    const randomRoute = (i: number): RouteSpec => {
      const methodsGiven = rand(2) === 0 ? { methods: [pick(methods)] } : {};
      switch (rand(4)) {
        case 0:
          return { name: `r${i}`, path: randomPath(segs, 3), ...methodsGiven };
        case 1:
          return { name: `r${i}`, prefix: randomPath(segs, 2), ...methodsGiven };
        default:
          // At most one `**` per glob: later ones become `*`.
          return { name: `r${i}`, glob: randomPath(globSegs, 4).replace(/(?<=\/\*\*\/.*)\*\*/g, '*'), ...methodsGiven };
      }
    };
    const reference = (routes: readonly RouteSpec[], method: string, path: string): RouteSpec | undefined =>
      routes.find((r) => {
        if (r.methods !== undefined && !r.methods.includes(method)) return false;
        if (r.path !== undefined) return path === r.path;
        if (r.prefix !== undefined) return r.prefix.endsWith('/') ? path.startsWith(r.prefix) : path === r.prefix || path.startsWith(`${r.prefix}/`);
        const source = (r.glob ?? '')
          .slice(1)
          .split('/')
          .map((s) => (s === '**' ? '(?:/[^/]*)*' : `/${s.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replaceAll('*', '[^/]+')}`))
          .join('');
        return new RegExp(`^${source}$`).test(path);
      });

    let hits = 0;
    for (let t = 0; t < 300; t++) {
      const routes = Array.from({ length: 1 + rand(8) }, (_, i) => randomRoute(i));
      for (const r of routes) expect(validateRouteSpec(r)).toBeNull();
      const table = new RouteTable(routes);
      for (let q = 0; q < 50; q++) {
        const method = pick(methods);
        const path = randomPath(segs, 5);
        const expected = reference(routes, method, path);
        if (expected !== undefined) hits++;
        expect(table.match(method, path), `${method} ${path} in ${JSON.stringify(routes)}`).toBe(expected);
      }
    }
    // The generator must exercise matches, not only misses.
    expect(hits).toBeGreaterThan(1000);
  });

  it('stays linear on hostile paths, whatever glob is allowed', () => {
    const table = new RouteTable([
      { name: 'g1', glob: '/**/a/*/*/b' },
      { name: 'g2', glob: '/x/**/*.json' },
      { name: 'g3', glob: '/*a/**/*b' },
      { name: 'g4', glob: '/**/a*z' },
    ]);
    const hostile = ['/a'.repeat(8000), `/x${'/a.jso'.repeat(2000)}`, `/${'a'.repeat(16000)}`, `/${'b/'.repeat(8000)}c`];
    const started = performance.now();
    for (const path of hostile) expect(table.match('GET', path)).toBeUndefined();
    expect(performance.now() - started).toBeLessThan(500);
  });
});
