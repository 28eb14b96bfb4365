/**
 * Client certificate -> identity rule (SPEC §3 `identities`): the first rule, in config order,
 * whose every given field matches wins. A multi-valued field (several URI SANs, several OUs...)
 * matches when any one of its values matches; a field the certificate lacks never matches.
 *
 * Patterns (decided here, documented for the README):
 *  - No `*`: exact comparison. Only `*` (and `**` in uri) is special; every other character,
 *    regex metacharacters included, is literal.
 *  - `*` matches a non-empty run of characters that does not contain the field's separator:
 *      uri: "/"  (`spiffe://td/ns/*` + `/sa/*` matches one namespace and one service account;
 *                 `prod-*` works inside a segment);
 *      dns: "."  (`*.svc.example` matches `a.svc.example`, not `a.b.svc.example` nor
 *                 `.svc.example`);
 *      cn, o, ou: none (`*` alone means "present and non-empty").
 *    Never empty, so `spiffe://td/ns/a/sa/*` does not match `spiffe://td/ns/a/sa/`.
 *  - `**` (uri only) must be a whole "/"-separated segment and matches any number of whole
 *    segments, including none, like `**` in route globs: `spiffe://td/**` matches every ID in
 *    the trust domain `td` (and `spiffe://td` itself). `**` anywhere else is refused.
 *  - At most one `*` per uri segment / dns label / cn-o-ou value, and at most one `**`: these
 *    limits make every compiled RegExp linear-time on any certificate (see globToRegExp).
 *  - dns compares case-insensitively (DNS names are, RFC 4343); only ASCII letters are folded,
 *    so a non-ASCII look-alike (e.g. KELVIN SIGN for "k") never folds onto an ASCII name.
 *    uri, cn, o, ou compare case-sensitively.
 *  - sha256 is exact. The pattern may be written `sha256:AB:CD:...`, `AB:CD:...` or 64 hex
 *    digits in any case; it is normalized once, by the same function as tls.pins
 *    (pki/thumbprint.ts), to the peer's form (upper-case, colon-separated).
 *
 * Hot path: every pattern is compiled at construction (exact strings compared with ===, globs to
 * one anchored RegExp each); match() builds nothing and allocates nothing except when a dns SAN
 * with upper-case letters is compared with an exact dns pattern (one lower-cased copy). Within a
 * rule, exact fields are checked before globs. Rules are scanned in config order; for a peer
 * with exactly one URI SAN (the SPIFFE case) the scan is narrowed by a Map on exact uri patterns
 * built at construction, which keeps first-match order (see the constructor). Callers may also
 * cache the result per connection and configuration generation.
 */
import { normalizeSha256Thumbprint } from '../pki/thumbprint.js';

export interface PeerFields {
  readonly uris: readonly string[];
  readonly dns: readonly string[];
  readonly cn: readonly string[];
  readonly o: readonly string[];
  readonly ou: readonly string[];
  /** "AB:CD:..." upper-case, colon-separated hex. */
  readonly sha256: string;
}

export interface IdentityMatch {
  readonly uri?: string;
  readonly dns?: string;
  readonly cn?: string;
  readonly o?: string;
  readonly ou?: string;
  readonly sha256?: string;
}

const FIELDS = ['uri', 'dns', 'cn', 'o', 'ou', 'sha256'] as const;
export type Field = (typeof FIELDS)[number];

/** A readable problem with one identity's `match`, or null when it is usable. */
export function validateIdentityMatch(m: IdentityMatch): string | null {
  let count = 0;
  for (const field of FIELDS) {
    const value = m[field];
    if (value === undefined) continue;
    count++;
    if (typeof value !== 'string' || value === '') return `match.${field} must be a non-empty string`;
    const problem = patternProblem(field, value);
    if (problem !== null) return `match.${field} "${value}": ${problem}`;
  }
  return count === 0 ? `match needs at least one of ${FIELDS.join(', ')}` : null;
}

function patternProblem(field: Field, pattern: string): string | null {
  if (field === 'sha256') {
    return normalizeSha256Thumbprint(pattern) === null ? 'not a SHA-256 thumbprint (use "sha256:AB:CD:..." with 32 bytes, or 64 hex digits)' : null;
  }
  if (field !== 'uri') {
    if (pattern.includes('**')) return '"**" is only meaningful in uri (use "*")';
    const parts = field === 'dns' ? pattern.split('.') : [pattern];
    if (parts.some((part) => part.indexOf('*') !== part.lastIndexOf('*'))) {
      return `at most one "*" ${field === 'dns' ? 'per label' : 'per pattern'} (this keeps matching linear-time)`;
    }
    return null;
  }
  const segments = pattern.split('/');
  for (const segment of segments) {
    if (segment === '**') continue;
    if (segment.includes('**')) return '"**" must be a whole "/"-separated segment (use "*" within a segment)';
    if (segment.indexOf('*') !== segment.lastIndexOf('*')) return 'at most one "*" per segment (this keeps matching linear-time)';
  }
  if (segments.filter((segment) => segment === '**').length > 1) return 'at most one "**" (this keeps matching linear-time)';
  return null;
}

// ---- compiled form -------------------------------------------------------------------------

const F_URI = 0;
const F_DNS = 1;
const F_CN = 2;
const F_O = 3;
const F_OU = 4;
const F_SHA256 = 5;
const FIELD_CODE: Readonly<Record<Field, number>> = { uri: F_URI, dns: F_DNS, cn: F_CN, o: F_O, ou: F_OU, sha256: F_SHA256 };

const M_EXACT = 0; // value === text
const M_EXACT_FOLD = 1; // ASCII case-insensitive equality (dns); text is lower case
const M_GLOB = 2; // regex.test(value)

class FieldMatcher {
  constructor(
    readonly field: number,
    readonly kind: number,
    /** M_EXACT / M_EXACT_FOLD: the value to compare with (sha256 normalized, dns lower case). */
    readonly text: string,
    /** M_GLOB only. */
    readonly regex: RegExp | null,
  ) {}
}

class CompiledRule<T> {
  constructor(
    readonly rule: T,
    readonly fields: readonly FieldMatcher[],
  ) {}
}

function escapeRegExp(text: string): string {
  return text.replace(/[\\^$.*+?()[\]{}|]/g, '\\$&');
}

/** One `*` run -> `any`, the rest literal. */
function globPart(part: string, any: string): string {
  return part.split('*').map(escapeRegExp).join(any);
}

/**
 * The anchored RegExp for a validated glob. uri: `*` -> `[^/]+`, a `**` segment -> zero or more
 * whole segments; dns: `*` -> `[^.]+`, flag i (without the u flag, i never folds a non-ASCII
 * character onto an ASCII one); cn/o/ou: `*` -> any non-empty run. With at most one `*` per
 * segment and at most one `**` (validation), each `*` can only end at its segment's boundary
 * and only the `**` is retried at each boundary, so V8's backtracking stays
 * O(value length x pattern length) whatever the certificate holds.
 */
function globToRegExp(field: Field, pattern: string): RegExp {
  if (field === 'dns') return new RegExp(`^${pattern.split('.').map((label) => globPart(label, '[^.]+')).join('\\.')}$`, 'i');
  if (field !== 'uri') return new RegExp(`^${globPart(pattern, '[\\s\\S]+')}$`);
  const segments = pattern.split('/');
  if (segments.length === 1 && segments[0] === '**') return /^[\s\S]*$/;
  let source = '^';
  segments.forEach((segment, i) => {
    if (segment === '**') source += i === 0 ? '(?:[^/]*/)*' : '(?:/[^/]*)*';
    else source += (i === 0 || (i === 1 && segments[0] === '**') ? '' : '/') + globPart(segment, '[^/]+');
  });
  return new RegExp(`${source}$`);
}

function compileField(field: Field, pattern: string): FieldMatcher {
  const code = FIELD_CODE[field];
  if (field === 'sha256') return new FieldMatcher(code, M_EXACT, normalizeSha256Thumbprint(pattern) ?? pattern, null);
  if (pattern.includes('*')) return new FieldMatcher(code, M_GLOB, pattern, globToRegExp(field, pattern));
  if (field === 'dns') return new FieldMatcher(code, M_EXACT_FOLD, foldAscii(pattern), null);
  return new FieldMatcher(code, M_EXACT, pattern, null);
}

/**
 * ASCII-only lower-casing; returns the same string when there is nothing to fold. Non-ASCII
 * characters are left alone (String#toLowerCase would map e.g. U+212A KELVIN SIGN to "k").
 */
function foldAscii(value: string): string {
  let upper = false;
  let ascii = true;
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c >= 0x41 && c <= 0x5a) upper = true;
    else if (c >= 0x80) ascii = false;
  }
  if (!upper) return value;
  if (ascii) return value.toLowerCase();
  let out = '';
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    out += String.fromCharCode(c >= 0x41 && c <= 0x5a ? c + 0x20 : c);
  }
  return out;
}

function valueMatches(f: FieldMatcher, value: string): boolean {
  switch (f.kind) {
    case M_EXACT:
      return value === f.text;
    case M_EXACT_FOLD:
      return value.length === f.text.length && (value === f.text || foldAscii(value) === f.text);
    default:
      return f.regex !== null && f.regex.test(value);
  }
}

function anyValueMatches(f: FieldMatcher, values: readonly string[]): boolean {
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v !== undefined && valueMatches(f, v)) return true;
  }
  return false;
}

function fieldMatches(f: FieldMatcher, peer: PeerFields): boolean {
  switch (f.field) {
    case F_URI:
      return anyValueMatches(f, peer.uris);
    case F_DNS:
      return anyValueMatches(f, peer.dns);
    case F_CN:
      return anyValueMatches(f, peer.cn);
    case F_O:
      return anyValueMatches(f, peer.o);
    case F_OU:
      return anyValueMatches(f, peer.ou);
    default:
      return peer.sha256 === f.text;
  }
}

export class IdentityMatcher<T extends { readonly match: IdentityMatch }> {
  readonly #rules: readonly CompiledRule<T>[];
  /** Exact uri -> the rules that can match a peer with only that URI SAN, in config order. */
  readonly #byUri = new Map<string, readonly CompiledRule<T>[]>();
  /** The rules without an exact uri: all that can match a peer whose one URI has no entry. */
  readonly #uriFree: readonly CompiledRule<T>[];

  /** Compiles every pattern once. Input is assumed validated; an invalid rule throws. */
  constructor(rules: readonly T[]) {
    const exactUri: (string | null)[] = [];
    this.#rules = rules.map((rule) => {
      const problem = validateIdentityMatch(rule.match);
      if (problem !== null) throw new Error(problem);
      const fields: FieldMatcher[] = [];
      for (const field of FIELDS) {
        const pattern = rule.match[field];
        if (pattern !== undefined) fields.push(compileField(field, pattern));
      }
      // Cheap, selective exact comparisons first; the rule is an AND, so order is free.
      fields.sort((a, b) => Number(a.kind > M_EXACT_FOLD) - Number(b.kind > M_EXACT_FOLD));
      const uri = fields.find((f) => f.field === F_URI);
      exactUri.push(uri !== undefined && uri.kind === M_EXACT ? uri.text : null);
      return new CompiledRule(rule, fields);
    });
    // Index for the common case of a peer with exactly one URI SAN (a SPIFFE ID): a rule whose
    // exact uri differs cannot match it, so each list keeps only the rules that can, in config
    // order. Memory is (#distinct exact uris x #other rules), small for real configs.
    this.#uriFree = this.#rules.filter((_, i) => exactUri[i] === null);
    for (const uri of new Set(exactUri)) {
      if (uri === null) continue;
      this.#byUri.set(
        uri,
        this.#rules.filter((_, i) => exactUri[i] === null || exactUri[i] === uri),
      );
    }
  }

  /** The first rule, in config order, whose every given field matches the peer. */
  match(peer: PeerFields): T | undefined {
    let rules = this.#rules;
    if (this.#byUri.size !== 0) {
      const uris = peer.uris;
      if (uris.length === 1) rules = this.#byUri.get(uris[0] ?? '') ?? this.#uriFree;
      else if (uris.length === 0) rules = this.#uriFree;
    }
    for (let r = 0; r < rules.length; r++) {
      const rule = rules[r];
      if (rule === undefined) continue;
      const fields = rule.fields;
      let ok = true;
      for (let i = 0; i < fields.length; i++) {
        const f = fields[i];
        if (f !== undefined && !fieldMatches(f, peer)) {
          ok = false;
          break;
        }
      }
      if (ok) return rule.rule;
    }
    return undefined;
  }

  /**
   * For `explain`, not the hot path: every rule in config order with the first of its fields
   * the peer fails (null: the rule matches), judged by the same compiled matchers as match().
   */
  mismatches(peer: PeerFields): { readonly rule: T; readonly field: Field | null }[] {
    return this.#rules.map((r) => {
      const failed = r.fields.find((f) => !fieldMatches(f, peer));
      return { rule: r.rule, field: failed === undefined ? null : (FIELDS[failed.field] ?? null) };
    });
  }
}
