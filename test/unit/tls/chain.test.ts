/**
 * The path facts of tls/chain.ts: CAs above the leaf (SPEC §4: at most 4), revocation along the
 * path (a clientCA's CRL only for what its own key signed; an intermediate's CRL checked against
 * the intermediate the client presents), CRL freshness, and the intermediates remembered for
 * resumed sessions. Certificates are X509Certificate objects as a handshake gives them; the
 * presented chain is passed as the client would send it.
 */
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, inject, it } from 'vitest';
import type { CrlIndex, PendingCrl, TrustPolicy } from '../../../src/config/snapshot.js';
import { canonicalSerial } from '../../../src/pki/certinfo.js';
import { parseCrlFile } from '../../../src/pki/crl.js';
import type { ParsedCrl } from '../../../src/pki/crl.js';
import { createCa, createCrl, issueLeaf } from '../../../src/pki/devca.js';
import type { IssuedCert } from '../../../src/pki/devca.js';
import { ChainMemo, MAX_CAS_ABOVE_LEAF } from '../../../src/tls/chain.js';

const pki = inject('pki');
const fromFile = (file: string): X509Certificate => new X509Certificate(readFileSync(file));
const of = (ic: IssuedCert): X509Certificate => new X509Certificate(ic.certPem);
/** The certificates of a chain file after its leaf: what the client sends above it. */
const above = (file: string): X509Certificate[] =>
  (readFileSync(file, 'latin1').match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []).slice(1).map((pem) => new X509Certificate(pem));

function parsed(pem: string): { crl: ParsedCrl; revoked: Set<string>; thisUpdate: string; nextUpdate: string | null; nextUpdateMs: number } {
  const [crl] = parseCrlFile(pem);
  if (crl === undefined) throw new Error('no CRL');
  return {
    crl,
    revoked: new Set([...crl.revokedSerials].map(canonicalSerial)),
    thisUpdate: crl.thisUpdate.toISOString(),
    nextUpdate: crl.nextUpdate?.toISOString() ?? null,
    nextUpdateMs: crl.nextUpdate?.getTime() ?? Infinity,
  };
}

/** A CRL of a clientCA, as compile.ts indexes it. */
function crlIndex(pem: string, ca: X509Certificate): CrlIndex {
  const { crl: _crl, ...dates } = parsed(pem);
  return { file: 'ca.crl.pem', ca, ...dates };
}

/** A CRL of an intermediate that is not among clientCAs, as compile.ts keeps it. */
function pending(pem: string): PendingCrl {
  return { file: 'intermediate.crl.pem', ...parsed(pem) };
}

function trust(cas: X509Certificate[], crls: CrlIndex[] = [], pendingCrls: PendingCrl[] = []): TrustPolicy {
  const byIssuer = new Map<string, CrlIndex[]>();
  for (const c of crls) byIssuer.set(c.ca.subject, [...(byIssuer.get(c.ca.subject) ?? []), c]);
  return {
    hasClientCAs: cas.length > 0,
    cas,
    caFingerprints: new Set(cas.map((c) => c.fingerprint256)),
    pinsSha256: new Set(),
    pinsSpki: new Set(),
    crlsByIssuer: byIssuer,
    pendingCrls,
  };
}

describe('CAs above the leaf (SPEC §4)', () => {
  const deep = (): ChainMemo => new ChainMemo(trust([fromFile(pki.deepRootCa.cert)]));

  it('counts the path to the root: 4 for chain4, one past the limit for chain5', () => {
    expect(MAX_CAS_ABOVE_LEAF).toBe(4);
    expect(deep().facts(fromFile(pki.clients.chain4.cert), above(pki.clients.chain4.chain!))).toEqual({ depth: 4, revoked: false, crlDeadline: Infinity });
    expect(deep().facts(fromFile(pki.clients.chain5.cert), above(pki.clients.chain5.chain!))?.depth).toBe(5);
  });

  it('counts a leaf issued by a clientCA as 1, an intermediate the client sends as one more', () => {
    const root = new ChainMemo(trust([fromFile(pki.rootCa.cert)]));
    expect(root.facts(fromFile(pki.clients.orders.cert))?.depth).toBe(1);
    expect(root.facts(fromFile(pki.clients.interClient.cert), above(pki.clients.interClient.chain!))?.depth).toBe(2);
    // A partial chain: the intermediate alone is the anchor.
    const inter = new ChainMemo(trust([fromFile(pki.intermediateCa.cert)]));
    expect(inter.facts(fromFile(pki.clients.interClient.cert), above(pki.clients.interClient.chain!))?.depth).toBe(1);
  });

  it('does not count certificates the client sends that sign nothing on the path', () => {
    const junk = [fromFile(pki.foreignCa.cert), fromFile(pki.intermediateCa.cert), fromFile(pki.deepRootCa.cert)];
    const root = new ChainMemo(trust([fromFile(pki.rootCa.cert)]));
    expect(root.facts(fromFile(pki.clients.orders.cert), junk)?.depth).toBe(1);
  });

  it('calls a chain of 6 CAs too long without walking to its root', async () => {
    const root = await createCa({ commonName: 'Six Root', days: 30 });
    let ca = root;
    const cas: IssuedCert[] = [];
    for (let i = 1; i <= 5; i++) {
      ca = await createCa({ commonName: `Six CA ${i}`, days: 30, parent: ca });
      cas.push(ca);
    }
    const leaf = await issueLeaf(ca, { commonName: 'six', eku: ['clientAuth'], days: 30 });
    const memo = new ChainMemo(trust([of(root)]));
    expect(memo.facts(of(leaf), cas.reverse().map(of))?.depth).toBe(MAX_CAS_ABOVE_LEAF + 1);
  });

  it('gives no facts when no path reaches a clientCA', () => {
    expect(deep().facts(fromFile(pki.clients.chain4.cert), [])).toBeNull();
    expect(deep().facts(fromFile(pki.clients.orders.cert))).toBeNull();
  });

  it('remembers the intermediates of verified paths: a resumed session (leaf alone) gets the same facts', () => {
    const memo = deep();
    const leaf = fromFile(pki.clients.chain5.cert);
    expect(memo.facts(leaf, above(pki.clients.chain5.chain!))?.depth).toBe(5);
    expect(memo.learned).toBe(4);
    expect(memo.facts(fromFile(pki.clients.chain5.cert), [])?.depth).toBe(5);
    expect(memo.facts(fromFile(pki.clients.chain4.cert), [])?.depth).toBe(4);
  });
});

describe('revocation along the path', () => {
  let root: IssuedCert;
  let inter: IssuedCert;
  let interTwin: IssuedCert;
  let leaf: IssuedCert;
  let twinA: IssuedCert;
  let twinB: IssuedCert;
  let leafA: IssuedCert;
  let leafB: IssuedCert;
  const client = { eku: ['clientAuth' as const], days: 30 };

  beforeAll(async () => {
    root = await createCa({ commonName: 'Chain Test Root', days: 365 });
    // Two intermediates with one name and two keys; two roots the same way.
    [inter, interTwin, twinA, twinB] = await Promise.all([
      createCa({ commonName: 'Chain Test Intermediate', days: 365, parent: root }),
      createCa({ commonName: 'Chain Test Intermediate', days: 365, parent: root }),
      createCa({ commonName: 'Chain Test Twin', days: 365 }),
      createCa({ commonName: 'Chain Test Twin', days: 365 }),
    ]);
    [leaf, leafA, leafB] = await Promise.all([
      issueLeaf(inter, { commonName: 'leaf', ...client }),
      issueLeaf(twinA, { commonName: 'a', ...client }),
      issueLeaf(twinB, { commonName: 'b', ...client }),
    ]);
  });

  it('a clientCA\'s CRL applies only to what its own key signed (two CAs share a subject name)', () => {
    const a = of(twinA);
    const b = of(twinB);
    expect(a.subject).toBe(b.subject);
    // A's CRL lists both serials; only A's own leaf is revoked by it.
    const crl = crlIndex(createCrl(twinA, [{ serialHex: leafA.serialHex }, { serialHex: leafB.serialHex }]), a);
    const memo = new ChainMemo(trust([a, b], [crl]));
    expect(memo.facts(of(leafA))).toMatchObject({ depth: 1, revoked: true });
    expect(memo.facts(of(leafB))).toEqual({ depth: 1, revoked: false, crlDeadline: Infinity });
  });

  it('an intermediate\'s CRL (not among clientCAs) applies once the client presents that intermediate', () => {
    const pem = createCrl(inter, [{ serialHex: leaf.serialHex }], { days: 7 });
    const memo = new ChainMemo(trust([of(root)], [], [pending(pem)]));
    const f = memo.facts(of(leaf), [of(inter)]);
    expect(f).toMatchObject({ depth: 2, revoked: true });
    expect(f?.crlDeadline).toBe(parseCrlFile(pem)[0]!.nextUpdate!.getTime());
  });

  it('an intermediate\'s CRL is not applied to leaves of another key with the same name', () => {
    const pem = createCrl(interTwin, [{ serialHex: leaf.serialHex }]);
    const memo = new ChainMemo(trust([of(root)], [], [pending(pem)]));
    expect(memo.facts(of(leaf), [of(inter)])).toEqual({ depth: 2, revoked: false, crlDeadline: Infinity });
  });

  it('an intermediate the client presents, revoked by its issuer\'s CRL, revokes the path', () => {
    const r = of(root);
    const memo = new ChainMemo(trust([r], [crlIndex(createCrl(root, [{ serialHex: inter.serialHex }]), r)]));
    expect(memo.facts(of(leaf), [of(inter)])).toMatchObject({ depth: 2, revoked: true });
    expect(memo.facts(of(leafA))).toBeNull();
  });

  it('reports the earliest nextUpdate of the CRLs on the path', () => {
    const r = of(root);
    const rootCrl = createCrl(root, [], { days: 3 });
    const interCrl = createCrl(inter, [], { days: 9 });
    const memo = new ChainMemo(trust([r], [crlIndex(rootCrl, r)], [pending(interCrl)]));
    expect(memo.facts(of(leaf), [of(inter)])?.crlDeadline).toBe(parseCrlFile(rootCrl)[0]!.nextUpdate!.getTime());
  });
});
