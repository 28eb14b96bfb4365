/**
 * The HTTP/1.1 response serializer: the head as one string, written out with the first body bytes;
 * a body framed by its Content-Length, chunked, or (HTTP/1.0) by the connection's end; and the
 * connection (connection.ts) told when a response has ended.
 */
import type { Socket } from 'node:net';
import type { OutboundResponse } from '../types.js';
import type { H1Request } from './request.js';

/** What a response asks of its connection (connection.ts's H1Connection; an interface, so no import cycle). */
export interface ResponseConnection {
  readonly socket: Socket;
  /** Called by end() once the response's last bytes are handed to the socket. */
  responseEnded(res: H1Response): void;
}

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
  readonly #conn: ResponseConnection;
  readonly #socket: Socket;
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

  constructor(conn: ResponseConnection, req: H1Request) {
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
