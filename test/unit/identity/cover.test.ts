/**
 * Identity shadowing (identity/cover.ts): a rule "covers" a later one only when every
 * certificate the later one matches, it matches too. Tables, then soundness against the real
 * IdentityMatcher over an exhaustive set of small certificates.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { matchCovers, shadowedBy } from '../../../src/identity/cover.js';
import { IdentityMatcher, validateIdentityMatch } from '../../../src/identity/match.js';
import type { IdentityMatch, PeerFields } from '../../../src/identity/match.js';

const SHA = 'AB:'.repeat(31) + 'AB';
const TD = 'spiffe://cluster.local';

describe('matchCovers', () => {
  const covered: [string, IdentityMatch, IdentityMatch][] = [
    ['the same uri', { uri: `${TD}/ns/a/sa/x` }, { uri: `${TD}/ns/a/sa/x` }],
    ['the trust domain over one of its IDs', { uri: `${TD}/**` }, { uri: `${TD}/ns/shop/sa/orders` }],
    ['the trust domain over a namespace glob', { uri: `${TD}/**` }, { uri: `${TD}/ns/shop/**` }],
    ['a namespace glob over a service glob in it', { uri: `${TD}/ns/*/sa/*` }, { uri: `${TD}/ns/shop/sa/o*` }],
    ['a field with fewer constraints (uri alone over uri and cn)', { uri: `${TD}/ns/a/sa/x` }, { uri: `${TD}/ns/a/sa/x`, cn: 'x' }],
    ['dns, whatever the case', { dns: 'Orders.Shop.svc' }, { dns: 'orders.shop.SVC' }],
    ['a dns glob over a name', { dns: '*.shop.svc' }, { dns: 'orders.shop.svc' }],
    ['a dns glob over a narrower glob, across case', { dns: '*.SHOP.svc' }, { dns: 'o*.shop.svc' }],
    ['cn present over any cn', { cn: '*' }, { cn: 'orders' }],
    ['cn glob over a narrower glob', { cn: 'svc-*' }, { cn: 'svc-a*' }],
    ['sha256 written two ways', { sha256: `sha256:${SHA}` }, { sha256: SHA.replaceAll(':', '').toLowerCase() }],
  ];
  it.each(covered)('%s', (_, a, b) => {
    expect(matchCovers(a, b)).toBe(true);
  });

  const notCovered: [string, IdentityMatch, IdentityMatch][] = [
    ['another trust domain', { uri: `${TD}/**` }, { uri: 'spiffe://other.local/ns/a/sa/x' }],
    ['trust domain prefix is not a segment', { uri: `${TD}/**` }, { uri: `${TD}x/ns/a` }],
    ['a field the later rule does not constrain', { uri: `${TD}/ns/a/sa/x`, cn: 'x' }, { uri: `${TD}/ns/a/sa/x` }],
    ['an exact uri does not cover a glob', { uri: `${TD}/ns/a/sa/x` }, { uri: `${TD}/ns/a/sa/*` }],
    ['a one-segment * does not cover **', { uri: `${TD}/ns/*` }, { uri: `${TD}/ns/**` }],
    ['dns * is one label', { dns: '*.svc' }, { dns: 'a.b.svc' }],
    ['different fields', { cn: 'orders' }, { dns: 'orders' }],
    ['cn is case-sensitive', { cn: 'Orders' }, { cn: 'orders' }],
    ['another thumbprint', { sha256: SHA }, { sha256: 'CD:'.repeat(31) + 'CD' }],
  ];
  it.each(notCovered)('%s', (_, a, b) => {
    expect(matchCovers(a, b)).toBe(false);
  });
});

describe('matchCovers is sound (the real IdentityMatcher agrees)', () => {
  const URI_SEGMENTS = ['a', 'b', 'ab', ''];
  const LABELS = ['a', 'B', 'ab'];
  const URIS: string[] = [];
  let level = [''];
  for (let depth = 1; depth <= 3; depth++) {
    level = level.flatMap((p) => URI_SEGMENTS.map((s) => (depth === 1 ? s : `${p}/${s}`)));
    URIS.push(...level);
  }
  const NAMES = [...LABELS, ...LABELS.flatMap((x) => LABELS.map((y) => `${x}.${y}`))];
  const CNS = ['a', 'b', 'ab', 'ba', 'aab'];
  const peers: PeerFields[] = [];
  for (const uri of URIS) for (const dns of NAMES) for (const cn of CNS) peers.push({ uris: [uri], dns: [dns], cn: [cn], o: [], ou: [], sha256: SHA });

  const uri = fc.array(fc.constantFrom('a', 'b', 'ab', '*', 'a*', '*b', '**', ''), { minLength: 1, maxLength: 3 }).map((s) => s.join('/'));
  const dns = fc.array(fc.constantFrom('a', 'A', 'b', '*', 'a*', '*B'), { minLength: 1, maxLength: 2 }).map((s) => s.join('.'));
  const cn = fc.constantFrom('a', 'b', 'ab', '*', 'a*', '*b', 'a*b');
  const match = fc
    .record({ uri, dns, cn }, { requiredKeys: [] })
    .filter((m) => validateIdentityMatch(m) === null);

  it('no certificate the later rule matches escapes the earlier one', () => {
    const pairs = fc.sample(fc.tuple(match, match), { numRuns: 3000, seed: 11 });
    let covers = 0;
    const escapes: unknown[] = [];
    for (const [a, b] of pairs) {
      if (!matchCovers(a, b)) continue;
      covers++;
      const ma = new IdentityMatcher([{ match: a }]);
      const mb = new IdentityMatcher([{ match: b }]);
      const peer = peers.find((p) => mb.match(p) !== undefined && ma.match(p) === undefined);
      if (peer !== undefined) escapes.push({ a, b, peer });
    }
    expect(escapes).toEqual([]);
    // Not vacuous: a fair share of the pairs do cover.
    expect(covers).toBeGreaterThan(40);
  });

  it('shadowedBy (bucketed by exact field) finds the same first covering rule as comparing every pair', () => {
    const exact = fc.record({ uri: fc.constantFrom('a/b', 'a/c', 'x'), dns: fc.constantFrom('a.b', 'A.B', 'c'), cn: fc.constantFrom('a', 'b') }, { requiredKeys: [] });
    const lists = fc.sample(fc.array(fc.oneof(match, exact.filter((m) => validateIdentityMatch(m) === null)), { minLength: 1, maxLength: 12 }), { numRuns: 500, seed: 5 });
    let found = 0;
    for (const list of lists) {
      const naive = list.map((b, j) => list.findIndex((a, i) => i < j && matchCovers(a, b)));
      expect(shadowedBy(list)).toEqual(naive);
      found += naive.filter((i) => i !== -1).length;
    }
    expect(found).toBeGreaterThan(200);
  });
});
