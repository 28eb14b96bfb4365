/**
 * The upstream hop on undici's Pool, behind the UpstreamClient interface (proxy/upstream.ts): the
 * hop to the app, and each outbound destination's pool (outbound/pool.ts, with UndiciPoolOptions).
 * undici is the well-kept general HTTP client; a client of the sidecar's own was measured against
 * it and did not gain enough to carry its own HTTP/1.1 framing code (docs/performance.md).
 *
 * What it adds to undici's Pool: UpstreamError codes (undici's errors are translated, so
 * classifyUpstreamError and the audit reasons need not know undici), a keep-alive pool with no
 * connection cap, `timeout`/`connectTimeout` with 0 as none and on Node's own timers (see
 * preciseTimers), an idle close after 30 s or the app's `Keep-Alive: timeout` less 2 s,
 * response heads up to 64 KiB, at most 10 interim responses, 101 refused, trailers never handed on, Host from the
 * origin when the request has none, a bodiless request that declares a body refused before
 * anything is written, one more try of a bodiless GET/HEAD/OPTIONS whose connection closed
 * before any response byte, and a handler that throws ends its exchange as an internal error.
 * The behaviour is described in docs/reference.md ("Upstream connections") and pinned by
 * test/unit/proxy/upstream.test.ts.
 *
 * Handler API: undici's original one (onConnect/onHeaders/onData/onComplete/onError), not the
 * controller one (onRequestStart/onResponseStart/...). In undici 7 the controller API is an
 * adapter over the original (lib/handler/unwrap-handler.js) that allocates a controller per
 * request and parses every response head into an object; the forward stage takes the head as
 * the flat name/value list the original API hands over, so with the controller API each request
 * would pay for a parse it throws away. The original API is also the only one that types
 * onResponseStarted, which tells a response undici refused (101, a bare 100) from a connection
 * closed before any response byte.
 */
import { createRequire } from 'node:module';
import type { Client as UndiciClient, Dispatcher, Pool as UndiciPool, buildConnector as UndiciBuildConnector, errors as UndiciErrors } from 'undici';
import { UpstreamError, handlerThrew } from './upstream.js';
import type { UpstreamClient, UpstreamControl, UpstreamHandler, UpstreamOptions, UpstreamRequest, UpstreamStats } from './upstream.js';

/** Idle connections closed after 30 s, or 2 s before the app's `Keep-Alive: timeout` says it will close them. */
const KEEP_ALIVE_MS = 30_000;
const KEEP_ALIVE_MARGIN_MS = 2_000;
const MAX_INTERIM = 10;
const MAX_RESPONSE_HEAD = 64 * 1024;
const RETRYABLE = new Set(['GET', 'HEAD', 'OPTIONS']);
/** The connection closed under the request (undici's "other side closed", a reset, a broken pipe). */
const CLOSED = new Set(['UND_ERR_SOCKET', 'ECONNRESET', 'EPIPE']);
/** What undici refuses in a header value (its headerCharRegex, Node's rule): checked before undici sees it, see headCheck. */
const BAD_VALUE = /[^\t\x20-\x7e\x80-\xff]/;

let PoolClass: typeof UndiciPool | null = null;
/** undici's parser error carries no code (its code field is left undefined): told by its class. */
let ParserError: typeof UndiciErrors.HTTPParserError | null = null;

/**
 * undici's Pool alone, loaded on first use: the package index also loads fetch, WebSocket, the
 * cache and mock layers (~2 MiB of RSS the sidecar would not use). undici has no "exports" map and is pinned to one version in
 * package.json; a version that moves these files fails the tests at the first request.
 */
function undiciPool(): typeof UndiciPool {
  if (PoolClass === null) {
    const load = createRequire(import.meta.url);
    preciseTimers(load);
    PoolClass = load('undici/lib/dispatcher/pool.js') as typeof UndiciPool;
    ParserError = (load('undici/lib/core/errors.js') as typeof UndiciErrors).HTTPParserError;
  }
  return PoolClass;
}

/** The two functions of undici's timer module its HTTP/1.1 parser and its connector arm their limits with. */
interface UndiciTimers {
  setFastTimeout: (callback: (arg: unknown) => void, delay: number, arg?: unknown) => NodeJS.Timeout;
  clearFastTimeout: (timer: NodeJS.Timeout) => void;
}

function nativeTimeout(callback: (arg: unknown) => void, delay: number, arg?: unknown): NodeJS.Timeout {
  // unref'd as undici's own are: a pending limit never keeps the process alive.
  return setTimeout(callback, delay, arg).unref();
}

function clearNative(timer: NodeJS.Timeout): void {
  clearTimeout(timer);
}

let timersPatched = false;

/**
 * undici arms the HTTP/1.1 headers and body timeouts and the connect timeout on its "fast
 * timers", a clock that ticks every ~0.5 s: a 1.5 s `timeout` fired ~0.5 s late, and later
 * still on a busy event loop. Node's own timers fire on the millisecond. Each request then
 * arms one native timer, created once and refreshed on progress where undici refreshes its
 * own (~0.3 % of a request's CPU, docs/performance.md). undici looks both functions up on its
 * module object at each call, so replacing them here covers every undici client of the
 * process; what counts as progress and when a limit is paused stay undici's. A version that
 * renames them is refused at the first request rather than left coarse.
 */
function preciseTimers(load: NodeJS.Require): void {
  if (timersPatched) return;
  const timers = load('undici/lib/util/timers.js') as UndiciTimers;
  if (typeof timers.setFastTimeout !== 'function' || typeof timers.clearFastTimeout !== 'function') {
    throw new Error('undici/lib/util/timers.js has no setFastTimeout/clearFastTimeout: the upstream timeouts cannot be made precise');
  }
  timers.setFastTimeout = nativeTimeout;
  timers.clearFastTimeout = clearNative;
  timersPatched = true;
}

/** undici's Client and connector, loaded as the Pool is (the outbound hop makes its own clients). */
export function undiciClientParts(): { Client: typeof UndiciClient; buildConnector: typeof UndiciBuildConnector } {
  const load = createRequire(import.meta.url);
  preciseTimers(load);
  return {
    Client: load('undici/lib/dispatcher/client.js') as typeof UndiciClient,
    buildConnector: load('undici/lib/core/connect.js') as typeof UndiciBuildConnector,
  };
}

/**
 * What the outbound hop adds to a pool: a connection cap, HTTP/2 offered by ALPN, and the
 * clients its connections are made with (each judging its server before any request is written).
 */
export interface UndiciPoolOptions {
  readonly connections?: number;
  readonly allowH2?: boolean;
  readonly factory?: (origin: URL, opts: object) => Dispatcher;
}

/** Dispatch options with the caller's tag, which a factory-made client may read (the outbound hop's request leg). */
export interface TaggedDispatchOptions extends Dispatcher.DispatchOptions {
  readonly tag?: object;
}

function ignore(): void {
  // An 'error' listener on a request body for the time undici has taken its own off (it destroys
  // a body with the request's error on failure); the exchange reports the failure itself.
}

export class UndiciUpstream implements UpstreamClient {
  readonly pool: UndiciPool;
  readonly onInternalError: UpstreamOptions['onInternalError'];
  closed = false;
  running = 0;
  #closing: Promise<void> | null = null;

  constructor(o: UpstreamOptions, extra: UndiciPoolOptions = {}) {
    const Pool = undiciPool();
    this.onInternalError = o.onInternalError;
    this.pool = new Pool(o.origin, {
      // 0 is "none" for each of these, as in the config.
      connect: { timeout: o.connectTimeoutMs },
      headersTimeout: o.timeoutMs,
      bodyTimeout: o.timeoutMs,
      keepAliveTimeout: KEEP_ALIVE_MS,
      // The app's Keep-Alive hint may shorten the idle time, never lengthen it past the default.
      keepAliveMaxTimeout: KEEP_ALIVE_MS,
      keepAliveTimeoutThreshold: KEEP_ALIVE_MARGIN_MS,
      maxHeaderSize: MAX_RESPONSE_HEAD,
      // One request at a time on an HTTP/1.1 connection. With HTTP/2 allowed no value is given:
      // undici then takes the protocol's own (1 until ALPN said h2, then as many streams as the
      // server allows), so concurrent requests share a connection instead of opening one each.
      ...(extra.allowH2 === true ? {} : { pipelining: 1 }),
      ...(extra.connections !== undefined ? { connections: extra.connections } : {}),
      ...(extra.allowH2 !== undefined ? { allowH2: extra.allowH2 } : {}),
      ...(extra.factory !== undefined ? { factory: extra.factory } : {}),
    });
  }

  get stats(): UpstreamStats {
    const s = this.pool.stats;
    return { running: this.running, connected: s.connected, free: s.free };
  }

  /** `tag` rides on undici's dispatch options, for a factory-made client (UndiciPoolOptions) to read. */
  dispatch(req: UpstreamRequest, handler: UpstreamHandler, tag: object | null = null): void {
    const ex = new UndiciExchange(this, req, handler, tag);
    if (this.closed) {
      ex.done = true;
      ex.tell(new UpstreamError('ERR_UPSTREAM_POOL_CLOSED', 'the upstream pool is closed'));
      return;
    }
    this.running++;
    // The handler holds the exchange's control before any connection exists (it may abort at once).
    try {
      handler.onConnect(ex);
    } catch (err) {
      ex.threw(err);
      return;
    }
    if (ex.done) return;
    const refused = headCheck(req);
    if (refused !== null) {
      ex.fail(new UpstreamError('ERR_UPSTREAM_BAD_HEADER', refused));
      return;
    }
    if (req.body !== null) req.body.on('error', ignore);
    ex.send();
  }

  /** An exchange ended (completed or failed). */
  ended(): void {
    this.running--;
  }

  /** Every connection cut now, requests in flight failed (shutdown's last step, tests). */
  destroy(): Promise<void> {
    this.closed = true;
    return this.pool.destroy();
  }

  /** New requests are refused at once; undici's close waits for those in flight, then closes every connection. */
  close(): Promise<void> {
    this.closed = true;
    // undici refuses a second close; this one may be called again (reload, then shutdown).
    this.#closing ??= this.pool.close();
    return this.#closing;
  }
}

/**
 * Why a request head cannot go out, or null. undici refuses a control character in a header
 * value itself, but a request it refuses while the Pool hands it to a connection leaves that
 * connection marked busy until it drains, which an idle one never does: each refusal would cost
 * a connection. And a bodiless request that declares a body undici would send with
 * `content-length: 0`; it is refused instead (the app would read the next request on the
 * connection as that body).
 */
function headCheck(req: UpstreamRequest): string | null {
  const h = req.headers;
  for (let i = 0; i + 1 < h.length; i += 2) {
    const name = h[i] as string;
    const value = h[i + 1] as string;
    if (BAD_VALUE.test(value)) return `header ${name} has a control character in its value`;
    if (req.body === null && name.length === 14 && name.toLowerCase() === 'content-length' && Number(value) > 0) return `content-length ${value} on a request without a body`;
  }
  return null;
}

/** One request on the pool: undici's handler on one side, the control the forward handler holds on the other. */
class UndiciExchange implements Dispatcher.DispatchHandler, UpstreamControl {
  readonly client: UndiciUpstream;
  readonly req: UpstreamRequest;
  readonly handler: UpstreamHandler;
  readonly #opts: TaggedDispatchOptions;
  done = false;
  #retried = false;
  /** undici's abort for the request on its connection (null until undici's onConnect). */
  #abort: ((err?: Error) => void) | null = null;
  #resume: (() => void) | null = null;
  /** Why the exchange ended before undici's onConnect: given to undici's abort then. */
  #reason: Error | null = null;
  /** A response byte arrived (undici's onResponseStarted) / the final head was handed on. */
  #responded = false;
  #final = false;
  #interim = 0;

  constructor(client: UndiciUpstream, req: UpstreamRequest, handler: UpstreamHandler, tag: object | null) {
    this.client = client;
    this.req = req;
    this.handler = handler;
    this.#opts = {
      path: req.path,
      method: req.method,
      // undici reads the list, never writes it (it would for FormData bodies, never sent here).
      headers: req.headers as string[],
      body: req.body,
      blocking: false,
      // undici closes a connection after HEAD (for apps that send a body anyway); it is kept
      // here, as llhttp reads no body after HEAD and bytes nobody asked for close it.
      reset: req.method === 'HEAD' ? false : undefined,
      ...(tag !== null ? { tag } : {}),
    };
  }

  send(): void {
    this.client.pool.dispatch(this.#opts, this);
  }

  // ---- UpstreamControl (the forward handler's side) ---------------------------------------------

  abort(err: Error): void {
    if (this.#end(err)) this.tell(err);
  }

  resume(): void {
    // Only while the exchange is on: a late call must not resume the next request's paused read.
    if (!this.done) this.#resume?.();
  }

  /** Hands the handler its failure; should it throw, that is reported, never thrown into undici. */
  tell(err: Error): void {
    try {
      this.handler.onError(err);
    } catch (bug) {
      handlerThrew(this.client.onInternalError, this.handler, bug, false);
    }
  }

  /** The handler threw in a callback (a bug): the exchange ends, and handlerThrew reports it. */
  threw(err: unknown): void {
    handlerThrew(this.client.onInternalError, this.handler, err, this.#end(new UpstreamError('ERR_UPSTREAM_HANDLER', 'the request handler threw')));
  }

  /**
   * Ends the exchange from this side: undici drops the request (and its connection, never reused
   * mid-message) at once, or at its onConnect if it has not got that far. False: already ended.
   */
  #end(reason: Error): boolean {
    if (this.done) return false;
    this.done = true;
    this.client.ended();
    const abort = this.#abort;
    if (abort !== null) abort(reason);
    else this.#reason = reason;
    this.#dropBody();
    return true;
  }

  /** A request body not read to its end is destroyed (an H1 body then discards the rest). */
  #dropBody(): void {
    const body = this.req.body;
    if (body !== null && !body.destroyed && !body.readableEnded) body.destroy();
  }

  // ---- undici's handler (original API) --------------------------------------------------------------

  onConnect(abort: (err?: Error) => void): void {
    if (this.done) {
      abort(this.#reason ?? undefined);
      return;
    }
    this.#abort = abort;
  }

  onResponseStarted(): void {
    this.#responded = true;
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void): boolean {
    if (this.done) return false;
    if (statusCode < 200) {
      // Interim responses are not relayed; a few, not forever (undici has no limit of its own).
      if (++this.#interim <= MAX_INTERIM) return true;
      this.fail(new UpstreamError('ERR_UPSTREAM_BAD_RESPONSE', `the app sent more than ${MAX_INTERIM} interim responses`));
      return false;
    }
    this.#final = true;
    this.#resume = resume;
    const raw = new Array<string>(rawHeaders.length);
    for (let i = 0; i < rawHeaders.length; i++) raw[i] = (rawHeaders[i] as Buffer).toString('latin1');
    try {
      return this.handler.onHeaders(statusCode, raw);
    } catch (err) {
      this.threw(err);
      return false;
    }
  }

  onData(chunk: Buffer): boolean {
    if (this.done) return false;
    try {
      return this.handler.onData(chunk);
    } catch (err) {
      this.threw(err);
      return false;
    }
  }

  /** Trailers are not handed on (the handler's head has gone out already). */
  onComplete(): void {
    if (this.done) return;
    this.done = true;
    this.client.ended();
    try {
      this.handler.onComplete();
    } catch (err) {
      this.threw(err);
    }
  }

  onError(err: Error): void {
    if (this.done) return;
    const code = (err as { code?: string }).code ?? '';
    if (!this.#responded && !this.#retried && this.req.body === null && CLOSED.has(code) && RETRYABLE.has(this.req.method) && !this.client.closed) {
      // The keep-alive race: the app closed the connection as the request went out. undici does
      // not say whether it was a reused one, so a fresh connection that closes gets this one more try too.
      this.#retried = true;
      this.#abort = null;
      this.send();
      return;
    }
    this.fail(this.#translate(err, code));
  }

  /** Ends the exchange with an error found on this side or reported by undici, and tells the handler. */
  fail(err: Error): void {
    if (this.done) return;
    this.done = true;
    this.client.ended();
    // undici ends the request and closes its connection itself after an error it reports; one
    // found here (too many interim responses) goes through its abort.
    this.#abort?.(err);
    this.#dropBody();
    this.tell(err);
  }

  /** undici's error codes as UpstreamError codes (what classifyUpstreamError and the audit reasons know). */
  #translate(err: Error, code: string): Error {
    let mine: UpstreamError['code'] | null = null;
    switch (code) {
      case 'UND_ERR_CONNECT_TIMEOUT':
        mine = 'ERR_UPSTREAM_CONNECT_TIMEOUT';
        break;
      case 'UND_ERR_HEADERS_TIMEOUT':
        mine = 'ERR_UPSTREAM_HEADERS_TIMEOUT';
        break;
      case 'UND_ERR_BODY_TIMEOUT':
        mine = 'ERR_UPSTREAM_BODY_TIMEOUT';
        break;
      case 'UND_ERR_SOCKET':
        // After a response byte and before a final head, undici closes the connection over a
        // response it refuses (a 101, a bare 100), with the same code as a close by the app.
        mine = this.#responded && !this.#final ? 'ERR_UPSTREAM_BAD_RESPONSE' : 'ERR_UPSTREAM_CLOSED';
        break;
      case 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH':
        mine = 'ERR_UPSTREAM_CLOSED';
        break;
      case 'UND_ERR_HEADERS_OVERFLOW':
      case 'UND_ERR_RES_EXCEEDED_MAX_SIZE':
        mine = 'ERR_UPSTREAM_BAD_RESPONSE';
        break;
      case 'UND_ERR_REQ_CONTENT_LENGTH_MISMATCH':
        mine = 'ERR_UPSTREAM_LENGTH_MISMATCH';
        break;
      case 'UND_ERR_INVALID_ARG':
      case 'UND_ERR_NOT_SUPPORTED':
        // Refused before anything was written: a header value with a control character, a
        // header undici sets itself.
        mine = 'ERR_UPSTREAM_BAD_HEADER';
        break;
      case 'UND_ERR_CLOSED':
      case 'UND_ERR_DESTROYED':
        mine = 'ERR_UPSTREAM_POOL_CLOSED';
        break;
      default:
        // A response that does not parse.
        if (ParserError !== null && err instanceof ParserError) mine = 'ERR_UPSTREAM_BAD_RESPONSE';
    }
    // Anything else (ECONNREFUSED, a request body's own error, the forward handler's abort reason) goes on as it is.
    return mine === null ? err : new UpstreamError(mine, err.message, { cause: err });
  }
}
