/**
 * Stage: audit (SPEC §5). One JSON line per request and per rejected handshake, never sampled.
 * Records are built from a fixed allow-list of fields, so a token, cookie or body can never
 * enter one; there is nothing to redact at run time.
 */
import { open } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { promisify } from 'node:util';
import path from 'node:path';
import { pino } from 'pino';
import type { DestinationStream, Logger } from 'pino';
import type { HandshakeReason, RequestReason } from '../reasons.js';

/**
 * The audit fields fixed for a TLS connection (who the peer is, where from), serialized once
 * per connection (and again if a reload changes its identity), not once per request.
 */
export class AuditConn {
  /** `"identity":…,"certSha256":…,"uri":…,"subject":…` */
  readonly peer: string;
  /** `"remote":…,"tlsVersion":…` */
  readonly origin: string;
  /** The same two, UTF-8 encoded once: copied into each line's batch, not re-encoded. */
  readonly peerBytes: Buffer;
  readonly originBytes: Buffer;
  constructor(identity: string | null, certSha256: string | null, uri: string | null, subject: string | null, remote: string, tlsVersion: string | null) {
    this.peer = `"identity":${str(identity)},"certSha256":${str(certSha256)},"uri":${str(uri)},"subject":${str(subject)}`;
    this.origin = `"remote":${JSON.stringify(remote)},"tlsVersion":${str(tlsVersion)}`;
    this.peerBytes = Buffer.from(this.peer);
    this.originBytes = Buffer.from(this.origin);
  }
}

export interface RequestRecord {
  requestId: string;
  conn: AuditConn;
  method: string;
  path: string;
  route: string | null;
  decision: 'allow' | 'deny';
  reason: RequestReason;
  status: number;
  durationMs: number;
  upstreamMs: number | null;
  bytesIn: number;
  bytesOut: number;
  protocol: string;
}

export interface HandshakeRecord {
  reason: HandshakeReason;
  remote: string;
  /** The id the refused client was given (certificate refusals; none for protocol errors). */
  requestId?: string;
  certSha256?: string;
  subject?: string;
  detail?: string;
}

export interface Audit {
  /** Resolves once the destination is open (rejects, with the reason, if it cannot be). */
  ready(): Promise<void>;
  request(rec: RequestRecord): void;
  handshake(rec: HandshakeRecord): void;
  /** Resolves once every line written so far has reached the destination. */
  flush(): Promise<void>;
  close(): Promise<void>;
}

type FlushableDestination = DestinationStream & {
  fd?: number;
  on?: (event: string, fn: (err?: Error) => void) => void;
  off?: (event: string, fn: (err?: Error) => void) => void;
  flush?: (cb?: (err?: Error) => void) => void;
  flushSync?: () => void;
  end?: () => void;
  once?: (event: string, fn: () => void) => void;
};

/** Audit lines are handed to sonic-boom in batches of about this many bytes. */
export const BATCH_BYTES = 256 * 1024;
/** Longest a line waits in the batch before it is written (like Envoy's access log flush interval, 1 s). */
export const FLUSH_MS = 250;

/**
 * The request line, built directly for its fixed shape: the same JSON pino would write (time
 * first, msg last), without pino's generic serializer, which was most of the audit cost per
 * request. Strings go through JSON.stringify (escaping); numbers and enums are written as is.
 * The line is `head` + conn.peer + `mid` + conn.origin + `tail`.
 */
export function requestLine(r: RequestRecord): string {
  return lineHead(r) + r.conn.peer + lineMid(r) + r.conn.origin + lineTail(r);
}

function lineHead(r: RequestRecord): string {
  return `{"time":"${isoNow()}","requestId":${JSON.stringify(r.requestId)},`;
}

function lineMid(r: RequestRecord): string {
  return (
    `,"method":${JSON.stringify(r.method)},"path":${JSON.stringify(r.path)},"route":${str(r.route)},"decision":"${r.decision}","reason":"${r.reason}",` +
    `"status":${num(r.status)},"durationMs":${ms(r.durationMs)},"upstreamMs":${r.upstreamMs === null ? 'null' : ms(r.upstreamMs)},` +
    `"bytesIn":${num(r.bytesIn)},"bytesOut":${num(r.bytesOut)},`
  );
}

function lineTail(r: RequestRecord): string {
  return `,"protocol":${JSON.stringify(r.protocol)},"msg":"request"}\n`;
}

/**
 * The request line written into `buf` at `at`, byte for byte requestLine(r) in UTF-8; the
 * connection's fields are copied from their encoded form. Returns the new offset, or -1 (nothing
 * written) when the line might not fit.
 */
export function writeRequestLine(buf: Buffer, at: number, r: RequestRecord): number {
  const head = lineHead(r);
  const mid = lineMid(r);
  const tail = lineTail(r);
  const c = r.conn;
  // UTF-8 needs at most 3 bytes per UTF-16 code unit.
  if (at + 3 * (head.length + mid.length + tail.length) + c.peerBytes.length + c.originBytes.length > buf.length) return -1;
  let o = at + buf.write(head, at);
  o += c.peerBytes.copy(buf, o);
  o += buf.write(mid, o);
  o += c.originBytes.copy(buf, o);
  return o + buf.write(tail, o);
}

function str(v: string | null): string {
  return v === null ? 'null' : JSON.stringify(v);
}

/** JSON has no NaN/Infinity; pino writes them as null too. */
function num(n: number): string {
  return Number.isFinite(n) ? String(n) : 'null';
}

/**
 * A duration rounded to 3 decimals (k/1000), written from its integer and thousandths: the same
 * text as String(n), which takes V8's general shortest-double algorithm (~0.5 µs per value).
 */
export function ms(n: number): string {
  const k = Math.round(n * 1000);
  if (!(k >= 0 && k <= Number.MAX_SAFE_INTEGER) || k / 1000 !== n) return num(n);
  const whole = Math.floor(k / 1000);
  const f = k - whole * 1000;
  if (f === 0) return String(whole);
  if (f % 100 === 0) return `${whole}.${f / 100}`;
  if (f % 10 === 0) return `${whole}.${f < 100 ? '0' : ''}${f / 10}`;
  return `${whole}.${f < 10 ? '00' : f < 100 ? '0' : ''}${f}`;
}

/** The ISO time, formatted once per millisecond (many lines share one). */
let isoAt = -1;
let isoText = '';
function isoNow(): string {
  const now = Date.now();
  if (now !== isoAt) {
    isoAt = now;
    isoText = new Date(now).toISOString();
  }
  return isoText;
}

/**
 * `file` is "stdout", "stderr" or a path. Writes go through sonic-boom asynchronously
 * (pino's destination): nothing is dropped (no maxLength), and flush() drains it on exit.
 */
export function createAudit(file: string | number, destination?: DestinationStream): Audit {
  const boom: FlushableDestination | null =
    destination !== undefined
      ? null
      : pino.destination({
          dest: file === 'stdout' ? 1 : file === 'stderr' ? 2 : file,
          sync: false,
          mkdir: true,
          append: true,
          // Batches come already gathered (below); sonic-boom writes each as it comes, queueing
          // behind a write in progress. Nothing is dropped (no maxLength). Not 0: with 0 its
          // flush() returns at once instead of waiting for the writes in progress.
          minLength: 1,
          maxWrite: 4 * BATCH_BYTES,
          // Buffers, not strings: in string mode sonic-boom measures the whole pending batch
          // (Buffer.byteLength of a growing string) on every write.
          contentMode: 'buffer',
        } as Parameters<typeof pino.destination>[0]);
  const dest: FlushableDestination = boom ?? (destination as FlushableDestination);
  // Lines are encoded straight into a batch buffer as they come (no line kept alive until its
  // batch is full; the connection's fields copied, already encoded) and handed to sonic-boom
  // BATCH_BYTES at a time: one write per ~400 requests, because on a busy core each hand-over
  // to the thread pool costs tens of µs. Whatever is pending goes every FLUSH_MS, and
  // flush()/close() (the exit path) take the rest.
  let batch = Buffer.allocUnsafeSlow(BATCH_BYTES);
  let used = 0;
  const drain = (): void => {
    if (used === 0 || boom === null) return;
    const full = batch.subarray(0, used);
    batch = Buffer.allocUnsafeSlow(BATCH_BYTES);
    used = 0;
    boom.write(full as unknown as string);
  };
  const timer = boom === null ? null : setInterval(drain, FLUSH_MS);
  timer?.unref();
  /** One line (handshake lines, via pino). */
  const write: (line: string) => void =
    boom !== null
      ? (line) => {
          const worst = line.length * 3;
          if (used + worst > BATCH_BYTES) {
            drain();
            if (worst > BATCH_BYTES) {
              boom.write(Buffer.from(line) as unknown as string);
              return;
            }
          }
          used += batch.write(line, used);
        }
      : (line) => void dest.write(line);
  const writeRequest: (r: RequestRecord) => void =
    boom !== null
      ? (r) => {
          let end = writeRequestLine(batch, used, r);
          if (end < 0) {
            drain();
            end = writeRequestLine(batch, used, r);
            // Longer than a whole batch (paths and subjects are bounded well below): on its own.
            if (end < 0) return write(requestLine(r));
          }
          used = end;
        }
      : (r) => write(requestLine(r));
  const logger: Logger = pino(
    {
      base: null,
      messageKey: 'msg',
      // No level field: every audit line is the same kind of record. pino expects the
      // timestamp to lead with a comma after the level; with no level it must not.
      timestamp: isoTimeFirst,
      formatters: { level: () => ({}) },
    },
    { write },
  );
  return {
    ready() {
      return whenOpen(dest);
    },
    request(rec) {
      writeRequest(rec);
    },
    handshake(rec) {
      logger.info(rec, 'handshake_rejected');
    },
    flush() {
      drain();
      return flushDestination(dest);
    },
    async close() {
      if (timer !== null) clearInterval(timer);
      drain();
      await flushDestination(dest);
      if (destination === undefined && file !== 'stdout' && file !== 'stderr' && file !== 1 && file !== 2) dest.end?.();
    },
  };
}

/**
 * Open the audit file ourselves, then hand pino the descriptor: a file that cannot be opened
 * is a clean start-up error, not a destination that never becomes ready (and that pino's
 * exit hook would then throw on).
 */
export async function openAudit(file: string): Promise<Audit> {
  if (file === 'stdout' || file === 'stderr') return createAudit(file);
  await mkdir(path.dirname(file), { recursive: true });
  // A plain descriptor, not a FileHandle: a FileHandle closes its fd when garbage-collected,
  // after which the audit stream would write into whatever socket reused that number.
  const fd = await openFd(file, 'a', 0o640);
  // sonic-boom owns the descriptor from here on (and closes it on end()).
  return createAudit(fd);
}

const openFd = promisify(open);

function whenOpen(dest: FlushableDestination): Promise<void> {
  if (typeof dest.fd !== 'number' || dest.fd >= 0 || dest.once === undefined) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const onReady = (): void => {
      dest.off?.('error', onError);
      resolve();
    };
    const onError = (err?: Error): void => {
      dest.off?.('ready', onReady);
      reject(err ?? new Error('audit destination failed to open'));
    };
    dest.once?.('ready', onReady);
    dest.on?.('error', onError);
  });
}

function isoTimeFirst(): string {
  return `"time":"${isoNow()}"`;
}

function flushDestination(dest: FlushableDestination): Promise<void> {
  const flush = dest.flush;
  if (typeof flush !== 'function') return Promise.resolve();
  return new Promise((resolve) => {
    try {
      flush.call(dest, () => resolve());
    } catch {
      // sonic-boom throws if the fd is not open yet: nothing has been written, nothing to flush.
      resolve();
    }
  });
}
