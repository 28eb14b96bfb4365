/**
 * Stage 1: is this client certificate trusted? Runs once per TLS connection (and again on a
 * connection's next request after a reload changed trust), right after the handshake, before
 * any byte of HTTP is read.
 *
 * OpenSSL verifies the chain against clientCAs (node records the result in
 * `authorizationError`); we add what OpenSSL is not told: pins, CRLs (per CA, so a CA without a
 * CRL is not refused for want of one, including CRLs of intermediates only clients present),
 * and the protective defaults of SPEC §4 (the chain's depth: tls/chain.ts).
 */
import type { X509Certificate } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import type { TrustPolicy } from '../config/snapshot.js';
import type { HandshakeReason } from '../reasons.js';
import { EKU_CLIENT_AUTH, ekuAllows, usesSha1Signature } from '../pki/certinfo.js';
import { spkiPin } from '../pki/thumbprint.js';
import { ChainMemo, MAX_CAS_ABOVE_LEAF, buildPath, offlineChainError } from './chain.js';
import type { ChainFacts } from './chain.js';

export type TrustVerdict =
  | { readonly ok: true; readonly x509: X509Certificate }
  | { readonly ok: false; readonly reason: HandshakeReason; readonly x509: X509Certificate | null };

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
}

export function certFacts(x509: X509Certificate, trust: TrustPolicy): CertFacts {
  return {
    trust,
    validFrom: x509.validFromDate.getTime(),
    validTo: x509.validToDate.getTime(),
    leafReason: checkLeafStatic(x509),
    pinReason: checkPins(x509, trust),
  };
}

/** Where a caller keeps what it knows per certificate (server/peers.ts memoizes both). */
export interface PeerJudge {
  facts(x509: X509Certificate): CertFacts;
  /** Path facts, asked only once OpenSSL verified the chain against clientCAs. */
  chain(x509: X509Certificate): ChainFacts | null;
}

/** No memo: every fact computed for this one call. */
function freshJudge(trust: TrustPolicy): PeerJudge {
  const chains = new ChainMemo(trust);
  return { facts: (x509) => certFacts(x509, trust), chain: (x509) => chains.facts(x509) };
}

/** Judge a fresh handshake: OpenSSL's chain verdict (authorizationError) plus our checks. */
export function verifyPeer(socket: TLSSocket, trust: TrustPolicy, now: number, judge: PeerJudge = freshJudge(trust)): TrustVerdict {
  const x509 = socket.getPeerX509Certificate();
  if (x509 === undefined) return { ok: false, reason: 'no_cert', x509: null };
  const err = socket.authorizationError as unknown;
  const chainError = err === null || err === undefined ? null : typeof err === 'string' ? err : ((err as { code?: string }).code ?? 'UNKNOWN');
  const chain = trust.hasClientCAs && chainError === null ? judge.chain(x509) : undefined;
  const reason = verdictFrom(judge.facts(x509), chainError, now, chain);
  return reason === null ? { ok: true, x509 } : { ok: false, reason, x509 };
}

/** A certificate judged without a handshake, with what the verdict rests on (for `explain`). */
export interface OfflineVerdict {
  /** null: trusted. */
  readonly reason: HandshakeReason | null;
  readonly facts: CertFacts;
  /** The CAs above the leaf, nearest first, as far as clientCAs and the presented ones reach. */
  readonly path: readonly X509Certificate[];
  /** As verdictFrom's `chain`: the path facts once the chain verified (revocation, CRL freshness). */
  readonly chain: ChainFacts | null | undefined;
}

/**
 * Judge a leaf and the certificates a client would present after it, as a fresh handshake
 * would be judged, but without one: `explain` has the certificate, not its key. Only OpenSSL's
 * chain verdict is reached differently (tls/chain.ts offlineChainError); the facts, the path
 * facts and the verdict are the same functions verifyPeer uses.
 */
export function verifyOffline(leaf: X509Certificate, presented: readonly X509Certificate[], trust: TrustPolicy, now: number): OfflineVerdict {
  const facts = certFacts(leaf, trust);
  const chainError = trust.hasClientCAs ? offlineChainError(leaf, presented, trust, now) : null;
  const chain = trust.hasClientCAs && chainError === null ? new ChainMemo(trust).facts(leaf, presented) : undefined;
  return { reason: verdictFrom(facts, chainError, now, chain), facts, path: buildPath(leaf, trust, presented, []), chain };
}

/**
 * Re-judge an open connection after a reload (SPEC §7: withdrawn trust applies to the very next
 * request). OpenSSL's verdict was reached against the CAs of `verifiedAgainst`; it still holds
 * if no CA was removed since. Otherwise the leaf must now be issued directly by a current CA:
 * node does not expose the intermediates the client sent, so a client that chained through one
 * is made to reconnect (a new handshake is verified in full).
 */
export function rejudgeCertificate(x509: X509Certificate, verifiedAgainst: TrustPolicy, trust: TrustPolicy, now: number, judge: PeerJudge = freshJudge(trust)): TrustVerdict {
  let chainError: string | null = null;
  if (trust.hasClientCAs) {
    const stillTrusted = verifiedAgainst.hasClientCAs && isSubset(verifiedAgainst.caFingerprints, trust.caFingerprints);
    if (!stillTrusted && !trust.cas.some((ca) => x509.checkIssued(ca) && x509.verify(ca.publicKey))) chainError = 'CA_WITHDRAWN';
  }
  const chain = trust.hasClientCAs && chainError === null ? judge.chain(x509) : undefined;
  const reason = verdictFrom(judge.facts(x509), chainError, now, chain);
  return reason === null ? { ok: true, x509 } : { ok: false, reason, x509 };
}

/**
 * The order of the checks decides which reason an audit line names: validity, leaf, chain
 * (OpenSSL's verdict, then the path's depth), pins, revocation, then a stale CRL. `chain`:
 * the path facts once OpenSSL verified the chain (null: no path to a clientCA could be
 * rebuilt), undefined where there is none to judge (pins alone, or OpenSSL refused).
 */
export function verdictFrom(f: CertFacts, chainError: string | null, now: number, chain?: ChainFacts | null): HandshakeReason | null {
  if (now < f.validFrom) return 'not_yet_valid';
  if (now > f.validTo) return 'expired';
  if (f.leafReason !== null) return f.leafReason;
  if (f.trust.hasClientCAs) {
    if (chainError !== null) return OPENSSL_REASONS[chainError] ?? 'untrusted';
    if (chain === null) return 'untrusted';
    if (chain !== undefined && chain.depth > MAX_CAS_ABOVE_LEAF) return 'chain_too_long';
  }
  if (f.pinReason !== null) return f.pinReason;
  if (chain != null) {
    if (chain.revoked) return 'revoked';
    // A CRL past its nextUpdate no longer says who is revoked: its CA's clients are refused
    // until a current one is loaded (as nginx and Envoy do).
    if (now >= chain.crlDeadline) return 'crl_expired';
  }
  return null;
}

function isSubset(a: ReadonlySet<string>, b: ReadonlySet<string>): boolean {
  for (const x of a) if (!b.has(x)) return false;
  return true;
}

/** Properties of the leaf alone: SPEC §3 EKU and the §4 protective defaults (validity is checked per handshake). */
function checkLeafStatic(x509: X509Certificate): HandshakeReason | null {
  if (!ekuAllows(x509, EKU_CLIENT_AUTH)) return 'bad_eku';
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
