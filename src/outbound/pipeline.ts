/**
 * One outbound request, in order: destination (fixed by the listener, or by the authority on the
 * proxy listener; CONNECT and unknown authorities are refused) -> request id -> header scan
 * (hop-by-hop and the inbound identity headers removed) -> forward over the destination's
 * verified pool -> one audit line and the outbound metrics, whatever the outcome.
 */
import { performance } from 'node:perf_hooks';
import type { Socket } from 'node:net';
import type { Audit } from '../audit/audit.js';
import type { Metrics } from '../admin/metrics.js';
import type { OutboundDestination, OutboundSettings } from '../config/snapshot.js';
import { BodyMeter, ForwardHandler } from '../proxy/forward.js';
import type { ForwardContext } from '../proxy/forward.js';
import { scanRequestHeaders } from '../proxy/headers.js';
import type { OutboundReason, RequestReason } from '../reasons.js';
import { writeRefusal } from '../server/respond.js';
import type { RefusalReason } from '../server/respond.js';
import { requestIdFor } from '../server/request-id.js';
import type { InboundRequest, OutboundResponse } from '../transport/types.js';
import type { DestinationPool, OutboundLeg } from './pool.js';

/** What the pipeline needs from the outbound runtime (outbound/outbound.ts). */
export interface OutboundHost {
  readonly settings: OutboundSettings;
  /** Draining: responses close their connection after them. */
  readonly closing: boolean;
  readonly audit: Audit;
  readonly metrics: Metrics;
  pool(dest: OutboundDestination): DestinationPool;
  internalError(err: unknown, res: OutboundResponse, requestId: string): void;
  /** A request of `conn` ended (its response closed): a draining connection with none left closes. */
  requestEnded(conn: AppConnection): void;
}

/** An app connection to an outbound listener, and its requests in flight. */
export interface AppConnection {
  readonly socket: Socket;
  inflight: number;
}

/** No size limit of the sidecar's own on what the app sends out; the meter only counts. */
const UNLIMITED = Number.MAX_SAFE_INTEGER;

export class OutboundContext implements ForwardContext, OutboundLeg {
  readonly rt: OutboundHost;
  readonly conn: AppConnection;
  readonly start: number;
  readonly method: string;
  readonly res: OutboundResponse;
  requestId = '';
  readonly extraHeaders = null;
  destination: OutboundDestination | null = null;
  path = '';
  status = 0;
  reason: OutboundReason = 'ok';
  upstreamStart = 0;
  upstreamMs: number | null = null;
  bytesIn = 0;
  bytesOut = 0;
  handler: ForwardHandler<OutboundContext> | null = null;
  audited = false;
  /** OutboundLeg: the connection slot of the client that took the request. */
  slot: OutboundLeg['slot'] = null;

  constructor(rt: OutboundHost, conn: AppConnection, start: number, method: string, res: OutboundResponse) {
    this.rt = rt;
    this.conn = conn;
    this.start = start;
    this.method = method;
    this.res = res;
  }
}

/**
 * `fixed`: the destination of a destination listener; null on the proxy listener. `conn` counts
 * the request in flight until its response closes. The one closure per request is the response's
 * close listener; everything else reaches the runtime through the context.
 */
export function handleOutbound(rt: OutboundHost, fixed: OutboundDestination | null, req: InboundRequest, res: OutboundResponse, conn: AppConnection): void {
  const ctx = new OutboundContext(rt, conn, performance.now(), req.method ?? '', res);
  conn.inflight++;
  ctx.requestId = requestIdFor(req.headers['x-request-id']);
  res.on('close', () => onClose(ctx));
  try {
    route(rt, fixed, req, ctx);
  } catch (err) {
    ctx.status = 500;
    ctx.reason = 'internal_error';
    rt.internalError(err, res, ctx.requestId);
    finish(ctx);
  }
}

function route(rt: OutboundHost, fixed: OutboundDestination | null, req: InboundRequest, ctx: OutboundContext): void {
  const url = req.url ?? '/';
  // Absolute form (what an HTTP proxy client sends): the authority is in the request line.
  let authority: string | null = null;
  let path = url;
  if (url.startsWith('http://')) {
    const slash = url.indexOf('/', 7);
    const query = url.indexOf('?', 7);
    const end = slash === -1 ? (query === -1 ? url.length : query) : query === -1 ? slash : Math.min(slash, query);
    authority = url.slice(7, end);
    path = end === url.length ? '/' : url[end] === '?' ? `/${url.slice(end)}` : url.slice(end);
  }
  ctx.path = path;
  let dest = fixed;
  if (dest === null) {
    // Never a tunnel: the sidecar must see (and audit) every request it carries.
    if (ctx.method === 'CONNECT') return refuse(ctx, 'method_not_allowed');
    const host = authority ?? (typeof req.headers.host === 'string' ? req.headers.host : '');
    dest = lookup(rt.settings, host);
    if (dest === null) return refuse(ctx, 'unknown_destination');
  }
  ctx.destination = dest;
  if (!path.startsWith('/') && !(path === '*' && ctx.method === 'OPTIONS')) return refuse(ctx, 'bad_request');
  const scan = scanRequestHeaders(req.rawHeaders, req.headers.connection);
  if (!scan.ok) return refuse(ctx, 'bad_request');
  const headers = scan.headers;
  headers.push('host', dest.hostHeader, 'x-request-id', ctx.requestId);
  if (rt.closing) ctx.res.disableKeepAlive();
  // Only now may an app waiting on Expect: 100-continue send its body.
  if (scan.expectContinue) ctx.res.writeContinue();
  let meter: BodyMeter | null = null;
  if (req.hasBody) {
    meter = new BodyMeter(UNLIMITED);
    const body = req.bodyStream();
    if (body !== null) body.pipe(meter);
    else req.pipe(meter);
  }
  const handler = new ForwardHandler<OutboundContext>(ctx, ctx.res, meter, false, rt, onDone);
  ctx.handler = handler;
  ctx.upstreamStart = performance.now();
  rt.pool(dest).dispatch({ method: ctx.method, path, headers, body: meter }, handler, ctx);
}

/** Authority (`host` or `host:port`, any case) -> destination: the exact form first, then the host alone. */
function lookup(s: OutboundSettings, authority: string): OutboundDestination | null {
  const a = authority.toLowerCase();
  const exact = s.byAuthority.get(a);
  if (exact !== undefined) return exact;
  const colon = a.lastIndexOf(':');
  if (colon === -1 || a.endsWith(']')) return null;
  return s.byAuthority.get(a.slice(0, colon)) ?? null;
}

function refuse(ctx: OutboundContext, reason: RefusalReason): void {
  ctx.reason = reason;
  ctx.bytesOut = writeRefusal(ctx.res, reason, ctx.requestId, false, null, true);
  ctx.status = ctx.res.statusCode;
  finish(ctx);
}

function onDone(ctx: OutboundContext, res: OutboundResponse, failure: RequestReason | null): void {
  if (failure === null) {
    finish(ctx);
    return;
  }
  // A refused server is named by its own reason; the app gets the generic 502. (The slot's
  // verdict is the last connection attempt's: the one that failed this request, just now.)
  const refused = ctx.slot?.refused ?? null;
  ctx.reason = refused ?? failure;
  if (failure === 'client_aborted') {
    ctx.status = 499;
  } else if (!res.headersSent && !res.writableEnded) {
    const as: RefusalReason = refused !== null || failure === 'ok' || failure === 'audit_mode' ? 'upstream_error' : failure;
    ctx.bytesOut = writeRefusal(res, as, ctx.requestId, false, null, true);
    ctx.status = res.statusCode;
  } else {
    // The response had begun: the app sees it cut, as it would from the remote itself.
    res.destroy();
  }
  finish(ctx);
}

function onClose(ctx: OutboundContext): void {
  ctx.rt.requestEnded(ctx.conn);
  if (ctx.audited) return;
  // The app hung up first: the exchange stops, and its end (onDone) writes the line.
  if (ctx.handler !== null) {
    ctx.handler.abort();
    return;
  }
  ctx.reason = 'client_aborted';
  ctx.status = 499;
  finish(ctx);
}

function finish(ctx: OutboundContext): void {
  if (ctx.audited) return;
  ctx.audited = true;
  const rt = ctx.rt;
  const durationMs = performance.now() - ctx.start;
  const dest = ctx.destination;
  // The client's current connection is the one that answered (finish runs as the exchange ends).
  const slot = ctx.slot;
  const peer = slot === null ? null : slot.peer;
  rt.audit.outbound({
    requestId: ctx.requestId,
    destination: dest === null ? null : dest.name,
    peerUri: peer === null ? null : peer.uri,
    peerSha256: peer === null ? null : peer.sha256Hex,
    method: ctx.method,
    path: ctx.path,
    status: ctx.status,
    reason: ctx.reason,
    // As the inbound line: milliseconds to 3 decimals.
    durationMs: Math.round(durationMs * 1000) / 1000,
    bytesIn: ctx.bytesIn,
    bytesOut: ctx.bytesOut,
    protocol: peer === null || slot === null ? null : slot.protocol,
    conn: peer === null || slot === null ? null : slot.audit,
  });
  rt.metrics.outboundRequest(dest === null ? 'unknown' : dest.name, ctx.method, ctx.status, durationMs / 1000);
}
