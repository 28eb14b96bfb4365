/**
 * X.509 CRL parsing and signature verification (RFC 5280 §5).
 *
 * CertificateList ::= SEQUENCE { tbsCertList, signatureAlgorithm, signatureValue BIT STRING }
 * TBSCertList ::= SEQUENCE { version OPTIONAL, signature, issuer, thisUpdate, nextUpdate OPTIONAL,
 *                            revokedCertificates SEQUENCE OF ... OPTIONAL, [0] crlExtensions OPTIONAL }
 *
 * The signature is verified over the exact tbsCertList bytes sliced from the input (never a
 * re-encoding, which could differ from what the CA signed).
 */
import { verify as cryptoVerify, type KeyObject, type X509Certificate } from 'node:crypto';
import {
  DerCursor,
  DerError,
  TAG,
  contextTag,
  decodeBitStringBytes,
  decodeBoolean,
  decodeIntegerHex,
  decodeOid,
  decodeSmallInt,
  decodeTime,
  expectTag,
  readRoot,
  readTlv,
  tlvBytes,
  type Tlv,
} from './der.js';
import { OID, namesEqual, subjectNameDer } from './certinfo.js';
import { PkiError } from './errors.js';
import { decodePem, encodePem } from './pem.js';

export interface ParsedCrl {
  /** The whole CertificateList. */
  der: Buffer;
  /** Exact tbsCertList bytes (what the signature covers). */
  tbs: Buffer;
  /** 1 for v1 (no version field), 2 for v2. */
  version: 1 | 2;
  /** Issuer Name DER; compare with the CA's `subjectNameDer()`. */
  issuerDer: Buffer;
  thisUpdate: Date;
  nextUpdate: Date | null;
  /** Upper-case hex, leading zeros stripped (same format as X509Certificate.serialNumber). */
  revokedSerials: Set<string>;
  /** cRLNumber as upper-case hex, if present. */
  crlNumber: string | null;
  /** authorityKeyIdentifier keyIdentifier, if present. */
  authorityKeyId: Buffer | null;
  /** From issuingDistributionPoint: which certificates this CRL covers. */
  scope: 'all' | 'userCerts' | 'caCerts';
  signatureOid: string;
  signature: Buffer;
}

const EXT = {
  cRLNumber: '2.5.29.20',
  authorityKeyIdentifier: '2.5.29.35',
  issuingDistributionPoint: '2.5.29.28',
  deltaCRLIndicator: '2.5.29.27',
  certificateIssuer: '2.5.29.29',
} as const;

// Extensions whose presence we understand well enough to honour them when marked critical.
const KNOWN_CRL_EXTS: ReadonlySet<string> = new Set([
  EXT.cRLNumber,
  EXT.authorityKeyIdentifier,
  EXT.issuingDistributionPoint,
  '2.5.29.18', // issuerAltName
  '2.5.29.46', // freshestCRL
  '1.3.6.1.5.5.7.1.1', // authorityInfoAccess
  '2.5.29.60', // expiredCertsOnCRL
]);
const KNOWN_ENTRY_EXTS: ReadonlySet<string> = new Set([
  '2.5.29.21', // reasonCode
  '2.5.29.24', // invalidityDate
  '2.5.29.23', // holdInstructionCode
]);

function crlError(message: string, cause?: unknown): PkiError {
  return new PkiError('ERR_CRL', message, cause === undefined ? undefined : { cause });
}

/** Parses one DER CertificateList. Throws PkiError ERR_CRL / ERR_CRL_UNSUPPORTED. */
export function parseCrlDer(der: Buffer): ParsedCrl {
  try {
    return parseCrlInner(der);
  } catch (e) {
    if (e instanceof DerError) throw crlError(`malformed CRL: ${e.message}`, e);
    throw e;
  }
}

function parseCrlInner(der: Buffer): ParsedCrl {
  const root = expectTag(readRoot(der), TAG.SEQUENCE, 'CertificateList');
  const top = new DerCursor(der, root);
  const tbsTlv = top.expect(TAG.SEQUENCE, 'tbsCertList');
  const sigAlg = top.expect(TAG.SEQUENCE, 'signatureAlgorithm');
  const sigValue = top.expect(TAG.BIT_STRING, 'signatureValue');
  top.finish('CertificateList');

  const c = new DerCursor(der, tbsTlv);
  let version: 1 | 2 = 1;
  const v = c.optional(TAG.INTEGER);
  if (v) {
    if (decodeSmallInt(der, v) !== 1) throw crlError('malformed CRL: unsupported CRL version');
    version = 2;
  }
  const innerSigAlg = c.expect(TAG.SEQUENCE, 'signature');
  // RFC 5280 §5.1.1.2: both copies must match; a mismatch hints at tampering or a broken CA.
  if (!tlvBytes(der, innerSigAlg).equals(tlvBytes(der, sigAlg))) {
    throw crlError('malformed CRL: inner and outer signature algorithms differ');
  }
  const issuer = c.expect(TAG.SEQUENCE, 'issuer');
  const thisUpdate = decodeTime(der, c.next('thisUpdate'));
  let nextUpdate: Date | null = null;
  const t = c.peekTag();
  if (t === TAG.UTC_TIME || t === TAG.GENERALIZED_TIME) nextUpdate = decodeTime(der, c.next('nextUpdate'));

  const revokedSerials = new Set<string>();
  const revoked = c.optional(TAG.SEQUENCE);
  if (revoked) {
    const entries = new DerCursor(der, revoked);
    while (!entries.done) {
      const entry = new DerCursor(der, entries.expect(TAG.SEQUENCE, 'revokedCertificate'));
      revokedSerials.add(decodeIntegerHex(der, entry.expect(TAG.INTEGER, 'userCertificate')));
      decodeTime(der, entry.next('revocationDate'));
      const exts = entry.optional(TAG.SEQUENCE);
      if (exts) checkEntryExtensions(der, exts);
      entry.finish('revokedCertificate');
    }
  }

  let crlNumber: string | null = null;
  let authorityKeyId: Buffer | null = null;
  let scope: ParsedCrl['scope'] = 'all';
  const extsWrap = c.optional(contextTag(0));
  c.finish('tbsCertList');
  if (extsWrap) {
    const exts = expectTag(readTlv(der, extsWrap.contentStart, extsWrap.end), TAG.SEQUENCE, 'crlExtensions');
    for (const ext of extensions(der, exts)) {
      switch (ext.oid) {
        case EXT.cRLNumber:
          crlNumber = decodeIntegerHex(der, readInner(der, ext.value));
          break;
        case EXT.authorityKeyIdentifier: {
          const aki = new DerCursor(der, expectTag(readInner(der, ext.value), TAG.SEQUENCE, 'AKI'));
          const kid = aki.optional(contextTag(0, false));
          if (kid) authorityKeyId = der.subarray(kid.contentStart, kid.end);
          break;
        }
        case EXT.issuingDistributionPoint:
          scope = parseIdp(der, ext.value);
          break;
        case EXT.deltaCRLIndicator:
          // A delta lists only changes since a base CRL; read as complete it would un-revoke.
          throw new PkiError('ERR_CRL_UNSUPPORTED', 'delta CRLs are not supported; give the full CRL');
        default:
          if (ext.critical && !KNOWN_CRL_EXTS.has(ext.oid)) {
            throw new PkiError('ERR_CRL_UNSUPPORTED', `CRL has an unsupported critical extension ${ext.oid}`);
          }
      }
    }
  }

  return {
    der,
    tbs: tlvBytes(der, tbsTlv),
    version,
    issuerDer: tlvBytes(der, issuer),
    thisUpdate,
    nextUpdate,
    revokedSerials,
    crlNumber,
    authorityKeyId,
    scope,
    signatureOid: decodeOid(der, readTlv(der, sigAlg.contentStart, sigAlg.end)),
    signature: decodeBitStringBytes(der, sigValue),
  };
}

interface Ext {
  oid: string;
  critical: boolean;
  value: Tlv; // the OCTET STRING wrapping extnValue
}

function extensions(der: Buffer, seq: Tlv): Ext[] {
  const out: Ext[] = [];
  const list = new DerCursor(der, seq);
  while (!list.done) {
    const e = new DerCursor(der, list.expect(TAG.SEQUENCE, 'Extension'));
    const oid = decodeOid(der, e.expect(TAG.OID, 'extnID'));
    const crit = e.optional(TAG.BOOLEAN);
    const value = e.expect(TAG.OCTET_STRING, 'extnValue');
    e.finish('Extension');
    out.push({ oid, critical: crit ? decodeBoolean(der, crit) : false, value });
  }
  return out;
}

/** The single TLV inside an OCTET STRING extnValue. */
function readInner(der: Buffer, octets: Tlv): Tlv {
  const inner = readTlv(der, octets.contentStart, octets.end);
  if (inner.end !== octets.end) throw new DerError('trailing bytes in extension value');
  return inner;
}

function checkEntryExtensions(der: Buffer, seq: Tlv): void {
  for (const ext of extensions(der, seq)) {
    if (ext.oid === EXT.certificateIssuer) {
      // Indirect CRL entries belong to another issuer; we only model CA-issued CRLs.
      throw new PkiError('ERR_CRL_UNSUPPORTED', 'indirect CRLs (certificateIssuer entries) are not supported');
    }
    if (ext.critical && !KNOWN_ENTRY_EXTS.has(ext.oid)) {
      throw new PkiError('ERR_CRL_UNSUPPORTED', `CRL entry has an unsupported critical extension ${ext.oid}`);
    }
  }
}

function parseIdp(der: Buffer, octets: Tlv): ParsedCrl['scope'] {
  const idp = new DerCursor(der, expectTag(readInner(der, octets), TAG.SEQUENCE, 'IDP'));
  let scope: ParsedCrl['scope'] = 'all';
  while (!idp.done) {
    const f = idp.next('IDP field');
    const n = f.tag & 0x1f;
    // [1]..[5] are IMPLICIT BOOLEAN / BIT STRING; a DER BOOLEAN TRUE is one 0xFF byte.
    const isTrue = f.length === 1 && der[f.contentStart] === 0xff;
    if (n === 1 && isTrue) scope = 'userCerts';
    else if (n === 2 && isTrue) scope = 'caCerts';
    else if (n === 3) throw new PkiError('ERR_CRL_UNSUPPORTED', 'CRLs partitioned by reason (onlySomeReasons) are not supported');
    else if (n === 4 && isTrue) throw new PkiError('ERR_CRL_UNSUPPORTED', 'indirect CRLs are not supported');
    else if (n === 5 && isTrue) throw new PkiError('ERR_CRL_UNSUPPORTED', 'attribute-certificate CRLs are not supported');
  }
  return scope;
}

/**
 * Every CRL in a file: PEM (one or more `X509 CRL` blocks, other blocks ignored) or one DER
 * CertificateList. Errors name the block ("CRL #2: ...") so the user can find it.
 */
export function parseCrlFile(data: Buffer | string): ParsedCrl[] {
  const text = typeof data === 'string' ? data : data.toString('latin1');
  if (text.includes('-----BEGIN ')) {
    const { blocks, invalid } = decodePem(text);
    if (invalid.includes('X509 CRL')) throw new PkiError('ERR_CRL_PEM', 'a PEM X509 CRL block has invalid base64');
    const ders = blocks.filter((b) => b.label === 'X509 CRL').map((b) => b.der);
    if (ders.length === 0) {
      const found = [...new Set(blocks.map((b) => b.label))].join(', ');
      throw new PkiError('ERR_CRL_PEM', `no X509 CRL PEM block found${found ? ` (found ${found})` : ''}`);
    }
    return ders.map((der, i) => {
      try {
        return parseCrlDer(der);
      } catch (e) {
        if (e instanceof PkiError && ders.length > 1) {
          throw new PkiError(e.code, `CRL #${i + 1}: ${e.message}`, { cause: e });
        }
        throw e;
      }
    });
  }
  const der = typeof data === 'string' ? Buffer.from(data, 'latin1') : data;
  if (der.length === 0 || der[0] !== TAG.SEQUENCE) {
    throw new PkiError('ERR_CRL_PEM', 'not a CRL: neither PEM "X509 CRL" nor DER');
  }
  return [parseCrlDer(der)];
}

interface SigAlg {
  hash: string | null; // null: the algorithm hashes internally (Ed25519)
  keyType: 'rsa' | 'ec' | 'ed25519';
}

const CRL_SIG_ALGS: ReadonlyMap<string, SigAlg> = new Map<string, SigAlg>([
  [OID.sha256WithRSAEncryption, { hash: 'sha256', keyType: 'rsa' }],
  [OID.sha384WithRSAEncryption, { hash: 'sha384', keyType: 'rsa' }],
  [OID.sha512WithRSAEncryption, { hash: 'sha512', keyType: 'rsa' }],
  [OID.ecdsaWithSHA256, { hash: 'sha256', keyType: 'ec' }],
  [OID.ecdsaWithSHA384, { hash: 'sha384', keyType: 'ec' }],
  [OID.ecdsaWithSHA512, { hash: 'sha512', keyType: 'ec' }],
  [OID.ed25519, { hash: null, keyType: 'ed25519' }],
]);

/**
 * Verifies the CRL signature with the CA's public key. Returns false for a bad signature or a
 * key of the wrong type; throws PkiError ERR_CRL_ALG for algorithms we do not accept (SHA-1,
 * MD5, RSA-PSS, ...), since "cannot check" must not look like "checked and bad" to operators.
 */
export function verifyCrlSignature(crl: ParsedCrl, caPublicKey: KeyObject): boolean {
  const alg = crlSignatureAlgorithm(crl);
  if (caPublicKey.type !== 'public' || caPublicKey.asymmetricKeyType !== alg.keyType) return false;
  try {
    // ECDSA signatures in X.509 are DER Ecdsa-Sig-Value, which is Node's default dsaEncoding.
    return cryptoVerify(alg.hash, crl.tbs, caPublicKey, crl.signature);
  } catch {
    // Malformed signature encodings make OpenSSL error out rather than return false.
    return false;
  }
}

/**
 * The CRL's signature algorithm, or PkiError ERR_CRL_ALG when it is not one we accept: known
 * before the issuer's key is (a CRL of an intermediate is checked at load this far).
 */
export function crlSignatureAlgorithm(crl: ParsedCrl): { readonly hash: string | null; readonly keyType: 'rsa' | 'ec' | 'ed25519' } {
  const alg = CRL_SIG_ALGS.get(crl.signatureOid);
  if (!alg) throw new PkiError('ERR_CRL_ALG', `unsupported CRL signature algorithm ${crl.signatureOid}`);
  return alg;
}

/** True when `ca` issued this CRL: same Name and a valid signature by its key. */
export function crlIssuedBy(crl: ParsedCrl, ca: X509Certificate): boolean {
  return namesEqual(crl.issuerDer, subjectNameDer(ca.raw)) && verifyCrlSignature(crl, ca.publicKey);
}

export type CrlTimeStatus = 'current' | 'not_yet_valid' | 'expired';

/** Whether the CRL is usable at `now` (a CRL without nextUpdate never expires). */
export function crlTimeStatus(crl: ParsedCrl, now: Date = new Date()): CrlTimeStatus {
  if (crl.thisUpdate.getTime() > now.getTime()) return 'not_yet_valid';
  if (crl.nextUpdate && crl.nextUpdate.getTime() <= now.getTime()) return 'expired';
  return 'current';
}

export function crlToPem(crl: ParsedCrl): string {
  return encodePem(crl.der, 'X509 CRL');
}
