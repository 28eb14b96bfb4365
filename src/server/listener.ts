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

export type SidecarServer = https.Server | http2.Http2SecureServer;

export interface ListenerHooks {
  onSecureConnection(socket: TLSSocket): void;
  onTlsClientError(err: Error, socket: TLSSocket): void;
  onRequest(req: InboundRequest, res: OutboundResponse): void;
  onClientError(err: Error & { code?: string }, socket: Socket): void;
}

/** Limits that can change on a reload without a new listener. */
export function applyServerLimits(server: SidecarServer, s: Snapshot): void {
  const l = s.limits;
  server.maxConnections = l.maxConnections;
  const h1 = server as { maxHeadersCount?: number; headersTimeout?: number; requestTimeout?: number; keepAliveTimeout?: number };
  // Detect header-count overflow ourselves (431) instead of Node silently truncating.
  h1.maxHeadersCount = l.maxHeaders + 4;
  h1.headersTimeout = l.headersTimeoutMs;
  h1.requestTimeout = l.requestTimeoutMs;
  h1.keepAliveTimeout = l.idleTimeoutMs;
  server.setTimeout(l.idleTimeoutMs);
}

export function createListener(s: Snapshot, hooks: ListenerHooks): SidecarServer {
  const l = s.limits;
  const tlsOpts = serverTlsOptions(s);
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
      ...({ maxHeaderSize: l.maxHeaderSize, requestTimeout: l.requestTimeoutMs, headersTimeout: l.headersTimeoutMs } as object),
    });
  } else {
    server = https.createServer({
      ...tlsOpts,
      ALPNProtocols: ['http/1.1'],
      maxHeaderSize: l.maxHeaderSize,
      requestTimeout: l.requestTimeoutMs,
      headersTimeout: l.headersTimeoutMs,
      keepAliveTimeout: l.idleTimeoutMs,
      insecureHTTPParser: false,
      joinDuplicateHeaders: false,
    });
  }
  applySecureContext(server, s);
  applyServerLimits(server, s);
  // Verify before the HTTP layer sees the socket: prepend ahead of Node's own listener.
  server.prependListener('secureConnection', (socket: TLSSocket) => hooks.onSecureConnection(socket));
  server.on('tlsClientError', (err: Error, socket: TLSSocket) => hooks.onTlsClientError(err, socket));
  server.on('request', (req: unknown, res: unknown) => hooks.onRequest(req as InboundRequest, res as OutboundResponse));
  server.on('checkContinue', (req: unknown, res: unknown) => hooks.onRequest(req as InboundRequest, res as OutboundResponse));
  server.on('clientError', (err: Error, socket: Socket) => hooks.onClientError(err, socket));
  return server;
}
