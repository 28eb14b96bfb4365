/** `mtls-sidecar webhook`: the mutating admission webhook (SPEC §2), until SIGTERM/SIGINT. */
import { parseArgs } from 'node:util';
import { chooseLogLevel, createLog } from '../log.js';
import type { Log } from '../log.js';
import { EXIT_FAILURE, EXIT_OK, EXIT_USAGE, describeError } from '../errors.js';
import { loadWebhookConfig } from '../webhook/config.js';
import { WebhookServer } from '../webhook/server.js';
import type { CommandIo } from './io.js';
import { waitForSignal } from './signals.js';

export const WEBHOOK_HELP = `Usage: mtls-sidecar webhook [--config PATH] [--log-level LEVEL]

Serves the Kubernetes mutating admission webhook (AdmissionReview v1) that injects the
mtls-sidecar into pods: POST /mutate, GET /healthz and /metrics over HTTPS on listen.port, and
/healthz and /metrics over plain HTTP on admin.port. The serving certificate is reloaded when
its files change. Config: --config, else $MTLS_SIDECAR_WEBHOOK_CONFIG, else ./webhook.yaml
(see docs/kubernetes.md). SIGTERM/SIGINT: drain and exit 0. The operational log logs at
--log-level, else $MTLS_SIDECAR_LOG_LEVEL, else info. Exit 2 for a bad config or certificate,
1 for other failures.`;

export interface WebhookCommandOptions {
  readonly stopSignal?: Promise<string>;
  readonly onListening?: (info: { port: number; adminPort: number }) => void;
  readonly log?: Log;
}

export async function webhookCommand(argv: string[], io: CommandIo, opts: WebhookCommandOptions = {}): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({ args: argv, options: { config: { type: 'string', short: 'c' }, 'log-level': { type: 'string' }, help: { type: 'boolean', short: 'h' } }, strict: true }));
  } catch (err) {
    io.stderr(`webhook: ${(err as Error).message}`);
    return EXIT_USAGE;
  }
  if (values.help === true) {
    io.stdout(WEBHOOK_HELP);
    return EXIT_OK;
  }
  const level = chooseLogLevel(values['log-level'], process.env);
  if (!level.ok) {
    io.stderr(`webhook: ${level.error}`);
    return EXIT_USAGE;
  }
  const file = values.config ?? process.env['MTLS_SIDECAR_WEBHOOK_CONFIG'] ?? 'webhook.yaml';
  const loaded = await loadWebhookConfig(file);
  if (!loaded.ok) {
    for (const line of loaded.lines) io.stderr(line);
    return EXIT_USAGE;
  }
  const config = loaded.config;
  const log = opts.log ?? createLog(level.level);
  let server: WebhookServer;
  try {
    server = await WebhookServer.start(config, { log });
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    io.stderr(`webhook: ${code === 'WEBHOOK_TLS' ? (err as Error).message : `cannot listen: ${describeError(err)}`}`);
    return code === 'WEBHOOK_TLS' ? EXIT_USAGE : EXIT_FAILURE;
  }
  log.info({ address: config.listen.address, port: server.port, admin: `${config.admin.address}:${server.adminPort}`, image: config.inject.image, mode: config.inject.mode }, 'webhook listening');
  opts.onListening?.({ port: server.port, adminPort: server.adminPort });
  const signal = await (opts.stopSignal ?? waitForSignal(io.onSecondSignal));
  log.info({ signal, drainDelayMs: config.shutdown.drainDelayMs }, 'draining');
  await new Promise((resolve) => setTimeout(resolve, config.shutdown.drainDelayMs));
  await server.close();
  log.info('stopped');
  return EXIT_OK;
}
