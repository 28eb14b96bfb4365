/**
 * Stage 1: is this client certificate trusted? Runs once per TLS connection (and again on a
 * connection's next request after a reload changed trust), right after the handshake, before
 * any byte of HTTP is read.
 *
 * OpenSSL verifies the chain against clientCAs (node records the result in
 * `authorizationError`); we add what OpenSSL is not told: pins, CRLs (per CA, so a CA without a
 * CRL is not refused for want of one), and the protective defaults of SPEC §4.
 */
import type { X509Certificate } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import type { TrustPolicy } from '../config/snapshot.js';
import type { HandshakeReason } from '../reasons.js';
import { canonicalSerial, usesSha1Signature } from '../pki/certinfo.js';
import { spkiPin } from '../pki/thumbprint.js';

export type TrustVerdict =
  | { readonly ok: true; readonly x509: X509Certificate }
  | { readonly ok: false; readonly reason: HandshakeReason; readonly x509: X509Certificate | null };

const EKU_CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';
const EKU_ANY = '2.5.29.37.0';

/** OpenSSL verify codes that name a more specific reason than "untrusted". */
const OPENSSL_REASONS: Readonly<Record<string, HandshakeReason>> = {
  CERT_HAS_EXPIRED: 'expired',
  CERT_NOT_YET_VALID: 'not_yet_valid',
  CERT_REVOKED: 'revoked',
  INVALID_PURPOSE: 'bad_eku',
  CERT_CHAIN_TOO_LONG: 'chain_too_long',
  EE_KEY_TOO_SMALL: 'weak_key',
  CA_KEY_TOO_SMALL: 'weak_key',
  CA_MD_TOO_WEAK: 'weak_signature',
};

/**
 * What a certificate is, judged against one trust policy, apart from the clock and OpenSSL's
 * chain verdict. A pure function of (certificate, trust): the connection stage memoizes it per
 * certificate (see server/peers.ts), so a client reconnecting with the same certificate costs a
 * lookup, not a re-parse.
 */
export interface CertFacts {
  readonly trust: TrustPolicy;
  readonly validFrom: number;
  readonly validTo: number;
  /** EKU, CA:TRUE, weak key or SHA-1 signature: refused whatever the chain. */
  readonly leafReason: HandshakeReason | null;
  /** With pins configured: null when the leaf matches one, else pin_mismatch. */
  readonly pinReason: HandshakeReason | null;
  readonly revoked: boolean;
}

export function certFacts(x509: X509Certificate, trust: TrustPolicy): CertFacts {
  return {
    trust,
    validFrom: x509.validFromDate.getTime(),
    validTo: x509.validToDate.getTime(),
    leafReason: checkLeafStatic(x509),
    pinReason: checkPins(x509, trust),
    revoked: checkRevocation(x509, trust) !== null,
  };
}

/** Judge a fresh handshake: OpenSSL's chain verdict (authorizationError) plus our checks. */
export function verifyPeer(socket: TLSSocket, trust: TrustPolicy, now: number, facts?: (x509: X509Certificate) => CertFacts): TrustVerdict {
  const x509 = socket.getPeerX509Certificate();
  if (x509 === undefined) return { ok: false, reason: 'no_cert', x509: null };
  const err = socket.authorizationError as unknown;
  const chainError = err === null || err === undefined ? null : typeof err === 'string' ? err : ((err as { code?: string }).code ?? 'UNKNOWN');
  const reason = verdictFrom(facts === undefined ? certFacts(x509, trust) : facts(x509), chainError, now);
  return reason === null ? { ok: true, x509 } : { ok: false, reason, x509 };
}

/**
 * Re-judge an open connection after a reload (SPEC §7: withdrawn trust applies to the very next
 * request). OpenSSL's verdict was reached against the CAs of `verifiedAgainst`; it still holds
 * if no CA was removed since. Otherwise the leaf must now be issued directly by a current CA:
 * node does not expose the intermediates the client sent, so a client that chained through one
 * is made to reconnect (a new handshake is verified in full).
 */
export function rejudgeCertificate(x509: X509Certificate, verifiedAgainst: TrustPolicy, trust: TrustPolicy, now: number): TrustVerdict {
  let chainError: string | null = null;
  if (trust.hasClientCAs) {
    const stillTrusted = verifiedAgainst.hasClientCAs && isSubset(verifiedAgainst.caFingerprints, trust.caFingerprints);
    if (!stillTrusted && !trust.cas.some((ca) => x509.checkIssued(ca) && x509.verify(ca.publicKey))) chainError = 'CA_WITHDRAWN';
  }
  const reason = verdictFrom(certFacts(x509, trust), chainError, now);
  return reason === null ? { ok: true, x509 } : { ok: false, reason, x509 };
}

/** The order of the checks decides which reason an audit line names: validity, leaf, chain/pins, revocation. */
export function verdictFrom(f: CertFacts, chainError: string | null, now: number): HandshakeReason | null {
  if (now < f.validFrom) return 'not_yet_valid';
  if (now > f.validTo) return 'expired';
  if (f.leafReason !== null) return f.leafReason;
  if (f.trust.hasClientCAs && chainError !== null) return OPENSSL_REASONS[chainError] ?? 'untrusted';
  if (f.pinReason !== null) return f.pinReason;
  return f.revoked ? 'revoked' : null;
}

function isSubset(a: ReadonlySet<string>, b: ReadonlySet<string>): boolean {
  for (const x of a) if (!b.has(x)) return false;
  return true;
}

/** Properties of the leaf alone: SPEC §3 EKU and the §4 protective defaults (validity is checked per handshake). */
function checkLeafStatic(x509: X509Certificate): HandshakeReason | null {
  const eku = x509.keyUsage;
  if (eku !== undefined && eku.length > 0 && !eku.includes(EKU_CLIENT_AUTH) && !eku.includes(EKU_ANY)) return 'bad_eku';
  if (x509.ca) return 'ca_leaf';
  const key = x509.publicKey;
  if (key.asymmetricKeyType === 'rsa' || key.asymmetricKeyType === 'rsa-pss') {
    if ((key.asymmetricKeyDetails?.modulusLength ?? 0) < 2048) return 'weak_key';
  } else if (key.asymmetricKeyType === 'dsa' || key.asymmetricKeyType === 'dh') {
    return 'weak_key';
  }
  try {
    if (usesSha1Signature(x509.raw)) return 'weak_signature';
  } catch {
    return 'untrusted';
  }
  return null;
}

/** With pins alone, OpenSSL's verdict is ignored: a pinned self-signed leaf is the trust anchor. */
function checkPins(x509: X509Certificate, trust: TrustPolicy): HandshakeReason | null {
  if (trust.pinsSha256.size === 0 && trust.pinsSpki.size === 0) return null;
  if (trust.pinsSha256.has(x509.fingerprint256)) return null;
  if (trust.pinsSpki.size > 0 && trust.pinsSpki.has(spkiPin(x509))) return null;
  return 'pin_mismatch';
}

function checkRevocation(x509: X509Certificate, trust: TrustPolicy): HandshakeReason | null {
  if (trust.crlsByIssuer.size === 0) return null;
  const crls = trust.crlsByIssuer.get(x509.issuer);
  if (crls === undefined) return null;
  const serial = canonicalSerial(x509.serialNumber);
  for (const crl of crls) {
    // Same issuer name is not enough: the CRL applies to certificates its own CA signed.
    if (crl.revoked.has(serial) && x509.checkIssued(crl.ca) && x509.verify(crl.ca.publicKey)) return 'revoked';
  }
  return null;
}
