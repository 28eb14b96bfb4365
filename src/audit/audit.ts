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

export interface RequestRecord {
  requestId: string;
  identity: string | null;
  certSha256: string | null;
  uri: string | null;
  subject: string | null;
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
  remote: string;
  tlsVersion: string | null;
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

/**
 * `file` is "stdout", "stderr" or a path. Writes go through sonic-boom asynchronously
 * (pino's destination): nothing is dropped (no maxLength), and flush() drains it on exit.
 */
export function createAudit(file: string | number, destination?: DestinationStream): Audit {
  const dest: FlushableDestination =
    destination ??
    pino.destination({
      dest: file === 'stdout' ? 1 : file === 'stderr' ? 2 : file,
      sync: false,
      mkdir: true,
      append: true,
    });
  const logger: Logger = pino(
    {
      base: null,
      messageKey: 'msg',
      // No level field: every audit line is the same kind of record. pino expects the
      // timestamp to lead with a comma after the level; with no level it must not.
      timestamp: isoTimeFirst,
      formatters: { level: () => ({}) },
    },
    dest,
  );
  return {
    ready() {
      return whenOpen(dest);
    },
    request(rec) {
      logger.info(rec, 'request');
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
