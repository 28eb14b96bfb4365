/** Drain (SPEC §7): GOAWAY for HTTP/2, `Connection: close` for HTTP/1.1, in-flight requests finish. */
import http2 from 'node:http2';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { agentFor, call, tlsOptions } from '../helpers/client.js';
import { startSidecar } from '../helpers/sidecar.js';
import { startUpstream } from '../helpers/upstream.js';
import type { Upstream } from '../helpers/upstream.js';
import { until } from '../helpers/wait.js';
import { baseConfig, creds } from './config.js';

const pki = inject('pki');
let slow: Upstream;

beforeAll(async () => {
  slow = await startUpstream((req, res) => {
    const ms = req.url?.includes('slow') ? 600 : 0;
    setTimeout(() => res.end('done'), ms).unref();
  });
});
afterAll(async () => {
  await slow.close();
});

it('lets in-flight requests finish, sends GOAWAY to HTTP/2 and closes HTTP/1.1 after the response', async () => {
  const sc = await startSidecar(baseConfig(pki, slow.url));
  const h1 = agentFor(creds(pki, 'orders'));
  const session = http2.connect(sc.origin, tlsOptions(creds(pki, 'orders')));
  let goaway = false;
  session.on('goaway', () => (goaway = true));
  session.on('error', () => undefined);
  try {
    // Warm both connections so they exist before the drain starts.
    expect((await call(h1, sc.origin, '/orders/1')).status).toBe(200);
    const before = slow.seen.length;
    const h2slow = new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = session.request({ ':path': '/orders/slow-h2' });
      let status = 0;
      let body = '';
      req.on('response', (h) => (status = Number(h[':status'])));
      req.setEncoding('utf8');
      req.on('data', (c: string) => (body += c));
      req.on('end', () => resolve({ status, body }));
      req.on('error', reject);
      req.end();
    });
    const h1slow = call(h1, sc.origin, '/orders/slow-h1');
    // Drain only once the app holds both (each for 600 ms): then they are in flight.
    expect(await until(() => slow.seen.slice(before).filter((r) => r.url.includes('slow')).length === 2, 5000)).toBe(true);
    const closing = sc.sidecar.close(5000);
    const [a, b] = await Promise.all([h2slow, h1slow]);
    expect(a).toEqual({ status: 200, body: 'done' });
    expect(b.status).toBe(200);
    expect(b.headers['connection']).toBe('close');
    expect(goaway).toBe(true);
    await closing;
    expect(sc.audit.requests().filter((l) => String(l['path']).includes('slow'))).toHaveLength(2);
  } finally {
    session.destroy();
    await h1.close().catch(() => undefined);
    await sc.close();
  }
});
