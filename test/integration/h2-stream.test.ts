/**
 * HTTP/2, the whole pipeline on real h2 streams over mTLS, on both engines: the sidecar's own
 * framing (transport/h2/, the default) and node:http2's core stream API (transport/h2-node.ts,
 * MTLS_SIDECAR_HTTP2=node), with node:http2's compat layer provably out of the path.
 */
import http2 from 'node:http2';
import { Readable } from 'node:stream';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { agentFor, call, tlsOptions } from '../helpers/client.js';
import { startSidecar } from '../helpers/sidecar.js';
import type { RunningSidecar } from '../helpers/sidecar.js';
import { echo, startUpstream } from '../helpers/upstream.js';
import * as F from '../adversarial/h2frames.js';
import type { Upstream } from '../helpers/upstream.js';
import { baseConfig, creds } from './config.js';

const pki = inject('pki');
let app: Upstream;
let sc: RunningSidecar;
let session: http2.ClientHttp2Session;


interface H2Reply {
  status: number;
  headers: http2.IncomingHttpHeaders;
  body: Buffer;
}

function exchange(headers: http2.OutgoingHttpHeaders, body?: Buffer): Promise<H2Reply> {
  return new Promise((resolve, reject) => {
    const req = session.request(headers, { endStream: body === undefined });
    const chunks: Buffer[] = [];
    let resHeaders: http2.IncomingHttpHeaders = {};
    req.on('response', (h) => (resHeaders = h));
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve({ status: Number(resHeaders[':status']), headers: resHeaders, body: Buffer.concat(chunks) }));
    req.on('error', reject);
    if (body !== undefined) req.end(body);
  });
}

describe.each(['own', 'node'] as const)('HTTP/2 (%s engine)', (engine) => {
  beforeAll(async () => {
    const before = process.env['MTLS_SIDECAR_HTTP2'];
    process.env['MTLS_SIDECAR_HTTP2'] = engine;
    app = await startUpstream();
    sc = await startSidecar(baseConfig(pki, app.url));
    if (before === undefined) delete process.env['MTLS_SIDECAR_HTTP2'];
    else process.env['MTLS_SIDECAR_HTTP2'] = before;
    session = http2.connect(sc.origin, tlsOptions(creds(pki, 'orders')));
    session.on('error', () => undefined);
  });
  afterAll(async () => {
    session.close();
    await sc.close();
    await app.close();
  });

  it('node:http2: the listener has one stream listener, the sidecar\'s, and no compat bridge; own: no node:http2 server at all', () => {
    expect(sc.sidecar.server.listenerCount('stream')).toBe(engine === 'node' ? 1 : 0);
    expect(sc.sidecar.server.listenerCount('request')).toBe(0);
  });

  it('a GET reaches the app with identity headers and comes back with the sidecar\'s headers, audited as HTTP/2', async () => {
    const res = await exchange({ ':path': '/orders/7?q=1', ':method': 'GET' });
    expect(res.status).toBe(200);
    const seen = JSON.parse(res.body.toString()) as { url: string; headers: Record<string, string> };
    expect(seen.url).toBe('/orders/7?q=1');
    expect(seen.headers['x-client-identity']).toBe('orders');
    expect(seen.headers['x-forwarded-client-cert']).toMatch(/^Hash=[0-9a-f]{64};Subject="CN=orders/);
    expect(res.headers['x-content-type-options']).toBe('nosniff');
    expect(res.headers['connection']).toBeUndefined();
    const id = res.headers['x-request-id'] as string;
    const line = await sc.audit.waitFor((l) => l.requestId === id);
    expect(line).toMatchObject({ protocol: 'HTTP/2', status: 200, decision: 'allow', reason: 'ok', route: 'read', path: '/orders/7' });
  });

  it('200 concurrent bodiless GETs on one session: each answered, audited once, and its stream closed', async () => {
    // The pipeline leaves a bodiless HTTP/2 request unread (Node dumps it at close); every stream must still close.
    const replies = await Promise.all(Array.from({ length: 200 }, (_, i) => exchange({ ':path': `/orders/${i}`, ':method': 'GET' })));
    expect(replies.every((r) => r.status === 200)).toBe(true);
    const ids = new Set(replies.map((r) => r.headers['x-request-id'] as string));
    for (const id of ids) await sc.audit.waitFor((l) => l.requestId === id);
    expect(sc.audit.lines.filter((l) => ids.has(l.requestId as string)).length).toBe(200);
  });

  it('a POST body streams to the app intact and is counted', async () => {
    const body = Buffer.alloc(100_000, 7);
    const res = await exchange({ ':path': '/orders', ':method': 'POST', 'content-type': 'application/octet-stream' }, body);
    expect(res.status).toBe(200);
    expect((JSON.parse(res.body.toString()) as { bodyLength: number }).bodyLength).toBe(body.length);
    const line = await sc.audit.waitFor((l) => l.requestId === res.headers['x-request-id']);
    expect(line).toMatchObject({ bytesIn: body.length, protocol: 'HTTP/2' });
  });

  it('a POST with content-length reaches the app intact, and is audited with its length', async () => {
    const body = Buffer.alloc(4096, 9);
    const res = await exchange({ ':path': '/orders', ':method': 'POST', 'content-length': String(body.length) }, body);
    expect(res.status).toBe(200);
    const seen = JSON.parse(res.body.toString()) as { bodyLength: number; headers: Record<string, string> };
    expect(seen.bodyLength).toBe(body.length);
    expect(seen.headers['content-length']).toBe(String(body.length));
    const line = await sc.audit.waitFor((l) => l.requestId === res.headers['x-request-id']);
    expect(line).toMatchObject({ bytesIn: body.length, status: 200 });
  });

  it('HTTP/1.1: a Content-Length body is audited with its length, a chunked one with what was metered', async () => {
    const agent = agentFor(creds(pki, 'orders'));
    try {
      const fixed = await call(agent, sc.origin, '/orders', { method: 'POST', body: Buffer.alloc(5000, 1) });
      expect(fixed.json<{ bodyLength: number }>().bodyLength).toBe(5000);
      const a = await sc.audit.waitFor((l) => l.requestId === fixed.headers['x-request-id']);
      expect(a).toMatchObject({ bytesIn: 5000, protocol: 'HTTP/1.1' });
      // A stream body with no length: undici sends it chunked.
      const chunked = await request(`${sc.origin}/orders`, { dispatcher: agent, method: 'POST', body: Readable.from([Buffer.alloc(1000, 2), Buffer.alloc(234, 3)]) });
      expect(((await chunked.body.json()) as { bodyLength: number }).bodyLength).toBe(1234);
      const b = await sc.audit.waitFor((l) => l.requestId === chunked.headers['x-request-id']);
      expect(b).toMatchObject({ bytesIn: 1234 });
    } finally {
      await agent.close();
    }
  });

  it('cookie crumbs reach the app as one Cookie line (RFC 9113 8.2.3)', async () => {
    const res = await exchange({ ':path': '/orders/cookies', ':method': 'GET', cookie: ['a=1', 'b=2', 'c=3'] });
    expect(res.status).toBe(200);
    const raw = app.seen.at(-1)?.rawHeaders ?? [];
    // One line on both engines (node:http2 hands the crumbs on one by one): the header scan joins them for the HTTP/1.1 hop.
    expect(raw.filter((_, i) => i % 2 === 1 && raw[i - 1]?.toLowerCase() === 'cookie')).toEqual(['a=1; b=2; c=3']);
  });

  // The review's mutation check: with the scan's duplicate Content-Length check deleted
  // (proxy/headers.ts), the own engine forwarded a same-value pair; llhttp only guards HTTP/1.1.
  it.each([
    ['the same value twice', '5', '5'],
    ['two different values', '5', '6'],
  ])('a duplicate content-length (%s) is refused before anything is forwarded', async (name, a, b) => {
    const id = `h2-dup-cl-${engine}-${a}-${b}`;
    const before = app.seen.length;
    const c = await F.connectH2(sc.port, tlsOptions(creds(pki, 'orders')));
    try {
      const block = F.requestBlock('/orders', [['content-length', a], ['content-length', b], ['x-request-id', id]], 'POST');
      await c.write(Buffer.concat([F.headers(1, block), F.data(1, Buffer.from('hello'), true)]));
      const answer = await c.waitFrame((f) => f.streamId === 1 && (f.type === F.FrameType.HEADERS || f.type === F.FrameType.RST_STREAM), 3000);
      if (engine === 'own' && a === b) {
        // Valid HTTP/2 framing, refused by the pipeline's header scan: a 400, audited.
        expect(answer?.type).toBe(F.FrameType.HEADERS);
        expect(F.responseStatus((answer as F.Frame).payload)).toBe(400);
        const line = await sc.audit.waitFor((l) => l.requestId === id);
        expect(line).toMatchObject({ status: 400, decision: 'deny', reason: 'bad_request', method: 'POST', protocol: 'HTTP/2' });
      } else {
        // Conflicting values (own engine), or any duplicate (nghttp2): a malformed request, reset on its stream.
        expect(answer?.type, name).toBe(F.FrameType.RST_STREAM);
        expect(answer?.payload.readUInt32BE(0)).toBe(F.ErrorCode.PROTOCOL_ERROR);
      }
      // The connection still serves; once this later request is answered, the refused one would have reached the app first.
      await c.write(F.headers(3, F.requestBlock('/orders/1'), { endStream: true }));
      const next = await c.waitFrame((f) => f.streamId === 3 && f.type === F.FrameType.HEADERS, 3000);
      expect(next === null ? null : F.responseStatus(next.payload)).toBe(200);
      expect(app.seen.slice(before).map((r) => `${r.method} ${r.url}`)).toEqual(['GET /orders/1']);
      expect(sc.audit.lines.filter((l) => l.requestId === id && l.decision === 'allow')).toEqual([]);
    } finally {
      c.destroy();
    }
  });

  it('a HEAD gets the head and no body', async () => {
    const res = await exchange({ ':path': '/orders/1', ':method': 'HEAD' });
    expect(res.status).toBe(200);
    expect(res.body.length).toBe(0);
  });

  it('a refusal is the sidecar\'s JSON with its status, and the connection keeps serving', async () => {
    const res = await exchange({ ':path': '/nowhere', ':method': 'GET' });
    expect(res.status).toBe(403);
    expect(res.headers['content-type']).toBe('application/json');
    expect(JSON.parse(res.body.toString())).toMatchObject({ error: 'forbidden' });
    expect((await exchange({ ':path': '/orders/2', ':method': 'GET' })).status).toBe(200);
  });

  it('a response head HTTP/2 cannot carry (two Content-Types) is a 502 with an audit line, and the session keeps serving', async () => {
    // node:http2 refuses a repeated single-value header when the head is sent; HTTP/1.1 passes it through.
    app.handler = (_req, res) => {
      res.setHeader('content-type', ['text/plain', 'text/html']);
      res.end('two types');
    };
    try {
      const id = 'h2-two-types-1';
      const res = await exchange({ ':path': '/orders/types', ':method': 'GET', 'x-request-id': id });
      expect(res.status).toBe(502);
      expect(JSON.parse(res.body.toString())).toMatchObject({ error: 'bad_gateway' });
      const line = await sc.audit.waitFor((l) => l.requestId === id);
      expect(line).toMatchObject({ status: 502, reason: 'upstream_error', protocol: 'HTTP/2' });
      // The same response over HTTP/1.1 passes through, both lines: the refusal is HTTP/2's.
      const agent = agentFor(creds(pki, 'orders'));
      try {
        const h1 = await request(`${sc.origin}/orders/types`, { dispatcher: agent });
        expect(h1.statusCode).toBe(200);
        expect(h1.headers['content-type']).toEqual(['text/plain', 'text/html']);
        expect(await h1.body.text()).toBe('two types');
      } finally {
        await agent.close();
      }
    } finally {
      app.handler = echo;
    }
    expect((await exchange({ ':path': '/orders/4', ':method': 'GET' })).status).toBe(200);
  });

  it('rapid reset with RST_STREAM NO_ERROR: GOAWAY ENHANCE_YOUR_CALM on either engine', async () => {
    const c = await F.connectH2(sc.port, tlsOptions(creds(pki, 'orders')));
    const block = F.requestBlock('/orders/1');
    for (let round = 0; round < 15 && !c.closed; round++) {
      const frames: Buffer[] = [];
      for (let i = 0; i < 10; i++) {
        const id = (round * 10 + i) * 2 + 1;
        frames.push(F.headers(id, block, { endStream: true }), F.rstStream(id, F.ErrorCode.NO_ERROR));
      }
      await c.write(Buffer.concat(frames));
      await new Promise((r) => setTimeout(r, 2));
    }
    expect(await c.waitClosed(3000)).toBe(true);
    expect(c.goaway?.errorCode).toBe(F.ErrorCode.ENHANCE_YOUR_CALM);
  });

  it('a stream the client resets mid-response is audited as client_aborted and nothing crashes', async () => {
    const release: Array<() => void> = [];
    app.handler = (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('first part');
      release.push(() => res.end('rest'));
    };
    try {
      const id = 'h2-reset-1';
      await new Promise<void>((resolve) => {
        const req = session.request({ ':path': '/orders/slow', ':method': 'GET', 'x-request-id': id });
        req.on('data', () => {
          req.close(http2.constants.NGHTTP2_CANCEL);
          resolve();
        });
        req.on('error', () => undefined);
      });
      const line = await sc.audit.waitFor((l) => l.requestId === id);
      expect(line).toMatchObject({ reason: 'client_aborted', protocol: 'HTTP/2' });
    } finally {
      app.handler = echo;
      for (const r of release) r();
    }
    expect((await exchange({ ':path': '/orders/3', ':method': 'GET' })).status).toBe(200);
  });
});
