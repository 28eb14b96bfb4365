/** The admin port: metrics after real traffic, health, readiness, /config (SPEC §6). */
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import type http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { request } from 'undici';
import type { Agent } from 'undici';
import { agentFor, call, tryRequest, tlsOptions } from '../helpers/client.js';
import { parseProm, value } from '../helpers/prom.js';
import { startSidecar } from '../helpers/sidecar.js';
import type { RunningSidecar } from '../helpers/sidecar.js';
import { startUpstream } from '../helpers/upstream.js';
import type { Upstream } from '../helpers/upstream.js';
import { baseConfig, creds } from './config.js';

const pki = inject('pki');
let app: Upstream;
let sc: RunningSidecar;
let orders: Agent;
let billing: Agent;

beforeAll(async () => {
  app = await startUpstream();
  sc = await startSidecar(baseConfig(pki, app.url));
  orders = agentFor(creds(pki, 'orders'));
  billing = agentFor(creds(pki, 'billing'));
});
afterAll(async () => {
  await Promise.all([orders.close(), billing.close()]);
  await sc.close();
  await app.close();
});

async function get(p: string): Promise<{ status: number; text: string; type: string }> {
  const res = await request(`${sc.admin}${p}`);
  return { status: res.statusCode, text: await res.body.text(), type: String(res.headers['content-type']) };
}

async function scrape(): Promise<ReturnType<typeof parseProm>> {
  const r = await get('/metrics');
  expect(r.status).toBe(200);
  expect(r.type).toMatch(/^text\/plain/);
  return parseProm(r.text);
}

describe('metrics', () => {
  it('counts requests by identity, route, method, code and decision', async () => {
    const before = await scrape();
    const allowed = { identity: 'orders', route: 'read', method: 'GET', code: '200', decision: 'allow' };
    const denied = { identity: 'billing', route: 'write', method: 'POST', code: '403', decision: 'deny' };
    const noRoute = { identity: 'orders', route: 'unknown', method: 'GET', code: '403', decision: 'deny' };
    for (let i = 0; i < 5; i++) expect((await call(orders, sc.origin, `/orders/${i}`)).status).toBe(200);
    for (let i = 0; i < 3; i++) expect((await call(billing, sc.origin, '/orders', { method: 'POST', body: 'x' })).status).toBe(403);
    expect((await call(orders, sc.origin, '/elsewhere')).status).toBe(403);
    const after = await scrape();
    const delta = (labels: Record<string, string>): number =>
      value(after, 'mtls_sidecar_requests_total', labels) - value(before, 'mtls_sidecar_requests_total', labels);
    expect(delta(allowed)).toBe(5);
    expect(delta(denied)).toBe(3);
    expect(delta(noRoute)).toBe(1);
    expect(value(after, 'mtls_sidecar_request_duration_seconds_count', { identity: 'orders', route: 'read' })).toBeGreaterThanOrEqual(5);
    expect(value(after, 'mtls_sidecar_upstream_duration_seconds_count', { route: 'read' })).toBeGreaterThanOrEqual(5);
    // Default process metrics ride along.
    expect(after.some((s) => s.name === 'process_resident_memory_bytes')).toBe(true);
  });

  it('counts handshakes accepted and refused, by reason', async () => {
    const before = await scrape();
    const refuse = async (name: 'expired' | 'foreign' | 'serverAuthOnly'): Promise<void> => {
      const c = pki.clients[name];
      // Refused after the handshake: the unsolicited 400 (SPEC §4), never the app's answer.
      expect(await tryRequest(sc.port, tlsOptions({ cert: c.cert, key: c.key, ca: pki.rootCa.cert }))).toEqual({ ok: true, status: 400 });
    };
    await refuse('expired');
    await refuse('foreign');
    await refuse('serverAuthOnly');
    expect(await tryRequest(sc.port, tlsOptions({ ca: pki.rootCa.cert }))).toEqual({ ok: true, status: 400 });
    await sc.audit.waitFor((l) => l.msg === 'handshake_rejected' && l.reason === 'no_cert');
    const after = await scrape();
    const delta = (reason: string): number =>
      value(after, 'mtls_sidecar_tls_handshakes_total', { result: 'rejected', reason }) -
      value(before, 'mtls_sidecar_tls_handshakes_total', { result: 'rejected', reason });
    expect(delta('expired')).toBe(1);
    expect(delta('untrusted')).toBe(1);
    expect(delta('bad_eku')).toBe(1);
    expect(delta('no_cert')).toBe(1);
    expect(value(after, 'mtls_sidecar_tls_handshakes_total', { result: 'accepted' })).toBeGreaterThan(0);
  });

  it('keeps the series count bounded under random paths, methods and unknown certificates', async () => {
    const stranger = agentFor(creds(pki, 'interClient'), { connections: 8 });
    const known = agentFor(creds(pki, 'orders'), { connections: 8 });
    const methods = ['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD'];
    const fire = async (n: number): Promise<void> => {
      for (let i = 0; i < n; i += 50) {
        await Promise.all(
          Array.from({ length: 50 }, (_, k) =>
            call(k % 2 ? stranger : known, sc.origin, `/r${Math.random().toString(36).slice(2)}/${i + k}`, { method: methods[(i + k) % methods.length] as string }),
          ),
        );
      }
    };
    await fire(200);
    // Only the sidecar's own series: default process metrics (GC kinds, heap spaces) may
    // appear lazily and say nothing about label cardinality.
    const own = async (): Promise<string[]> =>
      (await scrape()).filter((x) => x.name.startsWith('mtls_sidecar_')).map((x) => `${x.name}${JSON.stringify(x.labels)}`);
    const series = await own();
    await fire(10_000);
    expect(await own()).toEqual(series);
    await Promise.all([stranger.close(), known.close()]);
  }, 120_000);

  it('exposes certificate expiry for the server cert and each CA', async () => {
    const s = await scrape();
    const server = s.find((x) => x.name === 'mtls_sidecar_cert_expiry_timestamp_seconds' && x.labels['cert'] === 'server');
    expect(server?.value).toBeGreaterThan(Date.now() / 1000);
    expect(s.some((x) => x.name === 'mtls_sidecar_cert_expiry_timestamp_seconds' && x.labels['cert']?.startsWith('clientCA:'))).toBe(true);
  });

  it('exposes every metric name of SPEC §6', async () => {
    const text = (await get('/metrics')).text;
    for (const name of [
      'mtls_sidecar_requests_total',
      'mtls_sidecar_request_duration_seconds',
      'mtls_sidecar_upstream_duration_seconds',
      'mtls_sidecar_tls_handshakes_total',
      'mtls_sidecar_rate_limited_total',
      'mtls_sidecar_active_connections',
      'mtls_sidecar_cert_expiry_timestamp_seconds',
      'mtls_sidecar_config_reloads_total',
      'mtls_sidecar_config_last_reload_successful',
      'mtls_sidecar_config_last_reload_success_timestamp_seconds',
      'mtls_sidecar_crl_next_update_timestamp_seconds',
    ]) {
      expect(text).toContain(`# TYPE ${name} `);
    }
  });

  it('passes promtool check metrics, lint included, on the whole page (when promtool is installed)', async (ctx) => {
    const promtool = await which('promtool');
    if (promtool === null) return ctx.skip();
    const text = (await get('/metrics')).text;
    expect(text).toContain('# TYPE nodejs_active_handles gauge');
    const dir = await mkdtemp(path.join(os.tmpdir(), 'prom-'));
    const file = path.join(dir, 'metrics.txt');
    await writeFile(file, text);
    try {
      // Exit 0 and silence: a lint problem (a gauge named *_total, a counter without it, ...) is
      // a failure too, not only a format error (SPEC §6: promtool passes on the whole page).
      const out = await promisify(execFile)('bash', ['-c', `promtool check metrics < ${file}`]).then(
        (r) => ({ code: 0, text: `${r.stdout}${r.stderr}` }),
        (err: unknown) => {
          const e = err as { code: number; stdout: string; stderr: string };
          return { code: e.code, text: `${e.stdout}${e.stderr}` };
        },
      );
      expect(out).toEqual({ code: 0, text: '' });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('health and readiness', () => {
  it('/healthz is 200 while the process is alive', async () => {
    expect((await get('/healthz')).status).toBe(200);
  });

  it('/readyz follows the app: 503 when it stops, 200 when it returns', async () => {
    const up = await startUpstream();
    const s = await startSidecar(baseConfig(pki, up.url));
    try {
      expect((await request(`${s.admin}/readyz`)).statusCode).toBe(200);
      const port = up.port;
      await up.close();
      const res = await request(`${s.admin}/readyz`);
      expect(res.statusCode).toBe(503);
      expect(await res.body.json()).toMatchObject({ status: 'upstream_unreachable' });
      const back = await startUpstreamOn(port);
      try {
        expect((await request(`${s.admin}/readyz`)).statusCode).toBe(200);
      } finally {
        await new Promise<void>((r) => back.close(() => r()));
      }
    } finally {
      await s.close();
    }
  });

  it('/readyz is 503 while draining', async () => {
    sc.sidecar.draining = true;
    try {
      expect((await get('/readyz')).status).toBe(503);
    } finally {
      sc.sidecar.draining = false;
    }
  });
});

describe('/config', () => {
  it('shows the effective config with certificate details and never a key', async () => {
    const r = await get('/config');
    expect(r.status).toBe(200);
    const cfg = JSON.parse(r.text) as { tls: { serverCertificate: Array<Record<string, unknown>>; clientCAs: unknown[] }; routes: unknown[] };
    expect(cfg.tls.serverCertificate[0]).toMatchObject({ sha256: `sha256:${pki.server.sha256}` });
    expect(cfg.tls.serverCertificate[0]?.['notAfter']).toMatch(/^\d{4}-/);
    expect(cfg.tls.clientCAs).toHaveLength(1);
    expect(cfg.routes).toHaveLength(3);
    expect(r.text).not.toMatch(/PRIVATE KEY|BEGIN/);
  });

  it('answers unknown paths with 404 and other methods with 405', async () => {
    expect((await get('/nope')).status).toBe(404);
    expect((await request(`${sc.admin}/metrics`, { method: 'POST', body: 'x' })).statusCode).toBe(405);
  });
});

async function which(cmd: string): Promise<string | null> {
  try {
    const { stdout } = await promisify(execFile)('bash', ['-c', `command -v ${cmd}`]);
    return stdout.trim() || null;
  } catch {
    return null;
  }
}

async function startUpstreamOn(port: number): Promise<http.Server> {
  const http = await import('node:http');
  const server = http.createServer((_req, res) => res.end('ok'));
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return server;
}
