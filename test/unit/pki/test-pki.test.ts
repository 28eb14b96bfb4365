/**
 * makeTestPki (the integration tests' fixtures) and a baseline of what Node's TLS stack alone
 * decides for each fixture — including the quirks of its `crl` option the runtime must work around.
 */
import { X509Certificate } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import * as tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isCaCertificate, usesSha1Signature } from '../../../src/pki/certinfo.js';
import { parseCrlFile, verifyCrlSignature } from '../../../src/pki/crl.js';
import { pemBlocks } from '../../../src/pki/pem.js';
import { sha256Thumbprint, spkiPin } from '../../../src/pki/thumbprint.js';
import { makeTestPki, type PkiEntry, type TestPki } from '../../helpers/pki.js';
import { openssl, tempDir } from './util.js';

let tmp: { dir: string; cleanup: () => Promise<void> };
let pki: TestPki;

beforeAll(async () => {
  tmp = await tempDir();
  pki = await makeTestPki(tmp.dir);
}, 30_000);
afterAll(() => tmp.cleanup());

const x509 = async (path: string) => new X509Certificate(await readFile(path));
const DAY = 24 * 3600 * 1000;

describe('makeTestPki', () => {
  it('writes every file with the right mode and matching thumbprints and pins', async () => {
    const entries: PkiEntry[] = [pki.rootCa, pki.intermediateCa, pki.foreignCa, pki.deepRootCa, pki.server, ...Object.values(pki.clients)];
    for (const e of entries) {
      const x = await x509(e.cert);
      expect(sha256Thumbprint(x.raw)).toBe(e.sha256);
      expect(spkiPin(x)).toBe(e.spki);
      expect(x.serialNumber).toBe(e.serialHex);
      expect((await stat(e.key)).mode & 0o777).toBe(0o600);
      expect((await stat(e.cert)).mode & 0o777).toBe(0o644);
      expect(x.checkPrivateKey((await import('node:crypto')).createPrivateKey(await readFile(e.key)))).toBe(true);
    }
  });

  it('clients carry the SPIFFE identity, CN, O and OU', async () => {
    const x = await x509(pki.clients.orders.cert);
    expect(x.subjectAltName).toBe('URI:spiffe://cluster.local/ns/shop/sa/orders');
    expect(x.subject).toBe('O=shop\nOU=backend\nCN=orders');
    expect(x.keyUsage).toEqual(['1.3.6.1.5.5.7.3.2']);
    expect(pki.clients.billing.uri).toBe('spiffe://cluster.local/ns/shop/sa/billing');
  });

  it('the server cert names localhost, 127.0.0.1 and ::1', async () => {
    const x = await x509(pki.server.cert);
    expect(x.subjectAltName).toBe('DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1');
    expect(x.checkHost('localhost')).toBe('localhost');
    expect(x.checkIP('::1')).toBe('::1');
    expect(x.keyUsage).toEqual(['1.3.6.1.5.5.7.3.1']);
  });

  it('the special clients are special in exactly one way', async () => {
    const now = Date.now();
    const c = pki.clients;
    expect((await x509(c.expired.cert)).validToDate.getTime()).toBeLessThan(now);
    expect((await x509(c.notYetValid.cert)).validFromDate.getTime()).toBeGreaterThan(now);
    expect((await x509(c.serverAuthOnly.cert)).keyUsage).toEqual(['1.3.6.1.5.5.7.3.1']);
    expect(isCaCertificate((await x509(c.caTrueLeaf.cert)).raw)).toBe(true);
    expect((await x509(c.rsa1024.cert)).publicKey.asymmetricKeyDetails?.modulusLength).toBe(1024);
    expect(usesSha1Signature((await x509(c.sha1.cert)).raw)).toBe(true);
    const evil = await x509(c.evilCn.cert);
    expect(pki.evilCommonName).toBe('evil"\r\nX-Injected: 1');
    expect(evil.subject).toContain('CN=evil'); // escaped by OpenSSL, raw bytes in the DER
    expect(evil.raw.includes(Buffer.from(pki.evilCommonName))).toBe(true);
    for (const s of [c.pinned, c.unpinned]) {
      const x = await x509(s.cert);
      // Self-signed, not a CA. (X509Certificate.checkIssued(x) is false: OpenSSL wants keyCertSign.)
      expect(x.issuer).toBe(x.subject);
      expect(x.verify(x.publicKey)).toBe(true);
      expect(x.ca).toBe(false);
    }
    expect(c.pinned.spki).not.toBe(c.unpinned.spki);
    const foreign = await x509(c.foreign.cert);
    expect(foreign.checkIssued(await x509(pki.foreignCa.cert))).toBe(true);
  });

  it('chain files hold the leaf and its intermediates', async () => {
    const count = async (p?: string) => pemBlocks(await readFile(p!, 'utf8'), 'CERTIFICATE').length;
    expect(await count(pki.clients.interClient.chain)).toBe(2);
    expect(await count(pki.clients.chain4.chain)).toBe(4); // + deep root = 4 CAs above the leaf
    expect(await count(pki.clients.chain5.chain)).toBe(5); // + deep root = 5 CAs above the leaf
    expect(pki.clients.orders.chain).toBeUndefined();
    for (const e of [pki.clients.interClient, pki.clients.chain4, pki.clients.chain5]) {
      const anchor = e === pki.clients.interClient ? pki.rootCa.cert : pki.deepRootCa.cert;
      const r = openssl(['verify', '-CAfile', anchor, '-untrusted', e.chain!, e.cert]);
      expect(r.status, r.stdout + r.stderr).toBe(0);
    }
    expect(await count(pki.caBundle)).toBe(2);
  });

  it('the root CRL revokes the revoked client; the intermediate CRL is empty', async () => {
    const [rootCrl] = parseCrlFile(await readFile(pki.crls.root));
    const [interCrl] = parseCrlFile(await readFile(pki.crls.intermediate));
    expect([...rootCrl!.revokedSerials]).toEqual([pki.clients.revoked.serialHex]);
    expect(interCrl!.revokedSerials.size).toBe(0);
    expect(verifyCrlSignature(rootCrl!, (await x509(pki.rootCa.cert)).publicKey)).toBe(true);
    expect(verifyCrlSignature(interCrl!, (await x509(pki.intermediateCa.cert)).publicKey)).toBe(true);
    expect(rootCrl!.nextUpdate!.getTime()).toBeGreaterThan(Date.now() + 20 * DAY);
  });
});

describe("baseline: Node's TLS alone", () => {
  interface Verdict {
    authorized: boolean;
    error: string | null;
  }

  async function handshake(ctx: tls.SecureContextOptions, client: PkiEntry): Promise<Verdict> {
    const server = tls.createServer({
      ...ctx,
      cert: await readFile(pki.server.cert),
      key: await readFile(pki.server.key),
      requestCert: true,
      rejectUnauthorized: false,
    });
    const verdict = new Promise<Verdict>((resolve) =>
      server.once('secureConnection', (s) => {
        resolve({ authorized: s.authorized, error: s.authorized ? null : String(s.authorizationError) });
        s.end();
      }),
    );
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const socket = tls.connect({
      port: (server.address() as AddressInfo).port,
      host: '127.0.0.1',
      servername: 'localhost',
      ca: await readFile(pki.rootCa.cert),
      cert: await readFile(client.chain ?? client.cert),
      key: await readFile(client.key),
    });
    socket.on('error', () => undefined);
    try {
      return await verdict;
    } finally {
      socket.destroy();
      await new Promise((r) => server.close(r));
    }
  }

  const rootOnly = async () => ({ ca: await readFile(pki.rootCa.cert) });
  const crls = async (...paths: string[]) => ({
    ca: await readFile(pki.rootCa.cert),
    crl: await Promise.all(paths.map((p) => readFile(p))),
  });

  it('accepts the good clients, refuses expired / not yet valid / foreign / serverAuth-only', async () => {
    const c = pki.clients;
    expect(await handshake(await rootOnly(), c.orders)).toEqual({ authorized: true, error: null });
    expect(await handshake(await rootOnly(), c.interClient)).toEqual({ authorized: true, error: null });
    expect((await handshake(await rootOnly(), c.expired)).error).toBe('CERT_HAS_EXPIRED');
    expect((await handshake(await rootOnly(), c.notYetValid)).error).toBe('CERT_NOT_YET_VALID');
    expect((await handshake(await rootOnly(), c.foreign)).error).toBe('UNABLE_TO_VERIFY_LEAF_SIGNATURE');
    expect((await handshake(await rootOnly(), c.serverAuthOnly)).error).toBe('INVALID_PURPOSE');
    expect((await handshake(await rootOnly(), c.unpinned)).error).toBe('DEPTH_ZERO_SELF_SIGNED_CERT');
  });

  it('trusts a self-signed (CA:FALSE) client listed in `ca` as its own anchor', async () => {
    const ctx = { ca: [await readFile(pki.rootCa.cert), await readFile(pki.clients.pinned.cert)] };
    expect(await handshake(ctx, pki.clients.pinned)).toEqual({ authorized: true, error: null });
    expect((await handshake(ctx, pki.clients.unpinned)).authorized).toBe(false);
  });

  it('does NOT refuse a CA:TRUE leaf or a 6-deep chain: the sidecar must', async () => {
    const deep = { ca: await readFile(pki.deepRootCa.cert) };
    expect((await handshake(await rootOnly(), pki.clients.caTrueLeaf)).authorized).toBe(true);
    expect((await handshake(deep, pki.clients.chain4)).authorized).toBe(true);
    expect((await handshake(deep, pki.clients.chain5)).authorized).toBe(true);
  });

  it('accepts the CRLs and refuses the revoked client', async () => {
    expect(() => tls.createSecureContext({ crl: [pki.crls.root, pki.crls.intermediate].map((p) => p) })).toThrow();
    const ctx = await crls(pki.crls.root, pki.crls.intermediate);
    expect(() => tls.createSecureContext(ctx)).not.toThrow();
    expect((await handshake(ctx, pki.clients.revoked)).error).toBe('CERT_REVOKED');
    expect((await handshake(ctx, pki.clients.orders)).authorized).toBe(true);
    expect((await handshake(ctx, pki.clients.interClient)).authorized).toBe(true);
  });

  it("with `crl`, every CA in the chain needs a CRL (OpenSSL CRL_CHECK_ALL) — unlike SPEC §3", async () => {
    // Only the root's CRL: the intermediate has none, so its clients fail.
    const ctx = await crls(pki.crls.root);
    expect((await handshake(ctx, pki.clients.orders)).authorized).toBe(true);
    expect((await handshake(ctx, pki.clients.interClient)).error).toBe('UNABLE_TO_GET_CRL');
  });
});
