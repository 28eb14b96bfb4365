/**
 * The sidecar's own HTTP/2 server side (RFC 9113) on a TLS socket, as transport/h1.ts is for
 * HTTP/1.1: frames read straight off the socket, HPACK (hpack.ts), flow control both ways, the
 * stream state machine (the streams in stream.ts, their heads checked in head.ts), and the flood
 * guards nghttp2 gives node:http2. It exists for speed:
 * node:http2 builds a Duplex per stream and crosses into C++ and back several times per request;
 * measured in bench/lean-h2-proxy.mjs, the same proxying on own framing runs ~2x a bare
 * node:http2 proxy (docs/performance.md).
 *
 * Scope: what a sidecar in front of one app needs. No server push (SETTINGS_ENABLE_PUSH is
 * irrelevant to a server), no priorities (ignored, RFC 9113 5.3.2), no CONNECT or extended
 * CONNECT (refused as malformed), request trailers read (checked as 8.1 asks) and dropped.
 *
 * Every frame produced in one turn of the event loop goes out in one socket write.
 */
import type { TLSSocket } from 'node:tls';
import { HPACK_BAD, HPACK_TOO_LARGE, HpackDecoder } from './hpack.js';
import { ControlGuard, ResetGuard } from './guard.js';
import { readHead, trailersOk } from './head.js';
import { H2ServerStream, REMOTE_OPEN } from './stream.js';
import type { StreamHost } from './stream.js';
import {
  DEFAULT_WINDOW, E_INTERNAL_ERROR, E_COMPRESSION_ERROR, E_ENHANCE_YOUR_CALM, E_FLOW_CONTROL_ERROR, E_FRAME_SIZE_ERROR,
  E_NO_ERROR, E_PROTOCOL_ERROR, E_REFUSED_STREAM, E_STREAM_CLOSED, FRAME_HEADER, F_ACK, F_END_HEADERS, F_END_STREAM,
  F_PADDED, F_PRIORITY, MAX_FRAME_SIZE, MAX_WINDOW, MIN_FRAME_SIZE, PREFACE, SETTINGS_ACK, S_ENABLE_PUSH,
  S_INITIAL_WINDOW_SIZE, S_MAX_CONCURRENT_STREAMS, S_MAX_FRAME_SIZE, S_MAX_HEADER_LIST_SIZE,
  T_CONTINUATION, T_DATA, T_GOAWAY, T_HEADERS, T_PING, T_PRIORITY, T_PUSH_PROMISE, T_RST_STREAM, T_SETTINGS,
  T_WINDOW_UPDATE, frame, goawayFrame, settingsFrame, u32Frame,
} from './frames.js';

// The stream type is part of this module's hooks (onStream), so its importers find it here too.
export type { H2ServerStream } from './stream.js';

export interface H2Limits {
  /** SETTINGS_MAX_CONCURRENT_STREAMS: streams past it are refused (REFUSED_STREAM, retryable). */
  readonly maxConcurrentStreams: number;
  /** SETTINGS_MAX_HEADER_LIST_SIZE (RFC 7541 sizes); a longer request head is marked headersTooLarge. */
  readonly maxHeaderListSize: number;
  /** Our receive window per stream (SETTINGS_INITIAL_WINDOW_SIZE): what one request body may buffer. */
  readonly streamWindow: number;
  /** Our receive window for the whole connection. */
  readonly connectionWindow: number;
  /** Fields (pseudo-headers included) a request head may have; past it the stream is refused. */
  readonly maxHeaderPairs: number;
  /** A header block split over CONTINUATION frames must be complete within this. */
  readonly headersTimeoutMs: number;
  /** No traffic for this long: GOAWAY when idle, else the connection is cut (see idle()). 0: none. */
  readonly idleTimeoutMs: number;
}

export interface H2SessionHooks {
  /** A request head that is valid HTTP/2; its body (if any) follows on stream.body. */
  onStream(stream: H2ServerStream): void;
  /** The connection is gone; every open stream has had its 'close'. */
  onSessionClose?(session: H2Session): void;
  /**
   * A bug caught here: in onStream (`h2`: the stream is reset with INTERNAL_ERROR) or in frame
   * handling (`h2_frame`: the connection ends with GOAWAY INTERNAL_ERROR). Never the process.
   */
  onInternalError?(err: unknown, where: 'h2' | 'h2_frame'): void;
}

/*
 * Bounds that are protocol hygiene rather than configuration. The reset rules (guard.ts) count
 * more than the peer's resets here: streams refused (concurrency, header limits, malformed heads)
 * and stream errors the peer provoked (MadeYouReset, CVE-2025-8671: WINDOW_UPDATE 0 or DATA
 * after END_STREAM make the server reset a stream the app may already be serving).
 */
/** CONTINUATION flood (CVE-2024-27316): a header block may take this many frames at most. */
const MAX_BLOCK_FRAMES = 64;
/** Empty DATA frames that end nothing (CVE-2019-9518) allowed per connection. */
const MAX_EMPTY_FRAMES = 1000;
/** Frames queued for a peer that does not read its socket: past this many bytes the connection is closed. */
const MAX_QUEUED_BYTES = 8 * 1024 * 1024;
/** Stop producing DATA while the socket holds this much unsent. */
const SOCKET_HIGH_WATER = 256 * 1024;

/** Not a wire flag: marks a HEADERS whose priority names its own stream (kept with the block's flags). */
const F_SELF_DEPENDENT = 0x100;

export class H2Session implements StreamHost {
  readonly socket: TLSSocket;
  readonly #hooks: H2SessionHooks;
  readonly #limits: H2Limits;
  readonly #hpack: HpackDecoder;
  readonly #streams = new Map<number, H2ServerStream>();
  #buf: Buffer | null = null;
  /** Reads since #buf, not yet joined, and how many bytes the frame in #buf still needs. */
  #parts: Buffer[] = [];
  #partsLen = 0;
  #need = 0;
  #preface = false;
  #settingsSeen = false;
  #lastSid = 0;
  #goaway = false;
  #closed = false;
  // A header block in progress (HEADERS without END_HEADERS, then CONTINUATION).
  #blockSid = 0;
  #blockFlags = 0;
  #blockParts: Buffer[] = [];
  #blockBytes = 0;
  // Outbound: frames queued in this turn, written together.
  #out: Buffer[] = [];
  #outBytes = 0;
  #flushScheduled = false;
  // Flow control. Send: the peer's windows; receive: ours, and what has been consumed but not yet given back.
  #sendWindow = DEFAULT_WINDOW;
  peerInitialWindow = DEFAULT_WINDOW;
  peerMaxFrame = MIN_FRAME_SIZE;
  #recvWindow: number;
  #recvCredit = 0;
  /** Streams with response DATA waiting for window or for the socket. */
  readonly #blocked = new Set<H2ServerStream>();
  // Guards.
  readonly #control = new ControlGuard();
  readonly #resets = new ResetGuard();
  #blockTimer: NodeJS.Timeout | null = null;
  #emptyFrames = 0;
  /** The last stream ids we reset or refused: the peer may still send trailers on them. */
  readonly #recentlyReset: number[];
  #resetAt = 0;
  /**
   * The last streams the peer itself closed, as many as #recentlyReset: `sid` after its
   * END_STREAM, `-sid` after its RST_STREAM. The peer knows these are closed, so DATA on them has
   * no excuse (RFC 9113 5.1), unlike late DATA on a stream we closed first.
   */
  readonly #peerClosed: Int32Array;
  #peerClosedAt = 0;

  constructor(socket: TLSSocket, limits: H2Limits, hooks: H2SessionHooks) {
    this.socket = socket;
    this.#limits = limits;
    this.#hooks = hooks;
    this.#hpack = new HpackDecoder(4096, limits.maxHeaderListSize, limits.maxHeaderPairs);
    // Every stream that can be open at once, twice over.
    this.#recentlyReset = new Array<number>(Math.max(256, 2 * limits.maxConcurrentStreams)).fill(0);
    this.#peerClosed = new Int32Array(this.#recentlyReset.length);
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.#read(chunk));
    socket.on('drain', () => this.#pump());
    socket.on('close', () => this.#onSocketClose());
    socket.on('error', ignore);
    if (limits.idleTimeoutMs > 0) {
      socket.setTimeout(limits.idleTimeoutMs);
      socket.on('timeout', () => this.idle());
    }
    this.#send(
      settingsFrame([
        [S_MAX_CONCURRENT_STREAMS, limits.maxConcurrentStreams],
        [S_INITIAL_WINDOW_SIZE, limits.streamWindow],
        [S_MAX_HEADER_LIST_SIZE, limits.maxHeaderListSize],
        [S_ENABLE_PUSH, 0],
      ]),
    );
    if (limits.connectionWindow > DEFAULT_WINDOW) this.#send(u32Frame(T_WINDOW_UPDATE, 0, limits.connectionWindow - DEFAULT_WINDOW));
    this.#recvWindow = Math.max(limits.connectionWindow, DEFAULT_WINDOW);
  }

  get openStreams(): number {
    return this.#streams.size;
  }
  get closed(): boolean {
    return this.#closed;
  }

  /** Graceful close (drain, a reload that withdrew trust): no new streams; the connection ends when the open ones have. */
  close(code = E_NO_ERROR): void {
    if (this.#goaway || this.#closed) return;
    this.#goaway = true;
    this.#send(goawayFrame(this.#lastSid, code));
    if (this.#streams.size === 0) this.#endSoon();
  }

  /**
   * The socket saw no traffic for idleTimeout. Idle: GOAWAY and end. With streams still open
   * (waiting on a window that never opens, or on the app past every other limit), or already
   * closing (a peer that never closes its side): cut.
   */
  idle(): void {
    if (this.#streams.size === 0 && !this.#goaway && !this.#closed) {
      this.close();
      return;
    }
    this.#closed = true;
    this.socket.destroy();
  }

  /** Immediate close: GOAWAY with `code`, open streams reset, the socket ended. */
  destroy(code: number): void {
    if (this.#closed) return;
    if (!this.#goaway) {
      this.#goaway = true;
      this.#send(goawayFrame(this.#lastSid, code));
    }
    this.#flush();
    this.#closed = true;
    this.#clearBlockTimer();
    this.socket.end();
    this.socket.destroySoon();
    // A peer that reads nothing (a flood's) never lets destroySoon finish.
    this.#cutLater();
    for (const s of [...this.#streams.values()]) s.closedByPeer();
  }

  // ---- reading -------------------------------------------------------------------------------

  #read(chunk: Buffer): void {
    if (this.#closed) return;
    let buf: Buffer;
    if (this.#buf === null) buf = chunk;
    else {
      // A frame split over many small reads is joined once, when it is whole, not on every read.
      this.#parts.push(chunk);
      this.#partsLen += chunk.length;
      if (this.#partsLen < this.#need) return;
      buf = Buffer.concat([this.#buf, ...this.#parts]);
      this.#parts = [];
      this.#partsLen = 0;
    }
    this.#buf = null;
    let p = 0;
    if (!this.#preface) {
      const n = Math.min(buf.length, PREFACE.length);
      if (buf.compare(PREFACE, 0, n, 0, n) !== 0) return this.destroy(E_PROTOCOL_ERROR);
      if (buf.length < PREFACE.length) {
        this.#buf = buf;
        return;
      }
      this.#preface = true;
      p = PREFACE.length;
    }
    while (buf.length - p >= FRAME_HEADER) {
      const len = (buf[p]! << 16) | (buf[p + 1]! << 8) | buf[p + 2]!;
      // We never raise SETTINGS_MAX_FRAME_SIZE above its minimum.
      if (len > MIN_FRAME_SIZE) return this.destroy(E_FRAME_SIZE_ERROR);
      if (buf.length - p - FRAME_HEADER < len) break;
      const type = buf[p + 3]!;
      const flags = buf[p + 4]!;
      const sid = buf.readUInt32BE(p + 5) & 0x7fffffff;
      const start = p + FRAME_HEADER;
      p = start + len;
      let err: number;
      try {
        err = this.#frame(type, flags, sid, buf, start, p);
      } catch (e) {
        // A bug here must cost this connection, never the process; and it is reported, not swallowed.
        this.#internalError(e, 'h2_frame');
        err = E_INTERNAL_ERROR;
      }
      if (err !== 0) return this.destroy(err);
      // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- the frame handler may close the session
      if (this.#closed) return;
    }
    if (p < buf.length) {
      // Keep the partial frame; copy when it is a small tail of a large read (no pinning of the read).
      buf = buf.subarray(p);
      this.#buf = buf.length < 4096 ? Buffer.from(buf) : buf;
      // Bytes still to come before the frame (or its header) is whole.
      const have = buf.length;
      this.#need = have < FRAME_HEADER ? 1 : FRAME_HEADER + ((buf[0]! << 16) | (buf[1]! << 8) | buf[2]!) - have;
    }
  }

  /** One frame; returns 0, or the error code of a connection error (RFC 9113 5.4.1). */
  #frame(type: number, flags: number, sid: number, buf: Buffer, s: number, e: number): number {
    if (!this.#settingsSeen && type !== T_SETTINGS) return E_PROTOCOL_ERROR; // 3.4: SETTINGS first
    if (this.#blockSid !== 0 && type !== T_CONTINUATION) return E_PROTOCOL_ERROR; // 6.10
    switch (type) {
      case T_DATA:
        return this.#onData(flags, sid, buf, s, e);
      case T_HEADERS:
        return this.#onHeaders(flags, sid, buf, s, e);
      case T_CONTINUATION:
        return this.#onContinuation(flags, sid, buf, s, e);
      case T_SETTINGS:
        return this.#onSettings(flags, sid, buf, s, e);
      case T_PING:
        if (sid !== 0) return E_PROTOCOL_ERROR;
        if (e - s !== 8) return E_FRAME_SIZE_ERROR;
        if ((flags & F_ACK) === 0) {
          if (!this.#controlFrame()) return E_ENHANCE_YOUR_CALM;
          this.#send(frame(T_PING, F_ACK, 0, buf.subarray(s, e)));
        }
        return 0;
      case T_WINDOW_UPDATE:
        return this.#onWindowUpdate(sid, buf, s, e);
      case T_RST_STREAM:
        return this.#onRstStream(sid, buf, s, e);
      case T_PRIORITY:
        if (sid === 0) return E_PROTOCOL_ERROR;
        if (e - s !== 5) return this.#fault(sid, E_FRAME_SIZE_ERROR);
        // 5.3.1: a stream cannot depend on itself, whatever its state (priorities are otherwise ignored).
        return (buf.readUInt32BE(s) & 0x7fffffff) === sid ? this.#fault(sid, E_PROTOCOL_ERROR) : 0;
      case T_GOAWAY:
        if (sid !== 0) return E_PROTOCOL_ERROR;
        if (e - s < 8) return E_FRAME_SIZE_ERROR;
        // The client leaves: finish what is open, take nothing new.
        this.#goaway = true;
        if (this.#streams.size === 0) this.#endSoon();
        return 0;
      case T_PUSH_PROMISE:
        return E_PROTOCOL_ERROR; // 8.4: clients cannot push
      default:
        return 0; // 5.5: unknown frame types are ignored
    }
  }

  #onData(flags: number, sid: number, buf: Buffer, s: number, e: number): number {
    if (sid === 0) return E_PROTOCOL_ERROR;
    const len = e - s;
    // Flow control counts the whole payload, padding included (6.9.1).
    this.#recvWindow -= len;
    if (this.#recvWindow < 0) return E_FLOW_CONTROL_ERROR;
    if ((flags & F_PADDED) !== 0) {
      if (len < 1) return E_FRAME_SIZE_ERROR;
      const pad = buf[s]!;
      if (pad >= len) return E_PROTOCOL_ERROR;
      s += 1;
      e -= pad;
    }
    const stream = this.#streams.get(sid);
    if (stream === undefined || (stream.state & REMOTE_OPEN) === 0) {
      if (sid > this.#lastSid) return E_PROTOCOL_ERROR; // idle stream (5.1)
      // The bytes still count for the connection: give them back.
      this.#credit(len);
      // DATA after the client's own END_STREAM on a stream still open is its error, and a strike (MadeYouReset).
      if (stream !== undefined) return this.#fault(sid, E_STREAM_CLOSED);
      // A closed stream the client closed itself (5.1 "closed"): after its END_STREAM, a
      // connection error; after its RST_STREAM, a stream error, answered once (our RST_STREAM
      // puts the stream among those whose late frames are ignored).
      const closedBy = this.#closedByPeer(sid);
      if (closedBy > 0) return E_STREAM_CLOSED;
      if (closedBy < 0) {
        this.#peerClosed[~closedBy] = 0;
        this.#sendRst(sid, E_STREAM_CLOSED);
        return this.#strike();
      }
      // One we closed first (answered early and reset with NO_ERROR, or reset), or closed long
      // ago: frames the client sent before it learnt so are ignored (5.1), empty ones still counted.
      return len === 0 && ++this.#emptyFrames > MAX_EMPTY_FRAMES ? E_ENHANCE_YOUR_CALM : 0;
    }
    const end = (flags & F_END_STREAM) !== 0;
    if (e === s && !end && ++this.#emptyFrames > MAX_EMPTY_FRAMES) return E_ENHANCE_YOUR_CALM;
    // Padding is consumed at once; the data when the body's reader takes it.
    this.#credit(len - (e - s));
    const err = stream.received(buf, s, e, len, end);
    if (err === 0) return 0;
    this.#credit(e - s); // refused, so never read
    return this.#fault(sid, err);
  }

  #onHeaders(flags: number, sid: number, buf: Buffer, s: number, e: number): number {
    if (sid === 0 || (sid & 1) === 0) return E_PROTOCOL_ERROR;
    if ((flags & F_PADDED) !== 0) {
      if (e - s < 1) return E_FRAME_SIZE_ERROR;
      const pad = buf[s]!;
      s += 1;
      if (pad > e - s) return E_PROTOCOL_ERROR;
      e -= pad;
    }
    let selfDependent = false;
    if ((flags & F_PRIORITY) !== 0) {
      if (e - s < 5) return E_FRAME_SIZE_ERROR;
      selfDependent = (buf.readUInt32BE(s) & 0x7fffffff) === sid;
      s += 5;
    }
    // 5.3.1: a stream cannot depend on itself (a stream error, once its block is decoded).
    if (selfDependent) flags |= F_SELF_DEPENDENT;
    if ((flags & F_END_HEADERS) !== 0) return this.#headerBlock(sid, flags, buf, s, e);
    this.#blockSid = sid;
    this.#blockFlags = flags;
    this.#blockParts = [Buffer.from(buf.subarray(s, e))];
    this.#blockBytes = e - s;
    // headersTimeout covers a head split over frames: the rest must come in time.
    this.#blockTimer = setTimeout(blockTimedOut, this.#limits.headersTimeoutMs, this);
    return this.#blockBytes > this.#maxBlockBytes() ? E_ENHANCE_YOUR_CALM : 0;
  }

  /** The header block did not complete within headersTimeout: nothing else can use the connection meanwhile. */
  blockTimedOut(): void {
    this.#blockTimer = null;
    if (this.#blockSid !== 0) this.destroy(E_ENHANCE_YOUR_CALM);
  }

  #clearBlockTimer(): void {
    if (this.#blockTimer !== null) {
      clearTimeout(this.#blockTimer);
      this.#blockTimer = null;
    }
  }

  #onContinuation(flags: number, sid: number, buf: Buffer, s: number, e: number): number {
    if (this.#blockSid === 0 || sid !== this.#blockSid) return E_PROTOCOL_ERROR;
    this.#blockParts.push(Buffer.from(buf.subarray(s, e)));
    this.#blockBytes += e - s;
    if (this.#blockBytes > this.#maxBlockBytes() || this.#blockParts.length > MAX_BLOCK_FRAMES) return E_ENHANCE_YOUR_CALM;
    if ((flags & F_END_HEADERS) === 0) return 0;
    const all = Buffer.concat(this.#blockParts);
    const headersFlags = this.#blockFlags;
    this.#blockSid = 0;
    this.#blockParts = [];
    this.#clearBlockTimer();
    return this.#headerBlock(sid, headersFlags, all, 0, all.length);
  }

  /** A compressed block this large cannot decode within the list limit (HPACK never expands below 1/2... bounded generously). */
  #maxBlockBytes(): number {
    return this.#limits.maxHeaderListSize * 2 + 4096;
  }

  #headerBlock(sid: number, flags: number, buf: Buffer, s: number, e: number): number {
    const fields: string[] = [];
    // Decoded whatever happens next: the table must stay in step with the client's.
    const rc = this.#hpack.decode(buf, s, e, fields);
    if (rc === HPACK_BAD) return E_COMPRESSION_ERROR;
    const end = (flags & F_END_STREAM) !== 0;
    if ((flags & F_SELF_DEPENDENT) !== 0 && sid > this.#lastSid) {
      this.#lastSid = sid;
      this.#sendRst(sid, E_PROTOCOL_ERROR);
      return this.#strike();
    }
    if (sid <= this.#lastSid) {
      const stream = this.#streams.get(sid);
      if (stream !== undefined && (stream.state & REMOTE_OPEN) === 0) return this.#fault(sid, E_STREAM_CLOSED); // 5.1 half-closed (remote)
      if (stream !== undefined) {
        // Trailers (8.1): they end the request; their fields are dropped (the app gets none), but
        // a malformed trailer section makes the request malformed (8.1.1, 8.2): no pseudo-header,
        // no connection-specific field, no bad name or value.
        if (!end || !trailersOk(fields)) return this.#fault(sid, E_PROTOCOL_ERROR);
        const err = stream.received(buf, 0, 0, 0, true);
        return err === 0 ? 0 : this.#fault(sid, err);
      }
      // Late frames on a stream we reset or refused are ignored (5.1); HEADERS on any other
      // used or skipped id is a new stream going backwards (5.1.1).
      return this.#recentlyReset.includes(sid) ? 0 : E_PROTOCOL_ERROR;
    }
    this.#lastSid = sid;
    if (this.#goaway) {
      // Racing our GOAWAY is not misbehaviour.
      this.#sendRst(sid, E_REFUSED_STREAM);
      return 0;
    }
    if (this.#streams.size >= this.#limits.maxConcurrentStreams) {
      this.#sendRst(sid, E_REFUSED_STREAM);
      return this.#strike();
    }
    if (rc === HPACK_TOO_LARGE) {
      // Over maxHeaderSize or maxHeaders: refused before anything is built for it (as nghttp2 does).
      this.#sendRst(sid, E_ENHANCE_YOUR_CALM);
      return this.#strike();
    }
    const stream = new H2ServerStream(this, sid, this.#limits.streamWindow, this.peerInitialWindow);
    if (!readHead(fields, stream)) {
      this.#sendRst(sid, E_PROTOCOL_ERROR);
      return this.#strike();
    }
    // 8.1.1: a content-length that promises a body the request ends without is malformed.
    if (end && stream.contentLength > 0) {
      this.#sendRst(sid, E_PROTOCOL_ERROR);
      return this.#strike();
    }
    this.#streams.set(sid, stream);
    if (end) {
      stream.state &= ~REMOTE_OPEN;
      stream.endedByPeer = true;
    } else stream.openBody();
    try {
      this.#hooks.onStream(stream);
    } catch (err) {
      this.#internalError(err, 'h2');
      stream.reset(E_INTERNAL_ERROR);
    }
    return 0;
  }

  #internalError(err: unknown, where: 'h2' | 'h2_frame'): void {
    try {
      this.#hooks.onInternalError?.(err, where);
    } catch {
      // The report failed too: the stream or connection still ends below.
    }
  }

  #onSettings(flags: number, sid: number, buf: Buffer, s: number, e: number): number {
    if (sid !== 0) return E_PROTOCOL_ERROR;
    if ((flags & F_ACK) !== 0) return e === s ? 0 : E_FRAME_SIZE_ERROR;
    if ((e - s) % 6 !== 0) return E_FRAME_SIZE_ERROR;
    this.#settingsSeen = true;
    if (!this.#controlFrame()) return E_ENHANCE_YOUR_CALM;
    let initialWindow = -1;
    for (let i = s; i < e; i += 6) {
      const id = buf.readUInt16BE(i);
      const v = buf.readUInt32BE(i + 2);
      if (id === S_INITIAL_WINDOW_SIZE) {
        if (v > MAX_WINDOW) return E_FLOW_CONTROL_ERROR;
        // Applied once per frame, the last value winning: a frame of thousands of entries does
        // not walk the streams thousands of times.
        initialWindow = v;
      } else if (id === S_MAX_FRAME_SIZE) {
        if (v < MIN_FRAME_SIZE || v > MAX_FRAME_SIZE) return E_PROTOCOL_ERROR;
        this.peerMaxFrame = v;
      } else if (id === S_ENABLE_PUSH) {
        if (v > 1) return E_PROTOCOL_ERROR;
      }
      // SETTINGS_HEADER_TABLE_SIZE: our encoder never uses the dynamic table, so any size suits it.
      // SETTINGS_MAX_CONCURRENT_STREAMS, SETTINGS_MAX_HEADER_LIST_SIZE: we push nothing; our heads are small.
    }
    if (initialWindow !== -1) {
      const delta = initialWindow - this.peerInitialWindow;
      this.peerInitialWindow = initialWindow;
      // 6.9.2: every open stream's send window moves by the difference (it may go negative).
      for (const st of this.#streams.values()) if (!st.adjustWindow(delta)) return E_FLOW_CONTROL_ERROR;
    }
    this.#send(SETTINGS_ACK);
    this.#pump();
    return 0;
  }

  #onWindowUpdate(sid: number, buf: Buffer, s: number, e: number): number {
    if (e - s !== 4) return E_FRAME_SIZE_ERROR;
    const inc = buf.readUInt32BE(s) & 0x7fffffff;
    if (sid === 0) {
      if (inc === 0) return E_PROTOCOL_ERROR;
      this.#sendWindow += inc;
      if (this.#sendWindow > MAX_WINDOW) return E_FLOW_CONTROL_ERROR;
      this.#pump();
      return 0;
    }
    const stream = this.#streams.get(sid);
    if (stream === undefined) return sid > this.#lastSid ? E_PROTOCOL_ERROR : 0;
    if (inc === 0) return this.#fault(sid, E_PROTOCOL_ERROR);
    if (!stream.adjustWindow(inc)) return this.#fault(sid, E_FLOW_CONTROL_ERROR);
    this.#pump();
    return 0;
  }

  #onRstStream(sid: number, buf: Buffer, s: number, e: number): number {
    if (sid === 0) return E_PROTOCOL_ERROR;
    if (e - s !== 4) return E_FRAME_SIZE_ERROR;
    if (sid > this.#lastSid) return E_PROTOCOL_ERROR; // idle stream
    const stream = this.#streams.get(sid);
    if (stream === undefined) return 0;
    stream.resetByPeer = true;
    stream.closedByPeer();
    // Rapid reset (CVE-2023-44487): any code counts, NO_ERROR included. A stream still here has
    // not had its whole response (a finished one is gone from the map).
    return this.#strike();
  }

  /** One more reset, refusal or provoked stream error: the connection error to raise past the rules of guard.ts. */
  #strike(): number {
    return this.#resets.strike(Date.now()) ? E_ENHANCE_YOUR_CALM : 0;
  }

  /**
   * How the peer closed stream `sid`, if it is among the last it closed: > 0 by END_STREAM;
   * otherwise the one's complement of its slot (< 0) by RST_STREAM; 0 unknown. Only on DATA for
   * a stream no longer open, so a scan is fine.
   */
  #closedByPeer(sid: number): number {
    const ring = this.#peerClosed;
    for (let i = 0; i < ring.length; i++) {
      const v = ring[i]!;
      if (v === sid) return sid;
      if (v === -sid) return ~i;
    }
    return 0;
  }

  /** A stream error the peer caused (RFC 9113 5.4.2): RST_STREAM `code`, and a strike. */
  #fault(sid: number, code: number): number {
    const stream = this.#streams.get(sid);
    if (stream !== undefined) stream.reset(code);
    else this.#sendRst(sid, code);
    return this.#strike();
  }

  /** PING and SETTINGS floods (CVE-2019-9512, CVE-2019-9515): false past the bound. */
  #controlFrame(): boolean {
    return !this.#control.frame(Date.now());
  }


  // ---- flow control and writing ---------------------------------------------------------------

  /** `n` bytes of received DATA are consumed: give them back to the connection window in batches. */
  #credit(n: number): void {
    if (n <= 0) return;
    this.#recvCredit += n;
    if (this.#recvCredit >= this.#limits.connectionWindow >>> 1 || this.#recvWindow < DEFAULT_WINDOW) {
      this.#send(u32Frame(T_WINDOW_UPDATE, 0, this.#recvCredit));
      this.#recvWindow += this.#recvCredit;
      this.#recvCredit = 0;
    }
  }

  /** A stream's body reader consumed `n` bytes, or a stream closed with `n` unread (called by the stream). */
  consumed(n: number): void {
    this.#credit(n);
  }

  /** Queues a frame for this turn's write. */
  #send(buf: Buffer): void {
    if (this.#closed) return;
    this.#out.push(buf);
    this.#outBytes += buf.length;
    if (this.socket.writableLength + this.#outBytes > MAX_QUEUED_BYTES) {
      // The peer does not read what it asks for (ACK floods, or a stalled reader): end it.
      this.#closed = true;
      this.socket.destroy();
      return;
    }
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      setImmediate(flushSession, this);
    }
  }

  sendFrame(buf: Buffer): void {
    this.#send(buf);
  }

  sendRst(sid: number, code: number): void {
    this.#sendRst(sid, code);
  }

  #sendRst(sid: number, code: number): void {
    this.#send(u32Frame(T_RST_STREAM, sid, code));
    this.#recentlyReset[this.#resetAt] = sid;
    this.#resetAt = (this.#resetAt + 1) % this.#recentlyReset.length;
  }

  /** Writes what this turn produced. */
  flush(): void {
    this.#flushScheduled = false;
    this.#flush();
  }

  #flush(): void {
    const out = this.#out;
    if (out.length === 0) return;
    this.#out = [];
    this.#outBytes = 0;
    if (this.socket.destroyed) return;
    this.socket.write(out.length === 1 ? out[0]! : Buffer.concat(out));
  }

  /**
   * Takes `want` bytes of send window for `stream` (already checked against its own window);
   * returns what the connection window and the socket allow now.
   */
  take(want: number): number {
    if (this.socket.writableLength + this.#outBytes > SOCKET_HIGH_WATER) return 0;
    const n = Math.min(want, this.#sendWindow, this.peerMaxFrame);
    if (n <= 0) return 0;
    this.#sendWindow -= n;
    return n;
  }

  block(stream: H2ServerStream): void {
    this.#blocked.add(stream);
  }

  /** Windows opened or the socket drained: let waiting streams send. */
  #pump(): void {
    if (this.#blocked.size === 0) return;
    // A stream that still cannot send all re-adds itself: iterate over a copy.
    const waiting = [...this.#blocked];
    this.#blocked.clear();
    for (const stream of waiting) stream.sendPending();
  }

  /** A stream is closed both ways (called by the stream); `completed`: its response went out whole. */
  streamClosed(stream: H2ServerStream, completed: boolean): void {
    if (this.#streams.get(stream.id) !== stream) return;
    this.#streams.delete(stream.id);
    this.#blocked.delete(stream);
    if (stream.endedByPeer || stream.resetByPeer) {
      this.#peerClosed[this.#peerClosedAt] = stream.endedByPeer ? stream.id : -stream.id;
      this.#peerClosedAt = (this.#peerClosedAt + 1) % this.#peerClosed.length;
    }
    if (completed) this.#resets.completed();
    if (this.#goaway && this.#streams.size === 0) this.#endSoon();
  }

  #endSoon(): void {
    // After this turn's frames (the last response, the GOAWAY) are written.
    setImmediate(endSession, this);
  }

  end(): void {
    if (this.#closed) return;
    this.#flush();
    this.#closed = true;
    this.socket.end();
    this.#cutLater();
  }

  /**
   * After our side has ended: Node may stop the socket's idle timer then, so a client that never
   * closes its side, or never reads, is cut after idleTimeout (5 s without one) again.
   */
  #cutLater(): void {
    const grace = setTimeout(cutSocket, this.#limits.idleTimeoutMs > 0 ? this.#limits.idleTimeoutMs : 5000, this.socket);
    grace.unref();
    this.socket.once('close', () => clearTimeout(grace));
  }

  #onSocketClose(): void {
    this.#closed = true;
    this.#clearBlockTimer();
    this.#out = [];
    for (const s of [...this.#streams.values()]) s.closedByPeer();
    this.#hooks.onSessionClose?.(this);
  }
}

function flushSession(session: H2Session): void {
  session.flush();
}
function endSession(session: H2Session): void {
  session.end();
}
function cutSocket(socket: TLSSocket): void {
  socket.destroy();
}
function blockTimedOut(session: H2Session): void {
  session.blockTimedOut();
}
function ignore(): void {}
