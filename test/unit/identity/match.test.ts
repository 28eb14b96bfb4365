import { describe, expect, it } from 'vitest';
import { IdentityMatcher, validateIdentityMatch } from '../../../src/identity/match.js';
import type { IdentityMatch, PeerFields } from '../../../src/identity/match.js';

const HEX = 'ab'.repeat(32);
const SHA = Array.from({ length: 32 }, () => 'AB').join(':');
const OTHER_SHA = Array.from({ length: 32 }, () => 'CD').join(':');

function peer(fields: Partial<PeerFields>): PeerFields {
  return { uris: [], dns: [], cn: [], o: [], ou: [], sha256: OTHER_SHA, ...fields };
}

describe('validateIdentityMatch', () => {
  const valid: IdentityMatch[] = [
    { uri: 'spiffe://cluster.local/ns/shop/sa/orders' },
    { uri: 'spiffe://cluster.local/ns/*/sa/*' },
    { uri: 'spiffe://cluster.local/**' },
    { uri: 'spiffe://td/ns/prod-*/sa/**' },
    { dns: '*.svc.cluster.local' },
    { dns: 'api-*.example.com' },
    { dns: '*.*.example.com' },
    { uri: '**' },
    { uri: '**/sa/*' },
    { cn: '*' },
    { cn: 'svc-*', o: 'Acme', ou: 'Payments' },
    { sha256: `sha256:${SHA}` },
    { sha256: HEX },
    { uri: 'spiffe://td/a', sha256: SHA.toLowerCase() },
  ];
  it.each(valid)('accepts %j', (m) => {
    expect(validateIdentityMatch(m)).toBeNull();
  });

  const invalid: [IdentityMatch, RegExp][] = [
    [{}, /at least one of uri, dns, cn, o, ou, sha256/],
    [{ uri: '' }, /match\.uri must be a non-empty string/],
    [{ sha256: 'AB:CD' }, /match\.sha256 .*not a SHA-256 thumbprint/],
    [{ sha256: `spki:${HEX}` }, /not a SHA-256 thumbprint/],
    [{ sha256: 'ab'.repeat(31) }, /not a SHA-256 thumbprint/],
    [{ sha256: `${HEX}ab` }, /not a SHA-256 thumbprint/],
    [{ sha256: `${'ab'.repeat(31)}zz` }, /not a SHA-256 thumbprint/],
    [{ sha256: `${SHA}:AB` }, /not a SHA-256 thumbprint/],
    [{ sha256: SHA.replaceAll(':', '-') }, /not a SHA-256 thumbprint/],
    [{ sha256: `sha1:${HEX}` }, /not a SHA-256 thumbprint/],
    [{ sha256: '*' }, /not a SHA-256 thumbprint/],
    [{ uri: 'spiffe://td/a**' }, /"\*\*" must be a whole/],
    [{ uri: 'spiffe://td/***' }, /"\*\*" must be a whole/],
    [{ dns: '**.example.com' }, /"\*\*" is only meaningful in uri/],
    [{ cn: '**' }, /only meaningful in uri/],
    [{ ou: 'a**b' }, /only meaningful in uri/],
    [{ cn: '*-*' }, /at most one "\*" per pattern/],
    [{ dns: '*-*.example.com' }, /at most one "\*" per label/],
    [{ uri: 'spiffe://td/ns/*-*/sa/x' }, /at most one "\*" per segment/],
    [{ uri: 'spiffe://td/**/sa/**' }, /at most one "\*\*"/],
  ];
  it.each(invalid)('refuses %j', (m, message) => {
    expect(validateIdentityMatch(m)).toMatch(message);
  });

  it('the IdentityMatcher constructor throws on an invalid rule', () => {
    expect(() => new IdentityMatcher([{ match: {} }])).toThrow(/at least one/);
  });
});

type Case = [match: IdentityMatch, peer: Partial<PeerFields>, matches: boolean];

const cases: Case[] = [
  // uri exact
  [{ uri: 'spiffe://td/ns/shop/sa/orders' }, { uris: ['spiffe://td/ns/shop/sa/orders'] }, true],
  [{ uri: 'spiffe://td/ns/shop/sa/orders' }, { uris: ['spiffe://td/ns/shop/sa/orders2'] }, false],
  [{ uri: 'spiffe://td/ns/shop/sa/orders' }, { uris: ['spiffe://TD/ns/shop/sa/orders'] }, false],
  [{ uri: 'spiffe://td/ns/shop/sa/orders' }, { uris: [] }, false],
  [{ uri: 'spiffe://td/ns/shop/sa/orders' }, { uris: ['https://x', 'spiffe://td/ns/shop/sa/orders'] }, true],
  // uri `*`: non-empty, never crosses '/'
  [{ uri: 'spiffe://td/ns/*/sa/orders' }, { uris: ['spiffe://td/ns/shop/sa/orders'] }, true],
  [{ uri: 'spiffe://td/ns/*/sa/orders' }, { uris: ['spiffe://td/ns/a/b/sa/orders'] }, false],
  [{ uri: 'spiffe://td/ns/*/sa/orders' }, { uris: ['spiffe://td/ns//sa/orders'] }, false],
  [{ uri: 'spiffe://td/ns/shop/sa/*' }, { uris: ['spiffe://td/ns/shop/sa/'] }, false],
  [{ uri: 'spiffe://td/ns/shop/sa/*' }, { uris: ['spiffe://td/ns/shop/sa/x/y'] }, false],
  [{ uri: 'spiffe://td/ns/prod-*/sa/*' }, { uris: ['spiffe://td/ns/prod-eu/sa/api'] }, true],
  [{ uri: 'spiffe://td/ns/prod-*/sa/*' }, { uris: ['spiffe://td/ns/prod-/sa/api'] }, false],
  [{ uri: 'spiffe://td/ns/prod-*/sa/*' }, { uris: ['spiffe://td/ns/staging/sa/api'] }, false],
  [{ uri: 'spiffe://td/ns/shop/sa/orders*' }, { uris: ['spiffe://td/ns/shop/sa/orders-v2'] }, true],
  [{ uri: 'spiffe://td/ns/shop/sa/orders*' }, { uris: ['spiffe://td/ns/shop/sa/orders'] }, false],
  [{ uri: 'spiffe://*/ns/shop/sa/orders' }, { uris: ['spiffe://evil.example/ns/shop/sa/orders'] }, true],
  [{ uri: 'spiffe://*/ns/shop/sa/orders' }, { uris: ['spiffe://a/b/ns/shop/sa/orders'] }, false],
  // uri `**`: whole segments, any number including none
  [{ uri: 'spiffe://td/**' }, { uris: ['spiffe://td/ns/a/sa/b'] }, true],
  [{ uri: 'spiffe://td/**' }, { uris: ['spiffe://td'] }, true],
  [{ uri: 'spiffe://td/**' }, { uris: ['spiffe://td2/ns/a'] }, false],
  [{ uri: 'spiffe://td/**' }, { uris: ['spiffe://tdx/ns/a'] }, false],
  [{ uri: 'spiffe://td/**/sa/api' }, { uris: ['spiffe://td/ns/x/sa/api'] }, true],
  [{ uri: 'spiffe://td/**/sa/api' }, { uris: ['spiffe://td/sa/api'] }, true],
  [{ uri: 'spiffe://td/**/sa/api' }, { uris: ['spiffe://td/ns/x/sa/api/extra'] }, false],
  [{ uri: '**' }, { uris: ['anything/at:all'] }, true],
  [{ uri: '**/sa/*' }, { uris: ['spiffe://td/ns/a/sa/b'] }, true],
  [{ uri: '**/sa/*' }, { uris: ['sa/b'] }, true],
  [{ uri: '**/sa/*' }, { uris: ['spiffe://td/ns/a/xsa/b'] }, false],
  [{ uri: 'spiffe://td/ns/*' }, { uris: ['spiffe://td/ns/a\nb'] }, true],
  // regex metacharacters are literal
  [{ uri: 'spiffe://td/ns/a.b/sa/(x)+' }, { uris: ['spiffe://td/ns/a.b/sa/(x)+'] }, true],
  [{ uri: 'spiffe://td/ns/a.b/sa/*' }, { uris: ['spiffe://td/ns/aXb/sa/x'] }, false],
  [{ cn: 'a.c' }, { cn: ['abc'] }, false],
  [{ cn: '[a-z]*' }, { cn: ['b'] }, false],
  [{ cn: '[a-z]*' }, { cn: ['[a-z]x'] }, true],
  [{ cn: '^x$|.*' }, { cn: ['anything'] }, false],
  // dns: `*` stops at '.', non-empty; case-insensitive (ASCII only)
  [{ dns: '*.svc.example' }, { dns: ['api.svc.example'] }, true],
  [{ dns: '*.svc.example' }, { dns: ['a.b.svc.example'] }, false],
  [{ dns: '*.svc.example' }, { dns: ['.svc.example'] }, false],
  [{ dns: '*.svc.example' }, { dns: ['svc.example'] }, false],
  [{ dns: '*.svc.example' }, { dns: ['API.SVC.Example'] }, true],
  [{ dns: '*.SVC.example' }, { dns: ['api.svc.example'] }, true],
  [{ dns: 'api-*.example.com' }, { dns: ['api-eu1.example.com'] }, true],
  [{ dns: 'api-*.example.com' }, { dns: ['api-.example.com'] }, false],
  [{ dns: 'api-*.example.com' }, { dns: ['api-eu.1.example.com'] }, false],
  [{ dns: 'Orders.Example.com' }, { dns: ['orders.example.COM'] }, true],
  [{ dns: 'orders.example.com' }, { dns: ['orders.example.co'] }, false],
  [{ dns: 'key.example.com' }, { dns: ['\u212Aey.example.com'] }, false],
  [{ dns: 'key.example.com' }, { dns: ['\u212AEY.example.com'] }, false],
  [{ dns: '*.example.com' }, { dns: ['x', 'y.example.com'] }, true],
  [{ dns: 'k*.example.com' }, { dns: ['\u212Aey.example.com'] }, false],
  [{ dns: 'K*.example.com' }, { dns: ['key.example.com'] }, true],
  [{ dns: 's*.example.com' }, { dns: ['\u017Fx.example.com'] }, false],
  [{ dns: '*.*.example.com' }, { dns: ['a.b.example.com'] }, true],
  [{ dns: '*.*.example.com' }, { dns: ['b.example.com'] }, false],
  // cn, o, ou: `*` matches anything non-empty; case-sensitive
  [{ cn: 'orders' }, { cn: ['orders'] }, true],
  [{ cn: 'orders' }, { cn: ['Orders'] }, false],
  [{ cn: '*' }, { cn: ['a/b.c d'] }, true],
  [{ cn: '*' }, { cn: [''] }, false],
  [{ cn: '*' }, { cn: [] }, false],
  [{ cn: 'svc-*' }, { cn: ['svc-a/b.c'] }, true],
  [{ cn: 'svc-*' }, { cn: ['svc-'] }, false],
  [{ cn: 'x*z' }, { cn: ['xyz'] }, true],
  [{ cn: 'x*z' }, { cn: ['xz'] }, false],
  [{ cn: 'x*z' }, { cn: ['x\nz'] }, true],
  [{ cn: 'x*z' }, { cn: ['xzz\n'] }, false],
  [{ o: 'Acme*' }, { o: ['Other', 'Acme Corp'] }, true],
  [{ ou: 'Payments' }, { ou: ['Risk', 'Payments'] }, true],
  [{ ou: 'Payments' }, { ou: ['payments'] }, false],
  // sha256, every accepted spelling
  [{ sha256: `sha256:${SHA}` }, { sha256: SHA }, true],
  [{ sha256: HEX }, { sha256: SHA }, true],
  [{ sha256: SHA.toLowerCase() }, { sha256: SHA }, true],
  [{ sha256: `SHA256:${HEX.toUpperCase()}` }, { sha256: SHA }, true],
  [{ sha256: `sha256:${SHA.toLowerCase()}` }, { sha256: SHA }, true],
  [{ sha256: `sha256:${SHA}` }, { sha256: OTHER_SHA }, false],
  // several fields: every one must match
  [{ uri: 'spiffe://td/**', cn: 'orders' }, { uris: ['spiffe://td/x'], cn: ['orders'] }, true],
  [{ uri: 'spiffe://td/**', cn: 'orders' }, { uris: ['spiffe://td/x'], cn: ['billing'] }, false],
  [{ uri: 'spiffe://td/**', cn: 'orders' }, { uris: ['spiffe://other/x'], cn: ['orders'] }, false],
  [{ cn: 'orders', sha256: SHA }, { cn: ['orders'], sha256: OTHER_SHA }, false],
  [{ cn: 'orders', sha256: SHA }, { cn: ['orders'], sha256: SHA }, true],
];

describe('IdentityMatcher semantics', () => {
  it.each(cases)('%j vs %j -> %s', (m, fields, expected) => {
    const rule = { match: m };
    expect(new IdentityMatcher([rule]).match(peer(fields)) === rule).toBe(expected);
  });
});

describe('IdentityMatcher order', () => {
  const rules = [
    { name: 'pinned', match: { sha256: `sha256:${SHA}` } },
    { name: 'orders', match: { uri: 'spiffe://td/ns/shop/sa/orders' } },
    { name: 'shop', match: { uri: 'spiffe://td/ns/shop/**' } },
    { name: 'orders-late', match: { uri: 'spiffe://td/ns/shop/sa/orders' } },
    { name: 'cn', match: { cn: '*', o: 'Acme' } },
  ];
  const matcher = new IdentityMatcher(rules);

  it('returns the first rule in config order that matches', () => {
    expect(matcher.match(peer({ uris: ['spiffe://td/ns/shop/sa/orders'], sha256: SHA }))?.name).toBe('pinned');
    expect(matcher.match(peer({ uris: ['spiffe://td/ns/shop/sa/orders'] }))?.name).toBe('orders');
    expect(matcher.match(peer({ uris: ['spiffe://td/ns/shop/sa/billing'] }))?.name).toBe('shop');
    expect(matcher.match(peer({ cn: ['x'], o: ['Acme'] }))?.name).toBe('cn');
    expect(matcher.match(peer({ cn: ['x'], o: ['Other'] }))).toBeUndefined();
    expect(matcher.match(peer({}))).toBeUndefined();
  });

  it('uses the exact-uri index without changing first-match order', () => {
    const ordered = [
      { name: 'glob-first', match: { uri: 'spiffe://td/ns/a/**', cn: 'special' } },
      { name: 'exact-a', match: { uri: 'spiffe://td/ns/a/sa/x' } },
      { name: 'no-uri', match: { cn: 'x' } },
      { name: 'exact-b', match: { uri: 'spiffe://td/ns/b/sa/x' } },
      { name: 'glob-b', match: { uri: 'spiffe://td/ns/b/**' } },
      { name: 'exact-a-again', match: { uri: 'spiffe://td/ns/a/sa/x', cn: 'y' } },
    ];
    const m = new IdentityMatcher(ordered);
    const a = 'spiffe://td/ns/a/sa/x';
    const b = 'spiffe://td/ns/b/sa/x';
    expect(m.match(peer({ uris: [a], cn: ['special'] }))?.name).toBe('glob-first');
    expect(m.match(peer({ uris: [a], cn: ['x'] }))?.name).toBe('exact-a');
    expect(m.match(peer({ uris: [b], cn: ['x'] }))?.name).toBe('no-uri');
    expect(m.match(peer({ uris: [b] }))?.name).toBe('exact-b');
    expect(m.match(peer({ uris: ['spiffe://td/ns/b/sa/y'] }))?.name).toBe('glob-b');
    expect(m.match(peer({ uris: ['spiffe://td/ns/c'], cn: ['x'] }))?.name).toBe('no-uri');
    expect(m.match(peer({ uris: [], cn: ['x'] }))?.name).toBe('no-uri');
    expect(m.match(peer({ uris: ['https://other', b] }))?.name).toBe('exact-b');
    expect(m.match(peer({ uris: [b, a], cn: ['x'] }))?.name).toBe('exact-a');
  });

  it('agrees with a rule-by-rule scan on random rule lists and peers', () => {
    let seed = 7;
    const rand = (n: number): number => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    const pick = <V>(xs: readonly V[]): V => {
      const v = xs[rand(xs.length)];
      if (v === undefined) throw new Error('empty');
      return v;
    };
    const uris = ['spiffe://td/ns/a/sa/x', 'spiffe://td/ns/a/sa/y', 'spiffe://td/ns/b/sa/x'];
    const uriPatterns = [...uris, 'spiffe://td/ns/a/**', 'spiffe://td/ns/*/sa/x', 'spiffe://td/**'];
    const cns = ['x', 'y'];
    let hits = 0;
    for (let t = 0; t < 300; t++) {
      const rules = Array.from({ length: 1 + rand(8) }, (_, i) => {
        const match: { uri?: string; cn?: string } = {};
        const shape = rand(3);
        if (shape !== 1) match.uri = pick(uriPatterns);
        if (shape !== 0) match.cn = pick(cns);
        return { name: `r${i}`, match };
      });
      const m = new IdentityMatcher(rules);
      for (let q = 0; q < 30; q++) {
        const p = peer({ uris: Array.from({ length: rand(3) }, () => pick(uris)), cn: rand(2) === 0 ? [pick(cns)] : [] });
        const expected = rules.find((r) => new IdentityMatcher([r]).match(p) === r);
        if (expected !== undefined) hits++;
        expect(m.match(p), JSON.stringify({ p, rules })).toBe(expected);
      }
    }
    expect(hits).toBeGreaterThan(1000);
  });

  it('an empty rule list matches nothing', () => {
    expect(new IdentityMatcher<{ match: IdentityMatch }>([]).match(peer({ cn: ['x'] }))).toBeUndefined();
  });

  it('stays linear on adversarial values, whatever pattern is allowed', () => {
    const slow = new IdentityMatcher([
      { match: { cn: 'a*b' } },
      { match: { uri: 'spiffe://td/**/a/*/*/b' } },
      { match: { uri: '**/*a/*b' } },
      { match: { dns: '*a.*a.*b.example' } },
      { match: { o: '*', ou: '*x' } },
    ]);
    const started = performance.now();
    expect(
      slow.match(
        peer({
          cn: ['a'.repeat(20000)],
          uris: [`spiffe://td${'/a'.repeat(10000)}`, `${'a/'.repeat(10000)}a`],
          dns: [`${'a.'.repeat(10000)}example`],
          o: ['o'],
          ou: ['y'.repeat(20000)],
        }),
      ),
    ).toBeUndefined();
    expect(performance.now() - started).toBeLessThan(500);
  });
});
