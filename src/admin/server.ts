/**
 * The admin port (SPEC §6): plain HTTP, loopback by default. /metrics, /healthz, /readyz,
 * /config. Nothing here is on the request path.
 */
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import type { Snapshot } from '../config/snapshot.js';
import type { Metrics } from './metrics.js';
import { describeConfig } from './describe.js';
import type { AppHealthHandler } from './app-health.js';
import type { Audit } from '../audit/audit.js';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';

// Not `import http from 'node:http'`: on Node 24 building node:http's ESM namespace reads its lazy
// WebSocket exports and loads Node's bundled undici, several MiB resident that `run` never uses
// (see admin/app-health.ts).
const http = process.getBuiltinModule('node:http');

export interface AdminHost {
  /** Kubelet probes of the app rewritten by `inject` (Istio style), forwarded to the app; or null. */
  readonly appHealth: AppHealthHandler | null;
  readonly snapshot: Snapshot;
  readonly metrics: Metrics;
  /** True once the TLS listener is accepting. */
  readonly listening: boolean;
  readonly draining: boolean;
  /** Refusing while the audit destination is full or failing (audit.onFull: refuse). */
  readonly audit: Pick<Audit, 'refusing'>;
}

export class AdminServer {
  readonly server: Server;
  readonly #host: AdminHost;

  constructor(host: AdminHost) {
    this.#host = host;
    this.server = http.createServer((req, res) => {
      this.#handle(req, res).catch(() => {
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' });
        res.end('{"error":"internal"}');
      });
    });
    this.server.keepAliveTimeout = 5000;
  }

  async listen(address: string, port: number): Promise<AddressInfo> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, address, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    return this.server.address() as AddressInfo;
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    // Only the exact /app-health/<container>/<probe> paths recorded at injection are answered here.
    if (this.#host.appHealth !== null && this.#host.appHealth(req, res)) return;
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      json(res, 405, { error: 'method_not_allowed' });
      return;
    }
    switch (path) {
      case '/metrics': {
        const body = await this.#host.metrics.registry.metrics();
        res.writeHead(200, { 'content-type': this.#host.metrics.registry.contentType, 'cache-control': 'no-store' });
        res.end(body);
        return;
      }
      case '/healthz':
        json(res, 200, { status: 'ok' });
        return;
      case '/readyz': {
        const h = this.#host;
        if (h.draining) json(res, 503, { status: 'draining' });
        else if (!h.listening) json(res, 503, { status: 'starting' });
        else if (h.audit.refusing) json(res, 503, { status: 'audit_unavailable' });
        else {
          const up = await reachable(h.snapshot.upstream.origin, Math.min(h.snapshot.upstream.connectTimeoutMs, 2000));
          if (up) json(res, 200, { status: 'ready' });
          else json(res, 503, { status: 'upstream_unreachable' });
        }
        return;
      }
      case '/config':
        // Identities, SPIFFE IDs, routes and certificate subjects: a map of the mesh for whoever
        // can reach the pod. Loopback callers only (kubectl port-forward, a shell in the pod),
        // unless the operator exposes it (SPEC §6); health and metrics stay open to the kubelet
        // and Prometheus.
        if (!this.#host.snapshot.admin.exposeConfig && !isLoopback(req.socket.remoteAddress)) {
          json(res, 403, { error: 'forbidden', detail: '/config answers loopback callers only (admin.exposeConfig: true opens it)' });
          return;
        }
        json(res, 200, describeConfig(this.#host.snapshot));
        return;
      default:
        json(res, 404, { error: 'not_found' });
    }
  }
}

/** 127.0.0.0/8, ::1, and IPv4 loopback as an IPv4-mapped IPv6 address. */
export function isLoopback(address: string | undefined): boolean {
  if (address === undefined) return false;
  const v4 = address.startsWith('::ffff:') ? address.slice(7) : address;
  return v4.startsWith('127.') || address === '::1';
}

function json(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body, null, 2);
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/** Is something accepting TCP connections at the app's origin? */
export function reachable(origin: string, timeoutMs: number): Promise<boolean> {
  const u = new URL(origin);
  const port = Number(u.port || 80);
  const host = u.hostname.replace(/^\[|\]$/g, '');
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    const done = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}
