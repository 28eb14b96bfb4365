/** `mtls-sidecar run`: serve until SIGTERM/SIGINT, then drain (SPEC §7). */
import { parseArgs } from 'node:util';
import { loadAndCompile } from '../config/index.js';
import { logWarnings } from '../config/warnings.js';
import { openAudit } from '../audit/audit.js';
import type { Audit } from '../audit/audit.js';
import { chooseLogLevel, createLog } from '../log.js';
import { EXIT_FAILURE, EXIT_OK, EXIT_USAGE, describeError } from '../errors.js';
import { Sidecar } from '../runtime/sidecar.js';
import { Reloader } from '../runtime/reload.js';
import { appHealthFromEnv } from '../admin/app-health.js';
import type { CommandIo } from './io.js';
import { resolveConfigPath } from './io.js';
import { delay, waitForSignal } from './signals.js';

export const RUN_HELP = `Usage: mtls-sidecar run [--config PATH] [--log-level LEVEL]

Serves mTLS on listen.address:listen.port and proxies verified, authorized requests to
upstream.url. Config: --config, else $MTLS_SIDECAR_CONFIG, else ./sidecar.yaml.
Files named by the config are watched and reloaded (also on SIGHUP); a bad new version is
refused and the old one keeps serving. SIGTERM/SIGINT: /readyz turns 503, after
shutdown.drainDelay the listener closes, in-flight requests finish (up to shutdown.timeout),
the audit log is flushed (for what is left of shutdown.timeout, at least 1 s), exit 0; a
second signal exits at once.
The operational log (JSON on stderr) logs at --log-level, else $MTLS_SIDECAR_LOG_LEVEL, else
info: trace, debug, info, warn, error, fatal or silent.
Exit 2 for a bad config, 1 for other failures.`;

/** The least time the audit flush gets at shutdown, even when draining used all of shutdown.timeout. */
const AUDIT_FLUSH_MIN_MS = 1000;

export interface RunOptions {
  /** Resolves when the process should shut down (signals in production, a promise in tests). */
  readonly stopSignal?: Promise<string>;
  readonly onListening?: (info: { port: number }) => void;
}

export async function runCommand(argv: string[], io: CommandIo, opts: RunOptions = {}): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({ args: argv, options: { config: { type: 'string', short: 'c' }, 'log-level': { type: 'string' }, help: { type: 'boolean', short: 'h' } }, strict: true }));
  } catch (err) {
    io.stderr(`run: ${(err as Error).message}`);
    return EXIT_USAGE;
  }
  if (values.help === true) {
    io.stdout(RUN_HELP);
    return EXIT_OK;
  }
  const level = chooseLogLevel(values['log-level'], process.env);
  if (!level.ok) {
    io.stderr(`run: ${level.error}`);
    return EXIT_USAGE;
  }
  const file = resolveConfigPath(values.config);
  const outcome = await loadAndCompile(file, 1);
  if (!outcome.ok) {
    for (const line of outcome.lines) io.stderr(line);
    return EXIT_USAGE;
  }
  const s = outcome.snapshot;
  const appHealth = appHealthFromEnv(process.env);
  if (!appHealth.ok) {
    io.stderr(`run: MTLS_SIDECAR_APP_PROBES: ${appHealth.error}`);
    return EXIT_USAGE;
  }
  const log = createLog(level.level);
  logWarnings(log, file, outcome.warnings);
  let audit: Audit;
  try {
    // Open the audit file before serving: a request must never be served unaudited.
    audit = await openAudit(s.audit.file, { onFull: s.audit.onFull, log });
    await audit.ready();
  } catch (err) {
    io.stderr(`run: cannot open audit.file ${s.audit.file}: ${(err as NodeJS.ErrnoException).code ?? describeError(err)}`);
    return EXIT_FAILURE;
  }
  const sidecar = new Sidecar(s, { audit, log, appHealth: appHealth.handler });
  // Signals are ours before anyone can see "listening": SIGTERM and SIGHUP would otherwise still
  // have their default action (end the process) for as long as start-up takes.
  const stopped = opts.stopSignal ?? waitForSignal(io.onSecondSignal);
  const reloader = new Reloader(sidecar, file, log);
  const onHup = (): void => void reloader.reload('SIGHUP');
  process.on('SIGHUP', onHup);
  try {
    const admin = await sidecar.listenAdmin();
    const addr = await sidecar.listen();
    log.info({ address: addr.address, port: addr.port, admin: `${admin.address}:${admin.port}`, upstream: s.upstream.origin, http2: s.listen.http2 }, 'listening');
    opts.onListening?.({ port: addr.port });
  } catch (err) {
    io.stderr(`run: cannot listen: ${describeError(err)}`);
    process.off('SIGHUP', onHup);
    reloader.close();
    await sidecar.close(0);
    await audit.close(AUDIT_FLUSH_MIN_MS);
    return EXIT_FAILURE;
  }
  reloader.start();

  const signal = await stopped;
  // SIGTERM: readiness fails at once so the endpoint is removed; the listener stays open for
  // drainDelay (requests that were already routed here still land), then drains.
  log.info({ signal, drainDelayMs: s.shutdown.drainDelayMs, timeoutMs: s.shutdown.timeoutMs }, 'draining');
  sidecar.draining = true;
  process.off('SIGHUP', onHup);
  reloader.close();
  await delay(sidecar.snapshot.shutdown.drainDelayMs);
  log.info({ open: sidecar.activeConnections }, 'listener closed; finishing in-flight requests');
  const timeoutMs = sidecar.snapshot.shutdown.timeoutMs;
  const stopBy = Date.now() + timeoutMs;
  await sidecar.close(timeoutMs);
  // The audit flush gets what is left of shutdown.timeout (at least AUDIT_FLUSH_MIN_MS); a dead
  // or stalled destination cannot hold the exit longer, and what it did not take is logged.
  await audit.close(Math.max(stopBy - Date.now(), AUDIT_FLUSH_MIN_MS));
  log.info('stopped');
  return EXIT_OK;
}
