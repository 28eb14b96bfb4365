/**
 * Development / test PKI built with node-forge: CAs, leaves, self-signed certs and CRLs.
 *
 * Not for production CAs. It exists so `mtls-sidecar certs` and the test-suite can produce a
 * complete, realistic PKI (SKI/AKI, critical basicConstraints and keyUsage, EKU, SANs, v2 CRLs)
 * without an openssl binary, plus deliberately broken certificates for negative tests.
 *
 * Keys are RSA or ECDSA P-256. forge has no elliptic-curve keys, and its certificate encoder can
 * only write an RSA public key, so the work is split: node:crypto makes every key, exports its
 * SubjectPublicKeyInfo and makes every signature; forge encodes the names, extensions and the
 * rest of the ASN.1 (see tbsCertificate).
 */
import {
  X509Certificate,
  createHash,
  createPrivateKey,
  generateKeyPair,
  randomBytes,
  sign as cryptoSign,
  type KeyObject,
} from 'node:crypto';
import { isIPv4, isIPv6 } from 'node:net';
import { lstat, mkdir, open, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { promisify } from 'node:util';
import type * as Forge from 'node-forge';
import { OID, serialNumberHex, subjectKeyIdentifier, subjectNameDer, subjectPublicKeyInfoDer } from './certinfo.js';
import { children, decodeBitStringBytes, readRoot } from './der.js';
import { PkiError } from './errors.js';
import { encodePem, pemBlocks } from './pem.js';
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

/** 'ecdsa' is ECDSA on P-256; 'rsa' is RSA with `keyBits` bits (default 2048). */
export type KeyType = 'rsa' | 'ecdsa';

/** What issuing needs of a CA: one made here (IssuedCert) or one read from files (loadCa). */
export interface Issuer {
  certPem: string;
  certDer: Buffer;
  /** The private key for node:crypto, which makes every signature (see finish). */
  privateKey: KeyObject;
  /** subjectKeyIdentifier as a forge binary string, for children's authorityKeyIdentifier. */
  keyId: string;
  isCa: boolean;
  /** forge's model of the certificate; absent for a CA read from files (forge cannot parse an EC one). */
  cert?: Forge.pki.Certificate;
  /** The issuing CA, or null when self-signed (or not known: a CA read from files). */
  parent: Issuer | null;
}

export interface IssuedCert extends Issuer {
  /** PKCS#8 PEM. */
  keyPem: string;
  cert: Forge.pki.Certificate;
  /** forge's copy of an RSA key (lets forge re-sign `cert`); null for ECDSA, which forge lacks. */
  key: Forge.pki.rsa.PrivateKey | null;
  /** SHA-256 thumbprint, "AB:CD:..." (upper case, colon separated). */
  sha256: string;
  /** Serial as X509Certificate.serialNumber prints it (upper-case hex, no leading zeros). */
  serialHex: string;
}

export interface CaOptions {
  commonName: string;
  organization?: string;
  days: number;
  notBefore?: Date;
  /** Default 'rsa'. */
  keyType?: KeyType;
  /** RSA only. */
  keyBits?: number;
  /** Issuing CA for an intermediate; omitted for a self-signed root. */
  parent?: Issuer;
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
  /** Default 'rsa'. */
  keyType?: KeyType;
  /** RSA only. */
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
  /** forge's view of an RSA key; null for ECDSA. */
  key: Forge.pki.rsa.PrivateKey | null;
  publicKey: Forge.pki.rsa.PublicKey | null;
  keyObject: KeyObject;
  /** PKCS#8 PEM. */
  pem: string;
  /** SubjectPublicKeyInfo DER, as node:crypto exports it. */
  spki: Buffer;
  /** subjectKeyIdentifier, forge binary string. */
  keyId: string;
}

/**
 * Keys come from node:crypto: forge has no EC keys, and forge.pki.rsa.generateKeyPair uses Node
 * only when it detects Node and no custom prng, otherwise silently falls back to pure JS (seconds
 * per key). The async call also runs key generation on the libuv pool, so the ~20 keys of the
 * test PKI are generated in parallel. RSA keys are also imported into forge (IssuedCert.key).
 */
async function generateKey(type: KeyType, bits: number | undefined): Promise<KeyMaterial> {
  if (type === 'ecdsa') {
    if (bits !== undefined) throw new PkiError('ERR_PKI_INPUT', 'keyBits applies to RSA keys only');
    const { publicKey, privateKey } = await generateKeyPairAsync('ec', {
      namedCurve: 'P-256',
      publicKeyEncoding: { type: 'spki', format: 'der' },
      privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
    });
    return { key: null, publicKey: null, keyObject: createPrivateKey(privateKey), pem: privateKey, spki: publicKey, keyId: keyIdOf(publicKey) };
  }
  const b = bits ?? 2048;
  if (!Number.isInteger(b) || b < 1024 || b > 8192) {
    throw new PkiError('ERR_PKI_INPUT', `RSA key size must be 1024..8192 bits, got ${b}`);
  }
  const { publicKey, privateKey } = await generateKeyPairAsync('rsa', {
    modulusLength: b,
    publicExponent: 0x10001,
    publicKeyEncoding: { type: 'spki', format: 'der' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
  const key = forge.pki.privateKeyFromPem(privateKey);
  return {
    key,
    publicKey: forge.pki.setRsaPublicKey(key.n, key.e),
    keyObject: createPrivateKey(privateKey),
    pem: privateKey,
    spki: publicKey,
    keyId: keyIdOf(publicKey),
  };
}

/**
 * RFC 5280 §4.2.1.2 method (1): SHA-1 of the subjectPublicKey BIT STRING's bits — what forge
 * (for RSA) and OpenSSL compute, so a CA's SKI and its children's AKI agree across tools.
 */
function keyIdOf(spki: Buffer): string {
  const [, subjectPublicKey] = children(spki, readRoot(spki));
  if (!subjectPublicKey) throw new PkiError('ERR_PKI_INPUT', 'SubjectPublicKeyInfo without a key');
  return toBinary(createHash('sha1').update(decodeBitStringBytes(spki, subjectPublicKey)).digest());
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

/** URIs first (a workload's SPIFFE ID is its identity), then DNS names, then IP addresses. */
function altNames(o: LeafOptions): AltName[] {
  const out: AltName[] = [];
  for (const u of o.uris ?? []) {
    if (!IA5_RE.test(u) || !u.includes(':')) throw new PkiError('ERR_PKI_INPUT', `invalid URI "${u}"`);
    out.push({ type: 6, value: u });
  }
  for (const d of o.dnsNames ?? []) {
    if (!IA5_RE.test(d)) throw new PkiError('ERR_PKI_INPUT', `invalid DNS name "${d}"`);
    out.push({ type: 2, value: d });
  }
  for (const ip of o.ips ?? []) out.push({ type: 7, value: ipBytes(ip) });
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
const certificateExtensionsToAsn1 = (
  forge.pki as unknown as { certificateExtensionsToAsn1: (exts: unknown[]) => Forge.asn1.Asn1 }
).certificateExtensionsToAsn1;

/** The signature algorithm of a signature by `signer` (RSA PKCS#1 v1.5 or ECDSA). */
function signatureOid(signer: KeyObject, hash: 'sha256' | 'sha1'): string {
  const type = signer.asymmetricKeyType;
  if (type === 'rsa') return hash === 'sha256' ? OID.sha256WithRSAEncryption : OID.sha1WithRSAEncryption;
  if (type === 'ec') return hash === 'sha256' ? OID.ecdsaWithSHA256 : OID.ecdsaWithSHA1;
  throw new PkiError('ERR_PKI_INPUT', `cannot sign with a ${type ?? 'unknown'} key (rsa or ec only)`);
}

/**
 * AlgorithmIdentifier: NULL parameters for RSA (RFC 4055), none for ECDSA (RFC 5758 §3.2, where
 * forge would write a NULL).
 */
function algorithmIdentifier(oid: string): Forge.asn1.Asn1 {
  const fields = [asn1.create(U, T.OID, false, asn1.oidToDer(oid).getBytes())];
  if (oid === OID.sha256WithRSAEncryption || oid === OID.sha1WithRSAEncryption) fields.push(asn1.create(U, T.NULL, false, ''));
  return asn1.create(U, T.SEQUENCE, true, fields);
}

/**
 * The TBSCertificate, in RFC 5280 §4.1 order. forge's getTBSCertificate cannot be used as is: it
 * only writes RSA public keys and always a NULL signature parameter. So forge encodes the
 * subject and the extensions from `cert`, node:crypto supplies the SubjectPublicKeyInfo, and the
 * issuer Name is the issuer certificate's subject byte for byte (name chaining cannot be thrown
 * off by re-encoding, and a CA read from files needs no forge model). For RSA the bytes are the
 * ones forge's cert.sign() would produce.
 */
function tbsCertificate(cert: Forge.pki.Certificate, issuerName: Forge.asn1.Asn1, spki: Buffer, sigAlg: Forge.asn1.Asn1) {
  const fields = [
    asn1.create(asn1.Class.CONTEXT_SPECIFIC, TAG_0, true, [asn1.create(U, T.INTEGER, false, integerBytes('02'))]), // v3
    asn1.create(U, T.INTEGER, false, forge.util.hexToBytes(cert.serialNumber)),
    sigAlg,
    issuerName,
    asn1.create(U, T.SEQUENCE, true, [timeAsn1(cert.validity.notBefore), timeAsn1(cert.validity.notAfter)]),
    forge.pki.distinguishedNameToAsn1(cert.subject),
    derToAsn1(spki),
  ];
  if (cert.extensions.length > 0) fields.push(certificateExtensionsToAsn1(cert.extensions));
  return asn1.create(U, T.SEQUENCE, true, fields);
}

function derToAsn1(der: Buffer): Forge.asn1.Asn1 {
  return asn1.fromDer(forge.util.createBuffer(toBinary(der)));
}

/** The issuer's subject Name as it is encoded in its certificate (see tbsCertificate). */
function issuerNameOf(issuer: Issuer): Forge.asn1.Asn1 {
  return derToAsn1(subjectNameDer(issuer.certDer));
}

/**
 * Signs and encodes the certificate. node:crypto signs (forge's pure-JS RSA took ~50 ms per
 * signature and blocked the event loop; it has no ECDSA at all); an ECDSA signature comes out as
 * the DER Ecdsa-Sig-Value X.509 wants (Node's default dsaEncoding). forge's model is kept in
 * step (signature, OIDs), so for RSA forge can still re-sign it.
 */
function finish(
  cert: Forge.pki.Certificate,
  km: KeyMaterial,
  issuerName: Forge.asn1.Asn1,
  signer: KeyObject,
  hash: 'sha256' | 'sha1',
  isCa: boolean,
  parent: Issuer | null,
): IssuedCert {
  const sigOid = signatureOid(signer, hash);
  const tbs = tbsCertificate(cert, issuerName, km.spki, algorithmIdentifier(sigOid));
  const signature = toBinary(cryptoSign(hash, fromBinary(asn1.toDer(tbs).getBytes()), signer));
  const certAsn1 = asn1.create(U, T.SEQUENCE, true, [
    tbs,
    algorithmIdentifier(sigOid),
    asn1.create(U, T.BITSTRING, false, `\u0000${signature}`),
  ]);
  cert.tbsCertificate = tbs;
  cert.signatureOid = sigOid;
  cert.siginfo.algorithmOid = sigOid;
  cert.signature = signature;
  const certDer = fromBinary(asn1.toDer(certAsn1).getBytes());
  return {
    certPem: encodePem(certDer, 'CERTIFICATE'),
    keyPem: km.pem,
    cert,
    key: km.key,
    privateKey: km.keyObject,
    certDer,
    sha256: sha256Thumbprint(certDer),
    serialHex: serialNumberHex(certDer),
    keyId: km.keyId,
    isCa,
    parent,
  };
}

function newCert(km: KeyMaterial, serialHex: string, v: { notBefore: Date; notAfter: Date }) {
  const cert = forge.pki.createCertificate();
  // Only forge's own cert.sign() reads it (RSA only); our encoder takes km.spki.
  if (km.publicKey) cert.publicKey = km.publicKey;
  cert.serialNumber = serialHex;
  cert.validity.notBefore = v.notBefore;
  cert.validity.notAfter = v.notAfter;
  return cert;
}

/** subjectKeyIdentifier with an explicit value: forge's default derives it from an RSA cert.publicKey. */
function skiExtension(keyId: string): Record<string, unknown> {
  return { name: 'subjectKeyIdentifier', value: asn1.create(U, T.OCTETSTRING, false, keyId) };
}

/** A root CA (no parent) or an intermediate CA signed by `parent`. */
export async function createCa(opts: CaOptions): Promise<IssuedCert> {
  const parent = opts.parent ?? null;
  if (parent && !parent.isCa) throw new PkiError('ERR_PKI_INPUT', 'parent of a CA must be a CA');
  const v = validity(opts.notBefore, undefined, opts.days);
  const km = await generateKey(opts.keyType ?? 'rsa', opts.keyBits);
  const cert = newCert(km, randomSerialHex(), v);
  const subject = nameAttrs(opts);
  cert.setSubject(subject);
  // forge's model only; the encoded issuer is the parent's subject as encoded (tbsCertificate).
  if (!parent) cert.setIssuer(subject);
  else if (parent.cert) cert.setIssuer(parent.cert.subject.attributes);
  const bc: Record<string, unknown> = { name: 'basicConstraints', cA: true, critical: true };
  if (opts.pathLen !== undefined) bc['pathLenConstraint'] = opts.pathLen;
  cert.setExtensions([
    bc,
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
    skiExtension(km.keyId),
    // An explicit key id: forge's `keyIdentifier: true` would use the *subject's* key.
    { name: 'authorityKeyIdentifier', keyIdentifier: parent ? parent.keyId : km.keyId },
  ]);
  const issuerName = parent ? issuerNameOf(parent) : forge.pki.distinguishedNameToAsn1(cert.subject);
  return finish(cert, km, issuerName, parent ? parent.privateKey : km.keyObject, 'sha256', true, parent);
}

function defaultEku(o: LeafOptions): ExtendedKeyUsage[] {
  const hosts = (o.dnsNames?.length ?? 0) + (o.ips?.length ?? 0);
  return hosts > 0 && !o.uris?.length ? ['serverAuth'] : ['clientAuth'];
}

function leafExtensions(o: LeafOptions, km: KeyMaterial, sans: AltName[], authorityKeyId: string): Record<string, unknown>[] {
  const exts: Record<string, unknown>[] = [
    { name: 'basicConstraints', cA: o.isCa === true, critical: true },
    {
      name: 'keyUsage',
      digitalSignature: true,
      // Key transport is RSA only: RFC 5480 §3 does not allow keyEncipherment on an EC key.
      ...(km.keyObject.asymmetricKeyType === 'rsa' ? { keyEncipherment: true } : {}),
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
  exts.push(skiExtension(km.keyId));
  exts.push({ name: 'authorityKeyIdentifier', keyIdentifier: authorityKeyId });
  return exts;
}

/** An end-entity certificate signed by `issuer`. */
export async function issueLeaf(issuer: Issuer, opts: LeafOptions): Promise<IssuedCert> {
  if (!issuer.isCa) throw new PkiError('ERR_PKI_INPUT', 'issuer must be a CA');
  // Validate everything before spending time on a key.
  const v = validity(opts.notBefore, opts.notAfter, opts.days);
  const sans = altNames(opts);
  const km = await generateKey(opts.keyType ?? 'rsa', opts.keyBits);
  const cert = newCert(km, randomSerialHex(), v);
  cert.setSubject(nameAttrs(opts));
  // forge's model only; the encoded issuer is the issuer's subject as encoded (tbsCertificate).
  if (issuer.cert) cert.setIssuer(issuer.cert.subject.attributes);
  cert.setExtensions(leafExtensions(opts, km, sans, issuer.keyId));
  return finish(cert, km, issuerNameOf(issuer), issuer.privateKey, opts.signatureHash ?? 'sha256', false, issuer);
}

/** A self-signed end-entity certificate (CA:FALSE), e.g. a pinned client. */
export async function selfSigned(opts: LeafOptions): Promise<IssuedCert> {
  const v = validity(opts.notBefore, opts.notAfter, opts.days);
  const sans = altNames(opts);
  const km = await generateKey(opts.keyType ?? 'rsa', opts.keyBits);
  const cert = newCert(km, randomSerialHex(), v);
  const subject = nameAttrs(opts);
  cert.setSubject(subject);
  cert.setIssuer(subject);
  cert.setExtensions(leafExtensions(opts, km, sans, km.keyId));
  const name = forge.pki.distinguishedNameToAsn1(cert.subject);
  return finish(cert, km, name, km.keyObject, opts.signatureHash ?? 'sha256', false, null);
}

/**
 * A CA read from its PEM certificate and private key (`certs --add` issues from it). `names`
 * label the two files in errors. Refuses (ERR_CA_FILES) a file without a certificate, a
 * certificate that is not a CA, a key that is not a usable private key or not this
 * certificate's, and key types other than RSA and EC.
 */
export function loadCa(certPem: string, keyPem: string, names = { cert: 'the certificate', key: 'the key' }): Issuer {
  const fail = (msg: string): never => {
    throw new PkiError('ERR_CA_FILES', msg);
  };
  const certDer = pemBlocks(certPem, 'CERTIFICATE')[0] ?? fail(`${names.cert} holds no PEM certificate`);
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(certDer);
  } catch {
    return fail(`${names.cert}: the certificate does not parse`);
  }
  if (!x509.ca) fail(`${names.cert} is not a CA certificate (basicConstraints CA:TRUE)`);
  let key: KeyObject;
  try {
    key = createPrivateKey(keyPem);
  } catch {
    return fail(`${names.key} is not an unencrypted PEM private key`);
  }
  if (key.asymmetricKeyType !== 'rsa' && key.asymmetricKeyType !== 'ec') {
    fail(`${names.key}: the dev CA signs with rsa or ec keys, not ${key.asymmetricKeyType ?? 'this kind'}`);
  }
  if (!x509.checkPrivateKey(key)) fail(`${names.key} does not match ${names.cert}`);
  // The CA's own SKI, whatever made it, so its children's AKI names it exactly.
  const ski = subjectKeyIdentifier(certDer);
  return {
    certPem: encodePem(certDer, 'CERTIFICATE'),
    certDer,
    privateKey: key,
    keyId: ski ? toBinary(ski) : keyIdOf(subjectPublicKeyInfoDer(certDer)),
    isCa: true,
    parent: null,
  };
}

/** Leaf followed by every intermediate up to (not including) the self-signed root, as PEM. */
export function chainPem(ic: Issuer): string {
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
 * A v2 CRL signed by `issuer` (SHA-256 with RSA or ECDSA, as its key), as PEM. forge has no CRL support, so
 * the structure is assembled with forge.asn1 (and signed natively, as certificates are); the issuer Name is copied byte for byte from the
 * CA certificate so that name matching (ours and OpenSSL's) cannot be thrown off.
 */
export function createCrl(issuer: Issuer, revoked: RevokedEntry[], opts: CrlOptions = {}): string {
  if (!issuer.isCa) throw new PkiError('ERR_PKI_INPUT', 'only a CA can issue a CRL');
  const thisUpdate = opts.thisUpdate ?? new Date(Date.now() - BACKDATE_MS);
  const nextUpdate = opts.nextUpdate ?? new Date(thisUpdate.getTime() + (opts.days ?? 30) * DAY_MS);
  if (nextUpdate.getTime() <= thisUpdate.getTime()) {
    throw new PkiError('ERR_PKI_INPUT', 'CRL nextUpdate must be after thisUpdate');
  }
  const sigOid = signatureOid(issuer.privateKey, 'sha256');
  const sigAlg = () => algorithmIdentifier(sigOid);
  const issuerName = issuerNameOf(issuer);
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
