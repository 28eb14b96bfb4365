/**
 * Stage 6: forward to the app over the sidecar's keep-alive upstream pool (an UpstreamClient,
 * undici's Pool in proxy/undici-upstream.ts), streaming both bodies with backpressure (the
 * client's slow reads pause the upstream, never buffer more than one read of it).
 */
import { performance } from 'node:perf_hooks';
import { Transform } from 'node:stream';
import type { TransformCallback } from 'node:stream';
import type { RequestReason } from '../reasons.js';
import { responseHeaders } from './headers.js';
import type { OutboundResponse } from '../transport/types.js';
import type { UpstreamControl, UpstreamHandler } from './upstream.js';

export class BodyTooLarge extends Error {
  readonly code = 'ERR_BODY_TOO_LARGE';
  constructor() {
    super('request body exceeds limits.maxBodySize');
  }
}

/** Counts request body bytes and stops the stream past the limit (chunked bodies have no length up front). */
export class BodyMeter extends Transform {
  bytes = 0;
  readonly #limit: number;
  constructor(limit: number) {
    super();
    this.#limit = limit;
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.bytes += chunk.length;
    if (this.bytes > this.#limit) cb(new BodyTooLarge());
    else cb(null, chunk);
  }
}

/** The client hung up or reset its stream: the exchange with the app is cancelled. */
export class ClientGone extends Error {
  readonly code = 'ERR_CLIENT_GONE';
  constructor() {
    super('the client went away');
  }
}

export class RequestTimeout extends Error {
  readonly code = 'ERR_REQUEST_TIMEOUT';
  constructor() {
    super('request body not received within limits.requestTimeout');
  }
}

/**
 * The fields of the pipeline's RequestContext (server/context.ts) the forward writes or reads,
 * declared here so proxy/ does not import the pipeline above it; RequestContext satisfies it.
 */
export interface ForwardContext {
  readonly requestId: string;
  readonly extraHeaders: Record<string, string> | null;
  status: number;
  upstreamStart: number;
  upstreamMs: number | null;
  bytesIn: number;
  bytesOut: number;
}

/** How a forward can fail: every one but `client_aborted` is a refusal the pipeline may still answer. */
export type ForwardFailure = Extract<
  RequestReason,
  'body_too_large' | 'request_timeout' | 'upstream_timeout' | 'client_aborted' | 'upstream_unreachable' | 'upstream_error' | 'internal_error'
>;

export interface ForwardDone<C extends ForwardContext = ForwardContext> {
  (ctx: C, res: OutboundResponse, failure: ForwardFailure | null): void;
}

/** One per forwarded request: writes the upstream response straight into the client response. */
export class ForwardHandler<C extends ForwardContext = ForwardContext> implements UpstreamHandler {
  readonly ctx: C;
  readonly res: OutboundResponse;
  readonly meter: BodyMeter | null;
  readonly securityHeaders: boolean;
  /** Once the sidecar is closing, the client is told this connection ends here (res.disableKeepAlive). */
  readonly drain: { readonly closing: boolean };
  readonly done: ForwardDone<C>;
  /** The exchange's abort/resume, from onConnect. */
  #control: UpstreamControl | null = null;
  aborted = false;
  finished = false;
  /** The client went away (possibly before the request even started). */
  gone = false;
  /** The request body did not arrive within requestTimeout (HTTP/2; HTTP/1.1 has the H1 server's). */
  timedOut = false;

  constructor(ctx: C, res: OutboundResponse, meter: BodyMeter | null, securityHeaders: boolean, drain: { readonly closing: boolean }, done: ForwardDone<C>) {
    this.ctx = ctx;
    this.res = res;
    this.meter = meter;
    this.securityHeaders = securityHeaders;
    this.drain = drain;
    this.done = done;
  }

  onConnect(control: UpstreamControl): void {
    this.#control = control;
    // Closed before the request left: never hold an upstream connection for nobody.
    if (this.timedOut) this.#cancel(new RequestTimeout());
    else if (this.gone) this.#cancel(new ClientGone());
  }

  onHeaders(statusCode: number, rawHeaders: string[]): boolean {
    const ctx = this.ctx;
    ctx.upstreamMs = performance.now() - ctx.upstreamStart;
    ctx.status = statusCode;
    if (this.gone || this.res.destroyed === true) {
      this.#cancel(new ClientGone());
      return false;
    }
    const out = responseHeaders(rawHeaders, ctx.requestId, this.securityHeaders);
    if (ctx.extraHeaders !== null) Object.assign(out, ctx.extraHeaders);
    if (this.drain.closing) this.res.disableKeepAlive();
    try {
      this.res.writeHead(statusCode, out);
    } catch (err) {
      // A head HTTP/2 cannot carry (a single-value field repeated; both engines refuse it as
      // node:http2 does): the app's response is at fault, a 502, not a bug of the sidecar's.
      if ((err as { code?: string }).code !== 'ERR_HTTP2_HEADER_SINGLE_VALUE') throw err;
      this.#cancel(err as Error);
      return false;
    }
    return true;
  }

  onData(chunk: Buffer): boolean {
    if (this.gone) {
      this.#cancel(new ClientGone());
      return false;
    }
    this.ctx.bytesOut += chunk.length;
    if (this.res.write(chunk)) return true;
    // The client reads slower than the app writes: the exchange pauses until the client drains.
    this.res.once('drain', () => this.#control?.resume());
    return false;
  }

  onComplete(): void {
    this.finish(null);
    this.res.end();
  }

  onError(err: Error): void {
    if (this.ctx.upstreamMs === null && this.ctx.upstreamStart > 0) this.ctx.upstreamMs = performance.now() - this.ctx.upstreamStart;
    this.finish(classifyUpstreamError(err, this.meter));
  }

  /** requestTimeout passed with the body still arriving: stop, and answer 408 if still possible. */
  timeout(): void {
    if (this.finished || this.timedOut) return;
    this.timedOut = true;
    this.#cancel(new RequestTimeout());
  }

  /** The client hung up: stop talking to the app. */
  abort(): void {
    this.gone = true;
    if (!this.finished) this.#cancel(new ClientGone());
  }

  #cancel(err: Error): void {
    const control = this.#control;
    if (this.aborted || control === null) return;
    this.aborted = true;
    control.abort(err);
  }

  private finish(failure: ForwardFailure | null): void {
    if (this.finished) return;
    this.finished = true;
    if (this.meter !== null) this.ctx.bytesIn = this.meter.bytes;
    this.done(this.ctx, this.res, failure);
  }
}

const UNREACHABLE = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL', 'ENOTFOUND', 'EAI_AGAIN', 'ERR_UPSTREAM_CONNECT_TIMEOUT', 'ERR_UPSTREAM_CLOSED', 'ERR_UPSTREAM_POOL_CLOSED']);

export function classifyUpstreamError(err: Error, meter: BodyMeter | null): ForwardFailure {
  const code = (err as { code?: string }).code ?? '';
  if (err instanceof BodyTooLarge || code === 'ERR_BODY_TOO_LARGE' || (meter !== null && meter.bytes > 0 && meter.destroyed && meter.errored instanceof BodyTooLarge)) return 'body_too_large';
  if (err instanceof RequestTimeout || code === 'ERR_REQUEST_TIMEOUT') return 'request_timeout';
  if (code === 'ERR_UPSTREAM_HEADERS_TIMEOUT' || code === 'ERR_UPSTREAM_BODY_TIMEOUT') return 'upstream_timeout';
  if (code === 'ERR_CLIENT_GONE') return 'client_aborted';
  // The handler itself threw inside an upstream callback: a bug on this side, not the app's failure.
  if (code === 'ERR_UPSTREAM_HANDLER') return 'internal_error';
  if (UNREACHABLE.has(code)) return 'upstream_unreachable';
  return 'upstream_error';
}
