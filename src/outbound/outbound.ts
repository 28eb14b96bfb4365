/**
 * The outbound side of a running sidecar: a plain-HTTP listener on loopback per destination
 * (and the optional proxy listener), served by the same HTTP/1.1 server as the inbound side,
 * and one verified connection pool per destination. A reload keeps a destination's pool while
 * its `poolKey` is unchanged and otherwise retires it (in-flight requests finish on it).
 */
import net from 'node:net';
import type { Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import type { Audit } from '../audit/audit.js';
import type { Metrics } from '../admin/metrics.js';
import type { ListenAddress, OutboundDestination, OutboundSettings, Snapshot } from '../config/snapshot.js';
import type { Log } from '../log.js';
import { REFUSALS } from '../reasons.js';
import { clientErrorReason, rawRefusal } from '../server/respond.js';
import { newRequestId } from '../server/request-id.js';
import { H1Server } from '../transport/h1/server.js';
import type { H1ClientError } from '../transport/h1/connection.js';
import { h1Limits } from '../transport/listener.js';
import type { InboundRequest, OutboundResponse } from '../transport/types.js';
import { ForwardHandler } from '../proxy/forward.js';
import type { UpstreamHandler } from '../proxy/upstream.js';
import { handleOutbound } from './pipeline.js';
import type { AppConnection, OutboundHost } from './pipeline.js';
import { DestinationPool } from './pool.js';
import type { ConnectorHooks } from './connector.js';

export interface OutboundDeps {
  readonly audit: Audit;
  readonly metrics: Metrics;
  readonly log: Log;
  /** Wall clock for the servers' certificate validity. */
  readonly now: () => number;
  /** A bug in request handling: logged, counted, the request answered 500 (runtime/sidecar.ts). */
  internalError(err: unknown, res: OutboundResponse | null, requestId: string | null): void;
}

/** One listener: a destination's own port, or the proxy listener (dest null). */
interface Listener {
  readonly name: string | null;
  readonly at: ListenAddress;
  readonly server: net.Server;
  port: number;
}

export class Outbound implements OutboundHost {
  settings: OutboundSettings;
  closing = false;
  readonly audit: Audit;
  readonly metrics: Metrics;
  readonly #deps: OutboundDeps;
  readonly #h1: H1Server;
  readonly #listeners: Listener[] = [];
  /** Current destination by name (a destination listener serves whatever its name means now). */
  #byName = new Map<string, OutboundDestination>();
  readonly #pools = new Map<string, DestinationPool>();
  /** Open app connections: which listener took each, and its requests in flight (a drain closes idle ones at once). */
  readonly #conns = new Map<Socket, AppConn>();

  constructor(settings: OutboundSettings, limits: Snapshot['limits'], deps: OutboundDeps) {
    this.settings = settings;
    this.audit = deps.audit;
    this.metrics = deps.metrics;
    this.#deps = deps;
    this.#h1 = new H1Server(h1Limits(limits), {
      onRequest: (req, res) => this.#onRequest(req, res),
      onClientError: (err, socket) => this.#onClientError(err, socket),
      onInternalError: (err, res) => deps.internalError(err, res, null),
    });
    this.#index(settings);
    for (const d of settings.destinations) {
      if (d.listen !== null) this.#listeners.push(this.#listener(d.name, d.listen));
    }
    if (settings.proxy !== null) this.#listeners.push(this.#listener(null, settings.proxy));
  }

  async listen(): Promise<void> {
    for (const l of this.#listeners) {
      await new Promise<void>((resolve, reject) => {
        l.server.once('error', reject);
        l.server.listen(l.at.port, l.at.address, () => {
          l.server.off('error', reject);
          l.port = (l.server.address() as AddressInfo).port;
          resolve();
        });
      });
    }
  }

  /** The port a destination's listener is bound to (its configured one, or the one picked for 0). */
  port(name: string): number | undefined {
    return this.#listeners.find((l) => l.name === name)?.port;
  }

  proxyPort(): number | undefined {
    return this.#listeners.find((l) => l.name === null)?.port;
  }

  pool(dest: OutboundDestination): DestinationPool {
    let p = this.#pools.get(dest.name);
    if (p === undefined || p.key !== dest.poolKey) {
      p?.close().catch(() => undefined);
      p = new DestinationPool(dest, this.settings, this.#hooks(dest), this.#deps.now, this.#onHandlerBug);
      this.#pools.set(dest.name, p);
    }
    return p;
  }

  /**
   * A reload: destinations whose connections were made or judged under other settings get new
   * pools now (the old ones finish their in-flight requests and close), so no request uses a
   * connection that no longer qualifies. Listeners are bound at start: a moved, added or removed
   * one needs a restart, returned as a warning. A destination added without a listener of its
   * own is served by the proxy listener at once, so it warns of nothing.
   */
  apply(next: OutboundSettings, limits: Snapshot['limits']): string[] {
    const warnings: string[] = [];
    const had = new Map(this.settings.destinations.map((d) => [d.name, d.listen === null ? null : `${d.listen.address}:${String(d.listen.port)}`]));
    for (const d of next.destinations) {
      const at = d.listen === null ? null : `${d.listen.address}:${String(d.listen.port)}`;
      if (!had.has(d.name)) {
        if (at !== null) warnings.push(`outbound destination "${d.name}" added: its listener opens at a restart`);
      } else if (had.get(d.name) !== at) warnings.push(`outbound destination "${d.name}" listener changed: restart to apply`);
    }
    for (const name of had.keys()) if (!next.destinations.some((d) => d.name === name)) warnings.push(`outbound destination "${name}" removed: its listener stays until a restart`);
    if (JSON.stringify(next.proxy) !== JSON.stringify(this.settings.proxy)) warnings.push('outbound.proxy changed: restart to apply');
    this.settings = next;
    this.#index(next);
    this.#h1.setLimits(h1Limits(limits));
    for (const [name, p] of this.#pools) {
      const d = this.#byName.get(name);
      if (d === undefined || d.poolKey !== p.key) {
        this.#pools.delete(name);
        p.close().catch(() => undefined);
      }
    }
    return warnings;
  }

  /** Stop accepting; idle app connections close now, busy ones after their response; pools drain. */
  async close(timeoutMs: number): Promise<void> {
    this.closing = true;
    const closed = Promise.all(this.#listeners.map((l) => new Promise<void>((resolve) => l.server.close(() => resolve()))));
    for (const [socket, c] of this.#conns) if (c.inflight === 0) socket.destroy();
    const timer = setTimeout(() => {
      for (const socket of this.#conns.keys()) socket.destroy();
    }, timeoutMs);
    timer.unref();
    await closed;
    clearTimeout(timer);
    await Promise.all([...this.#pools.values()].map((p) => p.close().catch(() => undefined)));
  }

  /** For tests and shutdown: cut every app connection and remote connection now. */
  destroy(): void {
    for (const socket of this.#conns.keys()) socket.destroy();
    for (const p of this.#pools.values()) p.destroy().catch(() => undefined);
  }

  /** A forward handler threw inside a client callback: a bug, reported as the runtime reports one. */
  readonly #onHandlerBug = (err: unknown, handler: UpstreamHandler): void => {
    const fwd: ForwardHandler | null = handler instanceof ForwardHandler ? handler : null;
    this.#deps.internalError(err, fwd === null ? null : fwd.res, fwd === null ? null : fwd.ctx.requestId);
  };

  internalError(err: unknown, res: OutboundResponse, requestId: string): void {
    this.#deps.internalError(err, res, requestId);
  }

  #index(s: OutboundSettings): void {
    this.#byName = new Map(s.destinations.map((d) => [d.name, d]));
  }

  #listener(name: string | null, at: ListenAddress): Listener {
    const server = net.createServer({ noDelay: true }, (socket) => {
      if (this.closing) {
        socket.destroy();
        return;
      }
      this.#conns.set(socket, { name, socket, inflight: 0 });
      socket.on('close', () => this.#conns.delete(socket));
      this.#h1.accept(socket);
    });
    return { name, at, server, port: at.port };
  }

  #onRequest(req: InboundRequest, res: OutboundResponse): void {
    const socket = req.socket;
    const conn = socket === null ? undefined : this.#conns.get(socket);
    if (socket === null || conn === undefined) {
      res.destroy();
      return;
    }
    const name = conn.name;
    const dest = name === null ? null : (this.#byName.get(name) ?? null);
    if (name !== null && dest === null) {
      // A destination removed by a reload: its listener lives on until a restart, serving nothing.
      res.destroy();
      return;
    }
    handleOutbound(this, dest, req, res, conn);
  }

  requestEnded(conn: AppConnection): void {
    conn.inflight--;
    if (this.closing && conn.inflight === 0 && !conn.socket.destroyed) conn.socket.end();
  }

  #onClientError(err: H1ClientError, socket: Socket): void {
    const reason = clientErrorReason(err.code);
    const requestId = newRequestId();
    const name = this.#conns.get(socket)?.name ?? null;
    this.audit.outbound({
      requestId,
      destination: name,
      peerUri: null,
      peerSha256: null,
      method: err.method,
      path: err.target,
      status: REFUSALS[reason].status,
      reason,
      durationMs: 0,
      bytesIn: 0,
      bytesOut: 0,
      protocol: null,
    });
    this.metrics.outboundRequest(name ?? 'unknown', err.method || 'OTHER', REFUSALS[reason].status, 0);
    if (socket.writable && !socket.destroyed) socket.end(rawRefusal(reason, requestId));
    else socket.destroy();
  }

  #hooks(dest: OutboundDestination): ConnectorHooks {
    return {
      onAccepted: () => this.metrics.outboundHandshake(dest.name, 'accepted', 'ok'),
      onRejected: (reason, peer) => {
        this.metrics.outboundHandshake(dest.name, 'rejected', reason);
        this.audit.outboundHandshake({
          destination: dest.name,
          reason,
          target: dest.target,
          ...(peer !== null ? { peerSha256: peer.sha256Hex, subject: peer.subject, ...(peer.uri !== null ? { uri: peer.uri } : {}) } : {}),
        });
      },
    };
  }
}

/** An app connection: the listener that took it (a destination's name, or null: the proxy listener). */
interface AppConn extends AppConnection {
  readonly name: string | null;
}
