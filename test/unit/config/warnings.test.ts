/**
 * `check` warnings (config/warnings.ts): each at its YAML line:col, and none where the config is
 * fine, including the near misses a looser rule would warn about.
 */
import { describe, expect, it } from 'vitest';
import { warningsWithoutFiles } from '../../../src/config/index.js';
import { parseConfigText } from '../../../src/config/load.js';
import { formatWarning } from '../../../src/config/warnings.js';
import type { ConfigWarning } from '../../../src/config/warnings.js';

const HEAD = `version: 1
tls: { cert: s.crt, key: s.key, clientCAs: [ca.crt] }
`;
const TD = 'spiffe://cluster.local/ns/shop/sa';

function warnings(text: string): ConfigWarning[] {
  const r = parseConfigText(text);
  if (!r.ok) throw new Error(`not a valid config: ${JSON.stringify(r.issues)}`);
  return warningsWithoutFiles(r.raw, r.locate);
}

/** Line (1-based) and column of the first `needle` in `text`, for positions asserted below. */
function at(text: string, needle: string, nth = 0): { line: number; col: number } {
  let from = 0;
  for (let i = 0; i <= nth; i++) from = text.indexOf(needle, i === 0 ? 0 : from + 1);
  if (from < 0) throw new Error(`no ${needle}`);
  const before = text.slice(0, from).split('\n');
  return { line: before.length, col: (before.at(-1)?.length ?? 0) + 1 };
}

const IDS = `identities:
  - name: orders
    match: { uri: "${TD}/orders" }
    scopes: [orders:read, orders:write]
  - name: billing
    match: { uri: "${TD}/billing" }
    scopes: [orders:read, invoices:write]
`;

describe('scopes no identity holds', () => {
  it('names the scope, where it is written, and the scope probably meant', () => {
    const text = `${HEAD}${IDS}routes:
  - { name: write, prefix: /orders, methods: [POST], scopes: [orders:wirte] }
`;
    expect(warnings(text)).toEqual([
      {
        code: 'scope_unheld',
        path: 'routes[0].scopes[0]',
        ...at(text, 'orders:wirte'),
        message: 'no identity holds scope "orders:wirte", so route "write" refuses every request (scope_missing) (did you mean "orders:write"?)',
      },
    ]);
  });

  it('tokenScopes are the token issuer\'s to grant: never warned about', () => {
    const text = `${HEAD}${IDS}jwt: { issuer: https://i.example, audience: a, jwks: { file: j.json } }
routes:
  - { name: admin, prefix: /admin, scopes: [orders:write], tokenScopes: [admin:all] }
`;
    expect(warnings(text)).toEqual([]);
  });

  it('a route scope is still the certificate identity\'s when the same scope is a token scope', () => {
    const text = `${HEAD}${IDS}jwt: { issuer: https://i.example, audience: a, jwks: { file: j.json } }
routes:
  - { name: admin, prefix: /admin, scopes: [admin:all], tokenScopes: [admin:all] }
`;
    const [w] = warnings(text);
    expect(w).toMatchObject({ code: 'scope_unheld', path: 'routes[0].scopes[0]', ...at(text, 'admin:all') });
    expect(w?.message).toMatch(/a token's scopes count only for tokenScopes/);
  });

  it('scopes each held by someone, but by no one identity together', () => {
    const text = `${HEAD}${IDS}routes:
  - { name: both, prefix: /x, scopes: [orders:write, invoices:write] }
  - { name: fine, prefix: /y, scopes: [orders:read, invoices:write] }
`;
    expect(warnings(text)).toEqual([
      expect.objectContaining({ code: 'scopes_unheld_together', path: 'routes[0].scopes', ...at(text, '[orders:write, invoices:write]') }),
    ]);
  });

  it('without identities, every non-public route (and only those)', () => {
    const text = `${HEAD}routes:
  - { name: health, path: /healthz, public: true }
  - { name: api, prefix: /api }
`;
    expect(warnings(text)).toEqual([
      {
        code: 'no_identity_defined',
        path: 'routes[1]',
        ...at(text, '{ name: api'),
        message: 'route "api" is not public and no identity is defined, so it refuses every request (no_identity)',
      },
    ]);
  });

  it('audit mode: the requests pass, as wouldDeny', () => {
    const text = `${HEAD}${IDS}policy: { mode: audit }
routes:
  - { name: r, prefix: /r, scopes: [nobody:has] }
`;
    expect(warnings(text)[0]?.message).toBe('no identity holds scope "nobody:has", so every request to route "r" passes only as a wouldDeny (scope_missing, audit mode)');
  });
});

describe('shadowed routes', () => {
  it('an earlier broader route: named, at the later route', () => {
    const text = `${HEAD}${IDS}routes:
  - { name: all, prefix: /orders, scopes: [orders:read] }
  - { name: one, path: /orders/1, methods: [GET], scopes: [orders:read] }
`;
    expect(warnings(text)).toEqual([
      {
        code: 'route_shadowed',
        path: 'routes[1]',
        ...at(text, '{ name: one'),
        message: 'route "one" can never match: route "all" (routes[0]) comes before it and matches every request it would',
      },
    ]);
  });

  it('earlier routes that share out its methods; a shadowed route gets no scope warning', () => {
    const text = `${HEAD}${IDS}routes:
  - { name: read, prefix: /orders, methods: [GET, HEAD], scopes: [orders:read] }
  - { name: write, prefix: /orders, methods: [POST], scopes: [orders:write] }
  - { name: export, path: /orders/export, methods: [GET, POST], scopes: [nobody:has] }
`;
    expect(warnings(text)).toEqual([
      {
        code: 'route_shadowed',
        path: 'routes[2]',
        ...at(text, '{ name: export'),
        message: 'route "export" can never match: earlier routes match every request it would ("read" for GET; "write" for POST)',
      },
    ]);
  });

  it('no warning where the later route still gets requests', () => {
    const text = `${HEAD}${IDS}routes:
  - { name: health, path: /healthz, methods: [GET], public: true }
  - { name: read, prefix: /orders, methods: [GET, HEAD], scopes: [orders:read] }
  - { name: write, prefix: /orders, methods: [POST, PUT, PATCH, DELETE], scopes: [orders:write] }
  - { name: archive, prefix: /orders/archive, methods: [OPTIONS], scopes: [orders:read] }
  - { name: ordersx, prefix: /ordersx, scopes: [orders:read] }
  - { name: one, glob: /items/*, scopes: [orders:read] }
  - { name: deep, glob: /items/**, scopes: [orders:read] }
  - { name: anyhealth, path: /healthz, public: true }
`;
    expect(warnings(text)).toEqual([]);
  });
});

describe('shadowed identities', () => {
  it('the whole trust domain before one of its IDs', () => {
    const text = `${HEAD}identities:
  - name: mesh
    match: { uri: "spiffe://cluster.local/**" }
    scopes: [orders:read]
  - name: orders
    match: { uri: "${TD}/orders" }
    scopes: [orders:read, orders:write]
`;
    expect(warnings(text)).toEqual([
      {
        code: 'identity_shadowed',
        path: 'identities[1].match',
        ...at(text, '{ uri', 1),
        message: 'identity "orders" can never match: identity "mesh" (identities[0]) comes before it and matches every certificate it would',
      },
    ]);
  });

  it('the same field with fewer constraints first; not the other way round', () => {
    const text = `${HEAD}identities:
  - { name: narrow, match: { cn: orders, o: shop }, scopes: [a] }
  - { name: wide, match: { cn: orders }, scopes: [a] }
  - { name: narrower, match: { cn: orders, o: shop, ou: eu }, scopes: [a] }
`;
    expect(warnings(text).map((w) => [w.code, w.path, w.message.match(/"(\w+)" \(/)?.[1]])).toEqual([['identity_shadowed', 'identities[2].match', 'narrow']]);
  });

  it('no warning for specific IDs before the catch-all, nor for another trust domain', () => {
    const text = `${HEAD}identities:
  - { name: orders, match: { uri: "${TD}/orders" }, scopes: [a] }
  - { name: mesh, match: { uri: "spiffe://cluster.local/**" }, scopes: [a] }
  - { name: partner, match: { uri: "spiffe://partner.example/ns/x/sa/y" }, scopes: [a] }
  - { name: pinned, match: { sha256: "${'AB:'.repeat(31)}AB" }, scopes: [a] }
`;
    expect(warnings(text)).toEqual([]);
  });
});

describe('upstream not on loopback', () => {
  it.each(['http://127.0.0.1:8080', 'http://127.3.2.1:80', 'http://[::1]:8080', 'http://localhost:8080', 'http://0.0.0.0:8080'])('%s: none', (url) => {
    expect(warnings(`${HEAD}upstream: { url: "${url}" }\n`)).toEqual([]);
  });

  it.each([
    ['http://10.0.0.5:8080', /^upstream address 10\.0\.0\.5 is not a loopback address: the identity headers .* cross the network in cleartext$/],
    ['http://[2001:db8::1]:8080', /^upstream address 2001:db8::1 is not a loopback address/],
    ['http://app.internal:8080', /^upstream host "app\.internal" is a name, not localhost: if it resolves to another host/],
  ])('%s: warned at upstream.url', (url, message) => {
    const text = `${HEAD}upstream: { url: "${url}" }\n`;
    const [w] = warnings(text);
    expect(w).toMatchObject({ code: 'upstream_not_loopback', path: 'upstream.url', ...at(text, `"${url}"`) });
    expect(w?.message).toMatch(message);
  });
});

describe('the printed line', () => {
  it('FILE:LINE:COL PATH: warning: MESSAGE, in the order of the file', () => {
    const text = `${HEAD}upstream: { url: "http://10.1.1.1:80" }
${IDS}routes:
  - { name: r, prefix: /r, scopes: [nobody:has] }
`;
    const lines = warnings(text).map((w) => formatWarning('/etc/sidecar.yaml', w));
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/^\/etc\/sidecar\.yaml:3:18: upstream\.url: warning: upstream address 10\.1\.1\.1 /);
    expect(lines[1]).toMatch(/^\/etc\/sidecar\.yaml:12:37: routes\[0\]\.scopes\[0\]: warning: no identity holds scope "nobody:has"/);
  });
});
