/**
 * transport/h2/hpack.ts and huffman.ts: RFC 7541's own examples, the malformed blocks a decoder must
 * refuse, and both directions against a real peer (Node's HTTP/2 client, i.e. nghttp2's encoder
 * and decoder with Huffman coding and the dynamic table) over a real loopback connection.
 */
import net from 'node:net';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { HPACK_BAD, HPACK_OK, HPACK_TOO_LARGE, HpackDecoder, encodeResponseHead } from '../../../src/transport/h2/hpack.js';
import { HUFFMAN_CODES, huffmanDecode, huffmanEncode } from '../../../src/transport/h2/huffman.js';
import * as F from '../../adversarial/h2frames.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const pairs = (flat: string[]): [string, string][] => {
  const out: [string, string][] = [];
  for (let i = 0; i < flat.length; i += 2) out.push([flat[i] as string, flat[i + 1] as string]);
  return out;
};
function decodeAll(d: HpackDecoder, block: Buffer): { rc: number; headers: [string, string][] } {
  const out: string[] = [];
  const rc = d.decode(block, 0, block.length, out);
  return { rc, headers: pairs(out) };
}
function huff(bytes: Buffer): Buffer | null {
  const out = Buffer.alloc(Math.ceil((bytes.length * 8) / 5) + 1);
  const n = huffmanDecode(bytes, 0, bytes.length, out);
  return n < 0 ? null : out.subarray(0, n);
}

describe('Huffman code (RFC 7541 Appendix B)', () => {
  it('is a complete prefix code with EOS as 30 one-bits and the RFC spot values', () => {
    let kraft = 0;
    for (const [, bits] of HUFFMAN_CODES) kraft += 2 ** -bits;
    expect(kraft).toBe(1);
    expect(HUFFMAN_CODES[256]).toEqual([2 ** 30 - 1, 30]);
    expect(HUFFMAN_CODES[32]).toEqual([0x14, 6]); // ' '
    expect(HUFFMAN_CODES[48]).toEqual([0x0, 5]); // '0'
    expect(HUFFMAN_CODES[97]).toEqual([0x3, 5]); // 'a'
    expect(HUFFMAN_CODES[0]).toEqual([0x1ff8, 13]);
    expect(HUFFMAN_CODES[255]).toEqual([0x3ffffee, 26]);
  });

  it('decodes every byte value, alone and in runs', () => {
    for (let b = 0; b < 256; b++) expect(huff(huffmanEncode(Buffer.from([b])))).toEqual(Buffer.from([b]));
    const all = Buffer.from(Array.from({ length: 512 }, (_, i) => (i * 37) % 256));
    expect(huff(huffmanEncode(all))).toEqual(all);
    expect(huff(Buffer.alloc(0))).toEqual(Buffer.alloc(0));
  });

  it('refuses padding that is not a short prefix of EOS, and EOS itself', () => {
    // 'a' (00011) padded with 111 is right; with 110 or with a whole extra byte of ones it is not.
    expect(huff(Buffer.from([0b00011111]))).toEqual(Buffer.from('a'));
    expect(huff(Buffer.from([0b00011110]))).toBeNull();
    expect(huff(Buffer.from([0b00011111, 0xff]))).toBeNull();
    // EOS (30 ones) inside the string.
    expect(huff(Buffer.from([0xff, 0xff, 0xff, 0xff]))).toBeNull();
  });
});

describe('HPACK decoder: RFC 7541 Appendix C', () => {
  it('C.2.1 literal with indexing; a size update to exactly our limit', () => {
    expect(decodeAll(new HpackDecoder(), hex('3f e1 1f')).rc).toBe(HPACK_OK);
    const d = new HpackDecoder();
    const r = decodeAll(d, hex('400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572'));
    expect(r).toEqual({ rc: HPACK_OK, headers: [['custom-key', 'custom-header']] });
    expect([d.tableCount, d.tableSize]).toEqual([1, 55]);
  });

  it('C.3 requests without Huffman, sharing the dynamic table', () => {
    const d = new HpackDecoder();
    expect(decodeAll(d, hex('8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d')).headers).toEqual([
      [':method', 'GET'], [':scheme', 'http'], [':path', '/'], [':authority', 'www.example.com'],
    ]);
    expect(d.tableSize).toBe(57);
    expect(decodeAll(d, hex('8286 84be 5808 6e6f 2d63 6163 6865')).headers).toEqual([
      [':method', 'GET'], [':scheme', 'http'], [':path', '/'], [':authority', 'www.example.com'], ['cache-control', 'no-cache'],
    ]);
    expect(d.tableSize).toBe(110);
    expect(decodeAll(d, hex('8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65')).headers).toEqual([
      [':method', 'GET'], [':scheme', 'https'], [':path', '/index.html'], [':authority', 'www.example.com'], ['custom-key', 'custom-value'],
    ]);
    expect([d.tableCount, d.tableSize]).toEqual([3, 164]);
  });

  it('C.4 the same requests with Huffman coding', () => {
    const d = new HpackDecoder();
    expect(decodeAll(d, hex('8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff')).headers).toEqual([
      [':method', 'GET'], [':scheme', 'http'], [':path', '/'], [':authority', 'www.example.com'],
    ]);
    expect(decodeAll(d, hex('8286 84be 5886 a8eb 1064 9cbf')).headers.at(-1)).toEqual(['cache-control', 'no-cache']);
    expect(decodeAll(d, hex('8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf')).headers.at(-1)).toEqual(['custom-key', 'custom-value']);
    expect([d.tableCount, d.tableSize]).toEqual([3, 164]);
  });
});

describe('HPACK decoder: malformed blocks', () => {
  const bad: [string, string][] = [
    ['index 0', '80'],
    ['an index past both tables', 'be'],
    ['a truncated integer', 'ff'],
    ['an integer past the limit', 'ff ff ff ff ff 0f'],
    // 150 continuation bytes of 0: the shift would reach 2^1029 and 0 * Infinity is NaN.
    ['an integer with endless zero continuation bytes', `ff ${'80 '.repeat(150)}00`],
    ['a table size update with endless continuation bytes', `3f ${'80 '.repeat(150)}00`],
    ['a string longer than the block', '400a 6375 7374'],
    ['a Huffman string with bad padding', '40 81 1e 00'],
    ['a table size update above our limit', '3f e2 1f'],
    ['a table size update after a field', '82 20'],
  ];
  for (const [what, block] of bad) {
    it(`refuses ${what}`, () => {
      expect(decodeAll(new HpackDecoder(), hex(block)).rc).toBe(HPACK_BAD);
    });
  }

  it('keeps decoding past the header-list limit, so the table stays in step', () => {
    const d = new HpackDecoder(4096, 100);
    // custom-key: custom-header (55) twice: 110 > 100. The second is indexed all the same.
    const one = '400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572';
    const r = decodeAll(d, hex(one + one));
    expect(r.rc).toBe(HPACK_TOO_LARGE);
    expect(r.headers).toEqual([['custom-key', 'custom-header']]);
    expect(d.tableCount).toBe(2);
    // The next block refers to the entry by index, and reads it.
    expect(decodeAll(d, hex('be'))).toEqual({ rc: HPACK_OK, headers: [['custom-key', 'custom-header']] });
  });

  it('past the field-count limit, literals are stepped over and indexed ones still enter the table', () => {
    const d = new HpackDecoder(4096, 1 << 20, 2);
    const lit = (n: string, v: string, first: number): string => (first === 0x40 ? F.literalIndexed(n, v) : F.literal(n, v)).toString('hex');
    const r = decodeAll(d, hex(lit('a', '1', 0) + lit('b', '2', 0) + lit('c', '3', 0) + lit('d', '4', 0x40) + lit('e', '5', 0)));
    expect(r.rc).toBe(HPACK_TOO_LARGE);
    expect(r.headers).toEqual([['a', '1'], ['b', '2']]);
    expect(decodeAll(d, hex('be'))).toEqual({ rc: HPACK_OK, headers: [['d', '4']] });
    // A malformed string past the limit is still a malformed block: too short, or bad Huffman padding.
    expect(decodeAll(new HpackDecoder(4096, 1 << 20, 0), hex(lit('a', '1', 0) + '00 05 61')).rc).toBe(HPACK_BAD);
    expect(decodeAll(new HpackDecoder(4096, 1 << 20, 0), hex(lit('a', '1', 0) + '00 01 61 81 1e')).rc).toBe(HPACK_BAD);
  });

  it('evicts oldest first, and a size update to 0 empties the table', () => {
    const d = new HpackDecoder(120);
    const field = (n: string): string => F.literalIndexed(`k-${n}`, 'v'.repeat(20)).toString('hex');
    decodeAll(d, hex(field('a') + field('b') + field('c'))); // 55 each: only two fit in 120
    expect(d.tableCount).toBe(2);
    expect(decodeAll(d, hex('be bf')).headers.map(([n]) => n)).toEqual(['k-c', 'k-b']);
    expect(decodeAll(d, hex('20')).rc).toBe(HPACK_OK);
    expect([d.tableCount, d.tableSize]).toEqual([0, 0]);
    expect(decodeAll(d, hex('be')).rc).toBe(HPACK_BAD);
  });
});

// ---- against a real peer -----------------------------------------------------------------------

const { frame } = F;

interface Peer {
  port: number;
  /** Each request's decoded header list, in arrival order. */
  requests: [string, string][][];
  results: number[];
}
const closers: (() => void)[] = [];
afterEach(() => {
  for (const c of closers.splice(0)) c();
});

/**
 * A minimal HTTP/2 server on a plain loopback socket: SETTINGS (with our header table size),
 * HEADERS + CONTINUATION through HpackDecoder, each stream answered with `answer(sid)`.
 */
async function rawPeer(tableSize: number, answer: (sid: number) => Buffer): Promise<Peer> {
  const peer: Peer = { port: 0, requests: [], results: [] };
  const server = net.createServer((sock) => {
    const dec = new HpackDecoder(tableSize);
    let buf = Buffer.alloc(0);
    let preface = false;
    const reader = new F.FrameReader();
    let block: Buffer[] = [];
    let blockSid = 0;
    const settings = Buffer.alloc(6);
    settings.writeUInt16BE(1, 0); // SETTINGS_HEADER_TABLE_SIZE
    settings.writeUInt32BE(tableSize, 2);
    sock.write(frame(4, 0, 0, settings));
    sock.on('data', (chunk: Buffer) => {
      if (!preface) {
        buf = Buffer.concat([buf, chunk]);
        if (buf.length < 24) return;
        expect(buf.subarray(0, 24).equals(F.PREFACE)).toBe(true);
        chunk = buf.subarray(24);
        preface = true;
      }
      for (const { type, flags, streamId: sid, payload: p } of reader.push(chunk)) {
        let payload = p;
        if (type === 4 && (flags & 1) === 0) sock.write(frame(4, 1, 0, Buffer.alloc(0)));
        if (type === 1 || type === 9) {
          if (type === 1) {
            if (flags & 0x8) payload = payload.subarray(1, payload.length - (payload[0] as number));
            if (flags & 0x20) payload = payload.subarray(5);
            blockSid = sid;
          }
          block.push(payload);
          if (flags & 0x4) {
            const all = Buffer.concat(block);
            block = [];
            const out: string[] = [];
            peer.results.push(dec.decode(all, 0, all.length, out));
            peer.requests.push(pairs(out));
            sock.write(frame(1, 0x4 | 0x1, blockSid, answer(blockSid)));
          }
        }
      }
    });
    sock.on('error', () => undefined);
    closers.push(() => sock.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  closers.push(() => server.close());
  peer.port = (server.address() as AddressInfo).port;
  return peer;
}

function request(client: http2.ClientHttp2Session, headers: http2.OutgoingHttpHeaders): Promise<http2.IncomingHttpHeaders> {
  return new Promise((resolve, reject) => {
    const req = client.request(headers, { endStream: true });
    req.on('response', (h) => {
      req.resume();
      resolve(h);
    });
    req.on('error', reject);
  });
}

describe('HPACK against nghttp2 (Node\'s HTTP/2 client)', () => {
  it('decodes what the client encodes: Huffman, the dynamic table, long and latin1 values, sensitive headers', async () => {
    const peer = await rawPeer(4096, () => encodeResponseHead(200, []));
    const client = http2.connect(`http://127.0.0.1:${peer.port}`);
    closers.push(() => client.destroy());
    const printable = Array.from({ length: 95 }, (_, i) => String.fromCharCode(32 + i)).join('').trim();
    const high = Buffer.from(Array.from({ length: 128 }, (_, i) => 128 + i)).toString('latin1');
    const sent: http2.OutgoingHttpHeaders[] = [];
    for (let i = 0; i < 6; i++) {
      const h: http2.OutgoingHttpHeaders = {
        ':method': i % 2 === 0 ? 'GET' : 'POST',
        ':path': `/orders/${i}?q=${'x'.repeat(i * 60)}`,
        'x-printable': printable,
        'x-high': high,
        'x-same': 'repeated on every request, indexed after the first',
        'x-long': 'L'.repeat(300 + i),
        authorization: `Bearer secret-${i}`,
        [http2.sensitiveHeaders]: ['authorization'],
      };
      sent.push(h);
      expect((await request(client, h))[':status']).toBe(200);
    }
    expect(peer.results).toEqual(sent.map(() => HPACK_OK));
    for (let i = 0; i < sent.length; i++) {
      const got = new Map(peer.requests[i]);
      for (const [k, v] of Object.entries(sent[i] as object)) expect(got.get(k)).toBe(String(v));
      expect(got.get(':authority')).toBe(`127.0.0.1:${peer.port}`);
    }
  });

  it('follows a small table the peer must size-update and evict from', async () => {
    const peer = await rawPeer(256, () => encodeResponseHead(200, []));
    const client = http2.connect(`http://127.0.0.1:${peer.port}`);
    closers.push(() => client.destroy());
    await new Promise((r) => client.once('remoteSettings', r));
    for (let i = 0; i < 20; i++) {
      const h = { ':path': `/p${i % 3}`, [`x-h${i % 5}`]: `value-${i % 4}-${'z'.repeat(40)}` };
      await request(client, h);
      expect(new Map(peer.requests[i]).get(`x-h${i % 5}`)).toBe(h[`x-h${i % 5}`]);
    }
    expect(new Set(peer.results)).toEqual(new Set([HPACK_OK]));
  });

  it('encodes response heads the client reads back', async () => {
    const heads: [number, string[]][] = [
      [200, ['content-type', 'application/json', 'content-length', '0', 'x-request-id', 'abc', 'set-cookie', 'a=1', 'set-cookie', 'b=2']],
      [502, ['x-long', 'v'.repeat(1000), 'date', 'Wed, 02 Dec 2026 06:00:00 GMT', 'strict-transport-security', 'max-age=31536000']],
      [404, ['x-latin1', 'caf\u00e9']],
    ];
    let n = 0;
    const peer = await rawPeer(4096, () => {
      const [status, h] = heads[n++] as [number, string[]];
      return encodeResponseHead(status, h);
    });
    const client = http2.connect(`http://127.0.0.1:${peer.port}`);
    closers.push(() => client.destroy());
    for (const [status, h] of heads) {
      const got = await request(client, { ':path': '/' });
      expect(got[':status']).toBe(status);
      const want = new Map<string, string[]>();
      for (let i = 0; i < h.length; i += 2) want.set(h[i] as string, [...(want.get(h[i] as string) ?? []), h[i + 1] as string]);
      for (const [k, v] of want) {
        const g = got[k];
        expect(k === 'set-cookie' ? g : [g]).toEqual(v);
      }
    }
  });
});
