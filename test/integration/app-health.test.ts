/**
 * A probe rewritten by `inject` reaches the app through the admin port's /app-health/ handler,
 * on real loopback sockets: the path and headers the app sees, status pass-through, timeouts,
 * an app that is down, HTTPS apps, and nothing but the exact recorded paths.
 */
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { appHealthFromEnv } from '../../src/admin/app-health.js';
import type { AppHealthHandler } from '../../src/admin/app-health.js';
import { injectManifests } from '../../src/inject/documents.js';
import { DEFAULT_SETTINGS } from '../../src/inject/settings.js';
import { deadPort, startUpstream } from '../helpers/upstream.js';
import type { Upstream } from '../helpers/upstream.js';

const pki = inject('pki');
let app: Upstream;
let tlsApp: https.Server;
let tlsSeen: string[] = [];
let admin: http.Server;
let adminUrl = '';
let env = '';
const rewritten: Record<string, string> = {};

function manifest(appPort: number, tlsPort: number): string {
  return `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata:
      labels: {app: web, mtls-sidecar.io/inject: "true"}
    spec:
      containers:
      - name: web
        image: web:1
        ports: [{name: http, containerPort: ${appPort}}]
        livenessProbe:
          httpGet:
            path: /healthz
            port: http
            httpHeaders: [{name: X-Probe, value: live}]
        readinessProbe:
          httpGet: {path: /ready, port: ${appPort}}
        startupProbe:
          tcpSocket: {port: ${appPort}}
      - name: slow
        image: slow:1
        livenessProbe:
          httpGet: {path: /slow, port: ${appPort}}
          timeoutSeconds: 1
        readinessProbe:
          httpGet: {path: /moved, port: ${appPort}}
      - name: secure
        image: secure:1
        livenessProbe:
          httpGet: {path: /tls-health, port: ${tlsPort}, scheme: HTTPS}
`;
}

beforeAll(async () => {
  app = await startUpstream((req, res) => {
    if (req.url === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain', 'x-app': 'yes' });
      res.end('alive');
    } else if (req.url === '/ready') {
      res.writeHead(503, { 'content-type': 'text/plain' });
      res.end('warming up');
    } else if (req.url === '/moved') {
      res.writeHead(302, { location: '/login' });
      res.end();
    } else if (req.url === '/slow') {
      setTimeout(() => res.end('late'), 3000).unref();
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  tlsApp = https.createServer({ cert: readFileSync(pki.server.cert), key: readFileSync(pki.server.key) }, (req, res) => {
    tlsSeen.push(req.url ?? '');
    res.end('tls ok');
  });
  await new Promise<void>((resolve) => tlsApp.listen(0, '127.0.0.1', resolve));

  // The injector's output is the only source of truth for what the sidecar forwards.
  const result = injectManifests(manifest(app.port, (tlsApp.address() as AddressInfo).port), { settings: DEFAULT_SETTINGS, policy: 'label' });
  if (!result.ok) throw new Error(result.error);
  const docs = parseAllDocuments(result.output, { version: '1.1' });
  if ('empty' in docs) throw new Error('no output');
  const deployment = docs[0]?.toJS() as { spec: { template: { spec: { initContainers: { name: string; env?: { name: string; value: string }[] }[]; containers: Record<string, { httpGet?: { path: string; port: number } } | string>[] } } } };
  const spec = deployment.spec.template.spec;
  env = spec.initContainers.find((c) => c.name === 'mtls-sidecar')?.env?.find((e) => e.name === 'MTLS_SIDECAR_APP_PROBES')?.value ?? '';
  for (const c of spec.containers) {
    for (const kind of ['livenessProbe', 'readinessProbe', 'startupProbe']) {
      const probe = c[kind];
      if (typeof probe === 'object' && probe.httpGet) {
        expect(probe.httpGet.port).toBe(9901);
        rewritten[`${c['name'] as string}/${kind}`] = probe.httpGet.path;
      }
    }
  }

  const handler = appHealthFromEnv({ MTLS_SIDECAR_APP_PROBES: env });
  if (!handler.ok || handler.handler === null) throw new Error('no handler');
  const h: AppHealthHandler = handler.handler;
  // Mounted the way the admin server mounts it: first, and anything it declines is a 404.
  admin = http.createServer((req, res) => {
    if (h(req, res)) return;
    res.writeHead(404, { 'content-type': 'application/json' });
    res.end('{"error":"not_found"}');
  });
  await new Promise<void>((resolve) => admin.listen(0, '127.0.0.1', resolve));
  adminUrl = `http://127.0.0.1:${(admin.address() as AddressInfo).port}`;
});

afterAll(async () => {
  admin.closeAllConnections();
  tlsApp.closeAllConnections();
  await Promise.all([new Promise((r) => admin.close(r)), new Promise((r) => tlsApp.close(r)), app.close()]);
});

async function probe(path: string, init: { method?: string; headers?: Record<string, string> } = {}): Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    // Options, not a URL: the path goes on the wire exactly as written (no dot-segment removal).
    const { hostname, port } = new URL(adminUrl);
    const req = http.request({ hostname, port, path, method: init.method ?? 'GET', headers: { 'user-agent': 'kube-probe/1.31', ...init.headers }, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString(), headers: res.headers }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('app-health forwarding', () => {
  it('rewrote every HTTP and TCP probe to /app-health/<container>/<probe> on the admin port', () => {
    expect(rewritten).toEqual({
      'web/livenessProbe': '/app-health/web/livez',
      'web/readinessProbe': '/app-health/web/readyz',
      'web/startupProbe': '/app-health/web/startupz',
      'slow/livenessProbe': '/app-health/slow/livez',
      'slow/readinessProbe': '/app-health/slow/readyz',
      'secure/livenessProbe': '/app-health/secure/livez',
    });
  });

  it("forwards to the app's original path on loopback, with the probe's headers and the kubelet's user agent", async () => {
    const before = app.seen.length;
    const r = await probe('/app-health/web/livez?ignored=1');
    expect(r.status).toBe(200);
    expect(r.body).toBe('alive');
    expect(r.headers['x-app']).toBeUndefined(); // only the status and a bounded body come back
    const seen = app.seen.slice(before);
    expect(seen).toHaveLength(1);
    expect(seen[0]?.method).toBe('GET');
    expect(seen[0]?.url).toBe('/healthz');
    expect(seen[0]?.headers['x-probe']).toBe('live');
    expect(seen[0]?.headers['user-agent']).toBe('kube-probe/1.31');
    expect(seen[0]?.headers['host']).toBe(`127.0.0.1:${app.port}`);
  });

  it("passes the app's status through: 503 stays unhealthy, a redirect stays a success without its Location", async () => {
    const ready = await probe('/app-health/web/readyz');
    expect(ready.status).toBe(503);
    expect(ready.body).toBe('warming up');
    const moved = await probe('/app-health/slow/readyz');
    expect(moved.status).toBe(302);
    expect(moved.headers['location']).toBeUndefined();
  });

  it('answers HEAD without a body and refuses other methods', async () => {
    const head = await probe('/app-health/web/livez', { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.body).toBe('');
    expect((await probe('/app-health/web/livez', { method: 'POST' })).status).toBe(405);
  });

  it('checks a TCP probe by connecting', async () => {
    expect((await probe('/app-health/web/startupz')).status).toBe(200);
  });

  it("reaches an HTTPS app without verifying its certificate, as the kubelet does", async () => {
    tlsSeen = [];
    const r = await probe('/app-health/secure/livez');
    expect(r.status).toBe(200);
    expect(r.body).toBe('tls ok');
    expect(tlsSeen).toEqual(['/tls-health']);
  });

  it("gives up after the probe's timeoutSeconds with 503", async () => {
    const started = performance.now();
    const r = await probe('/app-health/slow/livez');
    const took = performance.now() - started;
    expect(r.status).toBe(503);
    expect(JSON.parse(r.body)).toEqual({ error: 'app_timeout' });
    expect(took).toBeGreaterThanOrEqual(950);
    expect(took).toBeLessThan(2500);
  });

  it('handles only the exact recorded paths', async () => {
    const before = app.seen.length;
    for (const path of [
      '/app-health/web/livez/',
      '/app-health/web/livez/x',
      '/app-health/web/../web/livez',
      '/app-health/web/%6Civez',
      '/app-health/WEB/livez',
      '/app-health/other/livez',
      '/app-health/web/metrics',
      '/app-health/',
      '/app-health/web/livez%00',
      '//app-health/web/livez',
    ]) {
      const r = await probe(path);
      expect(r.status, path).toBe(404);
    }
    expect(app.seen.length).toBe(before);
  });

  it('says 503 when the app is down', async () => {
    const port = await deadPort();
    // A timeout far beyond the refused connection: on a starved event loop an expired 1 s timer
    // runs before the connection's error is read, and the answer would be app_timeout.
    const h = appHealthFromEnv({
      MTLS_SIDECAR_APP_PROBES: JSON.stringify({
        '/app-health/a/livez': { httpGet: { path: '/', port }, timeoutSeconds: 10 },
        '/app-health/a/readyz': { tcpSocket: { port }, timeoutSeconds: 10 },
      }),
    });
    if (!h.ok || h.handler === null) throw new Error('no handler');
    const handler = h.handler;
    const server = http.createServer((req, res) => {
      if (!handler(req, res)) res.writeHead(404).end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      for (const p of ['/app-health/a/livez', '/app-health/a/readyz']) {
        const res = await fetch(`${base}${p}`);
        expect(res.status).toBe(503);
        expect(await res.json()).toEqual({ error: 'app_unreachable' });
      }
    } finally {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });
});
