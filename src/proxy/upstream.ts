/**
 * Stage 6's interface to the app: what the forward stage (proxy/forward.ts) and the runtime
 * hand a request to and hear back from, with the options, error codes and stats every client
 * shares. proxy/undici-upstream.ts implements it on undici's Pool, for the hop to the app and
 * for the outbound hop's destinations.
 */
import type { Readable } from 'node:stream';

export interface UpstreamOptions {
  readonly origin: string;
  readonly connectTimeoutMs: number;
  readonly timeoutMs: number;
  /**
   * A handler threw inside one of its callbacks (see handlerThrew). The runtime logs and counts
   * it as an internal error; without a hook the exception only rides on the `cause` of the
   * ERR_UPSTREAM_HANDLER the handler is told.
   */
  readonly onInternalError?: (err: unknown, handler: UpstreamHandler) => void;
}

export type UpstreamErrorCode =
  | 'ERR_UPSTREAM_CONNECT_TIMEOUT'
  | 'ERR_UPSTREAM_HEADERS_TIMEOUT'
  | 'ERR_UPSTREAM_BODY_TIMEOUT'
  | 'ERR_UPSTREAM_CLOSED'
  | 'ERR_UPSTREAM_BAD_RESPONSE'
  | 'ERR_UPSTREAM_BAD_HEADER'
  | 'ERR_UPSTREAM_LENGTH_MISMATCH'
  | 'ERR_UPSTREAM_POOL_CLOSED'
  /** The request's own handler threw: a bug in the sidecar, answered as an internal error. */
  | 'ERR_UPSTREAM_HANDLER';

export class UpstreamError extends Error {
  readonly code: UpstreamErrorCode;
  constructor(code: UpstreamErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
  }
}

export interface UpstreamRequest {
  readonly method: string;
  /** Path and query, as sent in the request line. */
  readonly path: string;
  /** Flat name/value pairs, values already free of CR/LF/NUL where a parser produced them (checked again by the client). */
  readonly headers: readonly string[];
  /** With a `content-length` in headers the body must be exactly that long; without, it goes chunked. */
  readonly body: Readable | null;
}

/** What the exchange offers its handler: stop it, or read on after a paused onData. */
export interface UpstreamControl {
  abort(err: Error): void;
  resume(): void;
}

/** undici's original handler shape, with the response header names and values as strings. */
export interface UpstreamHandler {
  onConnect(control: UpstreamControl): void;
  /** Return false only after aborting. */
  onHeaders(statusCode: number, rawHeaders: string[]): boolean;
  /** false: the reader is full; the connection stops reading until control.resume(). */
  onData(chunk: Buffer): boolean;
  onComplete(): void;
  onError(err: Error): void;
}

/** In-flight exchanges, and connections open / idle. */
export interface UpstreamStats {
  readonly running: number;
  readonly connected: number;
  readonly free: number;
}

/** The upstream client as the pipeline and the runtime use it (proxy/undici-upstream.ts), built from UpstreamOptions. */
export interface UpstreamClient {
  /** Starts an exchange; the handler hears of it through its callbacks only, never by a throw. */
  dispatch(req: UpstreamRequest, handler: UpstreamHandler): void;
  /** New requests are refused at once; resolves once in-flight exchanges have ended (a reload's old pool). */
  close(): Promise<void>;
  readonly stats: UpstreamStats;
}

/**
 * A handler threw inside a callback: a bug on the sidecar's side, not the app's. The exchange
 * has already ended (its connection closed). The handler is told with ERR_UPSTREAM_HANDLER,
 * which the forward stage answers as an internal error rather than as the app's failure, unless
 * it had already been told how the exchange ended (`tell` false: its onComplete or onError threw);
 * then the exception goes to `report`, which logs and counts it and answers or cuts whatever
 * response is still open. An exception from that second onError is not reported again.
 */
export function handlerThrew(report: UpstreamOptions['onInternalError'], handler: UpstreamHandler, err: unknown, tell: boolean): void {
  if (tell) {
    try {
      handler.onError(new UpstreamError('ERR_UPSTREAM_HANDLER', 'the request handler threw', { cause: err }));
    } catch {
      // The same bug again; the response it left open is answered or cut by the report below.
    }
  }
  report?.(err, handler);
}
