/**
 * Request-target normalization (SPEC §4 "On the wire"). The path returned here is both what is
 * routed and what is forwarded to the app, byte for byte, so the sidecar and the app can never
 * disagree about which resource a request names.
 *
 * Rules, in order:
 *  1. The target must be origin-form ("/..."): absolute-form, authority-form and "*" are refused.
 *  2. Every character of the raw target (path, query and fragment) must be printable ASCII
 *     0x21-0x7e; a NUL, a control character, a space, DEL or anything >= 0x80 is refused.
 *  3. A fragment ("#...") is dropped. The path ends at the first "?" or "#"; the query (from "?"
 *     up to any "#") is passed through verbatim, leading "?" included.
 *  4. In the path: a raw "\" is refused; each "%XX" must be two hex digits; "%00", "%2F" and "%5C"
 *     are refused; escapes of unreserved characters (ALPHA DIGIT - . _ ~) are decoded; every other
 *     escape stays encoded with upper-case hex ("%c3" -> "%C3", "%25" stays "%25", so double
 *     encoding is never undone).
 *  5. Segments are then resolved on their decoded form: empty segments (repeated slashes) are
 *     dropped, "." is dropped, ".." removes the previous segment; a ".." with nothing to remove
 *     (above the root) is refused. Empty segments are dropped before ".." is applied (as nginx's
 *     merge_slashes does), so "/a//../b" is "/b". If the last segment was empty, "." or "..", the
 *     result keeps a trailing slash ("/a/b/", "/a/." -> "/a/", "/a/.." -> "/").
 *  6. A dot-segment carrying path parameters ("..;x", ".;", "%2e%2e;") is refused: Tomcat, Jetty
 *     and Spring strip ";params" before resolving dots, so "/public/..;/admin" would be routed
 *     here as /public/..;/admin and served there as /admin ("..;" traversal, Orange Tsai,
 *     "Breaking Parser Logic", Black Hat USA 2018).
 *
 * The result is idempotent: normalizing a normalized path returns it unchanged.
 *
 * Hot path: a single scan validates the whole target and notices whether the path can need any
 * work ("%", a "/" or "." right after a "/"). Most paths need none and are returned as the very
 * same string (or one slice when there is a query) with no other allocation. Refusals are
 * preallocated constants.
 */

export type NormalizeResult =
  | { readonly ok: true; readonly path: string; readonly query: string }
  | { readonly ok: false; readonly reason: 'bad_path'; readonly detail: string };

type Refused = Extract<NormalizeResult, { ok: false }>;

function refused(detail: string): Refused {
  return Object.freeze({ ok: false, reason: 'bad_path', detail } as const);
}

const NOT_ORIGIN_FORM = refused('not_origin_form');
const NUL = refused('nul');
const BAD_CHAR = refused('bad_char');
const BACKSLASH = refused('backslash');
const BAD_PERCENT = refused('bad_percent');
const ENCODED_SLASH = refused('encoded_slash');
const ENCODED_BACKSLASH = refused('encoded_backslash');
const DOT_DOT_ABOVE_ROOT = refused('dot_dot_above_root');
const DOT_SEGMENT_PARAM = refused('dot_segment_param');

const C_SLASH = 0x2f;
const C_DOT = 0x2e;
const C_PERCENT = 0x25;
const C_QUESTION = 0x3f;
const C_HASH = 0x23;
const C_BACKSLASH = 0x5c;

/** For each byte value, what an escape of it becomes in the normalized path. */
const ESCAPE_REPLACEMENT: readonly string[] = (() => {
  const out: string[] = [];
  const hex = '0123456789ABCDEF';
  for (let b = 0; b < 256; b++) {
    const ch = String.fromCharCode(b);
    out.push(/^[A-Za-z0-9\-._~]$/.test(ch) ? ch : `%${hex[b >> 4] ?? ''}${hex[b & 15] ?? ''}`);
  }
  return out;
})();

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30; // 0-9
  if (c >= 0x41 && c <= 0x46) return c - 0x37; // A-F
  if (c >= 0x61 && c <= 0x66) return c - 0x57; // a-f
  return -1;
}

export function normalizeTarget(rawTarget: string): NormalizeResult {
  const len = rawTarget.length;
  if (len === 0 || rawTarget.charCodeAt(0) !== C_SLASH) return NOT_ORIGIN_FORM;

  let pathEnd = -1; // index of the first '?' or '#'
  let hashAt = len; // index of the first '#'
  let needsWork = false;
  let prev = C_SLASH;
  for (let i = 1; i < len; i++) {
    const c = rawTarget.charCodeAt(i);
    if (c <= 0x20 || c >= 0x7f) return c === 0 ? NUL : BAD_CHAR;
    if (pathEnd === -1) {
      if (c === C_QUESTION || c === C_HASH) {
        pathEnd = i;
        if (c === C_HASH) hashAt = i;
      } else if (c === C_BACKSLASH) {
        return BACKSLASH;
      } else if (c === C_PERCENT || (prev === C_SLASH && (c === C_SLASH || c === C_DOT))) {
        needsWork = true;
      }
      prev = c;
    } else if (c === C_HASH && hashAt === len) {
      hashAt = i;
    }
  }
  if (pathEnd === -1) pathEnd = len;

  const query = pathEnd < hashAt ? rawTarget.slice(pathEnd, hashAt) : '';
  if (!needsWork) {
    return { ok: true, path: pathEnd === len ? rawTarget : rawTarget.slice(0, pathEnd), query };
  }
  const path = normalizePath(rawTarget, pathEnd);
  return typeof path === 'string' ? { ok: true, path, query } : path;
}

/** The slow path: decode and resolve raw[0, end), which starts with '/' and holds only 0x21-0x7e. */
function normalizePath(raw: string, end: number): string | Refused {
  const kept: string[] = [];
  let trailingSlash = false;
  let start = 1;
  while (start <= end) {
    let stop = raw.indexOf('/', start);
    if (stop === -1 || stop > end) stop = end;
    const last = stop === end;

    let segment: string;
    const pct = raw.indexOf('%', start);
    if (pct === -1 || pct >= stop) {
      segment = raw.slice(start, stop);
    } else {
      const decoded = decodeSegment(raw, start, stop, pct);
      if (typeof decoded !== 'string') return decoded;
      segment = decoded;
    }

    if (segment.charCodeAt(0) === C_DOT && isDotSegmentWithParams(segment)) return DOT_SEGMENT_PARAM;
    if (segment === '' || segment === '.') {
      if (last) trailingSlash = true;
    } else if (segment === '..') {
      if (kept.pop() === undefined) return DOT_DOT_ABOVE_ROOT;
      if (last) trailingSlash = true;
    } else {
      kept.push(segment);
    }
    start = stop + 1;
  }
  if (kept.length === 0) return '/';
  const joined = `/${kept.join('/')}`;
  return trailingSlash ? `${joined}/` : joined;
}

/** "." or ".." followed by ";" and path parameters (segment already decoded). */
function isDotSegmentWithParams(segment: string): boolean {
  const semi = segment.indexOf(';');
  if (semi === -1) return false;
  return semi === 1 || (semi === 2 && segment.charCodeAt(1) === C_DOT);
}

/** Decodes raw[start, stop), whose first '%' is at firstPct. */
function decodeSegment(raw: string, start: number, stop: number, firstPct: number): string | Refused {
  let out = '';
  let copied = start;
  for (let i = firstPct; i < stop; i++) {
    if (raw.charCodeAt(i) !== C_PERCENT) continue;
    if (i + 2 >= stop) return BAD_PERCENT;
    const hi = hexValue(raw.charCodeAt(i + 1));
    const lo = hexValue(raw.charCodeAt(i + 2));
    if (hi < 0 || lo < 0) return BAD_PERCENT;
    const byte = (hi << 4) | lo;
    if (byte === 0) return NUL;
    if (byte === C_SLASH) return ENCODED_SLASH;
    if (byte === C_BACKSLASH) return ENCODED_BACKSLASH;
    out += raw.slice(copied, i) + (ESCAPE_REPLACEMENT[byte] ?? '');
    i += 2;
    copied = i + 1;
  }
  return out + raw.slice(copied, stop);
}
