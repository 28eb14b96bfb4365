/** What reaches the app and what comes back: headers, bodies, limits, upstream failures (SPEC §4). */
import net from 'node:net';
import { Readable } from 'node:stream';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { Agent } from 'undici';
import { agentFor, call, h2Request, parseResponses, rawExchange, rawRequest, tlsOptions } from '../helpers/client.js';
import { startSidecar } from '../helpers/sidecar.js';
import type { RunningSidecar } from '../helpers/sidecar.js';
import { deadPort, startUpstream, echo } from '../helpers/upstream.js';
import type { Upstream } from '../helpers/upstream.js';
import { nativeTimerFires, until } from '../helpers/wait.js';
import { baseConfig, creds } from './config.js';

const pki = inject('pki');
let app: Upstream;
let sc: RunningSidecar;
let orders: Agent;

beforeAll(async () => {
  app = await startUpstream();
  sc = await startSidecar(baseConfig(pki, app.url, { limits: { maxBodySize: '64KiB' } }));
  orders = agentFor(creds(pki, 'orders'));
});
afterAll(async () => {
  await orders.close();
  await sc.close();
  await app.close();
});

const c = (): ReturnType<typeof creds> => creds(pki, 'orders');

describe('identity headers cannot be spoofed', () => {
  it('replaces client-sent XFCC, identity, scopes, forwarded and jwt headers', async () => {
    const res = await call(orders, sc.origin, '/orders/1', {
      headers: {
        'x-forwarded-client-cert': 'Hash=deadbeef;URI=spiffe://evil',
        'x-client-identity': 'admin',
        'x-client-scopes': 'everything',
        'x-forwarded-for': '10.9.9.9',
        forwarded: 'for=10.9.9.9',
        'x-jwt-sub': 'root',
        x_client_identity: 'admin',
      },
    });
    expect(res.status).toBe(200);
    const h = res.json<{ headers: Record<string, string> }>().headers;
    expect(h['x-client-identity']).toBe('orders');
    expect(h['x-client-scopes']).toBe('orders:read orders:write');
    expect(h['x-forwarded-client-cert']).not.toContain('evil');
    expect(h['x-forwarded-for']).toBe('127.0.0.1');
    expect(h['forwarded']).toBeUndefined();
    expect(h['x-jwt-sub']).toBeUndefined();
    expect(h['x_client_identity']).toBeUndefined();
  });

  it("does not let the client's Connection header remove the sidecar's headers", async () => {
    const raw = await rawRequest(
      sc.port,
      c(),
      'GET /orders/1 HTTP/1.1\r\nHost: localhost\r\nConnection: close, x-client-identity, x-forwarded-client-cert, x-client-scopes\r\nX-Custom: 1\r\n\r\n',
    );
    expect(raw.status).toBe(200);
    const seen = app.seen.at(-1);
    expect(seen?.headers['x-client-identity']).toBe('orders');
    expect(seen?.headers['x-forwarded-client-cert']).toMatch(/^Hash=/);
    expect(seen?.headers['connection']).not.toMatch(/x-client/);
  });

  it('drops hop-by-hop headers and headers named by Connection', async () => {
    await rawRequest(sc.port, c(), 'GET /orders/1 HTTP/1.1\r\nHost: localhost\r\nConnection: close, x-secret-hop\r\nX-Secret-Hop: 1\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nUpgrade: websocket\r\n\r\n');
    const seen = app.seen.at(-1);
    expect(seen?.headers['x-secret-hop']).toBeUndefined();
    expect(seen?.headers['keep-alive']).toBeUndefined();
    expect(seen?.headers['te']).toBeUndefined();
    expect(seen?.headers['upgrade']).toBeUndefined();
  });

  it('keeps a well-formed x-request-id and traceparent, replaces a malformed id', async () => {
    const tp = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
    const ok = await call(orders, sc.origin, '/orders/1', { headers: { 'x-request-id': 'abc-123.DEF', traceparent: tp } });
    expect(ok.headers['x-request-id']).toBe('abc-123.DEF');
    const h = ok.json<{ headers: Record<string, string> }>().headers;
    expect(h['x-request-id']).toBe('abc-123.DEF');
    expect(h['traceparent']).toBe(tp);
    const bad = await call(orders, sc.origin, '/orders/1', { headers: { 'x-request-id': 'bad id with spaces' } });
    expect(bad.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
  });
});

describe('request smuggling and ambiguity', () => {
  const dup = (header: string): string =>
    `GET /orders/1 HTTP/1.1\r\nHost: localhost\r\n${header}\r\n${header}\r\nConnection: close\r\n\r\n`;

  it('refuses duplicate Host with 400', async () => {
    const raw = await rawExchange(sc.port, c(), 'GET /orders/1 HTTP/1.1\r\nHost: localhost\r\nHost: evil\r\nConnection: close\r\n\r\n');
    expect(raw.slice(9, 12)).toBe('400');
  });

  it('refuses duplicate Authorization with 400 and audits bad_request', async () => {
    const before = app.seen.length;
    const res = await rawRequest(sc.port, c(), dup('Authorization: Bearer a'));
    expect(res.status).toBe(400);
    expect(app.seen.length).toBe(before);
    const id = /x-request-id: ([^\r]+)/i.exec(res.head)?.[1];
    await sc.audit.waitFor((l) => l.requestId === id && l.reason === 'bad_request');
  });

  it('refuses duplicate Content-Length with 400', async () => {
    const raw = await rawExchange(sc.port, c(), 'POST /orders HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx');
    expect(raw.slice(9, 12)).toBe('400');
  });

  it('refuses Content-Length with Transfer-Encoding (Node strict parser) with 400', async () => {
    const raw = await rawExchange(sc.port, c(), 'POST /orders HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n');
    expect(raw.slice(9, 12)).toBe('400');
  });

  it('answers pipelined requests in order, each authorized on its own', async () => {
    const raw = await rawExchange(
      sc.port,
      creds(pki, 'billing'),
      'GET /orders/1 HTTP/1.1\r\nHost: localhost\r\n\r\nDELETE /orders/1 HTTP/1.1\r\nHost: localhost\r\n\r\nGET /orders/2 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n',
    );
    expect(parseResponses(raw).map((r) => r.status)).toEqual([200, 403, 200]);
  });
});

describe('limits', () => {
  it('refuses a declared body over maxBodySize with 413 before the app sees it', async () => {
    const before = app.seen.length;
    const res = await call(orders, sc.origin, '/orders', { method: 'POST', body: Buffer.alloc(70 * 1024, 97) });
    expect(res.status).toBe(413);
    expect(app.seen.length).toBe(before);
    await sc.audit.waitFor((l) => l.requestId === res.headers['x-request-id'] && l.reason === 'body_too_large');
  });

  it('refuses a chunked body that grows past maxBodySize with 413', async () => {
    const chunk = Buffer.alloc(16 * 1024, 98);
    const body = Readable.from((function* () {
      for (let i = 0; i < 8; i++) yield chunk;
    })());
    const { request } = await import('undici');
    const res = await request(`${sc.origin}/orders`, { dispatcher: orders, method: 'POST', body });
    await res.body.dump();
    expect(res.statusCode).toBe(413);
  });

  it('forwards a body under the limit intact, streamed both ways', async () => {
    const payload = Buffer.alloc(60 * 1024, 99);
    const res = await call(orders, sc.origin, '/orders', { method: 'POST', body: payload });
    expect(res.status).toBe(200);
    expect(res.json<{ bodyLength: number }>().bodyLength).toBe(payload.length);
    await sc.audit.waitFor((l) => l.requestId === res.headers['x-request-id'] && l.bytesIn === payload.length);
  });

  it('streams a large response without changing it', async () => {
    const big = Buffer.alloc(4 * 1024 * 1024, 120);
    app.handler = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': big.length });
      res.end(big);
    };
    try {
      const res = await call(orders, sc.origin, '/orders/big');
      expect(res.status).toBe(200);
      expect(res.text.length).toBe(big.length);
      await sc.audit.waitFor((l) => l.requestId === res.headers['x-request-id'] && l.bytesOut === big.length);
    } finally {
      app.handler = echo;
    }
  });
});

describe('Expect: 100-continue', () => {
  function expectContinue(cred: ReturnType<typeof creds>, method: string): Promise<string> {
    return new Promise((resolve, reject) => {
      let data = '';
      let bodySent = false;
      const s = tls.connect({ host: '127.0.0.1', port: sc.port, ...tlsOptions(cred) }, () => {
        s.write(`${method} /orders HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n`);
      });
      s.on('data', (chunk: Buffer) => {
        data += chunk.toString('latin1');
        // Send the body only once told to continue, like curl does.
        if (data.startsWith('HTTP/1.1 100') && !bodySent) {
          s.write('{}');
          bodySent = true;
        }
      });
      s.on('close', () => resolve(data));
      s.on('error', reject);
    });
  }

  it('is answered 100 only after authorization', async () => {
    const allowed = await expectContinue(c(), 'POST');
    expect(allowed.startsWith('HTTP/1.1 100 Continue')).toBe(true);
    expect(allowed).toContain('HTTP/1.1 200');
    const refused = await expectContinue(creds(pki, 'billing'), 'POST');
    expect(refused.startsWith('HTTP/1.1 403')).toBe(true);
    expect(refused).not.toContain('100 Continue');
  });
});

describe('HTTP/2', () => {
  it('serves an HTTP/2 client with the same identity headers', async () => {
    const res = await h2Request(sc.origin, c(), '/orders/9');
    expect(res.alpn).toBe('h2');
    expect(res.status).toBe(200);
    const seen = JSON.parse(res.body) as { headers: Record<string, string>; url: string };
    expect(seen.url).toBe('/orders/9');
    expect(seen.headers['x-client-identity']).toBe('orders');
    expect(seen.headers['host']).toBe(`localhost:${sc.port}`);
    await sc.audit.waitFor((l) => l.requestId === res.headers['x-request-id'] && l.protocol === 'HTTP/2');
  });

  it('refuses over HTTP/2 as over HTTP/1.1', async () => {
    const res = await h2Request(sc.origin, creds(pki, 'billing'), '/nowhere');
    expect(res.status).toBe(403);
    expect(JSON.parse(res.body)).toMatchObject({ error: 'forbidden' });
  });
});

describe('security headers', () => {
  it('adds them unless the app set its own', async () => {
    app.handler = (_req, res) => {
      res.writeHead(200, { 'x-frame-options': 'SAMEORIGIN', 'content-length': 2 });
      res.end('ok');
    };
    try {
      const res = await call(orders, sc.origin, '/orders/1');
      expect(res.headers['x-frame-options']).toBe('SAMEORIGIN');
      expect(res.headers['strict-transport-security']).toMatch(/max-age=/);
      expect(res.headers['referrer-policy']).toBe('no-referrer');
      expect(res.headers['cache-control']).toBeUndefined();
    } finally {
      app.handler = echo;
    }
  });
});

describe('upstream failures', () => {
  it('answers 502 when the app is down', async () => {
    const down = await startSidecar(baseConfig(pki, `http://127.0.0.1:${await deadPort()}`));
    const agent = agentFor(c());
    try {
      const res = await call(agent, down.origin, '/orders/1');
      expect(res.status).toBe(502);
      expect(res.json()).toMatchObject({ error: 'bad_gateway' });
      await down.audit.waitFor((l) => l.requestId === res.headers['x-request-id'] && l.reason === 'upstream_unreachable' && l.decision === 'allow');
    } finally {
      await agent.close();
      await down.close();
    }
  });

  it('answers 502 when the app drops mid-way through a Content-Length body (the body goes to undici unmetered)', async () => {
    // The app reads the head and some body, then closes its socket: the sidecar's upload to it fails.
    let dropped = false;
    const dropper = net.createServer((sock) => {
      let seen = 0;
      sock.on('data', (d: Buffer) => {
        seen += d.length;
        if (seen > 2000) {
          dropped = true;
          sock.destroy();
        }
      });
      sock.on('error', () => undefined);
    });
    await new Promise<void>((resolve) => dropper.listen(0, '127.0.0.1', resolve));
    const port = (dropper.address() as net.AddressInfo).port;
    const s = await startSidecar(baseConfig(pki, `http://127.0.0.1:${port}`));
    try {
      const sock = tls.connect({ ...tlsOptions(c()), host: '127.0.0.1', port: s.port, servername: 'localhost', ALPNProtocols: ['http/1.1'] });
      await new Promise<void>((resolve, reject) => {
        sock.once('secureConnect', () => resolve());
        sock.once('error', reject);
      });
      let received = '';
      sock.on('data', (d: Buffer) => (received += d.toString('latin1')));
      sock.on('error', () => undefined);
      sock.write(`POST /orders HTTP/1.1\r\nHost: localhost\r\nContent-Length: 40000\r\n\r\n${'a'.repeat(4000)}`);
      // The rest of the body only once the app has dropped the upload.
      expect(await until(() => dropped, 3000)).toBe(true);
      sock.write('b'.repeat(36000));
      await until(() => received.includes('\r\n\r\n{'), 3000);
      sock.destroy();
      const replies = parseResponses(received);
      expect(replies[0]?.status).toBe(502);
      await s.audit.waitFor((l) => l.msg === 'request' && l.status === 502 && String(l.reason).startsWith('upstream_'));
    } finally {
      await s.close();
      await new Promise<void>((resolve) => dropper.close(() => resolve()));
    }
  });

  it('answers 504 when the app is too slow', async () => {
    const slow = await startUpstream((_req, res) => {
      setTimeout(() => res.end('late'), 1500).unref();
    });
    const s = await startSidecar(baseConfig(pki, slow.url, { upstream: { url: slow.url, timeout: '300ms' } }));
    const agent = agentFor(c());
    try {
      const res = await call(agent, s.origin, '/orders/1');
      expect(res.status).toBe(504);
      expect(res.json()).toMatchObject({ error: 'gateway_timeout' });
      await s.audit.waitFor((l) => l.requestId === res.headers['x-request-id'] && l.reason === 'upstream_timeout');
    } finally {
      await agent.close();
      await s.close();
      await slow.close();
    }
  });

  it('answers that 504 when upstream.timeout is due, not later (1.5 s: undici alone fired it ~0.5 s late)', async () => {
    // The app answers the warm-up and never the request that is timed.
    const stalled = await startUpstream((req, res) => {
      if (req.url === '/orders/warm') echo(req, res, Buffer.alloc(0));
    });
    const s = await startSidecar(baseConfig(pki, stalled.url, { upstream: { url: stalled.url, timeout: '1500ms' } }));
    const agent = agentFor(c());
    try {
      // The TLS handshake and the app connection are made before the clock starts.
      expect((await call(agent, s.origin, '/orders/warm')).status).toBe(200);
      const t0 = performance.now();
      const native = nativeTimerFires(1_500);
      const res = await call(agent, s.origin, '/orders/stalled');
      const end = performance.now();
      expect(res.status).toBe(504);
      // Never early (1 ms: the timer clock's resolution); late only as a native timer armed at
      // the same moment is (the event loop's lag on a busy machine), plus the way back.
      expect(end - t0).toBeGreaterThanOrEqual(1_499);
      expect(end - (await native)).toBeLessThan(250);
      await s.audit.waitFor((l) => l.requestId === res.headers['x-request-id'] && l.reason === 'upstream_timeout');
    } finally {
      await agent.close();
      await s.close();
      await stalled.close();
    }
  });
});
