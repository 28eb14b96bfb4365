/**
 * A tiny HTTP/2 frame encoder/decoder (RFC 9113 §4, §6) and a literal-only HPACK encoder
 * (RFC 7541 §5, §6), for frame-level attacks that node:http2's client will not send: rapid
 * reset, CONTINUATION floods, SETTINGS/PING floods, HPACK bombs. Nothing here validates what it
 * is asked to send; that is the point.
 *
 * It imports nothing but node: modules, so flood-agent.ts can run it in a separate process
 * after Node's own type stripping (see harness.ts runAgent).
 */
import tls from 'node:tls';

export const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

export const FrameType = {
  DATA: 0x0,
  HEADERS: 0x1,
  PRIORITY: 0x2,
  RST_STREAM: 0x3,
  SETTINGS: 0x4,
  PUSH_PROMISE: 0x5,
  PING: 0x6,
  GOAWAY: 0x7,
  WINDOW_UPDATE: 0x8,
  CONTINUATION: 0x9,
} as const;

export const Flag = {
  END_STREAM: 0x1,
  ACK: 0x1,
  END_HEADERS: 0x4,
  PADDED: 0x8,
  PRIORITY: 0x20,
} as const;

/** RFC 9113 §7. */
export const ErrorCode = {
  NO_ERROR: 0x0,
  PROTOCOL_ERROR: 0x1,
  INTERNAL_ERROR: 0x2,
  FLOW_CONTROL_ERROR: 0x3,
  SETTINGS_TIMEOUT: 0x4,
  STREAM_CLOSED: 0x5,
  FRAME_SIZE_ERROR: 0x6,
  REFUSED_STREAM: 0x7,
  CANCEL: 0x8,
  COMPRESSION_ERROR: 0x9,
  CONNECT_ERROR: 0xa,
  ENHANCE_YOUR_CALM: 0xb,
  INADEQUATE_SECURITY: 0xc,
  HTTP_1_1_REQUIRED: 0xd,
} as const;

export const Setting = {
  HEADER_TABLE_SIZE: 0x1,
  ENABLE_PUSH: 0x2,
  MAX_CONCURRENT_STREAMS: 0x3,
  INITIAL_WINDOW_SIZE: 0x4,
  MAX_FRAME_SIZE: 0x5,
  MAX_HEADER_LIST_SIZE: 0x6,
} as const;

export interface Frame {
  readonly type: number;
  readonly flags: number;
  readonly streamId: number;
  readonly payload: Buffer;
}

export function frame(type: number, flags: number, streamId: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head.writeUInt8(type, 3);
  head.writeUInt8(flags, 4);
  head.writeUInt32BE(streamId & 0x7fffffff, 5);
  return Buffer.concat([head, payload]);
}

export function settings(entries: ReadonlyArray<readonly [number, number]> = [], ack = false): Buffer {
  const p = Buffer.alloc(entries.length * 6);
  entries.forEach(([id, value], i) => {
    p.writeUInt16BE(id, i * 6);
    p.writeUInt32BE(value, i * 6 + 2);
  });
  return frame(FrameType.SETTINGS, ack ? Flag.ACK : 0, 0, p);
}

export function ping(data: Buffer = Buffer.alloc(8), ack = false): Buffer {
  return frame(FrameType.PING, ack ? Flag.ACK : 0, 0, data);
}

export function headers(streamId: number, block: Buffer, opts: { endStream?: boolean; endHeaders?: boolean } = {}): Buffer {
  const flags = (opts.endStream === true ? Flag.END_STREAM : 0) | (opts.endHeaders === false ? 0 : Flag.END_HEADERS);
  return frame(FrameType.HEADERS, flags, streamId, block);
}

export function continuation(streamId: number, block: Buffer, endHeaders = false): Buffer {
  return frame(FrameType.CONTINUATION, endHeaders ? Flag.END_HEADERS : 0, streamId, block);
}

export function data(streamId: number, payload: Buffer, endStream = false): Buffer {
  return frame(FrameType.DATA, endStream ? Flag.END_STREAM : 0, streamId, payload);
}

export function rstStream(streamId: number, code: number = ErrorCode.CANCEL): Buffer {
  const p = Buffer.alloc(4);
  p.writeUInt32BE(code, 0);
  return frame(FrameType.RST_STREAM, 0, streamId, p);
}

export function windowUpdate(streamId: number, increment: number): Buffer {
  const p = Buffer.alloc(4);
  p.writeUInt32BE(increment & 0x7fffffff, 0);
  return frame(FrameType.WINDOW_UPDATE, 0, streamId, p);
}

export interface GoAway {
  readonly lastStreamId: number;
  readonly errorCode: number;
  readonly debug: string;
}

export function parseGoAway(f: Frame): GoAway {
  return {
    lastStreamId: f.payload.readUInt32BE(0) & 0x7fffffff,
    errorCode: f.payload.readUInt32BE(4),
    debug: f.payload.subarray(8).toString('latin1'),
  };
}

/** Accumulates bytes and splits them into frames. */
export class FrameReader {
  #buf: Buffer = Buffer.alloc(0);
  push(chunk: Buffer): Frame[] {
    this.#buf = this.#buf.length === 0 ? chunk : Buffer.concat([this.#buf, chunk]);
    const out: Frame[] = [];
    while (this.#buf.length >= 9) {
      const len = this.#buf.readUIntBE(0, 3);
      if (this.#buf.length < 9 + len) break;
      out.push({
        type: this.#buf.readUInt8(3),
        flags: this.#buf.readUInt8(4),
        streamId: this.#buf.readUInt32BE(5) & 0x7fffffff,
        payload: Buffer.from(this.#buf.subarray(9, 9 + len)),
      });
      this.#buf = this.#buf.subarray(9 + len);
    }
    return out;
  }
}

// ---------------------------------------------------------------------------------------------
// HPACK (RFC 7541), encoder side only, no Huffman.

/** RFC 7541 §5.1: an integer with an N-bit prefix; `first` holds the pattern bits above it. */
export function hpackInt(value: number, prefixBits: number, first: number): Buffer {
  const max = (1 << prefixBits) - 1;
  if (value < max) return Buffer.from([first | value]);
  const bytes = [first | max];
  let v = value - max;
  while (v >= 128) {
    bytes.push((v % 128) + 128);
    v = Math.floor(v / 128);
  }
  bytes.push(v);
  return Buffer.from(bytes);
}

/** RFC 7541 §5.2: a string literal, no Huffman. */
export function hpackString(s: string | Buffer): Buffer {
  const b = typeof s === 'string' ? Buffer.from(s, 'latin1') : s;
  return Buffer.concat([hpackInt(b.length, 7, 0x00), b]);
}

/** §6.2.2 literal header field without indexing, new name. */
export function literal(name: string, value: string | Buffer): Buffer {
  return Buffer.concat([Buffer.from([0x00]), hpackString(name), hpackString(value)]);
}

/** §6.2.1 literal header field with incremental indexing, new name (enters the dynamic table). */
export function literalIndexed(name: string, value: string | Buffer): Buffer {
  return Buffer.concat([Buffer.from([0x40]), hpackString(name), hpackString(value)]);
}

/** §6.1 indexed header field (static table 1..61, dynamic table from 62). */
export function indexed(index: number): Buffer {
  return hpackInt(index, 7, 0x80);
}

/** A header block of literals: pseudo-headers first, as RFC 9113 §8.3 requires. */
export function block(fields: ReadonlyArray<readonly [string, string]>): Buffer {
  return Buffer.concat(fields.map(([n, v]) => literal(n, v)));
}

export function requestBlock(path: string, extra: ReadonlyArray<readonly [string, string]> = [], method = 'GET'): Buffer {
  return block([[':method', method], [':scheme', 'https'], [':authority', 'localhost'], [':path', path], ...extra]);
}

// ---------------------------------------------------------------------------------------------
// A raw HTTP/2 connection over TLS (ALPN h2).

export interface RawH2 {
  readonly socket: tls.TLSSocket;
  readonly frames: Frame[];
  /** Bytes received, whatever their framing. */
  bytesIn: number;
  goaway: GoAway | null;
  closed: boolean;
  /** Resolves when the socket has closed (or the bound elapsed: then false). */
  waitClosed(timeoutMs: number): Promise<boolean>;
  /** Resolves with the first received frame matching `pred` (null after timeoutMs). */
  waitFrame(pred: (f: Frame) => boolean, timeoutMs: number): Promise<Frame | null>;
  /** Write, resolving when the data was handed to the kernel (false if the socket is gone). */
  write(b: Buffer): Promise<boolean>;
  destroy(): void;
}

export interface RawH2Options {
  /** Send the preface and an empty SETTINGS frame (default true). */
  preface?: boolean;
  /** Answer the server's SETTINGS with an ACK (default true). */
  ackSettings?: boolean;
  /** Read from the socket at all (default true); false leaves the server's output in its buffers. */
  read?: boolean;
  /** Keep every received frame (default true); a flood test may only want counters. */
  keepFrames?: boolean;
  /**
   * Flow-control windows the client opens (default 'max': 2^31-1 for every stream and the
   * connection, so responses never stall on a client that does not send WINDOW_UPDATE;
   * 'default': RFC 9113's 65,535 bytes and never a WINDOW_UPDATE — a slow reader at the h2 level).
   */
  window?: 'max' | 'default';
}

const MAX_WINDOW = 2 ** 31 - 1;

/** `tlsOpts`: the client's certificate, key and the CA it trusts (helpers/client.ts tlsOptions). */
export function connectH2(port: number, tlsOpts: tls.ConnectionOptions, opts: RawH2Options = {}): Promise<RawH2> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ...tlsOpts, ALPNProtocols: ['h2'] });
    const reader = new FrameReader();
    const waiters: Array<() => void> = [];
    const wake = (): void => {
      for (const w of waiters.splice(0)) w();
    };
    const conn: RawH2 = {
      socket,
      frames: [],
      bytesIn: 0,
      goaway: null,
      closed: false,
      async waitClosed(timeoutMs) {
        const deadline = Date.now() + timeoutMs;
        while (!conn.closed) {
          const left = deadline - Date.now();
          if (left <= 0) return false;
          await new Promise<void>((r) => {
            const t = setTimeout(r, Math.min(left, 50));
            waiters.push(() => {
              clearTimeout(t);
              r();
            });
          });
        }
        return true;
      },
      async waitFrame(pred, timeoutMs) {
        const deadline = Date.now() + timeoutMs;
        let seen = 0;
        for (;;) {
          for (; seen < conn.frames.length; seen++) {
            const f = conn.frames[seen];
            if (f !== undefined && pred(f)) return f;
          }
          const left = deadline - Date.now();
          if (left <= 0 || conn.closed) return null;
          await new Promise<void>((r) => {
            const t = setTimeout(r, Math.min(left, 50));
            waiters.push(() => {
              clearTimeout(t);
              r();
            });
          });
        }
      },
      write(b) {
        if (socket.destroyed || !socket.writable) return Promise.resolve(false);
        return new Promise((r) => socket.write(b, (err) => r(err == null)));
      },
      destroy() {
        socket.destroy();
      },
    };
    socket.once('secureConnect', () => {
      if (socket.alpnProtocol !== 'h2') {
        socket.destroy();
        reject(new Error(`ALPN negotiated ${String(socket.alpnProtocol)}, not h2`));
        return;
      }
      if (opts.preface === false) resolve(conn);
      else if (opts.window === 'default') socket.write(Buffer.concat([PREFACE, settings()]));
      else socket.write(Buffer.concat([PREFACE, settings([[Setting.INITIAL_WINDOW_SIZE, MAX_WINDOW]]), windowUpdate(0, MAX_WINDOW - 65_535)]));
    });
    let serverSettingsSeen = false;
    socket.on('data', (chunk: Buffer) => {
      conn.bytesIn += chunk.length;
      for (const f of reader.push(chunk)) {
        if (f.type === FrameType.GOAWAY) conn.goaway = parseGoAway(f);
        if (opts.keepFrames !== false || f.type === FrameType.GOAWAY) conn.frames.push(f);
        if (f.type === FrameType.SETTINGS && (f.flags & Flag.ACK) === 0) {
          if (opts.ackSettings !== false && socket.writable) socket.write(settings([], true));
          if (!serverSettingsSeen) {
            // The connection preface is exchanged (RFC 9113 §3.4) and our ACK is queued ahead of
            // whatever the test writes next, so no later frame sequence gets interleaved with it.
            serverSettingsSeen = true;
            // A non-reading client stops here: the server's writes pile up in its own buffers.
            if (opts.read === false) socket.pause();
            resolve(conn);
          }
        }
      }
      wake();
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      conn.closed = true;
      wake();
    });
    // Before the handshake ends (alpnProtocol is still null then) an error fails the connect;
    // after it, the promise is settled and this changes nothing.
    socket.once('error', reject);
  });
}

// ---------------------------------------------------------------------------------------------
// Just enough HPACK decoding to read `:status` from the first response on a connection.

/** RFC 7541 Appendix B codes of the ten digits (all a server needs for a status). */
const HUFFMAN_DIGITS: ReadonlyArray<readonly [code: number, bits: number, digit: string]> = [
  [0b00000, 5, '0'],
  [0b00001, 5, '1'],
  [0b00010, 5, '2'],
  [0b011001, 6, '3'],
  [0b011010, 6, '4'],
  [0b011011, 6, '5'],
  [0b011100, 6, '6'],
  [0b011101, 6, '7'],
  [0b011110, 6, '8'],
  [0b011111, 6, '9'],
];

function huffmanDigits(b: Buffer): string | null {
  let bits = '';
  for (const byte of b) bits += byte.toString(2).padStart(8, '0');
  let out = '';
  let at = 0;
  while (out.length < 3) {
    const hit = HUFFMAN_DIGITS.find(([code, n]) => bits.slice(at, at + n) === code.toString(2).padStart(n, '0'));
    if (hit === undefined) return null;
    out += hit[2];
    at += hit[1];
  }
  return out;
}

/** Static table entries 8..14 are `:status` 200, 204, 206, 304, 400, 404, 500 (RFC 7541 App. A). */
const STATIC_STATUS: Readonly<Record<number, number>> = { 8: 200, 9: 204, 10: 206, 11: 304, 12: 400, 13: 404, 14: 500 };

/**
 * The `:status` of a response header block whose first field is the status (RFC 9113 §8.3.2
 * puts pseudo-headers first), as sent on a fresh connection (static table or a literal).
 */
export function responseStatus(blockBytes: Buffer): number | null {
  const first = blockBytes[0];
  if (first === undefined) return null;
  if ((first & 0x80) !== 0) return STATIC_STATUS[first & 0x7f] ?? null;
  // Literal with (0x40) or without (0x00) / never (0x10) indexing, name = static index 8..14.
  const nameIndex = (first & 0x40) !== 0 ? first & 0x3f : first & 0x0f;
  if (STATIC_STATUS[nameIndex] === undefined) return null;
  const lenByte = blockBytes[1];
  if (lenByte === undefined) return null;
  const huffman = (lenByte & 0x80) !== 0;
  const value = blockBytes.subarray(2, 2 + (lenByte & 0x7f));
  const text = huffman ? huffmanDigits(value) : value.toString('latin1');
  return text === null ? null : Number(text);
}
