/**
 * The request-head checks of the own HTTP/2 server (RFC 9113 8.1, 8.2, 8.3.1), apart from any
 * socket or session: what a request head or trailer section must be to be served. The session
 * refuses a stream whose head fails them with RST_STREAM PROTOCOL_ERROR.
 */
import { CONNECTION_SPECIFIC } from './frames.js';

/** Token characters of a lower-case field name (RFC 9110 5.6.2, RFC 9113 8.2.1): one lookup per character. */
const NAME_CHAR = new Uint8Array(128);
for (const c of "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz") NAME_CHAR[c.charCodeAt(0)] = 1;
/** A field value may not hold NUL, CR or LF, nor start or end with whitespace (RFC 9113 8.2.1). */
const BAD_VALUE = /[\x00-\x08\x0a-\x1f\x7f]|^[ \t]|[ \t]$/;
/** :path and :authority: visible characters only (no space, control or DEL). */
const BAD_TARGET = /[\x00-\x20\x7f]/;
const SCHEME = /^[A-Za-z][A-Za-z0-9+.-]*$/;
const DIGITS = /^[0-9]{1,15}$/;
/** A method is a token (RFC 9110 9.1), any case. */
const METHOD_CHAR = new Uint8Array(128);
for (let c = 0; c < 128; c++) METHOD_CHAR[c] = NAME_CHAR[c]! | (c >= 65 && c <= 90 ? 1 : 0);

/** What a valid request head gives its stream (H2ServerStream is one). */
export interface RequestHead {
  method: string;
  path: string;
  scheme: string;
  authority: string | null;
  /** Regular request fields, flat [name, value, ...], lower-case names as received. */
  fields: string[];
  /** Declared content-length, or -1. */
  contentLength: number;
}

/** Validates the request head (RFC 9113 8.2, 8.3.1) and takes it into `head` (fresh: contentLength -1); false when malformed. */
export function readHead(f: string[], head: RequestHead): boolean {
  let regular = false;
  let method: string | null = null;
  let path: string | null = null;
  let scheme: string | null = null;
  let authority: string | null = null;
  const out: string[] = [];
  for (let i = 0; i < f.length; i += 2) {
    const name = f[i]!;
    const value = f[i + 1]!;
    if (name.charCodeAt(0) === 58 /* : */) {
      if (regular) return false;
      if (name === ':method' && method === null) method = value;
      else if (name === ':path' && path === null) path = value;
      else if (name === ':scheme' && scheme === null) scheme = value;
      else if (name === ':authority' && authority === null) authority = value;
      else return false; // unknown, duplicated, or a response pseudo-header
      continue;
    }
    regular = true;
    if (!regularFieldOk(name, value)) return false;
    if (name === 'content-length') {
      if (!DIGITS.test(value)) return false;
      const n = Number(value);
      if (head.contentLength !== -1 && head.contentLength !== n) return false;
      head.contentLength = n;
    }
    out.push(name, value);
  }
  // CONNECT is not served; everything else needs all three (8.3.1), and a non-empty path.
  if (method === null || method === '' || scheme === null || path === null || path === '' || method === 'CONNECT') return false;
  for (let j = 0; j < method.length; j++) {
    const c = method.charCodeAt(j);
    if (c >= 128 || METHOD_CHAR[c] === 0) return false;
  }
  if (authority !== null && BAD_TARGET.test(authority)) return false;
  if (BAD_TARGET.test(path) || !SCHEME.test(scheme)) return false;
  head.method = method;
  head.path = path;
  head.scheme = scheme;
  head.authority = authority;
  head.fields = out;
  return true;
}

/** A regular (non-pseudo) field of a request head or trailer section is well formed (8.2, 8.2.2). */
function regularFieldOk(name: string, value: string): boolean {
  if (name.length === 0) return false;
  for (let j = 0; j < name.length; j++) {
    const c = name.charCodeAt(j);
    if (c >= 128 || NAME_CHAR[c] === 0) return false;
  }
  if (CONNECTION_SPECIFIC.has(name)) return false;
  if (name === 'te' && value !== 'trailers') return false;
  return value.length === 0 || !BAD_VALUE.test(value);
}

/** A trailer section holds regular fields only (8.1: pseudo-header fields are not allowed there). */
export function trailersOk(f: string[]): boolean {
  for (let i = 0; i < f.length; i += 2) {
    const name = f[i]!;
    if (name.charCodeAt(0) === 58 /* : */ || !regularFieldOk(name, f[i + 1]!)) return false;
  }
  return true;
}
