/**
 * The inbound pipeline: the only place that knows the order of the stages (linkerd's
 * push_* idea, as one straight-line function). Each stage is a plain function over the
 * frozen snapshot; only the upstream call is asynchronous.
 *
 *   connection (tls/verify, identity/peer, identity/match — once per connection)
 *   -> headers scan -> path normalize -> route -> identity/scopes -> body limit
 *   -> 100-continue -> forward (proxy/forward) -> audit
 */
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { TLSSocket } from 'node:tls';
import type { Pool } from 'undici';
import type { Snapshot } from '../config/snapshot.js';
import type { Audit } from '../audit/audit.js';
import type { Metrics } from '../admin/metrics.js';
import type { Log } from '../log.js';
import { normalizeTarget } from '../policy/normalize.js';
import { scanRequestHeaders } from '../proxy/headers.js';
import { BodyMeter, ForwardHandler, dispatchOptions } from '../proxy/forward.js';
import type { RequestReason } from '../reasons.js';
import { headerSafe } from '../identity/peer.js';
import { RequestContext, connOf, connOfSession } from './context.js';
import type { ConnInfo } from './context.js';
import { writeRefusal } from './respond.js';
import type { RefusalReason } from './respond.js';
import type { InboundRequest, OutboundResponse } from './types.js';

/** What the pipeline needs from the running sidecar. */
export interface PipelineHost {
  readonly snapshot: Snapshot;
  readonly pool: Pool;
  readonly audit: Audit;
  readonly metrics: Metrics;
  readonly log: Log;
  /** Re-judge an open connection after a reload; null when it may go on. */
  refreshConnection(conn: ConnInfo): RequestReason | null;
  /** After the listener closed: HTTP/1.1 responses say `Connection: close`. */
  readonly closing: boolean;
  requestEnded(conn: ConnInfo, socket: { destroy(): void; destroyed?: boolean } | null): void;
}

const REQUEST_ID = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;

export function handleRequest(host: PipelineHost, req: InboundRequest, res: OutboundResponse): void {
  const session = req.httpVersionMajor === 2 ? req.stream?.session : undefined;
  const socket = session === undefined ? req.socket : session.socket;
  const conn = session === undefined ? connOf(socket) : connOfSession(session);
  if (conn === undefined || socket === null) {
    // Every accepted connection was registered in secureConnection; anything else is refused.
    res.destroy();
    return;
  }
  const s = host.snapshot;
  const ctx = new RequestContext(performance.now(), conn, req.httpVersionMajor === 2 ? 'HTTP/2' : 'HTTP/1.1', req.method ?? '');
  const incomingId = req.headers['x-request-id'];
  ctx.requestId = typeof incomingId === 'string' && REQUEST_ID.test(incomingId) ? incomingId : randomUUID();
  const target = req.url ?? '';
  conn.inflight++;
  res.once('close', () => onClose(host, ctx, res, session === undefined ? socket : null));

  if (conn.generation !== s.generation) {
    const withdrawn = host.refreshConnection(conn);
    if (withdrawn !== null) {
      ctx.path = auditPath(target);
      refuse(host, ctx, res, 'trust_withdrawn', true);
      // The connection itself is no longer trusted: end it once this answer is out.
      if (session !== undefined) (session as unknown as { close(): void }).close();
      return;
    }
  }

  // 1. Header sanity (duplicates that enable smuggling or auth confusion) and the header-count limit.
  if (req.rawHeaders.length > s.limits.maxHeaders * 2 + 8) {
    ctx.path = auditPath(target);
    return refuse(host, ctx, res, 'header_too_large', true);
  }
  const connection = req.headers['connection'];
  const scan = scanRequestHeaders(req.rawHeaders, typeof connection === 'string' ? connection : undefined);
  if (!scan.ok) {
    ctx.path = auditPath(target);
    return refuse(host, ctx, res, 'bad_request', true);
  }

  // 2. Path normalization: what is routed is byte for byte what is forwarded.
  const norm = normalizeTarget(target);
  if (!norm.ok) {
    ctx.path = auditPath(target);
    return refuse(host, ctx, res, 'bad_path', false);
  }
  ctx.path = norm.path;

  // 3. Route (default deny).
  const route = s.routeTable.match(ctx.method, norm.path);
  if (route === undefined) return refuse(host, ctx, res, 'no_route', false);
  ctx.route = route;

  // 4. Identity and scopes. A public route admits any trusted certificate.
  if (!route.public) {
    const identity = conn.identity;
    if (identity === null) return refuse(host, ctx, res, 'no_identity', false);
    for (let i = 0; i < route.scopes.length; i++) {
      if (!identity.scopeSet.has(route.scopes[i] as string)) return refuse(host, ctx, res, 'scope_missing', false);
    }
  }

  // 5. Body limit known up front.
  if (scan.contentLength !== null && scan.contentLength > s.limits.maxBodySize) return refuse(host, ctx, res, 'body_too_large', true);

  // 6. Authorized: only now may a client waiting on Expect: 100-continue send its body.
  if (scan.expectContinue && req.httpVersionMajor === 1) res.writeContinue();

  forward(host, s, ctx, req, res, scan.headers, scan.host, scan.contentLength, norm.path + norm.query);
}

function forward(
  host: PipelineHost,
  s: Snapshot,
  ctx: RequestContext,
  req: InboundRequest,
  res: OutboundResponse,
  headers: string[],
  authority: string | null,
  contentLength: number | null,
  pathAndQuery: string,
): void {
  const conn = ctx.conn;
  if (authority !== null) headers.push('host', authority);
  headers.push('x-forwarded-proto', 'https', 'x-forwarded-for', conn.remote, 'x-request-id', ctx.requestId);
  if (s.forwardClientCert === 'sanitize_set') headers.push('x-forwarded-client-cert', conn.peer.xfcc);
  if (conn.identity !== null) headers.push('x-client-identity', conn.identity.name, 'x-client-scopes', conn.identity.scopesHeader);

  const hasBody =
    req.httpVersionMajor === 2 ? req.stream?.endAfterHeaders !== true : (contentLength !== null && contentLength > 0) || req.headers['transfer-encoding'] !== undefined;
  let meter: BodyMeter | null = null;
  if (hasBody) {
    meter = new BodyMeter(s.limits.maxBodySize);
    req.pipe(meter);
  } else {
    req.resume();
  }
  ctx.decision = 'allow';
  const handler = new ForwardHandler(ctx, res, meter, s.securityHeaders, req.httpVersionMajor === 1 ? host : null, (c, r, failure) => onForwardDone(host, c, r, failure));
  res.once('close', () => handler.abort());
  ctx.upstreamStart = performance.now();
  host.pool.dispatch(dispatchOptions(pathAndQuery, ctx.method, headers, meter), handler);
}

function onForwardDone(host: PipelineHost, ctx: RequestContext, res: OutboundResponse, failure: RequestReason | null): void {
  if (failure === null) {
    ctx.reason = 'ok';
    return; // audited on close
  }
  if (failure === 'client_aborted') {
    ctx.reason = 'client_aborted';
    return;
  }
  if (!res.headersSent && !res.writableEnded) {
    ctx.reason = failure;
    if (failure === 'body_too_large') ctx.decision = 'deny';
    ctx.bytesOut = writeRefusal(res, failure as RefusalReason, ctx.requestId, host.snapshot.securityHeaders, null, failure === 'body_too_large');
    ctx.status = statusOf(res, ctx.status);
  } else {
    // Headers already went out: the only honest signal left is to cut the stream.
    ctx.reason = failure;
    res.destroy();
  }
}

function refuse(host: PipelineHost, ctx: RequestContext, res: OutboundResponse, reason: RefusalReason, close: boolean): void {
  ctx.decision = 'deny';
  ctx.reason = reason;
  ctx.bytesOut = writeRefusal(res, reason, ctx.requestId, host.snapshot.securityHeaders, null, close || host.closing);
  ctx.status = statusOf(res, 0);
  // Unread request bodies are discarded (HTTP/2) or the connection is closed (HTTP/1.1, `close`).
  res.req.resume();
}

function statusOf(res: OutboundResponse, fallback: number): number {
  const code = (res as { statusCode?: number }).statusCode;
  return typeof code === 'number' ? code : fallback;
}

function onClose(host: PipelineHost, ctx: RequestContext, res: OutboundResponse, h1socket: { destroy(): void; destroyed?: boolean } | null): void {
  if (ctx.audited) return;
  ctx.audited = true;
  ctx.conn.inflight--;
  if (host.closing) host.requestEnded(ctx.conn, h1socket);
  if (!res.writableEnded && ctx.reason === 'ok') ctx.reason = 'client_aborted';
  if (ctx.status === 0) ctx.status = statusOf(res, 0);
  const conn = ctx.conn;
  const durationMs = performance.now() - ctx.start;
  host.metrics.request(
    conn.identity === null ? 'unknown' : conn.identity.name,
    ctx.route === null ? 'unknown' : ctx.route.name,
    ctx.method,
    ctx.status,
    ctx.decision,
    durationMs / 1000,
    ctx.upstreamMs === null ? null : ctx.upstreamMs / 1000,
  );
  host.audit.request({
    requestId: ctx.requestId,
    identity: conn.identity === null ? null : conn.identity.name,
    certSha256: conn.peer.sha256Hex,
    uri: conn.peer.uri,
    subject: conn.peer.subject,
    method: ctx.method,
    path: ctx.path,
    route: ctx.route === null ? null : ctx.route.name,
    decision: ctx.decision,
    reason: ctx.reason,
    status: ctx.status,
    durationMs: round3(durationMs),
    upstreamMs: ctx.upstreamMs === null ? null : round3(ctx.upstreamMs),
    bytesIn: ctx.bytesIn,
    bytesOut: ctx.bytesOut,
    remote: conn.remote,
    tlsVersion: conn.tlsVersion,
    protocol: ctx.protocol,
  });
}

/** The path part of a refused target, for the audit line: no query (it may hold secrets), bounded, printable. */
function auditPath(target: string): string {
  const q = target.search(/[?#]/);
  const p = q === -1 ? target : target.slice(0, q);
  return headerSafe(p.length > 512 ? p.slice(0, 512) : p);
}

function round3(n: number): number {
  return Math.round(n * 1000) / 1000;
}
