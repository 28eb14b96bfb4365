/**
 * An HTTP/1.1 request as the pipeline sees it (transport/types.ts): the head the connection read
 * (connection.ts), and the body as a stream of its own when there is one.
 */
import { Readable } from 'node:stream';
import type { Writable } from 'node:stream';
import type { IncomingHttpHeaders } from 'node:http';
import type { Socket } from 'node:net';
import type { InboundRequest, OutboundResponse } from '../types.js';

/** What a body stream asks of its connection (connection.ts's H1Connection; an interface, so no import cycle). */
export interface BodySource {
  bodyWanted(): void;
}

/** The response answering a request (response.ts's H1Response), as the connection reads it back through the request. */
export interface H1Answer extends OutboundResponse {
  /** The connection ends after this response. */
  readonly closeConnection: boolean;
}

/** Headers node:http keeps the first of (duplicates are refused by the pipeline where it matters). */
const FIRST_WINS = new Set([
  'age', 'authorization', 'content-length', 'content-type', 'etag', 'expires', 'from', 'host', 'if-modified-since',
  'if-unmodified-since', 'last-modified', 'location', 'max-forwards', 'proxy-authorization', 'referer', 'retry-after',
  'server', 'user-agent',
]);

/** The request body, when the request has one (Content-Length > 0 or chunked). */
export class BodyStream extends Readable {
  readonly #conn: BodySource;
  constructor(conn: BodySource) {
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
  readonly socket: Socket;
  /** llhttp's verdict: HTTP/1.1 without `Connection: close`, or HTTP/1.0 with `keep-alive`. */
  readonly keepAlive: boolean;
  readonly hasBody: boolean;
  readonly expectContinue: boolean;
  body: BodyStream | null = null;
  complete = false;
  res: H1Answer | null = null;

  get connection(): Socket {
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

  constructor(socket: Socket, method: string, url: string, raw: string[], minor: number, keepAlive: boolean) {
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
