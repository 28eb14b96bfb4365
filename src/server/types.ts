/**
 * The slice of Node's request/response objects the pipeline uses, common to HTTP/1.1
 * (http.IncomingMessage/ServerResponse) and HTTP/2 compat (Http2ServerRequest/Response).
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { Readable } from 'node:stream';
import type { TLSSocket } from 'node:tls';

export interface InboundRequest extends Readable {
  readonly method?: string | undefined;
  readonly url?: string | undefined;
  readonly headers: IncomingHttpHeaders;
  readonly rawHeaders: string[];
  readonly httpVersionMajor: number;
  readonly socket: TLSSocket | null;
  readonly stream?: { readonly session?: { readonly socket: TLSSocket } | undefined; readonly endAfterHeaders?: boolean };
}

export interface OutboundResponse {
  readonly req: InboundRequest;
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
