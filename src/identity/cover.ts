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
 * A config's rules are put in this form once (coverForm), so checking every pair stays cheap.
 */
import { globCovers, parseSegment, parseSegmentGlob } from '../glob-cover.js';
import type { SegmentGlob } from '../glob-cover.js';
import { normalizeSha256Thumbprint } from '../pki/thumbprint.js';
import { IdentityMatcher } from './match.js';
import type { IdentityMatch, PeerFields } from './match.js';

type Field = keyof IdentityMatch;
const FIELDS: readonly Field[] = ['uri', 'dns', 'cn', 'o', 'ou', 'sha256'];
const ASCII = /^[\x20-\x7e]*$/;

class FieldForm {
  #matcher: IdentityMatcher<{ readonly match: IdentityMatch }> | null = null;

  constructor(
    readonly field: Field,
    readonly pattern: string,
    /** The one value an exact pattern matches (a thumbprint normalized); null for a glob. */
    readonly value: string | null,
    /** A glob's structure, or null (exact, or a glob this module does not reason about). */
    readonly glob: SegmentGlob | null,
  ) {}

  /** Does this pattern match `value`? Asked of the real matcher, compiled on first use. */
  matches(value: string): boolean {
    // Exact and case-sensitive: the matcher would compare with === too.
    if (this.value !== null && this.field !== 'dns') return this.value === value;
    this.#matcher ??= new IdentityMatcher([{ match: { [this.field]: this.pattern } }]);
    return this.#matcher.match(peerWith(this.field, value)) !== undefined;
  }
}

export interface CoverForm {
  readonly fields: readonly FieldForm[];
  readonly byField: ReadonlyMap<Field, FieldForm>;
}

/** A validated rule's match, put once in the form formCovers compares. */
export function coverForm(m: IdentityMatch): CoverForm {
  const fields: FieldForm[] = [];
  for (const field of FIELDS) {
    const pattern = m[field];
    if (pattern === undefined) continue;
    if (field === 'sha256') fields.push(new FieldForm(field, pattern, normalizeSha256Thumbprint(pattern), null));
    else if (!pattern.includes('*')) fields.push(new FieldForm(field, pattern, pattern, null));
    else fields.push(new FieldForm(field, pattern, null, globOf(field, pattern)));
  }
  return { fields, byField: new Map(fields.map((f) => [f.field, f])) };
}

function globOf(field: Field, pattern: string): SegmentGlob | null {
  switch (field) {
    case 'uri':
      return parseSegmentGlob(pattern.split('/'));
    case 'dns':
      return ASCII.test(pattern) ? parseSegmentGlob(pattern.toLowerCase().split('.')) : null;
    default:
      // cn, o, ou: the whole value is one segment (no separator).
      return { head: [parseSegment(pattern)], tail: null };
  }
}

/** A certificate whose only value is `value` in `field`. */
function peerWith(field: Field, value: string): PeerFields {
  const none: readonly string[] = [];
  return {
    uris: field === 'uri' ? [value] : none,
    dns: field === 'dns' ? [value] : none,
    cn: field === 'cn' ? [value] : none,
    o: field === 'o' ? [value] : none,
    ou: field === 'ou' ? [value] : none,
    sha256: field === 'sha256' ? value : '',
  };
}

/** Every certificate `b` matches, `a` matches: placed before `b`, `a` leaves it nothing. */
export function formCovers(a: CoverForm, b: CoverForm): boolean {
  for (const fa of a.fields) {
    const fb = b.byField.get(fa.field);
    if (fb === undefined) return false;
    if (fb.value !== null) {
      if (!fa.matches(fb.value)) return false;
    } else if (fa.glob === null || fb.glob === null || !globCovers(fa.glob, fb.glob)) {
      return false;
    }
  }
  return true;
}

export function matchCovers(a: IdentityMatch, b: IdentityMatch): boolean {
  return formCovers(coverForm(a), coverForm(b));
}

/** A bucket key for an exact field: lower case for dns, coarser than the matcher's folding. */
function exactKey(f: FieldForm): string | null {
  if (f.value === null) return null;
  return `${f.field}\0${f.field === 'dns' ? f.value.toLowerCase() : f.value}`;
}

/**
 * For each rule, the index of the first earlier rule that covers it, or -1. Each rule is put in
 * form once, and rules are bucketed by their first exact field: a rule with an exact field can
 * only cover a rule with the same exact value in that field (a glob there matches more than
 * one value), so only the rules in the later rule's own buckets, and those without any exact
 * field, are compared with it.
 */
export function shadowedBy(matches: readonly IdentityMatch[]): number[] {
  const forms = matches.map(coverForm);
  const inexact: number[] = [];
  const byExact = new Map<string, number[]>();
  forms.forEach((f, i) => {
    const key = f.fields.map(exactKey).find((k) => k !== null);
    if (key === undefined) inexact.push(i);
    else byExact.set(key, [...(byExact.get(key) ?? []), i]);
  });
  return forms.map((b, j) => {
    let first = -1;
    const scan = (list: readonly number[]): void => {
      for (const i of list) {
        if (i >= j || (first !== -1 && i >= first)) return;
        const a = forms[i];
        if (a !== undefined && formCovers(a, b)) {
          first = i;
          return;
        }
      }
    };
    scan(inexact);
    for (const f of b.fields) {
      const key = exactKey(f);
      if (key !== null) scan(byExact.get(key) ?? []);
    }
    return first;
  });
}
