/** `mtls-sidecar inject`: offline injection of Kubernetes manifests (SPEC §2), like istioctl kube-inject. */
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { injectManifests } from '../inject/documents.js';
import { DEFAULT_SETTINGS } from '../inject/settings.js';
import type { InjectSettings } from '../inject/settings.js';
import { summarize } from '../inject/summary.js';
import { loadWebhookConfig } from '../webhook/config.js';
import { EXIT_OK, EXIT_USAGE, describeError } from '../errors.js';
import type { CommandIo } from './io.js';

export const INJECT_HELP = `Usage: mtls-sidecar inject [-f FILE | -f -] [--all] [--legacy] [--config PATH]

Reads multi-document Kubernetes YAML (default: standard input) and writes it to standard output
with the mtls-sidecar added to every pod template labelled mtls-sidecar.io/inject: "true"
(Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, ReplicationController, Job, CronJob, and
those inside a List). Other documents are copied unchanged. Injecting twice changes nothing.

  -f, --file FILE   the manifests to read; - for standard input
  --all             inject every pod template not labelled mtls-sidecar.io/inject: "false"
  --legacy          add the sidecar as a regular container, not a native sidecar
                    (an initContainers entry with restartPolicy: Always, Kubernetes 1.29+)
  --config PATH     take the injection defaults from a webhook config file's "inject" section

Per-workload annotations (mtls-sidecar.io/image, port, admin-port, config, cert-secret, ...)
are described in docs/kubernetes.md. Standard output is only YAML. Standard error gets warnings
(where traffic could reach the app around the sidecar, among others; they do not change the exit
code) and a last line saying what was injected and what was skipped or passed through.
Exit 0, or 2 for bad input.`;

export interface InjectCommandOptions {
  /** Standard input, injectable for tests. */
  readonly stdin?: NodeJS.ReadableStream | string;
}

export async function injectCommand(argv: string[], io: CommandIo, opts: InjectCommandOptions = {}): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        file: { type: 'string', short: 'f' },
        all: { type: 'boolean' },
        legacy: { type: 'boolean' },
        config: { type: 'string', short: 'c' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    io.stderr(`inject: ${(err as Error).message}`);
    return EXIT_USAGE;
  }
  if (values.help === true) {
    io.stdout(INJECT_HELP);
    return EXIT_OK;
  }

  let settings: InjectSettings = DEFAULT_SETTINGS;
  if (values.config !== undefined) {
    const loaded = await loadWebhookConfig(values.config);
    if (!loaded.ok) {
      for (const line of loaded.lines) io.stderr(`inject: ${line}`);
      return EXIT_USAGE;
    }
    settings = loaded.config.inject;
  }
  if (values.legacy === true) settings = { ...settings, mode: 'legacy' };

  const source = values.file ?? '-';
  const name = source === '-' ? '<stdin>' : source;
  const stdin = opts.stdin ?? process.stdin;
  if (source === '-' && typeof stdin !== 'string' && 'isTTY' in stdin && stdin.isTTY) {
    io.stderr('inject: standard input is a terminal; pass -f FILE or pipe the manifests in (--help)');
    return EXIT_USAGE;
  }
  let text: string;
  try {
    text = source === '-' ? await readStdin(stdin) : await readFile(source, 'utf8');
  } catch (err) {
    io.stderr(`inject: cannot read ${name}: ${(err as NodeJS.ErrnoException).code ?? describeError(err)}`);
    return EXIT_USAGE;
  }

  const result = injectManifests(text, { settings, policy: values.all === true ? 'all' : 'label' });
  if (!result.ok) {
    io.stderr(`inject: ${name}:${result.error}`);
    return EXIT_USAGE;
  }
  for (const r of result.reports) for (const w of r.warnings) io.stderr(`inject: warning: ${name}:${r.line} ${r.object}: ${w}`);
  for (const w of result.warnings) io.stderr(`inject: warning: ${name}: ${w}`);
  if (result.output !== '') io.stdout(result.output.endsWith('\n') ? result.output.slice(0, -1) : result.output);
  io.stderr(`inject: ${summarize(result.reports, result.passedThrough)}`);
  return EXIT_OK;
}

async function readStdin(stdin: NodeJS.ReadableStream | string): Promise<string> {
  if (typeof stdin === 'string') return stdin;
  const chunks: Buffer[] = [];
  for await (const chunk of stdin) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
  return Buffer.concat(chunks).toString('utf8');
}
