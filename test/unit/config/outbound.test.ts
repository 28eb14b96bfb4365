/** The `outbound` section: bad input is a config error with its YAML path and line:col (SPEC §3). */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { loadAndCompile } from '../../../src/config/index.js';
import { parseConfigText } from '../../../src/config/load.js';

const pki = inject('pki');

const BASE = `version: 1
tls:
  cert: server.crt
  key: server.key
  clientCAs: [ca.crt]
`;

function issues(text: string): Array<{ path: string; line: number; col: number; message: string }> {
  const r = parseConfigText(text);
  if (r.ok) return [];
  return r.issues.map((i) => ({ path: i.path, line: i.line, col: i.col, message: i.message }));
}

const DEST = `outbound:
  destinations:
    - name: billing
      listen: { port: 15001 }
      target: "billing.pay.svc:8443"
      expect: { uri: "spiffe://cluster.local/ns/pay/sa/billing" }
`;

describe('outbound schema', () => {
  it('accepts a destination and fills its defaults', () => {
    const r = parseConfigText(BASE + DEST);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.raw.outbound?.destinations[0]).toMatchObject({
      listen: { address: '127.0.0.1', port: 15001 },
      hosts: [],
      http2: false,
      connectTimeout: 2000,
      timeout: 30_000,
    });
    expect(r.raw.outbound?.destinations[0]?.maxConnections).toBeUndefined();
  });

  it('refuses a destination without expect, at the destination', () => {
    const found = issues(BASE + DEST.replace(/ {6}expect: .*\n/, ''));
    expect(found).toHaveLength(1);
    expect(found[0]).toMatchObject({ path: 'outbound.destinations[0].expect', line: 8 });
  });

  it('refuses an empty expect', () => {
    const found = issues(BASE + DEST.replace(/expect: .*\n/, 'expect: {}\n'));
    expect(found[0]).toMatchObject({ path: 'outbound.destinations[0].expect', line: 11, col: 15 });
  });

  it('refuses two listeners on one port, naming the second', () => {
    const text = `${BASE + DEST}    - name: ledger
      listen: { port: 15001 }
      target: "ledger:8443"
      expect: { uri: "spiffe://cluster.local/ns/pay/sa/ledger" }
`;
    expect(issues(text)).toEqual([{ path: 'outbound.destinations[1].listen.port', line: 13, col: 23, message: 'port 15001 is already used by outbound destination "billing"' }]);
  });

  it('refuses an outbound listener on the inbound port', () => {
    const found = issues(`${BASE}listen: { port: 15001 }\n${DEST}`);
    expect(found).toEqual([expect.objectContaining({ path: 'outbound.destinations[0].listen.port', message: 'port 15001 is already used by listen' })]);
  });

  it('refuses a host claimed by two destinations', () => {
    const text = `${BASE}outbound:
  proxy: { port: 15000 }
  destinations:
    - name: billing
      target: "billing:8443"
      expect: { uri: "spiffe://x/billing" }
      hosts: [billing, Billing.pay.svc]
    - name: ledger
      target: "ledger:8443"
      expect: { uri: "spiffe://x/ledger" }
      hosts: [ledger, billing.PAY.svc]
`;
    expect(issues(text)).toEqual([{ path: 'outbound.destinations[1].hosts[1]', line: 16, col: 23, message: '"billing.PAY.svc" is already claimed by destination "billing"' }]);
  });

  it('refuses hosts without a proxy listener, and a destination nobody can reach', () => {
    const text = `${BASE}outbound:
  destinations:
    - name: billing
      target: "billing:8443"
      expect: { uri: "spiffe://x/billing" }
      hosts: [billing]
    - name: ledger
      target: "ledger:8443"
      expect: { uri: "spiffe://x/ledger" }
`;
    const found = issues(text);
    expect(found.map((i) => i.path).sort()).toEqual(['outbound.destinations[0].hosts', 'outbound.destinations[1]']);
    expect(found.find((i) => i.path === 'outbound.destinations[1]')?.message).toMatch(/neither by a listen port nor by hosts/);
  });

  it('refuses a target without a port, and outbound.cert without outbound.key', () => {
    const text = `${BASE}outbound:
  cert: w.crt
  destinations:
    - name: billing
      listen: { port: 15001 }
      target: "billing"
      expect: { uri: "spiffe://x/billing" }
`;
    const found = issues(text);
    expect(found.map((i) => i.path).sort()).toEqual(['outbound.destinations[0].target', 'outbound.key']);
  });
});

describe('outbound files', () => {
  let dir = '';
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'mtls-sidecar-outbound-cfg-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function compile(text: string): Promise<{ ok: boolean; lines: readonly string[] }> {
    const file = path.join(dir, 'sidecar.yaml');
    await writeFile(file, text);
    const r = await loadAndCompile(file, 1);
    return r.ok ? { ok: true, lines: [] } : { ok: false, lines: r.lines };
  }

  const head = (cert: string, key: string): string => `version: 1
tls:
  cert: ${cert}
  key: ${key}
  clientCAs: [${pki.rootCa.cert}]
`;
  const dest = `  destinations:
    - name: billing
      listen: { port: 0 }
      target: "127.0.0.1:8443"
      expect: { uri: "spiffe://cluster.local/ns/shop/sa/billing" }
`;

  it('compiles a workload certificate presented both ways', async () => {
    const r = await compile(`${head(pki.workloads.orders.cert, pki.workloads.orders.key)}outbound:\n${dest}`);
    expect(r).toEqual({ ok: true, lines: [] });
  });

  it('refuses a default tls.cert that lacks clientAuth (a server-only certificate)', async () => {
    const r = await compile(`${head(pki.server.cert, pki.server.key)}outbound:\n${dest}`);
    expect(r.ok).toBe(false);
    expect(r.lines.join('\n')).toMatch(/:7:3: outbound: .*lacks the clientAuth extended key usage/);
  });

  it('refuses an outbound.cert that lacks clientAuth, at outbound.cert', async () => {
    const r = await compile(`${head(pki.server.cert, pki.server.key)}outbound:\n  cert: ${pki.clients.serverAuthOnly.cert}\n  key: ${pki.clients.serverAuthOnly.key}\n${dest}`);
    expect(r.ok).toBe(false);
    expect(r.lines.join('\n')).toMatch(/:7:9: outbound\.cert: .*lacks the clientAuth/);
  });

  it('refuses an outbound.key that does not match outbound.cert', async () => {
    const r = await compile(`${head(pki.server.cert, pki.server.key)}outbound:\n  cert: ${pki.workloads.orders.cert}\n  key: ${pki.workloads.billing.key}\n${dest}`);
    expect(r.ok).toBe(false);
    expect(r.lines.join('\n')).toMatch(/:8:8: outbound\.key: private key does not match the certificate in outbound\.cert/);
  });

  it('refuses a trust file that holds no CA', async () => {
    const r = await compile(`${head(pki.workloads.orders.cert, pki.workloads.orders.key)}outbound:\n  trust: [${pki.workloads.billing.cert}]\n${dest}`);
    expect(r.ok).toBe(false);
    expect(r.lines.join('\n')).toMatch(/outbound\.trust\[0\]: .*is not a CA certificate/);
  });
});
