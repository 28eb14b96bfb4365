/**
 * `mtls-sidecar certs`: a development PKI (CA, server cert, one SPIFFE client cert per service,
 * an empty CRL) written with safe modes and never over existing files unless --force.
 */
import { isIP } from 'node:net';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { CommandIo } from './io.js';
import { parseArgsMessage } from './io.js';
import { assertNoneExist, createCa, createCrl, issueLeaf, writePki, type PkiFile } from '../pki/devca.js';

/** Each call is one line (or a multi-line block) without its final newline; main adds it. */
export type CliIo = CommandIo;

const USAGE = `Usage: mtls-sidecar certs [options]

Writes a development PKI: ca.crt/ca.key, server.crt/server.key (localhost, 127.0.0.1, ::1),
<service>.crt/<service>.key per service (URI SAN spiffe://<trust-domain>/ns/<ns>/sa/<service>)
and crl.pem (an empty CRL signed by the CA). Private keys are written with mode 0600.

Options:
  --out DIR             output folder (default: certs)
  --services a,b        client certificates to issue (default: orders,billing)
  --trust-domain D      SPIFFE trust domain (default: cluster.local)
  --namespace NS        Kubernetes namespace in the SPIFFE ID (default: default)
  --days N              validity of server and client certs in days (default: 365; CA: 3650)
  --dns a,b             extra DNS names (or IP addresses) for the server certificate
  --force               overwrite existing files
  --help                show this help`;

class UsageError extends Error {}

// Service account names: a DNS-1123 subdomain, which also makes them safe file names.
const SERVICE_RE = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/;
const NAMESPACE_RE = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
// SPIFFE trust domain: lower-case letters, digits, dots, dashes and underscores.
const TRUST_DOMAIN_RE = /^[a-z0-9._-]{1,255}$/;
const DNS_RE = /^(?:\*\.)?(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;
// Names whose files the command writes itself: a service called "ca" would overwrite the CA.
const RESERVED = new Set(['ca', 'server', 'crl']);
const CA_DAYS = 3650;

interface Options {
  out: string;
  services: string[];
  trustDomain: string;
  namespace: string;
  days: number;
  dnsNames: string[];
  ips: string[];
  force: boolean;
}

function list(s: string): string[] {
  return s
    .split(',')
    .map((x) => x.trim())
    .filter((x) => x !== '');
}

function parse(argv: string[]): Options | 'help' {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        out: { type: 'string', default: 'certs' },
        services: { type: 'string', default: 'orders,billing' },
        'trust-domain': { type: 'string', default: 'cluster.local' },
        namespace: { type: 'string', default: 'default' },
        days: { type: 'string', default: '365' },
        dns: { type: 'string', default: '' },
        force: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
        debug: { type: 'boolean', default: false },
      },
    }));
  } catch (e) {
    throw new UsageError(parseArgsMessage(e));
  }
  if (values.help) return 'help';

  if (!/^[1-9][0-9]{0,4}$/.test(values.days)) {
    throw new UsageError(`--days must be a whole number of days between 1 and 99999, got "${values.days}"`);
  }
  const days = Number(values.days);
  if (!TRUST_DOMAIN_RE.test(values['trust-domain'])) {
    throw new UsageError(
      `--trust-domain "${values['trust-domain']}" is not a valid SPIFFE trust domain (lower-case letters, digits, ".", "-", "_")`,
    );
  }
  if (!NAMESPACE_RE.test(values.namespace)) {
    throw new UsageError(`--namespace "${values.namespace}" is not a valid Kubernetes namespace name`);
  }
  const services = list(values.services);
  const seen = new Set<string>();
  for (const s of services) {
    if (!SERVICE_RE.test(s) || s.length > 253) {
      throw new UsageError(`--services: "${s}" is not a valid service account name (lower-case DNS name)`);
    }
    if (RESERVED.has(s)) throw new UsageError(`--services: "${s}" is reserved (its files would clash with ${s}.*)`);
    if (seen.has(s)) throw new UsageError(`--services: "${s}" is listed twice`);
    seen.add(s);
  }
  const dnsNames: string[] = [];
  const ips: string[] = [];
  for (const d of list(values.dns)) {
    if (isIP(d)) ips.push(d);
    else if (DNS_RE.test(d) && d.length <= 253) dnsNames.push(d);
    else throw new UsageError(`--dns: "${d}" is not a valid DNS name or IP address`);
  }
  if (values.out === '') throw new UsageError('--out must not be empty');
  return {
    out: values.out,
    services,
    trustDomain: values['trust-domain'],
    namespace: values.namespace,
    days,
    dnsNames,
    ips,
    force: values.force,
  };
}

/**
 * Runs `certs` with the arguments that follow the command name. Returns the exit code:
 * 0 on success, 2 on usage errors, existing files (without --force) or any other failure.
 */
export async function certsCommand(argv: string[], io: CliIo): Promise<number> {
  const debug = argv.includes('--debug');
  try {
    const opts = parse(argv);
    if (opts === 'help') {
      io.stdout(USAGE);
      return 0;
    }

    if (!opts.force) {
      // Fail before generating keys; writePki checks again (exclusively) when writing.
      const names = ['ca', 'server', ...opts.services].flatMap((n) => [`${n}.crt`, `${n}.key`]);
      await assertNoneExist(opts.out, [...names, 'crl.pem']);
    }
    const now = Date.now();
    const ca = await createCa({
      commonName: 'mtls-sidecar dev CA',
      organization: 'mtls-sidecar',
      days: Math.max(CA_DAYS, opts.days),
      notBefore: new Date(now - 60 * 60 * 1000),
      pathLen: 0,
    });
    const serverP = issueLeaf(ca, {
      commonName: 'localhost',
      dnsNames: ['localhost', ...opts.dnsNames.filter((d) => d !== 'localhost')],
      ips: ['127.0.0.1', '::1', ...opts.ips.filter((ip) => ip !== '127.0.0.1' && ip !== '::1')],
      eku: ['serverAuth'],
      days: opts.days,
    });
    const clientsP = opts.services.map((name) =>
      issueLeaf(ca, {
        commonName: name,
        uris: [`spiffe://${opts.trustDomain}/ns/${opts.namespace}/sa/${name}`],
        eku: ['clientAuth'],
        days: opts.days,
      }),
    );
    const [server, ...clients] = await Promise.all([serverP, ...clientsP]);
    // The empty CRL lives as long as the certs so the dev setup does not break when it expires.
    const crl = createCrl(ca, [], { days: opts.days });

    const certs: { name: string; sha256: string }[] = [
      { name: 'ca.crt', sha256: ca.sha256 },
      { name: 'server.crt', sha256: server.sha256 },
    ];
    const files: PkiFile[] = [
      { name: 'ca.crt', contents: ca.certPem },
      { name: 'ca.key', contents: ca.keyPem, secret: true },
      { name: 'server.crt', contents: server.certPem },
      { name: 'server.key', contents: server.keyPem, secret: true },
    ];
    opts.services.forEach((name, i) => {
      const c = clients[i]!;
      files.push({ name: `${name}.crt`, contents: c.certPem });
      files.push({ name: `${name}.key`, contents: c.keyPem, secret: true });
      certs.push({ name: `${name}.crt`, sha256: c.sha256 });
    });
    files.push({ name: 'crl.pem', contents: crl });

    await writePki(opts.out, files, { force: opts.force });
    for (const c of certs) io.stdout(`${join(opts.out, c.name)}  sha256:${c.sha256}`);
    return 0;
  } catch (e) {
    io.stderr(`certs: ${errorLine(e)}`);
    if (debug && e instanceof Error && e.stack) io.stderr(e.stack);
    return 2;
  }
}

function errorLine(e: unknown): string {
  // PkiError, usage and fs errors ("EACCES: permission denied, open '...'") are one-line messages.
  return e instanceof Error ? e.message : String(e);
}
