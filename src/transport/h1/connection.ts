/**
 * One TLS connection speaking HTTP/1.1: llhttp's parser events (http1/llhttp.ts) build the
 * requests (request.ts), pipelined requests wait their turn behind the one being answered
 * (response.ts), and reading pauses while a body's reader is behind or requests are queued.
 */
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { HeaderPairs, HPE_OK, HPE_PAUSED_UPGRADE, RequestParser, llhttpErrorName } from '../../http1/llhttp.js';
import type { ParserEvents } from '../../http1/llhttp.js';
import { BodyStream, H1Request } from './request.js';
import type { H1Answer } from './request.js';
import { H1Response } from './response.js';

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
  onClientError(err: H1ClientError, socket: Socket): void;
  /**
   * A bug (an exception) in request handling: `res` is the request being answered, or null when
   * the parse itself broke. The hook answers it (500, or a cut); the connection then ends, the
   * process and every other connection go on. Without a hook the connection is cut.
   */
  onInternalError?: (err: unknown, res: H1Answer | null) => void;
}

/** What a connection asks of its listener's HTTP/1.1 side (server.ts's H1Server; an interface, so no import cycle). */
export interface ConnectionOwner {
  readonly limits: H1Limits;
  readonly hooks: H1Hooks;
  forget(conn: H1Connection): void;
}

function requestError(code: string, message: string, method = '', target = ''): H1ClientError {
  return Object.assign(new Error(message), { code, method, target });
}

/** RFC 9112 6.1: `chunked`, alone (any case, optional whitespace around it). */
function chunkedOnly(te: string): boolean {
  const v = te.trim();
  return v.length === 7 && v.toLowerCase() === 'chunked';
}

/** One TLS connection speaking HTTP/1.1. */
export class H1Connection implements ParserEvents {
  readonly server: ConnectionOwner;
  readonly socket: Socket;
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

  constructor(server: ConnectionOwner, socket: Socket) {
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
  #internalError(err: unknown, res: H1Answer | null): void {
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
