/** The operational log (start-up, reloads, errors): JSON on stderr, separate from the audit log. */
import { pino } from 'pino';
import type { Logger } from 'pino';

export type Log = Logger;

export function createLog(level: string = process.env['MTLS_SIDECAR_LOG_LEVEL'] ?? 'info'): Log {
  return pino({ level, base: { component: 'mtls-sidecar' }, timestamp: pino.stdTimeFunctions.isoTime }, pino.destination({ dest: 2, sync: true }));
}

/** A logger that drops everything, for tests and commands that print their own output. */
export function silentLog(): Log {
  return pino({ level: 'silent' });
}
