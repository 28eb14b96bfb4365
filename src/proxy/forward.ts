/**
 * Stage 6: forward to the app over a keep-alive undici Pool on loopback, streaming both
 * bodies with backpressure (the client's slow reads pause the upstream, never buffer it).
 */
import { performance } from 'node:perf_hooks';
import { Transform } from 'node:stream';
import type { TransformCallback, Readable } from 'node:stream';
import { createRequire } from 'node:module';
import type { Dispatcher, Pool as UndiciPool } from 'undici';
import type { IncomingHttpHeaders } from 'node:http';
import type { RequestReason } from '../reasons.js';
import { responseHeaders } from './headers.js';
import type { RequestContext } from '../server/context.js';
import type { OutboundResponse } from '../server/types.js';

/**
 * undici's Pool alone: the package index also loads fetch, WebSocket, the cache and mock layers
 * (~110 modules) and touches globalThis.Headers (Node's own bundled undici): ~2 MiB of idle RSS
 * for nothing the sidecar uses. undici has no "exports" map, so the file is reachable; an undici
 * upgrade that moves it fails every proxy test at import.
 */
const Pool = createRequire(import.meta.url)('undici/lib/dispatcher/pool.js') as typeof UndiciPool;
type Pool = UndiciPool;

export interface UpstreamOptions {
  readonly origin: string;
  readonly connectTimeoutMs: number;
  readonly timeoutMs: number;
}

export function createUpstreamPool(u: UpstreamOptions): Pool {
  return new Pool(u.origin, {
    connect: { timeout: u.connectTimeoutMs },
    headersTimeout: u.timeoutMs,
    bodyTimeout: u.timeoutMs,
    keepAliveTimeout: 30_000,
    pipelining: 1,
  });
}

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

export class RequestTimeout extends Error {
  readonly code = 'ERR_REQUEST_TIMEOUT';
  constructor() {
    super('request body not received within limits.requestTimeout');
  }
}

export interface ForwardDone {
  (ctx: RequestContext, res: OutboundResponse, failure: RequestReason | null): void;
}

/**
 * One per forwarded request: an undici DispatchHandler that writes the upstream response
 * straight into the client response.
 */
export class ForwardHandler implements Dispatcher.DispatchHandler {
  readonly ctx: RequestContext;
  readonly res: OutboundResponse;
  readonly meter: BodyMeter | null;
  readonly securityHeaders: boolean;
  /** For HTTP/1.1: once the sidecar is closing, tell the client this connection ends here. */
  readonly drain: { readonly closing: boolean } | null;
  readonly done: ForwardDone;
  controller: Dispatcher.DispatchController | null = null;
  finished = false;
  /** The client went away (possibly before undici even started the request). */
  gone = false;
  /** The request body did not arrive within requestTimeout (HTTP/2; HTTP/1.1 has Node's own). */
  timedOut = false;

  constructor(ctx: RequestContext, res: OutboundResponse, meter: BodyMeter | null, securityHeaders: boolean, drain: { readonly closing: boolean } | null, done: ForwardDone) {
    this.ctx = ctx;
    this.res = res;
    this.meter = meter;
    this.securityHeaders = securityHeaders;
    this.drain = drain;
    this.done = done;
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    // Closed before the request left: never hold an upstream connection for nobody.
    if (this.timedOut) controller.abort(new RequestTimeout());
    else if (this.gone) controller.abort(new Error('client aborted'));
  }

  onResponseStart(controller: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders): void {
    if (statusCode < 200) return; // 1xx from the app are not relayed
    const ctx = this.ctx;
    ctx.upstreamMs = performance.now() - ctx.upstreamStart;
    ctx.status = statusCode;
    if (this.gone || this.res.destroyed === true) {
      controller.abort(new Error('client went away'));
      return;
    }
    const out = responseHeaders(headers, ctx.requestId, this.securityHeaders);
    if (ctx.extraHeaders !== null) Object.assign(out, ctx.extraHeaders);
    if (this.drain !== null && this.drain.closing) out['connection'] = 'close';
    this.res.writeHead(statusCode, out);
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.gone) {
      controller.abort(new Error('client went away'));
      return;
    }
    this.ctx.bytesOut += chunk.length;
    if (!this.res.write(chunk)) {
      controller.pause();
      this.res.once('drain', () => controller.resume());
    }
  }

  onResponseEnd(): void {
    this.finish(null);
    this.res.end();
  }

  onResponseError(_controller: Dispatcher.DispatchController, err: Error): void {
    if (this.ctx.upstreamMs === null && this.ctx.upstreamStart > 0) this.ctx.upstreamMs = performance.now() - this.ctx.upstreamStart;
    this.finish(classifyUpstreamError(err, this.meter));
  }

  /** requestTimeout passed with the body still arriving: stop, and answer 408 if still possible. */
  timeout(): void {
    if (this.finished || this.timedOut) return;
    this.timedOut = true;
    if (this.controller !== null && !this.controller.aborted) this.controller.abort(new RequestTimeout());
  }

  /** The client hung up: stop talking to the app. */
  abort(): void {
    this.gone = true;
    if (!this.finished && this.controller !== null && !this.controller.aborted) this.controller.abort(new Error('client aborted'));
  }

  private finish(failure: RequestReason | null): void {
    if (this.finished) return;
    this.finished = true;
    if (this.meter !== null) this.ctx.bytesIn = this.meter.bytes;
    this.done(this.ctx, this.res, failure);
  }
}

const UNREACHABLE = new Set(['ECONNREFUSED', 'ECONNRESET', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL', 'ENOTFOUND', 'EAI_AGAIN', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_SOCKET', 'UND_ERR_CLOSED']);

export function classifyUpstreamError(err: Error, meter: BodyMeter | null): RequestReason {
  const code = (err as { code?: string }).code ?? '';
  if (err instanceof BodyTooLarge || code === 'ERR_BODY_TOO_LARGE' || (meter !== null && meter.bytes > 0 && meter.destroyed && meter.errored instanceof BodyTooLarge)) return 'body_too_large';
  if (err instanceof RequestTimeout || code === 'ERR_REQUEST_TIMEOUT') return 'request_timeout';
  if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT') return 'upstream_timeout';
  if (err.message === 'client aborted' || err.message === 'client went away') return 'client_aborted';
  if (UNREACHABLE.has(code)) return 'upstream_unreachable';
  return 'upstream_error';
}

export function dispatchOptions(path: string, method: string, headers: string[], body: Readable | null): Dispatcher.DispatchOptions {
  return { path, method, headers, body, idempotent: false, blocking: false };
}
