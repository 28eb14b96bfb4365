/** A real HTTP app on loopback that records what the sidecar forwarded to it. */
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';

export interface SeenRequest {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  rawHeaders: string[];
  body: Buffer;
}

export type UpstreamHandler = (req: http.IncomingMessage, res: http.ServerResponse, body: Buffer) => void;

export interface Upstream {
  readonly port: number;
  readonly url: string;
  readonly seen: SeenRequest[];
  handler: UpstreamHandler;
  close(): Promise<void>;
}

/** Default behaviour: 200 with a JSON echo of what arrived. */
export const echo: UpstreamHandler = (req, res, body) => {
  const out = JSON.stringify({ method: req.method, url: req.url, headers: req.headers, bodyLength: body.length });
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(out) });
  res.end(out);
};

export async function startUpstream(handler: UpstreamHandler = echo): Promise<Upstream> {
  const seen: SeenRequest[] = [];
  const state: { handler: UpstreamHandler } = { handler };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, rawHeaders: req.rawHeaders, body });
      state.handler(req, res, body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    seen,
    get handler() {
      return state.handler;
    },
    set handler(h: UpstreamHandler) {
      state.handler = h;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/**
 * A port with nothing listening on it (for 502 tests): one the kernel just gave out and took
 * back, checked to refuse a connection (on a busy machine another process may have taken it
 * meanwhile; then another one).
 */
export async function deadPort(): Promise<number> {
  for (let i = 0; ; i++) {
    const server = http.createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    await new Promise<void>((resolve) => server.close(() => resolve()));
    if ((await refused(port)) || i === 4) return port;
  }
}

function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED'));
  });
}
