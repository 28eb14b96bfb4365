/** The per-certificate memo of the connection stage (server/peers.ts) and the verdict order (tls/verify.ts). */
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, expect, inject, it } from 'vitest';
import type { IdentityRule, TrustPolicy } from '../../../src/config/snapshot.js';
import { PeerMemo } from '../../../src/server/peers.js';
import { certFacts, verdictFrom } from '../../../src/tls/verify.js';

const pki = inject('pki');
/** PkiEntry.cert is a path; a fresh object per call, as each handshake gives its own. */
const x509 = (file: string): X509Certificate => new X509Certificate(readFileSync(file));

function trust(opts: { cas?: string[]; pins?: string[] } = {}): TrustPolicy {
  const cas = (opts.cas ?? [pki.rootCa.cert]).map(x509);
  return {
    hasClientCAs: cas.length > 0,
    cas,
    caFingerprints: new Set(cas.map((c) => c.fingerprint256)),
    pinsSha256: new Set(opts.pins ?? []),
    pinsSpki: new Set(),
    crlsByIssuer: new Map(),
    pendingCrls: [],
  };
}

describe('PeerMemo', () => {
  it('computes facts, peer fields and identity once per certificate, for every connection that presents it', () => {
    const memo = new PeerMemo();
    const t = trust();
    let matches = 0;
    const match = (): IdentityRule | null => {
      matches++;
      return null;
    };
    // Two X509Certificate objects for the same DER, as two handshakes would give.
    const a = memo.entry(x509(pki.clients.orders.cert), t);
    const b = memo.entry(x509(pki.clients.orders.cert), t);
    expect(b).toBe(a);
    expect(b.facts).toBe(a.facts);
    expect(a.peer).toBe(b.peer);
    expect(a.peer.uri).toBe(pki.clients.orders.uri);
    a.identity(1, match);
    b.identity(1, match);
    expect(matches).toBe(1);
    // A reload (new generation) matches again: identity rules may have changed.
    b.identity(2, match);
    expect(matches).toBe(2);
    expect(memo.size).toBe(1);
  });

  it('judges the facts again when the trust policy changes (a reload added a pin)', () => {
    const memo = new PeerMemo();
    const first = memo.entry(x509(pki.clients.orders.cert), trust());
    expect(first.facts.pinReason).toBeNull();
    const pinned = trust({ pins: [pki.clients.billing.sha256] });
    const again = memo.entry(x509(pki.clients.orders.cert), pinned);
    expect(again.facts.trust).toBe(pinned);
    expect(again.facts.pinReason).toBe('pin_mismatch');
    const own = trust({ pins: [pki.clients.orders.sha256] });
    expect(memo.entry(x509(pki.clients.orders.cert), own).facts.pinReason).toBeNull();
  });

  it('is bounded: past the cap the oldest certificate is forgotten', () => {
    const memo = new PeerMemo(2);
    const t = trust();
    const orders = memo.entry(x509(pki.clients.orders.cert), t);
    memo.entry(x509(pki.clients.billing.cert), t);
    memo.entry(x509(pki.clients.interClient.cert), t);
    expect(memo.size).toBe(2);
    expect(memo.entry(x509(pki.clients.orders.cert), t)).not.toBe(orders);
  });
});

describe('verdictFrom', () => {
  const t = trust();
  it('records the leaf properties that do not depend on time', () => {
    expect(certFacts(x509(pki.clients.sha1.cert), t).leafReason).toBe('weak_signature');
    expect(certFacts(x509(pki.clients.caTrueLeaf.cert), t).leafReason).toBe('ca_leaf');
    expect(certFacts(x509(pki.clients.serverAuthOnly.cert), t).leafReason).toBe('bad_eku');
    expect(certFacts(x509(pki.clients.orders.cert), t).leafReason).toBeNull();
  });

  it('checks the clock on every call: the same facts are valid now and expired later', () => {
    const f = certFacts(x509(pki.clients.orders.cert), t);
    expect(verdictFrom(f, null, Date.now())).toBeNull();
    expect(verdictFrom(f, null, f.validTo + 1)).toBe('expired');
    expect(verdictFrom(f, null, f.validFrom - 1)).toBe('not_yet_valid');
  });

  it('names validity first, then the leaf, then the chain, then pins, then revocation, then a stale CRL', () => {
    const base = certFacts(x509(pki.clients.orders.cert), t);
    const now = Date.now();
    const all = { ...base, leafReason: 'weak_key' as const, pinReason: 'pin_mismatch' as const };
    const path = { depth: 5, revoked: true, crlDeadline: now - 1 };
    expect(verdictFrom(all, 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', base.validTo + 1, path)).toBe('expired');
    expect(verdictFrom(all, 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', now, path)).toBe('weak_key');
    const leafOk = { ...all, leafReason: null };
    expect(verdictFrom(leafOk, 'CERT_REVOKED', now)).toBe('revoked');
    expect(verdictFrom(leafOk, 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', now)).toBe('untrusted');
    // OpenSSL verified, but no path to a clientCA could be rebuilt (a resumed session).
    expect(verdictFrom(leafOk, null, now, null)).toBe('untrusted');
    expect(verdictFrom(leafOk, null, now, path)).toBe('chain_too_long');
    expect(verdictFrom(leafOk, null, now, { ...path, depth: 4 })).toBe('pin_mismatch');
    const pinned = { ...leafOk, pinReason: null };
    expect(verdictFrom(pinned, null, now, { ...path, depth: 4 })).toBe('revoked');
    expect(verdictFrom(pinned, null, now, { ...path, depth: 4, revoked: false })).toBe('crl_expired');
    expect(verdictFrom(pinned, null, now - 2, { ...path, depth: 4, revoked: false })).toBeNull();
    expect(verdictFrom(pinned, null, now, { depth: 1, revoked: false, crlDeadline: Infinity })).toBeNull();
  });
});
