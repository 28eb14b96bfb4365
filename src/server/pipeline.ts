/**
 * The inbound pipeline: the only place that knows the order of the stages (linkerd's
 * push_* idea, as straight-line functions). Each stage is a plain function over the frozen
 * snapshot; only JWT verification without a cached token, the Redis limiter and the upstream
 * call are asynchronous, and the synchronous cases never touch a Promise. The decisions shared
 * with `explain` (server/explain.ts, which walks these stages for a certificate and a path) live
 * in server/decide.ts, so the two cannot disagree.
 *
 *   connection (tls/verify, identity/peer, identity/match — once per connection)
 *   -> headers scan -> path normalize -> route -> identity/scopes (server/decide.ts) -> body limit
 *   -> JWT (jwt/verify) -> rate limit (ratelimit/*) -> 100-continue -> forward (proxy/forward)
 *   -> audit + metrics when the response closes
 */
import { performance } from 'node:perf_hooks';
import type { UpstreamClient } from '../proxy/upstream.js';
import type { Snapshot } from '../config/snapshot.js';
import type { Audit } from '../audit/audit.js';
import type { Metrics } from '../admin/metrics.js';
import type { Log } from '../log.js';
import { normalizeTarget } from '../policy/normalize.js';
import { scanRequestHeaders } from '../proxy/headers.js';
import { BodyMeter, ForwardHandler } from '../proxy/forward.js';
import type { ForwardFailure } from '../proxy/forward.js';
import type { RequestReason } from '../reasons.js';
import { headerSafe } from '../identity/peer.js';
import { misdirected } from '../tls/authority.js';
import { certThumbprintB64url, wwwAuthenticate } from '../jwt/verify.js';
import type { JwtResult, JwtVerifier } from '../jwt/verify.js';
import { routeNeedsToken } from '../jwt/settings.js';
import { rateLimitHeaders } from '../ratelimit/headers.js';
import type { RatePlan, RatePlanner } from '../ratelimit/plan.js';
import type { RateDecision, RateLimiter } from '../ratelimit/types.js';
import { ForwardPlan, RequestContext, connOfConnection } from './context.js';
import type { ConnInfo } from './context.js';
import { writeRefusal } from './respond.js';
import { authorizationRefusal, ratePlanOf, refusalAudited, servedReason } from './decide.js';
import { newRequestId } from './request-id.js';
import type { RefusalReason } from './respond.js';
import type { InboundRequest, OutboundResponse } from '../transport/types.js';
import type { InternalErrorWhere } from '../transport/listener.js';
import type { Readable } from 'node:stream';

/** The rate limiter in force: planner per snapshot, limiter (with its buckets) per backend. */
export interface RateLimitState {
  readonly planner: RatePlanner;
  readonly limiter: RateLimiter;
  readonly onError: 'allow' | 'deny';
}

/** What the pipeline needs from the running sidecar. */
export interface PipelineHost {
  readonly snapshot: Snapshot;
  readonly pool: UpstreamClient;
  readonly audit: Audit;
  readonly metrics: Metrics;
  readonly log: Log;
  readonly rate: RateLimitState | null;
  /** The token check of the current snapshot, when it has a `jwt` section. */
  readonly jwt: { readonly verifier: JwtVerifier; readonly required: boolean } | null;
  /** Re-judge an open connection after a reload; null when it may go on. */
  refreshConnection(conn: ConnInfo): RequestReason | null;
  /** After the listener closed: HTTP/1.1 responses say `Connection: close`. */
  readonly closing: boolean;
  requestEnded(conn: ConnInfo, socket: { end(): void; destroyed?: boolean } | null): void;
  /** A stage threw (a bug): log, count, answer 500 or cut `res`; returns the 500 body's bytes. */
  internalError(err: unknown, where: InternalErrorWhere, res: OutboundResponse | null, requestId: string | null): number;
}

const REQUEST_ID = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;
/** A Host (or :authority) is a host and an optional port: no path, userinfo or spaces (RFC 9110 7.2). */
const BAD_HOST = /[/\\@\s?#]/;

export function handleRequest(rt: PipelineHost, req: InboundRequest, res: OutboundResponse): void {
  const conn = connOfConnection(req.connection);
  if (conn === undefined) {
    // Every accepted connection was registered in secureConnection; anything else is refused.
    res.destroy();
    return;
  }
  const s = rt.snapshot;
  const ctx = new RequestContext(performance.now(), conn, req.protocol, req.method ?? '', req, res);
  const incomingId = req.headers['x-request-id'];
  ctx.requestId = typeof incomingId === 'string' && REQUEST_ID.test(incomingId) ? incomingId : newRequestId();
  const target = req.url ?? '';
  conn.inflight++;
  // One 'close' listener per request (on, not once: a response closes once, and once() wraps).
  res.on('close', () => onClose(rt, ctx));
  try {
    admit(rt, s, ctx, req, conn, target);
  } catch (err) {
    internalError(rt, ctx, err);
  }
}

/**
 * A stage threw: a bug, never the client's doing. The runtime logs and counts it and answers 500
 * (or cuts a response already under way); the audit line says `internal_error`. Every stage runs
 * under this guard: handleRequest's own call, and the continuations after an asynchronous token
 * check or rate-limit decision, where an exception would otherwise be an unhandled rejection.
 */
function internalError(rt: PipelineHost, ctx: RequestContext, err: unknown): void {
  ctx.reason = 'internal_error';
  ctx.bytesOut += rt.internalError(err, ctx.protocol === 'HTTP/2' ? 'h2' : 'h1', ctx.res, ctx.requestId);
}

/** 1-5: what the head alone decides, then the token check. */
function admit(rt: PipelineHost, s: Snapshot, ctx: RequestContext, req: InboundRequest, conn: ConnInfo, target: string): void {
  if (conn.generation !== s.generation) {
    const withdrawn = rt.refreshConnection(conn);
    if (withdrawn !== null) {
      ctx.path = auditPath(target);
      refuse(rt, ctx, 'trust_withdrawn', true, null);
      // The connection itself is no longer trusted: it ends once this answer is out.
      ctx.res.endConnectionAfter();
      return;
    }
  }

  // audit.onFull: refuse, and the audit destination is full or failing: nothing is served that
  // could not be audited. This refusal's own line is kept if the buffer has room, else counted
  // as dropped (audit/sink.ts); it never waits.
  if (rt.audit.refusing) {
    ctx.path = auditPath(target);
    return refuse(rt, ctx, 'audit_unavailable', false, null);
  }

  // 1. Header sanity (duplicates that enable smuggling or auth confusion) and the header-count limit.
  if (req.rawHeaders.length > s.limits.maxHeaders * 2 + 8) {
    ctx.path = auditPath(target);
    return refuse(rt, ctx, 'header_too_large', true, null);
  }
  const connection = req.headers['connection'];
  const scan = scanRequestHeaders(req.rawHeaders, typeof connection === 'string' ? connection : undefined, s.jwt !== null);
  if (!scan.ok) {
    ctx.path = auditPath(target);
    return refuse(rt, ctx, 'bad_request', true, null);
  }

  // RFC 9112 3.2: an HTTP/1.1 request without Host is a 400 (node:http refused it before the pipeline).
  if (scan.host === null ? req.hostRequired : BAD_HOST.test(scan.host)) {
    ctx.path = auditPath(target);
    return refuse(rt, ctx, 'bad_request', true, null);
  }
  // A request for another origin than this connection serves (RFC 9110 15.5.20, RFC 6066 11.1).
  // Judged once per Host value per connection: the next request naming it costs one compare.
  if (conn.sni !== null && scan.host !== null && scan.host !== conn.servedHost) {
    if (misdirected(conn.sni, scan.host, s.tls.serverLeaf)) {
      ctx.path = auditPath(target);
      return refuse(rt, ctx, 'misdirected', false, null);
    }
    conn.servedHost = scan.host;
  }

  // 2. Path normalization: what is routed is byte for byte what is forwarded.
  const norm = normalizeTarget(target);
  if (!norm.ok) {
    ctx.path = auditPath(target);
    return refuse(rt, ctx, 'bad_path', false, null);
  }
  ctx.path = norm.path;

  // 3-4. Route (default deny), identity and scopes (server/decide.ts, shared with `explain`).
  // In audit mode (policy.mode, or the route's own) an authorization refusal is noted as
  // wouldDeny and the request goes on; trust, limits and rate limits are never relaxed.
  const route = s.routeTable.match(ctx.method, norm.path);
  if (route !== undefined) ctx.route = route;
  const refusal = authorizationRefusal(route, conn.identity);
  if (refusal !== null) {
    if (!refusalAudited(s, route)) return refuse(rt, ctx, refusal, false, null);
    ctx.wouldDeny = refusal;
  }

  // 5. Body limit known up front.
  if (scan.contentLength !== null && scan.contentLength > s.limits.maxBodySize) return refuse(rt, ctx, 'body_too_large', true, null);

  const authorization = req.headers['authorization'];
  checkToken(rt, s, ctx, new ForwardPlan(scan.headers, scan.host, scan.contentLength, norm.path + norm.query, scan.expectContinue, authorization));
}

/** 6. JWT, where the route needs one (SPEC §3 jwt, §4). */
function checkToken(rt: PipelineHost, s: Snapshot, ctx: RequestContext, plan: ForwardPlan): void {
  const jwt = rt.jwt;
  const route = ctx.route;
  if (jwt === null || route === null || !routeNeedsToken(route, jwt.required)) return checkRate(rt, s, ctx, plan);
  const conn = ctx.conn;
  if (conn.jwtThumbprint === null) conn.jwtThumbprint = certThumbprintB64url(conn.x509.raw);
  if (conn.jwtCache === null) conn.jwtCache = jwt.verifier.newConnectionCache();
  const result = jwt.verifier.verify(plan.authorization, conn.jwtThumbprint, route.tokenScopes, conn.jwtCache);
  if (result instanceof Promise) {
    result
      .then(
        (r) => afterToken(rt, s, ctx, plan, r),
        () => afterToken(rt, s, ctx, plan, { ok: false, reason: 'jwt_invalid' }),
      )
      .catch((err: unknown) => internalError(rt, ctx, err));
  } else {
    afterToken(rt, s, ctx, plan, result);
  }
}

function afterToken(rt: PipelineHost, s: Snapshot, ctx: RequestContext, plan: ForwardPlan, r: JwtResult): void {
  if (ctx.audited) return; // the client left while the token was being checked
  if (r.ok) ctx.jwt = r;
  else if (refusalAudited(s, ctx.route)) ctx.wouldDeny ??= r.reason;
  else return refuse(rt, ctx, r.reason, false, { 'www-authenticate': wwwAuthenticate(r.reason) });
  checkRate(rt, s, ctx, plan);
}

/** 7. Rate limit per identity (after authorization: a refused request spends no token). */
function checkRate(rt: PipelineHost, s: Snapshot, ctx: RequestContext, plan: ForwardPlan): void {
  const rate = rt.rate;
  if (rate === null) return forward(rt, s, ctx, plan);
  const conn = ctx.conn;
  // Without a route (audit mode let it through) the identity's own bucket still applies.
  const ratePlan = ratePlanOf(rate.planner, conn.identity, conn.peer, ctx.route);
  if (ratePlan === null) return forward(rt, s, ctx, plan);
  const decision = rate.limiter.take(ratePlan.takes);
  if (decision instanceof Promise) {
    decision
      .then(
        (d) => afterRate(rt, s, ctx, plan, rate, ratePlan, d),
        () => afterRate(rt, s, ctx, plan, rate, ratePlan, { kind: 'unavailable' }),
      )
      .catch((err: unknown) => internalError(rt, ctx, err));
  } else {
    afterRate(rt, s, ctx, plan, rate, ratePlan, decision);
  }
}

function afterRate(rt: PipelineHost, s: Snapshot, ctx: RequestContext, plan: ForwardPlan, rate: RateLimitState, ratePlan: RatePlan, d: RateDecision): void {
  if (ctx.audited) return;
  const identity = ctx.conn.identity === null ? 'unknown' : ctx.conn.identity.name;
  switch (d.kind) {
    case 'allow':
      ctx.extraHeaders = rateLimitHeaders(d, ratePlan.names[d.index] ?? 'default');
      return forward(rt, s, ctx, plan);
    case 'deny':
      rt.metrics.rateLimited(identity);
      return refuse(rt, ctx, 'rate_limited', false, rateLimitHeaders(d, ratePlan.names[d.index] ?? 'default'));
    case 'unavailable':
      rt.metrics.rateLimitBackendError(rate.onError);
      if (rate.onError === 'deny') return refuse(rt, ctx, 'ratelimit_unavailable', false, null);
      ctx.reason = 'ratelimit_unavailable'; // allowed, but the audit line says the limit was not applied
      return forward(rt, s, ctx, plan);
    default: {
      const never: never = d;
      return never;
    }
  }
}

/** 8. Authorized and within limits: forward to the app. */
function forward(rt: PipelineHost, s: Snapshot, ctx: RequestContext, plan: ForwardPlan): void {
  const req = ctx.req;
  const res = ctx.res;
  const conn = ctx.conn;
  // Only now may a client waiting on Expect: 100-continue send its body.
  if (plan.expectContinue) res.writeContinue();
  const headers = plan.headers;
  if (plan.authority !== null) headers.push('host', plan.authority);
  headers.push('x-forwarded-proto', 'https', 'x-forwarded-for', conn.remote, 'x-request-id', ctx.requestId);
  if (s.forwardClientCert === 'sanitize_set') headers.push('x-forwarded-client-cert', conn.peer.xfcc);
  if (conn.identity !== null) headers.push('x-client-identity', conn.identity.name, 'x-client-scopes', conn.identity.scopesHeader);
  const jwt = ctx.jwt;
  if (jwt !== null) {
    if (jwt.subHeader !== null) headers.push('x-jwt-sub', jwt.subHeader);
    headers.push('x-jwt-scopes', jwt.scopesHeader);
  }

  const hasBody = req.hasBody;
  // A body with a Content-Length (checked against maxBodySize above) in a stream of its own
  // (HTTP/1.1: framed exactly by llhttp, and by the upstream client, which refuses to send more or
  // less) goes as is. Everything else (chunked; HTTP/2, whose stream is also the response and
  // must not be destroyed) runs through the BodyMeter, a Transform per request that costs ~20 % of
  // throughput on 4 KiB POSTs.
  let meter: BodyMeter | null = null;
  let body: Readable | null = null;
  if (hasBody) {
    body = plan.contentLength === null ? null : req.bodyStream();
    if (body === null) {
      meter = new BodyMeter(s.limits.maxBodySize);
      req.pipe(meter);
      body = meter;
    }
  }
  // A request without a body is left unread. On HTTP/2 Node dumps it when the stream closes; read
  // to its end here, it would let Node destroy the stream while the response's last write is
  // still in flight, and Node 24 then builds an ERR_STREAM_DESTROYED error (stack trace and all)
  // for every such response: ~5 % of the bench's HTTP/2 time.
  ctx.decision = 'allow';
  const handler = new ForwardHandler(ctx, res, meter, s.securityHeaders, rt, (c, r, failure) => onForwardDone(rt, c, plan, r, failure));
  ctx.handler = handler; // aborted from onClose when the client leaves first
  if (hasBody && !req.bodyTimeLimited) {
    // A transport that does not time the body itself (HTTP/2) has it bounded here the same way (SPEC §4).
    const left = Math.max(1, s.limits.requestTimeoutMs - (performance.now() - ctx.start));
    const timer = setTimeout(() => handler.timeout(), left);
    timer.unref();
    req.once('end', () => clearTimeout(timer));
    res.once('close', () => clearTimeout(timer));
  }
  ctx.upstreamStart = performance.now();
  rt.pool.dispatch({ method: ctx.method, path: plan.pathAndQuery, headers, body }, handler);
}

function onForwardDone(rt: PipelineHost, ctx: RequestContext, plan: ForwardPlan, res: OutboundResponse, failure: ForwardFailure | null): void {
  if (failure === null) {
    // Unmetered body (it had a Content-Length): the exchange completed, so the declared length went up.
    if (ctx.bytesIn === 0 && plan.contentLength !== null) ctx.bytesIn = plan.contentLength;
    if (ctx.reason !== 'ratelimit_unavailable') ctx.reason = 'ok';
    return; // audited on close
  }
  if (failure === 'client_aborted') {
    ctx.reason = 'client_aborted';
    return;
  }
  if (!res.headersSent && !res.writableEnded) {
    ctx.reason = failure;
    if (failure === 'body_too_large' || failure === 'request_timeout') ctx.decision = 'deny';
    ctx.bytesOut = writeRefusal(
      res,
      failure,
      ctx.requestId,
      rt.snapshot.securityHeaders,
      null,
      // After an internal error (a handler bug met in an upstream callback) the HTTP/1.1
      // connection ends, as after any other internal error.
      failure === 'body_too_large' || failure === 'request_timeout' || failure === 'internal_error' || rt.closing,
    );
    ctx.status = res.statusCode;
  } else {
    // Headers already went out: the only honest signal left is to cut the stream.
    ctx.reason = failure;
    res.destroy();
  }
}

function refuse(rt: PipelineHost, ctx: RequestContext, reason: RefusalReason, close: boolean, extra: Record<string, string> | null): void {
  const res = ctx.res;
  ctx.decision = 'deny';
  ctx.reason = reason;
  // A body the connection must still read after the answer (HTTP/1.1): it is read and dropped; if
  // it is so slow that requestTimeout fires, the connection is closed without a second response.
  const req = ctx.req;
  if (req.bodyHoldsConnection) {
    const conn = ctx.conn;
    conn.answeredBodyPending = true;
    req.once('end', () => (conn.answeredBodyPending = false));
  }
  ctx.bytesOut = writeRefusal(res, reason, ctx.requestId, rt.snapshot.securityHeaders, extra, close || rt.closing);
  ctx.status = res.statusCode;
  // Unread request bodies are discarded (HTTP/2) or the connection is closed (HTTP/1.1, `close`).
  res.req.resume();
}

function onClose(rt: PipelineHost, ctx: RequestContext): void {
  if (ctx.handler !== null) ctx.handler.abort();
  if (ctx.audited) return;
  ctx.audited = true;
  const res = ctx.res;
  ctx.conn.inflight--;
  if (rt.closing) rt.requestEnded(ctx.conn, ctx.req.socket);
  if (!res.writableEnded && (ctx.reason === 'ok' || ctx.status === 0)) ctx.reason = 'client_aborted';
  else if (ctx.reason === 'ok') ctx.reason = servedReason(ctx.wouldDeny);
  if (ctx.status === 0) ctx.status = res.statusCode;
  const conn = ctx.conn;
  const durationMs = performance.now() - ctx.start;
  rt.metrics.request(
    conn.identity === null ? 'unknown' : conn.identity.name,
    ctx.route === null ? 'unknown' : ctx.route.name,
    ctx.method,
    ctx.status,
    ctx.decision,
    durationMs / 1000,
    ctx.upstreamMs === null ? null : ctx.upstreamMs / 1000,
  );
  if (ctx.wouldDeny !== null) rt.metrics.policyWouldDeny(conn.identity === null ? 'unknown' : conn.identity.name, ctx.route === null ? 'unknown' : ctx.route.name, ctx.wouldDeny);
  rt.audit.request({
    requestId: ctx.requestId,
    conn: conn.audit,
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
    protocol: ctx.protocol,
    wouldDeny: ctx.wouldDeny,
  });
}

/** The path part of a refused target, for the audit line: no query (it may hold secrets), bounded, printable. */
export function auditPath(target: string): string {
  const q = target.search(/[?#]/);
  const p = q === -1 ? target : target.slice(0, q);
  return headerSafe(p.length > 512 ? p.slice(0, 512) : p);
}

function round3(n: number): number {
  return Math.round(n * 1000) / 1000;
}
