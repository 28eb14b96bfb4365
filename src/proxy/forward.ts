/**
 * Stage 6: forward to the app over a keep-alive undici Pool on loopback, streaming both
 * bodies with backpressure (the client's slow reads pause the upstream, never buffer it).
 */
import { performance } from 'node:perf_hooks';
import { Transform } from 'node:stream';
import type { TransformCallback, Readable } from 'node:stream';
import { createRequire } from 'node:module';
import type { Dispatcher, Pool as UndiciPool } from 'undici';
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
 * One per forwarded request: an undici dispatch handler that writes the upstream response
 * straight into the client response. It implements undici's original handler interface
 * (onConnect/onHeaders/onData/onComplete/onError), the one undici runs internally: the newer
 * controller interface is an adapter over it that allocates a controller per request and parses
 * the raw headers into an object the sidecar would only copy again (responseHeaders works on the
 * raw Buffers). undici 7 marks it deprecated but keeps it as its core path.
 */
export class ForwardHandler implements Dispatcher.DispatchHandler {
  readonly ctx: RequestContext;
  readonly res: OutboundResponse;
  readonly meter: BodyMeter | null;
  readonly securityHeaders: boolean;
  /** For HTTP/1.1: once the sidecar is closing, tell the client this connection ends here. */
  readonly drain: { readonly closing: boolean } | null;
  readonly done: ForwardDone;
  /** undici's abort for this request, from onConnect. */
  #abort: ((err?: Error) => void) | null = null;
  #resume: (() => void) | null = null;
  aborted = false;
  finished = false;
  /** The client went away (possibly before undici even started the request). */
  gone = false;
  /** The request body did not arrive within requestTimeout (HTTP/2; HTTP/1.1 has the H1 server's). */
  timedOut = false;

  constructor(ctx: RequestContext, res: OutboundResponse, meter: BodyMeter | null, securityHeaders: boolean, drain: { readonly closing: boolean } | null, done: ForwardDone) {
    this.ctx = ctx;
    this.res = res;
    this.meter = meter;
    this.securityHeaders = securityHeaders;
    this.drain = drain;
    this.done = done;
  }

  onConnect(abort: (err?: Error) => void): void {
    this.#abort = abort;
    // Closed before the request left: never hold an upstream connection for nobody.
    if (this.timedOut) this.#cancel(new RequestTimeout());
    else if (this.gone) this.#cancel(new Error('client aborted'));
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void): boolean {
    if (statusCode < 200) return true; // 1xx from the app are not relayed
    this.#resume = resume;
    const ctx = this.ctx;
    ctx.upstreamMs = performance.now() - ctx.upstreamStart;
    ctx.status = statusCode;
    if (this.gone || this.res.destroyed === true) {
      this.#cancel(new Error('client went away'));
      return false;
    }
    const out = responseHeaders(rawHeaders, ctx.requestId, this.securityHeaders);
    if (ctx.extraHeaders !== null) Object.assign(out, ctx.extraHeaders);
    if (this.drain !== null && this.drain.closing) out['connection'] = 'close';
    this.res.writeHead(statusCode, out);
    return true;
  }

  onData(chunk: Buffer): boolean {
    if (this.gone) {
      this.#cancel(new Error('client went away'));
      return false;
    }
    this.ctx.bytesOut += chunk.length;
    if (this.res.write(chunk)) return true;
    // The client reads slower than the app writes: undici pauses until the client drains.
    this.res.once('drain', () => this.#resume?.());
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
    if (!this.finished) this.#cancel(new Error('client aborted'));
  }

  #cancel(err: Error): void {
    const abort = this.#abort;
    if (this.aborted || abort === null) return;
    this.aborted = true;
    abort(err);
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
