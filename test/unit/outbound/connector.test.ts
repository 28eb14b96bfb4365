/**
 * The outbound connector on real TLS: a destination's server is judged (chain to the trust CAs,
 * validity, EKU serverAuth, `expect`) before the HTTP client may write, and a refused server
 * never receives a byte of the request.
 */
import { readFile } from 'node:fs/promises';
import tls from 'node:tls';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { Client, buildConnector } from 'undici';
import { IdentityMatcher } from '../../../src/identity/match.js';
import type { IdentityMatch } from '../../../src/identity/match.js';
import type { PeerInfo } from '../../../src/identity/peer.js';
import { ServerRefused, outboundConnector } from '../../../src/outbound/connector.js';
import type { PeerSlot } from '../../../src/outbound/connector.js';
import type { OutboundHandshakeReason } from '../../../src/reasons.js';
import type { PkiEntry } from '../../helpers/pki.js';

const pki = inject('pki');
const spiffe = (n: string): string => `spiffe://cluster.local/ns/shop/sa/${n}`;

interface Remote {
  readonly port: number;
  /** Bytes of application data the server received, over all connections. */
  readonly received: () => number;
  close(): Promise<void>;
}

/** A TLS server that answers every HTTP/1.1 request with 200 "hi" and counts what it reads. */
async function remote(entry: PkiEntry): Promise<Remote> {
  let received = 0;
  const server = tls.createServer({ cert: await readFile(entry.chain ?? entry.cert), key: await readFile(entry.key), ALPNProtocols: ['http/1.1'] }, (socket) => {
    socket.on('data', (chunk: Buffer) => {
      received += chunk.length;
      if (chunk.includes('\r\n\r\n')) socket.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi');
    });
    socket.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    received: () => received,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
      }),
  };
}

const servers: Remote[] = [];
const clients: Client[] = [];
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.destroy()));
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

interface Outcome {
  readonly status: number | null;
  readonly error: unknown;
  readonly accepted: PeerInfo[];
  readonly rejected: { reason: OutboundHandshakeReason; peer: PeerInfo | null }[];
  readonly slot: PeerSlot;
  readonly received: number;
}

async function callThrough(server: PkiEntry, expectRule: IdentityMatch, trust: readonly string[] = [pki.rootCa.cert]): Promise<Outcome> {
  const r = await remote(server);
  servers.push(r);
  const accepted: PeerInfo[] = [];
  const rejected: { reason: OutboundHandshakeReason; peer: PeerInfo | null }[] = [];
  const slot: PeerSlot = { peer: null };
  const connect = outboundConnector(
    {
      tls: {
        cert: await readFile(pki.workloads.orders.cert, 'utf8'),
        key: await readFile(pki.workloads.orders.key, 'utf8'),
        ca: await Promise.all(trust.map((f) => readFile(f, 'utf8'))),
        minVersion: 'TLSv1.2',
      },
      serverName: 'billing.shop.svc',
      expect: new IdentityMatcher([{ match: expectRule }]),
      connectTimeoutMs: 2000,
      allowH2: false,
      now: Date.now,
    },
    { onAccepted: (p) => accepted.push(p), onRejected: (reason, peer) => rejected.push({ reason, peer }) },
    slot,
    buildConnector,
  );
  const client = new Client(`https://127.0.0.1:${r.port}`, { connect });
  clients.push(client);
  let status: number | null = null;
  let error: unknown = null;
  try {
    const res = await client.request({ path: '/secret', method: 'POST', body: 'the request body' });
    status = res.statusCode;
    await res.body.text();
  } catch (err) {
    error = err;
  }
  return { status, error, accepted, rejected, slot, received: r.received() };
}

describe('outbound connector', () => {
  it('sends the request to a server whose chain verifies and whose certificate matches expect', async () => {
    const o = await callThrough(pki.workloads.billing, { uri: spiffe('billing') });
    expect(o.error).toBeNull();
    expect(o.status).toBe(200);
    expect(o.accepted).toHaveLength(1);
    expect(o.slot.peer?.uri).toBe(spiffe('billing'));
    expect(o.slot.peer?.sha256Hex).toBe(pki.workloads.billing.sha256.replaceAll(':', '').toLowerCase());
  });

  const refusals: [string, () => PkiEntry, OutboundHandshakeReason][] = [
    ['another SPIFFE ID', () => pki.workloads.payments, 'identity_mismatch'],
    ['another CA', () => pki.workloads.billingForeign, 'untrusted'],
    ['an expired certificate', () => pki.workloads.billingExpired, 'expired'],
    ['a certificate without serverAuth', () => pki.workloads.billingClientOnly, 'bad_eku'],
  ];
  it.each(refusals)('refuses a server with %s before a byte of the request is sent', async (_name, server, reason) => {
    const o = await callThrough(server(), { uri: spiffe('billing') });
    expect(o.status).toBeNull();
    expect(o.error).toBeInstanceOf(ServerRefused);
    expect((o.error as ServerRefused).reason).toBe(reason);
    expect(o.rejected.map((r) => r.reason)).toContain(reason);
    expect(o.rejected[0]?.peer?.sha256Hex).toBe(server().sha256.replaceAll(':', '').toLowerCase());
    expect(o.accepted).toHaveLength(0);
    expect(o.received).toBe(0);
  });
});
