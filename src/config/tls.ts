/**
 * The `tls` section: the server certificate and key, the client CAs, pins and CRLs, read and
 * checked -> the snapshot's tls (secure-context material and trust policy), certs and crlFiles.
 */
import { X509Certificate, createPrivateKey } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { parseSubjectAltName } from '../identity/peer.js';
import { crlSignatureAlgorithm, parseCrlFile, verifyCrlSignature } from '../pki/crl.js';
import { canonicalSerial, subjectNameDer } from '../pki/certinfo.js';
import { normalizeSha256Thumbprint } from '../pki/thumbprint.js';
import { messageOf } from './compile-context.js';
import type { CompileContext } from './compile-context.js';
import type { RawConfig } from './schema.js';
import { TlsMaterial } from './snapshot.js';
import type { CertSummary, CrlFileSummary, CrlIndex, PendingCrl, Snapshot } from './snapshot.js';

type RawTls = RawConfig['tls'];

/** The `tls` section -> the snapshot's tls, certs and crlFiles; null when a problem was reported. */
export async function compileTls(t: RawTls, ctx: CompileContext): Promise<Pick<Snapshot, 'tls' | 'certs' | 'crlFiles'> | null> {
  const server = await compileServerCert(t, ctx);
  const clientCAs = await compileClientCAs(t.clientCAs, ctx);
  const pins = compilePins(t.pins);
  const crls = await compileCrls(t.crls, clientCAs.cas, ctx);
  if (server === null) return null;
  const cas = clientCAs.cas;
  return {
    tls: Object.freeze({
      material: new TlsMaterial(server.certPem, server.keyPem, clientCAs.pems),
      serverLeaf: server.leaf,
      minVersion: t.minVersion,
      trust: Object.freeze({
        hasClientCAs: cas.length > 0,
        cas: Object.freeze([...cas]),
        caFingerprints: new Set(cas.map((ca) => ca.fingerprint256)),
        pinsSha256: pins.sha256,
        pinsSpki: pins.spki,
        crlsByIssuer: crls.byIssuer,
        pendingCrls: crls.pending,
      }),
      files: Object.freeze([server.certFile, server.keyFile, ...t.clientCAs.map((f) => ctx.resolve(f)), ...t.crls.map((f) => ctx.resolve(f))]),
    }),
    certs: Object.freeze([...server.certs, ...clientCAs.certs].map((c) => Object.freeze(c))),
    crlFiles: Object.freeze(crls.files),
  };
}

interface ServerCert {
  readonly certFile: string;
  readonly keyFile: string;
  readonly certPem: Buffer;
  readonly keyPem: Buffer;
  readonly leaf: X509Certificate | null;
  readonly certs: readonly CertSummary[];
}

/** tls.cert and tls.key: both readable, the leaf current, the key its own; null when not usable. */
async function compileServerCert(t: RawTls, ctx: CompileContext): Promise<ServerCert | null> {
  const certs: CertSummary[] = [];
  const certFile = ctx.resolve(t.cert);
  const keyFile = ctx.resolve(t.key);
  const certPem = await ctx.read(certFile, ['tls', 'cert']);
  const keyPem = await ctx.read(keyFile, ['tls', 'key']);
  let serverChain: X509Certificate[] = [];
  if (certPem !== null) {
    serverChain = parseCerts(certPem, ['tls', 'cert'], ctx);
    const leaf = serverChain[0];
    if (leaf !== undefined) {
      certs.push(summarize(leaf, 'server', certFile));
      if (leaf.validToDate.getTime() < ctx.now) ctx.add(['tls', 'cert'], `server certificate expired on ${leaf.validToDate.toISOString()}`);
    }
  }
  let key: KeyObject | null = null;
  if (keyPem !== null) {
    try {
      key = createPrivateKey(keyPem);
    } catch {
      // The key's own parse error could echo key bytes; say only what is wrong.
      ctx.add(['tls', 'key'], 'not a readable private key (PEM, unencrypted)');
    }
  }
  const leaf = serverChain[0];
  if (key !== null && leaf !== undefined && !leaf.checkPrivateKey(key)) {
    ctx.add(['tls', 'key'], 'private key does not match the certificate in tls.cert');
  }
  if (key === null || certPem === null || keyPem === null) return null;
  return { certFile, keyFile, certPem, keyPem, leaf: leaf ?? null, certs };
}

/** tls.clientCAs: CA certificates only, each current. */
async function compileClientCAs(files: readonly string[], ctx: CompileContext): Promise<{ cas: X509Certificate[]; pems: Buffer[]; certs: CertSummary[] }> {
  const pems: Buffer[] = [];
  const cas: X509Certificate[] = [];
  const certs: CertSummary[] = [];
  for (const [i, f] of files.entries()) {
    const p = ['tls', 'clientCAs', i];
    const pem = await ctx.read(ctx.resolve(f), p);
    if (pem === null) continue;
    const parsed = parseCerts(pem, p, ctx);
    for (const ca of parsed) {
      if (!ca.ca) {
        ctx.add(p, `"${ca.subject.replace(/\n/g, ', ')}" is not a CA certificate (basicConstraints CA:TRUE missing)`);
        continue;
      }
      if (ca.validToDate.getTime() < ctx.now) ctx.add(p, `CA "${oneLine(ca.subject)}" expired on ${ca.validToDate.toISOString()}`);
      cas.push(ca);
      pems.push(Buffer.from(ca.toString()));
      certs.push(summarize(ca, 'clientCA', ctx.resolve(f)));
    }
  }
  return { cas, pems, certs };
}

/** tls.pins (checked by the schema): SHA-256 thumbprints normalized, SPKI pins as written. */
function compilePins(pins: readonly string[]): { sha256: Set<string>; spki: Set<string> } {
  const sha256 = new Set<string>();
  const spki = new Set<string>();
  for (const pin of pins) {
    if (pin.startsWith('spki:')) spki.add(pin.slice(5));
    else sha256.add(normalizeSha256Thumbprint(pin) ?? pin);
  }
  return { sha256, spki };
}

/**
 * tls.crls: each must be current and signed by one of the client CAs, or else name an
 * intermediate that only clients present (checked against it in the handshake, tls/chain.ts).
 */
async function compileCrls(
  files: readonly string[],
  cas: readonly X509Certificate[],
  ctx: CompileContext,
): Promise<{ byIssuer: ReadonlyMap<string, readonly CrlIndex[]>; pending: readonly PendingCrl[]; files: CrlFileSummary[] }> {
  const crlsByIssuer = new Map<string, CrlIndex[]>();
  const pendingCrls: PendingCrl[] = [];
  const crlFiles: CrlFileSummary[] = [];
  for (const [i, f] of files.entries()) {
    const p = ['tls', 'crls', i];
    const file = ctx.resolve(f);
    const buf = await ctx.read(file, p);
    if (buf === null) continue;
    let parsed;
    try {
      parsed = parseCrlFile(buf);
    } catch (err) {
      ctx.add(p, `not a CRL (PEM or DER): ${messageOf(err)}`);
      continue;
    }
    let earliest: number | null = null;
    for (const crl of parsed) {
      if (crl.nextUpdate !== null && crl.nextUpdate.getTime() < ctx.now) {
        ctx.add(p, `CRL expired (nextUpdate ${crl.nextUpdate.toISOString()}): replace it with the issuer's current CRL`);
        continue;
      }
      try {
        crlSignatureAlgorithm(crl);
      } catch (err) {
        ctx.add(p, `CRL signature cannot be checked: ${messageOf(err)}`);
        continue;
      }
      const dates = {
        file,
        revoked: new Set([...crl.revokedSerials].map(canonicalSerial)),
        thisUpdate: crl.thisUpdate.toISOString(),
        nextUpdate: crl.nextUpdate === null ? null : crl.nextUpdate.toISOString(),
        nextUpdateMs: crl.nextUpdate === null ? Infinity : crl.nextUpdate.getTime(),
      };
      if (crl.nextUpdate !== null) earliest = Math.min(earliest ?? Infinity, crl.nextUpdate.getTime());
      // Several CAs may share a subject name: the one whose key verifies the CRL issued it.
      const named = cas.filter((ca) => subjectNameDer(ca.raw).equals(crl.issuerDer));
      if (named.length === 0) {
        pendingCrls.push(Object.freeze({ ...dates, crl }));
        continue;
      }
      const issuer = named.find((ca) => verifyCrlSignature(crl, ca.publicKey));
      if (issuer === undefined) {
        ctx.add(p, `CRL signature does not verify with CA "${oneLine(named[0]!.subject)}"`);
        continue;
      }
      const list = crlsByIssuer.get(issuer.subject) ?? [];
      list.push(Object.freeze({ ...dates, ca: issuer }));
      crlsByIssuer.set(issuer.subject, list);
    }
    crlFiles.push(Object.freeze({ file, nextUpdateMs: earliest }));
  }
  return {
    byIssuer: new Map([...crlsByIssuer].map(([k, v]) => [k, Object.freeze(v)] as const)),
    pending: Object.freeze(pendingCrls),
    files: crlFiles,
  };
}

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

export function parseCerts(pem: Buffer, p: readonly PropertyKey[], ctx: CompileContext): X509Certificate[] {
  const blocks = pem.toString('latin1').match(PEM_CERT) ?? [];
  if (blocks.length === 0) {
    ctx.add(p, 'no PEM certificate found (expected -----BEGIN CERTIFICATE-----)');
    return [];
  }
  const out: X509Certificate[] = [];
  for (const [n, block] of blocks.entries()) {
    try {
      out.push(new X509Certificate(block));
    } catch {
      ctx.add(p, `certificate #${n + 1} in the file does not parse`);
    }
  }
  return out;
}

export function summarize(c: X509Certificate, role: CertSummary['role'], file: string): CertSummary {
  return {
    role,
    file,
    subject: oneLine(c.subject),
    issuer: oneLine(c.issuer),
    // node:crypto quotes a value that holds a separator; parse it as the identity stage does.
    sans: parseSubjectAltName(c.subjectAltName).map(([type, value]) => `${type}:${value}`),
    sha256: c.fingerprint256,
    notBefore: c.validFromDate.toISOString(),
    notAfter: c.validToDate.toISOString(),
    notAfterMs: c.validToDate.getTime(),
  };
}

export function oneLine(subject: string): string {
  return subject.split('\n').join(', ');
}
