/**
 * Seeded fuzz of the sidecar's own HTTP/2 server (transport/h2/session.ts) on real mTLS sockets.
 *
 * Frame sequences: each case is a new connection that sends the preface, then random frames —
 * requests with good and bad heads (HPACK from the model encoder, so Huffman and the dynamic
 * table are in play), bodies, SETTINGS (a small initial window in a third of the cases), PING,
 * WINDOW_UPDATE, RST_STREAM, PRIORITY, GOAWAY, PUSH_PROMISE, stray CONTINUATION, unknown types,
 * random ids, flags and padding — sometimes mutated as raw bytes and written in pieces, then a
 * PING. Invariants: a verdict in bounded time (the PING answered, GOAWAY, or closed) and never
 * INTERNAL_ERROR (the session turns its own exceptions into that code); never more DATA than
 * the client's windows allow; on a connection still serving, every request the client ended is
 * answered once the windows open; nothing the app receives is malformed or carries a header the
 * sidecar must drop, and the app never refuses what was forwarded; no more requests reach the app
 * than HEADERS were sent; a well-behaved client on another connection still gets 200.
 *
 * Request heads: a few requests per connection, each either malformed (RFC 9113 8.1-8.3: it must
 * never reach the app), ordinary (it must reach it with the same method, path, fields and body,
 * padding and split bodies included, also after a block the table had to evict for or one over
 * the size limit), or in between (either, but unchanged if served).
 *
 * A crash of the process fails the run as an unhandled error.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HPACK_OK, HpackDecoder } from '../../src/transport/h2/hpack.js';
import { h2Request, tlsOptions } from '../helpers/client.js';
import type { SeenRequest } from '../helpers/upstream.js';
import * as F from '../adversarial/h2frames.js';
import { orders, startTarget } from '../adversarial/harness.js';
import type { Target } from '../adversarial/harness.js';
import { ModelEncoder, SEED_TAG, fieldRepArb, fuzzParams, fuzzTimeout, mutate, mutationArb } from './fuzz.js';
import type { FieldRep, Header, Mutation } from './fuzz.js';

let t: Target;
beforeAll(async () => {
  t = await startTarget({ limits: { maxConcurrentStreams: 20, maxHeaders: 50, maxHeaderSize: '8KiB', requestTimeout: '2s', headersTimeout: '1s' } });
});
// eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- undefined when beforeAll failed
afterAll(async () => t?.close());

// ---- what a case sends ----------------------------------------------------------------------------

/** A stream id: the next new one, the last used, 0, an even one, or anything. */
type Sid = { readonly k: 'new' } | { readonly k: 'last' } | { readonly k: 'zero' } | { readonly k: 'even' } | { readonly k: 'any'; readonly v: number };
const NEW = fc.constant({ k: 'new' as const });
const LAST = fc.constant({ k: 'last' as const });
const oddSid: fc.Arbitrary<Sid> = fc.oneof(
  fc.constant({ k: 'zero' as const }),
  fc.constant({ k: 'even' as const }),
  fc.integer({ min: 0, max: 2 ** 31 - 1 }).map((v) => ({ k: 'any' as const, v })),
);
/** Mostly well-behaved: a frame names the stream it should; now and then one it must not. */
const headersSid: fc.Arbitrary<Sid> = fc.oneof({ weight: 12, arbitrary: NEW }, { weight: 2, arbitrary: LAST }, { weight: 1, arbitrary: oddSid });
const streamSid: fc.Arbitrary<Sid> = fc.oneof({ weight: 12, arbitrary: LAST }, { weight: 1, arbitrary: NEW }, { weight: 1, arbitrary: oddSid });

/** Marks every value a client sends in a header the app must never see from a client. */
const MARK = 'fz';
/** Request headers the app may get, and those the sidecar must drop (docs/reference.md "What the app receives") or refuse. */
const PASSED = ['accept', 'cookie', 'user-agent', 'x-a', 'content-type', 'authorization'];
const ODD = [
  'content-length', 'host', 'te', 'connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade',
  'x-forwarded-for', 'x-forwarded-client-cert', 'x_forwarded_for', 'x-client-name', 'x-jwt-sub', 'forwarded', 'x-real-ip',
  'x-request-id', 'x-http-method-override', 'x-original-url', 'expect', 'http2-settings', 'Accept', 'x a', '', ':status',
  ':protocol', ':path',
];
/** Values no field may carry (NUL, CR, LF: RFC 9113 8.2.1), or that the sidecar refuses (other controls, edge whitespace). */
const BAD_VALUES = [`${MARK}\r\nx-b: 1`, `${MARK}\n`, `${MARK}\0`, ` ${MARK}`, `${MARK}\t`, `\x01${MARK}`, `${MARK}\x7f`];
const valueArb: fc.Arbitrary<string> = fc.oneof(
  { weight: 16, arbitrary: fc.constantFrom(MARK, `${MARK}-1`, 'trailers', '0', '5', '100-continue', `${MARK}, close`, 'localhost') },
  { weight: 1, arbitrary: fc.constantFrom(...BAD_VALUES) },
  { weight: 1, arbitrary: fc.string({ maxLength: 12 }).map((s) => MARK + s) },
);
const headerArb: fc.Arbitrary<Header> = fc.tuple(fc.oneof({ weight: 10, arbitrary: fc.constantFrom(...PASSED) }, { weight: 1, arbitrary: fc.constantFrom(...ODD) }), valueArb);

interface RequestSpec {
  readonly method: string;
  readonly path: string;
  readonly scheme: string | null;
  readonly authority: string | null;
  readonly regular: Header[];
  /** Where the regular fields go among the pseudo-headers (0: after them all, as required). */
  readonly regularAt: number;
  readonly reps: FieldRep[];
  readonly blockMutations: readonly Mutation[];
}
const requestArb: fc.Arbitrary<RequestSpec> = fc.record({
  method: fc.oneof({ weight: 16, arbitrary: fc.constantFrom('GET', 'POST', 'HEAD', 'PUT') }, { weight: 1, arbitrary: fc.constantFrom('CONNECT', 'get', 'G T', '', 'OPTIONS', 'TRACE') }),
  path: fc.oneof(
    { weight: 16, arbitrary: fc.constantFrom('/orders/1', '/healthz', '/public/a', '/orders/1?q=1', '/orders') },
    { weight: 2, arbitrary: fc.constantFrom('/admin/x', '/orders/../admin', '/orders/%2e%2e/admin', '/public/..;/admin', '/orders%2fx', '*', '', 'orders', '/orders/a b', '/orders/\x00', '//admin', 'https://localhost/admin') },
  ),
  scheme: fc.oneof({ weight: 20, arbitrary: fc.constant('https') }, { weight: 1, arbitrary: fc.constantFrom(null, 'http', '', 'h ttp') }),
  authority: fc.oneof({ weight: 20, arbitrary: fc.constant('localhost') }, { weight: 1, arbitrary: fc.constantFrom(null, 'evil.example', '', 'local host', 'localhost:1') }),
  regular: fc.array(headerArb, { maxLength: 4 }),
  regularAt: fc.oneof({ weight: 20, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: 4 }) }),
  reps: fc.array(fieldRepArb, { minLength: 1, maxLength: 4 }),
  blockMutations: fc.oneof({ weight: 20, arbitrary: fc.constant([]) }, { weight: 1, arbitrary: fc.array(mutationArb, { minLength: 1, maxLength: 3 }) }),
});

type FrameSpec =
  | { readonly t: 'headers'; readonly sid: Sid; readonly req: RequestSpec; readonly endStream: boolean; readonly split: number; readonly pad: number; readonly priority: 0 | 1 | 2 }
  | { readonly t: 'data'; readonly sid: Sid; readonly len: number; readonly endStream: boolean; readonly pad: number }
  | { readonly t: 'settings'; readonly entries: [number, number][]; readonly ack: boolean }
  | { readonly t: 'ping'; readonly ack: boolean; readonly len: number }
  | { readonly t: 'window'; readonly sid: Sid; readonly inc: number }
  | { readonly t: 'rst'; readonly sid: Sid; readonly code: number }
  | { readonly t: 'priority'; readonly sid: Sid; readonly self: boolean; readonly len: number }
  | { readonly t: 'goaway'; readonly code: number }
  | { readonly t: 'raw'; readonly type: number; readonly flags: number; readonly sid: Sid; readonly payload: Uint8Array };

const padArb = fc.oneof({ weight: 10, arbitrary: fc.constant(-1) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 300 }) });
/** Mostly settings a client may send; now and then a value out of range or an unknown id. */
const settingArb: fc.Arbitrary<[number, number]> = fc.oneof(
  { weight: 6, arbitrary: fc.tuple(fc.constantFrom(1, 3, 6), fc.nat({ max: 100_000 })) },
  { weight: 2, arbitrary: fc.tuple(fc.constant(4), fc.constantFrom(0, 1, 100, 65535, 2 ** 20, 2 ** 31 - 1)) },
  { weight: 2, arbitrary: fc.tuple(fc.constant(5), fc.constantFrom(16384, 65536, 2 ** 24 - 1)) },
  { weight: 1, arbitrary: fc.tuple(fc.constant(2), fc.constantFrom(0, 1)) },
  {
    weight: 1,
    arbitrary: fc.tuple(
      fc.oneof(fc.integer({ min: 0, max: 8 }), fc.integer({ min: 0, max: 0xffff })),
      fc.oneof(fc.constantFrom(0, 1, 2, 16383, 2 ** 24, 2 ** 31, 2 ** 32 - 1), fc.nat()),
    ),
  },
);
const rare = <T,>(common: T, ...odd: T[]): fc.Arbitrary<T> => fc.oneof({ weight: 10, arbitrary: fc.constant(common) }, { weight: 1, arbitrary: fc.constantFrom(...odd) });
const headersArb = fc.record({
  t: fc.constant('headers' as const),
  sid: headersSid,
  req: requestArb,
  endStream: fc.oneof({ weight: 3, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) }),
  split: fc.oneof({ weight: 5, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: 4 }) }),
  pad: padArb,
  priority: fc.oneof({ weight: 8, arbitrary: fc.constant(0 as const) }, { weight: 2, arbitrary: fc.constant(1 as const) }, { weight: 1, arbitrary: fc.constant(2 as const) }),
});
const frameArb: fc.Arbitrary<FrameSpec> = fc.oneof(
  { weight: 8, arbitrary: headersArb },
  { weight: 5, arbitrary: fc.record({ t: fc.constant('data' as const), sid: streamSid, len: fc.oneof(fc.integer({ min: 0, max: 10 }), fc.integer({ min: 0, max: 16384 })), endStream: fc.boolean(), pad: padArb }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('settings' as const), entries: fc.array(settingArb, { maxLength: 4 }), ack: rare(false, true) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('ping' as const), ack: fc.boolean(), len: rare(8, 0, 7, 9) }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('window' as const), sid: fc.oneof(streamSid, fc.constant({ k: 'zero' as const })), inc: fc.oneof({ weight: 5, arbitrary: fc.integer({ min: 1, max: 2 ** 20 }) }, { weight: 1, arbitrary: fc.constantFrom(0, 2 ** 31 - 1) }) }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('rst' as const), sid: streamSid, code: fc.integer({ min: 0, max: 14 }) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('priority' as const), sid: streamSid, self: rare(false, true), len: rare(5, 4, 6) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('goaway' as const), code: fc.integer({ min: 0, max: 14 }) }) },
  {
    weight: 2,
    arbitrary: fc.record({
      t: fc.constant('raw' as const),
      // Mostly unknown types (to be ignored, RFC 9113 5.5); now and then a known one with a random payload.
      type: fc.oneof({ weight: 3, arbitrary: fc.integer({ min: 10, max: 255 }) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 9 }) }),
      flags: fc.integer({ min: 0, max: 255 }),
      sid: fc.oneof(streamSid, fc.constant({ k: 'zero' as const })),
      payload: fc.uint8Array({ maxLength: 40 }),
    }),
  },
);

interface CaseSpec {
  readonly frames: FrameSpec[];
  /** Raw mutations of the whole byte sequence (mostly none). */
  readonly mutations: readonly Mutation[];
  /** Where the bytes are cut into separate writes. */
  readonly cuts: readonly number[];
  /** A small SETTINGS_INITIAL_WINDOW_SIZE sent first, so responses wait on flow control (null: none). */
  readonly window: number | null;
}
const caseArb: fc.Arbitrary<CaseSpec> = fc.record({
  // Mostly a request first, so the frames after it have a stream to name.
  frames: fc.tuple(fc.oneof({ weight: 6, arbitrary: headersArb.map((h) => [h]) }, { weight: 1, arbitrary: fc.constant([]) }), fc.array(frameArb, { maxLength: 8 })).map(([a, b]) => [...a, ...b]),
  mutations: fc.oneof({ weight: 6, arbitrary: fc.constant([]) }, { weight: 1, arbitrary: fc.array(mutationArb, { minLength: 1, maxLength: 4 }) }),
  cuts: fc.oneof({ weight: 2, arbitrary: fc.constant([]) }, { weight: 1, arbitrary: fc.array(fc.nat(), { maxLength: 4 }) }),
  window: fc.oneof({ weight: 2, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: fc.constantFrom(0, 1, 16, 100, 1000) }),
});

interface Built {
  readonly bytes: Buffer;
  /** HEADERS frames sent: the most requests the app may see from this case. */
  readonly headers: number;
  /** Streams opened by HEADERS whose request the client ended (END_STREAM), not reset by it: each must get an answer. */
  readonly ended: Set<number>;
  /** WINDOW_UPDATE increments sent, by stream (0: the connection). */
  readonly credit: Map<number, number>;
  /** The largest SETTINGS_INITIAL_WINDOW_SIZE the server may have applied to each stream opened by HEADERS: in force when it opened, or sent after. */
  readonly initial: Map<number, number>;
  /** The same for any other stream id (RFC 9113's default or any value sent). */
  readonly maxInitial: number;
}

/** The bytes of a case, and what the client told the server in them (as sent, before any raw mutation). */
function build(spec: CaseSpec): Built {
  const enc = new ModelEncoder(4096);
  let next = 1;
  let last = 0;
  const id = (s: Sid): number => {
    switch (s.k) {
      case 'new':
        last = next;
        next += 2;
        return last;
      case 'last':
        return last;
      case 'zero':
        return 0;
      case 'even':
        return last + 1;
      case 'any':
        return s.v;
    }
  };
  const padded = (payload: Buffer, pad: number): { payload: Buffer; flag: number } =>
    pad < 0 ? { payload, flag: 0 } : { payload: Buffer.concat([Buffer.from([pad & 0xff]), payload, Buffer.alloc(Math.min(pad, 255))]), flag: F.Flag.PADDED };
  const out: Buffer[] = [];
  let headers = 0;
  const opened = new Set<number>();
  const ended = new Set<number>();
  const reset = new Set<number>();
  const credit = new Map<number, number>();
  const initial = new Map<number, number>();
  let inForce = 65535;
  let maxInitial = 65535;
  const setInitial = (v: number): void => {
    inForce = v;
    maxInitial = Math.max(maxInitial, v);
    for (const [sid, bound] of initial) initial.set(sid, Math.max(bound, v));
  };
  if (spec.window !== null) {
    out.push(F.settings([[F.Setting.INITIAL_WINDOW_SIZE, spec.window]]));
    setInitial(spec.window);
  }
  for (const f of spec.frames) {
    switch (f.t) {
      case 'headers': {
        headers++;
        const isNew = f.sid.k === 'new';
        const sid = id(f.sid);
        if (isNew) {
          opened.add(sid);
          initial.set(sid, inForce);
        }
        if (f.endStream && opened.has(sid)) ended.add(sid);
        const r = f.req;
        const pseudo: Header[] = [[':method', r.method], [':path', r.path]];
        if (r.scheme !== null) pseudo.splice(1, 0, [':scheme', r.scheme]);
        if (r.authority !== null) pseudo.push([':authority', r.authority]);
        const fields = [...pseudo];
        fields.splice(r.regularAt === 0 ? fields.length : Math.min(r.regularAt, fields.length), 0, ...r.regular);
        let block = enc.block(fields, r.reps);
        if (r.blockMutations.length > 0) block = mutate(block, r.blockMutations);
        const prio = f.priority === 0 ? Buffer.alloc(0) : Buffer.from([0, 0, 0, f.priority === 2 ? sid & 0xff : 0, 16]);
        if (f.priority === 2) prio.writeUInt32BE(sid, 0);
        const parts: Buffer[] = [];
        const n = f.split + 1;
        const size = Math.ceil(block.length / n);
        for (let i = 0; i < n; i++) parts.push(block.subarray(i * size, (i + 1) * size));
        const first = padded(Buffer.concat([prio, parts[0] as Buffer]), f.pad);
        const flags = first.flag | (f.priority !== 0 ? F.Flag.PRIORITY : 0) | (f.endStream ? F.Flag.END_STREAM : 0) | (n === 1 ? F.Flag.END_HEADERS : 0);
        out.push(F.frame(F.FrameType.HEADERS, flags, sid, first.payload));
        for (let i = 1; i < n; i++) out.push(F.continuation(sid, parts[i] as Buffer, i === n - 1));
        break;
      }
      case 'data': {
        const p = padded(Buffer.alloc(f.len, 0x61), f.pad);
        const sid = id(f.sid);
        if (f.endStream && opened.has(sid)) ended.add(sid);
        out.push(F.frame(F.FrameType.DATA, p.flag | (f.endStream ? F.Flag.END_STREAM : 0), sid, p.payload));
        break;
      }
      case 'settings':
        out.push(f.ack ? F.frame(F.FrameType.SETTINGS, F.Flag.ACK, 0, f.entries.length === 0 ? Buffer.alloc(0) : Buffer.alloc(6)) : F.settings(f.entries));
        if (!f.ack) for (const [k, v] of f.entries) if (k === F.Setting.INITIAL_WINDOW_SIZE && v < 2 ** 31) setInitial(v);
        break;
      case 'ping':
        out.push(F.frame(F.FrameType.PING, f.ack ? F.Flag.ACK : 0, 0, Buffer.alloc(f.len, 1)));
        break;
      case 'window': {
        const sid = id(f.sid);
        credit.set(sid, (credit.get(sid) ?? 0) + f.inc);
        out.push(F.windowUpdate(sid, f.inc));
        break;
      }
      case 'rst': {
        const sid = id(f.sid);
        reset.add(sid);
        out.push(F.rstStream(sid, f.code));
        break;
      }
      case 'priority': {
        const sid = id(f.sid);
        const p = Buffer.alloc(f.len);
        if (f.len >= 4) p.writeUInt32BE(f.self ? sid : 0, 0);
        out.push(F.frame(F.FrameType.PRIORITY, 0, sid, p));
        break;
      }
      case 'goaway': {
        const p = Buffer.alloc(8);
        p.writeUInt32BE(0, 0);
        p.writeUInt32BE(f.code, 4);
        out.push(F.frame(F.FrameType.GOAWAY, 0, 0, p));
        break;
      }
      case 'raw':
        out.push(F.frame(f.type, f.flags, id(f.sid), Buffer.from(f.payload)));
        break;
    }
  }
  let bytes: Buffer = Buffer.concat(out);
  if (spec.mutations.length > 0) bytes = mutate(bytes, spec.mutations);
  for (const sid of reset) ended.delete(sid);
  return { bytes, headers, ended, credit, initial, maxInitial };
}

/**
 * Flow control as the server must keep it (RFC 9113 6.9): never more DATA than the windows the
 * client opened, per stream and on the connection. Bounds from above (an update counts from the
 * moment it was sent, the largest initial window from the start), so never a false alarm.
 */
function overWindow(frames: readonly F.Frame[], b: Built): string | null {
  let total = 0;
  const per = new Map<number, number>();
  for (const f of frames) {
    if (f.type !== F.FrameType.DATA) continue;
    total += f.payload.length;
    per.set(f.streamId, (per.get(f.streamId) ?? 0) + f.payload.length);
  }
  if (total > 65535 + (b.credit.get(0) ?? 0)) return `${total} DATA octets on a connection window of ${65535 + (b.credit.get(0) ?? 0)}`;
  for (const [sid, n] of per) {
    const window = (b.initial.get(sid) ?? b.maxInitial) + (b.credit.get(sid) ?? 0);
    if (n > window) return `${n} DATA octets on stream ${sid}, window ${window}`;
  }
  return null;
}

/**
 * Zero bytes that complete a frame the case left unfinished (a raw mutation may cut one), so the
 * PING that follows starts at a frame boundary as the server sees it. Frames over the 16,384
 * octets we allow end the connection (FRAME_SIZE_ERROR) before anything after them is read.
 */
function completion(bytes: Buffer): Buffer {
  let p = 0;
  let b = bytes;
  for (;;) {
    if (p === b.length) return b.subarray(bytes.length);
    if (b.length - p < 9) {
      b = Buffer.concat([b, Buffer.alloc(9 - (b.length - p))]);
      continue;
    }
    const len = b.readUIntBE(p, 3);
    if (len > 16384) return b.subarray(bytes.length);
    if (b.length - p - 9 < len) b = Buffer.concat([b, Buffer.alloc(len - (b.length - p - 9))]);
    p += 9 + len;
  }
}

// ---- the invariants on what reached the app ------------------------------------------------------

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** Never forwarded from a client (docs/reference.md "What the app receives"); `connection`/`transfer-encoding` only as the sidecar frames. */
const NEVER = new Set(['te', 'upgrade', 'keep-alive', 'proxy-connection', 'http2-settings', 'forwarded', 'x-real-ip', 'x-http-method-override', 'x-original-url', 'x-rewrite-url', 'expect']);

function malformed(s: SeenRequest): string | null {
  if (!TOKEN.test(s.method)) return `method ${JSON.stringify(s.method)}`;
  if (!/^\/[!-~]*$/.test(s.url)) return `target ${JSON.stringify(s.url)}`;
  if (s.url.includes('admin')) return `an /admin request reached the app: ${s.url}`;
  for (let i = 0; i < s.rawHeaders.length; i += 2) {
    const name = (s.rawHeaders[i] as string).toLowerCase();
    const value = s.rawHeaders[i + 1] as string;
    if (!TOKEN.test(name) || name.includes('_')) return `header name ${JSON.stringify(name)}`;
    if (/[\0\r\n]/.test(value)) return `header ${name} value ${JSON.stringify(value)}`;
    if (NEVER.has(name)) return `forbidden header ${name}: ${value}`;
    if (name === 'connection' && value !== 'keep-alive') return `connection: ${value}`;
    if (name === 'transfer-encoding' && value !== 'chunked') return `transfer-encoding: ${value}`;
    // The sidecar's own identity headers only: no client value under those names.
    if (/^(x-forwarded-|x-client-|x-jwt-)/.test(name) && value.includes(MARK)) return `client value in ${name}: ${value}`;
    // The client's own id is kept when it is a plain token (docs/reference.md "What the app receives").
    if (name === 'x-request-id' && !/^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/.test(value)) return `x-request-id ${JSON.stringify(value)}`;
  }
  if (s.headers['x-forwarded-client-cert']?.toString().startsWith('Hash=') !== true) return 'no x-forwarded-client-cert from the sidecar';
  return null;
}

/** Audit lines saying the app itself refused or broke on what the sidecar forwarded (the echo app answers 200 to anything). */
function appRefused(lines: readonly Record<string, unknown>[]): Record<string, unknown>[] {
  return lines.filter((l) => l['msg'] === 'request' && ((l['decision'] === 'allow' && l['reason'] === 'ok' && l['status'] !== 200) || l['reason'] === 'upstream_error'));
}

// ---- the fuzz ----------------------------------------------------------------------------------

const INTERNAL = F.ErrorCode.INTERNAL_ERROR;

describe(`HTTP/2 session fuzz on a real sidecar (${SEED_TAG})`, () => {
  it(
    'random and mutated frame sequences: a verdict in bounded time, no internal error, nothing malformed reaches the app, others still served',
    async () => {
      const seenMark = t.app.seen.length;
      const auditMark = t.sc.audit.lines.length;
      let headersSent = 0;
      let cases = 0;
      let ping = 0;
      await fc.assert(
        fc.asyncProperty(caseArb, async (spec) => {
          const built = build(spec);
          const { bytes, headers } = built;
          headersSent += headers;
          // RFC 9113's default windows: the connection's may still be opened by the case without overflowing it.
          const c = await F.connectH2(t.sc.port, tlsOptions(orders()), { window: 'default' });
          try {
            const tag = Buffer.alloc(8);
            tag.writeUInt32BE(++ping, 4);
            const all = Buffer.concat([bytes, completion(bytes), F.ping(tag)]);
            const cuts = [...new Set(spec.cuts.map((x) => x % all.length))].sort((a, b) => a - b);
            let at = 0;
            for (const cut of [...cuts, all.length]) {
              if (cut > at && !(await c.write(all.subarray(at, cut)))) break;
              at = Math.max(at, cut);
            }
            const verdict = await c.waitFrame((f) => f.type === F.FrameType.GOAWAY || (f.type === F.FrameType.PING && (f.flags & F.Flag.ACK) !== 0 && f.payload.equals(tag)), 5000);
            expect(verdict !== null || c.closed, `no PING ACK, no GOAWAY and not closed within 5 s: ${bytes.toString('hex')}`).toBe(true);
            expect(c.goaway?.errorCode, `GOAWAY INTERNAL_ERROR (${c.goaway?.debug ?? ''}): ${bytes.toString('hex')}`).not.toBe(INTERNAL);
            const rsts = c.frames.filter((f) => f.type === F.FrameType.RST_STREAM && f.payload.length === 4 && f.payload.readUInt32BE(0) === INTERNAL);
            expect(rsts.map((f) => f.streamId), `RST_STREAM INTERNAL_ERROR: ${bytes.toString('hex')}`).toEqual([]);
            if (spec.mutations.length === 0 && verdict?.type === F.FrameType.PING && c.goaway === null) {
              // Still serving: open every window wide, and each request the client ended must be
              // answered (a response to its end, or a reset), none left hanging.
              const wide = 2 ** 30;
              const updates = [0, ...built.ended].map((sid) => F.windowUpdate(sid, wide));
              for (const sid of [0, ...built.ended]) built.credit.set(sid, (built.credit.get(sid) ?? 0) + wide);
              await c.write(Buffer.concat(updates));
              const answered = (sid: number): boolean =>
                c.frames.some((f) => f.streamId === sid && (f.type === F.FrameType.RST_STREAM || ((f.type === F.FrameType.DATA || f.type === F.FrameType.HEADERS) && (f.flags & F.Flag.END_STREAM) !== 0)));
              const deadline = Date.now() + 5000;
              // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- the socket's handlers set closed and goaway
              while (![...built.ended].every(answered) && !c.closed && c.goaway === null && Date.now() < deadline) await c.waitFrame(() => false, 50);
              const hanging = [...built.ended].filter((sid) => !answered(sid));
              // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- the socket's handlers set closed and goaway
              expect(c.closed || c.goaway !== null || hanging.length === 0, `streams ${hanging.join(', ')} ended by the client and never answered within 5 s: ${bytes.toString('hex')}`).toBe(true);
            }
            // Raw mutations may have changed what the windows were: then there is nothing to hold the server to.
            if (spec.mutations.length === 0) expect(overWindow(c.frames, built), bytes.toString('hex')).toBeNull();
          } finally {
            c.destroy();
          }
          for (const s of t.app.seen.slice(seenMark)) expect(malformed(s), `${s.method} ${s.url} ${JSON.stringify(s.rawHeaders)}`).toBeNull();
          expect(appRefused(t.sc.audit.lines.slice(auditMark))).toEqual([]);
          if (++cases % 15 === 0) expect((await h2Request(t.sc.origin, orders(), '/healthz')).status).toBe(200);
        }),
        fuzzParams(30, { shrink: false }),
      );
      expect((await h2Request(t.sc.origin, orders(), '/healthz')).status).toBe(200);
      for (const s of t.app.seen.slice(seenMark)) expect(malformed(s), `${s.method} ${s.url} ${JSON.stringify(s.rawHeaders)}`).toBeNull();
      expect(appRefused(t.sc.audit.lines.slice(auditMark))).toEqual([]);
      // The app saw no more requests than were sent (raw mutations may only have broken some).
      expect(t.app.seen.length - seenMark).toBeLessThanOrEqual(headersSent + Math.ceil(cases / 15) + 1);
    },
    fuzzTimeout(15_000),
  );
});

// ---- request heads: what the app receives is what the client meant ----------------------------------

/** Paths the test routes serve to the `orders` client, by method (harness.ts ROUTES), all already normalized. */
const SERVED: Readonly<Record<string, readonly string[]>> = {
  GET: ['/orders/1', '/orders', '/orders/1?q=1', '/healthz', '/public/a'],
  POST: ['/orders/1', '/orders'],
  PUT: ['/orders/1'],
  DELETE: ['/orders/1'],
};
interface HeadSpec {
  readonly method: string;
  readonly path: string;
  readonly authority: string;
  readonly regular: Header[];
  readonly body: number | null;
  /** The content-length sent: none, the body's, or a wrong one. */
  readonly length: 'none' | 'right' | 'wrong';
  readonly reps: FieldRep[];
  /** Padding on the HEADERS and DATA frames (-1: none), and how many DATA frames carry the body. */
  readonly pad: number;
  readonly dataFrames: number;
  /** The body ends with a trailer block (RFC 9113 8.1) instead of END_STREAM on its last DATA. */
  readonly trailers: boolean;
}
const visible = fc.stringMatching(/^[!-~]([ -~]{0,24}[!-~])?$/);
const obsText = fc.uint8Array({ minLength: 1, maxLength: 8 }).map((b) => Buffer.from(b.map((x) => 0x80 | x)).toString('latin1'));
const headSpecArb: fc.Arbitrary<HeadSpec> = fc.record({
  method: fc.oneof({ weight: 10, arbitrary: fc.constantFrom('GET', 'POST', 'PUT', 'DELETE') }, { weight: 1, arbitrary: fc.constantFrom('HEAD', 'CONNECT', 'get', 'G T', '') }),
  path: fc.oneof({ weight: 10, arbitrary: fc.constantFrom(...new Set(Object.values(SERVED).flat())) }, { weight: 1, arbitrary: fc.constantFrom('/admin/x', '/orders/../admin', '/orders/a b', '*', '') }),
  authority: fc.oneof({ weight: 10, arbitrary: fc.constant('localhost') }, { weight: 1, arbitrary: fc.constantFrom('evil.example', 'local host', '') }),
  // Distinct names: the app's node:http joins repeats, which would blur the comparison.
  regular: fc.uniqueArray(
    fc.oneof(
      { weight: 10, arbitrary: fc.tuple(fc.stringMatching(/^x-[a-z0-9-]{1,10}$/), fc.oneof({ weight: 4, arbitrary: visible }, { weight: 1, arbitrary: obsText })) },
      { weight: 1, arbitrary: fc.tuple(fc.constantFrom(...ODD), valueArb) },
      { weight: 1, arbitrary: fc.tuple(fc.constantFrom('x-a', 'x-b'), fc.constantFrom(...BAD_VALUES)) },
      // Large enough to evict from the table, or to take the list past maxHeaderSize (8 KiB).
      { weight: 1, arbitrary: fc.tuple(fc.constant('x-big'), fc.integer({ min: 500, max: 9000 }).map((n) => 'v'.repeat(n))) },
    ),
    { maxLength: 5, selector: (h) => h[0] },
  ),
  body: fc.oneof(fc.constant(null), fc.integer({ min: 0, max: 3000 })),
  length: fc.oneof({ weight: 8, arbitrary: fc.constantFrom('none' as const, 'right' as const) }, { weight: 1, arbitrary: fc.constant('wrong' as const) }),
  reps: fc.array(fieldRepArb, { minLength: 1, maxLength: 4 }),
  pad: fc.oneof({ weight: 3, arbitrary: fc.constant(-1) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 255 }) }),
  dataFrames: fc.integer({ min: 1, max: 3 }),
  trailers: fc.oneof({ weight: 3, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }),
});

/** RFC 9113 8.2.2: connection-specific fields make a request malformed (`te` only as `trailers`). */
const CONNECTION_SPECIFIC = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade']);

/** The spec as sent: pseudo-headers, the regular fields, and a content-length when asked for. */
function headFields(h: HeadSpec): Header[] {
  const fields: Header[] = [[':method', h.method], [':scheme', 'https'], [':path', h.path], [':authority', h.authority], ...h.regular];
  if (h.length !== 'none') fields.push(['content-length', String(h.length === 'right' ? (h.body ?? 0) : (h.body ?? 0) + 1)]);
  return fields;
}

/**
 * `malformed`: a MUST of RFC 9113 8.1.1-8.3.1 broken (never reaches the app); `served`: an
 * ordinary request the routes allow (must reach it, unchanged); neither: the sidecar may go either way.
 */
function judge(h: HeadSpec): { malformed: boolean; served: boolean } {
  let malformed = h.path === '' || h.method === '' || h.method === 'CONNECT' || /[ \x00-\x1f\x7f]/.test(h.path + h.method) || h.length === 'wrong';
  let ordinary = h.authority === 'localhost' && (SERVED[h.method] ?? []).includes(h.path);
  // Over maxHeaderSize (RFC 7541 sizes, with a margin for what the sidecar adds): refused on its stream.
  if (headFields(h).reduce((n, [a, b]) => n + a.length + b.length + 32, 0) > 7000) ordinary = false;
  for (const [name, value] of h.regular) {
    if (name === '' || name.startsWith(':') || /[A-Z ]/.test(name) || CONNECTION_SPECIFIC.has(name) || (name === 'te' && value !== 'trailers') || /[\0\r\n]/.test(value)) malformed = true;
    if (!/^x-[a-z0-9-]+$/.test(name) || ['x-forwarded-for', 'x-forwarded-client-cert', 'x-client-name', 'x-jwt-sub', 'x-real-ip', 'x-request-id', 'x-http-method-override', 'x-original-url'].includes(name)) ordinary = false;
    if (/^[ \t]|[ \t]$|[\x00-\x1f\x7f]/.test(value)) ordinary = false;
  }
  return { malformed, served: ordinary && !malformed };
}

interface StreamResult {
  status: number | null;
  rst: number | null;
  body: Buffer;
  ended: boolean;
}

/** Each stream's response (status and body) or reset, read from the frames received; the blocks decoded in order. */
function responses(frames: readonly F.Frame[]): Map<number, StreamResult> {
  const dec = new HpackDecoder();
  const byId = new Map<number, StreamResult>();
  const get = (id: number): StreamResult => {
    let r = byId.get(id);
    if (r === undefined) byId.set(id, (r = { status: null, rst: null, body: Buffer.alloc(0), ended: false }));
    return r;
  };
  for (const f of frames) {
    if (f.type === F.FrameType.HEADERS) {
      const out: string[] = [];
      // The sidecar's heads are small and never padded: one HEADERS with END_HEADERS.
      expect(dec.decode(f.payload, 0, f.payload.length, out)).toBe(HPACK_OK);
      const r = get(f.streamId);
      r.status = Number(out[1]);
      if ((f.flags & F.Flag.END_STREAM) !== 0) r.ended = true;
    } else if (f.type === F.FrameType.DATA) {
      const r = get(f.streamId);
      r.body = Buffer.concat([r.body, f.payload]);
      if ((f.flags & F.Flag.END_STREAM) !== 0) r.ended = true;
    } else if (f.type === F.FrameType.RST_STREAM) {
      get(f.streamId).rst = f.payload.readUInt32BE(0);
    }
  }
  return byId;
}

describe(`HTTP/2 request heads fuzz on a real sidecar (${SEED_TAG})`, () => {
  it(
    'a malformed head never reaches the app; an ordinary one reaches it with the same method, path, fields and body',
    async () => {
      const auditMark = t.sc.audit.lines.length;
      await fc.assert(
        fc.asyncProperty(fc.array(headSpecArb, { minLength: 1, maxLength: 4 }), async (specs) => {
          const seenMark = t.app.seen.length;
          const enc = new ModelEncoder(4096);
          const frames: Buffer[] = [];
          const padded = (payload: Buffer, pad: number): Buffer => (pad < 0 ? payload : Buffer.concat([Buffer.from([pad]), payload, Buffer.alloc(pad)]));
          const padFlag = (pad: number): number => (pad < 0 ? 0 : F.Flag.PADDED);
          specs.forEach((h, i) => {
            const sid = 2 * i + 1;
            const flags = F.Flag.END_HEADERS | (h.body === null ? F.Flag.END_STREAM : 0) | padFlag(h.pad);
            frames.push(F.frame(F.FrameType.HEADERS, flags, sid, padded(enc.block(headFields(h), h.reps), h.pad)));
            if (h.body === null) return;
            // The body in up to three DATA frames, 'b' bytes, the last one ending the stream.
            const per = Math.ceil(h.body / h.dataFrames);
            for (let k = 0; k < h.dataFrames; k++) {
              const n = Math.max(0, Math.min(per, h.body - k * per));
              const last = k === h.dataFrames - 1 && !h.trailers;
              frames.push(F.frame(F.FrameType.DATA, (last ? F.Flag.END_STREAM : 0) | padFlag(h.pad), sid, padded(Buffer.alloc(n, 0x62), h.pad)));
            }
            if (h.trailers) frames.push(F.headers(sid, enc.block([['x-trailer', MARK]], h.reps), { endStream: true }));
          });
          const c = await F.connectH2(t.sc.port, tlsOptions(orders()));
          let got: Map<number, StreamResult>;
          try {
            await c.write(Buffer.concat(frames));
            const done = (): boolean => {
              const r = responses(c.frames);
              return specs.every((_, i) => {
                const s = r.get(2 * i + 1);
                return s !== undefined && (s.rst !== null || s.ended);
              });
            };
            const deadline = Date.now() + 5000;
            while (!done() && !c.closed && Date.now() < deadline) await c.waitFrame(() => false, 50);
            got = responses(c.frames);
            expect(c.goaway, 'a connection error for requests that are at worst malformed streams').toBeNull();
          } finally {
            c.destroy();
          }
          specs.forEach((h, i) => {
            const r = got.get(2 * i + 1);
            const verdict = judge(h);
            const what = `request ${i}: ${JSON.stringify(headFields(h))} body ${String(h.body)} -> ${JSON.stringify(r === undefined ? null : { ...r, body: r.body.toString('latin1').slice(0, 300) })}`;
            expect(r !== undefined && (r.rst !== null || r.ended), `no answer within 5 s: ${what}`).toBe(true);
            if (r === undefined) return;
            expect(r.rst, `RST_STREAM INTERNAL_ERROR: ${what}`).not.toBe(INTERNAL);
            if (verdict.malformed) expect(r.status, `a malformed request was answered 200 (it reached the app): ${what}`).not.toBe(200);
            if (verdict.served) expect(r.status, `an ordinary request was not served: ${what}`).toBe(200);
            if (r.status === 200 && h.method !== 'HEAD') {
              // The echo app's view (helpers/upstream.ts echo): what it received.
              const seen = JSON.parse(r.body.toString('utf8')) as { method: string; url: string; headers: Record<string, string>; bodyLength: number };
              expect({ method: seen.method, url: seen.url, bodyLength: seen.bodyLength }, what).toEqual({ method: h.method, url: h.path, bodyLength: h.body ?? 0 });
              for (const [name, value] of h.regular) if (/^x-[a-z0-9-]+$/.test(name) && judge({ ...h, regular: [[name, value]] }).served) expect(seen.headers[name], `${name}: ${what}`).toBe(value);
            }
          });
          for (const s of t.app.seen.slice(seenMark)) expect(malformed(s), `${s.method} ${s.url} ${JSON.stringify(s.rawHeaders)}`).toBeNull();
          expect(appRefused(t.sc.audit.lines.slice(auditMark))).toEqual([]);
        }),
        fuzzParams(15, { shrink: true }),
      );
    },
    fuzzTimeout(15_000),
  );
});
