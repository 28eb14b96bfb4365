/** The operational log (start-up, reloads, errors): JSON on stderr, separate from the audit log. */
import { pino } from 'pino';
import type { Logger } from 'pino';

export type Log = Logger;

/**
 * Level names (`"level":"info"`, not pino's numbers) and exactly one `component` key per line:
 * a stage's own (`ratelimit`, ...) when it gives one, else `sidecar`.
 */
export function createLog(level: string = process.env['MTLS_SIDECAR_LOG_LEVEL'] ?? 'info'): Log {
  return pino(
    {
      level,
      base: null,
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      mixin: (merge) => ('component' in merge ? {} : { component: 'sidecar' }),
    },
    pino.destination({ dest: 2, sync: true }),
  );
}

/** A logger that drops everything, for tests and commands that print their own output. */
export function silentLog(): Log {
  return pino({ level: 'silent' });
}
