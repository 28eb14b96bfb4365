/**
 * One misspelt key, one error (config/cascade.ts): each realistic typo below used to give two or
 * three errors (unknown key, the key it meant now missing, a rule that needed that key); now
 * exactly one, at the misspelt key, saying what it probably meant. Errors that do not follow
 * from another are all still reported.
 */
import { describe, expect, it } from 'vitest';
import { closestKey, keysAt } from '../../../src/config/cascade.js';
import { parseConfigText } from '../../../src/config/load.js';
import { configSchema } from '../../../src/config/schema.js';

const GOOD = `version: 1
tls:
  cert: server.crt
  key: server.key
  clientCAs: [ca.crt]
  crls: [crl.pem]
identities:
  - name: orders
    match: { uri: "spiffe://cluster.local/ns/shop/sa/orders" }
    scopes: [orders:read]
routes:
  - { name: read, prefix: /orders, methods: [GET], scopes: [orders:read] }
  - { name: admin, prefix: /admin, tokenScopes: [admin] }
rateLimit:
  identities: { orders: { rps: 5, burst: 10 } }
  backend: redis
  redis: { url: "redis://127.0.0.1:6379" }
jwt:
  issuer: https://issuer.example
  audience: api://orders
  jwks: { file: jwks.json }
upstream: { url: "http://127.0.0.1:8080" }
outbound:
  cert: orders.crt
  key: orders.key
  proxy: { port: 15000 }
  destinations:
    - name: billing
      listen: { port: 15001 }
      target: "billing.pay.svc:8443"
      expect: { uri: "spiffe://cluster.local/ns/pay/sa/billing" }
      hosts: [billing]
`;

function issues(text: string): { path: string; message: string }[] {
  const r = parseConfigText(text);
  return r.ok ? [] : r.issues.map((i) => ({ path: i.path, message: i.message }));
}

/** GOOD with the first `from` replaced by `to` (which must change something). */
function typo(from: string, to: string): string {
  expect(GOOD).toContain(from);
  return GOOD.replace(from, to);
}

describe('one misspelt key, one error', () => {
  it('the base config is valid', () => {
    expect(issues(GOOD)).toEqual([]);
  });

  const cases: [string, string, string, string, string][] = [
    // [what, from, to, path of the one error, the key it meant]
    ['a top-level section (rate limits named identities it had)', 'identities:\n  - name', 'identites:\n  - name', 'identites', 'identities'],
    ['the tls section', 'tls:\n', 'tsl:\n', 'tsl', 'tls'],
    ['version', 'version: 1', 'versoin: 1', 'versoin', 'version'],
    ['clientCAs (also needed by pins and crls)', 'clientCAs: [ca.crt]', 'clientCA: [ca.crt]', 'tls.clientCA', 'clientCAs'],
    ['an identity name', '  - name: orders', '  - nme: orders', 'identities[0].nme', 'name'],
    ['an identity match', '    match: { uri', '    mach: { uri', 'identities[0].mach', 'match'],
    ['a match field', 'match: { uri', 'match: { url', 'identities[0].match.url', 'uri'],
    ['a route prefix', 'name: read, prefix:', 'name: read, prefx:', 'routes[0].prefx', 'prefix'],
    ['a route methods', 'methods: [GET]', 'method: [GET]', 'routes[0].method', 'methods'],
    ['the jwt section (tokenScopes needed it)', 'jwt:\n', 'jwtt:\n', 'jwtt', 'jwt'],
    ['rateLimit.redis (backend redis needed it)', '  redis: {', '  rediss: {', 'rateLimit.rediss', 'redis'],
    ['upstream.url', 'upstream: { url', 'upstream: { ur', 'upstream.ur', 'url'],
    ['outbound.key (cert and key go together)', '  key: orders.key', '  kye: orders.key', 'outbound.kye', 'key'],
    ['outbound.proxy (hosts need it)', '  proxy: {', '  proxi: {', 'outbound.proxi', 'proxy'],
    ['a destination listen (reachable otherwise neither way)', 'hosts: [billing]', 'hots: [billing]', 'outbound.destinations[0].hots', 'hosts'],
    ['snake_case for camelCase', 'tokenScopes:', 'token_scopes:', 'routes[1].token_scopes', 'tokenScopes'],
  ];
  it.each(cases)('%s', (_, from, to, path, meant) => {
    expect(issues(typo(from, to))).toEqual([{ path, message: `unknown key "${path.split('.').at(-1)}" (did you mean "${meant}"?)` }]);
  });

  it('a destination reachable neither way, because listen is misspelt and there are no hosts', () => {
    const text = typo('      hosts: [billing]\n', '').replace('      listen: {', '      lisen: {').replace('  proxy: { port: 15000 }\n', '');
    expect(issues(text)).toEqual([{ path: 'outbound.destinations[0].lisen', message: 'unknown key "lisen" (did you mean "listen"?)' }]);
  });
});

describe('errors that do not follow from another are all kept', () => {
  it('an unknown key far from any allowed key: no guess, and what it cannot stand for is still reported', () => {
    expect(issues(typo('name: read, prefix:', 'name: read, where:'))).toEqual([
      { path: 'routes[0].where', message: 'unknown key "where"' },
      { path: 'routes[0]', message: 'route "read": give exactly one of path, prefix or glob (got none)' },
    ]);
  });

  it('a misspelt key next to the key it resembles, which is written too: no guess', () => {
    expect(issues(typo('methods: [GET]', 'methods: [GET], method: [POST]'))).toEqual([{ path: 'routes[0].method', message: 'unknown key "method"' }]);
  });

  it('a duplicate identity name does not hide a rate limit for an identity that does not exist', () => {
    const text = typo('rateLimit:\n  identities: { orders:', 'rateLimit:\n  identities: { ghost:').replace(
      '    scopes: [orders:read]\n',
      '    scopes: [orders:read]\n  - { name: orders, match: { cn: x } }\n',
    );
    expect(issues(text).map((i) => i.path).sort()).toEqual(['identities[1].name', 'rateLimit.identities.ghost']);
  });

  it('no clientCAs and no pins at all: one error, not also "CRLs need clientCAs"', () => {
    expect(issues(typo('  clientCAs: [ca.crt]\n', ''))).toEqual([
      { path: 'tls.clientCAs', message: 'give tls.clientCAs, tls.pins, or both: every client must be trusted by something' },
    ]);
  });

  it('two typos, two errors', () => {
    const text = typo('name: read, prefix:', 'name: read, prefx:').replace('jwt:\n', 'jwtt:\n');
    expect(issues(text).map((i) => i.path).sort()).toEqual(['jwtt', 'routes[0].prefx']);
  });
});

describe('closestKey and keysAt', () => {
  it('one edit for short keys, two for longer ones; case, _ and - ignored; no guess on a tie', () => {
    expect(closestKey('kye', ['key', 'cert'])).toBe('key');
    expect(closestKey('ky', ['key'])).toBe('key');
    expect(closestKey('k', ['key'])).toBeNull();
    expect(closestKey('clientcas', ['clientCAs'])).toBe('clientCAs');
    expect(closestKey('min_version', ['minVersion'])).toBe('minVersion');
    expect(closestKey('idntits', ['identities'])).toBeNull();
    expect(closestKey('ab', ['ac', 'ad'])).toBeNull();
  });

  it('walks the schema through arrays, optionals, defaults and unions', () => {
    expect(keysAt(configSchema, ['routes', 3])).toEqual(expect.arrayContaining(['name', 'path', 'prefix', 'glob', 'methods', 'tokenScopes']));
    expect(keysAt(configSchema, ['outbound', 'destinations', 0, 'expect'])).toEqual(['uri', 'dns', 'cn', 'o', 'ou', 'sha256']);
    expect(keysAt(configSchema, ['jwt', 'jwks'])).toEqual(['file', 'url', 'cacheFor']);
    expect(keysAt(configSchema, ['rateLimit', 'identities', 'orders'])).toEqual(['rps', 'burst']);
    expect(keysAt(configSchema, ['routes', 0, 'name'])).toBeNull();
  });
});
