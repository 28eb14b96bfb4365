/**
 * The TLS listener: HTTP/1.1 (transport/h1/), or HTTP/2 (the own framing, transport/h2/, or
 * node:http2 on its core stream API, transport/h2-node.ts) with HTTP/1.1 for clients that
 * negotiate it, or no protocol, over ALPN. Each connection is judged once after its handshake
 * (tls/verify) and its identity computed once (identity/*); a refused connection never reaches the
 * HTTP layer (server/refusal.ts answers it).
 */
import http2 from 'node:http2';
import tls from 'node:tls';
import type { TLSSocket } from 'node:tls';
import type { Snapshot } from '../config/snapshot.js';
import { serverTlsOptions, applySecureContext } from '../tls/context.js';
import type { InboundRequest, OutboundResponse } from './types.js';
import { guardControlFlood, guardRapidReset, useStreamApi } from './h2-node.js';
import { H1Server } from './h1/server.js';
import type { H1Limits } from './h1/connection.js';
import { H2Session } from './h2/session.js';
import type { H2Limits } from './h2/session.js';
import { H2StreamRequest, H2StreamResponse } from './h2/exchange.js';

export type SidecarServer = tls.Server | http2.Http2SecureServer;

/**
 * Where a bug in request handling was caught (the `where` label of
 * mtls_sidecar_internal_errors_total): an HTTP/1.1 or HTTP/2 request, the own HTTP/2
 * implementation's frame handling (which costs the connection), or the forward handler inside
 * an upstream client's callback (`upstream`, reported by the runtime).
 */
export type InternalErrorWhere = 'h1' | 'h2' | 'h2_frame' | 'upstream' | 'outbound';

/** An HTTP/2 connection of either engine, as the runtime keeps it: drain sends it GOAWAY. */
export interface H2Connection {
  readonly socket: object;
  close(): void;
}

export interface ListenerHooks {
  /** False: the connection was refused (and answered); the HTTP layer never sees it. */
  onSecureConnection(socket: TLSSocket): boolean;
  onTlsClientError(err: Error, socket: TLSSocket): void;
  onRequest: (req: InboundRequest, res: OutboundResponse) => void;
  /** HTTP/1.1 parse errors and time limits; `method`/`target` once the request line was read. */
  onClientError: (err: Error & { code?: string; method?: string; target?: string }, socket: TLSSocket) => void;
  /**
   * An exception in request handling outside the pipeline's own guard (server/pipeline.ts): the
   * hook logs, counts and answers `res` (500, or a cut if its head went out); with no `res`, the
   * transport ends the stream or connection itself. Never the process.
   */
  onInternalError(err: unknown, where: InternalErrorWhere, res: OutboundResponse | null): void;
  /** A new HTTP/2 connection (either engine) past the handshake check: the runtime keeps it to send it GOAWAY. */
  onSession(session: H2Connection): void;
}

/**
 * Which HTTP/2 implementation serves: the sidecar's own framing (transport/h2/, the default) or
 * node:http2 (transport/h2-node.ts), kept as a fallback an operator can choose with
 * MTLS_SIDECAR_HTTP2=node while the own one is new. Read once, when a listener is created.
 */
export type Http2Engine = 'own' | 'node';
export function http2Engine(env: NodeJS.ProcessEnv = process.env): Http2Engine {
  return env['MTLS_SIDECAR_HTTP2'] === 'node' ? 'node' : 'own';
}

/** The own HTTP/2 side's limits (a reload updates them for new connections). */
interface OwnH2Settings {
  limits: H2Limits;
}

function h2Limits(l: Snapshot['limits']): H2Limits {
  return {
    maxConcurrentStreams: l.maxConcurrentStreams,
    maxHeaderListSize: l.maxHeaderSize,
    // nghttp2's defaults as node:http2 runs them: 64 KiB per stream, the connection window opened to 1 MiB.
    streamWindow: 65535,
    connectionWindow: 1 << 20,
    // As node:http2's maxHeaderListPairs: the pseudo-headers on top of maxHeaders.
    maxHeaderPairs: l.maxHeaders + 4,
    headersTimeoutMs: l.headersTimeoutMs,
    // An idle session is told to go away; a stuck or half-closed one is cut (transport/h2/session.ts).
    idleTimeoutMs: l.idleTimeoutMs,
  };
}

/** The HTTP/1.1 server's limits from the config's (the inbound listener's and the outbound listeners'). */
export function h1Limits(l: Snapshot['limits']): H1Limits {
  return {
    maxHeaderSize: l.maxHeaderSize,
    maxHeaders: l.maxHeaders,
    headersTimeoutMs: l.headersTimeoutMs,
    requestTimeoutMs: l.requestTimeoutMs,
    idleTimeoutMs: l.idleTimeoutMs,
    pipelineDepth: l.maxConcurrentStreams,
  };
}

/** ALPN: h2 when offered, else http/1.1; a client offering only other protocols is refused (no_application_protocol). */
function selectAlpn({ protocols }: { protocols: string[] }): string | undefined {
  if (protocols.includes('h2')) return 'h2';
  if (protocols.includes('http/1.1')) return 'http/1.1';
  return undefined;
}

/**
 * One listening server for the snapshot's `listen` section: TLS, the HTTP/1.1 server, and HTTP/2
 * on the engine http2Engine() names. A reload keeps it and calls applyLimits.
 */
export class Listener {
  readonly server: SidecarServer;
  /** The HTTP/1.1 side. */
  readonly #h1: H1Server;
  /** The own HTTP/2 engine's settings for new sessions; null on node:http2 or without HTTP/2. */
  readonly #ownH2: OwnH2Settings | null = null;

  constructor(s: Snapshot, hooks: ListenerHooks) {
    const l = s.limits;
    const tlsOpts = {
      ...serverTlsOptions(s),
      // A TCP connection that never completes its TLS handshake holds a maxConnections slot; Node's
      // default lets it do so for 120 s. It gets the same budget as a request head.
      handshakeTimeout: l.headersTimeoutMs,
      // Responses go out as soon as they are written (node:http sets this by default; nginx tcp_nodelay).
      noDelay: true,
    };
    const h1 = new H1Server(h1Limits(l), {
      onRequest: hooks.onRequest,
      onClientError: hooks.onClientError,
      onInternalError: (err, res) => hooks.onInternalError(err, 'h1', res),
    });
    let server: SidecarServer;
    if (s.listen.http2 && http2Engine() === 'own') {
      const tlsServer = tls.createServer({ ...tlsOpts, ALPNCallback: selectAlpn });
      const settings: OwnH2Settings = { limits: h2Limits(l) };
      this.#ownH2 = settings;
      tlsServer.on('secureConnection', (socket: TLSSocket) => {
        if (socket.alpnProtocol !== 'h2') {
          h1.accept(socket);
          return;
        }
        const session = new H2Session(socket, settings.limits, {
          onStream: (stream) => {
            const req = new H2StreamRequest(stream);
            const res = new H2StreamResponse(req);
            try {
              hooks.onRequest(req, res);
            } catch (err) {
              hooks.onInternalError(err, 'h2', res);
            }
          },
          // What the session catches itself: a bug building the request (its stream is reset) or in frame handling (GOAWAY).
          onInternalError: (err, where) => hooks.onInternalError(err, where, null),
        });
        // The sidecar keeps the session on the connection (drain sends it GOAWAY).
        hooks.onSession(session);
      });
      server = tlsServer;
    } else if (s.listen.http2) {
      // allowHTTP1 stays off: node:http2 then hands HTTP/1.1 (and no-ALPN) sockets to
      // 'unknownProtocol' instead of node:http; selectAlpn still offers http/1.1.
      const h2 = http2.createSecureServer({
        ...tlsOpts,
        allowHTTP1: false,
        ALPNCallback: selectAlpn,
        maxSessionMemory: 10,
        maxHeaderListPairs: l.maxHeaders + 4,
        settings: {
          maxConcurrentStreams: l.maxConcurrentStreams,
          maxHeaderListSize: l.maxHeaderSize,
          enablePush: false,
        },
      });
      h2.on('unknownProtocol', (socket: TLSSocket) => h1.accept(socket));
      h2.on('session', (session: http2.ServerHttp2Session) => {
        guardRapidReset(session);
        guardControlFlood(session);
        hooks.onSession(session);
      });
      useStreamApi(h2, hooks);
      server = h2;
    } else {
      server = tls.createServer({ ...tlsOpts, ALPNProtocols: ['http/1.1'] });
      server.on('secureConnection', (socket: TLSSocket) => h1.accept(socket));
    }
    this.#h1 = h1;
    this.server = server;
    applySecureContext(server, s);
    this.applyLimits(s);
    // Verify before the HTTP layer sees the socket: the HTTP listeners (node:http2's own included)
    // sit behind one gate, so a refused connection, which is answered and closed rather than
    // destroyed at once, is never handed to them.
    const serving = server.listeners('secureConnection') as ((this: SidecarServer, socket: TLSSocket) => void)[];
    server.removeAllListeners('secureConnection');
    server.on('secureConnection', (socket: TLSSocket) => {
      if (!hooks.onSecureConnection(socket)) return;
      for (const listener of serving) listener.call(server, socket);
    });
    server.on('tlsClientError', (err: Error, socket: TLSSocket) => hooks.onTlsClientError(err, socket));
  }

  /** Limits that can change on a reload without a new listener. */
  applyLimits(s: Snapshot): void {
    const l = s.limits;
    this.server.maxConnections = l.maxConnections;
    this.#h1.setLimits(h1Limits(l));
    // HTTP/2 sessions idle this long are closed (HTTP/1.1 sockets by their own timeout, h1/connection.ts).
    const own = this.#ownH2;
    if (own !== null) {
      own.limits = h2Limits(l);
    } else if (s.listen.http2) (this.server as http2.Http2SecureServer).setTimeout(l.idleTimeoutMs);
  }
}
