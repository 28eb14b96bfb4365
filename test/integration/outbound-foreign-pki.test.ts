/**
 * Outbound against a configuration and certificates that are not the repo's own: a PKI made by
 * the openssl command line (P-384 keys, an intermediate CA, another trust domain, workload
 * certificates shaped as a mesh CA issues them) and two YAML files written by hand, loaded by
 * the product's loader. A's app calls B's app through both sidecars; a server certificate from
 * the same CA with another SPIFFE ID is refused.
 */
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { openssl, tempDir } from '../unit/pki/util.js';
import { startSidecarFile } from '../helpers/sidecar.js';
import type { RunningSidecar } from '../helpers/sidecar.js';
import { startUpstream } from '../helpers/upstream.js';
import type { Upstream } from '../helpers/upstream.js';

const TD = 'prod.example.org';
let dir = '';
let cleanup: () => Promise<void> = () => Promise.resolve();
let appA: Upstream;
let appB: Upstream;
let b: RunningSidecar;
let a: RunningSidecar;
let impostorPort = 0;
let impostor: RunningSidecar;

function run(args: string[]): void {
  const r = openssl(args);
  if (r.status !== 0) throw new Error(`openssl ${args.join(' ')}: ${r.stderr}`);
}

/** An EC P-384 key, a CSR, and a certificate signed by `ca` with the given extensions. */
async function issue(name: string, subject: string, ca: string, ext: string): Promise<void> {
  const f = (x: string): string => path.join(dir, x);
  run(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-384', '-out', f(`${name}.key`)]);
  run(['req', '-new', '-key', f(`${name}.key`), '-subj', subject, '-out', f(`${name}.csr`)]);
  await writeFile(f(`${name}.ext`), ext);
  run(['x509', '-req', '-in', f(`${name}.csr`), '-CA', f(`${ca}.crt`), '-CAkey', f(`${ca}.key`), '-CAcreateserial', '-days', '2', '-sha384', '-extfile', f(`${name}.ext`), '-out', f(`${name}.crt`)]);
}

function workloadExt(sa: string, ns: string): string {
  return [
    'basicConstraints=critical,CA:FALSE',
    'keyUsage=critical,digitalSignature',
    'extendedKeyUsage=serverAuth,clientAuth',
    `subjectAltName=URI:spiffe://${TD}/ns/${ns}/sa/${sa},DNS:${sa}.${ns}.svc.cluster.local,DNS:localhost,IP:127.0.0.1`,
    '',
  ].join('\n');
}

beforeAll(async () => {
  ({ dir, cleanup } = await tempDir('mtls-sidecar-foreign-pki-'));
  const f = (x: string): string => path.join(dir, x);
  run(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-384', '-out', f('root.key')]);
  run(['req', '-x509', '-new', '-key', f('root.key'), '-subj', '/O=Example Corp/CN=Example Mesh Root', '-days', '10', '-sha384', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign', '-out', f('root.crt')]);
  await issue('issuing', '/O=Example Corp/CN=Example Mesh Issuing CA', 'root', 'basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n');
  await issue('checkout', '/O=Example Corp/OU=payments', 'issuing', workloadExt('checkout', 'web'));
  await issue('ledger', '/O=Example Corp/OU=payments', 'issuing', workloadExt('ledger', 'finance'));
  await issue('intruder', '/O=Example Corp/OU=payments', 'issuing', workloadExt('intruder', 'finance'));
  // Chains as a mesh hands them out: leaf then issuing CA; the root is the only trust anchor.
  for (const n of ['checkout', 'ledger', 'intruder']) await writeFile(f(`${n}.chain.crt`), (await readFile(f(`${n}.crt`), 'utf8')) + (await readFile(f('issuing.crt'), 'utf8')));

  appA = await startUpstream();
  appB = await startUpstream();
  const ledgerYaml = (cert: string, key: string): string => `# ledger: admits checkout for reads
version: 1
listen: { address: 127.0.0.1, port: 0, http2: true }
admin: { address: 127.0.0.1, port: 0 }
tls:
  cert: ${cert}
  key: ${key}
  clientCAs: [root.crt]
  minVersion: TLSv1.3
identities:
  - name: checkout
    match: { uri: "spiffe://${TD}/ns/web/sa/checkout", o: "Example Corp" }
    scopes: [ledger.read]
routes:
  - { name: entries, prefix: /entries, methods: [GET], scopes: [ledger.read] }
upstream: { url: "${appB.url}" }
`;
  await writeFile(f('ledger.yaml'), ledgerYaml('ledger.chain.crt', 'ledger.key'));
  await writeFile(f('intruder.yaml'), ledgerYaml('intruder.chain.crt', 'intruder.key'));
  b = await startSidecarFile(f('ledger.yaml'));
  impostor = await startSidecarFile(f('intruder.yaml'));
  impostorPort = impostor.port;
  await writeFile(
    f('checkout.yaml'),
    `# checkout: calls the ledger through its outbound side
version: 1
listen: { address: 127.0.0.1, port: 0 }
admin: { address: 127.0.0.1, port: 0 }
tls:
  cert: checkout.chain.crt
  key: checkout.key
  clientCAs: [root.crt]
routes:
  - { name: health, path: /healthz, public: true }
upstream: { url: "${appA.url}" }
outbound:
  destinations:
    - name: ledger
      listen: { port: 0 }
      target: "127.0.0.1:${b.port}"
      serverName: ledger.finance.svc.cluster.local
      expect: { uri: "spiffe://${TD}/ns/finance/sa/ledger" }
      http2: true
    - name: ledger-impostor
      listen: { port: 0 }
      target: "127.0.0.1:${impostorPort}"
      serverName: ledger.finance.svc.cluster.local
      expect: { uri: "spiffe://${TD}/ns/finance/sa/ledger" }
`,
  );
  a = await startSidecarFile(f('checkout.yaml'));
});

afterAll(async () => {
  for (const s of [a, impostor, b]) await s.close();
  await appA.close();
  await appB.close();
  await cleanup();
});

describe('outbound with an openssl-made PKI and hand-written configs', () => {
  it('carries checkout to ledger: ledger sees checkout over HTTP/2 and TLS 1.3', async () => {
    const res = await request(`http://127.0.0.1:${a.outboundPort('ledger')}/entries/42`, { headers: { 'x-request-id': 'foreign-1' } });
    expect(res.statusCode).toBe(200);
    await res.body.text();
    expect(appB.seen.at(-1)?.headers['x-client-identity']).toBe('checkout');
    expect(appB.seen.at(-1)?.headers['x-forwarded-client-cert']).toContain(`URI=spiffe://${TD}/ns/web/sa/checkout`);
    expect(await b.audit.waitFor((l) => l['requestId'] === 'foreign-1')).toMatchObject({ identity: 'checkout', tlsVersion: 'TLSv1.3', protocol: 'HTTP/2', status: 200 });
    expect(await a.audit.waitFor((l) => l['requestId'] === 'foreign-1')).toMatchObject({ direction: 'outbound', peerUri: `spiffe://${TD}/ns/finance/sa/ledger`, protocol: 'HTTP/2' });
  });

  it('refuses a server of the same CA with another SPIFFE ID', async () => {
    const before = appB.seen.length;
    const res = await request(`http://127.0.0.1:${a.outboundPort('ledger-impostor')}/entries/1`, { headers: { 'x-request-id': 'foreign-2' } });
    expect(res.statusCode).toBe(502);
    await res.body.text();
    expect(appB.seen.length).toBe(before);
    expect(await a.audit.waitFor((l) => l.msg === 'outbound_handshake_rejected')).toMatchObject({ destination: 'ledger-impostor', reason: 'identity_mismatch', uri: `spiffe://${TD}/ns/finance/sa/intruder` });
  });
});
