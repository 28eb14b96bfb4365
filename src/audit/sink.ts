/**
 * The audit log's bounded buffer and its writers (SPEC §3 `audit.onFull`, §6 audit metrics).
 *
 * Lines wait here until the destination has taken them, never more than AUDIT_BUFFER_BYTES of
 * them. A line that does not fit is dropped and counted, never waited for; with `onFull: refuse`
 * the pipeline answers 503 `audit_unavailable` from the moment the destination is full or
 * failing until everything it was given has been written.
 *
 * Why a failing destination used to freeze the whole process: pino.destination's sonic-boom
 * re-emitted a write error (ENOSPC) that nobody listened to; the uncaught exception ran pino's
 * exit hook, whose flushSync() retries every error other than EAGAIN forever with a synchronous
 * sleep, so the event loop never ran again (0 % CPU, nothing answered, nothing logged). Here
 * sonic-boom is constructed directly (no exit hook), its errors are handled, nothing is ever
 * written synchronously, and pipes and sockets are written non-blocking through libuv: a
 * blocking write to a pipe nobody reads holds a thread-pool thread forever, and process exit
 * waits for that thread.
 */
import { fstatSync } from 'node:fs';
import net from 'node:net';
import sonicBoom from 'sonic-boom';
import type { SonicBoom } from 'sonic-boom';
import type { Log } from '../log.js';

declare module 'sonic-boom' {
  // contentMode 'buffer' takes Buffers; the package's types describe only the string mode.
  interface SonicBoom {
    write(data: Buffer): boolean;
  }
}

/**
 * The most audit data held in memory: lines not yet taken by the destination (the batch being
 * filled included). About 7,000 typical lines; what a crash can lose at most.
 */
export const AUDIT_BUFFER_BYTES = 4 * 1024 * 1024;
/** Audit lines are handed to the destination in batches of about this many bytes. */
export const BATCH_BYTES = 256 * 1024;
/** Longest a line waits in the batch before it is handed over (like Envoy's access log flush interval, 1 s). */
export const FLUSH_MS = 250;
/** Largest single write sonic-boom makes out of the batches it holds. */
const MAX_WRITE = 4 * BATCH_BYTES;
const EMPTY = Buffer.alloc(0);
// A CommonJS package: its default export is module.exports, which carries the class by name too.
const { SonicBoom: SonicBoomClass } = sonicBoom;

export type OnFull = 'refuse' | 'drop';

/** What a writer reports back to the buffer. */
export interface WriterEvents {
  /** `bytes` more of what was handed over reached the destination, in order. */
  written(bytes: number): void;
  /** A write failed; the writer keeps what was not written and tries again on retry(). */
  failed(err: NodeJS.ErrnoException): void;
  /** The destination is gone for good (a pipe whose reader closed): nothing handed over will be written. */
  lost(err: NodeJS.ErrnoException): void;
}

/** Where batches go. */
export interface SinkWriter {
  write(buf: Buffer): void;
  /** Write again what a failed write left (nothing happens while a write is in flight). */
  retry(): void;
  /** Release the destination; `drained`: everything handed over was written. */
  close(drained: boolean): void;
}

/** Files, character devices (/dev/full, /dev/null) and terminals: sonic-boom's fs.write on the thread pool. */
class FileWriter implements SinkWriter {
  readonly #boom: SonicBoom;

  constructor(fd: number, ev: WriterEvents) {
    // minLength 0: every batch is written as it comes (batching is done before). No maxLength:
    // the bound is kept by the buffer, which knows lines, not bytes only.
    this.#boom = new SonicBoomClass({ fd, sync: false, contentMode: 'buffer', minLength: 0, maxWrite: MAX_WRITE, append: true });
    this.#boom.on('write', (n: number) => ev.written(n));
    // Never removed: an 'error' event nobody listens to is thrown (the freeze described above).
    this.#boom.on('error', (err: NodeJS.ErrnoException) => ev.failed(err));
  }

  write(buf: Buffer): void {
    this.#boom.write(buf);
  }

  retry(): void {
    // After an error sonic-boom is idle and holds the unwritten bytes; any write restarts it,
    // and it writes those bytes first.
    this.#boom.write(EMPTY);
  }

  close(drained: boolean): void {
    // Not drained: left as it is. end() would wait for writes a failing destination never
    // finishes, and destroy() with a write in flight makes sonic-boom, when that write
    // completes, take the next batch from the queue destroy() emptied (a TypeError, thrown).
    // The process is exiting; the descriptor closes with it. end() never closes 1 and 2.
    if (drained) this.#boom.end();
  }
}

/**
 * Pipes and sockets (stdout under a log collector, a FIFO): a libuv stream, non-blocking, as Node
 * writes process.stdout. A full pipe waits for epoll, not for a thread, so a stalled reader
 * holds no thread and never delays exit.
 */
class StreamWriter implements SinkWriter {
  readonly #stream: net.Socket;
  readonly #owned: boolean;
  readonly #ev: WriterEvents;
  /** Sizes of the writes not yet acknowledged, oldest first (a stream acknowledges writes in order). */
  readonly #sizes: number[] = [];
  #gone = false;
  readonly #done = (err?: Error | null): void => {
    const n = this.#sizes.shift() ?? 0;
    if (err == null) this.#ev.written(n);
    else this.#lose(err);
  };

  constructor(stream: net.Socket, owned: boolean, ev: WriterEvents) {
    this.#stream = stream;
    this.#owned = owned;
    this.#ev = ev;
    // Never removed, as above. After an error (EPIPE: the reader went away) the stream is
    // destroyed and cannot be written again.
    stream.on('error', (err) => this.#lose(err));
  }

  write(buf: Buffer): void {
    if (this.#gone) return;
    this.#sizes.push(buf.length);
    this.#stream.write(buf, this.#done);
  }

  retry(): void {
    // Nothing to do: a stream retries by itself when the reader makes room; errors are final.
  }

  close(): void {
    // process.stdout and process.stderr stay open (Node owns them); a FIFO we opened is closed.
    if (this.#owned) this.#stream.destroy();
  }

  #lose(err: NodeJS.ErrnoException): void {
    if (this.#gone) return;
    this.#gone = true;
    this.#sizes.length = 0;
    this.#ev.lost(err);
  }
}

/** An in-process destination (tests, embedding): each line is handed to it as soon as it is made. */
class DestinationWriter implements SinkWriter {
  constructor(
    readonly dest: { write(chunk: string): unknown },
    readonly ev: WriterEvents,
  ) {}

  write(buf: Buffer): void {
    this.dest.write(buf.toString('utf8'));
    this.ev.written(buf.length);
  }

  retry(): void {}

  close(): void {}
}

/** The writer for an open descriptor, by what it is (start-up only: fstatSync). */
export function writerForFd(fd: number): (ev: WriterEvents) => SinkWriter {
  const st = fstatSync(fd);
  // Not stderr: a libuv stream makes its descriptor non-blocking, and the operational log
  // (log.ts) writes stderr synchronously; on a non-blocking pipe that is full, sonic-boom's sync
  // mode sleeps 100 ms per retry on the event loop.
  if (fd !== 2 && (st.isFIFO() || st.isSocket())) {
    // process.stdout on a pipe is a net.Socket that never closes its descriptor.
    const stream = fd === 1 ? process.stdout : new net.Socket({ fd, readable: false, writable: true });
    if (stream instanceof net.Socket) return (ev) => new StreamWriter(stream, fd > 2, ev);
  }
  return (ev) => new FileWriter(fd, ev);
}

export function writerForDestination(dest: { write(chunk: string): unknown }): (ev: WriterEvents) => SinkWriter {
  return (ev) => new DestinationWriter(dest, ev);
}

export interface BufferOptions {
  readonly onFull: OnFull;
  readonly log: Log;
  /** Hand each line over at once instead of in batches (an in-process destination). */
  readonly eager: boolean;
}

type State = 'ok' | 'unavailable' | 'lost';

/**
 * The bounded buffer. audit.ts encodes each line straight into `batch` at `used`, then calls
 * commit(); batches go to the writer every FLUSH_MS, when full, and on flush/close.
 */
export class AuditBuffer implements WriterEvents {
  /** The batch being filled: [0, used) holds whole lines. */
  batch: Buffer = Buffer.allocUnsafeSlow(BATCH_BYTES);
  used = 0;
  /** onFull is refuse and the destination is full, failing or gone: requests are answered 503. */
  refusing = false;
  /** Writes that failed (each attempt; a failing destination is retried every FLUSH_MS). */
  writeErrors = 0;
  /** Lines never written: no room in the buffer, the destination gone, or left over at shutdown. */
  linesDropped = 0;
  readonly #onFull: OnFull;
  readonly #log: Log;
  readonly #eager: boolean;
  readonly #writer: SinkWriter;
  /** AUDIT_BUFFER_BYTES; -1 once nothing more can be written (destination lost, or closed). */
  #limit = AUDIT_BUFFER_BYTES;
  #batchLines = 0;
  /** Bytes handed to the writer and not yet written. */
  #pending = 0;
  /** Per batch handed over and not yet written in full, oldest first: bytes left, lines. */
  readonly #queueBytes: number[] = [];
  readonly #queueLines: number[] = [];
  #state: State = 'ok';
  /** The last write failed and nothing has been written since. */
  #errored = false;
  #closed = false;
  /** When the state last left 'ok', and the counters then (for the recovery log line). */
  #since = 0;
  #errorsAtStart = 0;
  #droppedAtStart = 0;
  #waiters: Array<() => void> = [];
  readonly #timer: NodeJS.Timeout | null;

  constructor(makeWriter: (ev: WriterEvents) => SinkWriter, opts: BufferOptions) {
    this.#onFull = opts.onFull;
    this.#log = opts.log;
    this.#eager = opts.eager;
    this.#writer = makeWriter(this);
    // Hands the batch over, and retries a failed destination, every FLUSH_MS. Not for an
    // in-process destination, which takes each line at once and never fails (and which a
    // timer nobody clears would keep alive, with every line it holds).
    this.#timer = opts.eager ? null : setInterval(() => this.#tick(), FLUSH_MS);
    this.#timer?.unref();
  }

  /** Bytes held in memory: handed over and not yet written, plus the batch being filled. */
  get bufferedBytes(): number {
    return this.#pending + this.used;
  }

  /** Keep the line just encoded at [used, end) if the buffer has room for it; else drop it (counted). */
  commit(end: number): void {
    if (this.#pending + end > this.#limit) return this.#drop();
    this.used = end;
    this.#batchLines++;
    if (this.#eager) this.handOver();
  }

  /** One line as a string (handshake lines, and a request line too long for the batch). */
  line(text: string): void {
    // UTF-8 needs at most 3 bytes per UTF-16 code unit.
    const worst = 3 * text.length;
    if (this.used + worst > BATCH_BYTES) {
      this.handOver();
      if (worst > BATCH_BYTES) {
        // Longer than any batch (records are bounded well below this): handed over on its own.
        const buf = Buffer.from(text);
        if (this.#pending + buf.length > this.#limit) return this.#drop();
        return this.#send(buf, 1);
      }
    }
    this.commit(this.used + this.batch.write(text, this.used));
  }

  /** Hand the batch to the writer. */
  handOver(): void {
    const n = this.used;
    if (n === 0) return;
    const lines = this.#batchLines;
    this.used = 0;
    this.#batchLines = 0;
    if (this.#limit < 0) {
      this.linesDropped += lines;
      return;
    }
    let out: Buffer;
    if (n >= BATCH_BYTES / 2) {
      out = this.batch.subarray(0, n);
      this.batch = Buffer.allocUnsafeSlow(BATCH_BYTES);
    } else {
      // A copy: a small batch waiting on a stalled destination must not hold a whole batch
      // buffer, or the memory would be many times what the bound counts.
      out = Buffer.allocUnsafeSlow(n);
      this.batch.copy(out, 0, 0, n);
    }
    this.#send(out, lines);
  }

  /**
   * Hand the batch over and wait until the destination has everything, or `timeoutMs` passed.
   * True when everything was written.
   */
  flush(timeoutMs: number): Promise<boolean> {
    this.handOver();
    if (this.#pending === 0 || this.#state === 'lost') return Promise.resolve(this.#pending === 0);
    return new Promise((resolve) => {
      const waiter = (): void => {
        clearTimeout(timer);
        resolve(true);
      };
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((w) => w !== waiter);
        resolve(false);
      }, timeoutMs);
      this.#waiters.push(waiter);
    });
  }

  /**
   * Flush for at most `timeoutMs`, then stop: what the destination has not taken by then is
   * counted as dropped and logged. Never waits longer, whatever the destination does.
   */
  async close(timeoutMs: number): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const drained = await this.flush(timeoutMs);
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#limit = -1;
    let lines = this.#batchLines;
    for (const l of this.#queueLines) lines += l;
    const bytes = this.bufferedBytes;
    this.used = 0;
    this.#batchLines = 0;
    if (lines > 0) {
      this.linesDropped += lines;
      this.#log.error({ lines, bytes }, 'audit lines not written at shutdown');
    }
    this.#writer.close(drained && bytes === 0);
  }

  // WriterEvents: called by the writer.

  written(bytes: number): void {
    if (bytes <= 0) return;
    this.#pending -= bytes;
    let left = bytes;
    const qb = this.#queueBytes;
    while (left > 0 && qb.length > 0) {
      const head = qb[0] as number;
      if (head > left) {
        qb[0] = head - left;
        left = 0;
      } else {
        left -= head;
        qb.shift();
        this.#queueLines.shift();
      }
    }
    this.#errored = false;
    if (this.#pending === 0) {
      if (this.#state === 'unavailable') this.#recover();
      this.#wake();
    }
  }

  failed(err: NodeJS.ErrnoException): void {
    if (this.#state === 'ok') this.#unavailable('write_error', err.code ?? 'unknown');
    this.writeErrors++;
    this.#errored = true;
  }

  lost(err: NodeJS.ErrnoException): void {
    if (this.#state === 'lost') return;
    this.writeErrors++;
    let lines = 0;
    for (const l of this.#queueLines) lines += l;
    this.linesDropped += lines;
    this.#queueBytes.length = 0;
    this.#queueLines.length = 0;
    this.#pending = 0;
    this.#limit = -1;
    this.#state = 'lost';
    this.refusing = this.#onFull === 'refuse';
    this.#log.error({ cause: 'closed', code: err.code ?? 'unknown', onFull: this.#onFull, linesLost: lines }, 'audit sink unavailable');
    this.#wake();
  }

  #send(buf: Buffer, lines: number): void {
    this.#pending += buf.length;
    this.#queueBytes.push(buf.length);
    this.#queueLines.push(lines);
    this.#writer.write(buf);
  }

  #drop(): void {
    if (this.#state === 'ok' && !this.#closed) this.#unavailable('full', null);
    this.linesDropped++;
  }

  #tick(): void {
    if (this.used > 0) this.handOver();
    else if (this.#errored) this.#writer.retry();
  }

  /** One log line per change of state (SPEC: the state, not every failure, is logged). */
  #unavailable(cause: 'full' | 'write_error', code: string | null): void {
    this.#state = 'unavailable';
    this.refusing = this.#onFull === 'refuse';
    this.#since = Date.now();
    this.#errorsAtStart = this.writeErrors;
    this.#droppedAtStart = this.linesDropped;
    this.#log.error(
      { cause, ...(code !== null ? { code } : {}), onFull: this.#onFull, bufferedBytes: this.bufferedBytes, limitBytes: AUDIT_BUFFER_BYTES },
      'audit sink unavailable',
    );
  }

  #recover(): void {
    this.#state = 'ok';
    this.refusing = false;
    this.#log.info(
      {
        onFull: this.#onFull,
        unavailableMs: Date.now() - this.#since,
        writeErrors: this.writeErrors - this.#errorsAtStart,
        linesDropped: this.linesDropped - this.#droppedAtStart,
      },
      'audit sink recovered',
    );
  }

  #wake(): void {
    const w = this.#waiters;
    if (w.length === 0) return;
    this.#waiters = [];
    for (const fn of w) fn();
  }
}
