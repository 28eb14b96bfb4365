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
