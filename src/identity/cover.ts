/**
 * Identity shadowing, for `check`: does an earlier rule match every certificate a later one
 * could, so that the later one never wins (match.ts: first match in config order)? Proved, not
 * guessed: true only when it holds for every certificate; false when that is not shown.
 *
 * A rule is an AND of its fields, and a field matches when any one of the certificate's values
 * for it matches. So `a` covers `b` when every field `a` gives, `b` gives too, with a pattern
 * whose every value `a`'s pattern also matches: the value that lets `b` match lets `a` match.
 * Per field:
 *  - `b` exact: `a`'s own compiled matcher is asked about that value (exact, case folding, globs).
 *  - `b` a glob, `a` exact: not covered (a glob matches more than one value).
 *  - both globs: uri as "/"-separated segment globs, dns as "."-separated labels compared in
 *    ASCII lower case (only when both are ASCII, where the case-insensitive RegExp folds nothing
 *    else), cn/o/ou as one segment (glob-cover.ts).
 */
import { globCovers, parseSegment, parseSegmentGlob, segmentCovers } from '../glob-cover.js';
import { normalizeSha256Thumbprint } from '../pki/thumbprint.js';
import { IdentityMatcher } from './match.js';
import type { IdentityMatch, PeerFields } from './match.js';

type Field = keyof IdentityMatch;
const FIELDS: readonly Field[] = ['uri', 'dns', 'cn', 'o', 'ou', 'sha256'];
const ASCII = /^[\x20-\x7e]*$/;

/** A certificate whose only value is `value` in `field` (sha256 normalized by the matcher's rules). */
function peerWith(field: Field, value: string): PeerFields {
  const empty: readonly string[] = [];
  return {
    uris: field === 'uri' ? [value] : empty,
    dns: field === 'dns' ? [value] : empty,
    cn: field === 'cn' ? [value] : empty,
    o: field === 'o' ? [value] : empty,
    ou: field === 'ou' ? [value] : empty,
    sha256: field === 'sha256' ? value : '',
  };
}

/** Every value `b`'s pattern matches for this field, `a`'s pattern matches. */
export function fieldCovers(field: Field, a: string, b: string): boolean {
  if (field === 'sha256' || !b.includes('*')) {
    // `b` matches one value (up to dns case, which `a`'s matcher folds as it would at run time).
    const value = field === 'sha256' ? normalizeSha256Thumbprint(b) : b;
    return value !== null && new IdentityMatcher([{ match: { [field]: a } }]).match(peerWith(field, value)) !== undefined;
  }
  if (!a.includes('*')) return false;
  switch (field) {
    case 'uri':
      return globCovers(parseSegmentGlob(a.split('/')), parseSegmentGlob(b.split('/')));
    case 'dns':
      if (!ASCII.test(a) || !ASCII.test(b)) return false;
      return globCovers(parseSegmentGlob(a.toLowerCase().split('.')), parseSegmentGlob(b.toLowerCase().split('.')));
    default:
      return segmentCovers(parseSegment(a), parseSegment(b));
  }
}

/** Every certificate `b` matches, `a` matches: placed before `b`, `a` leaves it nothing. */
export function matchCovers(a: IdentityMatch, b: IdentityMatch): boolean {
  for (const field of FIELDS) {
    const pa = a[field];
    if (pa === undefined) continue;
    const pb = b[field];
    if (pb === undefined || !fieldCovers(field, pa, pb)) return false;
  }
  return true;
}
