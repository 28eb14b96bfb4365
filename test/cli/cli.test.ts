/** The built binary, black-box: exit codes, one-line errors, serving, SIGTERM drain (SPEC §2, §7). */
import { execFile, spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { stringify } from 'yaml';
import { agentFor, call } from '../helpers/client.js';
import { deadPort, startUpstream } from '../helpers/upstream.js';
import type { Upstream } from '../helpers/upstream.js';
import { sleep, until } from '../helpers/wait.js';
import { baseConfig, creds } from '../integration/config.js';
import { AUDIT_BUFFER_BYTES } from '../../src/audit/audit.js';
import { parseProm, value } from '../helpers/prom.js';

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
function spawnRun(file: string, extra: readonly string[] = []): { child: ReturnType<typeof spawn>; exited: Promise<number | null>; stderr: () => string; waitFor: (needle: string) => Promise<void> } {
  const child = spawn(process.execPath, [bin, 'run', '--config', file, ...extra], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const waitFor = async (needle: string): Promise<void> => {
    await until(() => stderr.includes(needle), 10_000);
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

  it('--no-files: files that exist only in the pod are not read; schema and cross-references still are', async () => {
    const elsewhere = { cert: '/etc/mtls/tls.crt', key: '/etc/mtls/tls.key', clientCAs: ['/etc/mtls/ca.crt'] };
    const cfg = baseConfig(pki, app.url, { tls: elsewhere, jwt: undefined });
    const file = await configFile('pod-only.yaml', cfg);
    expect((await cli(['check', '--config', file])).code).toBe(2);
    const r = await cli(['check', '--no-files', '--config', file]);
    expect(r).toMatchObject({ code: 0, stderr: '' });
    expect(r.stdout.trim()).toBe('ok');
    // Cross-references: a rate limit for an identity that does not exist, tokenScopes without jwt.
    const bad = baseConfig(pki, app.url, {
      tls: elsewhere,
      rateLimit: { identities: { ghost: { rps: 1, burst: 1 } } },
      routes: [{ name: 'r', prefix: '/', scopes: ['orders:read'], tokenScopes: ['x'] }],
    });
    const badFile = await configFile('pod-only-bad.yaml', bad);
    const b = await cli(['check', '--no-files', '--config', badFile]);
    expect(b.code).toBe(2);
    const lines = b.stderr.trim().split('\n');
    expect(lines).toHaveLength(2);
    expect(lines.some((l) => /:\d+:\d+: rateLimit\.identities\.ghost: no identity named "ghost"/.test(l))).toBe(true);
    expect(lines.some((l) => /:\d+:\d+: routes\[0\]\.tokenScopes: tokenScopes needs a jwt section/.test(l))).toBe(true);
  });

  it('says why a Redis Cluster setting cannot work (database, braces in keyPrefix), without the password', async () => {
    const redis = { url: 'redis://app:s3cret@127.0.0.1:7000/2', keyPrefix: '{app}:', cluster: true };
    const cfg = baseConfig(pki, app.url, { rateLimit: { default: { rps: 1, burst: 1 }, backend: 'redis', redis } });
    const r = await cli(['check', '--config', await configFile('cluster.yaml', cfg)]);
    expect(r.code).toBe(2);
    const lines = r.stderr.trim().split('\n');
    expect(lines).toHaveLength(2);
    expect(lines.some((l) => /:\d+:\d+: rateLimit\.redis\.url: a Redis Cluster has only database 0/.test(l))).toBe(true);
    expect(lines.some((l) => /:\d+:\d+: rateLimit\.redis\.keyPrefix: with cluster: true keyPrefix must not contain/.test(l))).toBe(true);
    expect(r.stderr).not.toContain('s3cret');
  });

  it('warnings: one line each on stderr, FILE:LINE:COL PATH: warning: ..., in file order, then "ok" and exit 0; --no-files too', async () => {
    const cfg = baseConfig(pki, app.url, {
      identities: [
        { name: 'shop', match: { uri: 'spiffe://cluster.local/ns/shop/**' }, scopes: ['orders:read'] },
        { name: 'orders', match: { uri: 'spiffe://cluster.local/ns/shop/sa/orders' }, scopes: ['orders:read', 'orders:write'] },
      ],
      routes: [
        { name: 'read', prefix: '/orders', methods: ['GET'], scopes: ['orders:read'] },
        { name: 'write', prefix: '/orders', methods: ['POST'], scopes: ['orders:wirte'] },
      ],
    });
    const text = stringify(cfg);
    const file = await configFile('warn.yaml', text);
    const lineOf = (needle: string): number => text.split('\n').findIndex((l) => l.includes(needle)) + 1;
    const expected = [
      new RegExp(`^${file}:${lineOf('sa/orders')}:\\d+: identities\\[1\\]\\.match: warning: identity "orders" can never match: identity "shop" \\(identities\\[0\\]\\) comes before it`),
      new RegExp(`^${file}:${lineOf('orders:wirte')}:\\d+: routes\\[1\\]\\.scopes\\[0\\]: warning: no identity holds scope "orders:wirte", so route "write" refuses every request \\(scope_missing\\) \\(did you mean "orders:write"\\?\\)$`),
    ];
    for (const args of [['check', '--config', file], ['check', '--no-files', '--config', file]]) {
      const r = await cli(args);
      expect({ code: r.code, stdout: r.stdout }).toEqual({ code: 0, stdout: 'ok\n' });
      const lines = r.stderr.trim().split('\n');
      expect(lines).toHaveLength(2);
      lines.forEach((l, i) => expect(l).toMatch(expected[i]!));
    }
    // A config with an error gets its error alone, not the warnings as well.
    const broken = await configFile('warn-broken.yaml', text.replace('upstream:\n', 'upstream:\n  retries: 3\n'));
    const b = await cli(['check', '--config', broken]);
    expect(b.code).toBe(2);
    expect(b.stdout).toBe('');
    expect(b.stderr.trim().split('\n')).toEqual([expect.stringMatching(/: upstream\.retries: unknown key "retries"$/)]);
  });

  it('a misspelt key: one error that says what it probably meant, not its consequences', async () => {
    const cfg = baseConfig(pki, app.url, { jwt: { issuer: 'https://i.example', audience: 'a', jwks: { url: 'https://i.example/jwks.json' } } });
    const routes = [...(cfg['routes'] as object[]), { name: 'admin', prefix: '/admin', tokenScopes: ['admin'] }];
    const text = stringify({ ...cfg, routes }).replace('jwt:\n', 'jwtt:\n');
    const r = await cli(['check', '--config', await configFile('typo.yaml', text)]);
    expect(r.code).toBe(2);
    const line = text.split('\n').findIndex((l) => l.startsWith('jwtt:')) + 1;
    expect(r.stderr).toMatch(new RegExp(`^\\S+typo\\.yaml:${line}:1: jwtt: unknown key "jwtt" \\(did you mean "jwt"\\?\\)\\n$`));
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

describe('certs', () => {
  it('writes the dev PKI, then --add issues one more workload cert from its CA and leaves the rest alone', async () => {
    const out = path.join(dir, 'pki');
    const r = await cli(['certs', '--out', out]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout.trim().split('\n').map((l) => path.basename(l.split('  ')[0] ?? ''))).toEqual(['ca.crt', 'server.crt', 'orders.crt', 'billing.crt']);
    const ca = await readFile(path.join(out, 'ca.crt'));
    const caKey = await readFile(path.join(out, 'ca.key'));
    const add = await cli(['certs', '--out', out, '--add', 'payments']);
    expect(add.stderr).toBe('');
    expect(add.code).toBe(0);
    expect(add.stdout).toMatch(/^\S+\/payments\.crt {2}sha256:(?:[0-9A-F]{2}:){31}[0-9A-F]{2}\n$/);
    expect((await readFile(path.join(out, 'ca.crt'))).equals(ca)).toBe(true);
    expect((await readFile(path.join(out, 'ca.key'))).equals(caKey)).toBe(true);
    const fp = await cli(['fingerprint', path.join(out, 'payments.crt')]);
    expect(fp.stdout).toContain('URI:spiffe://cluster.local/ns/default/sa/payments, DNS:payments, ');
  });

  it('--add without a CA in --out: exit 2, one line', async () => {
    const r = await cli(['certs', '--out', path.join(dir, 'no-pki'), '--add', 'payments']);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/^certs: --add issues from the CA in \S+, but \S+ca\.crt does not exist \(create the PKI first: mtls-sidecar certs --out \S+\)\n$/);
  });

  it('every examples/*.yaml (the `make run` demo and the common setups) checks ok, without a warning, against the dev PKI `certs` writes', async () => {
    const out = path.join(dir, 'demo-certs');
    expect((await cli(['certs', '--out', out])).code).toBe(0);
    const names = (await readdir(path.join(root, 'examples'))).filter((n) => n.endsWith('.yaml')).sort();
    expect(names).toEqual(expect.arrayContaining(['sidecar.yaml', 'billing.yaml', 'pins-only.yaml', 'spiffe-mesh.yaml', 'jwt.yaml', 'redis-ratelimit.yaml', 'outbound.yaml', 'audit-mode.yaml']));
    for (const name of names) {
      const example = await readFile(path.join(root, 'examples', name), 'utf8');
      expect(example.startsWith('# yaml-language-server: $schema=../docs/sidecar.schema.json\n')).toBe(true);
      // `check` reads every file an example names: each must be one `certs` writes.
      expect(example).toContain('../certs/');
      const file = await configFile(`example-${name}`, example.replaceAll('../certs/', `${out}/`));
      const r = await cli(['check', '--config', file]);
      expect({ name, code: r.code, stdout: r.stdout.trim(), stderr: r.stderr }).toEqual({ name, code: 0, stdout: 'ok', stderr: '' });
    }
  });
});

describe('run', () => {
  it('exits 1 with one line when the port is taken or the audit file cannot be opened', async () => {
    const net = await import('node:net');
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const taken = (blocker.address() as AddressInfo).port;
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

  it('logs at --log-level over MTLS_SIDECAR_LOG_LEVEL, and refuses an unknown level naming where it came from', async () => {
    const cfg = baseConfig(pki, app.url, {
      listen: { address: '127.0.0.1', port: await deadPort(), http2: true },
      audit: { file: path.join(dir, 'audit-level.log') },
      admin: { address: '127.0.0.1', port: 0 },
      shutdown: { drainDelay: '0ms', timeout: '2s' },
    });
    const file = await configFile('level.yaml', cfg);
    for (const [args, env, source] of [
      [['--log-level', 'loud'], {}, '--log-level'],
      [[], { MTLS_SIDECAR_LOG_LEVEL: 'loud' }, 'MTLS_SIDECAR_LOG_LEVEL'],
      [['--log-level', 'verbose'], { MTLS_SIDECAR_LOG_LEVEL: 'debug' }, '--log-level'],
    ] as const) {
      const r = await cli(['run', '--config', file, ...args], env);
      expect(r.code).toBe(2);
      expect(r.stderr.trim()).toMatch(new RegExp(`^run: ${source}: unknown level "(loud|verbose)" \\(one of trace, debug, info, warn, error, fatal, silent\\)$`));
    }
    const webhook = await cli(['webhook', '--log-level', 'loud']);
    expect(webhook.code).toBe(2);
    expect(webhook.stderr).toMatch(/^webhook: --log-level: unknown level "loud"/);

    // At warn, start-up and shutdown leave no info line; the sidecar serves all the same.
    const port = (cfg['listen'] as { port: number }).port;
    const { child, exited, stderr } = spawnRun(file, ['--log-level', 'warn']);
    const agent = agentFor(creds(pki, 'orders'));
    expect(await until(async () => (await call(agent, `https://localhost:${port}`, '/orders/1').catch(() => ({ status: 0 }))).status === 200, 10_000, 100)).toBe(true);
    await agent.close();
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(stderr()).not.toMatch(/"level":"info"/);
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
      // Signal once the app holds the request (for 1.5 s): then it is in flight.
      expect(await until(() => slow.seen.length === 1, 5000)).toBe(true);
      const t0 = Date.now();
      child.kill('SIGTERM');
      const { request } = await import('undici');
      const readyz = async (): Promise<number> => (await request(`http://127.0.0.1:${adminPort}/readyz`)).statusCode;
      // Once the signal is handled (the slow request still running, drainDelay not yet over).
      expect(await until(async () => (await readyz()) === 503, 2000)).toBe(true);
      const res = await inflight;
      expect(res.status).toBe(200);
      expect(res.text).toBe('slow but fine');
      // The listener closes once drainDelay (300 ms) is over: that much time must have passed.
      await sleep(t0 + 400 - Date.now());
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
    const { child, exited, stderr, waitFor: wait } = spawnRun(file);
    await wait('"listening"');
    const admin = /"admin":"([^"]+)"/.exec(stderr())?.[1];
    const reloads = async (): Promise<Record<string, number>> => {
      const text = await (await fetch(`http://${admin}/metrics`)).text();
      const num = (re: RegExp): number => Number(re.exec(text)?.[1]);
      return {
        success: num(/^mtls_sidecar_config_reloads_total\{result="success"\} (\S+)$/m),
        failure: num(/^mtls_sidecar_config_reloads_total\{result="failure"\} (\S+)$/m),
        ok: num(/^mtls_sidecar_config_last_reload_successful (\S+)$/m),
      };
    };
    const agent = agentFor(creds(pki, 'billing'));
    try {
      expect((await call(agent, `https://localhost:${port}`, '/orders/1')).status).toBe(200);
      // Take billing's read scope away, then SIGHUP.
      const identities = (cfg['identities'] as Array<{ name: string; scopes: string[] }>).map((i) => (i.name === 'billing' ? { ...i, scopes: [] } : i));
      await writeFile(file, stringify({ ...cfg, identities }));
      child.kill('SIGHUP');
      await wait('configuration reloaded');
      expect((await call(agent, `https://localhost:${port}`, '/orders/1')).status).toBe(403);
      const before = await reloads();
      expect(before).toMatchObject({ failure: 0, ok: 1 });
      expect(before['success']).toBeGreaterThanOrEqual(1);
      // A SIGHUP with nothing changed is logged (info) and counted too.
      const unchanged = (): number => stderr().match(/"level":"info",[^\n]*"trigger":"SIGHUP"[^\n]*"msg":"reload: nothing changed"/g)?.length ?? 0;
      const seen = unchanged();
      child.kill('SIGHUP');
      const deadline = Date.now() + 10_000;
      while (unchanged() === seen && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      expect(unchanged()).toBe(seen + 1);
      expect(await reloads()).toEqual({ ...before, success: before['success']! + 1 });
      // The operational log: level names, and one component key on every line.
      for (const line of stderr().split('\n').filter((l) => l.startsWith('{'))) {
        expect(line).toMatch(/^\{"level":"(trace|debug|info|warn|error|fatal)",/);
        expect(line.match(/"component":/g)).toHaveLength(1);
      }
    } finally {
      await agent.close();
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
    }
  }, 30_000);

  it('logs check\'s warnings at warn level at start, and again after a reload that applies', async () => {
    const cfg = baseConfig(pki, app.url, {
      listen: { address: '127.0.0.1', port: 0, http2: true },
      admin: { address: '127.0.0.1', port: 0 },
      audit: { file: path.join(dir, 'audit-warn.log') },
      shutdown: { drainDelay: '0ms', timeout: '2s' },
    });
    const routes = [...(cfg['routes'] as object[]), { name: 'refund', prefix: '/refunds', scopes: ['orders:refund'] }];
    const text = stringify({ ...cfg, routes });
    const file = await configFile('warn-run.yaml', text);
    const { child, exited, stderr, waitFor } = spawnRun(file);
    try {
      await waitFor('"listening"');
      const warned = (): Record<string, unknown>[] =>
        stderr()
          .split('\n')
          .filter((l) => l.includes('"config warning: '))
          .map((l) => JSON.parse(l) as Record<string, unknown>);
      const line = text.split('\n').findIndex((l) => l.includes('orders:refund')) + 1;
      expect(warned()).toEqual([
        expect.objectContaining({ level: 'warn', component: 'config', code: 'scope_unheld', path: 'routes[3].scopes[0]', at: expect.stringMatching(new RegExp(`^${file}:${line}:\\d+$`)) }),
      ]);
      // Now someone holds it, but a route after a catch-all can never match.
      const identities = (cfg['identities'] as { name: string; scopes: string[] }[]).map((i) => (i.name === 'billing' ? { ...i, scopes: [...i.scopes, 'orders:refund'] } : i));
      await writeFile(file, stringify({ ...cfg, identities, routes: [{ name: 'all', prefix: '/' }, ...routes] }));
      child.kill('SIGHUP');
      await waitFor('configuration reloaded');
      // Logged right after that line, which may reach us in an earlier chunk.
      await until(() => warned().length >= 5, 10_000);
      expect(warned().slice(1).map((w) => [w['code'], w['path']])).toEqual([
        ['route_shadowed', 'routes[1]'],
        ['route_shadowed', 'routes[2]'],
        ['route_shadowed', 'routes[3]'],
        ['route_shadowed', 'routes[4]'],
      ]);
    } finally {
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

/**
 * The audit sink under faults, on the real binary (so the real destination is used): a
 * destination that fails every write (/dev/full: ENOSPC, as a full disk), a stdout pipe nobody
 * reads (a stuck log collector), and one that starts reading later. The admin port must keep
 * answering, memory must stay bounded, the policy must hold, and shutdown must not hang.
 */
describe('audit sink under faults', () => {
  /** A path whose audit line is ~8 KiB, so a few hundred requests fill the 4 MiB buffer. */
  const longPath = `/orders/${'a'.repeat(8000)}`;
  /** Children still running when a test ends (it failed): killed, so none is left behind. */
  const children = new Set<ReturnType<typeof spawn>>();
  afterEach(() => {
    for (const c of children) c.kill('SIGKILL');
    children.clear();
  });

  async function start(name: string, audit: Record<string, unknown>) {
    const port = await deadPort();
    const adminPort = await deadPort();
    const cfg = baseConfig(pki, app.url, {
      listen: { address: '127.0.0.1', port, http2: true },
      admin: { address: '127.0.0.1', port: adminPort },
      audit,
      shutdown: { drainDelay: '0ms', timeout: '2s' },
    });
    const run = spawnRun(await configFile(`${name}.yaml`, cfg));
    children.add(run.child);
    void run.exited.then(() => children.delete(run.child));
    await run.waitFor('"listening"');
    const { request } = await import('undici');
    /** An admin GET that must answer within 5 s: a hung admin port fails here, not at the test timeout. */
    const admin = async (p: string): Promise<{ status: number; text: string }> => {
      const res = await request(`http://127.0.0.1:${adminPort}${p}`, { headersTimeout: 5000, bodyTimeout: 5000 });
      return { status: res.statusCode, text: await res.body.text() };
    };
    const metric = async (name: string): Promise<number> => {
      const samples = parseProm((await admin('/metrics')).text);
      expect(samples.some((s) => s.name === name)).toBe(true);
      return value(samples, name);
    };
    /** The operational log's lines with this msg. */
    const logged = (msg: string): Array<Record<string, unknown>> =>
      run
        .stderr()
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as Record<string, unknown>)
        .filter((l) => l['msg'] === msg);
    // A frozen sidecar fails the test here, in seconds, rather than at the test's timeout.
    const agent = agentFor(creds(pki, 'orders'), { headersTimeout: 5000, bodyTimeout: 5000 });
    return { ...run, origin: `https://localhost:${port}`, admin, metric, logged, agent };
  }

  /** SIGTERM and the exit code; the drain timeout is 2 s, so 10 s means it hung. */
  async function stop(child: ReturnType<typeof spawn>, exited: Promise<number | null>): Promise<number | null> {
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    try {
      return await exited;
    } finally {
      clearTimeout(timer);
    }
  }

  it('/dev/full, onFull refuse: 503 audit_unavailable and /readyz 503 once a write fails; /healthz and /metrics answer; exit 0', async () => {
    const s = await start('devfull-refuse', { file: '/dev/full', onFull: 'refuse' });
    try {
      // The first requests pass; the first batch is handed over within 250 ms and fails.
      let refused = null;
      for (let i = 0; i < 5000 && refused === null; i++) {
        const r = await call(s.agent, s.origin, `/orders/${i}`);
        if (r.status === 503) refused = r;
        else expect(r.status).toBe(200);
      }
      expect(refused).not.toBeNull();
      expect(refused?.json()).toEqual({ error: 'service_unavailable', requestId: expect.any(String) });
      expect((await call(s.agent, s.origin, '/orders/again')).status).toBe(503);
      expect((await s.admin('/healthz')).status).toBe(200);
      const ready = await s.admin('/readyz');
      expect(ready.status).toBe(503);
      expect(JSON.parse(ready.text)).toEqual({ status: 'audit_unavailable' });
      expect(await s.metric('mtls_sidecar_audit_write_errors_total')).toBeGreaterThanOrEqual(1);
      expect(await s.metric('mtls_sidecar_audit_buffered_bytes')).toBeGreaterThan(0);
      await s.metric('mtls_sidecar_audit_lines_dropped_total');
      // One line for the change of state, however many writes failed.
      const down = s.logged('audit sink unavailable');
      expect(down).toHaveLength(1);
      expect(down[0]).toMatchObject({ cause: 'write_error', code: 'ENOSPC', onFull: 'refuse' });
    } finally {
      await s.agent.close();
    }
    expect(await stop(s.child, s.exited)).toBe(0);
    // What the destination never took is counted and said, not waited for.
    expect(s.logged('audit lines not written at shutdown')).toHaveLength(1);
  }, 60_000);

  it('/dev/full, onFull drop: keeps serving, counts the write errors and, at shutdown, every line lost', async () => {
    const s = await start('devfull-drop', { file: '/dev/full', onFull: 'drop' });
    const n = 40;
    try {
      for (let i = 0; i < n / 2; i++) expect((await call(s.agent, s.origin, `/orders/${i}`)).status).toBe(200);
      await s.waitFor('audit sink unavailable');
      for (let i = n / 2; i < n; i++) expect((await call(s.agent, s.origin, `/orders/${i}`)).status).toBe(200);
      expect((await s.admin('/readyz')).status).toBe(200);
      expect(await s.metric('mtls_sidecar_audit_write_errors_total')).toBeGreaterThanOrEqual(1);
      expect(s.logged('audit sink unavailable')).toHaveLength(1);
    } finally {
      await s.agent.close();
    }
    expect(await stop(s.child, s.exited)).toBe(0);
    expect(s.logged('audit lines not written at shutdown')).toEqual([expect.objectContaining({ lines: n })]);
  }, 60_000);

  it('a stdout pipe nobody reads, onFull drop: serves on, the buffer stays within its bound, lost lines are counted, exit 0 without a reader', async () => {
    const s = await start('stalled-drop', { file: 'stdout', onFull: 'drop' });
    let sent = 0;
    try {
      // Fill the buffer (4 MiB, plus what the pipe itself holds), then as much again.
      const batch = async (): Promise<void> => {
        const replies = await Promise.all(Array.from({ length: 16 }, () => call(s.agent, s.origin, longPath)));
        for (const r of replies) expect(r.status).toBe(200);
        sent += replies.length;
      };
      while (sent < 4000 && (await s.metric('mtls_sidecar_audit_lines_dropped_total')) === 0) await batch();
      expect(await s.metric('mtls_sidecar_audit_lines_dropped_total')).toBeGreaterThan(0);
      const full = sent;
      while (sent < full + AUDIT_BUFFER_BYTES / 8192) await batch();
      expect(await s.metric('mtls_sidecar_audit_buffered_bytes')).toBeLessThanOrEqual(AUDIT_BUFFER_BYTES);
      expect(await s.metric('mtls_sidecar_audit_lines_dropped_total')).toBeGreaterThanOrEqual(sent - full);
      expect((await s.admin('/healthz')).status).toBe(200);
      expect((await s.admin('/readyz')).status).toBe(200);
      const down = s.logged('audit sink unavailable');
      expect(down).toHaveLength(1);
      expect(down[0]).toMatchObject({ cause: 'full', onFull: 'drop', limitBytes: AUDIT_BUFFER_BYTES });
    } finally {
      await s.agent.close();
    }
    // Nobody ever reads stdout: shutdown gives up on it after the drain timeout instead of hanging.
    expect(await stop(s.child, s.exited)).toBe(0);
    expect(s.logged('audit lines not written at shutdown')).toHaveLength(1);
  }, 90_000);

  it('a stdout pipe read only later, onFull refuse: 503 while full, recovers by itself, every line whole, every line written or counted', async () => {
    const s = await start('stalled-refuse', { file: 'stdout', onFull: 'refuse' });
    let ok = 0;
    let refused = 0;
    let out = '';
    try {
      while (refused === 0 && ok < 4000) {
        const replies = await Promise.all(Array.from({ length: 16 }, () => call(s.agent, s.origin, longPath)));
        for (const r of replies) {
          if (r.status === 503) {
            refused++;
            expect(r.json()).toEqual({ error: 'service_unavailable', requestId: expect.any(String) });
          } else {
            expect(r.status).toBe(200);
            ok++;
          }
        }
      }
      expect(refused).toBeGreaterThan(0);
      expect(JSON.parse((await s.admin('/readyz')).text)).toEqual({ status: 'audit_unavailable' });
      expect((await s.admin('/healthz')).status).toBe(200);
      expect(s.logged('audit sink unavailable')).toEqual([expect.objectContaining({ cause: 'full', onFull: 'refuse' })]);

      // The collector comes back.
      s.child.stdout?.on('data', (c: Buffer) => (out += c.toString('utf8')));
      const deadline = Date.now() + 20_000;
      while ((await s.admin('/readyz')).status !== 200 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      expect((await s.admin('/readyz')).status).toBe(200);
      expect(s.logged('audit sink recovered')).toEqual([expect.objectContaining({ onFull: 'refuse' })]);
      // Lines still in the batch (not yet handed over when the backlog drained) follow within 250 ms.
      while ((await s.metric('mtls_sidecar_audit_buffered_bytes')) !== 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      expect(await s.metric('mtls_sidecar_audit_buffered_bytes')).toBe(0);
      const dropped = await s.metric('mtls_sidecar_audit_lines_dropped_total');
      expect((await call(s.agent, s.origin, '/orders/after')).status).toBe(200);
      ok++;
      await s.agent.close();
      expect(await stop(s.child, s.exited)).toBe(0);
      // Whole lines only (a dropped line is never half written), and each request is either in
      // the log or counted as dropped.
      const lines = out.split('\n');
      expect(lines.pop()).toBe('');
      const records = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(records.every((r) => r['msg'] === 'request')).toBe(true);
      expect(records.length + dropped).toBe(ok + refused);
      expect(records.filter((r) => r['reason'] === 'audit_unavailable').every((r) => r['status'] === 503)).toBe(true);
      expect(s.logged('audit lines not written at shutdown')).toHaveLength(0);
    } finally {
      await s.agent.close().catch(() => undefined);
      s.child.kill('SIGKILL');
    }
  }, 90_000);
});

describe('--version and the supported Node', () => {
  it('--version prints the package version and the Node it runs on', async () => {
    const pkg = JSON.parse(await readFile(path.join(root, 'package.json'), 'utf8')) as { version: string };
    const r = await cli(['--version']);
    expect(r).toMatchObject({ code: 0, stderr: '' });
    expect(r.stdout).toBe(`mtls-sidecar ${pkg.version} (node ${process.version})\n`);
  });

  // The machine's own Node (/usr/bin/node), when it is older than engines allows: every command
  // answers one line and exit 2 instead of failing somewhere inside.
  const old = ['/usr/bin/node', '/usr/local/bin/node'].find((p) => existsSync(p));
  const oldVersion = old === undefined ? null : spawnSync(old, ['--version'], { encoding: 'utf8' }).stdout.trim();
  const tooOld = oldVersion !== null && Number(/^v(\d+)/.exec(oldVersion)?.[1]) < 22;
  if (!tooOld) process.stderr.write('cli: no Node older than 22 on this machine: the old-Node refusal runs only in test/unit/cli/engines.test.ts\n');
  it.skipIf(!tooOld).each([['run'], ['check'], ['--version'], ['certs', '--help']])('on an old Node, %s exits 2 with one line naming the Node needed', async (...args: string[]) => {
    let code = 0;
    let stderr = '';
    try {
      await run(old as string, [bin, ...args], { cwd: dir });
    } catch (err) {
      const e = err as { code: number; stderr: string };
      code = e.code;
      stderr = e.stderr;
    }
    expect(code).toBe(2);
    expect(stderr).toMatch(/^mtls-sidecar needs Node >=22\.13 \(this is Node v\d+\.\d+\.\d+\): install a supported Node \(22 or 24\) and run it again\n$/);
  });
});
