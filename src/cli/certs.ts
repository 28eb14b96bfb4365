/**
 * `mtls-sidecar certs`: a development PKI (CA, server cert, one workload cert per service, an
 * empty CRL) written with safe modes and never over existing files unless --force; `--add`
 * issues more workload certs from the CA already in the folder.
 */
import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { CommandIo } from './io.js';
import { parseArgsMessage } from './io.js';
import {
  assertNoneExist,
  createCa,
  createCrl,
  issueLeaf,
  loadCa,
  writePki,
  type IssuedCert,
  type Issuer,
  type KeyType,
  type LeafOptions,
  type PkiFile,
} from '../pki/devca.js';
import { PkiError } from '../pki/errors.js';

/** Each call is one line (or a multi-line block) without its final newline; main adds it. */
export type CliIo = CommandIo;

const USAGE = `Usage: mtls-sidecar certs [options]

Writes a development PKI into --out: ca.crt/ca.key, server.crt/server.key (localhost, 127.0.0.1,
::1 and the --dns names), one workload certificate <name>.crt/<name>.key per service, and
crl.pem (an empty CRL signed by the CA). A workload certificate has CN=<name>, the SANs
spiffe://<trust-domain>/ns/<namespace>/sa/<name>, <name>, <name>.<namespace>.svc,
<name>.<namespace>.svc.cluster.local, localhost and 127.0.0.1, and EKU clientAuth and
serverAuth: the same certificate calls other services and serves. Keys are ECDSA P-256 unless
--key-type rsa, written with mode 0600. Prints each certificate's SHA-256 thumbprint.

--add issues only the named workload certificates, from the CA already in --out (ca.crt and
ca.key), and touches nothing else; give it the --trust-domain and --namespace the PKI was made
with.

Options:
  --out DIR             output folder (default: certs)
  --services a,b        workload certificates to issue (default: orders,billing)
  --add a,b             only issue these workload certificates, from the CA in --out
  --trust-domain D      SPIFFE trust domain (default: cluster.local)
  --namespace NS        Kubernetes namespace, in the SPIFFE ID and DNS names (default: default)
  --days N              validity of server and workload certs in days (default: 365; CA: 3650)
  --key-type T          ecdsa (P-256, the default) or rsa (2048 bits)
  --dns a,b             extra DNS names (or IP addresses) for the server certificate
  --force               overwrite existing files (with --add: only the named certificates)
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
const KEY_TYPES: readonly KeyType[] = ['ecdsa', 'rsa'];

interface Common {
  out: string;
  trustDomain: string;
  namespace: string;
  days: number;
  keyType: KeyType;
  force: boolean;
}

/** The whole PKI, or (--add) only workload certs from the CA already in `out`. */
type Options =
  | (Common & { mode: 'create'; services: string[]; dnsNames: string[]; ips: string[] })
  | (Common & { mode: 'add'; services: string[] });

function list(s: string): string[] {
  return s
    .split(',')
    .map((x) => x.trim())
    .filter((x) => x !== '');
}

function serviceNames(flag: string, value: string, namespace: string): string[] {
  const services = list(value);
  const seen = new Set<string>();
  for (const s of services) {
    if (!SERVICE_RE.test(s) || s.length > 253) {
      throw new UsageError(`${flag}: "${s}" is not a valid service account name (lower-case DNS name)`);
    }
    if (RESERVED.has(s)) throw new UsageError(`${flag}: "${s}" is reserved (its files would clash with ${s}.*)`);
    if (seen.has(s)) throw new UsageError(`${flag}: "${s}" is listed twice`);
    const fqdn = `${s}.${namespace}.svc.cluster.local`;
    if (fqdn.length > 253) throw new UsageError(`${flag}: "${s}" is too long for the DNS name ${fqdn} (253 characters at most)`);
    seen.add(s);
  }
  return services;
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
        // No defaults: --add refuses both when they are given.
        services: { type: 'string' },
        add: { type: 'string' },
        'trust-domain': { type: 'string', default: 'cluster.local' },
        namespace: { type: 'string', default: 'default' },
        days: { type: 'string', default: '365' },
        'key-type': { type: 'string', default: 'ecdsa' },
        dns: { type: 'string' },
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
  const keyType = KEY_TYPES.find((k) => k === values['key-type']);
  if (keyType === undefined) throw new UsageError(`--key-type must be ecdsa or rsa, got "${values['key-type']}"`);
  if (values.out === '') throw new UsageError('--out must not be empty');
  const common: Common = {
    out: values.out,
    trustDomain: values['trust-domain'],
    namespace: values.namespace,
    days,
    keyType,
    force: values.force,
  };

  if (values.add !== undefined) {
    if (values.services !== undefined) {
      throw new UsageError('--add and --services do not combine: --add issues exactly the certificates it names');
    }
    if (values.dns !== undefined) throw new UsageError('--dns names the server certificate, which --add does not touch');
    const services = serviceNames('--add', values.add, values.namespace);
    if (services.length === 0) throw new UsageError('--add needs at least one service name');
    return { ...common, mode: 'add', services };
  }

  const services = serviceNames('--services', values.services ?? 'orders,billing', values.namespace);
  const dnsNames: string[] = [];
  const ips: string[] = [];
  for (const d of list(values.dns ?? '')) {
    if (isIP(d)) ips.push(d);
    else if (DNS_RE.test(d) && d.length <= 253) dnsNames.push(d);
    else throw new UsageError(`--dns: "${d}" is not a valid DNS name or IP address`);
  }
  return { ...common, mode: 'create', services, dnsNames, ips };
}

/**
 * A workload's certificate: its SPIFFE ID, the names it is reached by in the cluster and on
 * loopback, and both EKUs, so the one certificate is presented when the workload calls other
 * services (clientAuth) and by the sidecar that serves it (serverAuth).
 */
function workloadLeaf(name: string, opts: Options): LeafOptions {
  const ns = opts.namespace;
  return {
    commonName: name,
    uris: [`spiffe://${opts.trustDomain}/ns/${ns}/sa/${name}`],
    dnsNames: [name, `${name}.${ns}.svc`, `${name}.${ns}.svc.cluster.local`, 'localhost'],
    ips: ['127.0.0.1'],
    eku: ['serverAuth', 'clientAuth'],
    days: opts.days,
    keyType: opts.keyType,
  };
}

function certFiles(name: string, c: IssuedCert): PkiFile[] {
  return [
    { name: `${name}.crt`, contents: c.certPem },
    { name: `${name}.key`, contents: c.keyPem, secret: true },
  ];
}

/** The CA of an existing dev PKI, for --add; a missing file is named with what to do. */
async function existingCa(out: string): Promise<Issuer> {
  const certPath = join(out, 'ca.crt');
  const keyPath = join(out, 'ca.key');
  const read = async (p: string): Promise<string> => {
    try {
      return await readFile(p, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      throw new PkiError('ERR_CA_FILES', `--add issues from the CA in ${out}, but ${p} does not exist (create the PKI first: mtls-sidecar certs --out ${out})`);
    }
  };
  return loadCa(await read(certPath), await read(keyPath), { cert: certPath, key: keyPath });
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

    const lines = opts.mode === 'add' ? await addCerts(opts) : await createPki(opts);
    for (const [name, sha256] of lines) io.stdout(`${join(opts.out, name)}  sha256:${sha256}`);
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

/** The whole PKI. Returns [file, thumbprint] per certificate, in the order printed. */
async function createPki(opts: Options & { mode: 'create' }): Promise<[string, string][]> {
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
    keyType: opts.keyType,
  });
  const serverP = issueLeaf(ca, {
    commonName: 'localhost',
    dnsNames: ['localhost', ...opts.dnsNames.filter((d) => d !== 'localhost')],
    ips: ['127.0.0.1', '::1', ...opts.ips.filter((ip) => ip !== '127.0.0.1' && ip !== '::1')],
    eku: ['serverAuth'],
    days: opts.days,
    keyType: opts.keyType,
  });
  const workloadsP = opts.services.map((name) => issueLeaf(ca, workloadLeaf(name, opts)));
  const [server, ...workloads] = await Promise.all([serverP, ...workloadsP]);
  // The empty CRL lives as long as the certs so the dev setup does not break when it expires.
  const crl = createCrl(ca, [], { days: opts.days });

  const printed: [string, string][] = [
    ['ca.crt', ca.sha256],
    ['server.crt', server.sha256],
  ];
  const files: PkiFile[] = [...certFiles('ca', ca), ...certFiles('server', server)];
  opts.services.forEach((name, i) => {
    const c = workloads[i]!;
    files.push(...certFiles(name, c));
    printed.push([`${name}.crt`, c.sha256]);
  });
  files.push({ name: 'crl.pem', contents: crl });
  await writePki(opts.out, files, { force: opts.force });
  return printed;
}

/** --add: workload certs from the CA in `out`; the CA, the CRL and every other file stay as they are. */
async function addCerts(opts: Options & { mode: 'add' }): Promise<[string, string][]> {
  const ca = await existingCa(opts.out);
  // --force replaces only the named certificates: the file list below never holds anything else.
  if (!opts.force) await assertNoneExist(opts.out, opts.services.flatMap((n) => [`${n}.crt`, `${n}.key`]));
  const workloads = await Promise.all(opts.services.map((name) => issueLeaf(ca, workloadLeaf(name, opts))));
  const files = opts.services.flatMap((name, i) => certFiles(name, workloads[i]!));
  await writePki(opts.out, files, { force: opts.force });
  return opts.services.map((name, i) => [`${name}.crt`, workloads[i]!.sha256]);
}
