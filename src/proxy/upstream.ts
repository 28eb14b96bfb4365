/**
 * Stage 6's client: HTTP/1.1 to the app over a keep-alive pool of plain TCP connections, one
 * request per connection at a time (no pipelining), both bodies streamed with backpressure.
 *
 * Why not undici: it is the well-kept general client, and the sidecar used it until profiles put
 * its per-request work (Request object, queue, header validation, one Buffer per response header,
 * a timer per request) at a sixth of a keep-alive request's time. The sidecar's upstream is one
 * origin on loopback, so the client it needs is small: the request head written as one string,
 * the response parsed by llhttp (the same strict parser the server side uses), connections kept
 * in a LIFO list, time limits checked by one sweep per pool.
 *
 * Behaviour an operator of Envoy or nginx would expect, and undici's where they differ:
 * - a request whose reused connection turns out closed by the app before any response byte
 *   (the keep-alive race) is sent again once on a new connection, for GET/HEAD/OPTIONS without a
 *   body only (RFC 9110 9.2.2); anything else fails as before;
 * - `timeout` is the longest the app may make no progress (no request body byte taken, no
 *   response byte sent), like nginx's proxy_send/read_timeout: it bounds waiting for the response
 *   head and every gap in the body. Time spent waiting on the client (its upload, or its reading
 *   while the sidecar holds the response) does not count: the client's own limits cover it;
 *   `0` turns it off (and `connectTimeout: 0` the connect limit), as with undici;
 * - an idle connection is closed after 30 s, or sooner when the app's `Keep-Alive: timeout=N`
 *   says it will close first (N - 2 s, undici's margin), and is never reused past that age;
 * - 1xx responses from the app are not relayed (the sidecar answers Expect itself); 101 and
 *   responses that do not parse end the exchange with an error (502);
 * - a handler that throws inside a callback is a bug on the sidecar's side, not the app's: the
 *   exchange ends, the handler is told `ERR_UPSTREAM_HANDLER` and the exception goes to
 *   `onInternalError` (never into a socket event, where it would end the process).
 *
 * `UpstreamClient` is what the rest of the sidecar uses; proxy/undici-upstream.ts implements it
 * on undici's Pool, for the A/B measurement of this client against undici.
 */
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Socket } from 'node:net';
import type { Readable } from 'node:stream';
import { HeaderPairs, ResponseParser, HPE_OK, HPE_PAUSED, llhttpErrorName } from '../http1/llhttp.js';
import type { ParserEvents } from '../http1/llhttp.js';

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
  /** Flat name/value pairs, values already free of CR/LF/NUL where a parser produced them (checked again here). */
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

/**
 * The upstream client as the pipeline and the runtime use it: the own pool (UpstreamPool) or
 * undici's (proxy/undici-upstream.ts), both built from UpstreamOptions.
 */
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

const KEEP_ALIVE_MS = 30_000;
/** The app's `Keep-Alive: timeout` is cut by this much, so the sidecar closes first (undici's threshold). */
const KEEP_ALIVE_MARGIN_MS = 2_000;
/** Interim (1xx) responses allowed before the final one: an app cannot hold an exchange open with them. */
const MAX_INTERIM = 10;
const MAX_RESPONSE_HEAD = 64 * 1024;
const MAX_RESPONSE_HEADERS = 2 * 1000;
/** A CR, LF or NUL in a value would split or end the header line (request smuggling). */
const BAD_VALUE = /[\r\n\0]/;
const RETRYABLE = new Set(['GET', 'HEAD', 'OPTIONS']);
/** Methods whose message is expected to carry a body: an empty one is framed as `content-length: 0`. */
const EXPECTS_BODY = new Set(['POST', 'PUT', 'PATCH']);

function uncork(socket: Socket): void {
  socket.uncork();
}

export class UpstreamPool implements UpstreamClient {
  readonly host: string;
  readonly port: number;
  /** Sent when the request carries no Host (HTTP/1.0 without one). */
  readonly hostHeader: string;
  readonly connectTimeoutMs: number;
  readonly timeoutMs: number;
  readonly onInternalError: UpstreamOptions['onInternalError'];
  /** Sweep period: the resolution of timeouts and idle closes. */
  readonly period: number;
  /** `timeout` in sweep periods; 0: none. */
  readonly activeTicks: number;
  /** Coarse clock in periods, advanced by the sweep: connections note it instead of reading a clock per read. */
  tick = 0;
  readonly idle: UpstreamConnection[] = [];
  readonly all = new Set<UpstreamConnection>();
  running = 0;
  closed = false;
  #closeWaiters: (() => void)[] = [];
  #sweep: NodeJS.Timeout | null = null;

  constructor(o: UpstreamOptions) {
    const url = new URL(o.origin);
    this.host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
    this.port = url.port === '' ? 80 : Number(url.port);
    this.hostHeader = url.host;
    this.connectTimeoutMs = o.connectTimeoutMs;
    this.timeoutMs = o.timeoutMs;
    this.onInternalError = o.onInternalError;
    this.period = Math.max(10, Math.min(1000, Math.floor(Math.min(o.timeoutMs > 0 ? o.timeoutMs : KEEP_ALIVE_MS, KEEP_ALIVE_MS) / 10)));
    this.activeTicks = o.timeoutMs > 0 ? Math.ceil(o.timeoutMs / this.period) : 0;
  }

  /** In-flight exchanges, and connections open / idle (tests and /metrics-style probes). */
  get stats(): UpstreamStats {
    return { running: this.running, connected: this.all.size, free: this.idle.length };
  }

  dispatch(req: UpstreamRequest, handler: UpstreamHandler): void {
    const ex = new Exchange(this, req, handler);
    if (this.closed) {
      ex.done = true;
      ex.tell(new UpstreamError('ERR_UPSTREAM_POOL_CLOSED', 'the upstream pool is closed'));
      return;
    }
    this.running++;
    try {
      handler.onConnect(ex);
    } catch (err) {
      ex.threw(err);
      return;
    }
    if (!ex.done) this.start(ex, false);
  }

  /**
   * Puts an exchange on a connection: the most recently idle one (warm, least likely closed), or
   * a new one. An idle connection past its keep-alive age is closed, never used.
   */
  start(ex: Exchange, fresh: boolean): void {
    let conn: UpstreamConnection | undefined;
    if (!fresh && this.idle.length > 0) {
      const now = performance.now();
      for (conn = this.idle.pop(); conn !== undefined && !conn.usable(now); conn = this.idle.pop()) conn.kill();
    }
    conn ??= this.#connect();
    conn.assign(ex);
  }

  #connect(): UpstreamConnection {
    const conn = new UpstreamConnection(this, net.connect({ host: this.host, port: this.port, noDelay: true }));
    this.all.add(conn);
    if (this.#sweep === null) {
      this.#sweep = setInterval(() => this.#onSweep(), this.period);
      this.#sweep.unref();
    }
    return conn;
  }

  #onSweep(): void {
    const now = ++this.tick;
    const nowMs = performance.now();
    for (const conn of this.all) conn.sweep(now, nowMs);
    if (this.all.size === 0 && this.#sweep !== null) {
      clearInterval(this.#sweep);
      this.#sweep = null;
    }
  }

  #hintValue = '';
  #hintMs = -1;

  /**
   * Idle lifetime from a `Keep-Alive` value: -1 when it names no timeout, 0 when the app closes
   * within the margin. An app sends the same value every time: parsed once.
   */
  hintMs(value: string): number {
    if (value === this.#hintValue) return this.#hintMs;
    const m = /(?:^|[\s,;])timeout\s*=\s*(\d+)/i.exec(value);
    const ms = m === null ? -1 : Number(m[1]) * 1000 - KEEP_ALIVE_MARGIN_MS;
    this.#hintValue = value;
    this.#hintMs = m === null ? -1 : Math.max(0, ms);
    return this.#hintMs;
  }

  /** An exchange ended (completed or failed). */
  ended(): void {
    this.running--;
    if (this.closed && this.running === 0) this.#drained();
  }

  forget(conn: UpstreamConnection): void {
    this.all.delete(conn);
    const i = this.idle.lastIndexOf(conn);
    if (i !== -1) this.idle.splice(i, 1);
  }

  /** New requests are refused; resolves once in-flight exchanges have ended (a reload's old pool). */
  close(): Promise<void> {
    this.closed = true;
    for (const conn of this.idle.splice(0)) conn.socket.destroy();
    if (this.running === 0) {
      this.#drained();
      return Promise.resolve();
    }
    return new Promise((resolve) => this.#closeWaiters.push(resolve));
  }

  #drained(): void {
    if (this.#sweep !== null) clearInterval(this.#sweep);
    this.#sweep = null;
    for (const conn of this.all) if (conn.ex === null) conn.socket.destroy();
    for (const w of this.#closeWaiters.splice(0)) w();
  }
}

/** One request/response on the pool: what the handler's control calls act on. */
class Exchange implements UpstreamControl {
  readonly pool: UpstreamPool;
  readonly req: UpstreamRequest;
  readonly handler: UpstreamHandler;
  conn: UpstreamConnection | null = null;
  done = false;
  retried = false;
  /** The whole request (head and body) has been handed to the socket. */
  sent = false;
  /** Declared body length, or -1 (chunked). */
  declared = -1;
  written = 0;
  bodyPaused = false;

  constructor(pool: UpstreamPool, req: UpstreamRequest, handler: UpstreamHandler) {
    this.pool = pool;
    this.req = req;
    this.handler = handler;
    // Listened to from the start: a body can fail (too large, client gone) before any connection exists.
    if (req.body !== null) {
      const l = { data: (chunk: Buffer) => this.#onBodyData(chunk), end: () => this.#onBodyEnd(), error: (err: Error) => this.fail(err) };
      this.#listeners = l;
      req.body.on('error', l.error);
    }
  }

  abort(err: Error): void {
    this.fail(err);
  }

  resume(): void {
    this.conn?.resumeReading();
  }

  /** Ends the exchange with an error; its connection (if any) is closed, never reused mid-message. */
  fail(err: Error): void {
    if (this.#end()) this.tell(err);
  }

  /** The handler threw in a callback (a bug): the exchange ends as in fail(), and handlerThrew reports it. */
  threw(err: unknown): void {
    handlerThrew(this.pool.onInternalError, this.handler, err, this.#end());
  }

  /** Hands the handler its failure; should it throw, that is reported, never thrown into a socket event. */
  tell(err: Error): void {
    try {
      this.handler.onError(err);
    } catch (bug) {
      handlerThrew(this.pool.onInternalError, this.handler, bug, false);
    }
  }

  /** False when it had already ended (completed or failed): the handler has been told. */
  #end(): boolean {
    if (this.done) return false;
    this.done = true;
    const conn = this.conn;
    this.conn = null;
    if (conn !== null) {
      conn.ex = null;
      conn.socket.destroy();
    }
    this.detachBody(true);
    this.pool.ended();
    return true;
  }

  // ---- request body --------------------------------------------------------------------------

  /** Made only for a request with a body, so a bodiless one allocates no listeners. */
  #listeners: { data: (chunk: Buffer) => void; end: () => void; error: (err: Error) => void } | null = null;

  pipeBody(body: Readable): void {
    const l = this.#listeners;
    if (l === null) return;
    if (body.errored !== null) {
      this.fail(body.errored);
      return;
    }
    body.on('data', l.data);
    body.on('end', l.end);
  }

  /** Stops reading the request body; `drop` also destroys it (an H1 body then discards the rest). */
  detachBody(drop: boolean): void {
    const body = this.req.body;
    if (body === null) return;
    const l = this.#listeners;
    if (l !== null) {
      this.#listeners = null;
      body.off('data', l.data);
      body.off('end', l.end);
      body.off('error', l.error);
    }
    if (drop && !this.sent && !body.destroyed) body.destroy();
  }

  #onBodyData(chunk: Buffer): void {
    const conn = this.conn;
    // An empty chunk would read as the chunked body's last one: the rest would smuggle as a new request.
    if (conn === null || chunk.length === 0) return;
    this.written += chunk.length;
    if (this.declared !== -1 && this.written > this.declared) {
      this.fail(new UpstreamError('ERR_UPSTREAM_LENGTH_MISMATCH', 'request body longer than its Content-Length'));
      return;
    }
    conn.progress();
    let ok: boolean;
    if (this.declared === -1) {
      const s = conn.socket;
      s.cork();
      s.write(`${chunk.length.toString(16)}\r\n`, 'latin1');
      s.write(chunk);
      ok = s.write('\r\n', 'latin1');
      s.uncork();
    } else {
      ok = conn.socket.write(chunk);
    }
    if (!ok) {
      this.bodyPaused = true;
      (this.req.body as Readable).pause();
    }
  }

  #onBodyEnd(): void {
    const conn = this.conn;
    if (conn === null) return;
    if (this.declared !== -1 && this.written !== this.declared) {
      this.fail(new UpstreamError('ERR_UPSTREAM_LENGTH_MISMATCH', 'request body shorter than its Content-Length'));
      return;
    }
    if (this.declared === -1) conn.socket.write('0\r\n\r\n', 'latin1');
    this.sent = true;
    this.detachBody(false);
  }

  /** The connection drained: read more of the request body. */
  bodyDrained(): void {
    if (!this.bodyPaused) return;
    this.bodyPaused = false;
    this.req.body?.resume();
  }
}

class UpstreamConnection implements ParserEvents {
  readonly pool: UpstreamPool;
  readonly socket: Socket;
  readonly parser: ResponseParser;
  ex: Exchange | null = null;
  connected = false;
  /** It has completed an exchange: a stale keep-alive connection is possible. */
  reused = false;
  /** Sweep tick of the exchange's last progress. */
  seen = 0;
  /** performance.now() when it went idle. */
  idleSince = 0;
  /** Idle lifetime (the app's Keep-Alive hint may shorten it). */
  keepAliveMs = KEEP_ALIVE_MS;
  #connectTimer: NodeJS.Timeout | null = null;
  #error: Error | null = null;
  /** Reading stopped because the client is slower than the app (the handler's onData said so). */
  #readPaused = false;
  /** The rest of a read the parser stopped in (paused), parsed on resume. */
  #held: Buffer | null = null;
  #interim = 0;
  // Response parse state.
  readonly #headers = new HeaderPairs();
  #headBytes = 0;
  #status = 0;
  #keepAlive = false;
  #complete = false;
  #bytes = false;
  #parseError: UpstreamError | null = null;

  constructor(pool: UpstreamPool, socket: Socket) {
    this.pool = pool;
    this.socket = socket;
    this.parser = new ResponseParser(this);
    if (pool.connectTimeoutMs > 0) this.#connectTimer = setTimeout(() => this.#onConnectTimeout(), pool.connectTimeoutMs);
    socket.on('connect', () => this.#onConnect());
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    socket.on('end', () => this.#onEnd());
    socket.on('error', (err: Error) => {
      this.#error ??= err;
    });
    socket.on('close', () => this.#onClose());
    socket.on('drain', () => this.ex?.bodyDrained());
  }

  assign(ex: Exchange): void {
    this.ex = ex;
    ex.conn = this;
    this.seen = this.pool.tick;
    this.#bytes = false;
    this.#interim = 0;
    if (this.connected) this.#write(ex);
  }

  progress(): void {
    this.seen = this.pool.tick;
  }

  /** Idle and young enough to carry a request. */
  usable(now: number): boolean {
    return !this.socket.destroyed && now - this.idleSince < this.keepAliveMs;
  }

  /** Closed by the sidecar: out of the lists at once (its 'close' comes a turn later). */
  kill(): void {
    this.pool.forget(this);
    this.socket.destroy();
  }

  /** The client drained: parse what the pause held back, then read on. */
  resumeReading(): void {
    if (!this.#readPaused) return;
    this.#readPaused = false;
    this.seen = this.pool.tick;
    const held = this.#held;
    this.#held = null;
    const ex = this.ex;
    if (held !== null && ex !== null) {
      this.parser.resume();
      this.#parse(ex, held);
    }
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- #parse may pause again
    if (!this.#readPaused && !this.socket.destroyed) this.socket.resume();
  }

  sweep(now: number, nowMs: number): void {
    const ex = this.ex;
    if (ex !== null) {
      const active = this.pool.activeTicks;
      // Waiting on the client (its upload, or its reading of the response) is not the app's delay.
      const onClient = this.#readPaused || (!ex.sent && !ex.bodyPaused && ex.req.body !== null);
      if (active > 0 && this.connected && !onClient && now - this.seen > active) {
        ex.fail(
          this.#status === 0
            ? new UpstreamError('ERR_UPSTREAM_HEADERS_TIMEOUT', 'no response from the app within upstream.timeout')
            : new UpstreamError('ERR_UPSTREAM_BODY_TIMEOUT', 'the app stopped sending the response body for upstream.timeout'),
        );
      }
    } else if (this.connected && nowMs - this.idleSince >= this.keepAliveMs) {
      this.kill();
    }
  }

  #onConnect(): void {
    this.connected = true;
    if (this.#connectTimer !== null) clearTimeout(this.#connectTimer);
    this.#connectTimer = null;
    const ex = this.ex;
    if (ex !== null) this.#write(ex);
    else this.#release(); // its exchange ended while connecting: a warm connection for the next one
  }

  #onConnectTimeout(): void {
    this.#connectTimer = null;
    if (!this.connected) this.socket.destroy(new UpstreamError('ERR_UPSTREAM_CONNECT_TIMEOUT', 'no connection to the app within upstream.connectTimeout'));
  }

  #write(ex: Exchange): void {
    const req = ex.req;
    const h = req.headers;
    let head = `${req.method} ${req.path} HTTP/1.1\r\n`;
    let hasHost = false;
    for (let i = 0; i + 1 < h.length; i += 2) {
      const name = h[i] as string;
      const value = h[i + 1] as string;
      if (BAD_VALUE.test(value)) {
        // Nothing was written: the connection stays good.
        this.#detach(ex);
        ex.detachBody(true);
        ex.done = true;
        this.pool.ended();
        this.#release();
        ex.tell(new UpstreamError('ERR_UPSTREAM_BAD_HEADER', `header ${name} has a CR, LF or NUL in its value`));
        return;
      }
      const n = name.length;
      if (n === 4 && name.toLowerCase() === 'host') hasHost = true;
      else if (n === 14 && name.toLowerCase() === 'content-length') ex.declared = Number(value);
      head += `${name}: ${value}\r\n`;
    }
    if (!hasHost) head += `host: ${this.pool.hostHeader}\r\n`;
    // Said out loud, as undici did, for apps that still answer HTTP/1.0-style.
    head += 'connection: keep-alive\r\n';
    const body = req.body;
    if (body === null && ex.declared > 0) {
      // A head that promises a body that will not come: the app would read the next request on
      // this connection as that body (smuggling). Never written; the connection stays good.
      this.#detach(ex);
      ex.detachBody(true);
      ex.done = true;
      this.pool.ended();
      this.#release();
      ex.tell(new UpstreamError('ERR_UPSTREAM_BAD_HEADER', `content-length ${ex.declared} on a request without a body`));
      return;
    }
    if (body === null) {
      if (ex.declared === -1 && EXPECTS_BODY.has(req.method)) head += 'content-length: 0\r\n';
      ex.sent = true;
      this.socket.write(`${head}\r\n`, 'latin1');
      return;
    }
    if (ex.declared === -1) head += 'transfer-encoding: chunked\r\n';
    // Body bytes already read with the head (a small POST) go out in the same write.
    const socket = this.socket;
    socket.cork();
    socket.write(`${head}\r\n`, 'latin1');
    ex.pipeBody(body);
    process.nextTick(uncork, socket);
  }

  #detach(ex: Exchange): void {
    if (this.ex === ex) this.ex = null;
    ex.conn = null;
  }

  /** Back to the idle list, or closed when it cannot carry another exchange. */
  #release(): void {
    if (this.pool.closed || this.socket.destroyed) {
      this.kill();
      return;
    }
    this.reused = true;
    this.idleSince = performance.now();
    this.#held = null;
    if (this.#readPaused) {
      // Idle, it must see the app's close.
      this.#readPaused = false;
      this.socket.resume();
    }
    this.pool.idle.push(this);
  }

  #onData(chunk: Buffer): void {
    const ex = this.ex;
    if (ex === null) {
      // Bytes nobody asked for: this connection cannot be trusted with the next request.
      this.kill();
      return;
    }
    this.seen = this.pool.tick;
    this.#bytes = true;
    this.#parse(ex, chunk);
  }

  #parse(ex: Exchange, chunk: Buffer): void {
    let rc: number;
    try {
      rc = this.parser.execute(chunk);
    } catch (err) {
      // A handler threw inside a parser callback (a bug, not the app's doing): this exchange ends,
      // never the process. Its connection is mid-message whatever the exchange's state.
      this.#complete = false;
      if (this.ex !== ex) this.kill();
      ex.threw(err);
      return;
    }
    if (rc === HPE_PAUSED) {
      // The client is full: hold the rest of this read until it drains.
      this.#held = chunk.subarray(this.parser.consumed);
      if (!this.#readPaused) {
        this.#readPaused = true;
        this.socket.pause();
      }
      return;
    }
    if (this.#complete) {
      this.#complete = false;
      this.#finish(ex, rc === HPE_OK && this.#keepAlive);
      if (rc !== HPE_OK) this.kill();
    } else if (rc !== HPE_OK && this.ex === ex) {
      ex.fail(this.#parseError ?? new UpstreamError('ERR_UPSTREAM_BAD_RESPONSE', `the app's response does not parse as HTTP/1.1 (${llhttpErrorName(rc)})`));
    }
  }

  #finish(ex: Exchange, reusable: boolean): void {
    this.#detach(ex);
    if (ex.done) return;
    ex.done = true;
    ex.detachBody(true);
    // Answered before the whole request went out: the connection is mid-message, not reusable.
    if (reusable && ex.sent) this.#release();
    else this.kill();
    this.pool.ended();
    try {
      ex.handler.onComplete();
    } catch (err) {
      ex.threw(err);
    }
  }

  #onEnd(): void {
    const ex = this.ex;
    // A body delimited by the connection's end (no Content-Length, not chunked) is complete now.
    if (ex !== null && this.#status !== 0) {
      try {
        this.parser.finish();
      } catch (err) {
        this.#complete = false;
        ex.threw(err);
      }
      if (this.#complete) {
        this.#complete = false;
        this.#finish(ex, false);
      }
    }
    this.kill();
  }

  #onClose(): void {
    if (this.#connectTimer !== null) clearTimeout(this.#connectTimer);
    this.#connectTimer = null;
    this.pool.forget(this);
    this.parser.free();
    const ex = this.ex;
    if (ex === null) return;
    this.#detach(ex);
    if (ex.done) return;
    if (!this.#bytes && this.reused && !ex.retried && ex.req.body === null && RETRYABLE.has(ex.req.method) && !this.pool.closed) {
      // The keep-alive race: the app closed this idle connection as the request went out.
      ex.retried = true;
      ex.sent = false;
      this.pool.start(ex, true);
      return;
    }
    ex.fail(this.#error ?? new UpstreamError('ERR_UPSTREAM_CLOSED', 'the app closed the connection before the response ended'));
  }

  // ---- llhttp callbacks (response) --------------------------------------------------------------

  onMessageBegin(): number {
    // After the response: bytes nobody asked for (pipelining is never used).
    if (this.ex === null || this.#complete) return -1;
    this.#headers.take();
    this.#headBytes = 0;
    this.#status = 0;
    return 0;
  }

  onUrl(): number {
    return -1;
  }

  onHeaderField(part: string): number {
    const headers = this.#headers;
    // A new pair also counts its ": " and CRLF.
    return this.#headSize(headers.name(part) ? part.length + 4 : part.length, headers.list.length);
  }

  onHeaderValue(part: string): number {
    this.#headers.value(part);
    return this.#headSize(part.length, this.#headers.list.length);
  }

  #headSize(add: number, count: number): number {
    this.#headBytes += add;
    if (this.#headBytes <= MAX_RESPONSE_HEAD && count <= MAX_RESPONSE_HEADERS) return 0;
    this.#parseError = new UpstreamError('ERR_UPSTREAM_BAD_RESPONSE', "the app's response head is larger than 64 KiB");
    return -1;
  }

  onHeadersComplete(upgrade: boolean, keepAlive: boolean, status: number): number {
    const ex = this.ex;
    if (ex === null || ex.done) return -1;
    if (status < 200) {
      if (status === 101 || upgrade) {
        this.#parseError = new UpstreamError('ERR_UPSTREAM_BAD_RESPONSE', 'the app switched protocols, which the sidecar does not relay');
        return -1;
      }
      // Interim response: skip it and read on for the final one (a few, not forever).
      if (++this.#interim > MAX_INTERIM) {
        this.#parseError = new UpstreamError('ERR_UPSTREAM_BAD_RESPONSE', `the app sent more than ${MAX_INTERIM} interim responses`);
        return -1;
      }
      this.#headers.take();
      this.#headBytes = 0;
      return 1;
    }
    this.#status = status;
    this.#keepAlive = keepAlive;
    // Trailers (chunked) land in a fresh list, never in the one handed on.
    const raw = this.#headers.take();
    if (keepAlive) this.#keepAliveHint(raw);
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- onHeaders may end the exchange
    if (!ex.handler.onHeaders(status, raw) || ex.done) return -1;
    // A HEAD response has no body whatever its Content-Length says.
    return ex.req.method === 'HEAD' ? 1 : 0;
  }

  /** `Keep-Alive: timeout=N` from the app: close the idle connection before it does. */
  #keepAliveHint(raw: readonly string[]): void {
    for (let i = 0; i + 1 < raw.length; i += 2) {
      const name = raw[i] as string;
      if (name.length !== 10 || name.toLowerCase() !== 'keep-alive') continue;
      const ms = this.pool.hintMs(raw[i + 1] as string);
      if (ms === 0) this.#keepAlive = false;
      else if (ms > 0 && ms < this.keepAliveMs) this.keepAliveMs = ms;
      return;
    }
  }

  onBody(chunk: Buffer): number {
    const ex = this.ex;
    if (ex === null || ex.done) return -1;
    // Resuming a paused parse on an empty rest reports an empty span: nothing to hand on.
    if (chunk.length === 0) return 0;
    if (ex.handler.onData(chunk)) return 0;
    // The client reads slower than the app writes: the parse stops here until it drains.
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- onData may end the exchange
    return ex.done ? -1 : HPE_PAUSED;
  }

  onMessageComplete(): number {
    if (this.#status === 0) return 0; // the end of an interim response
    this.#complete = true;
    this.#status = 0;
    return 0;
  }
}
