/**
 * The TLS listener: HTTPS (HTTP/1.1) or HTTP/2 with HTTP/1.1 fallback over ALPN. Each
 * connection is judged once after its handshake (tls/verify) and its identity computed once
 * (identity/*); refused connections are destroyed before any HTTP byte is parsed.
 */
import http2 from 'node:http2';
import https from 'node:https';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { Snapshot } from '../config/snapshot.js';
import { serverTlsOptions, applySecureContext } from '../tls/context.js';
import type { InboundRequest, OutboundResponse } from './types.js';
import { H2Request, H2Response } from './h2.js';

export type SidecarServer = https.Server | http2.Http2SecureServer;

export interface ListenerHooks {
  onSecureConnection(socket: TLSSocket): void;
  onTlsClientError(err: Error, socket: TLSSocket): void;
  onRequest(req: InboundRequest, res: OutboundResponse): void;
  onClientError(err: Error & { code?: string }, socket: Socket): void;
}

/** Per listener: how many pipelined requests one HTTP/1.1 connection may have waiting (reloadable). */
const pipelineDepth = new WeakMap<object, number>();
const kPipeline = Symbol('mtls-sidecar.h1-pipeline');

interface H1Socket {
  [kPipeline]?: Pipeline;
  readonly destroyed: boolean;
  destroy(): void;
  /** Node's HTTP/1.1 parser for this socket (internal; llhttp pause stops it mid-buffer). */
  readonly parser?: { pause?: () => void } | null;
}

/** Limits that can change on a reload without a new listener. */
export function applyServerLimits(server: SidecarServer, s: Snapshot): void {
  const l = s.limits;
  server.maxConnections = l.maxConnections;
  pipelineDepth.set(server, l.maxConcurrentStreams);
  const h1 = server as { maxHeadersCount?: number; headersTimeout?: number; requestTimeout?: number; keepAliveTimeout?: number };
  // Detect header-count overflow ourselves (431) instead of Node silently truncating.
  h1.maxHeadersCount = l.maxHeaders + 4;
  h1.headersTimeout = l.headersTimeoutMs;
  h1.requestTimeout = l.requestTimeoutMs;
  h1.keepAliveTimeout = l.idleTimeoutMs;
  server.setTimeout(l.idleTimeoutMs);
}

/**
 * Rapid reset (CVE-2023-44487): every stream a client opens is authorized and forwarded to the
 * app at once, so a client that opens and resets streams in a loop turns each RST_STREAM into
 * an upstream request that is started and then aborted, without ever holding a concurrency
 * slot. Node/nghttp2 only trip on extreme bursts. Like Envoy's premature-reset guard
 * (overload.premature_reset_total_stream_count), a session whose peer has reset at least
 * RAPID_RESET_MIN streams, and more streams than it let complete, gets GOAWAY
 * ENHANCE_YOUR_CALM and is closed. A stream the peer reset is one that closed with a non-zero
 * RST_STREAM code (our own stream.destroy() closes with NO_ERROR and does not count).
 */
export const RAPID_RESET_MIN = 100;

export function guardRapidReset(session: http2.ServerHttp2Session): void {
  let completed = 0;
  let resets = 0;
  session.on('stream', (stream: http2.ServerHttp2Stream) => {
    stream.once('close', () => {
      if (stream.rstCode === http2.constants.NGHTTP2_NO_ERROR) {
        completed++;
        return;
      }
      resets++;
      if (resets >= RAPID_RESET_MIN && resets > completed && !session.destroyed) {
        session.destroy(new Error('rapid reset: too many streams reset by the peer'), http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
      }
    });
  });
}

/**
 * PING and SETTINGS floods (SPEC §4; CVE-2019-9512, CVE-2019-9515). Node and nghttp2 only stop a
 * flood whose ACKs pile up unsent (a client that does not read). A client that reads its ACKs can
 * keep a core busy with them indefinitely. More than CONTROL_FRAMES_PER_SECOND PING or SETTINGS
 * frames on one session within a second gets GOAWAY ENHANCE_YOUR_CALM and the session closed.
 * Keep-alive pings come every few seconds and SETTINGS a handful of times per connection; gRPC's
 * BDP pings are one in flight at a time: all far below the bound.
 */
export const CONTROL_FRAMES_PER_SECOND = 1000;

export function guardControlFlood(session: http2.ServerHttp2Session): void {
  let windowStart = 0;
  let count = 0;
  const onFrame = (): void => {
    const now = Date.now();
    if (now - windowStart >= 1000) {
      windowStart = now;
      count = 0;
    }
    if (++count > CONTROL_FRAMES_PER_SECOND && !session.destroyed) {
      session.destroy(new Error('PING/SETTINGS flood'), http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
    }
  };
  session.on('ping', onFrame);
  session.on('remoteSettings', onFrame);
}

/**
 * HTTP/1.1 pipelining (SPEC §4 "pipelined requests are answered in order and bounded"). Node
 * parses every request already read from the socket and emits each at once; only the queue of
 * finished responses pauses reading. A client that writes thousands of pipelined requests in one
 * burst without reading would have every one authorized and forwarded to the app concurrently
 * (measured: 20 such connections put ~400 requests in flight upstream, stalled other clients
 * for over a second and grew RSS by ~150 MiB). Like nginx, Envoy and HAProxy, one HTTP/1.1
 * connection now has one request in the pipeline at a time; the next waits, parsed but not
 * started, until the previous response has closed. At most `maxConcurrentStreams` may wait: a
 * request past that cuts the connection off (nothing more is parsed, forwarded or buffered).
 */
interface Pipeline {
  active: boolean;
  readonly waiting: Array<readonly [InboundRequest, OutboundResponse]>;
}

export function pipelineH1(server: SidecarServer, req: InboundRequest, res: OutboundResponse, dispatch: (req: InboundRequest, res: OutboundResponse) => void): void {
  if (req.httpVersionMajor !== 1 || req.socket === null) {
    dispatch(req, res);
    return;
  }
  const socket = req.socket as unknown as H1Socket;
  // The parser may still be emitting requests from a buffer read before the cut.
  if (socket.destroyed) return;
  let p = socket[kPipeline];
  if (p === undefined) {
    p = { active: false, waiting: [] };
    socket[kPipeline] = p;
  }
  if (!p.active) {
    run(socket, p, req, res, dispatch);
    return;
  }
  if (p.waiting.length >= (pipelineDepth.get(server) ?? Number.POSITIVE_INFINITY)) {
    // Stop the parser too: otherwise it goes on turning the rest of an already-read buffer (up to
    // ~1,500 minimal requests per 64 KiB) into request objects that are then dropped.
    socket.parser?.pause?.();
    socket.destroy();
    return;
  }
  p.waiting.push([req, res]);
}

function run(socket: H1Socket, p: Pipeline, req: InboundRequest, res: OutboundResponse, dispatch: (req: InboundRequest, res: OutboundResponse) => void): void {
  p.active = true;
  res.on('close', () => {
    p.active = false;
    const next = p.waiting.shift();
    if (next !== undefined && !socket.destroyed) run(socket, p, next[0], next[1], dispatch);
  });
  dispatch(req, res);
}

/**
 * How often Node sweeps HTTP/1.1 connections for `headersTimeout`/`requestTimeout`. Node's
 * default is 30 s, which let a slowloris client live up to 30 s past either limit; sweeping at
 * a quarter of the shorter limit (between 100 ms and 1 s) keeps the cut within ~25% of it.
 */
export function checkingIntervalMs(l: Snapshot['limits']): number {
  return Math.max(100, Math.min(1000, Math.floor(Math.min(l.headersTimeoutMs, l.requestTimeoutMs) / 4)));
}

/**
 * HTTP/2 streams go to the pipeline as H2Request/H2Response (server/h2.ts), not through the
 * compat layer. A 'request' listener (needed for HTTP/1.1 under allowHTTP1) makes node:http2
 * add its own 'stream' listener that builds compat objects; that one is taken off again, and
 * start-up fails loudly if a future Node wires it differently (every stream would otherwise be
 * answered twice or not at all).
 */
function useStreamApi(server: http2.Http2SecureServer, before: ReadonlySet<unknown>, hooks: ListenerHooks): void {
  for (const l of server.listeners('stream')) if (!before.has(l)) server.off('stream', l as (...args: unknown[]) => void);
  if (server.listenerCount('stream') !== 0) throw new Error('unexpected HTTP/2 stream listeners: cannot bypass the compat layer');
  server.on('stream', (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, _flags: number, rawHeaders: string[]) => {
    const req = new H2Request(stream, headers, rawHeaders);
    hooks.onRequest(req, new H2Response(req));
  });
}

export function createListener(s: Snapshot, hooks: ListenerHooks): SidecarServer {
  const l = s.limits;
  const tlsOpts = {
    ...serverTlsOptions(s),
    // A TCP connection that never completes its TLS handshake holds a maxConnections slot; Node's
    // default lets it do so for 120 s. It gets the same budget as a request head.
    handshakeTimeout: l.headersTimeoutMs,
  };
  let server: SidecarServer;
  if (s.listen.http2) {
    server = http2.createSecureServer({
      ...tlsOpts,
      allowHTTP1: true,
      ALPNProtocols: ['h2', 'http/1.1'],
      maxSessionMemory: 10,
      maxHeaderListPairs: l.maxHeaders + 4,
      settings: {
        maxConcurrentStreams: l.maxConcurrentStreams,
        maxHeaderListSize: l.maxHeaderSize,
        enablePush: false,
      },
      // HTTP/1.1 side of allowHTTP1 takes the same limits as the https server below.
      ...({
        maxHeaderSize: l.maxHeaderSize,
        requestTimeout: l.requestTimeoutMs,
        headersTimeout: l.headersTimeoutMs,
        connectionsCheckingInterval: checkingIntervalMs(l),
      } as object),
    });
  } else {
    server = https.createServer({
      ...tlsOpts,
      ALPNProtocols: ['http/1.1'],
      maxHeaderSize: l.maxHeaderSize,
      requestTimeout: l.requestTimeoutMs,
      headersTimeout: l.headersTimeoutMs,
      connectionsCheckingInterval: checkingIntervalMs(l),
      keepAliveTimeout: l.idleTimeoutMs,
      insecureHTTPParser: false,
      joinDuplicateHeaders: false,
    });
  }
  applySecureContext(server, s);
  applyServerLimits(server, s);
  if (s.listen.http2) {
    server.on('session', (session: http2.ServerHttp2Session) => {
      guardRapidReset(session);
      guardControlFlood(session);
    });
  }
  // Verify before the HTTP layer sees the socket: prepend ahead of Node's own listener.
  server.prependListener('secureConnection', (socket: TLSSocket) => hooks.onSecureConnection(socket));
  server.on('tlsClientError', (err: Error, socket: TLSSocket) => hooks.onTlsClientError(err, socket));
  const onRequest = (req: InboundRequest, res: OutboundResponse): void => pipelineH1(server, req, res, hooks.onRequest);
  const compatBefore = new Set(server.listeners('stream'));
  server.on('request', (req: unknown, res: unknown) => onRequest(req as InboundRequest, res as OutboundResponse));
  server.on('checkContinue', (req: unknown, res: unknown) => onRequest(req as InboundRequest, res as OutboundResponse));
  if (s.listen.http2) useStreamApi(server as http2.Http2SecureServer, compatBefore, hooks);
  server.on('clientError', (err: Error, socket: Socket) => hooks.onClientError(err, socket));
  return server;
}
