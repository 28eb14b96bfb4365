/**
 * Request ids for requests that bring none: random UUIDv4 text (RFC 9562), as Envoy generates.
 * crypto.randomUUID builds its 36 characters by concatenating 20 small strings (~0.8 KB of
 * garbage per id under load); here the randomness comes 256 ids at a time and each id is written
 * into a byte template and read out as one string.
 */
import { randomFillSync } from 'node:crypto';

const BATCH = 256 * 16;
const random = Buffer.alloc(BATCH);
let used = BATCH;
const text = Buffer.from('00000000-0000-4000-8000-000000000000', 'latin1');
const HEX = Buffer.from('0123456789abcdef', 'latin1');
/** Where the two hex digits of each of the 16 bytes go. */
const AT = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];

export function newRequestId(): string {
  if (used === BATCH) {
    randomFillSync(random);
    used = 0;
  }
  for (let i = 0; i < 16; i++) {
    let b = random[used + i] as number;
    if (i === 6) b = (b & 0x0f) | 0x40; // version 4
    else if (i === 8) b = (b & 0x3f) | 0x80; // variant 10
    const p = AT[i] as number;
    text[p] = HEX[b >> 4] as number;
    text[p + 1] = HEX[b & 15] as number;
  }
  used += 16;
  return text.toString('latin1', 0, 36);
}

/** A client's own id is kept when it is a plain token (no spaces, quotes or control characters). */
const REQUEST_ID = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;

/** The request's id: the one it brings when well formed, else a new one. */
export function requestIdFor(incoming: string | string[] | undefined): string {
  return typeof incoming === 'string' && REQUEST_ID.test(incoming) ? incoming : newRequestId();
}
