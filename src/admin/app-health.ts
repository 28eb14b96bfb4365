/**
 * The admin port's side of probe rewriting: `/app-health/<container>/<probe>` is forwarded to
 * the app's original probe on loopback, exactly as the kubelet would have run it (status code
 * kept, 2xx/3xx healthy; an unreachable or slow app is 503). Only the exact recorded paths are
 * handled; anything else is left to the admin server (usually its 404).
 *
 * Mounting (src/admin/server.ts), before its own routing:
 *   const appHealth = appHealthFromEnv();            // once, at start-up
 *   if (!appHealth.ok) -> refuse to start with appHealth.error
 *   ... in the request handler: if (appHealth.handler?.(req, res)) return;
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { parseAppProbes } from '../inject/app-probes.js';
import type { AppProbeMap, HttpAppProbe, TcpAppProbe } from '../inject/app-probes.js';
import { APP_PROBES_ENV } from '../inject/constants.js';

// Not `import http from 'node:http'`: on Node 24 building node:http's ESM namespace reads its lazy
// WebSocket/CloseEvent/MessageEvent exports, which loads Node's bundled undici (~750 KB of
// source, several MiB resident) that `run` otherwise never needs.
const http = process.getBuiltinModule('node:http');

/** Returns true when it took the request (and will answer it), false to let the caller route it. */
export type AppHealthHandler = (req: IncomingMessage, res: ServerResponse) => boolean;

export interface AppHealthOptions {
  /** Where the app listens; the kubelet would have used the pod IP, the sidecar uses loopback. */
  readonly host?: string;
}

/** Kubelet reads at most this much of a probe's body (for its event message); so do we. */
const MAX_BODY = 10 * 1024;

export function createAppHealthHandler(probes: AppProbeMap, options: AppHealthOptions = {}): AppHealthHandler {
  const table = new Map(Object.entries(probes));
  const host = options.host ?? '127.0.0.1';
  return (req, res) => {
    const url = req.url ?? '';
    const q = url.indexOf('?');
    const probe = table.get(q === -1 ? url : url.slice(0, q));
    if (probe === undefined) return false;
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      reply(res, 405, { error: 'method_not_allowed' }, req.method === 'HEAD');
      return true;
    }
    if ('httpGet' in probe) forwardHttp(probe, host, req, res);
    else checkTcp(probe, host, req, res);
    return true;
  };
}

export type AppHealthFromEnv = { readonly ok: true; readonly handler: AppHealthHandler | null; readonly paths: readonly string[] } | { readonly ok: false; readonly error: string };

/** The handler for the probes the injector recorded in MTLS_SIDECAR_APP_PROBES (null when none). */
export function appHealthFromEnv(env: NodeJS.ProcessEnv = process.env, options: AppHealthOptions = {}): AppHealthFromEnv {
  const text = env[APP_PROBES_ENV];
  if (text === undefined || text.trim() === '') return { ok: true, handler: null, paths: [] };
  const parsed = parseAppProbes(text);
  if (!parsed.ok) return parsed;
  return { ok: true, handler: createAppHealthHandler(parsed.probes, options), paths: Object.keys(parsed.probes) };
}

function forwardHttp(probe: HttpAppProbe, host: string, req: IncomingMessage, res: ServerResponse): void {
  const { path, port, scheme, httpHeaders } = probe.httpGet;
  const headers: Record<string, string> = {
    host: `${host.includes(':') ? `[${host}]` : host}:${port}`,
    'user-agent': headerValue(req.headers['user-agent']) ?? 'mtls-sidecar-probe',
    accept: headerValue(req.headers['accept']) ?? '*/*',
    connection: 'close',
  };
  // As the kubelet does: the probe's own headers come last and win (Host and User-Agent too).
  for (const h of httpHeaders ?? []) headers[h.name.toLowerCase()] = h.value;
  const head = req.method === 'HEAD';
  let done = false;
  const finish = (status: number, body: unknown, contentType?: string): void => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    if (typeof body === 'string' || Buffer.isBuffer(body)) {
      res.writeHead(status, { 'content-type': contentType ?? 'text/plain; charset=utf-8', 'cache-control': 'no-store', 'content-length': Buffer.byteLength(body) });
      res.end(head ? undefined : body);
    } else {
      reply(res, status, body, head);
    }
  };
  const options: https.RequestOptions = { host, port, path, method: 'GET', headers, agent: false };
  // The kubelet never verifies an HTTPS probe's certificate; neither does its stand-in.
  const upstream = scheme === 'HTTPS' ? https.request({ ...options, rejectUnauthorized: false }) : http.request(options);
  const timer = setTimeout(() => {
    upstream.destroy();
    finish(503, { error: 'app_timeout' });
  }, probe.timeoutSeconds * 1000);
  upstream.on('response', (up) => {
    const chunks: Buffer[] = [];
    let size = 0;
    up.on('data', (chunk: Buffer) => {
      if (size >= MAX_BODY) return;
      chunks.push(chunk);
      size += chunk.length;
    });
    up.on('end', () => finish(up.statusCode ?? 502, Buffer.concat(chunks).subarray(0, MAX_BODY), headerValue(up.headers['content-type'])));
    up.on('error', () => finish(503, { error: 'app_unreachable' }));
  });
  upstream.on('error', () => finish(503, { error: 'app_unreachable' }));
  res.on('close', () => {
    if (!done) {
      done = true;
      clearTimeout(timer);
      upstream.destroy();
    }
  });
  upstream.end();
}

function checkTcp(probe: TcpAppProbe, host: string, req: IncomingMessage, res: ServerResponse): void {
  const head = req.method === 'HEAD';
  const socket = net.connect({ host, port: probe.tcpSocket.port });
  let done = false;
  const finish = (status: number, body: unknown): void => {
    if (done) return;
    done = true;
    socket.destroy();
    reply(res, status, body, head);
  };
  socket.setTimeout(probe.timeoutSeconds * 1000, () => finish(503, { error: 'app_timeout' }));
  socket.once('connect', () => finish(200, { status: 'ok' }));
  socket.once('error', () => finish(503, { error: 'app_unreachable' }));
}

function reply(res: ServerResponse, status: number, body: unknown, head: boolean): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', 'content-length': Buffer.byteLength(text) });
  res.end(head ? undefined : text);
}

function headerValue(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}
