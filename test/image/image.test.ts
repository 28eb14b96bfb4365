/**
 * The image smoke test: the container image built by `make image` and run as a cluster runs it
 * (user 65532, read-only root, no capabilities, no-new-privileges, config and certificates
 * mounted read-only), over real TLS on loopback with host networking. `make test-image` runs it
 * (its own vitest config: `npx vitest run` does not build images). The Docker engine is started
 * if it is not running (no bridge, no iptables rules); where it cannot start, one line says so
 * and every test counts as skipped, never as passed.
 */
import { execFile, spawn } from 'node:child_process';
import { chmod, chown, mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { openSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import fastJsonPatch from 'fast-json-patch';
import type { Operation } from 'fast-json-patch';
import { Agent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestContext } from 'vitest';
import { parseDocument } from 'yaml';
import { agentFor, call, tryRequest } from '../helpers/client.js';
import { parseProm, value } from '../helpers/prom.js';
import { deadPort, startUpstream } from '../helpers/upstream.js';
import type { Upstream } from '../helpers/upstream.js';
import { until } from '../helpers/wait.js';

type Obj = Record<string, unknown>;
const ROOT = path.resolve(import.meta.dirname, '../..');
const VERSION = (JSON.parse(await readFile(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
const IMAGE = process.env['IMAGE'] ?? `mtls-sidecar:${VERSION}`;
const SIZE_LIMIT = 170_000_000;
// How a cluster runs it (the injector's securityContext), on the host's network.
const SEC = ['--network=host', '--read-only', '--cap-drop=ALL', '--security-opt=no-new-privileges', '--user', '65532:65532'];

interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

function run(cmd: string, args: string[], opts: { stdin?: string; env?: NodeJS.ProcessEnv } = {}): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: ROOT, env: opts.env ?? process.env, stdio: [opts.stdin === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout?.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
    if (child.stdin !== null) {
      // A command that exits without reading all of its input is judged by its exit code, not by EPIPE.
      child.stdin.on('error', () => undefined);
      child.stdin.end(opts.stdin);
    }
  });
}

const docker = (args: string[], stdin?: string): Promise<Ran> => run('docker', args, stdin === undefined ? {} : { stdin });

/** The engine answers, or is started here with host networking only; else why it cannot be. */
async function engine(): Promise<string | null> {
  const info = await docker(['info', '--format', '{{.ServerVersion}}']).catch(() => null);
  if (info === null) return 'no docker CLI';
  if (info.code === 0) return null;
  if (process.getuid?.() !== 0) return 'the engine does not answer and starting dockerd needs root';
  const dockerd = await promisify(execFile)('bash', ['-c', 'command -v dockerd']).then(
    (r) => r.stdout.trim(),
    () => '',
  );
  if (dockerd === '') return 'the engine does not answer and there is no dockerd (apt-get install docker.io)';
  // No bridge, no NAT, no iptables rules: every container here uses --network=host.
  await mkdir(path.join(ROOT, '.tmp'), { recursive: true });
  const log = openSync(path.join(ROOT, '.tmp/dockerd.log'), 'a');
  spawn(dockerd, ['--bridge=none', '--iptables=false', '--ip-masq=false'], { detached: true, stdio: ['ignore', log, log] }).unref();
  const up = await until(async () => (await docker(['info'])).code === 0, 30_000, 200);
  return up ? null : 'dockerd did not answer within 30 s (see .tmp/dockerd.log)';
}

let skipped: string | null = null;
let dir = '';
let certs = '';
let upstream: Upstream | undefined;
const containers: string[] = [];

function guard(ctx: TestContext): void {
  if (skipped !== null) ctx.skip();
}

beforeAll(async () => {
  skipped = await engine();
  if (skipped !== null) {
    process.stdout.write(`image smoke test skipped: the Docker engine cannot start here (${skipped})\n`);
    return;
  }
  const started = Date.now();
  const built = await run('make', ['--no-print-directory', 'image'], { env: { ...process.env, IMAGE } });
  if (built.code !== 0) throw new Error(`make image failed:\n${built.stdout.slice(-4000)}\n${built.stderr.slice(-4000)}`);
  process.stdout.write(`make image: ${IMAGE} in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
  dir = await mkdtemp(path.join(os.tmpdir(), 'image-smoke-'));
  certs = path.join(dir, 'certs');
  await mkdir(certs);
  // The image's user writes the dev PKI, so that it can read the 0600 keys later (as in a pod,
  // where the kubelet gives the Secret's files to the pod's fsGroup).
  if (process.getuid?.() === 0) await chown(certs, 65532, 65532);
  else await chmod(certs, 0o777);
}, 1_200_000);

afterAll(async () => {
  for (const name of containers) await docker(['rm', '-f', name]);
  await upstream?.close();
  if (dir !== '') await rm(dir, { recursive: true, force: true });
});

describe('the image', () => {
  it('is lean: no shell, user 65532, exec-form entrypoint, every served port exposed, under 170 MB', async (ctx) => {
    guard(ctx);
    const inspected = await docker(['image', 'inspect', IMAGE]);
    expect(inspected.code, inspected.stderr).toBe(0);
    const [image] = JSON.parse(inspected.stdout) as [{ Size: number; Config: { User: string; Entrypoint: string[]; ExposedPorts: Obj } }];
    // Soft: each property is reported on its own.
    expect.soft(image.Config.User).toBe('65532:65532');
    expect.soft(image.Config.Entrypoint).toEqual(['/usr/local/bin/node', '/app/dist/main.js']);
    expect.soft(Object.keys(image.Config.ExposedPorts).sort()).toEqual(['8443/tcp', '9901/tcp', '9902/tcp']);
    expect.soft(image.Size).toBeLessThan(SIZE_LIMIT);
    process.stdout.write(`image size: ${(image.Size / 1e6).toFixed(1)} MB\n`);
    for (const tool of ['/bin/sh', '/usr/local/bin/npm', '/usr/bin/apt-get']) {
      const r = await docker(['run', '--rm', ...SEC, '--entrypoint', tool, IMAGE]);
      expect.soft(r.code, `${tool} runs in the image`).not.toBe(0);
    }
    // No headers, no source maps: what is shipped is what runs.
    const maps = await docker(['run', '--rm', ...SEC, '--entrypoint', '/usr/local/bin/node', IMAGE, '-e',
      "const fs=require('fs');console.log(JSON.stringify([['/usr/include','/usr/local/include/node'].some((d)=>fs.existsSync(d)),fs.readdirSync('/app/dist').some((f)=>f.endsWith('.map'))]))"]);
    expect.soft(maps.stdout.trim(), 'headers, source maps').toBe('[false,false]');
  });

  it('--help', async (ctx) => {
    guard(ctx);
    const r = await docker(['run', '--rm', ...SEC, IMAGE, '--help']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^Usage: mtls-sidecar <command>/);
    const w = await docker(['run', '--rm', ...SEC, IMAGE, 'webhook', '--help']);
    expect(w.code, w.stderr).toBe(0);
    expect(w.stdout).toMatch(/^Usage: mtls-sidecar webhook/);
  });

  it('--version', async (ctx) => {
    guard(ctx);
    const r = await docker(['run', '--rm', ...SEC, IMAGE, '--version']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim()).toMatch(new RegExp(`^mtls-sidecar ${VERSION.replace(/\./g, '\\.')} \\(node v24\\.\\d+\\.\\d+\\)$`));
  });

  it('certs writes the dev PKI into a mounted folder as uid 65532', async (ctx) => {
    guard(ctx);
    const r = await docker(['run', '--rm', ...SEC.map((a) => (a === '--network=host' ? '--network=none' : a)), '-v', `${certs}:/certs`, IMAGE, 'certs', '--out', '/certs']);
    expect(r.code, r.stderr).toBe(0);
    const files = (await readdir(certs)).sort();
    expect(files).toEqual(expect.arrayContaining(['ca.crt', 'crl.pem', 'orders.crt', 'orders.key', 'server.crt', 'server.key']));
    const key = await stat(path.join(certs, 'server.key'));
    expect({ uid: key.uid, mode: key.mode & 0o777 }).toEqual({ uid: 65532, mode: 0o600 });
  });
});

describe('the sidecar in the image', () => {
  const name = `mtls-sidecar-smoke-${process.pid}`;
  let port = 0;
  let adminPort = 0;
  let config = '';
  const mounts = (): string[] => ['-v', `${config}:/etc/mtls-sidecar/sidecar.yaml:ro`, '-v', `${certs}:/etc/mtls-sidecar/certs:ro`];

  beforeAll(async () => {
    if (skipped !== null) return;
    upstream = await startUpstream();
    port = await deadPort();
    adminPort = await deadPort();
    config = path.join(dir, 'sidecar.yaml');
    const example = await readFile(path.join(ROOT, 'examples/sidecar.yaml'), 'utf8');
    // The example, on free ports, with the app on the host and the certificates where they are mounted.
    await writeFile(
      config,
      example
        .replaceAll('../certs/', 'certs/')
        .replace('port: 8443', `port: ${port}`)
        .replace('port: 9901', `port: ${adminPort}`)
        .replace('http://127.0.0.1:8080', upstream.url),
    );
  });

  it('check passes on the mounted config', async (ctx) => {
    guard(ctx);
    const r = await docker(['run', '--rm', ...SEC, ...mounts(), IMAGE, 'check', '--config', '/etc/mtls-sidecar/sidecar.yaml']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe('ok');
  });

  it('serves mTLS: a client certificate gets 200 from the app, none is refused; /readyz, /metrics', async (ctx) => {
    guard(ctx);
    const started = Date.now();
    const r = await docker(['run', '-d', '--name', name, ...SEC, ...mounts(), IMAGE, 'run', '--config', '/etc/mtls-sidecar/sidecar.yaml']);
    expect(r.code, r.stderr).toBe(0);
    containers.push(name);
    const ready = await until(async () => (await request(`http://127.0.0.1:${adminPort}/readyz`).then((res) => res.body.text().then(() => res.statusCode), () => 0)) === 200, 30_000, 20);
    if (!ready) throw new Error(`not ready in 30 s:\n${(await docker(['logs', name])).stderr}`);
    process.stdout.write(`sidecar container: docker run -d to /readyz 200 in ${Date.now() - started} ms\n`);

    const orders = { cert: path.join(certs, 'orders.crt'), key: path.join(certs, 'orders.key'), ca: path.join(certs, 'ca.crt') };
    const agent = agentFor(orders);
    try {
      const ok = await call(agent, `https://localhost:${port}`, '/orders/42');
      expect(ok.status).toBe(200);
      expect(ok.json()['url']).toBe('/orders/42');
    } finally {
      await agent.close();
    }
    // No certificate: refused even on the public /healthz route, in the handshake or with the
    // sidecar's unsolicited 400 right after it; nothing reaches the app.
    const seen = upstream?.seen.length;
    const none = await tryRequest(port, { ca: await readFile(orders.ca), servername: 'localhost' });
    expect(none.ok ? none.status : 'refused').not.toBe(200);
    if (none.ok) expect(none.status).toBe(400);
    expect(upstream?.seen.length).toBe(seen);

    const metrics = await request(`http://127.0.0.1:${adminPort}/metrics`);
    expect(metrics.statusCode).toBe(200);
    const text = await metrics.body.text();
    const samples = parseProm(text);
    expect(value(samples, 'mtls_sidecar_requests_total')).toBeGreaterThanOrEqual(1);
    const promtool = await run('bash', ['-c', 'command -v promtool']);
    if (promtool.code === 0) {
      const checked = await run('promtool', ['check', 'metrics'], { stdin: text });
      expect({ code: checked.code, out: `${checked.stdout}${checked.stderr}` }).toEqual({ code: 0, out: '' });
    }
  });

  it('docker stop drains and exits 0, the last audit lines on stdout', async (ctx) => {
    guard(ctx);
    // A request just before SIGTERM: its audit line must still reach stdout before the exit.
    const agent = agentFor({ cert: path.join(certs, 'billing.crt'), key: path.join(certs, 'billing.key'), ca: path.join(certs, 'ca.crt') });
    try {
      expect((await call(agent, `https://localhost:${port}`, '/orders/last')).status).toBe(200);
    } finally {
      await agent.close();
    }
    const stopped = await docker(['stop', '--time', '30', name]);
    expect(stopped.code, stopped.stderr).toBe(0);
    const state = await docker(['inspect', '-f', '{{.State.ExitCode}} {{.Config.User}} {{.HostConfig.ReadonlyRootfs}}', name]);
    expect(state.stdout.trim()).toBe('0 65532:65532 true');
    const logs = await docker(['logs', name]);
    const audit = logs.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Obj);
    // Every request and the refused handshake, audited before the process left.
    expect(audit).toContainEqual(expect.objectContaining({ msg: 'request', identity: 'orders', path: '/orders/42', status: 200 }));
    expect(audit.at(-1)).toMatchObject({ msg: 'request', identity: 'billing', path: '/orders/last', status: 200 });
    expect(audit).toContainEqual(expect.objectContaining({ msg: 'handshake_rejected', reason: 'no_cert' }));
    expect(logs.stderr).toMatch(/"msg":"draining"/);
  });
});

describe('the webhook in the image', () => {
  const name = `mtls-sidecar-webhook-smoke-${process.pid}`;
  let port = 0;
  let adminPort = 0;
  let config = '';

  beforeAll(async () => {
    if (skipped !== null) return;
    port = await deadPort();
    adminPort = await deadPort();
    config = path.join(dir, 'webhook.yaml');
    await writeFile(
      config,
      `version: 1
listen: { address: 127.0.0.1, port: ${port} }
tls: { cert: certs/server.crt, key: certs/server.key }
admin: { address: 127.0.0.1, port: ${adminPort} }
shutdown: { drainDelay: 1s }
`,
    );
  });

  const pod: Obj = {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { generateName: 'orders-7d9f-', namespace: 'shop', labels: { app: 'orders', 'mtls-sidecar.io/inject': 'true' } },
    spec: {
      serviceAccountName: 'orders',
      containers: [{ name: 'orders', image: 'orders:1', ports: [{ name: 'http', containerPort: 8080 }], livenessProbe: { httpGet: { path: '/livez', port: 'http' } } }],
    },
  };

  it('answers an AdmissionReview over HTTPS with the patch that gives what inject gives', async (ctx) => {
    guard(ctx);
    const r = await docker([
      'run', '-d', '--name', name, ...SEC,
      '-v', `${config}:/etc/mtls-sidecar-webhook/webhook.yaml:ro`, '-v', `${certs}:/etc/mtls-sidecar-webhook/certs:ro`,
      IMAGE, 'webhook', '--config', '/etc/mtls-sidecar-webhook/webhook.yaml',
    ]);
    expect(r.code, r.stderr).toBe(0);
    containers.push(name);
    const agent = new Agent({ connect: { ca: await readFile(path.join(certs, 'ca.crt')), servername: 'localhost' } });
    try {
      const healthy = await until(async () => (await request(`https://localhost:${port}/healthz`, { dispatcher: agent }).then((res) => res.body.text().then(() => res.statusCode), () => 0)) === 200, 30_000, 20);
      if (!healthy) throw new Error(`webhook not healthy in 30 s:\n${(await docker(['logs', name])).stderr}`);
      const review = {
        apiVersion: 'admission.k8s.io/v1',
        kind: 'AdmissionReview',
        request: {
          uid: 'smoke-1', kind: { group: '', version: 'v1', kind: 'Pod' }, resource: { group: '', version: 'v1', resource: 'pods' },
          namespace: 'shop', operation: 'CREATE', userInfo: { username: 'system:serviceaccount:kube-system:replicaset-controller' },
          object: pod, dryRun: false,
        },
      };
      const res = await request(`https://localhost:${port}/mutate`, { dispatcher: agent, method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(review) });
      expect(res.statusCode).toBe(200);
      const response = ((await res.body.json()) as Obj)['response'] as Obj;
      expect(response).toMatchObject({ uid: 'smoke-1', allowed: true, patchType: 'JSONPatch' });
      const patch = JSON.parse(Buffer.from(response['patch'] as string, 'base64').toString('utf8')) as Operation[];
      const patched = fastJsonPatch.applyPatch(structuredClone(pod), patch, true, false).newDocument;
      // `inject` in the same image, on the same pod.
      const injected = await docker(['run', '--rm', '-i', ...SEC, IMAGE, 'inject', '--all', '-f', '-'], JSON.stringify(pod));
      expect(injected.code, injected.stderr).toBe(0);
      expect(patched).toEqual(parseDocument(injected.stdout, { version: '1.1' }).toJS());
    } finally {
      await agent.close();
    }
  });

  it('docker stop ends it with exit 0 after the drain', async (ctx) => {
    guard(ctx);
    const stopped = await docker(['stop', '--time', '30', name]);
    expect(stopped.code, stopped.stderr).toBe(0);
    const state = await docker(['inspect', '-f', '{{.State.ExitCode}} {{.HostConfig.ReadonlyRootfs}}', name]);
    expect(state.stdout.trim()).toBe('0 true');
  });
});
