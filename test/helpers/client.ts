/** Clients that present real certificates over real TLS to the sidecar under test. */
import { readFileSync } from 'node:fs';
import http2 from 'node:http2';
import tls from 'node:tls';
import { Agent, request } from 'undici';
import type { Dispatcher } from 'undici';

export interface ClientCreds {
  readonly cert: string; // path to PEM (leaf, optionally followed by its chain)
  readonly key: string;
  readonly ca: string; // CA that signed the sidecar's server cert
}

export function tlsOptions(c: ClientCreds | { ca: string }): tls.ConnectionOptions {
  return {
    ca: readFileSync(c.ca),
    ...('cert' in c ? { cert: readFileSync(c.cert), key: readFileSync(c.key) } : {}),
    servername: 'localhost',
  };
}

export function agentFor(c: ClientCreds | { ca: string }, extra: Agent.Options = {}): Agent {
  return new Agent({ connect: tlsOptions(c), ...extra });
}

export interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-parameters -- a typed view of the parsed body, like Response.json
  json<T = Record<string, unknown>>(): T;
}

export async function call(
  agent: Dispatcher,
  origin: string,
  path: string,
  opts: { method?: string; headers?: Record<string, string>; body?: string | Buffer } = {},
): Promise<Reply> {
  const res = await request(`${origin}${path}`, {
    dispatcher: agent,
    method: opts.method ?? 'GET',
    ...(opts.headers ? { headers: opts.headers } : {}),
    ...(opts.body !== undefined ? { body: opts.body } : {}),
  });
  const text = await res.body.text();
  return {
    status: res.statusCode,
    headers: res.headers,
    text,
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-parameters -- as Reply.json
    json: <T>() => JSON.parse(text) as T,
  };
}

export interface RawReply {
  status: number;
  head: string;
  body: string;
  raw: string;
}

/**
 * Send bytes exactly as given over mTLS and read until the server closes (requests should
 * carry `Connection: close`). For paths and headers an HTTP client library would "fix".
 */
export function rawExchange(port: number, creds: ClientCreds, bytes: string, timeoutMs = 5000): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket = tls.connect({ host: '127.0.0.1', port, ...tlsOptions(creds) }, () => socket.write(bytes));
    const timer = setTimeout(() => {
      socket.destroy();
      resolve(Buffer.concat(chunks).toString('latin1'));
    }, timeoutMs);
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks).toString('latin1'));
    });
    socket.on('error', (err: Error) => {
      clearTimeout(timer);
      if (chunks.length > 0) resolve(Buffer.concat(chunks).toString('latin1'));
      else reject(err);
    });
  });
}

/** Parse every HTTP/1.1 response in a raw byte stream (content-length framed). */
export function parseResponses(raw: string): RawReply[] {
  const out: RawReply[] = [];
  let rest = raw;
  while (rest.startsWith('HTTP/1.1 ')) {
    const end = rest.indexOf('\r\n\r\n');
    if (end === -1) break;
    const head = rest.slice(0, end);
    const status = Number(head.slice(9, 12));
    const m = /\r\ncontent-length: *(\d+)/i.exec(head);
    const len = m ? Number(m[1]) : 0;
    const body = rest.slice(end + 4, end + 4 + len);
    out.push({ status, head, body, raw: rest.slice(0, end + 4 + len) });
    rest = rest.slice(end + 4 + len);
  }
  return out;
}

export async function rawRequest(port: number, creds: ClientCreds, bytes: string): Promise<RawReply> {
  const raw = await rawExchange(port, creds, bytes);
  const [first] = parseResponses(raw);
  if (first === undefined) throw new Error(`no HTTP response; got ${JSON.stringify(raw.slice(0, 200))}`);
  return first;
}

export type HandshakeOutcome = { ok: true; status: number } | { ok: false; error: string };

/**
 * Connect and send one request; "ok" if an HTTP response came back. A client certificate
 * refused after the handshake gets the sidecar's unsolicited 400 (status 400); a handshake
 * OpenSSL itself refuses shows up as an alert (not ok).
 */
export function tryRequest(port: number, opts: tls.ConnectionOptions, timeoutMs = 5000): Promise<HandshakeOutcome> {
  return new Promise((resolve) => {
    let data = '';
    let settled = false;
    const done = (o: HandshakeOutcome): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(o);
    };
    const socket = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ...opts }, () => {
      socket.write('GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n');
    });
    const timer = setTimeout(() => done({ ok: false, error: 'timeout' }), timeoutMs);
    socket.on('data', (c: Buffer) => {
      data += c.toString('latin1');
      if (data.includes('\r\n\r\n')) done({ ok: true, status: Number(data.slice(9, 12)) });
    });
    socket.on('error', (err: NodeJS.ErrnoException) => done({ ok: false, error: err.code ?? err.message }));
    socket.on('close', () => done({ ok: false, error: 'closed' }));
  });
}

/** One HTTP/2 request with a client certificate. */
export function h2Request(
  origin: string,
  creds: ClientCreds,
  path: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; headers: http2.IncomingHttpHeaders; body: string; alpn: string | false }> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(origin, { ...tlsOptions(creds) });
    session.on('error', reject);
    const req = session.request({ ':path': path, ':method': 'GET', ...headers });
    let body = '';
    let resHeaders: http2.IncomingHttpHeaders = {};
    req.on('response', (h) => (resHeaders = h));
    req.setEncoding('utf8');
    req.on('data', (c: string) => (body += c));
    req.on('end', () => {
      const alpn = session.alpnProtocol ?? false;
      session.close();
      resolve({ status: Number(resHeaders[':status']), headers: resHeaders, body, alpn });
    });
    req.on('error', reject);
    req.end();
  });
}
