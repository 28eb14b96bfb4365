/**
 * Minimal, zero-copy DER reader.
 *
 * Runs on every TLS handshake (signature algorithm of the client leaf, serial for revocation), so
 * it never copies the input: a TLV is just offsets into the caller's Buffer, and values are
 * decoded straight from those bytes. Only what X.509 certificates and CRLs need is supported:
 * single-byte tags, definite lengths (DER forbids indefinite ones) up to 4 length bytes.
 *
 * Strictness is deliberate: anything that is not well-formed DER throws `DerError`
 * (code `ERR_DER`). Callers on the handshake path treat a throw as "refuse", so being stricter
 * than OpenSSL fails closed rather than open.
 */
import { PkiError } from './errors.js';

export class DerError extends PkiError {
  constructor(message: string) {
    super('ERR_DER', message);
    this.name = 'DerError';
  }
}

/** Universal tags (with the constructed bit where DER requires it) used by X.509. */
export const TAG = {
  BOOLEAN: 0x01,
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  NULL: 0x05,
  OID: 0x06,
  UTF8_STRING: 0x0c,
  PRINTABLE_STRING: 0x13,
  IA5_STRING: 0x16,
  UTC_TIME: 0x17,
  GENERALIZED_TIME: 0x18,
  SEQUENCE: 0x30,
  SET: 0x31,
} as const;

/** Context-specific tag `[n]`, constructed (EXPLICIT tagging, e.g. `[0] EXPLICIT Version`). */
export function contextTag(n: number, constructed = true): number {
  return 0x80 | (constructed ? 0x20 : 0) | n;
}

/** One tag-length-value: offsets into the buffer it was read from. */
export interface Tlv {
  /** Identifier octet (class, constructed bit and tag number). */
  tag: number;
  headerLength: number;
  /** Content length in bytes. */
  length: number;
  /** Offset of the identifier octet. */
  start: number;
  contentStart: number;
  /** Offset just past the content (exclusive). */
  end: number;
}

/**
 * Reads the TLV starting at `offset`, which must end at or before `limit` (default: the end of
 * the buffer; pass the parent's `end` so a child cannot overrun its parent).
 */
export function readTlv(buf: Uint8Array, offset: number, limit: number = buf.length): Tlv {
  if (limit > buf.length) limit = buf.length;
  if (offset < 0 || offset + 2 > limit) {
    throw new DerError(`truncated DER: no tag and length at offset ${offset}`);
  }
  const tag = buf[offset]!;
  if ((tag & 0x1f) === 0x1f) {
    throw new DerError(`unsupported multi-byte DER tag at offset ${offset}`);
  }
  const first = buf[offset + 1]!;
  let length: number;
  let headerLength: number;
  if (first < 0x80) {
    length = first;
    headerLength = 2;
  } else {
    const n = first & 0x7f;
    if (n === 0) throw new DerError(`indefinite length at offset ${offset} (not DER)`);
    // 4 bytes is far beyond any certificate or CRL we accept, and keeps `length` a small integer.
    if (n > 4) throw new DerError(`DER length too large at offset ${offset}`);
    if (offset + 2 + n > limit) throw new DerError(`truncated DER length at offset ${offset}`);
    length = 0;
    for (let i = 0; i < n; i++) length = length * 256 + buf[offset + 2 + i]!;
    // DER requires the shortest length encoding: no leading zero byte, no long form below 128.
    if (buf[offset + 2] === 0 || length < 0x80) {
      throw new DerError(`non-minimal DER length at offset ${offset}`);
    }
    headerLength = 2 + n;
  }
  const contentStart = offset + headerLength;
  const end = contentStart + length;
  if (end > limit) {
    throw new DerError(`truncated DER: element at offset ${offset} needs ${length} bytes`);
  }
  return { tag, headerLength, length, start: offset, contentStart, end };
}

/** Reads a TLV that must be the whole buffer (no trailing garbage). */
export function readRoot(buf: Uint8Array): Tlv {
  const tlv = readTlv(buf, 0);
  if (tlv.end !== buf.length) {
    throw new DerError(`${buf.length - tlv.end} trailing bytes after DER element`);
  }
  return tlv;
}

function tagName(tag: number): string {
  return `0x${tag.toString(16).padStart(2, '0')}`;
}

export function expectTag(tlv: Tlv, tag: number, what: string): Tlv {
  if (tlv.tag !== tag) {
    throw new DerError(`${what}: expected tag ${tagName(tag)}, found ${tagName(tlv.tag)}`);
  }
  return tlv;
}

/** All children of a constructed TLV, in order. */
export function children(buf: Uint8Array, parent: Tlv): Tlv[] {
  if ((parent.tag & 0x20) === 0) throw new DerError(`tag ${tagName(parent.tag)} is not constructed`);
  const out: Tlv[] = [];
  let off = parent.contentStart;
  while (off < parent.end) {
    const child = readTlv(buf, off, parent.end);
    out.push(child);
    off = child.end;
  }
  return out;
}

/**
 * Sequential reader over the children of a constructed TLV, for structures with OPTIONAL
 * fields (TBSCertificate, TBSCertList) where indexing into `children()` would be awkward.
 */
export class DerCursor {
  private off: number;
  private readonly limit: number;

  constructor(
    private readonly buf: Uint8Array,
    parent: Tlv,
  ) {
    if ((parent.tag & 0x20) === 0) {
      throw new DerError(`tag ${tagName(parent.tag)} is not constructed`);
    }
    this.off = parent.contentStart;
    this.limit = parent.end;
  }

  get done(): boolean {
    return this.off >= this.limit;
  }

  /** Tag of the next child, or -1 at the end. */
  peekTag(): number {
    return this.off < this.limit ? this.buf[this.off]! : -1;
  }

  next(what: string): Tlv {
    if (this.off >= this.limit) throw new DerError(`${what}: missing`);
    const tlv = readTlv(this.buf, this.off, this.limit);
    this.off = tlv.end;
    return tlv;
  }

  expect(tag: number, what: string): Tlv {
    return expectTag(this.next(what), tag, what);
  }

  /** The next child if it has `tag`, otherwise null (and nothing is consumed). */
  optional(tag: number): Tlv | null {
    if (this.peekTag() !== tag) return null;
    return this.next('optional element');
  }

  /** Asserts there is nothing left (trailing fields would mean we misread the structure). */
  finish(what: string): void {
    if (this.off < this.limit) throw new DerError(`${what}: unexpected trailing element`);
  }
}

/** The whole TLV (header included) as a view, e.g. a Name to compare byte for byte. */
export function tlvBytes(buf: Buffer, tlv: Tlv): Buffer {
  return buf.subarray(tlv.start, tlv.end);
}

/** The content octets as a view. */
export function contentBytes(buf: Buffer, tlv: Tlv): Buffer {
  return buf.subarray(tlv.contentStart, tlv.end);
}

/** OBJECT IDENTIFIER -> dotted string ("1.2.840.113549.1.1.11"). */
export function decodeOid(buf: Uint8Array, tlv: Tlv): string {
  expectTag(tlv, TAG.OID, 'OBJECT IDENTIFIER');
  if (tlv.length === 0) throw new DerError('empty OBJECT IDENTIFIER');
  let out = '';
  let first = true;
  let i = tlv.contentStart;
  while (i < tlv.end) {
    if (buf[i] === 0x80) throw new DerError('non-minimal OBJECT IDENTIFIER arc');
    // Arcs are usually small; fall back to BigInt only for huge ones (e.g. 2.25.<uuid>).
    let n = 0;
    let big: bigint | null = null;
    let b: number;
    do {
      if (i >= tlv.end) throw new DerError('truncated OBJECT IDENTIFIER arc');
      b = buf[i++]!;
      if (big === null && n > 0x3fffffffffff) big = BigInt(n);
      if (big !== null) big = (big << 7n) | BigInt(b & 0x7f);
      else n = n * 128 + (b & 0x7f);
    } while (b & 0x80);
    if (first) {
      first = false;
      if (big !== null) {
        out = `2.${big - 80n}`;
      } else if (n < 40) out = `0.${n}`;
      else if (n < 80) out = `1.${n - 40}`;
      else out = `2.${n - 80}`;
    } else {
      out += `.${big !== null ? big.toString() : n}`;
    }
  }
  return out;
}

const HEX = '0123456789ABCDEF';

/**
 * INTEGER -> upper-case hex of the magnitude with leading zero bytes stripped ("0" for zero,
 * "-" prefix for negatives). This is exactly OpenSSL's BN_bn2hex, hence what Node's
 * `X509Certificate.serialNumber` returns, so serials from CRLs and certs compare as strings.
 */
export function decodeIntegerHex(buf: Uint8Array, tlv: Tlv): string {
  expectTag(tlv, TAG.INTEGER, 'INTEGER');
  if (tlv.length === 0) throw new DerError('empty INTEGER');
  const negative = (buf[tlv.contentStart]! & 0x80) !== 0;
  if (negative) return `-${negativeMagnitudeHex(buf, tlv)}`;
  let i = tlv.contentStart;
  while (i < tlv.end && buf[i] === 0) i++;
  if (i === tlv.end) return '0';
  let out = '';
  for (; i < tlv.end; i++) {
    const b = buf[i]!;
    out += HEX[b >> 4]! + HEX[b & 15]!;
  }
  return out;
}

function negativeMagnitudeHex(buf: Uint8Array, tlv: Tlv): string {
  // Two's complement: magnitude = ~x + 1. Rare (broken CAs), so allocation is fine here.
  const mag = new Uint8Array(tlv.length);
  let carry = 1;
  for (let i = tlv.length - 1; i >= 0; i--) {
    const v = (~buf[tlv.contentStart + i]! & 0xff) + carry;
    mag[i] = v & 0xff;
    carry = v >> 8;
  }
  let i = 0;
  while (i < mag.length - 1 && mag[i] === 0) i++;
  let out = '';
  for (; i < mag.length; i++) {
    const b = mag[i]!;
    out += HEX[b >> 4]! + HEX[b & 15]!;
  }
  return out;
}

/** Small non-negative INTEGER (version fields, pathLen). */
export function decodeSmallInt(buf: Uint8Array, tlv: Tlv): number {
  expectTag(tlv, TAG.INTEGER, 'INTEGER');
  if (tlv.length === 0 || tlv.length > 6) throw new DerError('INTEGER out of range');
  if ((buf[tlv.contentStart]! & 0x80) !== 0) throw new DerError('negative INTEGER');
  let n = 0;
  for (let i = tlv.contentStart; i < tlv.end; i++) n = n * 256 + buf[i]!;
  return n;
}

function digits(buf: Uint8Array, at: number, count: number): number {
  let n = 0;
  for (let i = 0; i < count; i++) {
    const c = buf[at + i]! - 0x30;
    if (c < 0 || c > 9) throw new DerError('invalid digit in time value');
    n = n * 10 + c;
  }
  return n;
}

/**
 * UTCTime (YYMMDDHHMMSSZ, years 1950-2049) or GeneralizedTime (YYYYMMDDHHMMSS[.fff]Z) -> Date.
 * Only the forms RFC 5280 allows: UTC ("Z"), seconds present.
 */
export function decodeTime(buf: Uint8Array, tlv: Tlv): Date {
  const s = tlv.contentStart;
  let year: number;
  let p: number;
  if (tlv.tag === TAG.UTC_TIME) {
    if (tlv.length !== 13) throw new DerError('UTCTime must be YYMMDDHHMMSSZ');
    const yy = digits(buf, s, 2);
    year = yy < 50 ? 2000 + yy : 1900 + yy;
    p = s + 2;
  } else if (tlv.tag === TAG.GENERALIZED_TIME) {
    if (tlv.length < 15) throw new DerError('GeneralizedTime must be YYYYMMDDHHMMSSZ');
    year = digits(buf, s, 4);
    p = s + 4;
  } else {
    throw new DerError(`expected a time, found tag ${tagName(tlv.tag)}`);
  }
  const month = digits(buf, p, 2);
  const day = digits(buf, p + 2, 2);
  const hour = digits(buf, p + 4, 2);
  const minute = digits(buf, p + 6, 2);
  const second = digits(buf, p + 8, 2);
  p += 10;
  let ms = 0;
  if (tlv.tag === TAG.GENERALIZED_TIME && buf[p] === 0x2e /* . */) {
    p++;
    const fracStart = p;
    while (p < tlv.end - 1) {
      const c = buf[p]! - 0x30;
      if (c < 0 || c > 9) throw new DerError('invalid fraction in GeneralizedTime');
      if (p - fracStart < 3) ms = ms * 10 + c;
      p++;
    }
    const n = p - fracStart;
    if (n === 0) throw new DerError('empty fraction in GeneralizedTime');
    for (let k = n; k < 3; k++) ms *= 10;
  }
  if (p !== tlv.end - 1 || buf[p] !== 0x5a /* Z */) {
    throw new DerError('time must be in UTC and end with Z');
  }
  if (month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || second > 59) {
    throw new DerError('time value out of range');
  }
  const t = Date.UTC(year, month - 1, day, hour, minute, second, ms);
  const d = new Date(t);
  // Date.UTC silently rolls Feb 30 over into March; DER must not.
  if (d.getUTCDate() !== day) throw new DerError('time value out of range');
  return d;
}

/** BIT STRING content with no unused bits (signatures, keys), as a view. */
export function decodeBitStringBytes(buf: Buffer, tlv: Tlv): Buffer {
  expectTag(tlv, TAG.BIT_STRING, 'BIT STRING');
  if (tlv.length === 0) throw new DerError('empty BIT STRING');
  if (buf[tlv.contentStart] !== 0) throw new DerError('BIT STRING with unused bits');
  return buf.subarray(tlv.contentStart + 1, tlv.end);
}

/** BOOLEAN (DER: 0x00 or 0xFF only). */
export function decodeBoolean(buf: Uint8Array, tlv: Tlv): boolean {
  expectTag(tlv, TAG.BOOLEAN, 'BOOLEAN');
  const v = buf[tlv.contentStart];
  if (tlv.length !== 1 || (v !== 0 && v !== 0xff)) throw new DerError('invalid BOOLEAN');
  return v === 0xff;
}
