/**
 * `mtls-sidecar explain`: what the sidecar would decide for a certificate, method and path
 * (server/explain.ts decides; this reads the arguments and files and prints).
 */
import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { loadAndCompile } from '../config/index.js';
import { EXIT_DENIED, EXIT_OK, EXIT_USAGE } from '../errors.js';
import { decodePem } from '../pki/pem.js';
import { explainRequest } from '../server/explain.js';
import type { Explanation } from '../server/explain.js';
import { fsMessage } from './fingerprint.js';
import { parseArgsMessage, printable, resolveConfigPath } from './io.js';
import type { CommandIo } from './io.js';

export const EXPLAIN_HELP = `Usage: mtls-sidecar explain [--config PATH] --cert FILE [--method M] [--token JWT] [--json] PATH

What the sidecar would decide for a client presenting the certificate in FILE with method M
(default GET) on PATH, one step per line: trust verdict, identity rule, path, route, scopes
held and needed, token check, rate-limit policy, then the decision and the reason its audit
line would carry. The running sidecar's own checks decide; nothing is sent, and no rate-limit
token is spent. Config: --config, else $MTLS_SIDECAR_CONFIG, else ./sidecar.yaml.

  --cert FILE   PEM: the client's certificate, then the intermediates it presents, if any
  --method M    the request method (case-sensitive, as routes match it); default GET
  --token JWT   a bearer token for routes that need one (never printed)
  --json        one JSON object instead of lines

Exit 0 allowed (an audit-mode would-deny included), 3 denied, 2 usage or config error.`;

/** RFC 9110 method token. */
const METHOD = /^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$/;

export async function explainCommand(argv: string[], io: CommandIo): Promise<number> {
  let values;
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: true,
      options: {
        config: { type: 'string', short: 'c' },
        cert: { type: 'string' },
        method: { type: 'string', short: 'X' },
        token: { type: 'string' },
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (err) {
    io.stderr(`explain: ${parseArgsMessage(err)}`);
    return EXIT_USAGE;
  }
  if (values.help === true) {
    io.stdout(EXPLAIN_HELP);
    return EXIT_OK;
  }
  const [target, ...extra] = positionals;
  if (target === undefined || extra.length > 0) {
    io.stderr(`explain: give exactly one PATH (usage: mtls-sidecar explain [--config PATH] --cert FILE [--method M] [--token JWT] PATH)`);
    return EXIT_USAGE;
  }
  if (values.cert === undefined) {
    io.stderr('explain: --cert FILE is required');
    return EXIT_USAGE;
  }
  const method = values.method ?? 'GET';
  if (!METHOD.test(method)) {
    io.stderr('explain: --method must be an HTTP method token such as GET');
    return EXIT_USAGE;
  }
  const token = values.token ?? null;
  if (token === '') {
    io.stderr('explain: --token is empty');
    return EXIT_USAGE;
  }

  const chain = await readChain(values.cert);
  if (typeof chain === 'string') {
    io.stderr(`explain: --cert ${printable(values.cert)}: ${chain}`);
    return EXIT_USAGE;
  }
  const configFile = resolveConfigPath(values.config);
  const outcome = await loadAndCompile(configFile, 1);
  if (!outcome.ok) {
    for (const line of outcome.lines) io.stderr(line);
    return EXIT_USAGE;
  }
  const [leaf, ...presented] = chain;
  const e = await explainRequest(outcome.snapshot, { leaf, presented, method, target, token, now: Date.now() });
  if (values.json === true) io.stdout(JSON.stringify(e));
  else for (const line of render(e)) io.stdout(line);
  return e.decision === 'allow' ? EXIT_OK : EXIT_DENIED;
}

/** The certificates of a PEM file (or one DER certificate), leaf first; a message when there are none. */
async function readChain(file: string): Promise<[X509Certificate, ...X509Certificate[]] | string> {
  let bytes: Buffer;
  try {
    bytes = await readFile(file);
  } catch (err) {
    return `cannot read: ${fsMessage(err)}`;
  }
  const blocks = decodePem(bytes.toString('latin1')).blocks.filter((b) => b.label === 'CERTIFICATE');
  const ders = blocks.length > 0 ? blocks.map((b) => b.der) : [bytes];
  const certs: X509Certificate[] = [];
  for (const [i, der] of ders.entries()) {
    try {
      certs.push(new X509Certificate(der));
    } catch {
      return blocks.length === 0 ? 'no certificate found (expected PEM -----BEGIN CERTIFICATE----- or DER)' : `certificate #${i + 1} is not a valid X.509 certificate`;
    }
  }
  const [leaf, ...rest] = certs;
  return leaf === undefined ? 'no certificate found' : [leaf, ...rest];
}

/** One line per step, then the decision: `step  result  [reason: ]detail`. */
export function render(e: Explanation): string[] {
  const lines = e.steps.map((s) => {
    const told = s.reason === null ? s.detail : s.detail === '' ? s.reason : `${s.reason}: ${s.detail}`;
    return `${s.step.padEnd(11)} ${s.result.padEnd(11)} ${told}`.trimEnd();
  });
  let outcome: string;
  if (e.decision === 'allow') outcome = e.wouldDeny === null ? e.reason : `${e.reason} (wouldDeny ${e.wouldDeny})`;
  else if (e.status === null) outcome = `${e.reason} (handshake_rejected: the client gets certificate_refused)`;
  else outcome = `${e.reason} (${e.status} ${e.error ?? ''})`;
  lines.push(`${'decision'.padEnd(11)} ${e.decision.padEnd(11)} ${outcome}`);
  return lines;
}
