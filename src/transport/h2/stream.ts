/**
 * One stream of the own HTTP/2 server (session.ts): its state, its request body and its response.
 * The stream reaches its connection only through StreamHost, which H2Session implements, so this
 * module does not import the session.
 */
import { Readable } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { encodeResponseHead } from './hpack.js';
import type { RequestHead } from './head.js';
import {
  E_CANCEL, E_FLOW_CONTROL_ERROR, E_NO_ERROR, E_PROTOCOL_ERROR, FRAME_HEADER, F_END_HEADERS, F_END_STREAM, MAX_WINDOW,
  T_CONTINUATION, T_DATA, T_HEADERS, T_WINDOW_UPDATE, frame, u32Frame, writeFrameHeader,
} from './frames.js';

// Stream states (RFC 9113 5.1), as bits: what each side may still send.
export const REMOTE_OPEN = 1;
export const LOCAL_OPEN = 2;

type Listener = () => void;

/** What a stream needs from its connection (H2Session). */
export interface StreamHost {
  /** The connection's socket: the request finds its connection (ConnInfo) through it. */
  readonly socket: TLSSocket;
  /** The peer's SETTINGS_MAX_FRAME_SIZE. */
  readonly peerMaxFrame: number;
  /** Queues a frame for this turn's write. */
  sendFrame(buf: Buffer): void;
  sendRst(sid: number, code: number): void;
  /** `n` bytes of request body were read, or left unread by a stream that closed: connection window credit. */
  consumed(n: number): void;
  /** Up to `want` bytes of connection send window, as the socket allows now. */
  take(want: number): number;
  /** `stream` has DATA waiting for window or the socket: sendPending() when they open. */
  block(stream: H2ServerStream): void;
  /** `stream` is closed both ways; `completed`: its response went out whole. */
  streamClosed(stream: H2ServerStream, completed: boolean): void;
  /** GOAWAY: open streams finish, no new one starts (a connection whose trust was withdrawn). */
  close(): void;
}

/**
 * One request/response exchange. The request head is read once (head.ts: readHead); its body,
 * when it has one, is a Readable whose reading opens the stream's receive window. The response goes out with
 * respond/write/end under the peer's windows, and 'drain' says when a write that returned false
 * may go on.
 */
export class H2ServerStream implements RequestHead {
  readonly session: StreamHost;
  readonly id: number;
  state = REMOTE_OPEN | LOCAL_OPEN;
  method = '';
  path = '';
  scheme = '';
  authority: string | null = null;
  /** Regular request fields, flat [name, value, ...], lower-case names as received. */
  fields: string[] = [];
  /** Declared content-length, or -1. */
  contentLength = -1;
  /** The request body, when the request has one (HEADERS without END_STREAM). */
  body: Readable | null = null;
  headersSent = false;
  #received = 0;
  #recvWindow: number;
  readonly #recvInitial: number;
  /** Body bytes received, and how many of them went back to the peer's windows. */
  #pushed = 0;
  #credited = 0;
  /** Padding received and not yet given back to the stream window. */
  #padding = 0;
  #sendWindow: number;
  /** Response bytes waiting for window, and whether end() came after them. */
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  #ending = false;
  #needDrain = false;
  #closed = false;
  /** END_STREAM went out: the response is complete. */
  #finished = false;
  #onClose: Listener[] | null = null;
  #onDrain: Listener[] | null = null;
  #onFinish: Listener[] | null = null;
  /** Set by the peer's RST_STREAM or a lost connection, before 'close'. */
  aborted = false;
  /** The peer sent END_STREAM (on its head, its last DATA or its trailers). */
  endedByPeer = false;
  /** The peer sent RST_STREAM while the stream was open. */
  resetByPeer = false;

  constructor(session: StreamHost, id: number, recvWindow: number, sendWindow: number) {
    this.session = session;
    this.id = id;
    this.#recvWindow = recvWindow;
    this.#recvInitial = recvWindow;
    this.#sendWindow = sendWindow;
  }

  get closed(): boolean {
    return this.#closed;
  }
  /** end() was called (as Node's writableEnded): false for a stream reset before its response ended. */
  get writableEnded(): boolean {
    return this.#ending || this.#finished;
  }

  openBody(): void {
    this.body = new Readable({
      highWaterMark: this.#recvInitial,
      read: () => {
        this.#giveBack();
      },
    });
    // A reset ends the body with an error; whoever reads it (a pipe) has its own listener.
    this.body.on('error', ignoreError);
  }

  /** DATA (or trailers: len 0) for this stream; a stream error code, or 0. */
  received(buf: Buffer, s: number, e: number, len: number, end: boolean): number {
    this.#recvWindow -= len;
    if (this.#recvWindow < 0) return E_FLOW_CONTROL_ERROR;
    const n = e - s;
    if (len > n && !end) {
      // Padding: nobody reads it, so it goes back to the stream window without a reader, in
      // batches (the session gives it back to the connection's at once).
      this.#padding += len - n;
      if (this.#padding >= 4096 || this.#recvWindow < this.#recvInitial >>> 1) {
        this.#recvWindow += this.#padding;
        this.session.sendFrame(u32Frame(T_WINDOW_UPDATE, this.id, this.#padding));
        this.#padding = 0;
      }
    }
    this.#received += n;
    if (this.contentLength !== -1 && (this.#received > this.contentLength || (end && this.#received !== this.contentLength))) {
      // 8.1.1: a body that disagrees with its content-length is malformed.
      return E_PROTOCOL_ERROR;
    }
    const body = this.body;
    if (n > 0) {
      this.#pushed += n;
      if (body !== null) body.push(Buffer.from(buf.subarray(s, e)));
    }
    if (end) {
      this.state &= ~REMOTE_OPEN;
      this.endedByPeer = true;
      body?.push(null);
      if ((this.state & LOCAL_OPEN) === 0) this.#close(true);
    }
    return 0;
  }

  /**
   * The body's reader wants more: what it took out of the body's buffer goes back to both
   * windows. Readable also asks while it fills its own buffer ahead of any reader; bytes still in
   * that buffer are not given back, so a body nobody reads holds at most one window.
   */
  #giveBack(): void {
    const n = this.#pushed - (this.body?.readableLength ?? 0) - this.#credited;
    if (n <= 0) return;
    this.#credited += n;
    this.session.consumed(n);
    if ((this.state & REMOTE_OPEN) === 0) return;
    this.#recvWindow += n;
    this.session.sendFrame(u32Frame(T_WINDOW_UPDATE, this.id, n));
  }

  /** The response head. `headers`: flat, lower-case, checked for HTTP/2 by the caller. */
  respond(status: number, headers: readonly string[], endStream = false): void {
    if (this.headersSent || this.#closed) return;
    this.headersSent = true;
    const block = encodeResponseHead(status, headers);
    const max = this.session.peerMaxFrame;
    const endFlag = endStream ? F_END_STREAM : 0;
    if (block.length <= max) {
      const f = Buffer.allocUnsafe(FRAME_HEADER + block.length);
      writeFrameHeader(f, 0, block.length, T_HEADERS, F_END_HEADERS | endFlag, this.id);
      block.copy(f, FRAME_HEADER);
      this.session.sendFrame(f);
    } else {
      for (let o = 0; o < block.length; o += max) {
        const part = block.subarray(o, Math.min(o + max, block.length));
        const last = o + max >= block.length;
        const type = o === 0 ? T_HEADERS : T_CONTINUATION;
        this.session.sendFrame(frame(type, (last ? F_END_HEADERS : 0) | (o === 0 ? endFlag : 0), this.id, part));
      }
    }
    if (endStream) this.#localEnd();
  }

  /** Body bytes; false when they wait for window or the socket ('drain' follows). */
  write(chunk: Buffer): boolean {
    if (this.#closed || this.#ending || (this.state & LOCAL_OPEN) === 0) return false;
    if (chunk.length === 0) return true;
    if (this.#pendingBytes === 0) this.#sendData(chunk, false);
    else this.#queue(chunk);
    if (this.#pendingBytes === 0) return true;
    this.#needDrain = true;
    return false;
  }

  end(chunk?: Buffer): void {
    if (this.#closed || this.#ending || (this.state & LOCAL_OPEN) === 0) return;
    if (!this.headersSent) this.respond(200, []);
    this.#ending = true;
    const c = chunk ?? EMPTY;
    if (this.#pendingBytes === 0) this.#sendData(c, true);
    else this.#queue(c);
  }

  #queue(chunk: Buffer): void {
    this.#pending.push(chunk);
    this.#pendingBytes += chunk.length;
    this.session.block(this);
  }

  /** Sends `chunk` (and END_STREAM when `last`) as far as the windows allow; queues the rest. */
  #sendData(chunk: Buffer, last: boolean): void {
    let o = 0;
    while (o < chunk.length) {
      const want = Math.min(chunk.length - o, this.#sendWindow);
      const n = want > 0 ? this.session.take(want) : 0;
      if (n === 0) break;
      this.#sendWindow -= n;
      const end = last && o + n === chunk.length;
      const f = Buffer.allocUnsafe(FRAME_HEADER + n);
      writeFrameHeader(f, 0, n, T_DATA, end ? F_END_STREAM : 0, this.id);
      chunk.copy(f, FRAME_HEADER, o, o + n);
      this.session.sendFrame(f);
      o += n;
      if (end) {
        this.#localEnd();
        return;
      }
    }
    if (o === chunk.length && last) {
      // Empty last chunk: END_STREAM on an empty DATA frame.
      this.session.sendFrame(frame(T_DATA, F_END_STREAM, this.id, null));
      this.#localEnd();
      return;
    }
    if (o < chunk.length) this.#queue(o === 0 ? chunk : chunk.subarray(o));
  }

  /** Called by the session when windows or the socket opened. */
  sendPending(): void {
    if (this.#closed) return;
    const queued = this.#pending;
    this.#pending = [];
    this.#pendingBytes = 0;
    for (let i = 0; i < queued.length; i++) {
      const last = this.#ending && i === queued.length - 1;
      if (this.#pendingBytes > 0) this.#queue(queued[i]!);
      else this.#sendData(queued[i]!, last);
    }
    if (this.#pendingBytes === 0 && this.#needDrain) {
      this.#needDrain = false;
      const drain = this.#onDrain;
      this.#onDrain = null;
      emit(drain);
    }
  }

  /** Our side is done (END_STREAM sent). */
  #localEnd(): void {
    this.state &= ~LOCAL_OPEN;
    this.#finished = true;
    // Events come after the call that caused them returns, as on Node's streams: a listener
    // (the audit) sees the state its caller set after writing.
    const finish = this.#onFinish;
    this.#onFinish = null;
    if (finish !== null) process.nextTick(emit, finish);
    if ((this.state & REMOTE_OPEN) === 0) this.#close(true);
    else {
      // 8.1: a complete response may stop the rest of the request body: RST_STREAM NO_ERROR.
      this.session.sendRst(this.id, E_NO_ERROR);
      this.body?.destroy();
      this.#close(true);
    }
  }

  /** SETTINGS_INITIAL_WINDOW_SIZE change or WINDOW_UPDATE; false when past 2^31-1. */
  adjustWindow(delta: number): boolean {
    this.#sendWindow += delta;
    if (this.#sendWindow > MAX_WINDOW) return false;
    if (delta > 0 && this.#pendingBytes > 0) this.session.block(this);
    return true;
  }

  /** We end the stream abnormally (RST_STREAM `code`). */
  reset(code = E_CANCEL): void {
    if (this.#closed) return;
    this.session.sendRst(this.id, code);
    this.aborted = true;
    this.body?.destroy(new Error(`HTTP/2 stream reset (${code})`));
    this.#close(false);
  }

  /** The peer reset the stream, or the connection went. */
  closedByPeer(): void {
    if (this.#closed) return;
    this.aborted = true;
    this.body?.destroy(new Error('HTTP/2 stream reset by the client'));
    this.#close(false);
  }

  #close(completed: boolean): void {
    if (this.#closed) return;
    this.#closed = true;
    this.state = 0;
    this.#pending = [];
    this.#pendingBytes = 0;
    // Body bytes nobody read still count against the connection window: give them back.
    if (this.#pushed > this.#credited) {
      this.session.consumed(this.#pushed - this.#credited);
      this.#credited = this.#pushed;
    }
    this.session.streamClosed(this, completed);
    const close = this.#onClose;
    this.#onClose = this.#onDrain = this.#onFinish = null;
    if (close !== null) process.nextTick(emit, close);
  }

  /** 'drain' listeners are called once (each wait for drain adds its own); 'close' and 'finish' come once anyway. */
  on(event: 'close' | 'finish' | 'drain', fn: Listener): this {
    if (this.#closed) {
      // Already over: 'close' (and 'finish', if our side ended) still come, asynchronously.
      if (event === 'close' || (event === 'finish' && this.#finished)) process.nextTick(fn);
      return this;
    }
    if (event === 'close') (this.#onClose ??= []).push(fn);
    else if (event === 'drain') (this.#onDrain ??= []).push(fn);
    else (this.#onFinish ??= []).push(fn);
    return this;
  }
}

const EMPTY = Buffer.alloc(0);
function ignoreError(): void {}

function emit(list: Listener[] | null): void {
  if (list === null) return;
  for (let i = 0; i < list.length; i++) list[i]!();
}
