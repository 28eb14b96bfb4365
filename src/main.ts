#!/usr/bin/env node
/** The binary: argv -> command -> exit code. The only place that calls process.exit. */
import type { Command, CommandIo } from './cli/io.js';
import { EXIT_FAILURE, EXIT_OK, EXIT_USAGE, describeError } from './errors.js';
import { nodeTooOld, packageFacts, versionLine } from './cli/engines.js';

const USAGE = `Usage: mtls-sidecar <command> [options]

Commands:
  run          serve: verify, authorize, audit and proxy every request
  check        validate a config and every file it names
  explain      what the sidecar would decide for a certificate, method and path
  certs        generate a dev PKI (CA, server cert, workload certs, CRL)
  fingerprint  print the sha256: thumbprint and spki: pin of PEM certificates
  inject       add the sidecar to Kubernetes manifests (offline, like istioctl kube-inject)
  webhook      serve the Kubernetes mutating admission webhook that injects the sidecar

Run "mtls-sidecar <command> --help" for the options of each. --debug prints stack traces;
--version prints the version.`;

// Each command is imported only when it runs: `run` must not carry node-forge (certs), the
// Kubernetes inject/webhook code or their dependencies in its resident memory.
const COMMANDS: Readonly<Record<string, () => Promise<Command>>> = {
  run: async () => (await import('./cli/run.js')).runCommand,
  check: async () => (await import('./cli/check.js')).checkCommand,
  explain: async () => (await import('./cli/explain.js')).explainCommand,
  certs: async () => (await import('./cli/certs.js')).certsCommand,
  fingerprint: async () => (await import('./cli/fingerprint.js')).fingerprintCommand,
  inject: async () => {
    const { injectCommand } = await import('./cli/inject.js');
    return (argv, io) => injectCommand(argv, io);
  },
  webhook: async () => {
    const { webhookCommand } = await import('./cli/webhook.js');
    return (argv, io) => webhookCommand(argv, io);
  },
};

export async function main(argv: string[], io: CommandIo, nodeVersion: string = process.version): Promise<number> {
  // Before anything else: on an unsupported Node, one line and exit 2, whatever the command.
  const tooOld = nodeTooOld(nodeVersion, packageFacts().node);
  if (tooOld !== null) {
    io.stderr(tooOld);
    return EXIT_USAGE;
  }
  if (argv[0] === '--version' || argv[0] === '-v') {
    io.stdout(versionLine(nodeVersion));
    return EXIT_OK;
  }
  const debug = argv.includes('--debug');
  const args = argv.filter((a) => a !== '--debug');
  const [name, ...rest] = args;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    io.stdout(USAGE);
    return name === undefined ? EXIT_USAGE : EXIT_OK;
  }
  // Own keys only: "constructor" or "toString" are not commands.
  const load = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  if (load === undefined) {
    io.stderr(`mtls-sidecar: unknown command "${name}" (try --help)`);
    return EXIT_USAGE;
  }
  try {
    const command = await load();
    return await command(rest, io);
  } catch (err) {
    io.stderr(debug && err instanceof Error && err.stack ? err.stack : `mtls-sidecar ${name}: ${describeError(err)}`);
    return EXIT_FAILURE;
  }
}

const io: CommandIo = {
  stdout: (line) => process.stdout.write(`${line}\n`),
  stderr: (line) => process.stderr.write(`${line}\n`),
  onSecondSignal: () => process.exit(EXIT_FAILURE),
};

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
