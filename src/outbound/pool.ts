/**
 * A destination's connections: an undici Pool (keep-alive, a connection cap, HTTP/2 by ALPN when
 * the destination allows it) whose every connection goes through the outbound connector, so it
 * is verified before it carries a request. One pool per generation of the destination's TLS
 * settings (`poolKey`): a rotated certificate or a changed `expect`/`trust` gets a new pool,
 * and the old one is closed gracefully (in-flight requests finish, idle connections close).
 *
 * The request/response shim below speaks undici's handler API on one side and the sidecar's
 * `UpstreamHandler` on the other, so the forward stage (proxy/forward.ts) is the same for the
 * app-bound and the outbound hop.
 */
import type { Readable } from 'node:stream';
import type { IncomingHttpHeaders } from 'node:http';
import { Client, Pool } from 'undici';
import type { Dispatcher } from 'undici';
import type { OutboundDestination, OutboundSettings } from '../config/snapshot.js';
import type { PeerInfo } from '../identity/peer.js';
import { UpstreamError } from '../proxy/upstream.js';
import type { UpstreamControl, UpstreamHandler } from '../proxy/upstream.js';
import { ServerRefused, outboundConnector } from './connector.js';
import type { ConnectorHooks, PeerSlot } from './connector.js';

/** What a finished request learns about the connection that carried it. */
export interface OutboundLeg {
  peer: PeerInfo | null;
  protocol: string | null;
  /** The connection slot of the client that took the request (set when it is dispatched). */
  slot: ConnectionSlot | null;
  /** Why the destination's server was refused, when it was (the request was never sent). */
  refused: ServerRefused | null;
}

/** What the connector recorded about a client's current connection. */
export interface ConnectionSlot extends PeerSlot {
  protocol: string | null;
}

export interface OutboundRequest {
  readonly method: string;
  readonly path: string;
  /** Flat name/value pairs, host included (handed to undici as they are). */
  readonly headers: string[];
  readonly body: Readable | null;
}

/** Idle pooled connections close after this (well under a remote sidecar's idleTimeout). */
const KEEP_ALIVE_MS = 30_000;

/** dispatch() options carrying the exchange, so the client that takes it can name its connection. */
interface LegDispatchOptions extends Dispatcher.DispatchOptions {
  readonly leg: OutboundLeg;
}

/** A Client with one connection at a time, whose connector records the verified server. */
class VerifiedClient extends Client {
  readonly slot: ConnectionSlot;
  constructor(origin: string, options: Client.Options, slot: ConnectionSlot) {
    super(origin, options);
    this.slot = slot;
  }

  override dispatch(opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    // The request runs on this client's connection: the leg reads the verified peer from here
    // when the response starts (by then the connection is up and judged).
    const leg = (opts as Partial<LegDispatchOptions>).leg;
    if (leg !== undefined) leg.slot = this.slot;
    return super.dispatch(opts, handler);
  }
}

export class DestinationPool {
  readonly key: string;
  readonly #pool: Pool;

  constructor(dest: OutboundDestination, settings: OutboundSettings, hooks: ConnectorHooks, now: () => number) {
    this.key = dest.poolKey;
    const m = settings.material;
    const tls = { cert: m.cert.toString('latin1'), key: m.key.toString('latin1'), ca: m.ca.map((b) => b.toString('latin1')), minVersion: settings.minVersion };
    // The origin names the target; SNI and the checks come from the destination.
    const origin = `https://${dest.host.includes(':') ? `[${dest.host}]` : dest.host}:${String(dest.port)}`;
    this.#pool = new Pool(origin, {
      connections: dest.maxConnections,
      allowH2: dest.http2,
      headersTimeout: dest.timeoutMs,
      bodyTimeout: dest.timeoutMs,
      keepAliveTimeout: KEEP_ALIVE_MS,
      keepAliveMaxTimeout: KEEP_ALIVE_MS,
      factory: (o, opts) => {
        const slot: ConnectionSlot = { peer: null, protocol: null };
        const connect = outboundConnector(
          { tls, serverName: dest.serverName, expect: dest.expectMatcher, connectTimeoutMs: dest.connectTimeoutMs, allowH2: dest.http2, now },
          {
            onAccepted: (peer, socket) => {
              slot.protocol = socket.alpnProtocol === 'h2' ? 'HTTP/2' : 'HTTP/1.1';
              hooks.onAccepted(peer, socket);
            },
            onRejected: (reason, peer) => hooks.onRejected(reason, peer),
          },
          slot,
        );
        return new VerifiedClient(String(o), { ...(opts as Client.Options), connect }, slot);
      },
    });
  }

  dispatch(req: OutboundRequest, handler: UpstreamHandler, leg: OutboundLeg): void {
    const shim = new HandlerShim(handler, leg);
    const opts: LegDispatchOptions = {
      method: req.method,
      path: req.path,
      headers: req.headers,
      body: req.body,
      leg,
    };
    this.#pool.dispatch(opts, shim);
  }

  /** In-flight requests finish; nothing new is taken; idle connections close. */
  close(): Promise<void> {
    return this.#pool.close();
  }

  destroy(): Promise<void> {
    return this.#pool.destroy();
  }
}

/** undici's handler calls -> UpstreamHandler; undici's error codes -> the sidecar's. */
class HandlerShim implements Dispatcher.DispatchHandler, UpstreamControl {
  readonly #h: UpstreamHandler;
  readonly #leg: OutboundLeg;
  #controller: Dispatcher.DispatchController | null = null;

  constructor(h: UpstreamHandler, leg: OutboundLeg) {
    this.#h = h;
    this.#leg = leg;
  }

  abort(err: Error): void {
    this.#controller?.abort(err);
  }

  resume(): void {
    this.#controller?.resume();
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.#controller = controller;
    this.#h.onConnect(this);
  }

  onResponseStart(controller: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders): void {
    // Interim responses (103 Early Hints) are not relayed: the app gets the final one.
    if (statusCode < 200) return;
    this.#noteConnection();
    const raw: string[] = [];
    for (const name in headers) {
      const v = headers[name];
      if (v === undefined) continue;
      if (Array.isArray(v)) for (const one of v) raw.push(name, one);
      else raw.push(name, v);
    }
    if (!this.#h.onHeaders(statusCode, raw)) controller.pause();
  }

  /** The request went out on the dispatching client's connection: name its server in the audit line. */
  #noteConnection(): void {
    const slot = this.#leg.slot;
    if (slot !== null && this.#leg.peer === null) {
      this.#leg.peer = slot.peer;
      this.#leg.protocol = slot.protocol;
    }
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (!this.#h.onData(chunk)) controller.pause();
  }

  onResponseEnd(): void {
    this.#h.onComplete();
  }

  onResponseError(_controller: Dispatcher.DispatchController, err: Error): void {
    if (err instanceof ServerRefused) this.#leg.refused = err;
    else this.#noteConnection();
    this.#h.onError(translate(err));
  }
}

/** undici's error codes, as the forward stage classifies them (proxy/forward.ts). */
const UNDICI_CODES: Readonly<Record<string, UpstreamError['code']>> = {
  UND_ERR_CONNECT_TIMEOUT: 'ERR_UPSTREAM_CONNECT_TIMEOUT',
  UND_ERR_HEADERS_TIMEOUT: 'ERR_UPSTREAM_HEADERS_TIMEOUT',
  UND_ERR_BODY_TIMEOUT: 'ERR_UPSTREAM_BODY_TIMEOUT',
  UND_ERR_SOCKET: 'ERR_UPSTREAM_CLOSED',
  UND_ERR_CLOSED: 'ERR_UPSTREAM_POOL_CLOSED',
  UND_ERR_DESTROYED: 'ERR_UPSTREAM_POOL_CLOSED',
  UND_ERR_RES_CONTENT_LENGTH_MISMATCH: 'ERR_UPSTREAM_BAD_RESPONSE',
  UND_ERR_REQ_CONTENT_LENGTH_MISMATCH: 'ERR_UPSTREAM_LENGTH_MISMATCH',
  UND_ERR_INVALID_ARG: 'ERR_UPSTREAM_BAD_HEADER',
  UND_ERR_INFO: 'ERR_UPSTREAM_BAD_RESPONSE',
};

function translate(err: Error): Error {
  const code = (err as { code?: unknown }).code;
  if (typeof code !== 'string') return err;
  const ours = UNDICI_CODES[code] ?? (code.startsWith('HPE_') ? 'ERR_UPSTREAM_BAD_RESPONSE' : undefined);
  return ours === undefined ? err : new UpstreamError(ours, err.message);
}
