/**
 * HTTP/2 requests on node:http2's core `stream` API instead of its compatibility layer. The
 * compat layer builds an Http2ServerRequest/Http2ServerResponse pair, re-processes the headers
 * and bridges every event for each stream; measured on the bench's HTTP/2 scenario a bare
 * proxy gets ~35 % more requests per second without it. These two small classes give the
 * pipeline the same slice of request/response it uses for HTTP/1.1 (transport/types.ts), backed
 * directly by the ServerHttp2Stream.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { Http2Session, OutgoingHttpHeaders, ServerHttp2Stream } from 'node:http2';
import type { Writable } from 'node:stream';
import type { InboundRequest, OutboundResponse } from './types.js';
import http2 from 'node:http2';
import { ControlGuard, ResetGuard } from './h2/guard.js';

/** Stream errors (a client's RST_STREAM, a write after reset) end in 'close', which audits the request. */
function ignoreStreamError(): void {}

export class H2Request implements InboundRequest {
  readonly protocol = 'HTTP/2';
  readonly method: string | undefined;
  readonly url: string | undefined;
  readonly headers: IncomingHttpHeaders;
  readonly rawHeaders: string[];
  readonly stream: ServerHttp2Stream;
  /** The streams share the socket. */
  readonly socket = null;
  constructor(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, rawHeaders: string[]) {
    this.stream = stream;
    this.headers = headers;
    this.rawHeaders = rawHeaders;
    const method = headers[':method'];
    const path = headers[':path'];
    this.method = typeof method === 'string' ? method : undefined;
    this.url = typeof path === 'string' ? path : undefined;
    stream.on('error', ignoreStreamError);
  }
  /** The session: it hands out only a Proxy of the TLS socket (server/context.ts finds the state through it once). */
  get connection(): Http2Session | null {
    return this.stream.session ?? null;
  }
  get hostRequired(): boolean {
    return false;
  }
  get hasBody(): boolean {
    return !this.stream.endAfterHeaders;
  }
  get bodyHoldsConnection(): boolean {
    return false;
  }
  get bodyTimeLimited(): boolean {
    return false;
  }
  /** The body is the stream the response is written to: read it through pipe(), never destroy it. */
  bodyStream(): null {
    return null;
  }
  pipe<T extends Writable>(dest: T): T {
    return this.stream.pipe(dest);
  }
  resume(): this {
    this.stream.resume();
    return this;
  }
  once(event: 'end', fn: () => void): this {
    this.stream.once(event, fn);
    return this;
  }
}

export class H2Response implements OutboundResponse {
  readonly req: H2Request;
  /** As on Node's response objects: 200 until a head is written. */
  statusCode = 200;
  readonly #stream: ServerHttp2Stream;
  constructor(req: H2Request) {
    this.req = req;
    this.#stream = req.stream;
  }
  get headersSent(): boolean {
    return this.#stream.headersSent;
  }
  get writableEnded(): boolean {
    return this.#stream.writableEnded;
  }
  get destroyed(): boolean {
    return this.#stream.destroyed;
  }
  /** `headers` is a fresh object built for this response; `:status` is added to it, not copied. */
  writeHead(status: number, headers?: Record<string, string | string[] | number>): this {
    const stream = this.#stream;
    // Like the compat layer: a stream the client already reset takes no head.
    if (stream.destroyed || stream.closed) return this;
    this.statusCode = status;
    const h: OutgoingHttpHeaders = headers ?? {};
    h[':status'] = status;
    stream.respond(h);
    return this;
  }
  write(chunk: Buffer | string): boolean {
    return this.#stream.write(chunk);
  }
  end(chunk?: Buffer | string): this {
    if (chunk === undefined) this.#stream.end();
    else this.#stream.end(chunk);
    return this;
  }
  /** HTTP/2 clients do not wait for 100 (RFC 9113 8.1): nothing is sent. */
  writeContinue(): void {}
  /** Streams are framed apart: an unread body cannot run into another request. */
  disableKeepAlive(): void {}
  /** GOAWAY: the session's open streams finish, no new one starts. */
  endConnectionAfter(): void {
    this.#stream.session?.close();
  }
  destroy(err?: Error): this {
    this.#stream.destroy(err);
    return this;
  }
  on(event: 'close' | 'finish' | 'drain', fn: () => void): this {
    this.#stream.on(event, fn);
    return this;
  }
  once(event: 'close' | 'finish' | 'drain', fn: () => void): this {
    this.#stream.once(event, fn);
    return this;
  }
}

// ---- the node:http2 engine's flood guards and stream listener (transport/listener.ts installs them) ----

/** Per session: its reset accounting (transport/h2/guard.ts). */
interface ResetCounts {
  readonly session: http2.ServerHttp2Session;
  readonly guard: ResetGuard;
}
const kResetCounts = Symbol('resetCounts');
/** The counts ride on the stream: stream.session is gone by the time 'close' fires. */
type CountedStream = http2.ServerHttp2Stream & { [kResetCounts]?: ResetCounts };

/** One shared listener (no closure per stream): 'close' comes once per stream. */
function countStreamClose(this: CountedStream): void {
  const c = this[kResetCounts];
  if (c === undefined) return;
  // A closed stream someone still holds must not keep its session alive through the counts.
  this[kResetCounts] = undefined;
  // Completed: closed cleanly after its whole response. A client's RST_STREAM NO_ERROR before
  // that is a reset like any other (it still cost an upstream request).
  // (Node ends the writable side of a reset stream too; `aborted` tells the two apart.)
  if (this.rstCode === http2.constants.NGHTTP2_NO_ERROR && !this.aborted) {
    c.guard.completed();
    return;
  }
  if (c.guard.strike(Date.now()) && !c.session.destroyed) {
    c.session.destroy(new Error('rapid reset: too many streams reset by the peer'), http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
  }
}

function countStream(this: ResetCounts, stream: CountedStream): void {
  stream[kResetCounts] = this;
  stream.on('close', countStreamClose);
}

/**
 * Rapid reset (CVE-2023-44487): every stream a client opens is authorized and forwarded to the
 * app at once, so a client that opens and resets streams in a loop turns each RST_STREAM into
 * an upstream request that is started and then aborted, without ever holding a concurrency
 * slot. Node/nghttp2 only trip on extreme bursts. Like Envoy's premature-reset guard
 * (overload.premature_reset_total_stream_count), a session whose peer has reset at least
 * RAPID_RESET_MIN streams, and more streams than it let complete, gets GOAWAY
 * ENHANCE_YOUR_CALM and is closed. A stream counts as reset when it closed before its response
 * was finished, whatever the RST_STREAM code (NO_ERROR included).
 * The own HTTP/2 implementation (transport/h2/session.ts) applies the same rule and also counts
 * streams it refused and stream errors the client provoked.
 */
export function guardRapidReset(session: http2.ServerHttp2Session): void {
  const counts: ResetCounts = { session, guard: new ResetGuard() };
  session.on('stream', countStream.bind(counts));
}

/**
 * PING and SETTINGS floods (SPEC §4; CVE-2019-9512, CVE-2019-9515). Node and nghttp2 only stop a
 * flood whose ACKs pile up unsent (a client that does not read). A client that reads its ACKs can
 * keep a core busy with them indefinitely. More than CONTROL_FRAMES_PER_SECOND PING or SETTINGS
 * frames on one session within a second gets GOAWAY ENHANCE_YOUR_CALM and the session closed.
 * Keep-alive pings come every few seconds and SETTINGS a handful of times per connection; gRPC's
 * BDP pings are one in flight at a time: all far below the bound.
 */
export function guardControlFlood(session: http2.ServerHttp2Session): void {
  const guard = new ControlGuard();
  const onFrame = (): void => {
    if (guard.frame(Date.now()) && !session.destroyed) {
      session.destroy(new Error('PING/SETTINGS flood'), http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
    }
  };
  session.on('ping', onFrame);
  session.on('remoteSettings', onFrame);
}

/** What the stream listener needs of the listener's hooks (transport/listener.ts: ListenerHooks). */
export interface NodeStreamHooks {
  onRequest(req: InboundRequest, res: OutboundResponse): void;
  onInternalError(err: unknown, where: 'h2', res: OutboundResponse | null): void;
}

/**
 * HTTP/2 requests go to the pipeline as H2Request/H2Response (above), not through the
 * compat layer, which node:http2 only sets up for a 'request' listener (none is added). Start-up
 * fails loudly if a future Node adds a 'stream' listener of its own (every stream would otherwise
 * be answered twice).
 */
export function useStreamApi(server: http2.Http2SecureServer, hooks: NodeStreamHooks): void {
  if (server.listenerCount('stream') !== 0) throw new Error('unexpected HTTP/2 stream listeners: cannot bypass the compat layer');
  server.on('stream', (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, _flags: number, rawHeaders: string[]) => {
    let res: H2Response | null = null;
    try {
      const req = new H2Request(stream, headers, rawHeaders);
      res = new H2Response(req);
      hooks.onRequest(req, res);
    } catch (err) {
      // Thrown out of a 'stream' listener, it would be an uncaught exception: the process.
      hooks.onInternalError(err, 'h2', res);
      if (res === null && !stream.destroyed) stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
    }
  });
}
