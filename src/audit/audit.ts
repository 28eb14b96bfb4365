/**
 * Stage: audit (SPEC §5). One JSON line per request and per rejected handshake, never sampled.
 * Records are built from a fixed allow-list of fields, so a token, cookie or body can never
 * enter one; there is nothing to redact at run time.
 */
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
  request(rec: RequestRecord): void;
  handshake(rec: HandshakeRecord): void;
  /** Resolves once every line written so far has reached the destination. */
  flush(): Promise<void>;
  close(): Promise<void>;
}

type FlushableDestination = DestinationStream & {
  flush?: (cb?: (err?: Error) => void) => void;
  flushSync?: () => void;
  end?: () => void;
  once?: (event: string, fn: () => void) => void;
};

/**
 * `file` is "stdout", "stderr" or a path. Writes go through sonic-boom asynchronously
 * (pino's destination): nothing is dropped (no maxLength), and flush() drains it on exit.
 */
export function createAudit(file: string, destination?: DestinationStream): Audit {
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
      if (destination === undefined && file !== 'stdout' && file !== 'stderr') dest.end?.();
    },
  };
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
