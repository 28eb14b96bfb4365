/**
 * `explain` judges a certificate without a handshake (tls/verify.ts verifyOffline), so the one
 * part of the live verdict it cannot call, OpenSSL's chain check, is rebuilt with node:crypto
 * (tls/chain.ts offlineChainError). Here both meet the same certificates: a real TLS server
 * with the CA as `ca` judges each handshake with verifyPeer, exactly as the sidecar does, and
 * verifyOffline must name the same reason for the leaf and the chain the client presented.
 * The cases are the ones the chain check decides: intermediates presented or not, an expired or
 * not yet valid intermediate, a foreign root.
 */
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { TrustPolicy } from '../../src/config/snapshot.js';
import { createCa, issueLeaf } from '../../src/pki/devca.js';
import type { IssuedCert } from '../../src/pki/devca.js';
import { keepPeerChain } from '../../src/tls/peer-chain.js';
import { verifyOffline, verifyPeer } from '../../src/tls/verify.js';

const pki = inject('pki');
const DAY = 24 * 3600 * 1000;

let root: IssuedCert;
const leaves: Record<string, { leaf: IssuedCert; chain: string }> = {};
let trust: TrustPolicy;
let server: tls.Server;
let port = 0;
/** verifyPeer's reason for each handshake, in arrival order. */
const verdicts: (string | null)[] = [];

function policy(cas: X509Certificate[]): TrustPolicy {
  return { hasClientCAs: true, cas, caFingerprints: new Set(cas.map((c) => c.fingerprint256)), pinsSha256: new Set(), pinsSpki: new Set(), crlsByIssuer: new Map(), pendingCrls: [] };
}

beforeAll(async () => {
  expect(keepPeerChain()).toBe(true);
  const now = Date.now();
  const past = new Date(now - 60 * DAY);
  root = await createCa({ commonName: 'Offline Root', days: 3650, notBefore: past, keyType: 'ecdsa' });
  const foreign = await createCa({ commonName: 'Offline Foreign', days: 3650, notBefore: past, keyType: 'ecdsa' });
  const [good, expired, future] = await Promise.all([
    createCa({ commonName: 'Offline Inter', days: 365, notBefore: past, parent: root, keyType: 'ecdsa' }),
    createCa({ commonName: 'Offline Inter Expired', days: 30, notBefore: past, parent: root, keyType: 'ecdsa' }),
    createCa({ commonName: 'Offline Inter Future', days: 365, notBefore: new Date(now + DAY), parent: root, keyType: 'ecdsa' }),
  ]);
  const client = (cn: string) => ({ commonName: cn, uris: [`spiffe://offline/${cn}`], eku: ['clientAuth' as const], days: 10 });
  const issue = async (name: string, parent: IssuedCert, withChain: boolean): Promise<void> => {
    const leaf = await issueLeaf(parent, client(name));
    leaves[name] = { leaf, chain: withChain ? leaf.certPem + (parent === root || parent === foreign ? '' : parent.certPem) : leaf.certPem };
  };
  await Promise.all([
    issue('direct', root, true),
    issue('viaInter', good, true),
    issue('viaInterLeafOnly', good, false),
    issue('viaExpiredInter', expired, true),
    issue('viaFutureInter', future, true),
    issue('foreign', foreign, true),
  ]);
  trust = policy([new X509Certificate(root.certPem)]);
  server = tls.createServer({ cert: readFileSync(pki.server.cert), key: readFileSync(pki.server.key), ca: [root.certPem], requestCert: true, rejectUnauthorized: false });
  server.on('secureConnection', (socket) => {
    const v = verifyPeer(socket, trust, Date.now());
    verdicts.push(v.ok ? null : v.reason);
    socket.end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
});
afterAll(async () => {
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- undefined when beforeAll failed
  if (server !== undefined) await new Promise<void>((resolve) => server.close(() => resolve()));
});

/** One real handshake presenting `chain`; verifyPeer's reason (null: trusted). */
async function handshake(chain: string, key: string): Promise<string | null> {
  const before = verdicts.length;
  await new Promise<void>((resolve) => {
    const socket = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ca: readFileSync(pki.rootCa.cert), cert: chain, key });
    socket.on('error', () => resolve());
    socket.on('close', () => resolve());
    socket.resume();
  });
  expect(verdicts.length).toBe(before + 1);
  return verdicts[before] ?? null;
}

describe('verifyOffline names the reason the handshake check names', () => {
  it.each([
    ['direct', null],
    ['viaInter', null],
    ['viaInterLeafOnly', 'untrusted'],
    ['viaExpiredInter', 'expired'],
    ['viaFutureInter', 'not_yet_valid'],
    ['foreign', 'untrusted'],
  ])('%s: %s', async (name, expected) => {
    const c = leaves[name]!;
    const live = await handshake(c.chain, c.leaf.keyPem);
    const [leaf, ...presented] = (c.chain.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []).map((pem) => new X509Certificate(pem));
    const offline = verifyOffline(leaf!, presented, trust, Date.now());
    expect(offline.reason).toBe(live);
    expect(live).toBe(expected);
  });
});
