/**
 * Stage: audit (SPEC §5). One JSON line per request and per rejected handshake, never sampled.
 * Records are built from a fixed allow-list of fields, so a token, cookie or body can never
 * enter one; there is nothing to redact at run time.
 */
import { close as closeFd, open } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { promisify } from 'node:util';
import path from 'node:path';
import { pino } from 'pino';
import type { DestinationStream, Logger } from 'pino';
import type { HandshakeReason, OutboundHandshakeReason, OutboundReason, RequestReason } from '../reasons.js';
import { silentLog } from '../log.js';
import type { Log } from '../log.js';
import { AuditBuffer, writerForDestination, writerForFd } from './sink.js';
import type { OnFull } from './sink.js';

export { AUDIT_BUFFER_BYTES, BATCH_BYTES, FLUSH_MS } from './sink.js';
export type { OnFull } from './sink.js';

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

/**
 * The fields of the outbound line that belong to a verified connection to a destination (its
 * name, the server's URI SAN and thumbprint, the protocol spoken), serialized once per connection
 * as AuditConn is for the inbound line, and kept UTF-8 encoded for the batch.
 */
export class AuditOutboundConn {
  /** `"destination":…,"peerUri":…,"peerSha256":…` */
  readonly peer: string;
  /** `,"protocol":…,"msg":"request"}` and the newline: the end of the line. */
  readonly tail: string;
  readonly peerBytes: Buffer;
  readonly tailBytes: Buffer;
  constructor(destination: string, peerUri: string | null, peerSha256: string, protocol: string) {
    this.peer = outboundPeer(destination, peerUri, peerSha256);
    this.tail = outboundTail(protocol);
    this.peerBytes = Buffer.from(this.peer);
    this.tailBytes = Buffer.from(this.tail);
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
  /** policy.mode audit: what authorization would have refused (absent or null otherwise). */
  wouldDeny?: RequestReason | null;
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

/** One request the app sent out through a destination (SPEC §5, `direction:"outbound"`). */
export interface OutboundRecord {
  requestId: string;
  /** null: refused before a destination was chosen (unknown authority, CONNECT). */
  destination: string | null;
  /** The server's URI SAN and certificate thumbprint (lower-case hex); null when none was verified. */
  peerUri: string | null;
  peerSha256: string | null;
  method: string;
  path: string;
  status: number;
  reason: OutboundReason;
  durationMs: number;
  bytesIn: number;
  bytesOut: number;
  /** What was spoken to the remote: HTTP/1.1 or HTTP/2 (null when no connection was made). */
  protocol: string | null;
  /** The connection's fields already serialized (the same destination, peer and protocol as above), or null. */
  conn?: AuditOutboundConn | null;
}

/** A destination's server refused after its handshake (SPEC §5). */
export interface OutboundHandshakeRecord {
  destination: string;
  reason: OutboundHandshakeReason;
  target: string;
  peerSha256?: string;
  subject?: string;
  uri?: string;
}

export interface Audit {
  /** Resolves once the destination is open (rejects, with the reason, if it cannot be). */
  ready(): Promise<void>;
  request(rec: RequestRecord): void;
  handshake(rec: HandshakeRecord): void;
  outbound(rec: OutboundRecord): void;
  outboundHandshake(rec: OutboundHandshakeRecord): void;
  /** `audit.onFull: refuse` and the destination is full or failing: requests get 503 audit_unavailable. */
  readonly refusing: boolean;
  /** Lines held in memory, not yet taken by the destination (bytes). */
  readonly bufferedBytes: number;
  /** Failed writes to the destination. */
  readonly writeErrors: number;
  /** Lines that were never written (no room, destination gone, left over at shutdown). */
  readonly linesDropped: number;
  /** Resolves true once every line so far has reached the destination, false after `timeoutMs`. */
  flush(timeoutMs?: number): Promise<boolean>;
  /** Flushes for at most `timeoutMs`, counts and logs what is left, and releases the destination. */
  close(timeoutMs?: number): Promise<void>;
}

export interface AuditOptions {
  /** What to do when the destination cannot keep up or fails (SPEC §3); default refuse. */
  readonly onFull?: OnFull;
  /** The operational log, for the one line per change of the sink's state. */
  readonly log?: Log;
}

/** flush()/close() without a timeout (tests, a failed start-up) wait at most this long. */
const DEFAULT_WAIT_MS = 5000;

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
  const would = r.wouldDeny === undefined || r.wouldDeny === null ? '' : `,"wouldDeny":"${r.wouldDeny}"`;
  return `,"protocol":${JSON.stringify(r.protocol)}${would},"direction":"inbound","msg":"request"}\n`;
}

/** The outbound request line, in the same fixed-shape way as requestLine (time first, msg last). */
export function outboundLine(r: OutboundRecord): string {
  const c = r.conn ?? null;
  return (
    outboundHead() +
    (c === null ? outboundPeer(r.destination, r.peerUri, r.peerSha256) : c.peer) +
    outboundMid(r) +
    (c === null ? outboundTail(r.protocol) : c.tail)
  );
}

function outboundHead(): string {
  return `{"time":"${isoNow()}","direction":"outbound",`;
}

function outboundPeer(destination: string | null, peerUri: string | null, peerSha256: string | null): string {
  return `"destination":${str(destination)},"peerUri":${str(peerUri)},"peerSha256":${str(peerSha256)}`;
}

function outboundMid(r: OutboundRecord): string {
  return (
    `,"requestId":${JSON.stringify(r.requestId)},"method":${JSON.stringify(r.method)},"path":${JSON.stringify(r.path)},"status":${num(r.status)},"reason":"${r.reason}",` +
    `"durationMs":${ms(r.durationMs)},"bytesIn":${num(r.bytesIn)},"bytesOut":${num(r.bytesOut)}`
  );
}

function outboundTail(protocol: string | null): string {
  return `,"protocol":${str(protocol)},"msg":"request"}\n`;
}

/**
 * The outbound line of a record with its connection's fields (`conn`) written into `buf` at `at`,
 * byte for byte outboundLine(r) in UTF-8. Returns the new offset, or -1 (nothing written) when
 * the line might not fit.
 */
export function writeOutboundLine(buf: Buffer, at: number, r: OutboundRecord, c: AuditOutboundConn): number {
  const head = outboundHead();
  const mid = outboundMid(r);
  // UTF-8 needs at most 3 bytes per UTF-16 code unit.
  if (at + 3 * (head.length + mid.length) + c.peerBytes.length + c.tailBytes.length > buf.length) return -1;
  let o = at + buf.write(head, at);
  o += c.peerBytes.copy(buf, o);
  o += buf.write(mid, o);
  return o + c.tailBytes.copy(buf, o);
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
 * The audit log on "stdout", "stderr" or an open descriptor, or (tests, embedding) on an
 * in-process `destination` that gets each line at once. Lines are encoded straight into the
 * buffer's batch (no line kept alive on its own; the connection's fields copied, already
 * encoded) and handed to the destination BATCH_BYTES at a time: one write per ~400 requests,
 * because on a busy core each hand-over to the thread pool costs tens of µs. Whatever is pending
 * goes every FLUSH_MS, and flush()/close() take the rest. The buffer (sink.ts) holds at most
 * AUDIT_BUFFER_BYTES; the policy for the rest is `onFull`.
 */
export function createAudit(target: 'stdout' | 'stderr' | number, destination?: DestinationStream, opts: AuditOptions = {}): Audit {
  const makeWriter = destination !== undefined ? writerForDestination(destination) : writerForFd(target === 'stdout' ? 1 : target === 'stderr' ? 2 : target);
  const buf = new AuditBuffer(makeWriter, { onFull: opts.onFull ?? 'refuse', log: opts.log ?? silentLog(), eager: destination !== undefined });
  const writeRequest = (r: RequestRecord): void => {
    let end = writeRequestLine(buf.batch, buf.used, r);
    if (end < 0) {
      buf.handOver();
      end = writeRequestLine(buf.batch, buf.used, r);
      // Longer than a whole batch (paths and subjects are bounded well below): on its own.
      if (end < 0) return buf.line(requestLine(r));
    }
    buf.commit(end);
  };
  /** Handshake lines, via pino. */
  const logger: Logger = pino(
    {
      base: null,
      messageKey: 'msg',
      // No level field: every audit line is the same kind of record. pino expects the
      // timestamp to lead with a comma after the level; with no level it must not.
      timestamp: isoTimeFirst,
      formatters: { level: () => ({}) },
    },
    { write: (line: string) => buf.line(line) },
  );
  return {
    ready() {
      // The descriptor is open before the buffer exists (openAudit), so there is nothing to wait for.
      return Promise.resolve();
    },
    request: writeRequest,
    handshake(rec) {
      logger.info(rec, 'handshake_rejected');
    },
    outbound(rec) {
      const c = rec.conn ?? null;
      let end = c === null ? -1 : writeOutboundLine(buf.batch, buf.used, rec, c);
      if (end < 0 && c !== null) {
        buf.handOver();
        end = writeOutboundLine(buf.batch, buf.used, rec, c);
      }
      // No connection fields (a refusal before any), or longer than a whole batch: as a string.
      if (end < 0) buf.line(outboundLine(rec));
      else buf.commit(end);
    },
    outboundHandshake(rec) {
      logger.info(rec, 'outbound_handshake_rejected');
    },
    get refusing() {
      return buf.refusing;
    },
    get bufferedBytes() {
      return buf.bufferedBytes;
    },
    get writeErrors() {
      return buf.writeErrors;
    },
    get linesDropped() {
      return buf.linesDropped;
    },
    flush(timeoutMs = DEFAULT_WAIT_MS) {
      return buf.flush(timeoutMs);
    },
    close(timeoutMs = DEFAULT_WAIT_MS) {
      return buf.close(timeoutMs);
    },
  };
}

/**
 * Open the audit file ourselves, then hand the writer the descriptor: a file that cannot be
 * opened is a clean start-up error, not a destination that never becomes ready. A FIFO's open
 * waits for its reader, so start-up does too (no request is served unaudited).
 */
export async function openAudit(file: string, opts: AuditOptions = {}): Promise<Audit> {
  if (file === 'stdout' || file === 'stderr') return createAudit(file, undefined, opts);
  await mkdir(path.dirname(file), { recursive: true });
  // A plain descriptor, not a FileHandle: a FileHandle closes its fd when garbage-collected,
  // after which the audit stream would write into whatever socket reused that number.
  const fd = await openFd(file, 'a', 0o640);
  // The writer owns the descriptor from here on (and closes it on close()).
  try {
    return createAudit(fd, undefined, opts);
  } catch (err) {
    closeFd(fd, () => undefined);
    throw err;
  }
}

const openFd = promisify(open);

function isoTimeFirst(): string {
  return `"time":"${isoNow()}"`;
}
