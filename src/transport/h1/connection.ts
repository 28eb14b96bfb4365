/**
 * HTTP/1.1 on the verified TLS socket, without node:http. Requests are parsed by llhttp (the
 * parser inside node:http, http1/llhttp.ts) and handed to the pipeline as small H1Request /
 * H1Response objects (the slice of request/response it uses, transport/types.ts). node:http builds
 * an IncomingMessage and a ServerResponse — two streams with their event machinery — for every
 * request and writes the head and body separately; here a request without a body has no stream
 * at all, a response head is one string written together with the first body bytes, the
 * headers/request time limits are one sweep per listener over its connections, and idle is the
 * socket's own timeout. Measured on the bench's keep-alive scenario, a bare proxy built this way
 * serves ~1.25× the requests of the same proxy on node:http (docs/performance.md).
 *
 * What node:http did and this keeps: llhttp's strict parsing, maxHeaderSize (431),
 * headersTimeout / requestTimeout (408) and the idle timeout, Expect: 100-continue, HTTP/1.0
 * keep-alive, chunked responses, and pipelining — answered in order, one request in the pipeline
 * at a time, at most `pipelineDepth` more waiting (more cuts the connection off).
 */
import { Readable } from 'node:stream';
import type { Writable } from 'node:stream';
import type { IncomingHttpHeaders } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { performance } from 'node:perf_hooks';
import { HeaderPairs, HPE_OK, HPE_PAUSED_UPGRADE, RequestParser, llhttpErrorName } from '../../http1/llhttp.js';
import type { ParserEvents } from '../../http1/llhttp.js';
import type { InboundRequest, OutboundResponse } from '../types.js';

export interface H1Limits {
  readonly maxHeaderSize: number;
  readonly maxHeaders: number;
  readonly headersTimeoutMs: number;
  readonly requestTimeoutMs: number;
  readonly idleTimeoutMs: number;
  /** Pipelined requests that may wait behind the one being answered. */
  readonly pipelineDepth: number;
}

/**
 * A request refused before (or while) it was read: a parse error or a time limit. `method` and
 * `target` are what its request line said once that line was read (else ''), for the audit line.
 */
export type H1ClientError = Error & { code: string; method: string; target: string };

export interface H1Hooks {
  onRequest(req: H1Request, res: H1Response): void;
  /** A request that cannot be parsed or timed out: answer on the raw socket (or close it). */
  onClientError(err: H1ClientError, socket: TLSSocket): void;
  /**
   * A bug (an exception) in request handling: `res` is the request being answered, or null when
   * the parse itself broke. The hook answers it (500, or a cut); the connection then ends, the
   * process and every other connection go on. Without a hook the connection is cut.
   */
  onInternalError?: (err: unknown, res: H1Response | null) => void;
}

/**
 * How often the time limits are checked. Sweeping at a quarter of the shorter limit (between
 * 100 ms and 1 s) keeps a cut within ~25 % of it (node:http's default sweep was 30 s, which let
 * a slowloris client live up to 30 s past either limit).
 */
function checkingIntervalMs(l: Pick<H1Limits, 'headersTimeoutMs' | 'requestTimeoutMs'>): number {
  return Math.max(100, Math.min(1000, Math.floor(Math.min(l.headersTimeoutMs, l.requestTimeoutMs) / 4)));
}

/** The HTTP/1.1 side of one listener: its connections and their time limits. */
export class H1Server {
  limits: H1Limits;
  readonly hooks: H1Hooks;
  readonly #conns = new Set<H1Connection>();
  #timer: NodeJS.Timeout | null = null;

  constructor(limits: H1Limits, hooks: H1Hooks) {
    this.limits = limits;
    this.hooks = hooks;
  }

  /**
   * New limits apply to open connections from the next sweep (a reload); the idle timeout is set
   * on each socket when it is accepted, so it applies to new connections only (as node:http's).
   */
  setLimits(limits: H1Limits): void {
    const restart = this.#timer !== null && checkingIntervalMs(limits) !== checkingIntervalMs(this.limits);
    this.limits = limits;
    if (restart) {
      this.#stopSweep();
      this.#startSweep();
    }
  }

  /** A socket that passed the handshake check and negotiated HTTP/1.1 (or nothing). */
  accept(socket: TLSSocket): void {
    if (socket.destroyed) return;
    this.#conns.add(new H1Connection(this, socket));
    if (this.#timer === null) this.#startSweep();
  }

  forget(conn: H1Connection): void {
    this.#conns.delete(conn);
    if (this.#conns.size === 0) this.#stopSweep();
  }

  #startSweep(): void {
    this.#timer = setInterval(() => {
      const now = performance.now();
      for (const c of this.#conns) c.check(now, this.limits);
    }, checkingIntervalMs(this.limits));
    this.#timer.unref();
  }

  #stopSweep(): void {
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
  }
}

function requestError(code: string, message: string, method = '', target = ''): H1ClientError {
  return Object.assign(new Error(message), { code, method, target });
}

/** RFC 9112 6.1: `chunked`, alone (any case, optional whitespace around it). */
function chunkedOnly(te: string): boolean {
  const v = te.trim();
  return v.length === 7 && v.toLowerCase() === 'chunked';
}

/** Headers node:http keeps the first of (duplicates are refused by the pipeline where it matters). */
const FIRST_WINS = new Set([
  'age', 'authorization', 'content-length', 'content-type', 'etag', 'expires', 'from', 'host', 'if-modified-since',
  'if-unmodified-since', 'last-modified', 'location', 'max-forwards', 'proxy-authorization', 'referer', 'retry-after',
  'server', 'user-agent',
]);

/** One TLS connection speaking HTTP/1.1. */
class H1Connection implements ParserEvents {
  readonly server: H1Server;
  readonly socket: TLSSocket;
  readonly parser: RequestParser;
  // The message being parsed.
  #url = '';
  readonly #headers = new HeaderPairs();
  #headerBytes = 0;
  /** The message's request line was read (a header or the end of the head followed it). */
  #lineRead = false;
  #userError: string | null = null;
  /** A request whose body is still being parsed. */
  #bodyOf: H1Request | null = null;
  /** A request without a body: dispatched when its message completes. */
  #noBody: H1Response | null = null;
  #connect = false;
  /** performance.now() at the first byte of the message being parsed; 0 between messages. */
  msgStart = 0;
  #headersDone = false;
  // Responses, in request order.
  active: H1Response | null = null;
  readonly #waiting: H1Response[] = [];
  /** No further request is parsed (closing, parse error, timeout, cut off). */
  #halted = false;
  /** No further response goes out on this connection (one said close, or it was cut off). */
  #done = false;
  #pendingError: H1ClientError | null = null;
  #paused = false;
  #bodyBlocked = false;
  /** Bytes read, and body bytes delivered, since the current body began (the chunk-extension bound). */
  #bodyRead = 0;
  #bodyData = 0;

  constructor(server: H1Server, socket: TLSSocket) {
    this.server = server;
    this.socket = socket;
    this.parser = new RequestParser(this);
    // Idle = no byte read or written for idleTimeout, whatever the state (as node:http's
    // server.setTimeout): also cuts a client that stops reading a response it asked for.
    socket.setTimeout(server.limits.idleTimeoutMs, () => socket.destroy());
    socket.on('data', (chunk: Buffer) => this.#execute(chunk));
    socket.on('drain', () => this.active?.emitDrain());
    // Socket errors (a reset, a write after the peer left) end in 'close'.
    socket.on('error', ignore);
    socket.on('close', () => this.#onClose());
  }

  #execute(chunk: Buffer): void {
    if (this.#halted) return;
    const inBody = this.#bodyOf !== null;
    let rc: number;
    try {
      rc = this.parser.execute(chunk);
    } catch (err) {
      // A bug in a parser callback (delivering a body chunk, say): this connection ends, never the process.
      this.#internalError(err, this.#bodyOf?.res ?? null);
      return;
    }
    if (inBody && this.#bodyOf !== null && rc === HPE_OK) {
      // Reads made entirely inside a body: framing beyond the data is bounded (chunk extensions
      // are otherwise unbounded bytes the body limit never sees; node:http caps them too,
      // CVE-2024-22019): 16 KiB, plus 8 bytes per data byte, which one-byte chunks stay under.
      this.#bodyRead += chunk.length;
      if (this.#bodyRead - this.#bodyData > MAX_FRAMING_BYTES + 8 * this.#bodyData) {
        this.#userError = 'HPE_CHUNK_EXTENSIONS_OVERFLOW';
        this.#parseError(-1);
        return;
      }
    }
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- the parser's callbacks may halt
    while (rc === HPE_PAUSED_UPGRADE && !this.#halted) {
      // CONNECT: the bytes after its head would be a tunnel; the connection ends after the answer.
      if (this.#connect) {
        this.#halted = true;
        return;
      }
      // Upgrade (e.g. websocket): not offered, so the request is served as a plain one, like
      // node:http does without an 'upgrade' listener.
      const rest = chunk.subarray(this.parser.consumed);
      this.parser.resumeAfterUpgrade();
      if (rest.length === 0) return;
      chunk = rest;
      try {
        rc = this.parser.execute(chunk);
      } catch (err) {
        this.#internalError(err, this.#bodyOf?.res ?? null);
        return;
      }
    }
    if (rc !== HPE_OK && rc !== HPE_PAUSED_UPGRADE) this.#parseError(rc);
  }

  #parseError(rc: number): void {
    if (this.#halted || this.socket.destroyed) return;
    this.#halted = true;
    const code = this.#userError ?? llhttpErrorName(rc);
    const late = this.#bodyOf;
    const err = this.#clientError(code, `HTTP/1.1 request rejected by the parser (${code})`, late);
    if (late !== null) this.#failBody(late, err);
    else this.#fail(err);
  }

  /** The error for the message being read, with what its request line said once that was read. */
  #clientError(code: string, message: string, late: H1Request | null): H1ClientError {
    if (late !== null) return requestError(code, message, late.method, late.url);
    if (!this.#lineRead) return requestError(code, message);
    return requestError(code, message, this.parser.method(), this.#url);
  }

  /**
   * An exception in request handling (the pipeline guards its own stages; this is for what lies
   * outside them): nothing more is read here, the hook answers `res` (500, or a cut) and the
   * connection ends after it.
   */
  #internalError(err: unknown, res: H1Response | null): void {
    this.#halted = true;
    const hook = this.server.hooks.onInternalError;
    if (hook !== undefined) {
      try {
        hook(err, res);
      } catch {
        // The hook itself failed: cutting the connection is all that is left.
      }
    }
    if (res === null || !res.closeConnection) this.socket.destroy();
  }

  /**
   * A body that turned out malformed or too slow: answered on the raw socket if its request is
   * the one being answered and nothing went out yet (as node:http did; the forwarded request is
   * cut when the connection closes). Otherwise a second answer would desynchronise the client:
   * just close.
   */
  #failBody(late: H1Request, err: H1ClientError): void {
    if (late.res !== null && this.active === late.res && !late.res.headersSent) this.server.hooks.onClientError(err, this.socket);
    else this.socket.destroy();
  }

  /** Answer a bad request on the raw socket, after any responses still owed on this connection. */
  #fail(err: H1ClientError): void {
    if (this.active !== null) this.#pendingError = err;
    else this.server.hooks.onClientError(err, this.socket);
  }

  #limitExceeded(code: string): number {
    this.#userError = code;
    return -1;
  }

  // ---- llhttp callbacks ---------------------------------------------------------------------

  onMessageBegin(): number {
    if (this.#halted) return -1;
    this.msgStart = performance.now();
    this.#headersDone = false;
    this.#lineRead = false;
    this.#url = '';
    this.#headers.take();
    this.#headerBytes = 0;
    return 0;
  }

  onUrl(part: string): number {
    this.#url += part;
    this.#headerBytes += part.length;
    return this.#headerBytes > this.server.limits.maxHeaderSize ? this.#limitExceeded('HPE_HEADER_OVERFLOW') : 0;
  }

  onHeaderField(part: string): number {
    this.#lineRead = true;
    const headers = this.#headers;
    // node:http's maxHeadersCount was set to maxHeaders + 4 pairs; past it is a 431.
    if (headers.atName && headers.list.length >= (this.server.limits.maxHeaders + 4) * 2) return this.#limitExceeded('HPE_HEADER_OVERFLOW');
    headers.name(part);
    this.#headerBytes += part.length + 4;
    return this.#headerBytes > this.server.limits.maxHeaderSize ? this.#limitExceeded('HPE_HEADER_OVERFLOW') : 0;
  }

  onHeaderValue(part: string): number {
    this.#headers.value(part);
    this.#headerBytes += part.length;
    return this.#headerBytes > this.server.limits.maxHeaderSize ? this.#limitExceeded('HPE_HEADER_OVERFLOW') : 0;
  }

  onHeadersComplete(upgrade: boolean, keepAlive: boolean): number {
    if (this.#halted) return -1;
    this.#headersDone = true;
    this.#lineRead = true;
    const p = this.parser;
    if (p.httpMajor() !== 1) return this.#limitExceeded('HPE_INVALID_VERSION');
    const method = p.method();
    if (upgrade && method === 'CONNECT') this.#connect = true;
    // Trailers (chunked bodies) get their own array and budget; the request's headers stay as dispatched.
    const req = new H1Request(this.socket, method, this.#url, this.#headers.take(), p.httpMinor(), keepAlive && !this.#connect);
    this.#headerBytes = 0;
    // RFC 9112 6.1: a request body framed by anything but `chunked` alone (an unknown or stacked
    // coding, a quoted or empty value, or any coding on HTTP/1.0, whose framing that makes faulty)
    // is a 400 and the connection closes. Judged here, before the head reaches the pipeline:
    // llhttp refuses some of these only after this callback returns, and passes `gzip, chunked`,
    // whose coding the sidecar would drop when it re-frames the body for the app.
    const te = req.headers['transfer-encoding'];
    if (te !== undefined && (req.httpVersionMinor === 0 || !chunkedOnly(te))) return this.#limitExceeded('HPE_INVALID_TRANSFER_ENCODING');
    const res = new H1Response(this, req);
    if (req.hasBody) {
      req.body = new BodyStream(this);
      this.#bodyOf = req;
      this.#bodyRead = 0;
      this.#bodyData = 0;
      this.#arrive(res);
    } else {
      this.#noBody = res;
    }
    return 0;
  }

  onBody(chunk: Buffer): number {
    this.#bodyData += chunk.length;
    const body = this.#bodyOf?.body;
    if (body == null || body.destroyed) return 0;
    if (!body.push(chunk)) {
      this.#bodyBlocked = true;
      this.#flow();
    }
    return 0;
  }

  onMessageComplete(): number {
    this.msgStart = 0;
    const req = this.#bodyOf;
    if (req !== null) {
      this.#bodyOf = null;
      req.complete = true;
      if (req.body !== null && !req.body.destroyed) req.body.push(null);
      this.#bodyBlocked = false;
      this.#flow();
    } else {
      const res = this.#noBody;
      this.#noBody = null;
      if (res !== null) {
        res.req.complete = true;
        this.#arrive(res);
      }
    }
    return this.#halted ? -1 : 0;
  }

  // ---- requests and responses ---------------------------------------------------------------

  #arrive(res: H1Response): void {
    if (this.#halted) return;
    if (this.active === null) {
      this.#start(res);
      return;
    }
    // Pipelined behind the request being answered; reading stops until the queue is empty.
    if (this.#waiting.length >= this.server.limits.pipelineDepth) {
      this.#halted = true;
      this.#done = true;
      this.socket.destroy();
      return;
    }
    this.#waiting.push(res);
    this.#flow();
  }

  #start(res: H1Response): void {
    this.active = res;
    try {
      this.server.hooks.onRequest(res.req, res);
    } catch (err) {
      // A bug in a stage: answered and logged by the hook, this connection ends; never the process.
      this.#internalError(err, res);
    }
  }

  /** Called by H1Response.end() once its last bytes are handed to the socket. */
  responseEnded(res: H1Response): void {
    // Answered before its body was all read (an early answer, an upstream that gave up): the rest
    // is read and dropped, as node:http dumps it, so the next request on the connection is reached.
    const body = res.req.body;
    if (body !== null && !res.req.complete && !res.closeConnection) {
      body.unpipe();
      body.resume();
    }
    if (res.closeConnection) {
      this.#halted = true;
      this.#done = true;
      const s = this.socket;
      // node:http's destroySoon: end, then destroy once the answer is written out.
      s.end();
      if (s.writableFinished) s.destroy();
      else s.once('finish', () => s.destroy());
    }
    process.nextTick(finishResponse, this, res);
  }

  /** After 'finish'/'close' of the active response: start the next one. */
  next(res: H1Response): void {
    if (this.active !== res) return;
    this.active = null;
    // The answer closed the connection: what was pipelined behind it is not answered, and a
    // pending 400/408 is not written after it (it would only cut the answer's last bytes).
    if (this.socket.destroyed || this.#done) return;
    // Requests already queued are answered, in order, before a later request's parse error.
    const n = this.#waiting.shift();
    if (n !== undefined) {
      this.#flow();
      this.#start(n);
      return;
    }
    const err = this.#pendingError;
    if (err !== null) {
      this.#pendingError = null;
      this.server.hooks.onClientError(err, this.socket);
    }
  }

  bodyWanted(): void {
    if (!this.#bodyBlocked) return;
    this.#bodyBlocked = false;
    this.#flow();
  }

  #flow(): void {
    const pause = this.#waiting.length > 0 || this.#bodyBlocked;
    if (pause === this.#paused) return;
    this.#paused = pause;
    if (pause) {
      this.socket.pause();
    } else {
      this.socket.resume();
      // Reading was held by us, not by the client: its message's time starts again now.
      if (this.msgStart !== 0) this.msgStart = performance.now();
    }
  }

  /** The periodic sweep: headersTimeout and requestTimeout (idle is the socket's own timeout). */
  check(now: number, l: H1Limits): void {
    // Not while reading is held for the queue: the client cannot be sending then.
    if (this.socket.destroyed || this.msgStart === 0 || this.#halted || this.#waiting.length > 0) return;
    const age = now - this.msgStart;
    if (age > l.requestTimeoutMs || (!this.#headersDone && age > l.headersTimeoutMs)) this.#timeout();
  }

  #timeout(): void {
    this.#halted = true;
    const late = this.#bodyOf;
    const err = this.#clientError('ERR_HTTP_REQUEST_TIMEOUT', 'request not received within the time limit', late);
    if (late !== null) this.#failBody(late, err);
    else this.#fail(err);
  }

  #onClose(): void {
    this.#halted = true;
    this.#done = true;
    this.server.forget(this);
    const a = this.active;
    if (a !== null) a.socketClosed();
    for (const w of this.#waiting) w.socketClosed();
    this.#waiting.length = 0;
    const body = this.#bodyOf?.body;
    // A reader (the upstream client) learns the body is cut short; with none listening an error would be uncaught.
    if (body != null && !body.destroyed) body.destroy(body.listenerCount('error') > 0 ? requestError('ECONNRESET', 'client connection closed mid-body') : undefined);
    this.parser.free();
  }
}

const MAX_FRAMING_BYTES = 16 * 1024;

function ignore(): void {}

function finishResponse(conn: H1Connection, res: H1Response): void {
  res.emitFinished();
  conn.next(res);
}

/** The request body, when the request has one (Content-Length > 0 or chunked). */
class BodyStream extends Readable {
  readonly #conn: H1Connection;
  constructor(conn: H1Connection) {
    super();
    this.#conn = conn;
  }
  override _read(): void {
    this.#conn.bodyWanted();
  }
  /** Its reader gave up (the upstream client after an error or an early answer): the rest is read and dropped, not left blocking the connection. */
  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.#conn.bodyWanted();
    cb(err);
  }
}

export class H1Request implements InboundRequest {
  readonly protocol = 'HTTP/1.1';
  readonly httpVersionMinor: number;
  readonly method: string;
  readonly url: string;
  readonly rawHeaders: string[];
  readonly headers: IncomingHttpHeaders;
  readonly socket: TLSSocket;
  /** llhttp's verdict: HTTP/1.1 without `Connection: close`, or HTTP/1.0 with `keep-alive`. */
  readonly keepAlive: boolean;
  readonly hasBody: boolean;
  readonly expectContinue: boolean;
  body: BodyStream | null = null;
  complete = false;
  res: H1Response | null = null;

  get connection(): TLSSocket {
    return this.socket;
  }
  get hostRequired(): boolean {
    return this.httpVersionMinor === 1;
  }
  /** Answered before its body was all read, the rest still has to come off the connection. */
  get bodyHoldsConnection(): boolean {
    return this.hasBody && !this.complete;
  }
  /** The listener's sweep applies requestTimeout to the whole message. */
  get bodyTimeLimited(): boolean {
    return true;
  }

  constructor(socket: TLSSocket, method: string, url: string, raw: string[], minor: number, keepAlive: boolean) {
    this.socket = socket;
    this.method = method;
    this.url = url;
    this.rawHeaders = raw;
    this.httpVersionMinor = minor;
    this.keepAlive = keepAlive;
    // As node:http builds req.headers: lower-case names; repeats joined, or the first kept.
    const h: IncomingHttpHeaders = {};
    for (let i = 0; i + 1 < raw.length; i += 2) {
      const name = (raw[i] as string).toLowerCase();
      const value = raw[i + 1] as string;
      const prev = h[name];
      if (prev === undefined) h[name] = name === 'set-cookie' ? [value] : value;
      else if (name === 'set-cookie') (prev as string[]).push(value);
      else if (name === 'cookie') h[name] = `${prev as string}; ${value}`;
      else if (!FIRST_WINS.has(name)) h[name] = `${prev as string}, ${value}`;
    }
    this.headers = h;
    const cl = h['content-length'];
    this.hasBody = h['transfer-encoding'] !== undefined || (cl !== undefined && cl !== '0');
    const expect = h['expect'];
    this.expectContinue = expect !== undefined && expect.toLowerCase() === '100-continue';
  }

  bodyStream(): BodyStream | null {
    return this.body;
  }

  pipe<T extends Writable>(dest: T): T {
    if (this.body !== null) return this.body.pipe(dest);
    dest.end();
    return dest;
  }

  resume(): this {
    this.body?.resume();
    return this;
  }

  once(event: 'end', fn: () => void): this {
    if (this.body !== null) this.body.once(event, fn);
    else process.nextTick(fn);
    return this;
  }
}

// ---- responses --------------------------------------------------------------------------------

let statusCodes: Readonly<Record<number, string | undefined>> | null = null;
const statusLines: string[] = [];

function statusLine(status: number): string {
  let line = statusLines[status];
  if (line === undefined) {
    // node:http through getBuiltinModule: its ESM namespace would evaluate lazy getters that load Node's bundled undici.
    statusCodes ??= process.getBuiltinModule('node:http').STATUS_CODES;
    line = `HTTP/1.1 ${status} ${statusCodes[status] ?? 'Unknown'}\r\n`;
    if (status >= 100 && status < 600) statusLines[status] = line;
  }
  return line;
}

/** `date:` for responses that have none (node:http's sendDate), formatted once per second. */
let dateValue = '';
let dateUntil = 0;
function httpDate(): string {
  const now = Date.now();
  if (now >= dateUntil) {
    dateValue = new Date(now).toUTCString();
    dateUntil = now - (now % 1000) + 1000;
  }
  return dateValue;
}

/** A value that would end the header line early cannot be written (node:http throws ERR_INVALID_CHAR). */
const UNSAFE_VALUE = /[\r\n\0]/;
/** Body chunks up to this size go out in one buffer with the head; larger ones are written separately. */
const COALESCE_MAX = 16 * 1024;

type Listener = () => void;

export class H1Response implements OutboundResponse {
  readonly req: H1Request;
  /** As on Node's response objects: 200 until a head is written. */
  statusCode = 200;
  /** The connection ends after this response (requested, HTTP/1.0 without keep-alive, or a close-delimited body). */
  closeConnection = false;
  /** disableKeepAlive() was called: the head says `Connection: close`. */
  #closeAsked = false;
  readonly #conn: H1Connection;
  readonly #socket: TLSSocket;
  /** The head, until it goes out with the first body bytes. */
  #head: string | null = null;
  #headersSent = false;
  #chunked = false;
  #noBody = false;
  #sentContinue = false;
  #ended = false;
  #destroyed = false;
  #closed = false;
  #onClose: Listener[] | null = null;
  #onFinish: Listener[] | null = null;
  #onDrain: Listener[] | null = null;
  #onDrainOnce: Listener[] | null = null;

  constructor(conn: H1Connection, req: H1Request) {
    this.#conn = conn;
    this.#socket = conn.socket;
    this.req = req;
    req.res = this;
  }

  get headersSent(): boolean {
    return this.#headersSent;
  }
  get writableEnded(): boolean {
    return this.#ended;
  }
  get destroyed(): boolean {
    return this.#destroyed;
  }

  writeHead(status: number, headers?: Record<string, string | string[] | number>): this {
    if (this.#headersSent || this.#destroyed) return this;
    this.#headersSent = true;
    this.statusCode = status;
    const req = this.req;
    let head = statusLine(status);
    let hasLength = false;
    let hasDate = false;
    let connection = false;
    // A client told to wait for 100 Continue that never got it may still send its body, or not:
    // the connection cannot be reused either way (as in node:http).
    let close = this.#closeAsked || !req.keepAlive || (req.expectContinue && !this.#sentContinue);
    if (headers !== undefined) {
      for (const name in headers) {
        const v = headers[name];
        if (v === undefined) continue;
        let value: string;
        if (typeof v === 'object') {
          // Repeated fields, one line each; the framing fields below judged on the first.
          let first: string | undefined;
          for (const x of v) {
            if (UNSAFE_VALUE.test(x)) continue;
            head += `${name}: ${x}\r\n`;
            first ??= x;
          }
          if (first === undefined) continue;
          value = first;
        } else {
          value = typeof v === 'number' ? String(v) : v;
          if (UNSAFE_VALUE.test(value)) continue;
          head += `${name}: ${value}\r\n`;
        }
        switch (name) {
          case 'content-length':
            hasLength = true;
            break;
          case 'date':
            hasDate = true;
            break;
          case 'connection':
            connection = true;
            if (value.toLowerCase() === 'close') close = true;
            break;
        }
      }
    }
    this.#noBody = req.method === 'HEAD' || status === 204 || status === 304 || status < 200;
    if (!this.#noBody && !hasLength) {
      if (req.httpVersionMinor >= 1) {
        head += 'transfer-encoding: chunked\r\n';
        this.#chunked = true;
      } else {
        close = true; // HTTP/1.0: the end of the body is the end of the connection
      }
    }
    if (close) {
      this.closeConnection = true;
      if (!connection) head += 'connection: close\r\n';
    } else if (req.httpVersionMinor === 0 && !connection) {
      head += 'connection: keep-alive\r\n';
    }
    if (!hasDate) head += `date: ${httpDate()}\r\n`;
    this.#head = `${head}\r\n`;
    return this;
  }

  write(chunk: Buffer | string): boolean {
    if (this.#ended || this.#destroyed) return false;
    if (!this.#headersSent) this.writeHead(this.statusCode);
    const s = this.#socket;
    const head = this.#head;
    const len = typeof chunk === 'string' ? Buffer.byteLength(chunk) : chunk.length;
    if (this.#noBody || len === 0) {
      if (head === null) return true;
      this.#head = null;
      return s.write(head, 'latin1');
    }
    if (this.#chunked) {
      s.cork();
      s.write(head === null ? `${len.toString(16)}\r\n` : `${head}${len.toString(16)}\r\n`, 'latin1');
      this.#head = null;
      s.write(chunk);
      const ok = s.write('\r\n', 'latin1');
      s.uncork();
      return ok;
    }
    if (head === null) return s.write(chunk);
    this.#head = null;
    if (typeof chunk !== 'string' && len <= COALESCE_MAX) {
      // One buffer, one TLS record for a small response.
      const headLen = head.length;
      const buf = Buffer.allocUnsafe(headLen + len);
      buf.write(head, 0, headLen, 'latin1');
      chunk.copy(buf, headLen);
      return s.write(buf);
    }
    s.cork();
    s.write(head, 'latin1');
    const ok = s.write(chunk);
    s.uncork();
    return ok;
  }

  end(chunk?: Buffer | string): this {
    if (this.#ended || this.#destroyed) return this;
    if (chunk !== undefined) this.write(chunk);
    else if (!this.#headersSent) this.writeHead(this.statusCode);
    const head = this.#head;
    this.#head = null;
    if (this.#chunked) this.#socket.write(head === null ? '0\r\n\r\n' : `${head}0\r\n\r\n`, 'latin1');
    else if (head !== null) this.#socket.write(head, 'latin1');
    this.#ended = true;
    this.#conn.responseEnded(this);
    return this;
  }

  writeContinue(): void {
    // RFC 9110 15.2: no 1xx to an HTTP/1.0 client.
    if (this.#headersSent || this.#destroyed || this.#sentContinue || this.req.httpVersionMinor === 0) return;
    this.#sentContinue = true;
    this.#socket.write('HTTP/1.1 100 Continue\r\n\r\n', 'latin1');
  }

  disableKeepAlive(): void {
    this.#closeAsked = true;
  }

  endConnectionAfter(): void {
    this.#closeAsked = true;
  }

  /** HTTP/1.1 has no per-request reset: the connection goes. */
  destroy(): this {
    if (this.#destroyed) return this;
    this.#destroyed = true;
    this.#socket.destroy();
    return this;
  }

  on(event: 'close' | 'finish' | 'drain', fn: Listener): this {
    if (event === 'close') (this.#onClose ??= []).push(fn);
    else if (event === 'finish') (this.#onFinish ??= []).push(fn);
    else (this.#onDrain ??= []).push(fn);
    return this;
  }

  /** 'close' and 'finish' fire at most once, so once() is on(). */
  once(event: 'close' | 'finish' | 'drain', fn: Listener): this {
    if (event === 'drain') (this.#onDrainOnce ??= []).push(fn);
    else this.on(event, fn);
    return this;
  }

  emitDrain(): void {
    const once = this.#onDrainOnce;
    this.#onDrainOnce = null;
    if (this.#onDrain !== null) for (const fn of this.#onDrain) fn();
    if (once !== null) for (const fn of once) fn();
  }

  /** The response was written out in full. */
  emitFinished(): void {
    const fns = this.#onFinish;
    this.#onFinish = null;
    if (fns !== null) for (const fn of fns) fn();
    this.#emitClose();
  }

  /** The connection closed under this response (or before it started). */
  socketClosed(): void {
    if (!this.#ended) this.#destroyed = true;
    this.#emitClose();
  }

  #emitClose(): void {
    if (this.#closed) return;
    this.#closed = true;
    const fns = this.#onClose;
    this.#onClose = null;
    if (fns !== null) for (const fn of fns) fn();
  }
}
