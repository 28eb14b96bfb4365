/**
 * Field access on a DER X.509 certificate without building an object model: the handshake path
 * needs two or three facts (signature algorithm, serial, names) per client certificate, and
 * node:crypto's X509Certificate exposes neither the signature algorithm nor raw Names.
 *
 * Certificate  ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue BIT STRING }
 * TBSCertificate ::= SEQUENCE { [0] version OPTIONAL, serialNumber, signature, issuer,
 *                               validity, subject, subjectPublicKeyInfo, [1] [2] UIDs OPTIONAL,
 *                               [3] extensions OPTIONAL }
 */
import type { X509Certificate } from 'node:crypto';
import {
  DerCursor,
  DerError,
  TAG,
  contentBytes,
  contextTag,
  decodeBoolean,
  decodeIntegerHex,
  decodeOid,
  decodeSmallInt,
  expectTag,
  readRoot,
  readTlv,
  tlvBytes,
  type Tlv,
} from './der.js';
import { PkiError } from './errors.js';

export const OID = {
  sha1WithRSAEncryption: '1.2.840.113549.1.1.5',
  sha1WithRSAOiw: '1.3.14.3.2.29',
  md5WithRSAEncryption: '1.2.840.113549.1.1.4',
  rsassaPss: '1.2.840.113549.1.1.10',
  sha256WithRSAEncryption: '1.2.840.113549.1.1.11',
  sha384WithRSAEncryption: '1.2.840.113549.1.1.12',
  sha512WithRSAEncryption: '1.2.840.113549.1.1.13',
  ecdsaWithSHA1: '1.2.840.10045.4.1',
  ecdsaWithSHA256: '1.2.840.10045.4.3.2',
  ecdsaWithSHA384: '1.2.840.10045.4.3.3',
  ecdsaWithSHA512: '1.2.840.10045.4.3.4',
  dsaWithSHA1: '1.2.840.10040.4.3',
  ed25519: '1.3.101.112',
  ed448: '1.3.101.113',
  sha1: '1.3.14.3.2.26',
  basicConstraints: '2.5.29.19',
  subjectKeyIdentifier: '2.5.29.14',
} as const;

const SHA1_SIGNATURES: ReadonlySet<string> = new Set([
  OID.sha1WithRSAEncryption,
  OID.sha1WithRSAOiw,
  OID.ecdsaWithSHA1,
  OID.dsaWithSHA1,
]);

/** Offsets of the certificate fields, so several facts can be read from one parse. */
export interface CertFields {
  tbs: Tlv;
  version: number; // 0 = v1, 2 = v3
  serial: Tlv;
  issuer: Tlv;
  validity: Tlv;
  subject: Tlv;
  spki: Tlv;
  extensions: Tlv | null; // the SEQUENCE OF Extension inside [3]
  signatureAlgorithm: Tlv; // outer AlgorithmIdentifier
  signatureValue: Tlv;
}

/** Parses the certificate skeleton. Throws PkiError `ERR_CERT` on anything malformed. */
export function certFields(certDer: Buffer): CertFields {
  try {
    const cert = expectTag(readRoot(certDer), TAG.SEQUENCE, 'Certificate');
    const top = new DerCursor(certDer, cert);
    const tbs = top.expect(TAG.SEQUENCE, 'TBSCertificate');
    const signatureAlgorithm = top.expect(TAG.SEQUENCE, 'signatureAlgorithm');
    const signatureValue = top.expect(TAG.BIT_STRING, 'signatureValue');
    top.finish('Certificate');

    const c = new DerCursor(certDer, tbs);
    let version = 0;
    const v = c.optional(contextTag(0));
    if (v) version = decodeSmallInt(certDer, readTlv(certDer, v.contentStart, v.end));
    const serial = c.expect(TAG.INTEGER, 'serialNumber');
    c.expect(TAG.SEQUENCE, 'signature');
    const issuer = c.expect(TAG.SEQUENCE, 'issuer');
    const validity = c.expect(TAG.SEQUENCE, 'validity');
    const subject = c.expect(TAG.SEQUENCE, 'subject');
    const spki = c.expect(TAG.SEQUENCE, 'subjectPublicKeyInfo');
    c.optional(contextTag(1, false)); // issuerUniqueID
    c.optional(contextTag(2, false)); // subjectUniqueID
    const ext = c.optional(contextTag(3));
    c.finish('TBSCertificate');
    const extensions = ext
      ? expectTag(readTlv(certDer, ext.contentStart, ext.end), TAG.SEQUENCE, 'extensions')
      : null;
    return {
      tbs,
      version,
      serial,
      issuer,
      validity,
      subject,
      spki,
      extensions,
      signatureAlgorithm,
      signatureValue,
    };
  } catch (e) {
    if (e instanceof DerError) {
      throw new PkiError('ERR_CERT', `malformed certificate: ${e.message}`, { cause: e });
    }
    throw e;
  }
}

/** OID of the outer Certificate.signatureAlgorithm (the one OpenSSL verifies with). */
export function signatureAlgorithmOid(certDer: Buffer): string {
  const f = certFields(certDer);
  return algorithmOid(certDer, f.signatureAlgorithm);
}

function algorithmOid(buf: Buffer, algId: Tlv): string {
  return decodeOid(buf, readTlv(buf, algId.contentStart, algId.end));
}

export function isSha1Signature(oid: string): boolean {
  return SHA1_SIGNATURES.has(oid);
}

/**
 * True when the certificate is signed with SHA-1, including RSASSA-PSS whose hash parameter is
 * SHA-1 or absent (absent means SHA-1 by RFC 4055's DEFAULT) — an OID check alone misses that.
 */
export function usesSha1Signature(certDer: Buffer): boolean {
  const f = certFields(certDer);
  const oid = algorithmOid(certDer, f.signatureAlgorithm);
  if (isSha1Signature(oid)) return true;
  if (oid !== OID.rsassaPss) return false;
  try {
    const alg = new DerCursor(certDer, f.signatureAlgorithm);
    alg.next('algorithm');
    const params = alg.optional(TAG.SEQUENCE);
    if (!params) return true;
    const p = new DerCursor(certDer, params);
    const hash = p.optional(contextTag(0));
    if (!hash) return true;
    const hashAlg = expectTag(readTlv(certDer, hash.contentStart, hash.end), TAG.SEQUENCE, 'hash');
    return algorithmOid(certDer, hashAlg) === OID.sha1;
  } catch (e) {
    if (e instanceof DerError) {
      throw new PkiError('ERR_CERT', `malformed RSASSA-PSS parameters: ${e.message}`, { cause: e });
    }
    throw e;
  }
}

/** The subject Name, DER including its header, as a view into `certDer`. */
export function subjectNameDer(certDer: Buffer): Buffer {
  return tlvBytes(certDer, certFields(certDer).subject);
}

/** The issuer Name, DER including its header, as a view into `certDer`. */
export function issuerNameDer(certDer: Buffer): Buffer {
  return tlvBytes(certDer, certFields(certDer).issuer);
}

/** SubjectPublicKeyInfo DER, as a view (what `spki:` pins hash). */
export function subjectPublicKeyInfoDer(certDer: Buffer): Buffer {
  return tlvBytes(certDer, certFields(certDer).spki);
}

/** Serial number in the same format as X509Certificate.serialNumber and CRL serials. */
export function serialNumberHex(certDer: Buffer): string {
  const f = certFields(certDer);
  return decodeIntegerHex(certDer, f.serial);
}

/**
 * Compares two DER Names byte for byte. Stricter than RFC 5280 name matching (which folds case
 * and whitespace); for a CRL and its CA that come from the same issuer software this is what
 * holds, and a mismatch makes the CRL unusable (a config error), never silently applied.
 */
export function namesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.compare(a, b) === 0;
}

/** basicConstraints cA flag (false when the extension is absent). */
export function isCaCertificate(certDer: Buffer): boolean {
  const value = extensionValue(certDer, OID.basicConstraints);
  if (!value) return false;
  try {
    const bc = expectTag(readTlv(certDer, value.contentStart, value.end), TAG.SEQUENCE, 'bc');
    const inner = new DerCursor(certDer, bc);
    const ca = inner.optional(TAG.BOOLEAN);
    return ca ? decodeBoolean(certDer, ca) : false;
  } catch (e) {
    if (e instanceof DerError) {
      throw new PkiError('ERR_CERT', `malformed extensions: ${e.message}`, { cause: e });
    }
    throw e;
  }
}

/**
 * The subjectKeyIdentifier's key id (a view), or null when the extension is absent. A dev CA
 * loaded from files names its children's authorityKeyIdentifier with exactly these bytes.
 */
export function subjectKeyIdentifier(certDer: Buffer): Buffer | null {
  const value = extensionValue(certDer, OID.subjectKeyIdentifier);
  if (!value) return null;
  try {
    return contentBytes(certDer, expectTag(readTlv(certDer, value.contentStart, value.end), TAG.OCTET_STRING, 'keyIdentifier'));
  } catch (e) {
    if (e instanceof DerError) {
      throw new PkiError('ERR_CERT', `malformed extensions: ${e.message}`, { cause: e });
    }
    throw e;
  }
}

/** The extnValue OCTET STRING of the extension `oid`, or null when the certificate has none. */
function extensionValue(certDer: Buffer, oid: string): Tlv | null {
  const f = certFields(certDer);
  if (!f.extensions) return null;
  try {
    const exts = new DerCursor(certDer, f.extensions);
    while (!exts.done) {
      const ext = new DerCursor(certDer, exts.expect(TAG.SEQUENCE, 'Extension'));
      if (decodeOid(certDer, ext.expect(TAG.OID, 'extnID')) !== oid) continue;
      ext.optional(TAG.BOOLEAN); // critical
      return ext.expect(TAG.OCTET_STRING, 'extnValue');
    }
    return null;
  } catch (e) {
    if (e instanceof DerError) {
      throw new PkiError('ERR_CERT', `malformed extensions: ${e.message}`, { cause: e });
    }
    throw e;
  }
}

/**
 * The one form serials are compared in: upper-case hex without leading zeros. node prints whole
 * bytes ("0A5E"), a CRL entry may carry a sign byte ("00A5"); the number is what counts.
 */
export function canonicalSerial(hex: string): string {
  let i = 0;
  while (i < hex.length - 1 && hex.charCodeAt(i) === 48 /* '0' */) i++;
  return (i === 0 ? hex : hex.slice(i)).toUpperCase();
}

export const EKU_CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';
export const EKU_SERVER_AUTH = '1.3.6.1.5.5.7.3.1';
const EKU_ANY = '2.5.29.37.0';

/**
 * Whether `x509` may serve `purpose` (an EKU OID) as OpenSSL judges it: no extended key usage at
 * all, or one that lists the purpose or anyExtendedKeyUsage.
 */
export function ekuAllows(x509: X509Certificate, purpose: string): boolean {
  // @types/node says string[]; Node gives undefined when the certificate has no EKU extension.
  const eku = x509.keyUsage as string[] | undefined;
  return eku === undefined || eku.length === 0 || eku.includes(purpose) || eku.includes(EKU_ANY);
}
