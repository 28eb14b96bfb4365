/**
 * What the path from a client's leaf to its trust anchor says, once OpenSSL has verified the
 * chain (tls/verify.ts): how many CAs stand above the leaf (SPEC §4: at most 4), whether the
 * leaf or a CA on the path is revoked by its issuer's CRL, and when the earliest of those CRLs
 * goes stale.
 *
 * The path is rebuilt here the way OpenSSL builds it: from the leaf, each issuer taken from
 * tls.clientCAs first, then from what the client presented (tls/peer-chain.ts), then from the
 * intermediates seen in earlier verified chains; an issuer counts only if it signed the
 * certificate below it. The last source is for resumed TLS sessions, which carry the leaf but
 * not the chain: a session only resumes under the secure context (and trust) it was made with,
 * whose full handshake brought the same intermediates here first.
 *
 * A CRL signed by an intermediate that only clients present is parsed at load (PendingCrl) and
 * applied once such a chain brings an intermediate of that name whose key verifies it.
 */
import type { X509Certificate } from 'node:crypto';
import type { CrlIndex, PendingCrl, TrustPolicy } from '../config/snapshot.js';
import { EKU_CLIENT_AUTH, canonicalSerial, ekuAllows, subjectNameDer } from '../pki/certinfo.js';
import { verifyCrlSignature } from '../pki/crl.js';
import { presentedChain } from './peer-chain.js';

/** SPEC §4 protective default: at most this many certificates above the leaf. */
export const MAX_CAS_ABOVE_LEAF = 4;

/** Intermediates remembered per trust policy; past it none is added (a resumed session whose path needs one is refused). */
export const LEARNED_MAX = 1024;

export interface ChainFacts {
  /** CAs above the leaf on its path (stops counting one past the limit). */
  readonly depth: number;
  /** The leaf or a CA on the path is listed in its issuer's CRL. */
  readonly revoked: boolean;
  /** The earliest nextUpdate (ms) of the CRLs consulted on the path; Infinity when none. */
  readonly crlDeadline: number;
}

const NO_CRLS: readonly CrlIndex[] = Object.freeze([]);

/** Path facts under one trust policy, with the intermediates verified chains have brought. */
export class ChainMemo {
  readonly trust: TrustPolicy;
  /** Intermediates (not in clientCAs) seen on verified paths, by SHA-256 thumbprint. */
  readonly #learned = new Map<string, X509Certificate>();
  /** The pending CRLs each intermediate turned out to sign, checked once per intermediate. */
  readonly #intermediateCrls = new Map<string, readonly CrlIndex[]>();

  constructor(trust: TrustPolicy) {
    this.trust = trust;
  }

  get learned(): number {
    return this.#learned.size;
  }

  /**
   * The facts for a leaf whose chain OpenSSL verified, or null when no path to a clientCA can
   * be rebuilt (a resumed session whose intermediates were never seen).
   */
  facts(leaf: X509Certificate, presented: readonly X509Certificate[] = presentedChain(leaf)): ChainFacts | null {
    const trust = this.trust;
    const path = buildPath(leaf, trust, presented, this.#learned.values());
    // Past the limit the walk stops before the root: too long is all there is to know.
    if (!anchored(path, trust) && path.length <= MAX_CAS_ABOVE_LEAF) return null;
    let revoked = false;
    let crlDeadline = Infinity;
    let child = leaf;
    for (const issuer of path) {
      const anchor = trust.caFingerprints.has(issuer.fingerprint256);
      if (!anchor) this.#learn(issuer);
      const crls = anchor ? this.#anchorCrls(issuer) : this.#crlsOfIntermediate(issuer);
      if (crls.length > 0) {
        const serial = canonicalSerial(child.serialNumber);
        for (const crl of crls) {
          if (crl.revoked.has(serial)) revoked = true;
          if (crl.nextUpdateMs < crlDeadline) crlDeadline = crl.nextUpdateMs;
        }
      }
      child = issuer;
    }
    return { depth: path.length, revoked, crlDeadline };
  }

  /** CRLs of a clientCA: the ones its own key signed (another CA may share its name). */
  #anchorCrls(ca: X509Certificate): readonly CrlIndex[] {
    const byName = this.trust.crlsByIssuer.get(ca.subject);
    if (byName === undefined) return NO_CRLS;
    const fp = ca.fingerprint256;
    return byName.filter((c) => c.ca === ca || c.ca.fingerprint256 === fp);
  }

  #learn(ca: X509Certificate): void {
    const fp = ca.fingerprint256;
    if (!this.#learned.has(fp) && this.#learned.size < LEARNED_MAX) this.#learned.set(fp, ca);
  }

  /** The pending CRLs this intermediate signed: same issuer Name, signature valid under its key. */
  #crlsOfIntermediate(ca: X509Certificate): readonly CrlIndex[] {
    const pending = this.trust.pendingCrls;
    if (pending.length === 0) return NO_CRLS;
    const fp = ca.fingerprint256;
    let crls = this.#intermediateCrls.get(fp);
    if (crls === undefined) {
      const name = subjectNameDer(ca.raw);
      crls = Object.freeze(pending.filter((p) => p.crl.issuerDer.equals(name) && verifyCrlSignature(p.crl, ca.publicKey)).map((p) => indexFor(p, ca)));
      if (this.#intermediateCrls.size < LEARNED_MAX) this.#intermediateCrls.set(fp, crls);
    }
    return crls;
  }
}

function indexFor(p: PendingCrl, ca: X509Certificate): CrlIndex {
  return Object.freeze({ file: p.file, ca, revoked: p.revoked, thisUpdate: p.thisUpdate, nextUpdate: p.nextUpdate, nextUpdateMs: p.nextUpdateMs });
}

/**
 * The CAs above `leaf`, nearest first: each issuer taken from clientCAs, then from `presented`,
 * then from `learned`; the walk ends at a self-signed CA (the root), where no issuer is found,
 * or one past the limit.
 */
export function buildPath(leaf: X509Certificate, trust: TrustPolicy, presented: readonly X509Certificate[], learned: Iterable<X509Certificate>): X509Certificate[] {
  const path: X509Certificate[] = [];
  const onPath = new Set<string>([leaf.fingerprint256]);
  let cur = leaf;
  while (path.length <= MAX_CAS_ABOVE_LEAF) {
    // A self-signed CA ends the path (the root).
    if (path.length > 0 && cur.checkIssued(cur) && cur.verify(cur.publicKey)) break;
    const next = issuerOf(cur, trust.cas, onPath) ?? issuerOf(cur, presented, onPath) ?? issuerOf(cur, learned, onPath);
    if (next === undefined) break;
    path.push(next);
    onPath.add(next.fingerprint256);
    cur = next;
  }
  return path;
}

/** Whether a clientCA stands on the path (an intermediate in clientCAs is an anchor too). */
function anchored(path: readonly X509Certificate[], trust: TrustPolicy): boolean {
  return path.some((ca) => trust.caFingerprints.has(ca.fingerprint256));
}

/**
 * OpenSSL's chain verdict where there is no handshake to get it from (`explain` holds a
 * certificate, not its key): the same path as above (issuer name and signature at each step,
 * from clientCAs and what the client presents), then what OpenSSL checks of each CA up to the
 * first clientCA: its validity and, when it has an extended key usage, that it allows client
 * authentication. Returns the OpenSSL error code verdictFrom (tls/verify.ts) maps, or null
 * when the chain verifies. A path one past the limit is left to ChainFacts.depth, as on a live
 * connection.
 */
export function offlineChainError(leaf: X509Certificate, presented: readonly X509Certificate[], trust: TrustPolicy, now: number): string | null {
  const path = buildPath(leaf, trust, presented, []);
  if (path.length > MAX_CAS_ABOVE_LEAF) return null;
  if (!anchored(path, trust)) return 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY';
  for (const ca of path) {
    if (now < ca.validFromDate.getTime()) return 'CERT_NOT_YET_VALID';
    if (now > ca.validToDate.getTime()) return 'CERT_HAS_EXPIRED';
    if (!ekuAllows(ca, EKU_CLIENT_AUTH)) return 'INVALID_PURPOSE';
    if (trust.caFingerprints.has(ca.fingerprint256)) break;
  }
  return null;
}

/** The first CA among `candidates` that issued and signed `cert`, not already on the path. */
function issuerOf(cert: X509Certificate, candidates: Iterable<X509Certificate>, onPath: ReadonlySet<string>): X509Certificate | undefined {
  for (const c of candidates) {
    if (!c.ca || onPath.has(c.fingerprint256)) continue;
    if (cert.checkIssued(c) && cert.verify(c.publicKey)) return c;
  }
  return undefined;
}
