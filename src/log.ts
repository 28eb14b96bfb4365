/** The operational log (start-up, reloads, errors): JSON on stderr, separate from the audit log. */
import { pino } from 'pino';
import type { Logger } from 'pino';

export type Log = Logger;

/** The operational log's levels, most verbose first (pino's names). */
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export type LogLevelChoice = { readonly ok: true; readonly level: LogLevel } | { readonly ok: false; readonly error: string };

function isLogLevel(value: string): value is LogLevel {
  return (LOG_LEVELS as readonly string[]).includes(value);
}

/**
 * The level asked for: the `--log-level` flag, else `MTLS_SIDECAR_LOG_LEVEL`, else `info`. An
 * unknown name is refused naming where it came from (pino would throw a stack at start-up).
 */
export function chooseLogLevel(flag: string | undefined, env: NodeJS.ProcessEnv): LogLevelChoice {
  const [value, source] = flag !== undefined ? [flag, '--log-level'] : [env['MTLS_SIDECAR_LOG_LEVEL'], 'MTLS_SIDECAR_LOG_LEVEL'];
  if (value === undefined || value === '') return { ok: true, level: 'info' };
  if (isLogLevel(value)) return { ok: true, level: value };
  return { ok: false, error: `${source}: unknown level "${value}" (one of ${LOG_LEVELS.join(', ')})` };
}

/**
 * Level names (`"level":"info"`, not pino's numbers) and exactly one `component` key per line:
 * a stage's own (`ratelimit`, ...) when it gives one, else `sidecar`.
 */
export function createLog(level: LogLevel): Log {
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
