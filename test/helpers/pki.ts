/**
 * A throwaway PKI for integration tests: every trust decision in SPEC §3 and the protective
 * defaults of §4 has a certificate that exercises it. Written once (vitest globalSetup) into
 * `dir`; tests read the paths, thumbprints and pins from the returned object.
 */
import { X509Certificate } from 'node:crypto';
import { writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import {
  chainPem,
  createCa,
  createCrl,
  issueLeaf,
  selfSigned,
  writePki,
  type IssuedCert,
  type LeafOptions,
} from '../../src/pki/devca.js';
import { spkiPin } from '../../src/pki/thumbprint.js';

export interface PkiEntry {
  /** PEM certificate (for clients issued by an intermediate: see `chain`). */
  cert: string;
  key: string;
  /** Leaf followed by its intermediates, when there are any. */
  chain?: string;
  /** "AB:CD:..." — prefix with `sha256:` for a pin. */
  sha256: string;
  /** base64 — prefix with `spki:` for a pin. */
  spki: string;
  serialHex: string;
  /** URI SAN, for clients. */
  uri?: string;
  commonName: string;
}

export interface TestPki {
  dir: string;
  trustDomain: 'cluster.local';
  namespace: 'shop';
  rootCa: PkiEntry;
  /** Signed by rootCa. */
  intermediateCa: PkiEntry;
  /** Unrelated CA: its clients must be refused when only rootCa is trusted. */
  foreignCa: PkiEntry;
  /** root CA + intermediate CA in one file. */
  caBundle: string;
  /** localhost, 127.0.0.1, ::1; issued by rootCa; EKU serverAuth. */
  server: PkiEntry;
  clients: {
    orders: PkiEntry;
    billing: PkiEntry;
    /** Issued by the intermediate; `chain` holds leaf + intermediate. */
    interClient: PkiEntry;
    expired: PkiEntry;
    notYetValid: PkiEntry;
    /** Issued by foreignCa. */
    foreign: PkiEntry;
    /** EKU serverAuth only. */
    serverAuthOnly: PkiEntry;
    /** Listed in crls.root. */
    revoked: PkiEntry;
    /** Self-signed; meant to be listed in `pins`. */
    pinned: PkiEntry;
    /** Self-signed; never pinned. */
    unpinned: PkiEntry;
    /** basicConstraints CA:TRUE on a client "leaf". */
    caTrueLeaf: PkiEntry;
    rsa1024: PkiEntry;
    sha1: PkiEntry;
    /** CN with CR/LF, a header-looking tail and a double quote (see `evilCommonName`). */
    evilCn: PkiEntry;
    /** 4 CAs above the leaf: the most allowed (chain holds leaf + 3 intermediates). */
    chain4: PkiEntry;
    /** 5 CAs above the leaf: one too many (chain holds leaf + 4 intermediates). */
    chain5: PkiEntry;
  };
  /**
   * Workload certificates as `certs` issues them (EKU serverAuth and clientAuth; SANs the
   * SPIFFE ID, the name, localhost, 127.0.0.1): each serves inbound and calls outbound.
   */
  workloads: {
    orders: PkiEntry;
    billing: PkiEntry;
    /** billing's SPIFFE ID and names, expired. */
    billingExpired: PkiEntry;
    /** billing's SPIFFE ID and names, issued by foreignCa. */
    billingForeign: PkiEntry;
    /** billing's names, EKU clientAuth only: not a server certificate. */
    billingClientOnly: PkiEntry;
    /** Another service (SPIFFE ID .../sa/payments) on the same names. */
    payments: PkiEntry;
  };
  /** Trust anchor of chain4/chain5. */
  deepRootCa: PkiEntry;
  crls: {
    /** Signed by rootCa, revokes clients.revoked. */
    root: string;
    /** Signed by intermediateCa, empty. */
    intermediate: string;
  };
  evilCommonName: string;
}

const TD = 'cluster.local';
const NS = 'shop';
const DAY = 24 * 60 * 60 * 1000;
export const EVIL_CN = 'evil"\r\nX-Injected: 1';

function spiffe(name: string): string {
  return `spiffe://${TD}/ns/${NS}/sa/${name}`;
}

function client(name: string, extra: Partial<LeafOptions> = {}): LeafOptions {
  return {
    commonName: name,
    organization: 'shop',
    organizationalUnit: 'backend',
    uris: [spiffe(name)],
    eku: ['clientAuth'],
    days: 30,
    ...extra,
  };
}

function workload(name: string, extra: Partial<LeafOptions> = {}): LeafOptions {
  return client(name, { dnsNames: [name, `${name}.${NS}.svc`, 'localhost'], ips: ['127.0.0.1'], eku: ['serverAuth', 'clientAuth'], ...extra });
}

export async function makeTestPki(dir: string): Promise<TestPki> {
  await mkdir(dir, { recursive: true });
  const now = Date.now();
  // CAs start well in the past so the expired client is still "issued within" its CA's life.
  const caStart = new Date(now - 90 * DAY);

  // Everything that does not depend on another certificate is started at once: RSA key
  // generation dominates and runs in parallel on libuv's thread pool.
  const rootP = createCa({ commonName: 'Test Root CA', organization: 'mtls-sidecar tests', days: 3650, notBefore: caStart });
  const foreignP = createCa({ commonName: 'Foreign CA', organization: 'elsewhere', days: 3650, notBefore: caStart });
  const interP = rootP.then((root) =>
    createCa({ commonName: 'Test Intermediate CA', days: 1825, notBefore: caStart, parent: root, pathLen: 0 }),
  );
  // deepRoot -> d1 -> d2 -> d3 -> d4: necessarily sequential, so it runs alongside the rest.
  const deepP = (async () => {
    const deepRoot = await createCa({ commonName: 'Deep Root CA', days: 3650, notBefore: caStart });
    let ca = deepRoot;
    const cas: IssuedCert[] = [];
    for (let i = 1; i <= 4; i++) {
      ca = await createCa({ commonName: `Deep CA ${i}`, days: 3650, notBefore: caStart, parent: ca });
      cas.push(ca);
    }
    const [chain4, chain5] = await Promise.all([
      issueLeaf(cas[2]!, client('chain4')),
      issueLeaf(cas[3]!, client('chain5')),
    ]);
    return { deepRoot, chain4, chain5 };
  })();
  const fromRoot = (o: LeafOptions) => rootP.then((root) => issueLeaf(root, o));

  const [
    root,
    foreign,
    inter,
    { deepRoot, chain4, chain5 },
    server,
    orders,
    billing,
    interClient,
    expired,
    notYetValid,
    foreignClient,
    serverAuthOnly,
    revoked,
    pinned,
    unpinned,
    caTrueLeaf,
    rsa1024,
    sha1,
    evilCn,
  ] = await Promise.all([
    rootP,
    foreignP,
    interP,
    deepP,
    fromRoot({
      commonName: 'localhost',
      dnsNames: ['localhost'],
      ips: ['127.0.0.1', '::1'],
      eku: ['serverAuth'],
      days: 30,
    }),
    fromRoot(client('orders')),
    fromRoot(client('billing')),
    interP.then((inter) => issueLeaf(inter, client('inter-client'))),
    fromRoot(client('expired', { notBefore: new Date(now - 30 * DAY), notAfter: new Date(now - DAY) })),
    fromRoot(client('not-yet-valid', { notBefore: new Date(now + DAY), notAfter: new Date(now + 30 * DAY) })),
    foreignP.then((foreign) => issueLeaf(foreign, client('foreign'))),
    fromRoot(client('server-auth-only', { eku: ['serverAuth'] })),
    fromRoot(client('revoked')),
    selfSigned(client('pinned')),
    selfSigned(client('unpinned')),
    fromRoot(client('ca-true-leaf', { isCa: true })),
    fromRoot(client('rsa1024', { keyBits: 1024 })),
    fromRoot(client('sha1', { signatureHash: 'sha1' })),
    fromRoot(client('evil', { commonName: EVIL_CN })),
  ]);
  const [wOrders, wBilling, wBillingExpired, wBillingForeign, wBillingClientOnly, wPayments] = await Promise.all([
    fromRoot(workload('orders')),
    fromRoot(workload('billing')),
    fromRoot(workload('billing', { notBefore: new Date(now - 30 * DAY), notAfter: new Date(now - DAY) })),
    issueLeaf(foreign, workload('billing')),
    fromRoot(workload('billing', { eku: ['clientAuth'] })),
    fromRoot(workload('payments', { dnsNames: ['billing', `billing.${NS}.svc`, 'localhost'] })),
  ]);

  const files: { name: string; contents: string }[] = [];
  const entry = (name: string, ic: IssuedCert, commonName: string, uri?: string): PkiEntry => {
    files.push({ name: `${name}.crt`, contents: ic.certPem }, { name: `${name}.key`, contents: ic.keyPem });
    const e: PkiEntry = {
      cert: join(dir, `${name}.crt`),
      key: join(dir, `${name}.key`),
      sha256: ic.sha256,
      spki: spkiPin(new X509Certificate(ic.certDer)),
      serialHex: ic.serialHex,
      commonName,
    };
    if (uri !== undefined) e.uri = uri;
    if (ic.parent?.parent) {
      files.push({ name: `${name}.chain.crt`, contents: chainPem(ic) });
      e.chain = join(dir, `${name}.chain.crt`);
    }
    return e;
  };

  const pki: TestPki = {
    dir,
    trustDomain: TD,
    namespace: NS,
    rootCa: entry('root-ca', root, 'Test Root CA'),
    intermediateCa: entry('intermediate-ca', inter, 'Test Intermediate CA'),
    foreignCa: entry('foreign-ca', foreign, 'Foreign CA'),
    deepRootCa: entry('deep-root-ca', deepRoot, 'Deep Root CA'),
    caBundle: join(dir, 'ca-bundle.crt'),
    server: entry('server', server, 'localhost'),
    clients: {
      orders: entry('orders', orders, 'orders', spiffe('orders')),
      billing: entry('billing', billing, 'billing', spiffe('billing')),
      interClient: entry('inter-client', interClient, 'inter-client', spiffe('inter-client')),
      expired: entry('expired', expired, 'expired', spiffe('expired')),
      notYetValid: entry('not-yet-valid', notYetValid, 'not-yet-valid', spiffe('not-yet-valid')),
      foreign: entry('foreign', foreignClient, 'foreign', spiffe('foreign')),
      serverAuthOnly: entry('server-auth-only', serverAuthOnly, 'server-auth-only', spiffe('server-auth-only')),
      revoked: entry('revoked', revoked, 'revoked', spiffe('revoked')),
      pinned: entry('pinned', pinned, 'pinned', spiffe('pinned')),
      unpinned: entry('unpinned', unpinned, 'unpinned', spiffe('unpinned')),
      caTrueLeaf: entry('ca-true-leaf', caTrueLeaf, 'ca-true-leaf', spiffe('ca-true-leaf')),
      rsa1024: entry('rsa1024', rsa1024, 'rsa1024', spiffe('rsa1024')),
      sha1: entry('sha1', sha1, 'sha1', spiffe('sha1')),
      evilCn: entry('evil', evilCn, EVIL_CN, spiffe('evil')),
      chain4: entry('chain4', chain4, 'chain4', spiffe('chain4')),
      chain5: entry('chain5', chain5, 'chain5', spiffe('chain5')),
    },
    workloads: {
      orders: entry('wl-orders', wOrders, 'orders', spiffe('orders')),
      billing: entry('wl-billing', wBilling, 'billing', spiffe('billing')),
      billingExpired: entry('wl-billing-expired', wBillingExpired, 'billing', spiffe('billing')),
      billingForeign: entry('wl-billing-foreign', wBillingForeign, 'billing', spiffe('billing')),
      billingClientOnly: entry('wl-billing-client-only', wBillingClientOnly, 'billing', spiffe('billing')),
      payments: entry('wl-payments', wPayments, 'payments', spiffe('payments')),
    },
    crls: { root: join(dir, 'root.crl.pem'), intermediate: join(dir, 'intermediate.crl.pem') },
    evilCommonName: EVIL_CN,
  };
  files.push(
    { name: 'ca-bundle.crt', contents: root.certPem + inter.certPem },
    { name: 'root.crl.pem', contents: createCrl(root, [{ serialHex: revoked.serialHex }], { days: 30 }) },
    { name: 'intermediate.crl.pem', contents: createCrl(inter, [], { days: 30 }) },
  );
  // Tests rerun into the same folder (watch mode), so overwrite.
  await writePki(dir, files, { force: true });
  await writeFile(join(dir, 'README.txt'), 'Throwaway test PKI written by test/helpers/pki.ts. Do not use.\n');
  return pki;
}
