/**
 * Outbound life cycle (SPEC §7): a rotated workload certificate is presented on new connections
 * at once while pooled ones finish their requests; a reload that changes `expect` retires the
 * pooled connections before the next request uses them; what a reload cannot apply (listeners
 * are bound at start) is logged as a warning and left as it was.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { Pool, request } from 'undici';
import { stringify } from 'yaml';
import { issueLeaf, loadCa } from '../../src/pki/devca.js';
import { silentLog } from '../../src/log.js';
import { Reloader } from '../../src/runtime/reload.js';
import { memoryLog, startSidecar, startSidecarFile, withEphemeralPorts } from '../helpers/sidecar.js';
import type { ConfigObject, RunningSidecar } from '../helpers/sidecar.js';
import { startUpstream } from '../helpers/upstream.js';
import type { Upstream } from '../helpers/upstream.js';
import { until } from '../helpers/wait.js';

const pki = inject('pki');
const spiffe = (n: string): string => `spiffe://cluster.local/ns/shop/sa/${n}`;

let dir = '';
let root: ReturnType<typeof loadCa>;
let appA: Upstream;
let appB: Upstream;
let b: RunningSidecar;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'mtls-sidecar-outbound-reload-'));
  root = loadCa(await readFile(pki.rootCa.cert, 'utf8'), await readFile(pki.rootCa.key, 'utf8'));
  appA = await startUpstream();
  appB = await startUpstream();
  b = await startSidecar({
    version: 1,
    listen: { address: '127.0.0.1', port: 0, http2: true },
    tls: { cert: pki.workloads.billing.cert, key: pki.workloads.billing.key, clientCAs: [pki.rootCa.cert] },
    identities: [{ name: 'orders', match: { uri: spiffe('orders') }, scopes: ['read'] }],
    routes: [{ name: 'all', prefix: '/', scopes: ['read'] }],
    upstream: { url: appB.url },
  });
});
afterAll(async () => {
  await b.close();
  await appA.close();
  await appB.close();
  await rm(dir, { recursive: true, force: true });
});

/** A fresh orders workload certificate (new key, new thumbprint) written where the config points. */
async function rotate(): Promise<string> {
  const leaf = await issueLeaf(root, { commonName: 'orders', uris: [spiffe('orders')], dnsNames: ['orders'], eku: ['serverAuth', 'clientAuth'], days: 1 });
  await writeFile(path.join(dir, 'orders.key'), leaf.keyPem, { mode: 0o600 });
  await writeFile(path.join(dir, 'orders.crt'), leaf.certPem);
  return leaf.sha256.replaceAll(':', '').toLowerCase();
}

function config(http2: boolean, expectUri: string): ConfigObject {
  return withEphemeralPorts({
    version: 1,
    tls: { cert: path.join(dir, 'orders.crt'), key: path.join(dir, 'orders.key'), clientCAs: [pki.rootCa.cert] },
    routes: [{ name: 'health', path: '/healthz', public: true }],
    upstream: { url: appA.url },
    outbound: {
      destinations: [{ name: 'billing', listen: { port: 0 }, target: `127.0.0.1:${b.port}`, serverName: 'localhost', expect: { uri: expectUri }, http2 }],
    },
  });
}

describe.each([false, true])('outbound reloads, http2 %s', (http2) => {
  it('presents each rotated certificate on new connections with zero failed requests under load', async () => {
    let thumb = await rotate();
    const file = path.join(dir, `sidecar-${String(http2)}.yaml`);
    await writeFile(file, stringify(config(http2, spiffe('billing'))));
    const a = await startSidecarFile(file);
    const reloader = new Reloader(a.sidecar, file, silentLog());
    const client = new Pool(`http://127.0.0.1:${a.outboundPort('billing')}`, { connections: 8 });
    let failures = 0;
    const why: string[] = [];
    let done = 0;
    let stop = false;
    // Bounded load: 8 callers until the rotations are over (and at most 20 000 requests).
    const callers = Array.from({ length: 8 }, async () => {
      while (!stop && done < 20_000) {
        try {
          const r = await client.request({ path: '/load', method: 'GET' });
          await r.body.text();
          if (r.statusCode !== 200) {
            failures++;
            why.push(`status ${r.statusCode}`);
          }
        } catch (err) {
          failures++;
          why.push(String(err));
        }
        done++;
      }
    });
    try {
      for (let i = 0; i < 20; i++) {
        thumb = await rotate();
        expect(await reloader.reload('rotation')).toBe('applied');
        // B sees the new certificate: its audit names the thumbprint once a new connection carries a request.
        await until(() => b.audit.requests().some((l) => l['certSha256'] === thumb), 5000);
      }
    } finally {
      stop = true;
      await Promise.all(callers);
      await client.close();
      reloader.close();
      await a.close();
    }
    expect(failures, `${why.slice(0, 3).join('; ')} ${a.audit.raw.filter((l) => !l.includes('"status":200')).slice(0, 3).join('\n')}`).toBe(0);
    expect(done).toBeGreaterThan(20);
    // 20 rotations (a key and a reload each) under load take 10-16 s on a busy 2-core machine.
  }, 60_000);

  it('retires pooled connections when expect changes: the next request is refused', async () => {
    await rotate();
    const file = path.join(dir, `sidecar-expect-${String(http2)}.yaml`);
    await writeFile(file, stringify(config(http2, spiffe('billing'))));
    const a = await startSidecarFile(file);
    try {
      const port = a.outboundPort('billing');
      const ok = await fetch(`http://127.0.0.1:${port}/one`);
      expect(ok.status).toBe(200);
      await ok.text();
      const before = appB.seen.length;
      await writeFile(file, stringify(config(http2, spiffe('someone-else'))));
      expect(await new Reloader(a.sidecar, file, silentLog()).reload('test')).toBe('applied');
      const refused = await fetch(`http://127.0.0.1:${port}/two`, { headers: { 'x-request-id': `expect-${String(http2)}` } });
      expect(refused.status).toBe(502);
      await refused.text();
      expect(appB.seen.length).toBe(before);
      const line = await a.audit.waitFor((l) => l['requestId'] === `expect-${String(http2)}`);
      expect(line).toMatchObject({ direction: 'outbound', reason: 'identity_mismatch', status: 502 });
    } finally {
      await a.close();
    }
  });
});

describe('outbound reload warnings', () => {
  const dest = (name: string, over: ConfigObject = {}): ConfigObject => ({ name, target: `127.0.0.1:${b.port}`, serverName: 'localhost', expect: { uri: spiffe('billing') }, ...over });
  function withOutbound(outbound: ConfigObject | null): ConfigObject {
    return withEphemeralPorts({
      version: 1,
      tls: { cert: path.join(dir, 'orders.crt'), key: path.join(dir, 'orders.key'), clientCAs: [pki.rootCa.cert] },
      routes: [{ name: 'health', path: '/healthz', public: true }],
      upstream: { url: appA.url },
      ...(outbound !== null ? { outbound } : {}),
    });
  }
  async function status(port: number, host: string): Promise<number> {
    const res = await request(`http://127.0.0.1:${port}/w`, { headers: { host } });
    await res.body.text();
    return res.statusCode;
  }

  it('logs each change a reload cannot apply and keeps the listeners as they were; a destination added without a listener is served at once', async () => {
    await rotate();
    const file = path.join(dir, 'sidecar-warnings.yaml');
    await writeFile(
      file,
      stringify(withOutbound({ proxy: { port: 0 }, destinations: [dest('billing', { listen: { port: 0 } }), dest('ledger', { listen: { port: 0 } }), dest('pay', { hosts: ['pay'] })] })),
    );
    const a = await startSidecarFile(file);
    const { log, lines } = memoryLog('info');
    const reloader = new Reloader(a.sidecar, file, log);
    try {
      const billing = a.outboundPort('billing');
      const proxy = a.outboundProxyPort();
      // Ports no listener binds: a restart would, a reload does not.
      await writeFile(
        file,
        stringify(
          withOutbound({
            proxy: { port: 65001 },
            destinations: [
              dest('billing', { listen: { port: 65002 } }),
              dest('pay', { hosts: ['pay'] }),
              dest('invoices', { listen: { port: 65003 } }),
              dest('receipts', { hosts: ['receipts'] }),
            ],
          }),
        ),
      );
      expect(await reloader.reload('test')).toBe('applied');
      const reloaded = await lines.waitFor((l) => l.msg === 'configuration reloaded');
      expect(reloaded['warnings']).toEqual([
        'outbound destination "billing" listener changed: restart to apply',
        'outbound destination "invoices" added: its listener opens at a restart',
        'outbound destination "ledger" removed: its listener stays until a restart',
        'outbound.proxy changed: restart to apply',
      ]);
      // The listeners are where they were: billing's still serves, the proxy listener serves
      // the destination added without a listener of its own.
      expect(await status(billing, 'billing')).toBe(200);
      expect(await status(proxy, 'receipts')).toBe(200);
      expect(await status(proxy, 'pay')).toBe(200);

      // The whole section removed: warned, and the outbound side stays as it was.
      await writeFile(file, stringify(withOutbound(null)));
      expect(await reloader.reload('test')).toBe('applied');
      const removed = await lines.waitFor((l) => l.msg === 'configuration reloaded' && l !== reloaded);
      expect(removed['warnings']).toEqual(['outbound removed: restart to apply']);
      expect(await status(billing, 'billing')).toBe(200);
    } finally {
      reloader.close();
      await a.close();
    }
  });
});
