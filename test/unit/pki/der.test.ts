import { describe, expect, it } from 'vitest';
import {
  DerCursor,
  DerError,
  TAG,
  children,
  decodeBitStringBytes,
  decodeBoolean,
  decodeIntegerHex,
  decodeOid,
  decodeTime,
  readRoot,
  readTlv,
} from '../../../src/pki/der.js';
import { PkiError } from '../../../src/pki/errors.js';
import { der, oidDer } from './util.js';

const b = (...bytes: number[]) => Buffer.from(bytes);

function expectDerError(fn: () => unknown, msg: RegExp): void {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(DerError);
    expect(e).toBeInstanceOf(PkiError);
    expect((e as DerError).code).toBe('ERR_DER');
    expect((e as Error).message).toMatch(msg);
    return;
  }
  throw new Error('expected a DerError');
}

describe('readTlv', () => {
  it('reads short and long form lengths', () => {
    expect(readTlv(b(0x04, 0x02, 0xaa, 0xbb), 0)).toEqual({
      tag: 0x04,
      headerLength: 2,
      length: 2,
      start: 0,
      contentStart: 2,
      end: 4,
    });
    const long = der(0x04, Buffer.alloc(300));
    expect(readTlv(long, 0)).toMatchObject({ headerLength: 4, length: 300, contentStart: 4, end: 304 });
    const mid = der(0x04, Buffer.alloc(200));
    expect(readTlv(mid, 0)).toMatchObject({ headerLength: 3, length: 200 });
  });

  it('reads at an offset, within a limit', () => {
    const buf = b(0xff, 0x30, 0x03, 0x02, 0x01, 0x05, 0xee);
    const seq = readTlv(buf, 1);
    expect(seq).toMatchObject({ tag: 0x30, start: 1, contentStart: 3, end: 6 });
    expect(readTlv(buf, 3, seq.end)).toMatchObject({ tag: 0x02, length: 1, end: 6 });
    expectDerError(() => readTlv(buf, 1, 5), /truncated/);
  });

  it('rejects malformed encodings', () => {
    expectDerError(() => readTlv(b(), 0), /truncated/);
    expectDerError(() => readTlv(b(0x30), 0), /truncated/);
    expectDerError(() => readTlv(b(0x04, 0x05, 1, 2), 0), /truncated/);
    expectDerError(() => readTlv(b(0x30, 0x80, 0, 0), 0), /indefinite/);
    expectDerError(() => readTlv(b(0x04, 0x81, 0x05, 1, 2, 3, 4, 5), 0), /non-minimal/);
    expectDerError(() => readTlv(b(0x04, 0x82, 0x00, 0x85), 0), /non-minimal/);
    expectDerError(() => readTlv(b(0x04, 0x85, 1, 1, 1, 1, 1), 0), /too large/);
    expectDerError(() => readTlv(b(0x04, 0x82, 0x01), 0), /truncated/);
    expectDerError(() => readTlv(b(0x1f, 0x81, 0x01, 0x00), 0), /multi-byte/);
  });

  it('readRoot refuses trailing bytes', () => {
    expect(readRoot(b(0x05, 0x00)).end).toBe(2);
    expectDerError(() => readRoot(b(0x05, 0x00, 0x00)), /trailing/);
  });
});

describe('children and DerCursor', () => {
  const seq = der(0x30, der(0x02, b(1)), der(0x05), der(0xa0, der(0x02, b(2))));

  it('iterates children in order', () => {
    const kids = children(seq, readRoot(seq));
    expect(kids.map((k) => k.tag)).toEqual([0x02, 0x05, 0xa0]);
    expectDerError(() => children(seq, kids[0]!), /not constructed/);
  });

  it('a child cannot overrun its parent', () => {
    // SEQUENCE claims 3 bytes, its INTEGER child claims 4.
    const bad = b(0x30, 0x03, 0x02, 0x04, 0x01, 0x02, 0x03);
    expectDerError(() => children(bad, readTlv(bad, 0, 5)), /truncated/);
  });

  it('handles optional fields', () => {
    const c = new DerCursor(seq, readRoot(seq));
    expect(c.optional(0xa0)).toBeNull();
    expect(c.expect(TAG.INTEGER, 'n').length).toBe(1);
    expect(c.peekTag()).toBe(TAG.NULL);
    expectDerError(() => c.expect(TAG.INTEGER, 'second int'), /second int: expected tag 0x02, found 0x05/);
    expect(c.optional(0xa0)).not.toBeNull();
    expect(c.done).toBe(true);
    expect(c.peekTag()).toBe(-1);
    expectDerError(() => c.next('more'), /more: missing/);
  });

  it('finish() flags unread elements', () => {
    const c = new DerCursor(seq, readRoot(seq));
    c.next('a');
    expectDerError(() => c.finish('thing'), /thing: unexpected trailing/);
  });
});

describe('decodeOid', () => {
  const cases = [
    '1.2.840.113549.1.1.11',
    '1.2.840.10045.4.3.2',
    '1.3.101.112',
    '2.5.29.19',
    '0.9.2342.19200300.100.1.25',
    '2.999.3',
    '2.25.329800735698586629295641978511506172918',
    '1.3.6.1.4.1.311.21.8.9007199254740993',
  ];
  for (const oid of cases) {
    it(`round-trips ${oid}`, () => {
      const enc = oidDer(oid);
      expect(decodeOid(enc, readRoot(enc))).toBe(oid);
    });
  }

  it('matches a known encoding', () => {
    const enc = b(0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b);
    expect(decodeOid(enc, readRoot(enc))).toBe('1.2.840.113549.1.1.11');
  });

  it('rejects bad OIDs', () => {
    expectDerError(() => decodeOid(b(0x06, 0x00), readTlv(b(0x06, 0x00), 0)), /empty/);
    expectDerError(() => decodeOid(b(0x06, 0x02, 0x2a, 0x86), readTlv(b(0x06, 0x02, 0x2a, 0x86), 0)), /truncated/);
    expectDerError(() => decodeOid(b(0x06, 0x02, 0x80, 0x01), readTlv(b(0x06, 0x02, 0x80, 0x01), 0)), /non-minimal/);
    expectDerError(() => decodeOid(b(0x02, 0x01, 0x01), readTlv(b(0x02, 0x01, 0x01), 0)), /expected tag 0x06/);
  });
});

describe('decodeIntegerHex', () => {
  const hex = (...bytes: number[]) => {
    const enc = der(0x02, Buffer.from(bytes));
    return decodeIntegerHex(enc, readRoot(enc));
  };
  it('strips leading zero bytes and upper-cases', () => {
    expect(hex(0x00, 0x80, 0xab)).toBe('80AB');
    expect(hex(0x01, 0x0a)).toBe('010A');
    expect(hex(0x00, 0x00, 0x7f)).toBe('7F');
    expect(hex(0x5a)).toBe('5A');
  });
  it('zero and negatives follow OpenSSL BN_bn2hex', () => {
    expect(hex(0x00)).toBe('0');
    expect(hex(0xff)).toBe('-01');
    expect(hex(0x80)).toBe('-80');
    expect(hex(0xff, 0x00)).toBe('-0100');
  });
  it('rejects an empty INTEGER', () => {
    expectDerError(() => hex(), /empty/);
  });
});

describe('decodeTime', () => {
  const t = (tag: number, s: string) => {
    const enc = der(tag, Buffer.from(s, 'latin1'));
    return decodeTime(enc, readRoot(enc));
  };
  it('decodes UTCTime with the 1950/2049 pivot', () => {
    expect(t(TAG.UTC_TIME, '491231235959Z').toISOString()).toBe('2049-12-31T23:59:59.000Z');
    expect(t(TAG.UTC_TIME, '500101000000Z').toISOString()).toBe('1950-01-01T00:00:00.000Z');
    expect(t(TAG.UTC_TIME, '240229120000Z').toISOString()).toBe('2024-02-29T12:00:00.000Z');
  });
  it('decodes GeneralizedTime, with optional fraction', () => {
    expect(t(TAG.GENERALIZED_TIME, '20500101000000Z').toISOString()).toBe('2050-01-01T00:00:00.000Z');
    expect(t(TAG.GENERALIZED_TIME, '99991231235959Z').toISOString()).toBe('9999-12-31T23:59:59.000Z');
    expect(t(TAG.GENERALIZED_TIME, '20240102030405.5Z').toISOString()).toBe('2024-01-02T03:04:05.500Z');
    expect(t(TAG.GENERALIZED_TIME, '20240102030405.123456Z').toISOString()).toBe('2024-01-02T03:04:05.123Z');
  });
  it('rejects non-RFC 5280 forms and impossible dates', () => {
    expectDerError(() => t(TAG.UTC_TIME, '2401020304Z'), /YYMMDDHHMMSSZ/);
    expectDerError(() => t(TAG.UTC_TIME, '240102030405+'), /UTC/);
    expectDerError(() => t(TAG.UTC_TIME, '24010203040aZ'), /digit/);
    expectDerError(() => t(TAG.UTC_TIME, '241301000000Z'), /range/);
    expectDerError(() => t(TAG.UTC_TIME, '230229000000Z'), /range/);
    expectDerError(() => t(TAG.UTC_TIME, '240101240000Z'), /range/);
    expectDerError(() => t(TAG.GENERALIZED_TIME, '20240102030405'), /YYYYMMDDHHMMSSZ/);
    expectDerError(() => t(TAG.GENERALIZED_TIME, '20240102030405+0100'), /UTC/);
    expectDerError(() => t(TAG.GENERALIZED_TIME, '20240102030405.Z'), /fraction/);
    expectDerError(() => t(TAG.INTEGER, '1'), /expected a time/);
  });
});

describe('other primitives', () => {
  it('BIT STRING without unused bits is returned as a view', () => {
    const enc = der(0x03, b(0x00, 0xde, 0xad));
    const v = decodeBitStringBytes(enc, readRoot(enc));
    expect(v).toEqual(b(0xde, 0xad));
    expect(v.buffer).toBe(enc.buffer); // zero-copy
    const bad = der(0x03, b(0x03, 0xd8));
    expectDerError(() => decodeBitStringBytes(bad, readRoot(bad)), /unused bits/);
  });
  it('BOOLEAN must be 0x00 or 0xFF', () => {
    expect(decodeBoolean(b(0x01, 0x01, 0xff), readTlv(b(0x01, 0x01, 0xff), 0))).toBe(true);
    expect(decodeBoolean(b(0x01, 0x01, 0x00), readTlv(b(0x01, 0x01, 0x00), 0))).toBe(false);
    expectDerError(() => decodeBoolean(b(0x01, 0x01, 0x01), readTlv(b(0x01, 0x01, 0x01), 0)), /BOOLEAN/);
  });
});
