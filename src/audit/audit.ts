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
  constructor(identity: string | null, certSha256: string | null, uri: string | null, subject: string | null, remote: string, tlsVersion: string | null) {
    this.peer = `"identity":${str(identity)},"certSha256":${str(certSha256)},"uri":${str(uri)},"subject":${str(subject)}`;
    this.origin = `"remote":${JSON.stringify(remote)},"tlsVersion":${str(tlsVersion)}`;
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

/** Audit writes are batched to this many bytes (sonic-boom minLength; below its 16 KiB maxWrite). */
export const BATCH_BYTES = 64 * 1024;
/** Longest a line waits in the batch before it is written (like Envoy's access log flush interval, 1 s). */
export const FLUSH_MS = 250;

/**
 * The request line, built directly for its fixed shape: the same JSON pino would write (time
 * first, msg last), without pino's generic serializer, which was most of the audit cost per
 * request. Strings go through JSON.stringify (escaping); numbers and enums are written as is.
 */
export function requestLine(r: RequestRecord): string {
  return (
    `{"time":"${new Date().toISOString()}","requestId":${JSON.stringify(r.requestId)},${r.conn.peer},"method":${JSON.stringify(r.method)},` +
    `"path":${JSON.stringify(r.path)},"route":${str(r.route)},"decision":"${r.decision}","reason":"${r.reason}",` +
    `"status":${num(r.status)},"durationMs":${num(r.durationMs)},"upstreamMs":${r.upstreamMs === null ? 'null' : num(r.upstreamMs)},` +
    `"bytesIn":${num(r.bytesIn)},"bytesOut":${num(r.bytesOut)},${r.conn.origin},"protocol":${JSON.stringify(r.protocol)},"msg":"request"}\n`
  );
}

function str(v: string | null): string {
  return v === null ? 'null' : JSON.stringify(v);
}

/** JSON has no NaN/Infinity; pino writes them as null too. */
function num(n: number): string {
  return Number.isFinite(n) ? String(n) : 'null';
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
          // Lines are gathered into writes of at least BATCH_BYTES (one write per ~12 requests
          // instead of one per request), and whatever is pending is written every FLUSH_MS.
          // Nothing is dropped (no maxLength); close() and the exit path flush the rest.
          minLength: BATCH_BYTES,
          maxWrite: 4 * BATCH_BYTES,
          periodicFlush: FLUSH_MS,
          // Buffers, not strings: in string mode sonic-boom measures the whole pending batch
          // (Buffer.byteLength of a growing string) on every line, ~9 µs per line at this size.
          contentMode: 'buffer',
        } as Parameters<typeof pino.destination>[0]);
  const dest: FlushableDestination = boom ?? (destination as FlushableDestination);
  const write: (line: string) => void = boom !== null ? (line) => void boom.write(Buffer.from(line) as unknown as string) : (line) => void dest.write(line);
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
      write(requestLine(rec));
    },
    handshake(rec) {
      logger.info(rec, 'handshake_rejected');
    },
    flush() {
      return flushDestination(dest);
    },
    async close() {
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
  return `"time":"${new Date().toISOString()}"`;
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
