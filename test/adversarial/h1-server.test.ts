/**
 * The sidecar's own HTTP/1.1 server (transport/h1/, llhttp on the TLS socket instead of
 * node:http), over real mTLS sockets with raw bytes: what node:http used to do for it (framing of
 * responses, HTTP/1.0, timeouts, protocol negotiation) and what it now answers and audits itself
 * (missing Host, CONNECT, unknown expectations). Smuggling and parsing strictness are in
 * http1.test.ts, floods in floods-h1.test.ts, time limits on slow clients in exhaustion.test.ts.
 */
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rawExchange, tlsOptions } from '../helpers/client.js';
import type { AuditLine } from '../helpers/audit-sink.js';
import { echo } from '../helpers/upstream.js';
import { orders, parseAll, rawConnect, sleep, startTarget } from './harness.js';
import type { Target } from './harness.js';

const IDLE_MS = 800;
let t: Target;

beforeAll(async () => {
  t = await startTarget({ limits: { idleTimeout: `${IDLE_MS}ms`, headersTimeout: '2s', requestTimeout: '3s' } });
});
// eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- undefined when beforeAll failed
afterAll(async () => t?.close());

const req = (lines: string[], body = ''): string => `${lines.join('\r\n')}\r\n\r\n${body}`;

/** Requests audited since `mark` with the given request id, once the first of them is in (it is written as the response closes). */
async function audited(mark: number, id: string): Promise<AuditLine[]> {
  const mine = (l: AuditLine): boolean => l.msg === 'request' && l.requestId === id;
  await t.sc.audit.waitFor((l) => mine(l) && t.sc.audit.lines.indexOf(l) >= mark);
  return t.sc.audit.lines.slice(mark).filter(mine);
}

/** The app counts a request before it answers, so once the answers are in, `seen` is complete. */
async function exchange(bytes: string, timeoutMs = 1500): Promise<{ raw: string; seen: number; mark: number }> {
  const seenMark = t.app.seen.length;
  const mark = t.sc.audit.lines.length;
  const raw = await rawExchange(t.sc.port, orders(), bytes, timeoutMs);
  return { raw, seen: t.app.seen.length - seenMark, mark };
}

describe('requests with no Host, CONNECT, an unknown Expect or a version the parser does not speak are answered and audited', () => {
  it('HTTP/1.1 without Host: 400, audited as bad_request, not forwarded', async () => {
    const x = await exchange(req(['GET /orders/1 HTTP/1.1', 'X-Request-Id: no-host', 'Connection: close']));
    expect(parseAll(x.raw).responses.map((r) => r.status)).toEqual([400]);
    expect(x.seen).toBe(0);
    expect(await audited(x.mark, 'no-host')).toMatchObject([{ decision: 'deny', reason: 'bad_request', status: 400 }]);
  });

  it('HTTP/1.0 without Host is still served (Host is optional there)', async () => {
    const x = await exchange(req(['GET /orders/1 HTTP/1.0', 'X-Request-Id: h10-no-host']));
    expect(parseAll(x.raw).responses.map((r) => r.status)).toEqual([200]);
    expect(x.seen).toBe(1);
  });

  it('CONNECT: refused with an audit line, never tunnelled, and the connection ends', async () => {
    const x = await exchange(req(['CONNECT localhost:443 HTTP/1.1', 'Host: localhost:443', 'X-Request-Id: connect-1']) + 'GET /orders/1 HTTP/1.1\r\nHost: localhost\r\n\r\n');
    const { responses } = parseAll(x.raw);
    expect(responses).toHaveLength(1);
    expect(responses[0]?.status).toBeGreaterThanOrEqual(400);
    expect(x.seen).toBe(0);
    expect(await audited(x.mark, 'connect-1')).toMatchObject([{ decision: 'deny', method: 'CONNECT' }]);
  });

  it('an unknown expectation: refused with an audit line', async () => {
    const x = await exchange(req(['POST /orders/1 HTTP/1.1', 'Host: localhost', 'X-Request-Id: expect-x', 'Expect: 200-ok', 'Content-Length: 2', 'Connection: close'], '{}'));
    expect(parseAll(x.raw).responses[0]?.status).toBe(400);
    expect(x.seen).toBe(0);
    expect(await audited(x.mark, 'expect-x')).toMatchObject([{ decision: 'deny', reason: 'bad_request' }]);
  });

  it('a request line claiming HTTP/2.0 over the HTTP/1.1 parser: 400', async () => {
    const x = await exchange(req(['GET /orders/1 HTTP/2.0', 'Host: localhost']));
    expect(parseAll(x.raw).responses.map((r) => r.status)).toEqual([400]);
    expect(x.seen).toBe(0);
  });
});

describe('response framing', () => {
  it('an app answer without Content-Length goes out chunked on HTTP/1.1, intact, and the connection is reused', async () => {
    t.app.handler = (_req, res) => {
      res.write('first,');
      setTimeout(() => res.end('second'), 20);
    };
    try {
      const x = await exchange(
        req(['GET /orders/1 HTTP/1.1', 'Host: localhost', 'X-Request-Id: ch-1']) + req(['GET /orders/2 HTTP/1.1', 'Host: localhost', 'X-Request-Id: ch-2', 'Connection: close']),
      );
      const { responses, rest } = parseAll(x.raw);
      expect(rest).toBe('');
      expect(responses.map((r) => r.status)).toEqual([200, 200]);
      expect(responses[0]?.head.toLowerCase()).toContain('transfer-encoding: chunked');
      // De-chunked: "first,second".
      expect(responses[0]?.body.replace(/[0-9a-f]+\r\n([^\r]*)\r\n/g, '$1')).toBe('first,second');
    } finally {
      t.app.handler = echo;
    }
  });

  it('HTTP/1.0 without keep-alive: the body runs to the close, which comes', async () => {
    t.app.handler = (_req, res) => res.end('streamed-without-length');
    try {
      const x = await exchange(req(['GET /orders/1 HTTP/1.0', 'Host: localhost']));
      const { responses } = parseAll(x.raw);
      expect(responses).toHaveLength(1);
      expect(responses[0]?.head.toLowerCase()).toContain('connection: close');
      expect(responses[0]?.head.toLowerCase()).not.toContain('transfer-encoding');
      expect(responses[0]?.body).toBe('streamed-without-length');
    } finally {
      t.app.handler = echo;
    }
  });

  it('HTTP/1.0 with Connection: keep-alive keeps the connection and says so', async () => {
    const c = await rawConnect(t.sc.port, orders());
    try {
      await c.write(req(['GET /orders/1 HTTP/1.0', 'Host: localhost', 'Connection: keep-alive']));
      expect(await c.waitFor((r) => parseAll(r).responses.length === 1, 2000)).toBe(true);
      expect(parseAll(c.received()).responses[0]?.head.toLowerCase()).toContain('connection: keep-alive');
      await c.write(req(['GET /orders/2 HTTP/1.0', 'Host: localhost']));
      expect(await c.waitFor((r) => parseAll(r).responses.length === 2, 2000)).toBe(true);
      expect(await c.waitClosed(2000)).toBe(true);
    } finally {
      c.destroy();
    }
  });

  it('HEAD: the head only, with the app length, and the connection stays in sync', async () => {
    const x = await exchange(req(['HEAD /orders/1 HTTP/1.1', 'Host: localhost']) + req(['GET /orders/1 HTTP/1.1', 'Host: localhost', 'Connection: close']));
    const heads = x.raw.split('HTTP/1.1 ').filter((s) => s !== '');
    expect(heads).toHaveLength(2);
    expect(heads[0]?.endsWith('\r\n\r\n')).toBe(true);
    expect(heads[0]?.toLowerCase()).toContain('content-length:');
  });

  it('every response carries a Date header (node:http sendDate)', async () => {
    const x = await exchange(req(['GET /nowhere HTTP/1.1', 'Host: localhost', 'Connection: close']));
    expect(parseAll(x.raw).responses[0]?.head).toMatch(/\r\ndate: \w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT/i);
  });
});

describe('parsing across reads', () => {
  it('a head split mid-name and mid-value over several TLS records is read whole', async () => {
    const c = await rawConnect(t.sc.port, orders());
    try {
      const mark = t.app.seen.length;
      for (const part of ['GET /orders/1 HT', 'TP/1.1\r\nHo', 'st: local', 'host\r\nX-Request-', 'Id: spl', 'it-1\r', '\n\r\n']) {
        await c.write(part);
        await sleep(15);
      }
      expect(await c.waitFor((r) => parseAll(r).responses.length === 1, 2000)).toBe(true);
      expect(parseAll(c.received()).responses[0]?.status).toBe(200);
      expect(t.app.seen.slice(mark).map((s) => s.headers['x-request-id'])).toEqual(['split-1']);
    } finally {
      c.destroy();
    }
  });

  it('an Upgrade request is served as a plain request (no upgrade offered), and the next one on the connection too', async () => {
    const mark = t.app.seen.length;
    const x = await exchange(
      req(['GET /orders/1 HTTP/1.1', 'Host: localhost', 'Connection: Upgrade', 'Upgrade: websocket', 'X-Request-Id: up-1']) +
        req(['GET /orders/2 HTTP/1.1', 'Host: localhost', 'X-Request-Id: up-2', 'Connection: close']),
    );
    expect(parseAll(x.raw).responses.map((r) => r.status)).toEqual([200, 200]);
    const seen = t.app.seen.slice(mark);
    expect(seen.map((s) => s.headers['x-request-id'])).toEqual(['up-1', 'up-2']);
    expect(seen[0]?.headers['upgrade']).toBeUndefined();
  });
});

describe('request bodies', () => {
  it('an upload the app drops midway: 502, the rest of the body is read and dropped, and the connection serves the next request', async () => {
    t.app.handler = (req, res, body) => {
      if (req.url === '/orders/drop') res.socket?.destroy();
      else echo(req, res, body);
    };
    // Bigger than every buffer on the way, so the body is still arriving when the app drops it.
    const body = 'x'.repeat(48 * 1024);
    const c = await rawConnect(t.sc.port, orders());
    try {
      const started = performance.now();
      await c.write(req(['POST /orders/drop HTTP/1.1', 'Host: localhost', 'X-Request-Id: drop-1', `Content-Length: ${body.length}`], body));
      await c.write(req(['GET /orders/1 HTTP/1.1', 'Host: localhost', 'X-Request-Id: after-drop', 'Connection: close']));
      expect(await c.waitClosed(5000)).toBe(true);
      expect(parseAll(c.received()).responses.map((r) => r.status)).toEqual([502, 200]);
      // Well inside requestTimeout (3 s): nothing waited for a reader that had gone.
      expect(performance.now() - started).toBeLessThan(2500);
    } finally {
      c.destroy();
      t.app.handler = echo;
    }
  });
});

describe('connections', () => {
  it(`an idle keep-alive connection is closed after limits.idleTimeout (${IDLE_MS} ms), not before`, async () => {
    const c = await rawConnect(t.sc.port, orders());
    try {
      await c.write(req(['GET /orders/1 HTTP/1.1', 'Host: localhost']));
      expect(await c.waitFor((r) => parseAll(r).responses.length === 1, 2000)).toBe(true);
      const answered = performance.now();
      expect(await c.waitClosed(IDLE_MS * 4)).toBe(true);
      const after = (c.closedAt() ?? 0) - answered;
      expect(after).toBeGreaterThanOrEqual(IDLE_MS - 50);
      expect(after).toBeLessThan(IDLE_MS * 2.5);
    } finally {
      c.destroy();
    }
  });

  it('a client that negotiates no ALPN protocol is served HTTP/1.1', async () => {
    const c = await rawConnect(t.sc.port, orders(), { ALPNProtocols: [] });
    try {
      expect(c.socket.alpnProtocol).toBe(false);
      await c.write(req(['GET /orders/1 HTTP/1.1', 'Host: localhost', 'Connection: close']));
      expect(await c.waitClosed(2000)).toBe(true);
      expect(parseAll(c.received()).responses.map((r) => r.status)).toEqual([200]);
    } finally {
      c.destroy();
    }
  });

  it('a client offering only protocols the sidecar does not speak fails the handshake (no_application_protocol)', async () => {
    const err = await new Promise<string>((resolve) => {
      const s = tls.connect({ host: '127.0.0.1', port: t.sc.port, ...tlsOptions(orders()), ALPNProtocols: ['spdy/3'] }, () => {
        s.destroy();
        resolve('connected');
      });
      s.on('error', (e: Error & { code?: string }) => resolve(e.code ?? e.message));
    });
    expect(err).toBe('ERR_SSL_TLSV1_ALERT_NO_APPLICATION_PROTOCOL');
  });
});
