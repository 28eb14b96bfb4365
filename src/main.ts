#!/usr/bin/env node
/** The binary: argv -> command -> exit code. The only place that calls process.exit. */
import { certsCommand } from './cli/certs.js';
import { checkCommand } from './cli/check.js';
import { fingerprintCommand } from './cli/fingerprint.js';
import { injectCommand } from './cli/inject.js';
import type { Command, CommandIo } from './cli/io.js';
import { runCommand } from './cli/run.js';
import { webhookCommand } from './cli/webhook.js';
import { EXIT_FAILURE, EXIT_OK, EXIT_USAGE, describeError } from './errors.js';

const USAGE = `Usage: mtls-sidecar <command> [options]

Commands:
  run          serve: verify, authorize, audit and proxy every request
  check        validate a config and every file it names
  certs        generate a dev PKI (CA, server cert, client certs, CRL)
  fingerprint  print the sha256: thumbprint and spki: pin of PEM certificates
  inject       add the sidecar to Kubernetes manifests (offline, like istioctl kube-inject)
  webhook      serve the Kubernetes mutating admission webhook that injects the sidecar

Run "mtls-sidecar <command> --help" for the options of each. --debug prints stack traces.`;

const COMMANDS: Readonly<Record<string, Command>> = {
  run: runCommand,
  check: checkCommand,
  certs: certsCommand,
  fingerprint: fingerprintCommand,
  inject: (argv, io) => injectCommand(argv, io),
  webhook: (argv, io) => webhookCommand(argv, io),
};

export async function main(argv: string[], io: CommandIo): Promise<number> {
  const debug = argv.includes('--debug');
  const args = argv.filter((a) => a !== '--debug');
  const [name, ...rest] = args;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    io.stdout(USAGE);
    return name === undefined ? EXIT_USAGE : EXIT_OK;
  }
  const command = COMMANDS[name];
  if (command === undefined) {
    io.stderr(`mtls-sidecar: unknown command "${name}" (try --help)`);
    return EXIT_USAGE;
  }
  try {
    return await command(rest, io);
  } catch (err) {
    io.stderr(debug && err instanceof Error && err.stack ? err.stack : `mtls-sidecar ${name}: ${describeError(err)}`);
    return EXIT_FAILURE;
  }
}

const io: CommandIo = {
  stdout: (line) => process.stdout.write(`${line}\n`),
  stderr: (line) => process.stderr.write(`${line}\n`),
};

process.on('mtls-sidecar:abort' as 'SIGTERM', () => process.exit(EXIT_FAILURE));
main(process.argv.slice(2), io).then(
  (code) => {
    process.exitCode = code;
    // Let stdout drain; then leave even if a stray handle (keep-alive socket) is still open.
    setTimeout(() => process.exit(code), code === EXIT_OK ? 50 : 0).unref();
  },
  (err: unknown) => {
    process.stderr.write(`mtls-sidecar: ${describeError(err)}\n`);
    process.exit(EXIT_FAILURE);
  },
);
