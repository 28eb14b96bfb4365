/**
 * HPACK (RFC 7541) for the sidecar's own HTTP/2 server: a decoder for request header blocks,
 * with the dynamic table, and a stateless encoder for response heads.
 *
 * The encoder never indexes (static-table names, literal values, no dynamic table): a response
 * head costs a few bytes more, and no header the app sends can be probed through the
 * compression context (the CRIME/HPACK-bomb class), and the decoder on the client side never
 * has to evict on our account.
 *
 * Errors are values: decode() returns a code, never throws. Any decoding error is a connection
 * error (COMPRESSION_ERROR, RFC 9113 4.3): the table can no longer be trusted to match the
 * peer's.
 */
import { huffmanDecode } from './huffman.js';

/** RFC 7541 Appendix A. Index 0 is unused. */
export const STATIC_TABLE: readonly (readonly [string, string])[] = [
  ['', ''], [':authority', ''], [':method', 'GET'], [':method', 'POST'], [':path', '/'], [':path', '/index.html'],
  [':scheme', 'http'], [':scheme', 'https'], [':status', '200'], [':status', '204'], [':status', '206'],
  [':status', '304'], [':status', '400'], [':status', '404'], [':status', '500'], ['accept-charset', ''],
  ['accept-encoding', 'gzip, deflate'], ['accept-language', ''], ['accept-ranges', ''], ['accept', ''],
  ['access-control-allow-origin', ''], ['age', ''], ['allow', ''], ['authorization', ''], ['cache-control', ''],
  ['content-disposition', ''], ['content-encoding', ''], ['content-language', ''], ['content-length', ''],
  ['content-location', ''], ['content-range', ''], ['content-type', ''], ['cookie', ''], ['date', ''], ['etag', ''],
  ['expect', ''], ['expires', ''], ['from', ''], ['host', ''], ['if-match', ''], ['if-modified-since', ''],
  ['if-none-match', ''], ['if-range', ''], ['if-unmodified-since', ''], ['last-modified', ''], ['link', ''],
  ['location', ''], ['max-forwards', ''], ['proxy-authenticate', ''], ['proxy-authorization', ''], ['range', ''],
  ['referer', ''], ['refresh', ''], ['retry-after', ''], ['server', ''], ['set-cookie', ''],
  ['strict-transport-security', ''], ['transfer-encoding', ''], ['user-agent', ''], ['vary', ''], ['via', ''],
  ['www-authenticate', ''],
];
const STATIC_LEN = STATIC_TABLE.length;
const EMPTY = Buffer.alloc(0);
/** RFC 7541 4.1: an entry's size is its name and value lengths plus 32. */
const ENTRY_OVERHEAD = 32;

export const HPACK_OK = 0;
/** Malformed block: a connection error (COMPRESSION_ERROR). */
export const HPACK_BAD = 1;
/**
 * The decoded list is over the header-list size or field-count limit. The block was still
 * decoded to its end (fields that enter the table built, the others stepped over), so the table
 * stays in step with the peer's: the request can be refused alone, the connection goes on.
 */
export const HPACK_TOO_LARGE = 2;
export type HpackResult = typeof HPACK_OK | typeof HPACK_BAD | typeof HPACK_TOO_LARGE;

/** A string or index may not claim more than this (far above any limit the sidecar sets). */
const MAX_INT = 2 ** 24;

/** Request-side state of one connection: the dynamic table, as a ring of name/value pairs. */
export class HpackDecoder {
  /** Entry i (0 = newest) is at ring[(head + i) % capacity]: names at 2k, values at 2k + 1. */
  #ring: string[] = new Array<string>(64);
  #head = 0;
  #count = 0;
  #size = 0;
  /** The size the peer last set (a dynamic table size update), at most #limit. */
  #max: number;
  /** What we allow (our SETTINGS_HEADER_TABLE_SIZE). */
  readonly #limit: number;
  readonly #maxListSize: number;
  readonly #maxFields: number;
  /** Scratch space for Huffman-decoded strings. */
  #scratch = Buffer.allocUnsafe(256);
  // The block being decoded, as fields: no closure or result object per call.
  #buf: Buffer = EMPTY;
  #p = 0;
  #end = 0;

  constructor(tableLimit = 4096, maxHeaderListSize = 16384, maxFields = 1024) {
    this.#limit = tableLimit;
    this.#max = tableLimit;
    this.#maxListSize = maxHeaderListSize;
    this.#maxFields = maxFields;
  }

  /** Entries and octets in the dynamic table (tests, and a gauge if ever needed). */
  get tableSize(): number {
    return this.#size;
  }
  get tableCount(): number {
    return this.#count;
  }

  /**
   * Decodes buf[start, end), one complete header block, appending name, value, name, value... to
   * `out`. Names are as sent (HTTP/2 requires lower case: the session checks it, not HPACK).
   */
  decode(buf: Buffer, start: number, end: number, out: string[]): HpackResult {
    this.#buf = buf;
    this.#p = start;
    this.#end = end;
    let listSize = 0;
    let fieldCount = 0;
    let tooLarge = false;
    let first = true;
    while (this.#p < end) {
      const b = buf[this.#p] as number;
      let name: string;
      let value: string;
      if (b >= 0x80) {
        // Indexed field (6.1).
        const idx = this.#int(7);
        if (idx <= 0) return HPACK_BAD;
        if (idx < STATIC_LEN) {
          const e = STATIC_TABLE[idx] as readonly [string, string];
          name = e[0];
          value = e[1];
        } else {
          const k = idx - STATIC_LEN;
          if (k >= this.#count) return HPACK_BAD;
          const at = ((this.#head + k) % (this.#ring.length >> 1)) << 1;
          name = this.#ring[at] as string;
          value = this.#ring[at + 1] as string;
        }
      } else if (b >= 0x40 || b < 0x20) {
        // Literal with incremental indexing (6.2.1, 6-bit index), or without / never indexed (6.2.2, 6.2.3, 4-bit).
        const indexing = b >= 0x40;
        const idx = this.#int(indexing ? 6 : 4);
        if (idx < 0) return HPACK_BAD;
        if (tooLarge && !indexing) {
          // Past the limits a field that does not enter the table is stepped over, not built.
          if ((idx === 0 && !this.#skipStr()) || (idx !== 0 && this.#name(idx) === null) || !this.#skipStr()) return HPACK_BAD;
          continue;
        }
        if (idx === 0) {
          const n = this.#str();
          if (n === null) return HPACK_BAD;
          name = n;
        } else {
          const n = this.#name(idx);
          if (n === null) return HPACK_BAD;
          name = n;
        }
        const v = this.#str();
        if (v === null) return HPACK_BAD;
        value = v;
        if (indexing) this.#add(name, value);
      } else {
        // Dynamic table size update (6.3): only at the start of a block (4.2), never above our limit.
        if (!first) return HPACK_BAD;
        const size = this.#int(5);
        if (size < 0 || size > this.#limit) return HPACK_BAD;
        this.#max = size;
        this.#evict(0);
        continue;
      }
      first = false;
      listSize += name.length + value.length + ENTRY_OVERHEAD;
      if (listSize > this.#maxListSize || ++fieldCount > this.#maxFields) tooLarge = true;
      // Over the limit the rest is still decoded (the table must follow), but not kept.
      if (!tooLarge) out.push(name, value);
    }
    this.#buf = EMPTY;
    return tooLarge ? HPACK_TOO_LARGE : HPACK_OK;
  }

  #name(idx: number): string | null {
    if (idx < STATIC_LEN) return (STATIC_TABLE[idx] as readonly [string, string])[0];
    const k = idx - STATIC_LEN;
    if (k >= this.#count) return null;
    return this.#ring[((this.#head + k) % (this.#ring.length >> 1)) << 1] as string;
  }

  /** An integer with an N-bit prefix (5.1); -1 when truncated or over MAX_INT. */
  #int(prefix: number): number {
    const buf = this.#buf;
    const mask = (1 << prefix) - 1;
    let v = (buf[this.#p++] as number) & mask;
    if (v < mask) return v;
    // MAX_INT (2^24) needs at most four continuation bytes: a fifth is refused before its
    // shift could reach float territory (0 * 2^1029 is NaN, which passes every comparison).
    for (let shift = 0; shift <= 21; shift += 7) {
      if (this.#p >= this.#end) return -1;
      const b = buf[this.#p++] as number;
      v += (b & 0x7f) * 2 ** shift;
      if (!(v <= MAX_INT)) return -1;
      if (b < 0x80) return v;
    }
    return -1;
  }

  /** A string literal (5.2), plain or Huffman-coded, as latin1; null when malformed. */
  #str(): string | null {
    if (this.#p >= this.#end) return null;
    const huffman = ((this.#buf[this.#p] as number) & 0x80) !== 0;
    const len = this.#int(7);
    if (len < 0 || len > this.#end - this.#p) return null;
    const start = this.#p;
    this.#p += len;
    if (!huffman) return this.#buf.toString('latin1', start, start + len);
    const n = this.#huffman(start, len);
    return n < 0 ? null : this.#scratch.toString('latin1', 0, n);
  }

  /** Huffman-decodes buf[start, start + len) into #scratch: the decoded length, or -1 when malformed. */
  #huffman(start: number, len: number): number {
    const need = Math.ceil((len * 8) / 5);
    if (need > this.#scratch.length) this.#scratch = Buffer.allocUnsafe(Math.max(need, this.#scratch.length * 2));
    return huffmanDecode(this.#buf, start, start + len, this.#scratch);
  }

  /** Steps over a string literal without building it (a Huffman one is still checked, 5.2). */
  #skipStr(): boolean {
    if (this.#p >= this.#end) return false;
    const huffman = ((this.#buf[this.#p] as number) & 0x80) !== 0;
    const len = this.#int(7);
    if (len < 0 || len > this.#end - this.#p) return false;
    const start = this.#p;
    this.#p += len;
    return !huffman || this.#huffman(start, len) >= 0;
  }

  #add(name: string, value: string): void {
    const size = name.length + value.length + ENTRY_OVERHEAD;
    // An entry larger than the table empties it and is not added (4.4).
    this.#evict(size);
    if (size > this.#max) return;
    let cap = this.#ring.length >> 1;
    if (this.#count === cap) {
      // Grow the ring, keeping entry order (newest first from index 0).
      const next: string[] = new Array<string>(cap * 4);
      for (let i = 0; i < this.#count; i++) {
        const at = ((this.#head + i) % cap) << 1;
        next[i << 1] = this.#ring[at] as string;
        next[(i << 1) + 1] = this.#ring[at + 1] as string;
      }
      this.#ring = next;
      this.#head = 0;
      cap *= 2;
    }
    this.#head = (this.#head - 1 + cap) % cap;
    this.#ring[this.#head << 1] = name;
    this.#ring[(this.#head << 1) + 1] = value;
    this.#count++;
    this.#size += size;
  }

  /** Evicts oldest entries until `room` more octets fit under the current maximum. */
  #evict(room: number): void {
    const cap = this.#ring.length >> 1;
    while (this.#count > 0 && this.#size + room > this.#max) {
      const at = ((this.#head + this.#count - 1) % cap) << 1;
      this.#size -= (this.#ring[at] as string).length + (this.#ring[at + 1] as string).length + ENTRY_OVERHEAD;
      this.#ring[at] = '';
      this.#ring[at + 1] = '';
      this.#count--;
    }
  }
}

/** Static-table name index for each name a response head commonly carries. */
const STATIC_NAME = new Map<string, number>();
for (let i = STATIC_LEN - 1; i > 0; i--) STATIC_NAME.set((STATIC_TABLE[i] as readonly [string, string])[0], i);
const STATUS_INDEX = new Map<number, number>([[200, 8], [204, 9], [206, 10], [304, 11], [400, 12], [404, 13], [500, 14]]);

/** Bytes an HPACK integer with an N-bit prefix takes. */
function intLength(v: number, prefix: number): number {
  const mask = (1 << prefix) - 1;
  if (v < mask) return 1;
  let n = 2;
  for (v -= mask; v >= 0x80; v = Math.floor(v / 128)) n++;
  return n;
}

function writeInt(out: Buffer, o: number, v: number, prefix: number, first: number): number {
  const mask = (1 << prefix) - 1;
  if (v < mask) {
    out[o] = first | v;
    return o + 1;
  }
  out[o++] = first | mask;
  for (v -= mask; v >= 0x80; v = Math.floor(v / 128)) out[o++] = (v % 128) | 0x80;
  out[o++] = v;
  return o;
}

/**
 * A response header block: `:status`, then each header as a literal without indexing (6.2.2),
 * its name from the static table when there, values as latin1 bytes (as the app sent them).
 * `headers` is flat [name, value, ...] with lower-case names, already checked for HTTP/2
 * (no connection-specific headers).
 */
export function encodeResponseHead(status: number, headers: readonly string[]): Buffer {
  const statusIdx = STATUS_INDEX.get(status);
  const statusText = statusIdx === undefined ? String(status) : '';
  let len = statusIdx === undefined ? 2 + statusText.length : 1;
  for (let i = 0; i + 1 < headers.length; i += 2) {
    const name = headers[i] as string;
    const value = headers[i + 1] as string;
    const idx = STATIC_NAME.get(name);
    len += idx === undefined ? 1 + intLength(name.length, 7) + name.length : intLength(idx, 4);
    len += intLength(value.length, 7) + value.length;
  }
  const out = Buffer.allocUnsafe(len);
  let o: number;
  if (statusIdx !== undefined) {
    out[0] = 0x80 | statusIdx;
    o = 1;
  } else {
    // Literal without indexing, name :status (index 8), 3-digit value.
    out[0] = 0x08;
    out[1] = statusText.length;
    o = 2 + out.write(statusText, 2, 'latin1');
  }
  for (let i = 0; i + 1 < headers.length; i += 2) {
    const name = headers[i] as string;
    const value = headers[i + 1] as string;
    const idx = STATIC_NAME.get(name);
    if (idx === undefined) {
      out[o++] = 0;
      o = writeInt(out, o, name.length, 7, 0);
      o += out.write(name, o, 'latin1');
    } else o = writeInt(out, o, idx, 4, 0);
    o = writeInt(out, o, value.length, 7, 0);
    o += out.write(value, o, 'latin1');
  }
  return out;
}
