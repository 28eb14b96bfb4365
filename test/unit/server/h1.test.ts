/**
 * transport/h1/ on its own, over real TLS sockets, with a stand-in pipeline: the behaviour of the
 * HTTP/1.1 server that the sidecar's stages cannot steer from a test (a body reader that stalls
 * and goes away).
 */
import type net from 'node:net';
import { readFileSync } from 'node:fs';
import tls from 'node:tls';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { inject } from 'vitest';
import { H1Server } from '../../../src/transport/h1/server.js';
import type { H1Limits } from '../../../src/transport/h1/connection.js';
import type { H1Request } from '../../../src/transport/h1/request.js';
import type { H1Response } from '../../../src/transport/h1/response.js';

const pki = inject('pki');
const LIMITS: H1Limits = { maxHeaderSize: 16 * 1024, maxHeaders: 100, headersTimeoutMs: 10_000, requestTimeoutMs: 10_000, idleTimeoutMs: 10_000, pipelineDepth: 8 };
const servers: tls.Server[] = [];
let port = 0;
let onRequest: (req: H1Request, res: H1Response) => void = () => undefined;
/** What reached onInternalError: the error's message, and the URL of the response it came with. */
const internalErrors: string[] = [];

/** An H1Server on a TLS listener; `onClientError` and `onInternalError` answer like the sidecar does, minimally. */
async function startH1(limits: H1Limits): Promise<number> {
  const h1 = new H1Server(limits, {
    onRequest: (req, res) => onRequest(req, res),
    onClientError: (err, socket) => {
      const status = err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
      socket.end(`HTTP/1.1 ${status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n`);
    },
    onInternalError: (err, res) => {
      internalErrors.push(`${(err as Error).message} @ ${res?.req.url ?? 'no response'}`);
      if (res !== null && !res.headersSent) {
        res.writeHead(500, { 'content-length': '0', connection: 'close' });
        res.end();
      }
    },
  });
  const server = tls.createServer({ cert: readFileSync(pki.server.cert), key: readFileSync(pki.server.key) }, (s) => h1.accept(s));
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return (server.address() as AddressInfo).port;
}

beforeAll(async () => {
  port = await startH1(LIMITS);
});
afterAll(() => {
  for (const s of servers) {
    s.close();
  }
});

const ok = (res: H1Response): void => {
  res.writeHead(200, { 'content-length': '2' });
  res.end('ok');
};

function exchange(bytes: string[], timeoutMs: number, to = port, gapMs = 0): Promise<{ raw: string; ms: number }> {
  return new Promise((resolve) => {
    const started = performance.now();
    const chunks: Buffer[] = [];
    const s = tls.connect({ host: '127.0.0.1', port: to, rejectUnauthorized: false }, () => {
      let i = 0;
      const next = (): void => {
        if (i >= bytes.length || s.destroyed) return;
        s.write(bytes[i++] as string);
        if (gapMs > 0) setTimeout(next, gapMs);
        else next();
      };
      next();
    });
    const done = (): void => resolve({ raw: Buffer.concat(chunks).toString('latin1'), ms: performance.now() - started });
    const timer = setTimeout(() => {
      s.destroy();
      done();
    }, timeoutMs);
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('error', () => undefined);
    s.on('close', () => {
      clearTimeout(timer);
      done();
    });
  });
}

describe('H1Server request bodies', () => {
  it('a body whose reader stalls and goes away is dropped once the answer is out; the next request is served', async () => {
    onRequest = (req, res) => {
      if (req.url === '/stuck') {
        // A reader that takes a little and never asks for more, then gives up (as undici does
        // when the app drops the request).
        const sink = new Writable({ highWaterMark: 1024, write: () => undefined });
        req.body?.pipe(sink);
        setTimeout(() => {
          sink.destroy();
          res.writeHead(502, { 'content-length': '0' });
          res.end();
        }, 100);
        return;
      }
      res.writeHead(200, { 'content-length': '2' });
      res.end('ok');
    };
    const body = 'x'.repeat(512 * 1024);
    const { raw, ms } = await exchange(
      [`POST /stuck HTTP/1.1\r\nHost: x\r\nContent-Length: ${body.length}\r\n\r\n`, body, 'GET /next HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'],
      5000,
    );
    expect(raw.match(/HTTP\/1\.1 \d{3}/g)).toEqual(['HTTP/1.1 502', 'HTTP/1.1 200']);
    // Far inside requestTimeout (10 s): nothing waited on a reader that had gone.
    expect(ms).toBeLessThan(3000);
  });
});

describe('H1Server review fixes', () => {
  it('a client that stops reading a response is cut after idleTimeout (no byte moved), not held forever', async () => {
    const idlePort = await startH1({ ...LIMITS, idleTimeoutMs: 300 });
    let serverSide: net.Socket | null = null;
    onRequest = (req, res) => {
      serverSide = req.socket;
      res.writeHead(200, {});
      const chunk = Buffer.alloc(64 * 1024, 0x61);
      const pump = (): void => {
        while (!res.destroyed && res.write(chunk));
        if (!res.destroyed) res.once('drain', pump);
      };
      pump();
    };
    const client = tls.connect({ host: '127.0.0.1', port: idlePort, rejectUnauthorized: false }, () => {
      client.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
      client.pause(); // never reads
    });
    client.on('error', () => undefined);
    try {
      const started = performance.now();
      // The server's side of the connection (a paused client does not notice the close).
      const closedAfter = await new Promise<number>((resolve) => {
        const poll = setInterval(() => {
          const s = serverSide;
          if (s !== null && s.destroyed) {
            clearInterval(poll);
            resolve(performance.now() - started);
          }
        }, 20);
        setTimeout(() => {
          clearInterval(poll);
          resolve(Number.POSITIVE_INFINITY);
        }, 5000).unref();
      });
      expect(closedAfter).toBeLessThan(3000);
    } finally {
      client.destroy();
    }
  });

  it('a pipelined upload queued behind a slow answer is not timed out while reading is held for it', async () => {
    const slowPort = await startH1({ ...LIMITS, requestTimeoutMs: 800, headersTimeoutMs: 800 });
    onRequest = (req, res) => {
      if (req.url === '/slow') setTimeout(() => ok(res), 1500);
      else if (req.body !== null) {
        req.body.resume();
        req.body.once('end', () => ok(res));
      } else ok(res);
    };
    const body = 'y'.repeat(100_000);
    const { raw } = await exchange(
      ['GET /slow HTTP/1.1\r\nHost: x\r\n\r\n' + `POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n` + body.slice(0, 10), body.slice(10)],
      6000,
      slowPort,
      50,
    );
    expect(raw.match(/HTTP\/1\.1 \d{3}/g)).toEqual(['HTTP/1.1 200', 'HTTP/1.1 200']);
  });

  it('requests already queued are answered before a later parse error, and nothing follows an answer that closed', async () => {
    onRequest = (_req, res) => setTimeout(() => ok(res), 20);
    const { raw } = await exchange(['GET /1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /2 HTTP/1.0\r\n\r\nGET /3 HTTP/1.0\r\n\r\n'], 3000);
    expect(raw.match(/HTTP\/1\.1 \d{3}/g)).toEqual(['HTTP/1.1 200', 'HTTP/1.1 200']);
  });

  it('chunk extensions cannot stream unbounded bytes past the body limit: 400 within the first MiB', async () => {
    onRequest = (req, res) => {
      req.body?.resume();
      req.body?.once('end', () => ok(res));
    };
    const ext = 'a'.repeat(256 * 1024);
    const { raw, ms } = await exchange(['POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1;', ext, ext, ext, ext, '\r\nx\r\n0\r\n\r\n'], 5000);
    expect(raw.match(/HTTP\/1\.1 \d{3}/g)).toEqual(['HTTP/1.1 400']);
    expect(ms).toBeLessThan(4000);
  });

  it('no 100 Continue to an HTTP/1.0 client', async () => {
    onRequest = (req, res) => {
      res.writeContinue();
      req.body?.resume();
      req.body?.once('end', () => ok(res));
    };
    const { raw } = await exchange(['POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n{}'], 2000);
    expect(raw).not.toContain('100 Continue');
    expect(raw.match(/HTTP\/1\.1 \d{3}/g)).toEqual(['HTTP/1.1 200']);
  });

  it('a framing field given as a list still frames the response (no chunked encoding next to a Content-Length)', async () => {
    onRequest = (_req, res) => {
      res.writeHead(200, { 'content-length': ['2'], connection: ['close'] });
      res.end('ok');
    };
    const { raw } = await exchange(['GET / HTTP/1.1\r\nHost: x\r\n\r\n'], 2000);
    expect(raw.toLowerCase()).not.toContain('transfer-encoding');
    expect(raw).toMatch(/\r\n\r\nok$/);
  });
});

describe('H1Server and a bug in request handling', () => {
  it('a handler that throws: reported with its response (500), nothing after it on that connection is read; the server goes on', async () => {
    internalErrors.length = 0;
    onRequest = (req, res) => {
      if (req.url === '/boom') throw new Error('a handler bug');
      ok(res);
    };
    const { raw } = await exchange(['GET /boom HTTP/1.1\r\nHost: x\r\n\r\nGET /after HTTP/1.1\r\nHost: x\r\n\r\n'], 3000);
    expect(raw.match(/HTTP\/1\.1 \d{3}/g)).toEqual(['HTTP/1.1 500']);
    expect(internalErrors).toEqual(['a handler bug @ /boom']);
    const next = await exchange(['GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'], 3000);
    expect(next.raw.match(/HTTP\/1\.1 \d{3}/g)).toEqual(['HTTP/1.1 200']);
  });

  it('a body reader that throws inside the parse: reported with its response (500), the connection ends; the server goes on', async () => {
    internalErrors.length = 0;
    let started = false;
    onRequest = (req, res) => {
      if (req.body === null) return ok(res);
      req.body.on('data', () => {
        throw new Error('a body reader bug');
      });
      started = true;
    };
    const chunks: Buffer[] = [];
    const s = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => s.write('POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\n'));
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('error', () => undefined);
    const closed = new Promise<void>((r) => s.once('close', () => r()));
    try {
      // The body in a later read, once it flows: it reaches the reader inside llhttp's callback.
      await vi.waitFor(() => expect(started).toBe(true), { timeout: 5000 });
      s.write('abcd');
      await closed;
    } finally {
      s.destroy();
    }
    expect(Buffer.concat(chunks).toString('latin1').match(/HTTP\/1\.1 \d{3}/g)).toEqual(['HTTP/1.1 500']);
    expect(internalErrors).toEqual(['a body reader bug @ /up']);
    const next = await exchange(['GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'], 3000);
    expect(next.raw.match(/HTTP\/1\.1 \d{3}/g)).toEqual(['HTTP/1.1 200']);
  });
});
