/**
 * The TLS listener: HTTP/1.1 (transport/h1.ts), or HTTP/2 (node:http2 on its core stream API,
 * transport/h2-node.ts) with HTTP/1.1 for clients that negotiate it, or no protocol, over ALPN. Each
 * connection is judged once after its handshake (tls/verify) and its identity computed once
 * (identity/*); a refused connection never reaches the HTTP layer (server/refusal.ts answers it).
 */
import http2 from 'node:http2';
import tls from 'node:tls';
import type { TLSSocket } from 'node:tls';
import type { Snapshot } from '../config/snapshot.js';
import { serverTlsOptions, applySecureContext } from '../tls/context.js';
import type { InboundRequest, OutboundResponse } from './types.js';
import { H2Request, H2Response } from './h2-node.js';
import { H1Server } from './h1.js';
import type { H1Limits } from './h1.js';
import { H2Session } from './h2/session.js';
import type { H2Limits } from './h2/session.js';
import { H2StreamRequest, H2StreamResponse } from './h2/exchange.js';
import { ControlGuard, ResetGuard } from './h2/guard.js';

export type SidecarServer = tls.Server | http2.Http2SecureServer;

/**
 * Where a bug in request handling was caught (the `where` label of
 * mtls_sidecar_internal_errors_total): an HTTP/1.1 or HTTP/2 request, the own HTTP/2
 * implementation's frame handling (which costs the connection), or the forward handler inside
 * an upstream client's callback (`upstream`, reported by the runtime).
 */
export type InternalErrorWhere = 'h1' | 'h2' | 'h2_frame' | 'upstream';

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
}

/** The HTTP/1.1 side of each listener. */
const h1Servers = new WeakMap<SidecarServer, H1Server>();

/**
 * Which HTTP/2 implementation serves: the sidecar's own framing (transport/h2/, the default) or
 * node:http2 (transport/h2-node.ts), kept as a fallback an operator can choose with
 * MTLS_SIDECAR_HTTP2=node while the own one is new. Read once, when a listener is created.
 */
export type Http2Engine = 'own' | 'node';
export function http2Engine(env: NodeJS.ProcessEnv = process.env): Http2Engine {
  return env['MTLS_SIDECAR_HTTP2'] === 'node' ? 'node' : 'own';
}

/** The own HTTP/2 side's limits per listener (a reload updates them for new connections). */
interface OwnH2Settings {
  limits: H2Limits;
}
const ownH2 = new WeakMap<SidecarServer, OwnH2Settings>();

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

function h1Limits(l: Snapshot['limits']): H1Limits {
  return {
    maxHeaderSize: l.maxHeaderSize,
    maxHeaders: l.maxHeaders,
    headersTimeoutMs: l.headersTimeoutMs,
    requestTimeoutMs: l.requestTimeoutMs,
    idleTimeoutMs: l.idleTimeoutMs,
    pipelineDepth: l.maxConcurrentStreams,
  };
}

/** Limits that can change on a reload without a new listener. */
export function applyServerLimits(server: SidecarServer, s: Snapshot): void {
  const l = s.limits;
  server.maxConnections = l.maxConnections;
  h1Servers.get(server)?.setLimits(h1Limits(l));
  // HTTP/2 sessions idle this long are closed (HTTP/1.1 sockets by their own timeout, h1.ts).
  const own = ownH2.get(server);
  if (own !== undefined) {
    own.limits = h2Limits(l);
  } else if (s.listen.http2) (server as http2.Http2SecureServer).setTimeout(l.idleTimeoutMs);
}

/** ALPN: h2 when offered, else http/1.1; a client offering only other protocols is refused (no_application_protocol). */
function selectAlpn({ protocols }: { protocols: string[] }): string | undefined {
  if (protocols.includes('h2')) return 'h2';
  if (protocols.includes('http/1.1')) return 'http/1.1';
  return undefined;
}

/**
 * Rapid reset (CVE-2023-44487): every stream a client opens is authorized and forwarded to the
 * app at once, so a client that opens and resets streams in a loop turns each RST_STREAM into
 * an upstream request that is started and then aborted, without ever holding a concurrency
 * slot. Node/nghttp2 only trip on extreme bursts. Like Envoy's premature-reset guard
 * (overload.premature_reset_total_stream_count), a session whose peer has reset at least
 * RAPID_RESET_MIN streams, and more streams than it let complete, gets GOAWAY
 * ENHANCE_YOUR_CALM and is closed. A stream counts as reset when it closed before its response
 * was finished, whatever the RST_STREAM code (NO_ERROR included).
 * The own HTTP/2 implementation (transport/h2/session.ts) applies the same rule and also counts
 * streams it refused and stream errors the client provoked.
 */
export { RAPID_RESET_MIN, CONTROL_FRAMES_PER_SECOND } from './h2/guard.js';

/** Per session: its reset accounting (transport/h2/guard.ts). */
interface ResetCounts {
  readonly session: http2.ServerHttp2Session;
  readonly guard: ResetGuard;
}
const kResetCounts = Symbol('resetCounts');
/** The counts ride on the stream: stream.session is gone by the time 'close' fires. */
type CountedStream = http2.ServerHttp2Stream & { [kResetCounts]?: ResetCounts };

/** One shared listener (no closure per stream): 'close' comes once per stream. */
function countStreamClose(this: CountedStream): void {
  const c = this[kResetCounts];
  if (c === undefined) return;
  // A closed stream someone still holds must not keep its session alive through the counts.
  this[kResetCounts] = undefined;
  // Completed: closed cleanly after its whole response. A client's RST_STREAM NO_ERROR before
  // that is a reset like any other (it still cost an upstream request).
  // (Node ends the writable side of a reset stream too; `aborted` tells the two apart.)
  if (this.rstCode === http2.constants.NGHTTP2_NO_ERROR && !this.aborted) {
    c.guard.completed();
    return;
  }
  if (c.guard.strike(Date.now()) && !c.session.destroyed) {
    c.session.destroy(new Error('rapid reset: too many streams reset by the peer'), http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
  }
}

function countStream(this: ResetCounts, stream: CountedStream): void {
  stream[kResetCounts] = this;
  stream.on('close', countStreamClose);
}

export function guardRapidReset(session: http2.ServerHttp2Session): void {
  const counts: ResetCounts = { session, guard: new ResetGuard() };
  session.on('stream', countStream.bind(counts));
}

/**
 * PING and SETTINGS floods (SPEC §4; CVE-2019-9512, CVE-2019-9515). Node and nghttp2 only stop a
 * flood whose ACKs pile up unsent (a client that does not read). A client that reads its ACKs can
 * keep a core busy with them indefinitely. More than CONTROL_FRAMES_PER_SECOND PING or SETTINGS
 * frames on one session within a second gets GOAWAY ENHANCE_YOUR_CALM and the session closed.
 * Keep-alive pings come every few seconds and SETTINGS a handful of times per connection; gRPC's
 * BDP pings are one in flight at a time: all far below the bound.
 */

export function guardControlFlood(session: http2.ServerHttp2Session): void {
  const guard = new ControlGuard();
  const onFrame = (): void => {
    if (guard.frame(Date.now()) && !session.destroyed) {
      session.destroy(new Error('PING/SETTINGS flood'), http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
    }
  };
  session.on('ping', onFrame);
  session.on('remoteSettings', onFrame);
}

/**
 * HTTP/2 requests go to the pipeline as H2Request/H2Response (transport/h2-node.ts), not through the
 * compat layer, which node:http2 only sets up for a 'request' listener (none is added). Start-up
 * fails loudly if a future Node adds a 'stream' listener of its own (every stream would otherwise
 * be answered twice).
 */
function useStreamApi(server: http2.Http2SecureServer, hooks: ListenerHooks): void {
  if (server.listenerCount('stream') !== 0) throw new Error('unexpected HTTP/2 stream listeners: cannot bypass the compat layer');
  server.on('stream', (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, _flags: number, rawHeaders: string[]) => {
    let res: H2Response | null = null;
    try {
      const req = new H2Request(stream, headers, rawHeaders);
      res = new H2Response(req);
      hooks.onRequest(req, res);
    } catch (err) {
      // Thrown out of a 'stream' listener, it would be an uncaught exception: the process.
      hooks.onInternalError(err, 'h2', res);
      if (res === null && !stream.destroyed) stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
    }
  });
}

export function createListener(s: Snapshot, hooks: ListenerHooks): SidecarServer {
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
    ownH2.set(tlsServer, settings);
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
      tlsServer.emit('session', session);
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
    });
    useStreamApi(h2, hooks);
    server = h2;
  } else {
    server = tls.createServer({ ...tlsOpts, ALPNProtocols: ['http/1.1'] });
    server.on('secureConnection', (socket: TLSSocket) => h1.accept(socket));
  }
  h1Servers.set(server, h1);
  applySecureContext(server, s);
  applyServerLimits(server, s);
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
  return server;
}
