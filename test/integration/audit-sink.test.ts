/**
 * audit.onFull: refuse on real sockets (SPEC §3): while the audit destination (a FIFO whose
 * reader has stopped reading) is full, HTTP/2 and HTTP/1.1 requests get the generic 503
 * refusal with reason audit_unavailable and /readyz is 503; once the reader drains it, both
 * serve again by themselves. The same faults on the real binary: test/cli/cli.test.ts.
 */
import { execFileSync } from 'node:child_process';
import { constants, openSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { request } from 'undici';
import { openAudit } from '../../src/audit/audit.js';
import type { Audit } from '../../src/audit/audit.js';
import { agentFor, call, h2Request } from '../helpers/client.js';
import { parseProm, value } from '../helpers/prom.js';
import { startSidecar } from '../helpers/sidecar.js';
import type { RunningSidecar } from '../helpers/sidecar.js';
import { startUpstream } from '../helpers/upstream.js';
import type { Upstream } from '../helpers/upstream.js';
import { baseConfig, creds } from './config.js';

const pki = inject('pki');
let dir = '';
let app: Upstream;
let sc: RunningSidecar;
let audit: Audit;
let readFd = -1;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'mtls-sidecar-audit-sink-'));
  app = await startUpstream();
  const fifo = path.join(dir, 'audit.fifo');
  execFileSync('mkfifo', [fifo]);
  // The collector: opened (so the sidecar's open does not wait), not read until the test says.
  readFd = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
  audit = await openAudit(fifo, { onFull: 'refuse' });
  sc = await startSidecar(baseConfig(pki, app.url, { audit: { file: fifo, onFull: 'refuse' } }), { audit });
});
afterAll(async () => {
  await sc.close();
  await audit.close(100);
  await app.close();
  await rm(dir, { recursive: true, force: true });
});

async function admin(p: string): Promise<{ status: number; text: string }> {
  const res = await request(`${sc.admin}${p}`, { headersTimeout: 5000, bodyTimeout: 5000 });
  return { status: res.statusCode, text: await res.body.text() };
}

describe('audit.onFull: refuse', () => {
  it('answers 503 service_unavailable (reason audit_unavailable) while the sink is full, and serves again once it drains', async () => {
    const agent = agentFor(creds(pki, 'orders'));
    try {
      expect((await h2Request(sc.origin, creds(pki, 'orders'), '/orders/1')).status).toBe(200);
      // Fill the buffer with ~8 KiB handshake lines (faster than hundreds of requests).
      for (let i = 0; i < 2000 && !audit.refusing; i++) audit.handshake({ reason: 'untrusted', remote: `${i}:${'x'.repeat(8000)}` });
      expect(audit.refusing).toBe(true);

      const h2 = await h2Request(sc.origin, creds(pki, 'orders'), '/orders/2');
      expect(h2.status).toBe(503);
      expect(h2.headers['content-type']).toBe('application/json');
      expect(JSON.parse(h2.body)).toEqual({ error: 'service_unavailable', requestId: expect.any(String) });
      const h1 = await call(agent, sc.origin, '/orders/3');
      expect(h1.status).toBe(503);
      expect(h1.json()).toEqual({ error: 'service_unavailable', requestId: expect.any(String) });

      expect(await admin('/readyz')).toEqual({ status: 503, text: JSON.stringify({ status: 'audit_unavailable' }, null, 2) });
      expect((await admin('/healthz')).status).toBe(200);
      const samples = parseProm((await admin('/metrics')).text);
      expect(value(samples, 'mtls_sidecar_audit_buffered_bytes')).toBeGreaterThan(0);
      // The line that found no room is counted, not waited for (the refusals' shorter lines may still fit).
      expect(value(samples, 'mtls_sidecar_audit_lines_dropped_total')).toBeGreaterThanOrEqual(1);
      expect(samples.some((s) => s.name === 'mtls_sidecar_audit_write_errors_total')).toBe(true);

      // The collector reads again.
      const reader = new net.Socket({ fd: readFd, readable: true, writable: false });
      reader.resume();
      const deadline = Date.now() + 10_000;
      while (audit.refusing && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      expect(audit.refusing).toBe(false);
      expect((await h2Request(sc.origin, creds(pki, 'orders'), '/orders/4')).status).toBe(200);
      expect((await call(agent, sc.origin, '/orders/5')).status).toBe(200);
      expect((await admin('/readyz')).status).toBe(200);
    } finally {
      await agent.close();
    }
  });

  it('a reload that changes audit.onFull keeps the running policy and says a restart is needed', () => {
    const s = sc.sidecar.snapshot;
    const warnings = sc.sidecar.swap({ ...s, audit: { ...s.audit, onFull: 'drop' } });
    expect(warnings).toContain('audit.onFull changed: restart to apply');
    expect(sc.sidecar.snapshot.audit.onFull).toBe('refuse');
  });
});
