/**
 * The slice of request/response the pipeline uses, common to HTTP/1.1 (transport/h1.ts) and
 * HTTP/2 (transport/h2/exchange.ts over the sidecar's own framing, or transport/h2-node.ts over node:http2's
 * core stream API).
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { Readable, Writable } from 'node:stream';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';

export interface InboundRequest {
  readonly method?: string | undefined;
  readonly url?: string | undefined;
  readonly headers: IncomingHttpHeaders;
  readonly rawHeaders: string[];
  readonly httpVersionMajor: number;
  readonly socket: TLSSocket | null;
  readonly stream?: { readonly session?: { readonly socket: Socket } | undefined; readonly endAfterHeaders?: boolean };
  /** HTTP/1.x: 0 or 1. */
  readonly httpVersionMinor?: number;
  /** HTTP/1.1: the body as a stream, when the request has one (Content-Length > 0 or chunked). */
  readonly body?: Readable | null;
  /** HTTP/1.1: the whole message (body included) has been read. */
  readonly complete?: boolean;
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
  writeContinue(): void;
  destroy(err?: Error): unknown;
  on(event: 'close' | 'finish' | 'drain', fn: () => void): unknown;
  once(event: 'close' | 'finish' | 'drain', fn: () => void): unknown;
}
