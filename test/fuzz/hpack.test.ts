/**
 * Seeded fuzz of transport/h2/hpack.ts and huffman.ts (RFC 7541): random bytes, blocks built from a
 * grammar of HPACK representations (with overlong integers and lying lengths), and mutations of
 * valid blocks from a model encoder. Invariants: decode() returns one of its codes and never
 * throws, reads nothing outside [start, end), keeps within the header-list limits and the table
 * size, and decodes every valid block back to exactly the list encoded (the table in step with
 * the encoder's); the Huffman decoder accepts exactly the canonical encodings. Then a differential
 * against nghttp2 (node:http2's server on a loopback h2c connection): the same header blocks must
 * be refused as COMPRESSION_ERROR by both or by neither, and decode to the same fields.
 */
import http2 from 'node:http2';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HPACK_BAD, HPACK_OK, HPACK_TOO_LARGE, HpackDecoder, STATIC_TABLE, encodeResponseHead } from '../../src/transport/h2/hpack.js';
import type { HpackResult } from '../../src/transport/h2/hpack.js';
import { huffmanDecode, huffmanEncode } from '../../src/transport/h2/huffman.js';
import * as F from '../adversarial/h2frames.js';
import { ModelEncoder, SEED_TAG, edgeByte, fieldRepArb, fuzzParams, fuzzTimeout, headerListArb, mutate, mutationArb } from './fuzz.js';
import type { FieldRep, Header } from './fuzz.js';

interface Limits {
  readonly table: number;
  readonly listSize: number;
  readonly fields: number;
}
const limitsArb: fc.Arbitrary<Limits> = fc.record({
  table: fc.constantFrom(0, 64, 256, 4096),
  listSize: fc.oneof(fc.integer({ min: 0, max: 600 }), fc.constant(16384)),
  fields: fc.oneof(fc.integer({ min: 0, max: 20 }), fc.constant(1024)),
});

interface Decoded {
  readonly rc: HpackResult;
  readonly fields: string[];
  readonly tableSize: number;
  readonly tableCount: number;
}

/**
 * Decodes `block` placed inside other bytes (so reading outside [start, end) shows), checking the
 * invariants every outcome must keep.
 */
function decodeChecked(d: HpackDecoder, block: Uint8Array, limits: Limits, garbage: Uint8Array = new Uint8Array([0xff, 0x80])): Decoded {
  const buf = Buffer.concat([garbage, block, garbage]);
  const out: string[] = [];
  const rc = d.decode(buf, garbage.length, garbage.length + block.length, out);
  // Plain checks, one expect: this runs thousands of times.
  const broken: string[] = [];
  // Widened: the fuzz checks the decoder keeps to its three results, whatever its type says.
  const code: number = rc;
  if (code !== HPACK_OK && code !== HPACK_BAD && code !== HPACK_TOO_LARGE) broken.push(`result ${code}`);
  if (out.length % 2 !== 0 || out.some((x) => typeof x !== 'string')) broken.push('fields not name/value strings');
  if (rc !== HPACK_BAD) {
    if (out.length / 2 > limits.fields) broken.push(`${out.length / 2} fields over ${limits.fields}`);
    let size = 0;
    for (let i = 0; i < out.length; i += 2) size += (out[i] as string).length + (out[i + 1] as string).length + 32;
    if (size > limits.listSize) broken.push(`list size ${size} over ${limits.listSize}`);
  }
  if (d.tableSize > limits.table) broken.push(`table size ${d.tableSize} over ${limits.table}`);
  if (d.tableCount * 32 > d.tableSize) broken.push(`${d.tableCount} entries in ${d.tableSize} octets`);
  expect(broken, `block ${Buffer.from(block).toString('hex')}`).toEqual([]);
  return { rc, fields: out, tableSize: d.tableSize, tableCount: d.tableCount };
}

/** The fields the decoder must return for `headers` under `limits`: the longest prefix within them. */
function expected(headers: readonly Header[], limits: Limits): { rc: HpackResult; fields: string[] } {
  const fields: string[] = [];
  let size = 0;
  for (let i = 0; i < headers.length; i++) {
    const [n, v] = headers[i] as Header;
    size += n.length + v.length + 32;
    if (size > limits.listSize || i + 1 > limits.fields) return { rc: HPACK_TOO_LARGE, fields };
    fields.push(n, v);
  }
  return { rc: HPACK_OK, fields };
}

interface BlockSpec {
  readonly headers: Header[];
  readonly reps: FieldRep[];
  /** Fractions of the table limit for up to two size updates at the block's start. */
  readonly updates: number[];
}
const blockSpecArb: fc.Arbitrary<BlockSpec> = fc.record({
  headers: headerListArb(),
  reps: fc.array(fieldRepArb, { minLength: 1, maxLength: 6 }),
  updates: fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 2 }),
});

function encodeBlocks(enc: ModelEncoder, specs: readonly BlockSpec[], table: number): Buffer[] {
  return specs.map((s) => enc.block(s.headers, s.reps, s.updates.map((f) => Math.floor(f * table))));
}

describe(`HPACK decoder fuzz (${SEED_TAG})`, () => {
  it('decodes every valid block back to the fields encoded, within the limits, its table in step with the encoder', () => {
    fc.assert(
      fc.property(limitsArb, fc.array(blockSpecArb, { minLength: 1, maxLength: 4 }), (limits, specs) => {
        const enc = new ModelEncoder(limits.table);
        const d = new HpackDecoder(limits.table, limits.listSize, limits.fields);
        for (const spec of specs) {
          const [block] = encodeBlocks(enc, [spec], limits.table) as [Buffer];
          const got = decodeChecked(d, block, limits);
          expect({ rc: got.rc, fields: got.fields }).toEqual(expected(spec.headers, limits));
          expect([got.tableCount, got.tableSize]).toEqual([enc.entries.length, enc.size]);
        }
      }),
      fuzzParams(150),
    );
  });

  it('reads back what the response encoder writes', () => {
    const headerArb = fc.tuple(
      fc.oneof(fc.constantFrom(...STATIC_TABLE.slice(15).map((e) => e[0])), fc.stringMatching(/^[a-z][a-z0-9-]{0,30}$/)),
      fc.oneof(fc.string({ maxLength: 20 }), fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b).toString('latin1'))),
    );
    fc.assert(
      fc.property(fc.integer({ min: 100, max: 999 }), fc.array(headerArb, { maxLength: 12 }), (status, headers) => {
        // Values as the app's latin1 bytes read (code points over 255 have no byte of their own).
        const flat = headers.flatMap(([n, v]) => [n, Buffer.from(v, 'latin1').toString('latin1')]);
        const got = decodeChecked(new HpackDecoder(), encodeResponseHead(status, flat), { table: 4096, listSize: 1 << 20, fields: 1 << 10 });
        expect(got.rc).toBe(HPACK_OK);
        expect(got.fields).toEqual([':status', String(status), ...flat]);
        // Never indexes: nothing the app sends is kept in a compression context.
        expect(got.tableCount).toBe(0);
      }),
      fuzzParams(100),
    );
  });

  it('random bytes: a code, never a throw, nothing read outside the block, within the limits', () => {
    fc.assert(
      fc.property(limitsArb, fc.uint8Array({ maxLength: 200 }), fc.uint8Array({ minLength: 1, maxLength: 4 }), (limits, bytes, garbage) => {
        const a = decodeChecked(new HpackDecoder(limits.table, limits.listSize, limits.fields), bytes, limits, garbage);
        // The same block alone (nothing around it) decodes the same: the bytes around were never read.
        const b = decodeChecked(new HpackDecoder(limits.table, limits.listSize, limits.fields), bytes, limits, new Uint8Array(0));
        expect(b).toEqual(a);
      }),
      fuzzParams(600),
    );
  });

  it('blocks from a grammar of representations, with overlong integers and lying lengths', () => {
    fc.assert(
      fc.property(limitsArb, fc.array(representation(6), { maxLength: 12 }), (limits, reps) => {
        const block = Buffer.concat(reps);
        const a = decodeChecked(new HpackDecoder(limits.table, limits.listSize, limits.fields), block, limits);
        const b = decodeChecked(new HpackDecoder(limits.table, limits.listSize, limits.fields), block, limits, new Uint8Array(0));
        expect(b).toEqual(a);
      }),
      fuzzParams(500),
    );
  });

  it('mutated valid blocks, after a first block filled the table: a code, within the limits; a decoder that did not refuse reads on', () => {
    fc.assert(
      fc.property(limitsArb, blockSpecArb, blockSpecArb, fc.array(mutationArb, { minLength: 1, maxLength: 4 }), (limits, first, second, muts) => {
        const enc = new ModelEncoder(limits.table);
        const [b1, b2] = encodeBlocks(enc, [first, second], limits.table) as [Buffer, Buffer];
        const d = new HpackDecoder(limits.table, limits.listSize, limits.fields);
        expect(decodeChecked(d, b1, limits).rc).toBe(expected(first.headers, limits).rc);
        const got = decodeChecked(d, mutate(b2, muts), limits);
        if (got.rc !== HPACK_BAD) {
          // Still a working decoder: a static-table block reads as it should.
          const again = decodeChecked(d, Buffer.from([0x82, 0x87, 0x84]), limits);
          expect({ rc: again.rc, fields: again.fields }).toEqual(expected([[':method', 'GET'], [':scheme', 'https'], [':path', '/']], limits));
        }
      }),
      fuzzParams(400),
    );
  });
});

/** An HPACK integer with an N-bit prefix; `pad` > 0 writes a multi-byte one overlong (zero groups at its end, same value). */
function intBytes(value: number, prefix: number, first: number, pad: number): Buffer {
  const mask = (1 << prefix) - 1;
  if (pad === 0 || value < mask) return F.hpackInt(value, prefix, first);
  return Buffer.concat([Buffer.from([first | mask]), overlong(value - mask, pad)]);
}

/** `v` as 7-bit groups, then `pad` more groups of zero before the last (overlong forms). */
function overlong(v: number, pad: number): Buffer {
  const groups: number[] = [];
  do {
    groups.push(v % 128);
    v = Math.floor(v / 128);
  } while (v > 0);
  for (let i = 0; i < pad; i++) groups.push(0);
  return Buffer.from(groups.map((g, i) => (i < groups.length - 1 ? g | 0x80 : g)));
}

const intValueArb = fc.oneof(fc.integer({ min: 0, max: 130 }), fc.constantFrom(61, 62, 63, 64, 126, 127, 128, 4096, 4097, 2 ** 24, 2 ** 24 + 1, 2 ** 31), fc.nat());

/** One representation (6.1-6.3) with plausible or broken parts; `maxPad` bounds the overlong integer forms. */
const representation = (maxPad: number): fc.Arbitrary<Buffer> => fc.oneof(
  // Indexed (6.1).
  fc.tuple(intValueArb, fc.integer({ min: 0, max: maxPad })).map(([v, pad]) => intBytes(v, 7, 0x80, pad)),
  // Literals (6.2.x): index (0 = new name), then strings.
  fc
    .tuple(
      fc.constantFrom<[number, number]>([6, 0x40], [4, 0x00], [4, 0x10]),
      fc.oneof(fc.constant(0), intValueArb),
      fc.integer({ min: 0, max: maxPad }),
      fc.array(stringArb(maxPad), { minLength: 1, maxLength: 2 }),
    )
    .map(([[prefix, first], idx, pad, strs]) => Buffer.concat([intBytes(idx, prefix, first, pad), ...strs])),
  // Dynamic table size update (6.3).
  fc.tuple(intValueArb, fc.integer({ min: 0, max: maxPad })).map(([v, pad]) => intBytes(v, 5, 0x20, pad)),
  // Anything.
  fc.uint8Array({ minLength: 1, maxLength: 6 }).map((b) => Buffer.from(b)),
);

function stringArb(maxPad: number): fc.Arbitrary<Buffer> {
  return fc
    .tuple(fc.uint8Array({ maxLength: 24 }), fc.boolean(), fc.integer({ min: -3, max: 3 }), fc.integer({ min: 0, max: maxPad }), fc.boolean())
    .map(([raw, huffman, lie, pad, rawHuffman]) => {
      // A Huffman string is either a real encoding or raw bytes flagged as one (mostly malformed).
      const bytes = huffman && !rawHuffman ? huffmanEncode(raw) : Buffer.from(raw);
      const len = Math.max(0, bytes.length + lie);
      return Buffer.concat([intBytes(len, 7, huffman ? 0x80 : 0, pad), bytes]);
    });
}

describe(`Huffman fuzz (${SEED_TAG})`, () => {
  const decode = (b: Uint8Array): Buffer | null => {
    const out = Buffer.alloc(Math.ceil((b.length * 8) / 5));
    const n = huffmanDecode(b, 0, b.length, out);
    return n < 0 ? null : out.subarray(0, n);
  };

  it('decode(encode(x)) is x', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (x) => {
        expect(decode(huffmanEncode(x))).toEqual(Buffer.from(x));
      }),
      fuzzParams(200),
    );
  });

  it('accepts exactly the canonical encodings: whatever random or mutated bytes decode to re-encodes to the same bytes', () => {
    const input = fc.oneof(
      fc.uint8Array({ maxLength: 64 }),
      fc.tuple(fc.uint8Array({ maxLength: 40 }), fc.array(mutationArb, { minLength: 1, maxLength: 3 })).map(([x, m]) => mutate(huffmanEncode(x), m)),
      fc.array(edgeByte(), { maxLength: 16 }).map((b) => new Uint8Array(b)),
    );
    fc.assert(
      fc.property(input, (bytes) => {
        const got = decode(bytes);
        // RFC 7541 5.2: padding is the EOS prefix, under 8 bits, so the code is one-to-one.
        if (got !== null) expect(huffmanEncode(got)).toEqual(Buffer.from(bytes));
      }),
      fuzzParams(500),
    );
  });
});

// ---- differential against nghttp2 --------------------------------------------------------------

/**
 * node:http2's server (nghttp2) on plain loopback TCP. Each case is a fresh connection (a fresh
 * table): the preface, SETTINGS, and per block a HEADERS on the next stream followed by a PING,
 * waiting for that PING's ACK before the next block. A GOAWAY with COMPRESSION_ERROR says which
 * block nghttp2 refused; the streams it accepted as requests give their raw fields.
 */
let ng: http2.Http2Server;
let ngPort = 0;
/** Fields of each stream nghttp2 handed to the app, by the local port of the client connection. */
const ngStreams = new Map<number, Map<number, string[]>>();

beforeAll(async () => {
  ng = http2.createServer({ maxHeaderListPairs: 2000, maxSessionInvalidFrames: 1e6, maxSessionRejectedStreams: 1e6, settings: { maxHeaderListSize: 1 << 20 } });
  ng.on('stream', (stream, _headers, _flags, raw: string[]) => {
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- both undefined once the session is destroyed
    const port = stream.session?.socket?.remotePort ?? 0;
    let m = ngStreams.get(port);
    if (m === undefined) ngStreams.set(port, (m = new Map<number, string[]>()));
    m.set(stream.id ?? 0, raw);
    stream.on('error', () => undefined);
    stream.close();
  });
  ng.on('sessionError', () => undefined);
  ng.on('session', (s) => s.on('error', () => undefined));
  await new Promise<void>((r) => ng.listen(0, '127.0.0.1', r));
  ngPort = (ng.address() as AddressInfo).port;
});
afterAll(async () => {
  await new Promise<void>((r) => ng.close(() => r()));
});

interface NgVerdict {
  /** Index of the block nghttp2 refused with COMPRESSION_ERROR, or -1. */
  refused: number;
  /** The raw fields of each block nghttp2 delivered as a request (absent: not a valid request). */
  fields: Map<number, string[]>;
}

function nghttp2Verdict(blocks: readonly Buffer[]): Promise<NgVerdict> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(ngPort, '127.0.0.1');
    const reader = new F.FrameReader();
    let i = 0;
    let done = false;
    const finish = (refused: number): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      const port = sock.localPort ?? 0;
      sock.destroy();
      // The stream events of this connection fired before its PING ACKs were written.
      const byId = ngStreams.get(port) ?? new Map<number, string[]>();
      ngStreams.delete(port);
      const fields = new Map<number, string[]>();
      for (const [id, raw] of byId) fields.set((id - 1) / 2, raw);
      resolve({ refused, fields });
    };
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`nghttp2 gave no verdict on block ${i} within 5 s`));
    }, 5000);
    const sendNext = (): void => {
      if (i >= blocks.length) return finish(-1);
      const sid = i * 2 + 1;
      const ping = Buffer.alloc(8);
      ping.writeUInt32BE(i, 0);
      sock.write(Buffer.concat([F.frame(F.FrameType.HEADERS, F.Flag.END_HEADERS | F.Flag.END_STREAM, sid, blocks[i]), F.ping(ping)]));
    };
    sock.on('connect', () => {
      sock.write(Buffer.concat([F.PREFACE, F.settings()]));
      sendNext();
    });
    sock.on('data', (chunk: Buffer) => {
      for (const f of reader.push(chunk)) {
        if (f.type === F.FrameType.GOAWAY) {
          const g = F.parseGoAway(f);
          if (g.errorCode === F.ErrorCode.COMPRESSION_ERROR) return finish(i);
          if (g.errorCode !== F.ErrorCode.NO_ERROR) {
            sock.destroy();
            clearTimeout(timer);
            return reject(new Error(`nghttp2 sent GOAWAY ${g.errorCode} (${g.debug}) on block ${i}`));
          }
        }
        if (f.type === F.FrameType.PING && (f.flags & F.Flag.ACK) !== 0 && f.payload.readUInt32BE(0) === i) {
          i++;
          sendNext();
        }
      }
    });
    sock.on('error', () => undefined);
    sock.on('close', () => {
      if (!done) {
        clearTimeout(timer);
        reject(new Error(`nghttp2 closed the connection on block ${i} without a verdict`));
      }
    });
  });
}

/** The request a valid block carries, so nghttp2 gets past its own header checks and hands the fields over. */
const REQUEST: Header[] = [[':method', 'GET'], [':scheme', 'https'], [':path', '/'], [':authority', 'localhost']];
/** Regular fields nghttp2 accepts (lower-case token names, values without CR/LF/NUL or edge whitespace). */
const regularArb: fc.Arbitrary<Header> = fc.tuple(
  fc.oneof(fc.constantFrom('accept', 'cookie', 'user-agent', 'x-a', 'x-b'), fc.stringMatching(/^x-[a-z0-9]{1,8}$/)),
  fc.oneof(fc.constantFrom('', 'gzip, deflate', 'a=b'), fc.stringMatching(/^[!-~]([ -~]{0,20}[!-~])?$/), fc.uint8Array({ minLength: 1, maxLength: 12 }).map((b) => Buffer.from(b.map((x) => 0x80 | x)).toString('latin1'))),
);

/**
 * nghttp2 drops (ignores) a field it finds invalid, where the sidecar refuses the stream
 * (session.ts readHead). So: each field nghttp2 delivered we decoded the same, in the same order,
 * and each one it left out is one the sidecar would refuse (RFC 9113 8.2.1 as the session checks
 * it: a lower-case token name, no control character or edge whitespace in the value).
 */
function sameButDropped(ours: readonly string[], theirs: readonly string[]): string | null {
  let j = 0;
  for (let i = 0; i < ours.length; i += 2) {
    const name = ours[i] as string;
    const value = ours[i + 1] as string;
    if (name === theirs[j] && value === theirs[j + 1]) {
      j += 2;
      continue;
    }
    const valid = (name.startsWith(':') || /^[!#$%&'*+\-.^_`|~0-9a-z]+$/.test(name)) && !/[\x00-\x08\x0a-\x1f\x7f]|^[ \t]|[ \t]$/.test(value);
    if (valid) return `nghttp2 left out ${JSON.stringify([name, value])}, a valid field`;
  }
  return j === theirs.length ? null : `nghttp2 delivered ${JSON.stringify(theirs.slice(j))}, which we did not decode`;
}

describe(`HPACK differential against nghttp2 (${SEED_TAG})`, () => {
  it(
    'the same blocks are refused by both or by neither, and decode to the same fields',
    async () => {
      const caseArb = fc.tuple(
        fc.array(fc.tuple(fc.array(regularArb, { maxLength: 6 }), fc.array(fieldRepArb, { minLength: 1, maxLength: 4 }), fc.boolean()), { minLength: 1, maxLength: 3 }),
        fc.array(mutationArb, { maxLength: 3 }),
        fc.nat(),
      );
      await fc.assert(
        fc.asyncProperty(caseArb, async ([specs, muts, which]) => {
          const enc = new ModelEncoder(4096);
          const blocks = specs.map(([regular, reps, update]) => enc.block([...REQUEST, ...regular], reps, update ? [4096] : []));
          // One block of the sequence mutated (the others as encoded; a later one may now refer to a bad table).
          const m = which % blocks.length;
          blocks[m] = mutate(blocks[m] as Buffer, muts);
          const ours = new HpackDecoder(4096, 1 << 20, 2000);
          let refused = -1;
          const decoded: string[][] = [];
          for (let i = 0; i < blocks.length && refused === -1; i++) {
            const out: string[] = [];
            const b = blocks[i] as Buffer;
            if (ours.decode(b, 0, b.length, out) === HPACK_BAD) refused = i;
            decoded.push(out);
          }
          const theirs = await nghttp2Verdict(blocks);
          expect(refused, `blocks ${blocks.map((b) => b.toString('hex')).join(' | ')}`).toBe(theirs.refused);
          for (const [i, raw] of theirs.fields) {
            expect(sameButDropped(decoded[i] ?? [], raw), `block ${i}: ${(blocks[i] as Buffer).toString('hex')}`).toBeNull();
          }
        }),
        fuzzParams(60),
      );
    },
    fuzzTimeout(10_000),
  );

  it(
    'blocks from the grammar of representations (minimal integers): refused by both or by neither',
    async () => {
      await fc.assert(
        fc.asyncProperty(fc.array(representation(0), { maxLength: 8 }), async (reps) => {
          const block = Buffer.concat([Buffer.from([0x82, 0x87, 0x84]), ...reps]);
          const out: string[] = [];
          const ours = new HpackDecoder(4096, 1 << 20, 2000).decode(block, 0, block.length, out) === HPACK_BAD ? 0 : -1;
          const theirs = await nghttp2Verdict([block]);
          expect(ours, `block ${block.toString('hex')}`).toBe(theirs.refused);
          const raw = theirs.fields.get(0);
          if (raw !== undefined) expect(sameButDropped(out, raw), `block ${block.toString('hex')}`).toBeNull();
        }),
        fuzzParams(60),
      );
    },
    fuzzTimeout(10_000),
  );

  it('the one known difference: an integer over 4 continuation octets (RFC 7541 5.1 lets a decoder limit the octet length; nghttp2 allows 5)', async () => {
    const request = Buffer.from([0x82, 0x87, 0x84]);
    // A table size update of 4096 with zero 7-bit groups appended: 4 continuation octets, then 5, then 6.
    const update = (continuation: string): Buffer => Buffer.concat([Buffer.from(`3f${continuation}`, 'hex'), request]);
    const verdicts = async (b: Buffer): Promise<[number, number]> => [new HpackDecoder().decode(b, 0, b.length, []) === HPACK_BAD ? 0 : -1, (await nghttp2Verdict([b])).refused];
    expect(await verdicts(update('e19f8000'))).toEqual([-1, -1]);
    expect(await verdicts(update('e19f808000'))).toEqual([0, -1]);
    expect(await verdicts(update('e19f80808000'))).toEqual([0, 0]);
  });
});
