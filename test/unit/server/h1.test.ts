/**
 * server/h1.ts on its own, over real TLS sockets, with a stand-in pipeline: the behaviour of the
 * HTTP/1.1 server that the sidecar's stages cannot steer from a test (a body reader that stalls
 * and goes away).
 */
import { readFileSync } from 'node:fs';
import tls from 'node:tls';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import { H1Server } from '../../../src/server/h1.js';
import type { H1Request, H1Response } from '../../../src/server/h1.js';

const pki = inject('pki');
let server: tls.Server;
let port = 0;
let onRequest: (req: H1Request, res: H1Response) => void = () => undefined;

beforeAll(async () => {
  const h1 = new H1Server(
    { maxHeaderSize: 16 * 1024, maxHeaders: 100, headersTimeoutMs: 10_000, requestTimeoutMs: 10_000, idleTimeoutMs: 10_000, pipelineDepth: 8 },
    { onRequest: (req, res) => onRequest(req, res), onClientError: (_err, socket) => socket.destroy() },
  );
  server = tls.createServer({ cert: readFileSync(pki.server.cert), key: readFileSync(pki.server.key) }, (s) => h1.accept(s));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as AddressInfo).port;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

function exchange(bytes: string[], timeoutMs: number): Promise<{ raw: string; ms: number }> {
  return new Promise((resolve) => {
    const started = performance.now();
    const chunks: Buffer[] = [];
    const s = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => {
      for (const b of bytes) s.write(b);
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
    expect(raw.match(/^HTTP\/1\.1 \d+/gm)).toEqual(['HTTP/1.1 502', 'HTTP/1.1 200']);
    // Far inside requestTimeout (10 s): nothing waited on a reader that had gone.
    expect(ms).toBeLessThan(3000);
  });
});
