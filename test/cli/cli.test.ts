/** The built binary, black-box: exit codes, one-line errors, serving, SIGTERM drain (SPEC §2, §7). */
import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { stringify } from 'yaml';
import { agentFor, call } from '../helpers/client.js';
import { deadPort, startUpstream } from '../helpers/upstream.js';
import type { Upstream } from '../helpers/upstream.js';
import { baseConfig, creds } from '../integration/config.js';

const run = promisify(execFile);
const pki = inject('pki');
const root = path.resolve(import.meta.dirname, '../..');
const bin = path.join(root, 'dist/main.js');
let dir = '';
let app: Upstream;

beforeAll(async () => {
  // `make test` builds first; a bare `vitest run` after a fresh clone builds here.
  if (!existsSync(bin)) await run(process.execPath, [path.join(root, 'node_modules/typescript/bin/tsc'), '-p', path.join(root, 'tsconfig.build.json')]);
  dir = await mkdtemp(path.join(os.tmpdir(), 'mtls-sidecar-cli-'));
  app = await startUpstream();
}, 120_000);
afterAll(async () => {
  await app.close();
  await rm(dir, { recursive: true, force: true });
});

async function cli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [bin, ...args], { env: { ...process.env, ...env }, cwd: dir });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

/** `mtls-sidecar run` as a child process, with its stderr (the operational log) collected. */
function spawnRun(file: string): { child: ReturnType<typeof spawn>; exited: Promise<number | null>; stderr: () => string; waitFor: (needle: string) => Promise<void> } {
  const child = spawn(process.execPath, [bin, 'run', '--config', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (c: Buffer) => (stderr += c.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const waitFor = async (needle: string): Promise<void> => {
    const deadline = Date.now() + 10_000;
    while (!stderr.includes(needle) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(stderr).toContain(needle);
  };
  return { child, exited, stderr: () => stderr, waitFor };
}

async function configFile(name: string, content: string | object): Promise<string> {
  const file = path.join(dir, name);
  await writeFile(file, typeof content === 'string' ? content : stringify(content));
  return file;
}

describe('usage', () => {
  it('prints help with exit 0 and refuses an unknown command with exit 2', async () => {
    const help = await cli(['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/run .*check .*certs .*fingerprint/s);
    const bad = await cli(['frobnicate']);
    expect(bad.code).toBe(2);
    expect(bad.stderr.trim().split('\n')).toHaveLength(1);
  });

  it.each(['run', 'check', 'certs', 'fingerprint'])('%s --help exits 0', async (cmd) => {
    const r = await cli([cmd, '--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/Usage: mtls-sidecar/);
  });

  it('refuses an unknown flag with one line and exit 2', async () => {
    const r = await cli(['check', '--nope']);
    expect(r.code).toBe(2);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });
});

describe('check', () => {
  it('prints ok for a valid config', async () => {
    const file = await configFile('good.yaml', baseConfig(pki, app.url));
    const r = await cli(['check', '--config', file]);
    expect(r).toMatchObject({ code: 0 });
    expect(r.stdout.trim()).toBe('ok');
  });

  it('points at the line and column of each problem', async () => {
    const good = stringify(baseConfig(pki, app.url));
    const bad = good.replace('upstream:\n', 'upstream:\n  retries: 3\n');
    const file = await configFile('bad.yaml', bad);
    const line = bad.split('\n').findIndex((l) => l.includes('retries')) + 1;
    const r = await cli(['check', '--config', file]);
    expect(r.code).toBe(2);
    expect(r.stderr.trim()).toBe(`${file}:${line}:3: upstream.retries: unknown key "retries"`);
  });

  it('checks the files: a key that does not match the cert, a missing CA file', async () => {
    const cfg = baseConfig(pki, app.url, { tls: { key: pki.clients.orders.key, clientCAs: [path.join(dir, 'missing-ca.crt')] } });
    const file = await configFile('files.yaml', cfg);
    const r = await cli(['check', '--config', file]);
    expect(r.code).toBe(2);
    const lines = r.stderr.trim().split('\n');
    expect(lines.some((l) => /tls\.key: private key does not match/.test(l))).toBe(true);
    expect(lines.some((l) => /tls\.clientCAs\[0\]: file not found/.test(l))).toBe(true);
    expect(r.stderr).not.toMatch(/PRIVATE KEY|\n\s+at /);
  });

  it('uses $MTLS_SIDECAR_CONFIG when --config is absent', async () => {
    const file = await configFile('env.yaml', baseConfig(pki, app.url));
    const r = await cli(['check'], { MTLS_SIDECAR_CONFIG: file });
    expect(r.code).toBe(0);
  });

  it('accepts a CRL of an intermediate only clients present (clientCAs: the root); refuses a file that is no CRL', async () => {
    const ok = await cli(['check', '--config', await configFile('crl.yaml', baseConfig(pki, app.url, { tls: { crls: [pki.crls.intermediate] } }))]);
    expect({ code: ok.code, stdout: ok.stdout.trim() }).toEqual({ code: 0, stdout: 'ok' });
    const bad = await cli(['check', '--config', await configFile('not-crl.yaml', baseConfig(pki, app.url, { tls: { crls: [pki.rootCa.cert] } }))]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/tls\.crls\[0\]: not a CRL \(PEM or DER\): no X509 CRL PEM block found/);
  });
});

describe('run', () => {
  it('exits 1 with one line when the port is taken or the audit file cannot be opened', async () => {
    const net = await import('node:net');
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const taken = (blocker.address() as import('node:net').AddressInfo).port;
    try {
      const busy = await configFile('busy.yaml', baseConfig(pki, app.url, { listen: { address: '127.0.0.1', port: taken }, admin: { address: '127.0.0.1', port: 0 } }));
      const r = await cli(['run', '--config', busy]);
      expect(r.code).toBe(1);
      expect(r.stderr.trim()).toMatch(/^run: cannot listen: .*EADDRINUSE/);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    } finally {
      blocker.close();
    }
    const noAudit = await configFile('noaudit.yaml', baseConfig(pki, app.url, { audit: { file: '/etc/passwd/audit.log' }, admin: { address: '127.0.0.1', port: 0 } }));
    const r = await cli(['run', '--config', noAudit]);
    expect(r.code).toBe(1);
    // mkdir of an existing file's path: EEXIST (or ENOTDIR, depending on the call that fails).
    expect(r.stderr.trim()).toMatch(/^run: cannot open audit.file \/etc\/passwd\/audit.log: (EEXIST|ENOTDIR)$/);
  });

  it('exits 2 on a bad config without serving', async () => {
    const file = await configFile('bad-run.yaml', 'version: 2\n');
    const r = await cli(['run', '--config', file]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/version/);
  });

  it('serves, then on SIGTERM finishes, flushes every audit line to the file and exits 0', async () => {
    const auditFile = path.join(dir, 'audit.log');
    const cfg = baseConfig(pki, app.url, {
      listen: { address: '127.0.0.1', port: await deadPort(), http2: true },
      audit: { file: auditFile },
      admin: { address: '127.0.0.1', port: 0 },
      shutdown: { drainDelay: '100ms', timeout: '2s' },
    });
    const file = await configFile('run.yaml', cfg);
    const port = (cfg['listen'] as { port: number }).port;
    const { child, exited, stderr, waitFor } = spawnRun(file);
    await waitFor('"listening"');

    const agent = agentFor(creds(pki, 'orders'));
    const n = 25;
    for (let i = 0; i < n; i++) expect((await call(agent, `https://localhost:${port}`, `/orders/${i}`)).status).toBe(200);
    await agent.close();
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    const lines = (await readFile(auditFile, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.filter((l) => l['msg'] === 'request')).toHaveLength(n);
    expect(stderr()).not.toMatch(/PRIVATE KEY/);
  }, 30_000);

  it('drains on SIGTERM: readyz 503 at once, a slow request still completes, new connections refused, exit 0', async () => {
    const slow = await startUpstream((_req, res) => {
      setTimeout(() => res.end('slow but fine'), 1500).unref();
    });
    const auditFile = path.join(dir, 'audit-drain.log');
    const port = await deadPort();
    const adminPort = await deadPort();
    const cfg = baseConfig(pki, slow.url, {
      listen: { address: '127.0.0.1', port, http2: true },
      admin: { address: '127.0.0.1', port: adminPort },
      audit: { file: auditFile },
      shutdown: { drainDelay: '300ms', timeout: '5s' },
    });
    const { child, exited, waitFor } = spawnRun(await configFile('drain.yaml', cfg));
    await waitFor('"listening"');
    const agent = agentFor(creds(pki, 'orders'));
    try {
      const inflight = call(agent, `https://localhost:${port}`, '/orders/slow');
      await new Promise((r) => setTimeout(r, 200));
      const t0 = Date.now();
      child.kill('SIGTERM');
      await new Promise((r) => setTimeout(r, 100));
      const { request } = await import('undici');
      expect((await request(`http://127.0.0.1:${adminPort}/readyz`)).statusCode).toBe(503);
      const res = await inflight;
      expect(res.status).toBe(200);
      expect(res.text).toBe('slow but fine');
      await new Promise((r) => setTimeout(r, 400));
      const fresh = agentFor(creds(pki, 'orders'));
      await expect(call(fresh, `https://localhost:${port}`, '/orders/1')).rejects.toThrow();
      await fresh.close().catch(() => undefined);
      expect(await exited).toBe(0);
      expect(Date.now() - t0).toBeLessThan(5000);
      const lines = (await readFile(auditFile, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(lines.some((l) => l['path'] === '/orders/slow' && l['status'] === 200)).toBe(true);
    } finally {
      await agent.close().catch(() => undefined);
      child.kill('SIGKILL');
      await slow.close();
    }
  }, 30_000);

  it('reloads on SIGHUP', async () => {
    const port = await deadPort();
    const cfg = baseConfig(pki, app.url, {
      listen: { address: '127.0.0.1', port, http2: true },
      admin: { address: '127.0.0.1', port: 0 },
      audit: { file: path.join(dir, 'audit-hup.log') },
      shutdown: { drainDelay: '0ms', timeout: '2s' },
    });
    const file = await configFile('hup.yaml', cfg);
    const { child, exited, waitFor: wait } = spawnRun(file);
    await wait('"listening"');
    const agent = agentFor(creds(pki, 'billing'));
    try {
      expect((await call(agent, `https://localhost:${port}`, '/orders/1')).status).toBe(200);
      // Take billing's read scope away, then SIGHUP.
      const identities = (cfg['identities'] as Array<{ name: string; scopes: string[] }>).map((i) => (i.name === 'billing' ? { ...i, scopes: [] } : i));
      await writeFile(file, stringify({ ...cfg, identities }));
      child.kill('SIGHUP');
      await wait('configuration reloaded');
      expect((await call(agent, `https://localhost:${port}`, '/orders/1')).status).toBe(403);
    } finally {
      await agent.close();
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
    }
  }, 30_000);

  it('exits at once on a second signal during the drain', async () => {
    const port = await deadPort();
    const cfg = baseConfig(pki, app.url, {
      listen: { address: '127.0.0.1', port, http2: true },
      admin: { address: '127.0.0.1', port: 0 },
      audit: { file: path.join(dir, 'audit-twice.log') },
      shutdown: { drainDelay: '20s', timeout: '20s' },
    });
    const { child, exited, waitFor } = spawnRun(await configFile('twice.yaml', cfg));
    await waitFor('"listening"');
    child.kill('SIGTERM');
    await waitFor('"draining"');
    const t0 = Date.now();
    child.kill('SIGTERM');
    expect(await exited).toBe(1);
    expect(Date.now() - t0).toBeLessThan(2000);
  }, 30_000);
});
