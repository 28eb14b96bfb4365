/**
 * Header rewriting, one pass each way. Request: strip hop-by-hop headers, everything the
 * client's Connection header names, and every identity header a client could spoof; then set
 * ours. Because ours are added after the strip and the client's Connection header is never
 * forwarded, no client header can remove or replace them (SPEC §4).
 */
import { SECURITY_HEADERS } from '../http/security-headers.js';

/** Never forwarded upstream, whatever the client sends. */
const DROP_REQUEST = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authorization',
  'transfer-encoding',
  'te',
  'trailer',
  'upgrade',
  'expect',
  'host',
  'http2-settings',
  'x-real-ip',
  'forwarded',
  'x-request-id',
  // Method overrides: routing used the request's own method, so the app must not act on another
  // one (Express method-override, Rails/Symfony/Spring-style filters honour these headers).
  'x-http-method-override',
  'x-http-method',
  'x-method-override',
  // Path overrides: routing used the request target, so the app must not route on another one
  // (CVE-2018-14773: Symfony/Zend honoured X-Original-URL / X-Rewrite-URL over the path).
  'x-original-url',
  'x-rewrite-url',
]);

/**
 * Whole families the sidecar owns (README "What the app receives"): x-forwarded-* (XFCC among
 * them), x-client-*, x-jwt-*. Matched as prefixes, and with `_` for `-` (nginx, CGI/WSGI and
 * some apps treat them alike).
 */
const PROTECTED_PREFIXES = ['x-forwarded-', 'x-client-', 'x-jwt-'];

/**
 * Framing headers whose `_` spelling is dropped too: a CGI/WSGI app maps `Content_Length` and
 * `Content-Length` to the same CONTENT_LENGTH variable, which must come from the sidecar's framing.
 */
const FRAMING_ALIASES = new Set(['content-length']);

function isProtected(lower: string): boolean {
  if (DROP_REQUEST.has(lower)) return true;
  for (const p of PROTECTED_PREFIXES) if (lower.startsWith(p)) return true;
  return false;
}

const DROP_RESPONSE = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'http2-settings']);

export type HeaderScan =
  | { readonly ok: true; readonly host: string | null; readonly contentLength: number | null; readonly headers: string[]; readonly expectContinue: boolean }
  | { readonly ok: false; readonly detail: string };

/**
 * One pass over the raw header pairs: refuses duplicate Host/Authorization/Content-Length
 * (request smuggling and auth confusion), and collects what will be forwarded. Several `cookie`
 * fields (HTTP/2 cookie crumbs) go on as one, joined with `; ` (RFC 9113 8.2.3): the hop to the
 * app is HTTP/1.1, where a request carries one Cookie line (RFC 6265 5.4).
 */
export function scanRequestHeaders(raw: readonly string[], connectionValue: string | undefined, dropAuthorization = false): HeaderScan {
  const named = connectionValue === undefined ? null : connectionTokens(connectionValue);
  const out: string[] = [];
  let host: string | null = null;
  let authority: string | null = null;
  let authorizations = 0;
  let contentLength: string | null = null;
  let expectContinue = false;
  /** Where the first forwarded cookie's value sits in `out`, once there is one. */
  let cookieAt = -1;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i] as string;
    const value = raw[i + 1] as string;
    const lower = name.toLowerCase();
    if (lower.charCodeAt(0) === 58 /* ':' pseudo-header (HTTP/2) */) {
      if (lower === ':authority') authority = value;
      continue;
    }
    switch (lower) {
      case 'host':
        if (host !== null) return { ok: false, detail: 'duplicate_host' };
        host = value;
        continue;
      case 'authorization':
        if (++authorizations > 1) return { ok: false, detail: 'duplicate_authorization' };
        // With jwt configured the sidecar consumes the token; the app gets x-jwt-* instead.
        if (dropAuthorization) continue;
        break;
      case 'content-length':
        if (contentLength !== null) return { ok: false, detail: 'duplicate_content_length' };
        contentLength = value;
        break;
      case 'expect':
        if (value.toLowerCase() === '100-continue') expectContinue = true;
        else return { ok: false, detail: 'bad_expect' };
        continue;
    }
    if (isProtected(lower)) continue;
    if (named !== null && named.has(lower)) continue;
    if (lower.includes('_') && isProtectedAlias(lower)) continue;
    if (lower === 'cookie') {
      if (cookieAt !== -1) {
        out[cookieAt] = `${out[cookieAt] as string}; ${value}`;
        continue;
      }
      cookieAt = out.length + 1;
    }
    out.push(name, value);
  }
  if (authority !== null) {
    // HTTP/2 may carry both; they must agree (RFC 9113 8.3.1).
    if (host !== null && host !== authority) return { ok: false, detail: 'host_mismatch' };
    host = authority;
  }
  let length: number | null = null;
  if (contentLength !== null) {
    if (!/^\d{1,15}$/.test(contentLength)) return { ok: false, detail: 'bad_content_length' };
    length = Number(contentLength);
  }
  return { ok: true, host, contentLength: length, headers: out, expectContinue };
}

function isProtectedAlias(lower: string): boolean {
  const dashed = lower.replaceAll('_', '-');
  return isProtected(dashed) || FRAMING_ALIASES.has(dashed);
}

/**
 * The tokens a Connection header names, or null when it names nothing beyond the hop-by-hop
 * headers always dropped (the everyday `keep-alive` / `close`: no Set built per message).
 */
function connectionTokens(value: string): Set<string> | null {
  const v = value.length <= 10 ? value.toLowerCase() : '';
  if (v === 'keep-alive' || v === 'close') return null;
  const set = new Set<string>();
  for (const t of value.split(',')) {
    const tok = t.trim().toLowerCase();
    if (tok !== '') set.add(tok);
  }
  return set;
}

/**
 * Upstream response headers, as raw name/value strings (latin1, as parsed), -> client headers: names
 * lower-cased, repeats kept as arrays (one line each), hop-by-hop and Connection-named headers
 * removed (HTTP/2 forbids them), request id set, security headers added unless the app set its
 * own. The parser reads bytes as latin1, so a header goes out exactly as the app sent it.
 */
export function responseHeaders(raw: readonly string[], requestId: string, securityHeaders: boolean): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  let connection: string | null = null;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const key = (raw[i] as string).toLowerCase();
    const value = raw[i + 1] as string;
    if (DROP_RESPONSE.has(key)) {
      if (key === 'connection') connection = connection === null ? value : `${connection}, ${value}`;
      continue;
    }
    // Never a key that would reach the object's prototype.
    if (key === '__proto__') continue;
    const prev = out[key];
    if (prev === undefined || !Object.hasOwn(out, key)) out[key] = value;
    else if (typeof prev === 'string') out[key] = [prev, value];
    else prev.push(value);
  }
  const named = connection === null ? null : connectionTokens(connection);
  // eslint-disable-next-line @typescript-eslint/no-dynamic-delete -- the fields the client's Connection names are not forwarded
  if (named !== null) for (const n of named) delete out[n];
  out['x-request-id'] = requestId;
  if (securityHeaders) {
    for (const [k, v] of SECURITY_HEADERS) if (out[k] === undefined) out[k] = v;
  }
  return out;
}
