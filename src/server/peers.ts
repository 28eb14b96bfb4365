/**
 * Per-certificate memo for the connection stage. In a mesh the same few client certificates
 * reconnect all day; what a certificate is (trust facts, subject/SAN fields, XFCC value, the
 * identity it maps to) is a pure function of its DER and the loaded config, so it is computed
 * once per certificate and config, keyed by the leaf's SHA-256, not once per handshake. The
 * clock and OpenSSL's chain verdict are still judged on every handshake (tls/verify).
 */
import type { X509Certificate } from 'node:crypto';
import type { IdentityRule, TrustPolicy } from '../config/snapshot.js';
import { describePeer } from '../identity/peer.js';
import type { PeerInfo } from '../identity/peer.js';
import { certFacts } from '../tls/verify.js';
import type { CertFacts } from '../tls/verify.js';
import type { ChainFacts, ChainMemo } from '../tls/chain.js';

/** Enough for every workload identity of a large mesh; past it the oldest entry goes. */
export const PEER_MEMO_MAX = 4096;

export class PeerEntry {
  facts: CertFacts;
  #peer: PeerInfo | null = null;
  #identity: IdentityRule | null = null;
  #identityGeneration = -1;
  #chain: ChainFacts | null = null;
  #chainMemo: ChainMemo | null = null;
  readonly #x509: X509Certificate;
  constructor(x509: X509Certificate, trust: TrustPolicy) {
    this.#x509 = x509;
    this.facts = certFacts(x509, trust);
  }
  get peer(): PeerInfo {
    if (this.#peer === null) this.#peer = describePeer(this.#x509);
    return this.#peer;
  }
  /**
   * The path facts under `memo`'s trust, computed once: `x509` is this handshake's leaf (with
   * the chain it came with). A path that cannot be rebuilt is not kept: a later full handshake
   * may bring it.
   */
  chain(x509: X509Certificate, memo: ChainMemo): ChainFacts | null {
    if (this.#chainMemo !== memo || this.#chain === null) {
      const facts = memo.facts(x509);
      if (facts === null) return null;
      this.#chain = facts;
      this.#chainMemo = memo;
    }
    return this.#chain;
  }

  /** The identity under config `generation`, matched once per generation. */
  identity(generation: number, match: (peer: PeerInfo) => IdentityRule | null): IdentityRule | null {
    if (this.#identityGeneration !== generation) {
      this.#identity = match(this.peer);
      this.#identityGeneration = generation;
    }
    return this.#identity;
  }
}

export class PeerMemo {
  readonly #entries = new Map<string, PeerEntry>();
  readonly #max: number;
  constructor(max = PEER_MEMO_MAX) {
    this.#max = max;
  }

  get size(): number {
    return this.#entries.size;
  }

  entry(x509: X509Certificate, trust: TrustPolicy): PeerEntry {
    const key = x509.fingerprint256;
    let e = this.#entries.get(key);
    if (e === undefined) {
      if (this.#entries.size >= this.#max) {
        const oldest = this.#entries.keys().next();
        if (oldest.done !== true) this.#entries.delete(oldest.value);
      }
      e = new PeerEntry(x509, trust);
      this.#entries.set(key, e);
    } else if (e.facts.trust !== trust) {
      // A reload brought new trust (CAs, pins, CRLs): the facts are judged again.
      e.facts = certFacts(x509, trust);
    }
    return e;
  }
}
