/**
 * The slice of request/response the pipeline uses, common to HTTP/1.1 (transport/h1/) and
 * HTTP/2 (transport/h2/exchange.ts over the sidecar's own framing, or transport/h2-node.ts over node:http2's
 * core stream API). The adapters answer the protocol's questions (is there a body, who times it,
 * what ends the connection), so the pipeline never asks which protocol it serves.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { Readable, Writable } from 'node:stream';
import type { Socket } from 'node:net';

export interface InboundRequest {
  readonly method?: string | undefined;
  readonly url?: string | undefined;
  readonly headers: IncomingHttpHeaders;
  readonly rawHeaders: string[];
  /** As the audit line names it (an HTTP/1.0 request is served, and named, as HTTP/1.1). */
  readonly protocol: 'HTTP/1.1' | 'HTTP/2';
  /**
   * The connection, as the object the server keeps its per-connection state on (server/context.ts):
   * the TLS socket, or node:http2's session, which hands out only a Proxy of its socket. Null once
   * node:http2 has let go of the stream's session.
   */
  readonly connection: object | null;
  /**
   * The TLS socket when the request has it to itself (HTTP/1.1: a drain ends it once its last
   * request is answered). Null on HTTP/2, whose streams share it: the session is told to go away instead.
   */
  readonly socket: Socket | null;
  /** A request without Host is malformed: HTTP/1.1 (RFC 9112 3.2). HTTP/1.0 may omit it; HTTP/2 has :authority. */
  readonly hostRequired: boolean;
  /** A body follows the head. */
  readonly hasBody: boolean;
  /**
   * The body is still arriving and the connection must read it before the next request
   * (HTTP/1.1): answered now, its parse error or timeout must not be answered as another request.
   * Never on HTTP/2, whose streams are framed apart.
   */
  readonly bodyHoldsConnection: boolean;
  /** The transport cuts a body not received within requestTimeout itself (HTTP/1.1's sweep); else (HTTP/2) the pipeline does. */
  readonly bodyTimeLimited: boolean;
  /**
   * The body as a stream of its own, which its reader may pause and destroy (HTTP/1.1: destroyed,
   * the rest is read and dropped). Null without a body, or when the body is the response's own
   * stream (HTTP/2): it is then read through `pipe`.
   */
  bodyStream(): Readable | null;
  /** The request body. */
  pipe<T extends Writable>(dest: T): T;
  resume(): unknown;
  once(event: 'end', fn: () => void): unknown;
}

export interface OutboundResponse {
  readonly req: InboundRequest;
  /** 200 until a head is written, then its status (as on Node's response objects). */
  readonly statusCode: number;
  readonly headersSent: boolean;
  readonly writableEnded: boolean;
  readonly destroyed?: boolean;
  writeHead(status: number, headers?: Record<string, string | string[] | number>): unknown;
  write(chunk: Buffer | string): boolean;
  end(chunk?: Buffer | string): unknown;
  /** `Expect: 100-continue` may send its body now (HTTP/2: nothing is sent). */
  writeContinue(): void;
  /**
   * No further request is read on this connection after this response, where requests take turns
   * on it (HTTP/1.1: the head says `Connection: close`, so call it before the head is written).
   * HTTP/2 streams are framed apart and keep nothing alive: nothing to do.
   */
  disableKeepAlive(): void;
  /**
   * The connection ends once this response is out (its trust was withdrawn): HTTP/2 sends the
   * session GOAWAY (open streams finish, no new one starts); HTTP/1.1 as disableKeepAlive().
   */
  endConnectionAfter(): void;
  destroy(err?: Error): unknown;
  on(event: 'close' | 'finish' | 'drain', fn: () => void): unknown;
  once(event: 'close' | 'finish' | 'drain', fn: () => void): unknown;
}
