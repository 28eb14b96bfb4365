/**
 * Development / test PKI built with node-forge: CAs, leaves, self-signed certs and CRLs.
 *
 * Not for production CAs. It exists so `mtls-sidecar certs` and the test-suite can produce a
 * complete, realistic PKI (SKI/AKI, critical basicConstraints and keyUsage, EKU, SANs, v2 CRLs)
 * without an openssl binary, plus deliberately broken certificates for negative tests.
 */
import { createPrivateKey, generateKeyPair, randomBytes, sign as cryptoSign, type KeyObject } from 'node:crypto';
import { isIPv4, isIPv6 } from 'node:net';
import { lstat, mkdir, open, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { promisify } from 'node:util';
import type * as Forge from 'node-forge';
import { serialNumberHex, subjectNameDer } from './certinfo.js';
import { PkiError } from './errors.js';
import { encodePem } from './pem.js';
import { sha256Thumbprint } from './thumbprint.js';

// node-forge is CommonJS and assigns its API at run time, so Node's ESM loader cannot see named
// exports: `import * as forge` yields an object without `pki` (yet type-checks), and a default
// import is rejected by tsc without esModuleInterop. require() is correct on both counts.
const forge = createRequire(import.meta.url)('node-forge') as typeof Forge;
const generateKeyPairAsync = promisify(generateKeyPair);
const { asn1 } = forge;
const U = asn1.Class.UNIVERSAL;
const T = asn1.Type;

/** Clock skew tolerance: certificates and CRLs start slightly in the past. */
const BACKDATE_MS = 5 * 60 * 1000;
const DAY_MS = 24 * 60 * 60 * 1000;

export interface IssuedCert {
  certPem: string;
  /** PKCS#8 PEM. */
  keyPem: string;
  cert: Forge.pki.Certificate;
  key: Forge.pki.rsa.PrivateKey;
  /** The same private key for node:crypto (signing is done natively, see signCert). */
  privateKey: KeyObject;
  certDer: Buffer;
  /** SHA-256 thumbprint, "AB:CD:..." (upper case, colon separated). */
  sha256: string;
  /** Serial as X509Certificate.serialNumber prints it (upper-case hex, no leading zeros). */
  serialHex: string;
  /** subjectKeyIdentifier as a forge binary string, for children's authorityKeyIdentifier. */
  keyId: string;
  isCa: boolean;
  /** The issuing CA, or null when self-signed. */
  parent: IssuedCert | null;
}

export interface CaOptions {
  commonName: string;
  organization?: string;
  days: number;
  notBefore?: Date;
  keyBits?: number;
  /** Issuing CA for an intermediate; omitted for a self-signed root. */
  parent?: IssuedCert;
  pathLen?: number;
}

export type ExtendedKeyUsage = 'serverAuth' | 'clientAuth';

export interface LeafOptions {
  commonName: string;
  organization?: string;
  organizationalUnit?: string;
  uris?: string[];
  dnsNames?: string[];
  ips?: string[];
  /** Validity from notBefore (default 365). Ignored when notAfter is given. */
  days?: number;
  notBefore?: Date;
  notAfter?: Date;
  /**
   * Default: serverAuth when the cert names hosts (DNS/IP) and no URI, otherwise clientAuth.
   * An empty array omits the extension altogether.
   */
  eku?: ExtendedKeyUsage[];
  /** Marks a leaf CA:TRUE — only to test that such "leaves" are refused. */
  isCa?: boolean;
  keyBits?: number;
  /** 'sha1' only to test that SHA-1 signed certs are refused. */
  signatureHash?: 'sha256' | 'sha1';
}

export interface RevokedEntry {
  serialHex: string;
  date?: Date;
}

export interface CrlOptions {
  thisUpdate?: Date;
  nextUpdate?: Date;
  /** nextUpdate = thisUpdate + days (default 30) when nextUpdate is not given. */
  days?: number;
  /** cRLNumber; default: seconds since the epoch, so regenerated CRLs keep increasing. */
  crlNumber?: bigint | number;
}

interface KeyMaterial {
  key: Forge.pki.rsa.PrivateKey;
  publicKey: Forge.pki.rsa.PublicKey;
  keyObject: KeyObject;
  pem: string;
}

/**
 * RSA keys come from node:crypto and are imported into forge. forge.pki.rsa.generateKeyPair does
 * the same internally, but only when it detects Node and no custom prng; otherwise it silently
 * falls back to pure JS, which takes seconds per key. The async call also runs key generation on
 * the libuv pool, so the ~20 keys of the test PKI are generated in parallel.
 */
async function generateRsa(bits: number): Promise<KeyMaterial> {
  if (!Number.isInteger(bits) || bits < 1024 || bits > 8192) {
    throw new PkiError('ERR_PKI_INPUT', `RSA key size must be 1024..8192 bits, got ${bits}`);
  }
  const { privateKey } = await generateKeyPairAsync('rsa', {
    modulusLength: bits,
    publicExponent: 0x10001,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
  const key = forge.pki.privateKeyFromPem(privateKey);
  const publicKey = forge.pki.setRsaPublicKey(key.n, key.e);
  return { key, publicKey, keyObject: createPrivateKey(privateKey), pem: privateKey };
}

/** 16 random bytes, forced positive and without a leading zero byte (which DER would strip). */
function randomSerialHex(): string {
  const b = randomBytes(16);
  b[0] = (b[0]! & 0x7f) || 0x01;
  return b.toString('hex');
}

function toBinary(buf: Uint8Array): string {
  return Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength).toString('binary');
}

function fromBinary(s: string): Buffer {
  return Buffer.from(s, 'binary');
}

// @types/node-forge types valueTagClass as asn1.Class, but forge reads it as a universal type.
const UTF8_TAG = T.UTF8 as unknown as Forge.asn1.Class;

function nameAttrs(o: { commonName: string; organization?: string; organizationalUnit?: string }) {
  // UTF8String for every attribute: forge's default PrintableString cannot carry arbitrary text.
  const attrs: Forge.pki.CertificateField[] = [];
  if (o.organization !== undefined) attrs.push({ shortName: 'O', value: o.organization, valueTagClass: UTF8_TAG });
  if (o.organizationalUnit !== undefined) {
    attrs.push({ shortName: 'OU', value: o.organizationalUnit, valueTagClass: UTF8_TAG });
  }
  attrs.push({ shortName: 'CN', value: o.commonName, valueTagClass: UTF8_TAG });
  return attrs;
}

function ipBytes(ip: string): string {
  if (isIPv4(ip)) return String.fromCharCode(...ip.split('.').map(Number));
  if (!isIPv6(ip) || ip.includes('%')) throw new PkiError('ERR_PKI_INPUT', `invalid IP address "${ip}"`);
  let s = ip;
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(s);
  if (v4?.[1]) {
    const p = v4[1].split('.').map(Number);
    s = `${s.slice(0, v4.index)}${((p[0]! << 8) | p[1]!).toString(16)}:${((p[2]! << 8) | p[3]!).toString(16)}`;
  }
  const [head = '', tail] = s.split('::');
  const hg = head === '' ? [] : head.split(':');
  const tg = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups = tail === undefined ? hg : [...hg, ...Array<string>(8 - hg.length - tg.length).fill('0'), ...tg];
  let out = '';
  for (const g of groups) {
    const n = parseInt(g, 16);
    out += String.fromCharCode(n >> 8, n & 0xff);
  }
  return out;
}

const IA5_RE = /^[\x21-\x7e]+$/;

interface AltName {
  type: number;
  value: string;
}

function altNames(o: LeafOptions): AltName[] {
  const out: AltName[] = [];
  for (const d of o.dnsNames ?? []) {
    if (!IA5_RE.test(d)) throw new PkiError('ERR_PKI_INPUT', `invalid DNS name "${d}"`);
    out.push({ type: 2, value: d });
  }
  for (const ip of o.ips ?? []) out.push({ type: 7, value: ipBytes(ip) });
  for (const u of o.uris ?? []) {
    if (!IA5_RE.test(u) || !u.includes(':')) throw new PkiError('ERR_PKI_INPUT', `invalid URI "${u}"`);
    out.push({ type: 6, value: u });
  }
  return out;
}

function validity(notBefore: Date | undefined, notAfter: Date | undefined, days: number | undefined) {
  const nb = notBefore ?? new Date(Date.now() - BACKDATE_MS);
  let na = notAfter;
  if (!na) {
    const d = days ?? 365;
    if (!(d > 0)) throw new PkiError('ERR_PKI_INPUT', `days must be positive, got ${d}`);
    na = new Date(nb.getTime() + BACKDATE_MS + d * DAY_MS);
  }
  if (na.getTime() <= nb.getTime()) throw new PkiError('ERR_PKI_INPUT', 'notAfter must be after notBefore');
  return { notBefore: nb, notAfter: na };
}

// Context-specific tag [0]; @types/node-forge types every tag as a universal asn1.Type (NONE is 0).
const TAG_0 = T.NONE;

// Public in node-forge (x509.js) but missing from @types/node-forge.
const getTBSCertificate = (forge.pki as unknown as { getTBSCertificate: (c: Forge.pki.Certificate) => Forge.asn1.Asn1 })
  .getTBSCertificate;

/**
 * What forge's cert.sign() does, with the RSA operation done by node:crypto: forge's pure-JS
 * RSA takes ~50 ms per signature on a small CI box and blocks the event loop, which made the
 * test PKI (25 certificates) slow. forge still builds every byte of the certificate.
 */
function signCert(cert: Forge.pki.Certificate, signer: KeyObject, hash: 'sha256' | 'sha1'): void {
  const oid = forge.pki.oids[`${hash}WithRSAEncryption`];
  if (!oid) throw new PkiError('ERR_PKI_INPUT', `unsupported hash ${hash}`);
  cert.signatureOid = oid;
  cert.siginfo.algorithmOid = oid;
  cert.tbsCertificate = getTBSCertificate(cert);
  const tbs = fromBinary(asn1.toDer(cert.tbsCertificate).getBytes());
  cert.signature = toBinary(cryptoSign(hash, tbs, signer));
}

function finish(
  cert: Forge.pki.Certificate,
  km: KeyMaterial,
  signer: KeyObject,
  hash: 'sha256' | 'sha1',
  isCa: boolean,
  parent: IssuedCert | null,
): IssuedCert {
  signCert(cert, signer, hash);
  const certDer = fromBinary(asn1.toDer(forge.pki.certificateToAsn1(cert)).getBytes());
  return {
    certPem: encodePem(certDer, 'CERTIFICATE'),
    keyPem: km.pem,
    cert,
    key: km.key,
    privateKey: km.keyObject,
    certDer,
    sha256: sha256Thumbprint(certDer),
    serialHex: serialNumberHex(certDer),
    keyId: cert.generateSubjectKeyIdentifier().getBytes(),
    isCa,
    parent,
  };
}

function newCert(km: KeyMaterial, serialHex: string, v: { notBefore: Date; notAfter: Date }) {
  const cert = forge.pki.createCertificate();
  cert.publicKey = km.publicKey; // must precede setExtensions: forge derives the SKI from it
  cert.serialNumber = serialHex;
  cert.validity.notBefore = v.notBefore;
  cert.validity.notAfter = v.notAfter;
  return cert;
}

/** A root CA (no parent) or an intermediate CA signed by `parent`. */
export async function createCa(opts: CaOptions): Promise<IssuedCert> {
  const parent = opts.parent ?? null;
  if (parent && !parent.isCa) throw new PkiError('ERR_PKI_INPUT', 'parent of a CA must be a CA');
  const v = validity(opts.notBefore, undefined, opts.days);
  const km = await generateRsa(opts.keyBits ?? 2048);
  const cert = newCert(km, randomSerialHex(), v);
  const subject = nameAttrs(opts);
  cert.setSubject(subject);
  cert.setIssuer(parent ? parent.cert.subject.attributes : subject);
  const selfKeyId = cert.generateSubjectKeyIdentifier().getBytes();
  const bc: Record<string, unknown> = { name: 'basicConstraints', cA: true, critical: true };
  if (opts.pathLen !== undefined) bc['pathLenConstraint'] = opts.pathLen;
  cert.setExtensions([
    bc,
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
    { name: 'subjectKeyIdentifier' },
    // An explicit key id: forge's `keyIdentifier: true` would use the *subject's* key.
    { name: 'authorityKeyIdentifier', keyIdentifier: parent ? parent.keyId : selfKeyId },
  ]);
  return finish(cert, km, parent ? parent.privateKey : km.keyObject, 'sha256', true, parent);
}

function defaultEku(o: LeafOptions): ExtendedKeyUsage[] {
  const hosts = (o.dnsNames?.length ?? 0) + (o.ips?.length ?? 0);
  return hosts > 0 && !o.uris?.length ? ['serverAuth'] : ['clientAuth'];
}

function leafExtensions(o: LeafOptions, sans: AltName[], authorityKeyId: string): Record<string, unknown>[] {
  const exts: Record<string, unknown>[] = [
    { name: 'basicConstraints', cA: o.isCa === true, critical: true },
    {
      name: 'keyUsage',
      digitalSignature: true,
      keyEncipherment: true,
      ...(o.isCa ? { keyCertSign: true } : {}),
      critical: true,
    },
  ];
  const eku = o.eku ?? defaultEku(o);
  if (eku.length > 0) {
    const e: Record<string, unknown> = { name: 'extKeyUsage' };
    for (const u of eku) e[u] = true;
    exts.push(e);
  }
  if (sans.length > 0) exts.push({ name: 'subjectAltName', altNames: sans });
  exts.push({ name: 'subjectKeyIdentifier' });
  exts.push({ name: 'authorityKeyIdentifier', keyIdentifier: authorityKeyId });
  return exts;
}

/** An end-entity certificate signed by `issuer`. */
export async function issueLeaf(issuer: IssuedCert, opts: LeafOptions): Promise<IssuedCert> {
  if (!issuer.isCa) throw new PkiError('ERR_PKI_INPUT', 'issuer must be a CA');
  // Validate everything before spending time on a key.
  const v = validity(opts.notBefore, opts.notAfter, opts.days);
  const sans = altNames(opts);
  const km = await generateRsa(opts.keyBits ?? 2048);
  const cert = newCert(km, randomSerialHex(), v);
  cert.setSubject(nameAttrs(opts));
  cert.setIssuer(issuer.cert.subject.attributes);
  cert.setExtensions(leafExtensions(opts, sans, issuer.keyId));
  return finish(cert, km, issuer.privateKey, opts.signatureHash ?? 'sha256', false, issuer);
}

/** A self-signed end-entity certificate (CA:FALSE), e.g. a pinned client. */
export async function selfSigned(opts: LeafOptions): Promise<IssuedCert> {
  const v = validity(opts.notBefore, opts.notAfter, opts.days);
  const sans = altNames(opts);
  const km = await generateRsa(opts.keyBits ?? 2048);
  const cert = newCert(km, randomSerialHex(), v);
  const subject = nameAttrs(opts);
  cert.setSubject(subject);
  cert.setIssuer(subject);
  cert.setExtensions(leafExtensions(opts, sans, cert.generateSubjectKeyIdentifier().getBytes()));
  return finish(cert, km, km.keyObject, opts.signatureHash ?? 'sha256', false, null);
}

/** Leaf followed by every intermediate up to (not including) the self-signed root, as PEM. */
export function chainPem(ic: IssuedCert): string {
  let out = ic.certPem;
  for (let p = ic.parent; p && p.parent; p = p.parent) out += p.certPem;
  return out;
}

/** Minimal two's-complement big-endian bytes of a non-negative integer (DER INTEGER content). */
function integerBytes(hexOrBig: string | bigint): string {
  let hex = typeof hexOrBig === 'bigint' ? hexOrBig.toString(16) : hexOrBig;
  if (!/^[0-9a-fA-F]+$/.test(hex)) throw new PkiError('ERR_PKI_INPUT', `invalid serial "${hex}"`);
  hex = hex.replace(/^0+/, '');
  if (hex.length % 2) hex = `0${hex}`;
  if (hex === '' || parseInt(hex.slice(0, 2), 16) >= 0x80) hex = `00${hex}`;
  return forge.util.hexToBytes(hex);
}

function timeAsn1(d: Date): Forge.asn1.Asn1 {
  // RFC 5280 §5.1.2.4: UTCTime through 2049, GeneralizedTime from 2050.
  return d.getUTCFullYear() < 2050
    ? asn1.create(U, T.UTCTIME, false, asn1.dateToUtcTime(d))
    : asn1.create(U, T.GENERALIZEDTIME, false, asn1.dateToGeneralizedTime(d));
}

function extension(oid: string, value: Forge.asn1.Asn1): Forge.asn1.Asn1 {
  return asn1.create(U, T.SEQUENCE, true, [
    asn1.create(U, T.OID, false, asn1.oidToDer(oid).getBytes()),
    asn1.create(U, T.OCTETSTRING, false, asn1.toDer(value).getBytes()),
  ]);
}

/**
 * A v2 CRL signed by `issuer` (sha256WithRSAEncryption), as PEM. forge has no CRL support, so
 * the structure is assembled with forge.asn1 (and signed natively, as certificates are); the issuer Name is copied byte for byte from the
 * CA certificate so that name matching (ours and OpenSSL's) cannot be thrown off.
 */
export function createCrl(issuer: IssuedCert, revoked: RevokedEntry[], opts: CrlOptions = {}): string {
  if (!issuer.isCa) throw new PkiError('ERR_PKI_INPUT', 'only a CA can issue a CRL');
  const thisUpdate = opts.thisUpdate ?? new Date(Date.now() - BACKDATE_MS);
  const nextUpdate = opts.nextUpdate ?? new Date(thisUpdate.getTime() + (opts.days ?? 30) * DAY_MS);
  if (nextUpdate.getTime() <= thisUpdate.getTime()) {
    throw new PkiError('ERR_PKI_INPUT', 'CRL nextUpdate must be after thisUpdate');
  }
  const sigAlg = () =>
    asn1.create(U, T.SEQUENCE, true, [
      asn1.create(U, T.OID, false, asn1.oidToDer(forge.pki.oids['sha256WithRSAEncryption']!).getBytes()),
      asn1.create(U, T.NULL, false, ''),
    ]);
  const issuerName = asn1.fromDer(forge.util.createBuffer(toBinary(subjectNameDer(issuer.certDer))));
  const crlNumber = BigInt(opts.crlNumber ?? Math.floor(Date.now() / 1000));

  const tbsFields: Forge.asn1.Asn1[] = [
    asn1.create(U, T.INTEGER, false, integerBytes('01')), // v2, required for extensions
    sigAlg(),
    issuerName,
    timeAsn1(thisUpdate),
    timeAsn1(nextUpdate),
  ];
  // RFC 5280 §5.1.2.6: with no revoked certificates the field is absent, not an empty SEQUENCE.
  if (revoked.length > 0) {
    tbsFields.push(
      asn1.create(
        U,
        T.SEQUENCE,
        true,
        revoked.map((r) =>
          asn1.create(U, T.SEQUENCE, true, [
            asn1.create(U, T.INTEGER, false, integerBytes(r.serialHex)),
            timeAsn1(r.date ?? thisUpdate),
          ]),
        ),
      ),
    );
  }
  tbsFields.push(
    asn1.create(asn1.Class.CONTEXT_SPECIFIC, TAG_0, true, [
      asn1.create(U, T.SEQUENCE, true, [
        extension(
          '2.5.29.35',
          asn1.create(U, T.SEQUENCE, true, [
            asn1.create(asn1.Class.CONTEXT_SPECIFIC, TAG_0, false, issuer.keyId),
          ]),
        ),
        extension('2.5.29.20', asn1.create(U, T.INTEGER, false, integerBytes(crlNumber))),
      ]),
    ]),
  );
  const tbs = asn1.create(U, T.SEQUENCE, true, tbsFields);
  const signature = cryptoSign('sha256', fromBinary(asn1.toDer(tbs).getBytes()), issuer.privateKey);
  const crl = asn1.create(U, T.SEQUENCE, true, [
    tbs,
    sigAlg(),
    asn1.create(U, T.BITSTRING, false, `\u0000${toBinary(signature)}`),
  ]);
  return encodePem(fromBinary(asn1.toDer(crl).getBytes()), 'X509 CRL');
}

export interface PkiFile {
  /** File name inside the target folder (no path separators). */
  name: string;
  contents: string;
  /** Private keys get 0600; default: true for names ending in `.key`. */
  secret?: boolean;
}

/**
 * Writes the files into `dir` (created if needed). Without `force`, refuses (ERR_EXISTS) before
 * writing anything if any target exists, and creates files exclusively so a race cannot clobber
 * one either. With `force`, each file is written to a temporary name and renamed over the old
 * one, so a key never sits, even briefly, in a file with the old, wider mode.
 */
export async function writePki(dir: string, files: PkiFile[], opts: { force?: boolean } = {}): Promise<string[]> {
  for (const f of files) {
    if (f.name === '' || f.name.includes('/') || f.name.includes('\\') || f.name === '.' || f.name === '..') {
      throw new PkiError('ERR_PKI_INPUT', `invalid file name "${f.name}"`);
    }
  }
  await mkdir(dir, { recursive: true });
  if (!opts.force) await assertNoneExist(dir, files.map((f) => f.name));
  const written: string[] = [];
  for (const f of files) {
    const p = join(dir, f.name);
    const mode = (f.secret ?? f.name.endsWith('.key')) ? 0o600 : 0o644;
    if (opts.force) {
      const tmp = join(dir, `.${f.name}.${randomBytes(6).toString('hex')}.tmp`);
      try {
        await writeExclusive(tmp, f.contents, mode);
        await rename(tmp, p);
      } catch (e) {
        await unlink(tmp).catch(() => undefined);
        throw e;
      }
    } else {
      try {
        await writeExclusive(p, f.contents, mode);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'EEXIST') {
          throw new PkiError('ERR_EXISTS', `${p} already exists (use --force to overwrite)`);
        }
        throw e;
      }
    }
    written.push(p);
  }
  return written;
}

/** Throws ERR_EXISTS naming the first of `names` that exists in `dir` (lets callers fail fast). */
export async function assertNoneExist(dir: string, names: string[]): Promise<void> {
  for (const name of names) {
    const p = join(dir, name);
    if (await exists(p)) throw new PkiError('ERR_EXISTS', `${p} already exists (use --force to overwrite)`);
  }
}

async function exists(p: string): Promise<boolean> {
  try {
    await lstat(p); // lstat: a dangling symlink is still something we would overwrite
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw e;
  }
}

async function writeExclusive(p: string, contents: string, mode: number): Promise<void> {
  const fh = await open(p, 'wx', mode);
  try {
    // chmod explicitly: the open() mode is filtered by the umask, and we want exact modes.
    await fh.chmod(mode);
    await fh.writeFile(contents);
  } finally {
    await fh.close();
  }
}
