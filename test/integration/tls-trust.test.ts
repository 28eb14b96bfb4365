/**
 * SPEC §3 "Trust" and the certificate half of §4 "Protective defaults", over real handshakes on
 * loopback: every refusal is checked on the wire (the unsolicited 400 certificate_refused, never
 * the app) and in the audit log (`handshake_rejected` with the documented reason).
 */
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { createServer as tlsCreateServer, connect as tlsConnect } from 'node:tls';
import type { TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { keepPeerChain, presentedChain } from '../../src/tls/peer-chain.js';
import { agentFor, call } from '../helpers/client.js';
import type { PkiEntry } from '../helpers/pki.js';
import { startSidecar } from '../helpers/sidecar.js';
import type { RunningSidecar } from '../helpers/sidecar.js';
import { attempt, expectCertificateRefusal, hexThumbprint, presenting, refusedAttempt, serverTrust } from '../helpers/tls-probe.js';
import { startUpstream } from '../helpers/upstream.js';
import type { Upstream } from '../helpers/upstream.js';
import { baseConfig, creds } from './config.js';

const pki = inject('pki');
const c = pki.clients;
/** node-forge keys and SHA-1 signatures: let the client side even load and offer them. */
const LOW_SECLEVEL = { ciphers: 'DEFAULT:@SECLEVEL=0' };

let app: Upstream;
/** clientCAs: [root] */
let base: RunningSidecar;
/** clientCAs: [root + intermediate], crls: [root CRL] (the intermediate has no CRL configured) */
let withCrl: RunningSidecar;
/** clientCAs: [intermediate] only: a partial chain, the intermediate is the trust anchor */
let interOnly: RunningSidecar;
/** clientCAs: [deep root]; chain4/chain5 hang 4/5 CAs above their leaf */
let deep: RunningSidecar;

beforeAll(async () => {
  app = await startUpstream();
  [base, withCrl, interOnly, deep] = await Promise.all([
    startSidecar(baseConfig(pki, app.url)),
    startSidecar(baseConfig(pki, app.url, { tls: { clientCAs: [pki.caBundle], crls: [pki.crls.root] } })),
    startSidecar(baseConfig(pki, app.url, { tls: { clientCAs: [pki.intermediateCa.cert] } })),
    startSidecar(baseConfig(pki, app.url, { tls: { clientCAs: [pki.deepRootCa.cert] } })),
  ]);
});
afterAll(async () => {
  /* eslint-disable @typescript-eslint/no-unnecessary-condition -- undefined when beforeAll failed */
  await Promise.all([base, withCrl, interOnly, deep].filter((s) => s !== undefined).map((s) => s.close()));
  await app?.close();
  /* eslint-enable @typescript-eslint/no-unnecessary-condition */
});

describe('CA allowlist (clientCAs: [root])', () => {
  it('a trusted client gets through: 200 on /healthz and on /orders/1, no handshake_rejected line', async () => {
    const a = await attempt(base, presenting(pki, c.orders));
    expect(a.outcome).toEqual({ ok: true, status: 200 });
    expect(a.rejections).toEqual([]);

    const agent = agentFor(creds(pki, 'orders'));
    try {
      const res = await call(agent, base.origin, '/orders/1');
      expect(res.status).toBe(200);
      expect(res.json<{ headers: Record<string, string> }>().headers['x-client-identity']).toBe('orders');
    } finally {
      await agent.close();
    }
  });

  it('a client from a foreign CA is refused: untrusted', async () => {
    const r = await refusedAttempt(base, presenting(pki, c.foreign));
    expectCertificateRefusal(r);
    expect(r.line).toMatchObject({ reason: 'untrusted', certSha256: hexThumbprint(c.foreign) });
  });

  it('an expired client is refused: expired', async () => {
    const r = await refusedAttempt(base, presenting(pki, c.expired));
    expectCertificateRefusal(r);
    expect(r.line).toMatchObject({ reason: 'expired', certSha256: hexThumbprint(c.expired) });
  });

  it('a not-yet-valid client is refused: not_yet_valid', async () => {
    const r = await refusedAttempt(base, presenting(pki, c.notYetValid));
    expectCertificateRefusal(r);
    expect(r.line).toMatchObject({ reason: 'not_yet_valid', certSha256: hexThumbprint(c.notYetValid) });
  });

  it('a client whose EKU is serverAuth only is refused: bad_eku', async () => {
    const r = await refusedAttempt(base, presenting(pki, c.serverAuthOnly));
    expectCertificateRefusal(r);
    expect(r.line).toMatchObject({ reason: 'bad_eku', certSha256: hexThumbprint(c.serverAuthOnly) });
  });

  it('a client that presents no certificate is refused: no_cert', async () => {
    const r = await refusedAttempt(base, serverTrust(pki));
    expectCertificateRefusal(r);
    expect(r.line.reason).toBe('no_cert');
    expect(r.line).not.toHaveProperty('certSha256');
    expect(r.line).not.toHaveProperty('subject');
  });
});

describe('protective defaults on the leaf (SPEC §4)', () => {
  it('a CA:TRUE "leaf" is refused: ca_leaf', async () => {
    const r = await refusedAttempt(base, presenting(pki, c.caTrueLeaf));
    expectCertificateRefusal(r);
    expect(r.line).toMatchObject({ reason: 'ca_leaf', certSha256: hexThumbprint(c.caTrueLeaf) });
  });

  it('an RSA-1024 leaf is refused: weak_key', async () => {
    const r = await refusedAttempt(base, presenting(pki, c.rsa1024, { extra: LOW_SECLEVEL }));
    expectCertificateRefusal(r);
    expect(r.line).toMatchObject({ reason: 'weak_key', certSha256: hexThumbprint(c.rsa1024) });
  });

  it('a SHA-1 signed leaf is refused: weak_signature', async () => {
    const r = await refusedAttempt(base, presenting(pki, c.sha1, { extra: LOW_SECLEVEL }));
    expectCertificateRefusal(r);
    expect(r.line).toMatchObject({ reason: 'weak_signature', certSha256: hexThumbprint(c.sha1) });
  });
});

describe('revocation (clientCAs: root + intermediate, crls: [root CRL])', () => {
  // The shared PKI's serials are random; when `revoked`'s first serial byte is < 0x10 (about one
  // run in eight) this fails because of the serial-format bug pinned down deterministically in
  // tls-revocation.test.ts. That failure is the product's, not this test's.
  it('a revoked client is refused: revoked', async () => {
    const r = await refusedAttempt(withCrl, presenting(pki, c.revoked));
    expectCertificateRefusal(r);
    expect(r.line).toMatchObject({ reason: 'revoked', certSha256: hexThumbprint(c.revoked) });
  });

  it('a client of the same CA that is not on the CRL still gets through', async () => {
    const a = await attempt(withCrl, presenting(pki, c.orders));
    expect(a.outcome).toEqual({ ok: true, status: 200 });
    expect(a.rejections).toEqual([]);
  });

  it('a client of the intermediate (no CRL configured for it) is not refused for want of a CRL', async () => {
    const a = await attempt(withCrl, presenting(pki, c.interClient));
    expect(a.outcome).toEqual({ ok: true, status: 200 });
    expect(a.rejections).toEqual([]);
  });
});

describe('partial chain (clientCAs: [intermediate] only)', () => {
  it('accepts the intermediate\'s client presenting leaf + intermediate', async () => {
    const a = await attempt(interOnly, presenting(pki, c.interClient));
    expect(a.outcome).toEqual({ ok: true, status: 200 });
    expect(a.rejections).toEqual([]);
  });

  it('accepts the intermediate\'s client presenting its leaf alone', async () => {
    const a = await attempt(interOnly, presenting(pki, c.interClient, { leafOnly: true }));
    expect(a.outcome).toEqual({ ok: true, status: 200 });
    expect(a.rejections).toEqual([]);
  });

  it('still refuses a client of the root, which is not trusted here: untrusted', async () => {
    const r = await refusedAttempt(interOnly, presenting(pki, c.orders));
    expectCertificateRefusal(r);
    expect(r.line).toMatchObject({ reason: 'untrusted', certSha256: hexThumbprint(c.orders) });
  });
});

describe('chain depth (clientCAs: [deep root], at most 4 CAs above the leaf)', () => {
  it('accepts a leaf with exactly 4 CAs above it (chain4)', async () => {
    const a = await attempt(deep, presenting(pki, c.chain4));
    expect(a.outcome).toEqual({ ok: true, status: 200 });
    expect(a.rejections).toEqual([]);
  });

  it('refuses a leaf with 5 CAs above it (chain5): chain_too_long', async () => {
    const r = await refusedAttempt(deep, presenting(pki, c.chain5));
    expectCertificateRefusal(r);
    expect(r.line).toMatchObject({ reason: 'chain_too_long', certSha256: hexThumbprint(c.chain5) });
  });

  // A resumed TLS 1.3 session carries the leaf, not the chain: the verdict must not change.
  it('a resumed session is judged as its full handshake was: chain4 served, chain5 refused again', async () => {
    const served = await resumedTwice(deep, c.chain4);
    expect(served).toEqual({ reused: true, status: 200 });
    const mark = deep.audit.lines.length;
    const refused = await resumedTwice(deep, c.chain5);
    expect(refused).toEqual({ reused: true, status: 400 });
    const lines = deep.audit.lines.slice(mark).filter((l) => l.msg === 'handshake_rejected');
    expect(lines.map((l) => l['reason'])).toEqual(['chain_too_long', 'chain_too_long']);
  });

  it('sees the intermediates a client presents (tls/peer-chain.ts; Node would otherwise have consumed them)', async () => {
    // Node's own read of the peer certificate, before secureConnection, empties OpenSSL's peer
    // chain on Node 24 (nodejs/node#65579); the sidecar keeps the first read (as it installs at start).
    expect(keepPeerChain()).toBe(true);
    const server = tlsCreateServer({ cert: readFileSync(pki.server.cert), key: readFileSync(pki.server.key), ca: readFileSync(pki.deepRootCa.cert), requestCert: true, rejectUnauthorized: false });
    const seen = new Promise<string[]>((resolve) =>
      server.once('secureConnection', (s: TLSSocket) => {
        const leaf = s.getPeerX509Certificate();
        resolve(leaf === undefined ? [] : [leaf, ...presentedChain(leaf)].map((x) => /CN=([^\n]+)/.exec(x.subject)?.[1] ?? ''));
        s.destroy();
      }),
    );
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const client = tlsConnect({ host: '127.0.0.1', port: (server.address() as AddressInfo).port, ...presenting(pki, c.chain4) });
    client.on('error', () => undefined);
    try {
      expect(await seen).toEqual(['chain4', 'Deep CA 3', 'Deep CA 2', 'Deep CA 1']);
    } finally {
      client.destroy();
      await new Promise((r) => server.close(r));
    }
  });
});

/**
 * Connect over TLS 1.3, take the session ticket, then connect again with it; returns whether
 * the second connection resumed and the status it got.
 */
async function resumedTwice(sc: RunningSidecar, entry: PkiEntry): Promise<{ reused: boolean; status: number | null }> {
  const once = (session?: Buffer): Promise<{ session: Buffer | null; reused: boolean; status: number | null }> =>
    new Promise((resolve) => {
      let text = '';
      let ticket: Buffer | null = null;
      let reused = false;
      const socket = tlsConnect(
        { host: '127.0.0.1', port: sc.port, ...presenting(pki, entry), minVersion: 'TLSv1.3', ALPNProtocols: ['http/1.1'], ...(session !== undefined ? { session } : {}) },
        () => {
          reused = socket.isSessionReused();
          socket.write('GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n');
        },
      );
      socket.on('session', (s: Buffer) => (ticket ??= s));
      socket.on('data', (b: Buffer) => (text += b.toString('latin1')));
      socket.on('error', () => undefined);
      socket.on('close', () => resolve({ session: ticket, reused, status: text.startsWith('HTTP/1.1 ') ? Number(text.slice(9, 12)) : null }));
    });
  const first = await once();
  if (first.session === null) throw new Error('no session ticket from the first handshake');
  const second = await once(first.session);
  return { reused: second.reused, status: second.status };
}
