/**
 * SPEC §2 `certs`: a workload certificate "serves both directions". Certificates straight from
 * `certs` (ECDSA P-256, the default): a sidecar serving with one workload's certificate accepts
 * another workload presenting its own, and the reverse; the client checks the server's name
 * against the workload's cluster DNS name. Real TLS on loopback.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Agent } from 'undici';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { certsCommand } from '../../src/cli/certs.js';
import { call, tlsOptions } from '../helpers/client.js';
import { startSidecar } from '../helpers/sidecar.js';
import type { RunningSidecar } from '../helpers/sidecar.js';
import { startUpstream } from '../helpers/upstream.js';
import type { Upstream } from '../helpers/upstream.js';
import { baseConfig } from './config.js';

const pki = inject('pki');

let dir = '';
let app: Upstream;
/** Serves with orders.crt; the identities of baseConfig (orders, billing in namespace shop). */
let asOrders: RunningSidecar;
/** Serves with billing.crt. */
let asBilling: RunningSidecar;

const file = (name: string): string => path.join(dir, name);

function servingAs(workload: string): Promise<RunningSidecar> {
  return startSidecar(
    baseConfig(pki, app.url, {
      tls: { cert: file(`${workload}.crt`), key: file(`${workload}.key`), clientCAs: [file('ca.crt')], crls: [file('crl.pem')] },
    }),
  );
}

/** `caller` presents its workload cert and checks that the server is `serverName` (a DNS SAN). */
function agentOf(caller: string, serverName: string): Agent {
  return new Agent({
    connect: { ...tlsOptions({ cert: file(`${caller}.crt`), key: file(`${caller}.key`), ca: file('ca.crt') }), servername: serverName },
  });
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'mtls-sidecar-workload-'));
  const out: string[] = [];
  const code = await certsCommand(['--out', dir, '--namespace', 'shop', '--services', 'orders,billing'], {
    stdout: (s) => out.push(s),
    stderr: (s) => out.push(s),
  });
  expect(code, out.join('\n')).toBe(0);
  app = await startUpstream();
  [asOrders, asBilling] = await Promise.all([servingAs('orders'), servingAs('billing')]);
});
afterAll(async () => {
  /* eslint-disable @typescript-eslint/no-unnecessary-condition -- undefined when beforeAll failed */
  await Promise.all([asOrders, asBilling].filter((s) => s !== undefined).map((s) => s.close()));
  await app?.close();
  /* eslint-enable @typescript-eslint/no-unnecessary-condition */
  if (dir !== '') await rm(dir, { recursive: true, force: true });
});

describe('a workload certificate from `certs` serves both directions', () => {
  const cases = [
    { server: () => asOrders, serverName: 'orders.shop.svc', caller: 'billing' },
    { server: () => asBilling, serverName: 'billing.shop.svc.cluster.local', caller: 'orders' },
    { server: () => asOrders, serverName: 'localhost', caller: 'billing' },
  ];
  for (const { server, serverName, caller } of cases) {
    it(`${caller} calls the sidecar serving as ${serverName}: both certificates accepted, ${caller} identified`, async () => {
      const sc = server();
      const agent = agentOf(caller, serverName);
      try {
        const res = await call(agent, `https://127.0.0.1:${sc.port}`, '/orders/1');
        expect(res.status, res.text).toBe(200);
        const line = await sc.audit.waitFor((l) => l.msg === 'request' && l['requestId'] === res.headers['x-request-id']);
        expect(line).toMatchObject({ identity: caller, uri: `spiffe://cluster.local/ns/shop/sa/${caller}`, decision: 'allow' });
        expect(sc.audit.handshakes()).toEqual([]);
      } finally {
        await agent.close();
      }
    });
  }
});
