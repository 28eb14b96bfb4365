/**
 * A verified peer certificate -> the fields identity rules match on and the header values the
 * app receives. Runs once per TLS connection, never per request.
 */
import type { X509Certificate } from 'node:crypto';
import type { PeerFields } from './match.js';

export interface PeerInfo {
  readonly fields: PeerFields;
  /** Lower-case hex SHA-256 of the leaf DER, as in Envoy's XFCC `Hash`. */
  readonly sha256Hex: string;
  /** RFC 4514 subject, most specific first, printable ASCII only (safe for headers and logs). */
  readonly subject: string;
  readonly uri: string | null;
  /** x-forwarded-client-cert value (Envoy format). */
  readonly xfcc: string;
}

export function describePeer(x509: X509Certificate): PeerInfo {
  const rdns = parseSubject(x509.subject);
  const cn: string[] = [];
  const o: string[] = [];
  const ou: string[] = [];
  for (const rdn of rdns) {
    if (rdn.type === 'CN') cn.push(rdn.value);
    else if (rdn.type === 'O') o.push(rdn.value);
    else if (rdn.type === 'OU') ou.push(rdn.value);
  }
  const uris: string[] = [];
  const dns: string[] = [];
  for (const [type, value] of parseSubjectAltName(x509.subjectAltName)) {
    if (type === 'URI') uris.push(value);
    else if (type === 'DNS') dns.push(value);
  }
  const sha256 = x509.fingerprint256;
  const sha256Hex = sha256.replaceAll(':', '').toLowerCase();
  const subject = rdns
    .map((r) => `${r.type}=${escapeRdnValue(r.value)}`)
    .reverse()
    .join(',');
  // Backslashes first: the RFC 4514 escapes inside the subject must survive XFCC unquoting.
  let xfcc = `Hash=${sha256Hex};Subject="${subject.replaceAll('\\', '\\\\').replaceAll('"', '\\"')}"`;
  const uri = uris[0] ?? null;
  if (uri !== null) xfcc += `;URI=${xfccValue(uri)}`;
  for (const d of dns) xfcc += `;DNS=${xfccValue(d)}`;
  return {
    fields: { uris, dns, cn, o, ou, sha256 },
    sha256Hex,
    subject,
    uri: uri === null ? null : headerSafe(uri),
    xfcc,
  };
}

interface Rdn {
  readonly type: string;
  readonly value: string;
}

/**
 * node:crypto prints the subject one attribute per line with RFC 2253 escapes
 * (`\,` `\"` `\\` and `\0D` for control bytes); undo them to get the real values.
 */
export function parseSubject(subject: string): Rdn[] {
  const out: Rdn[] = [];
  for (const line of subject.split('\n')) {
    const eq = line.indexOf('=');
    if (eq <= 0) continue;
    out.push({ type: line.slice(0, eq), value: unescapeRdn(line.slice(eq + 1)) });
  }
  return out;
}

function unescapeRdn(v: string): string {
  if (!v.includes('\\')) return v;
  const bytes: number[] = [];
  for (let i = 0; i < v.length; i++) {
    const c = v.charCodeAt(i);
    if (c === 0x5c && i + 1 < v.length) {
      const hex = v.slice(i + 1, i + 3);
      if (/^[0-9A-Fa-f]{2}$/.test(hex)) {
        bytes.push(parseInt(hex, 16));
        i += 2;
      } else {
        pushUtf8(bytes, v[i + 1] ?? '');
        i += 1;
      }
    } else {
      pushUtf8(bytes, v[i] ?? '');
    }
  }
  return Buffer.from(bytes).toString('utf8');
}

function pushUtf8(bytes: number[], ch: string): void {
  for (const b of Buffer.from(ch, 'utf8')) bytes.push(b);
}

/** RFC 4514 escaping, plus `\XX` for every byte outside printable ASCII. */
export function escapeRdnValue(v: string): string {
  let out = '';
  const buf = Buffer.from(v, 'utf8');
  for (let i = 0; i < buf.length; i++) {
    const b = buf[i] ?? 0;
    if (b < 0x20 || b > 0x7e) out += `\\${b.toString(16).toUpperCase().padStart(2, '0')}`;
    else {
      const ch = String.fromCharCode(b);
      if (',+"\\<>;='.includes(ch) || (i === 0 && (ch === '#' || ch === ' ')) || (i === buf.length - 1 && ch === ' ')) out += `\\${ch}`;
      else out += ch;
    }
  }
  return out;
}

/**
 * node:crypto prints SANs as `TYPE:value, TYPE:"json string"` (values with separators or
 * control characters are JSON-quoted since Node 17.3).
 */
export function parseSubjectAltName(san: string | undefined): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  if (san === undefined || san === '') return out;
  let i = 0;
  while (i < san.length) {
    const colon = san.indexOf(':', i);
    if (colon === -1) break;
    const type = san.slice(i, colon);
    let value: string;
    let next: number;
    if (san[colon + 1] === '"') {
      let j = colon + 2;
      while (j < san.length && san[j] !== '"') j += san[j] === '\\' ? 2 : 1;
      try {
        value = JSON.parse(san.slice(colon + 1, j + 1)) as string;
      } catch {
        value = san.slice(colon + 2, j);
      }
      next = san.indexOf(', ', j + 1);
    } else {
      next = san.indexOf(', ', colon + 1);
      value = san.slice(colon + 1, next === -1 ? san.length : next);
    }
    out.push([type, value]);
    if (next === -1) break;
    i = next + 2;
  }
  return out;
}

/** Percent-encode every byte outside printable ASCII (and space), so no header can be split. */
export function headerSafe(v: string): string {
  if (/^[\x21-\x7e]*$/.test(v)) return v;
  let out = '';
  for (const b of Buffer.from(v, 'utf8')) {
    out += b > 0x20 && b < 0x7f ? String.fromCharCode(b) : `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/** An XFCC value: header-safe, and quoted when it holds one of the format's separators. */
function xfccValue(v: string): string {
  const safe = headerSafe(v);
  return /[",;=\\]/.test(safe) ? `"${safe.replaceAll('\\', '\\\\').replaceAll('"', '\\"')}"` : safe;
}
