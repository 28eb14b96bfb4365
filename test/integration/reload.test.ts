/**
 * Live rotation and reload (SPEC §7) on real sockets: a kubelet-style `..data`
 * symlink swap, trust withdrawn on open connections (HTTP/1.1 and HTTP/2) and resumed
 * sessions, a broken config refused while the old one keeps serving.
 */
import { mkdir, mkdtemp, readFile, rename, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { X509Certificate } from 'node:crypto';
import http2 from 'node:http2';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { Agent, request } from 'undici';
import { stringify } from 'yaml';
import { createCa, issueLeaf } from '../../src/pki/devca.js';
import type { IssuedCert } from '../../src/pki/devca.js';
import { silentLog } from '../../src/log.js';
import { Reloader } from '../../src/runtime/reload.js';
import type { AuditSink } from '../helpers/audit-sink.js';
import { parseProm, value } from '../helpers/prom.js';
import { memoryLog, startSidecar, startSidecarFile, withEphemeralPorts } from '../helpers/sidecar.js';
import type { RunningSidecar } from '../helpers/sidecar.js';
import { startUpstream } from '../helpers/upstream.js';
import type { Upstream } from '../helpers/upstream.js';
import { attempt, presenting, refusedAttempt } from '../helpers/tls-probe.js';
import { until } from '../helpers/wait.js';
import { baseConfig } from './config.js';

const URI = 'spiffe://cluster.local/ns/shop/sa/orders';
let root = '';
let caA: IssuedCert;
let caB: IssuedCert;
let clientA: IssuedCert;
let clientB: IssuedCert;
let app: Upstream;

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'mtls-sidecar-reload-'));
  [caA, caB] = await Promise.all([createCa({ commonName: 'Reload CA A', days: 30 }), createCa({ commonName: 'Reload CA B', days: 30 })]);
  [clientA, clientB] = await Promise.all([
    issueLeaf(caA, { commonName: 'orders', uris: [URI], eku: ['clientAuth'], days: 30 }),
    issueLeaf(caB, { commonName: 'orders', uris: [URI], eku: ['clientAuth'], days: 30 }),
  ]);
  app = await startUpstream();
});
afterAll(async () => {
  await app.close();
  await rm(root, { recursive: true, force: true });
});

/** A Kubernetes secret volume: files are symlinks into `..data`, which is swapped atomically. */
class SecretVolume {
  #n = 0;
  constructor(readonly dir: string) {}
  async write(files: Record<string, string>): Promise<void> {
    const gen = path.join(this.dir, `..gen_${++this.#n}`);
    await mkdir(gen, { recursive: true });
    for (const [name, content] of Object.entries(files)) await writeFile(path.join(gen, name), content, { mode: 0o600 });
    const tmp = path.join(this.dir, '..data_tmp');
    await symlink(path.basename(gen), tmp);
    await rename(tmp, path.join(this.dir, '..data'));
    for (const name of Object.keys(files)) {
      await symlink(path.join('..data', name), path.join(this.dir, name)).catch(() => undefined);
    }
  }
}

interface Setup {
  dir: string;
  volume: SecretVolume;
  configFile: string;
  sc: RunningSidecar;
  reloader: Reloader;
  /** The reloader's operational log, debug lines included. */
  log: AuditSink;
  writeConfig(cfg: Record<string, unknown>): Promise<void>;
  close(): Promise<void>;
}

function config(volumeDir: string, clientCAs: string[], scopes: string[] = ['orders:read']): Record<string, unknown> {
  return withEphemeralPorts({
    version: 1,
    tls: { cert: `${volumeDir}/server.crt`, key: `${volumeDir}/server.key`, clientCAs: clientCAs.map((c) => `${volumeDir}/${c}`) },
    identities: [{ name: 'orders', match: { uri: URI }, scopes }],
    routes: [
      { name: 'health', path: '/healthz', public: true },
      { name: 'read', prefix: '/orders', methods: ['GET'], scopes: ['orders:read'] },
    ],
    upstream: { url: app.url },
  });
}

async function setup(name: string, clientCAs: string[], debounceMs = 100): Promise<Setup> {
  const dir = path.join(root, name);
  const volume = new SecretVolume(path.join(dir, 'secret'));
  await mkdir(volume.dir, { recursive: true });
  const server = await issueLeaf(caA, { commonName: 'localhost', dnsNames: ['localhost'], ips: ['127.0.0.1'], eku: ['serverAuth'], days: 30 });
  await volume.write({ 'server.crt': server.certPem, 'server.key': server.keyPem, 'ca-a.crt': caA.certPem, 'ca-b.crt': caB.certPem });
  const configFile = path.join(dir, 'sidecar.yaml');
  const current = config(volume.dir, clientCAs);
  await writeFile(configFile, stringify(current));
  const sc = await startSidecarFile(configFile);
  // Keep the ports the sidecar got: a rewritten config must not ask for new ones.
  const pin = (cfg: Record<string, unknown>): Record<string, unknown> => ({ ...cfg, listen: { address: '127.0.0.1', port: 0 }, admin: { address: '127.0.0.1', port: 0 } });
  const { log, lines } = memoryLog();
  const reloader = new Reloader(sc.sidecar, configFile, log, { debounceMs });
  reloader.start();
  return {
    dir,
    volume,
    configFile,
    sc,
    reloader,
    log: lines,
    async writeConfig(cfg) {
      await writeFile(configFile, stringify(pin(cfg)));
    },
    async close() {
      reloader.close();
      await sc.close();
    },
  };
}

function agent(client: IssuedCert, connections = 1): Agent {
  return new Agent({ connections, connect: { ca: caA.certPem, cert: client.certPem, key: client.keyPem, servername: 'localhost' } });
}

/** One GET on an open HTTP/2 session: its status once the response has ended. */
function h2Get(session: http2.ClientHttp2Session, p: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = session.request({ ':path': p, ':method': 'GET' });
    let status = 0;
    req.on('response', (h) => (status = Number(h[':status'])));
    req.on('end', () => resolve(status));
    req.on('error', reject);
    req.resume();
    req.end();
  });
}

/** The server certificate a brand-new connection sees. */
function servedThumbprint(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ca: caA.certPem, cert: clientA.certPem, key: clientA.keyPem }, () => {
      const fp = s.getPeerX509Certificate()?.fingerprint256 ?? '';
      s.destroy();
      resolve(fp);
    });
    s.on('error', reject);
  });
}

describe('certificate rotation by symlink swap', () => {
  it('rotates the server certificate 20 times under keep-alive load without a failed request', async () => {
    const s = await setup('rotate', ['ca-a.crt']);
    const load = agent(clientA, 8);
    let ok = 0;
    let failed = 0;
    let stop = false;
    const worker = async (): Promise<void> => {
      while (!stop) {
        try {
          const res = await request(`${s.sc.origin}/orders/1`, { dispatcher: load });
          await res.body.dump();
          if (res.statusCode === 200) ok++;
          else failed++;
        } catch {
          failed++;
        }
      }
    };
    const workers = Array.from({ length: 8 }, worker);
    const delays: number[] = [];
    try {
      for (let i = 0; i < 20; i++) {
        const next = await issueLeaf(caA, { commonName: 'localhost', dnsNames: ['localhost'], ips: ['127.0.0.1'], eku: ['serverAuth'], days: 30 });
        await s.volume.write({ 'server.crt': next.certPem, 'server.key': next.keyPem, 'ca-a.crt': caA.certPem, 'ca-b.crt': caB.certPem });
        const written = Date.now();
        expect(await until(async () => (await servedThumbprint(s.sc.port)) === next.sha256, 2000, 25)).toBe(true);
        delays.push(Date.now() - written);
      }
    } finally {
      stop = true;
      await Promise.all(workers);
      await load.close();
      await s.close();
    }
    expect(failed).toBe(0);
    expect(ok).toBeGreaterThan(100);
    expect(Math.max(...delays)).toBeLessThanOrEqual(2000);
  }, 60_000);
});

describe('trust withdrawal', () => {
  it('refuses the next request on an open connection once its CA is removed, and a resumed session', async () => {
    const s = await setup('withdraw', ['ca-a.crt', 'ca-b.crt']);
    const b = agent(clientB);
    // A TLS session ticket from before the change, for a resumption attempt after it.
    const session = await new Promise<Buffer>((resolve, reject) => {
      const sock = tls.connect(
        { host: '127.0.0.1', port: s.sc.port, servername: 'localhost', ca: caA.certPem, cert: clientB.certPem, key: clientB.keyPem },
        () => sock.write('GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n'),
      );
      sock.once('session', (sess: Buffer) => resolve(sess));
      sock.on('error', reject);
      sock.resume();
    });
    try {
      expect((await request(`${s.sc.origin}/orders/1`, { dispatcher: b })).statusCode).toBe(200);
      await s.writeConfig(config(s.volume.dir, ['ca-a.crt']));
      expect(await s.reloader.reload('test')).toBe('applied');
      // Same keep-alive connection (connections: 1): judged against the new trust.
      const after = await request(`${s.sc.origin}/orders/1`, { dispatcher: b }).catch(() => null);
      if (after !== null) {
        expect(after.statusCode).toBe(403);
        await after.body.dump();
      }
      await s.sc.audit.waitFor((l) => l.msg === 'request' && l.reason === 'trust_withdrawn');
      const resumed = await new Promise<{ reused: boolean; served: boolean; refused: boolean }>((resolve) => {
        let data = '';
        const sock = tls.connect(
          { host: '127.0.0.1', port: s.sc.port, servername: 'localhost', ca: caA.certPem, cert: clientB.certPem, key: clientB.keyPem, session },
          () => sock.write('GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n'),
        );
        sock.on('data', (c: Buffer) => (data += c.toString()));
        const done = (): void => resolve({ reused: sock.isSessionReused(), served: data.startsWith('HTTP/1.1 200'), refused: data.startsWith('HTTP/1.1 400') && data.includes('{"error":"certificate_refused"') });
        sock.on('close', done);
        sock.on('error', () => undefined);
      });
      expect(resumed).toMatchObject({ served: false, refused: true });
      await s.sc.audit.waitFor((l) => l.msg === 'handshake_rejected' && l.reason === 'untrusted');
    } finally {
      await b.close();
      await s.close();
    }
  });

  it.each(['own', 'node'] as const)('an open HTTP/2 session (%s engine): the next request is refused, then GOAWAY ends the session', async (engine) => {
    const before = process.env['MTLS_SIDECAR_HTTP2'];
    process.env['MTLS_SIDECAR_HTTP2'] = engine;
    const s = await setup(`withdraw-h2-${engine}`, ['ca-a.crt', 'ca-b.crt']).finally(() => {
      if (before === undefined) delete process.env['MTLS_SIDECAR_HTTP2'];
      else process.env['MTLS_SIDECAR_HTTP2'] = before;
    });
    const session = http2.connect(s.sc.origin, { ca: caA.certPem, cert: clientB.certPem, key: clientB.keyPem, servername: 'localhost' });
    session.on('error', () => undefined);
    let goaway = false;
    let closed = false;
    session.on('goaway', () => (goaway = true));
    session.on('close', () => (closed = true));
    try {
      expect(await h2Get(session, '/orders/1')).toBe(200);
      await s.writeConfig(config(s.volume.dir, ['ca-a.crt']));
      expect(await s.reloader.reload('test')).toBe('applied');
      // Same session: judged against the new trust, answered, and then the session itself goes.
      expect(await h2Get(session, '/orders/1')).toBe(403);
      await s.sc.audit.waitFor((l) => l.msg === 'request' && l.reason === 'trust_withdrawn' && l.protocol === 'HTTP/2');
      expect(await until(() => goaway && closed, 5000)).toBe(true);
    } finally {
      session.destroy();
      await s.close();
    }
  });

  it('a pin added by a reload refuses a new handshake from a certificate the sidecar has seen before', async () => {
    // The connection stage memoizes what each client certificate is (server/peers.ts); the memo
    // must follow the trust in force, not the trust the certificate was first judged against.
    const s = await setup('pin-memo', ['ca-a.crt']);
    const first = agent(clientA);
    try {
      expect((await request(`${s.sc.origin}/orders/1`, { dispatcher: first })).statusCode).toBe(200);
    } finally {
      await first.close();
    }
    const base = config(s.volume.dir, ['ca-a.crt']);
    const pinB = `sha256:${new X509Certificate(clientB.certPem).fingerprint256}`;
    await s.writeConfig({ ...base, tls: { ...(base['tls'] as Record<string, unknown>), pins: [pinB] } });
    expect(await s.reloader.reload('test')).toBe('applied');
    const second = agent(clientA);
    try {
      // Refused after the handshake: the unsolicited 400 is all the client gets.
      const res = await request(`${s.sc.origin}/orders/1`, { dispatcher: second });
      expect({ status: res.statusCode, body: await res.body.json() }).toMatchObject({ status: 400, body: { error: 'certificate_refused' } });
      await s.sc.audit.waitFor((l) => l.msg === 'handshake_rejected' && l.reason === 'pin_mismatch');
    } finally {
      await second.close();
      await s.close();
    }
  });

  it('applies a withdrawn scope to the next request on an open connection', async () => {
    const s = await setup('scope', ['ca-a.crt']);
    const a = agent(clientA);
    try {
      expect((await request(`${s.sc.origin}/orders/1`, { dispatcher: a })).statusCode).toBe(200);
      await s.writeConfig(config(s.volume.dir, ['ca-a.crt'], []));
      // Picked up by the folder watch this time, not an explicit reload.
      expect(await until(() => s.sc.sidecar.snapshot.generation > 1, 3000)).toBe(true);
      const res = await request(`${s.sc.origin}/orders/1`, { dispatcher: a });
      expect(res.statusCode).toBe(403);
      await s.sc.audit.waitFor((l) => l.msg === 'request' && l.reason === 'scope_missing');
    } finally {
      await a.close();
      await s.close();
    }
  });
});

describe('a bad new version', () => {
  it('is refused and counted; the old config keeps serving; fixing the file recovers', async () => {
    const s = await setup('broken', ['ca-a.crt']);
    const a = agent(clientA);
    const metric = async (result: string): Promise<number> =>
      value(parseProm(await (await request(`${s.sc.admin}/metrics`)).body.text()), 'mtls_sidecar_config_reloads_total', { result });
    try {
      await writeFile(s.configFile, 'version: 1\ntls: [this is: not, valid\n');
      expect(await s.reloader.reload('test')).toBe('failed');
      expect(await metric('failure')).toBeGreaterThanOrEqual(1);
      expect((await request(`${s.sc.origin}/orders/1`, { dispatcher: a })).statusCode).toBe(200);

      // A key that does not match the certificate is refused too (files, not just YAML).
      await s.writeConfig({ ...config(s.volume.dir, ['ca-a.crt']), tls: { cert: `${s.volume.dir}/server.crt`, key: `${s.volume.dir}/ca-a.crt`, clientCAs: [`${s.volume.dir}/ca-a.crt`] } });
      expect(await s.reloader.reload('test')).toBe('failed');
      expect((await request(`${s.sc.origin}/orders/1`, { dispatcher: a })).statusCode).toBe(200);

      await s.writeConfig(config(s.volume.dir, ['ca-a.crt'], []));
      expect(await s.reloader.reload('test')).toBe('applied');
      expect(await metric('success')).toBeGreaterThanOrEqual(1);
      expect((await request(`${s.sc.origin}/orders/1`, { dispatcher: a })).statusCode).toBe(403);
    } finally {
      await a.close();
      await s.close();
    }
  });

  it('does not reload when nothing changed', async () => {
    const s = await setup('unchanged', ['ca-a.crt']);
    try {
      expect(await s.reloader.reload('test')).toBe('unchanged');
      expect(s.sc.sidecar.snapshot.generation).toBe(1);
    } finally {
      await s.close();
    }
  });
});

describe('reload state (mtls_sidecar_config_last_reload_*)', () => {
  const scrape = async (s: Setup): Promise<ReturnType<typeof parseProm>> => parseProm(await (await request(`${s.sc.admin}/metrics`)).body.text());
  const state = async (s: Setup): Promise<{ ok: number; at: number; success: number; failure: number }> => {
    const m = await scrape(s);
    return {
      ok: value(m, 'mtls_sidecar_config_last_reload_successful'),
      at: value(m, 'mtls_sidecar_config_last_reload_success_timestamp_seconds'),
      success: value(m, 'mtls_sidecar_config_reloads_total', { result: 'success' }),
      failure: value(m, 'mtls_sidecar_config_reloads_total', { result: 'failure' }),
    };
  };

  it('reads 1 and the start time before any reload', async () => {
    const before = Date.now() / 1000;
    const s = await setup('state-start', ['ca-a.crt']);
    try {
      const st = await state(s);
      expect(st.ok).toBe(1);
      expect(st.at).toBeGreaterThanOrEqual(Math.floor(before));
      expect(st.at).toBeLessThanOrEqual(Date.now() / 1000);
      expect([st.success, st.failure]).toEqual([0, 0]);
    } finally {
      await s.close();
    }
  });

  it('an asked-for reload (SIGHUP) that changes nothing is counted as a success and logged', async () => {
    const s = await setup('state-hup', ['ca-a.crt']);
    try {
      const before = await state(s);
      expect(await s.reloader.reload('SIGHUP')).toBe('unchanged');
      const after = await state(s);
      expect(after.success).toBe(before.success + 1);
      expect(after.ok).toBe(1);
      expect(after.at).toBeGreaterThan(before.at);
      const line = await s.log.waitFor((l) => l.msg === 'reload: nothing changed');
      expect(line).toMatchObject({ level: 30, trigger: 'SIGHUP', generation: 1 });
      expect(s.sc.sidecar.snapshot.generation).toBe(1);
    } finally {
      await s.close();
    }
  });

  it('reads 0 for as long as the file is broken, and 1 as soon as the watch sees it fixed, also back to the served content', async () => {
    const s = await setup('state-broken', ['ca-a.crt']);
    const served = await readFile(s.configFile, 'utf8');
    try {
      const start = await state(s);
      await writeFile(s.configFile, 'version: 1\ntls: [this is: not, valid\n');
      expect(await s.reloader.reload('test')).toBe('failed');
      const broken = await state(s);
      expect(broken).toMatchObject({ ok: 0, at: start.at });
      // (The folder watch may have seen the write too and counted its own refusal.)
      expect(broken.failure).toBeGreaterThan(start.failure);
      // Still broken on the next attempt: still 0, the time of the last good one unchanged.
      expect(await s.reloader.reload('test')).toBe('failed');
      expect(await state(s)).toMatchObject({ ok: 0, at: start.at });
      // Put back exactly what is being served: nothing changes, and that is the recovery.
      await writeFile(s.configFile, served);
      await until(async () => (await state(s)).ok === 1, 5000);
      const fixed = await state(s);
      expect(fixed.at).toBeGreaterThan(start.at);
      expect(fixed.success).toBe(start.success + 1);
      expect(await s.log.waitFor((l) => l.msg === 'reload: nothing changed')).toMatchObject({ level: 30, recovered: true });
      expect(String((await s.log.waitFor((l) => l.msg === 'reload: nothing changed'))['trigger'])).toMatch(/^watch:/);
      expect(s.sc.sidecar.snapshot.generation).toBe(1);
    } finally {
      await s.close();
    }
  });

  it('a watched folder event that changes nothing, while all is well, is neither counted nor logged above debug', async () => {
    const s = await setup('state-noise', ['ca-a.crt']);
    try {
      const before = await state(s);
      // An editor's swap file next to the config: the folder watch fires, nothing the config names changed.
      await writeFile(path.join(s.dir, '.sidecar.yaml.swp'), 'x');
      const line = await s.log.waitFor((l) => l.msg === 'reload: nothing changed', 5000);
      expect(line).toMatchObject({ level: 20 });
      expect(await state(s)).toEqual(before);
    } finally {
      await s.close();
    }
  });
});

describe('trust anchors after a reload (tls/context.ts: Node\'s setSecureContext drops allowPartialTrustChain)', () => {
  it('clientCAs [root] reloaded to [intermediate] only: the intermediate is a trust anchor for new handshakes, the root no longer is', async () => {
    const pki = inject('pki');
    const sc = await startSidecar(baseConfig(pki, app.url));
    try {
      expect((await attempt(sc, presenting(pki, pki.clients.orders))).outcome).toEqual({ ok: true, status: 200 });
      // The same file, same (ephemeral) ports: only the trust changes.
      await writeFile(sc.configFile, stringify(withEphemeralPorts(baseConfig(pki, app.url, { tls: { clientCAs: [pki.intermediateCa.cert] } }))));
      expect(await new Reloader(sc.sidecar, sc.configFile, silentLog()).reload('test')).toBe('applied');
      // Without partial-chain trust in the reloaded context OpenSSL would look for the root and call both untrusted.
      for (const leafOnly of [false, true]) {
        const a = await attempt(sc, presenting(pki, pki.clients.interClient, { leafOnly }));
        expect(a.outcome, `leafOnly: ${leafOnly}`).toEqual({ ok: true, status: 200 });
        expect(a.rejections).toEqual([]);
      }
      const r = await refusedAttempt(sc, presenting(pki, pki.clients.orders));
      expect(r.line).toMatchObject({ reason: 'untrusted' });
    } finally {
      await sc.close();
    }
  });
});
