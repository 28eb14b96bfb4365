/**
 * The pipeline's request/response slice (transport/types.ts) over the sidecar's own HTTP/2 streams
 * (transport/h2/session.ts), behaving as transport/h2-node.ts does over node:http2, so one pipeline serves
 * both: the same head checks, the same refusals, the same audit.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { TLSSocket } from 'node:tls';
import type { Writable } from 'node:stream';
import { CONNECTION_SPECIFIC, E_INTERNAL_ERROR } from './frames.js';
import type { H2ServerStream } from './session.js';
import type { InboundRequest, OutboundResponse } from '../types.js';

/**
 * Fields HTTP/2 allows once in a response head: node:http2 throws on a second value
 * (ERR_HTTP2_HEADER_SINGLE_VALUE), and the pipeline answers 502 for an app response that has one;
 * the same list and the same outcome here.
 */
const SINGLE_VALUE = new Set([
  'access-control-allow-credentials', 'access-control-max-age', 'access-control-request-method', 'age', 'authorization',
  'content-encoding', 'content-language', 'content-length', 'content-location', 'content-md5', 'content-range',
  'content-type', 'date', 'dnt', 'etag', 'expires', 'from', 'host', 'if-match', 'if-modified-since', 'if-none-match',
  'if-range', 'if-unmodified-since', 'last-modified', 'location', 'max-forwards', 'proxy-authorization', 'range',
  'referer', 'retry-after', 'tk', 'upgrade-insecure-requests', 'user-agent', 'x-content-type-options',
]);

export class H2HeadError extends Error {
  readonly code = 'ERR_HTTP2_HEADER_SINGLE_VALUE';
}

function endNow(dest: Writable): void {
  dest.end();
}

export class H2StreamRequest implements InboundRequest {
  readonly protocol = 'HTTP/2';
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingHttpHeaders;
  readonly rawHeaders: string[];
  /** The TLS socket itself: the session holds no Proxy of it. */
  readonly connection: TLSSocket;
  /** The streams share the socket. */
  readonly socket = null;
  readonly hasBody: boolean;
  readonly h2: H2ServerStream;

  constructor(s: H2ServerStream) {
    this.h2 = s;
    this.connection = s.session.socket;
    this.method = s.method;
    this.url = s.path;
    this.hasBody = s.body !== null;
    const raw = [':method', s.method, ':scheme', s.scheme];
    if (s.authority !== null) raw.push(':authority', s.authority);
    raw.push(':path', s.path);
    const f = s.fields;
    const headers: IncomingHttpHeaders = {};
    for (let i = 0; i < f.length; i += 2) {
      const name = f[i]!;
      const value = f[i + 1]!;
      // Cookie crumbs stay separate here, as node:http2 hands them on: the header scan
      // (proxy/headers.ts) joins them for the HTTP/1.1 hop, for both engines.
      raw.push(name, value);
      // As node:http2 builds its header object: repeats joined, cookies with '; ', set-cookie a list.
      const prev = headers[name];
      if (prev === undefined || !Object.hasOwn(headers, name)) headers[name] = name === 'set-cookie' ? [value] : value;
      else if (Array.isArray(prev)) prev.push(value);
      else headers[name] = `${prev}${name === 'cookie' ? '; ' : ', '}${value}`;
    }
    this.rawHeaders = raw;
    this.headers = headers;
  }

  get hostRequired(): boolean {
    return false;
  }
  get bodyHoldsConnection(): boolean {
    return false;
  }
  get bodyTimeLimited(): boolean {
    return false;
  }
  /** The body is read through pipe(): its flow control gives the window back as it is read. */
  bodyStream(): null {
    return null;
  }
  pipe<T extends Writable>(dest: T): T {
    const body = this.h2.body;
    if (body === null) process.nextTick(endNow, dest);
    else body.pipe(dest);
    return dest;
  }
  resume(): this {
    this.h2.body?.resume();
    return this;
  }
  once(event: 'end', fn: () => void): this {
    const body = this.h2.body;
    if (body === null) process.nextTick(fn);
    else body.once(event, fn);
    return this;
  }
}

export class H2StreamResponse implements OutboundResponse {
  readonly req: H2StreamRequest;
  /** As on Node's response objects: 200 until a head is written. */
  statusCode = 200;
  readonly #s: H2ServerStream;
  /** HEAD, 204, 205, 304: the head ends the stream; later writes are dropped (as node:http2 does). */
  #bodiless = false;

  constructor(req: H2StreamRequest) {
    this.req = req;
    this.#s = req.h2;
  }
  get headersSent(): boolean {
    return this.#s.headersSent;
  }
  get writableEnded(): boolean {
    return this.#s.writableEnded;
  }
  get destroyed(): boolean {
    return this.#s.closed;
  }

  writeHead(status: number, headers?: Record<string, string | string[] | number>): this {
    const s = this.#s;
    if (s.closed || s.headersSent) return this;
    const flat: string[] = [];
    if (headers !== undefined) {
      for (const key in headers) {
        const v = headers[key];
        if (v === undefined) continue;
        const name = key.toLowerCase();
        if (CONNECTION_SPECIFIC.has(name)) continue;
        if (Array.isArray(v)) {
          if (v.length > 1 && SINGLE_VALUE.has(name)) throw new H2HeadError(`header ${name} may appear once in an HTTP/2 response`);
          for (const x of v) flat.push(name, x);
        } else flat.push(name, typeof v === 'number' ? String(v) : v);
      }
    }
    this.statusCode = status;
    this.#bodiless = this.req.method === 'HEAD' || status === 204 || status === 205 || status === 304;
    s.respond(status, flat, this.#bodiless);
    return this;
  }

  write(chunk: Buffer | string): boolean {
    if (this.#bodiless) return true;
    return this.#s.write(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
  }

  end(chunk?: Buffer | string): this {
    if (this.#bodiless) return this;
    this.#s.end(chunk === undefined ? undefined : typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
    return this;
  }

  /** HTTP/2 clients do not wait for 100 (RFC 9113 8.1): nothing is sent. */
  writeContinue(): void {}

  /** Streams are framed apart: an unread body cannot run into another request. */
  disableKeepAlive(): void {}

  /** GOAWAY: the session's open streams finish, no new one starts. */
  endConnectionAfter(): void {
    this.#s.session.close();
  }

  /** Cut the stream (a failure after the head went out): RST_STREAM INTERNAL_ERROR. */
  destroy(): this {
    this.#s.reset(E_INTERNAL_ERROR);
    return this;
  }

  on(event: 'close' | 'finish' | 'drain', fn: () => void): this {
    this.#s.on(event, fn);
    return this;
  }
  once(event: 'close' | 'finish' | 'drain', fn: () => void): this {
    this.#s.on(event, fn);
    return this;
  }
}
