/**
 * HTTP/1.1 on the verified TLS socket, without node:http. Requests are parsed by llhttp (the
 * parser inside node:http, http1/llhttp.ts) on each connection (connection.ts) and handed to the
 * pipeline as small H1Request / H1Response objects (request.ts, response.ts: the slice of
 * request/response it uses, transport/types.ts). node:http builds an IncomingMessage and a
 * ServerResponse — two streams with their event machinery — for every request and writes the
 * head and body separately; here a request without a body has no stream at all, a response head
 * is one string written together with the first body bytes, the headers/request time limits are
 * one sweep per listener over its connections, and idle is the socket's own timeout. Measured on
 * the bench's keep-alive scenario, a bare proxy built this way serves ~1.25× the requests of the
 * same proxy on node:http (docs/performance.md).
 *
 * What node:http did and this keeps: llhttp's strict parsing, maxHeaderSize (431),
 * headersTimeout / requestTimeout (408) and the idle timeout, Expect: 100-continue, HTTP/1.0
 * keep-alive, chunked responses, and pipelining — answered in order, one request in the pipeline
 * at a time, at most `pipelineDepth` more waiting (more cuts the connection off).
 */
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { H1Connection } from './connection.js';
import type { H1Hooks, H1Limits } from './connection.js';

/**
 * How often the time limits are checked. Sweeping at a quarter of the shorter limit (between
 * 100 ms and 1 s) keeps a cut within ~25 % of it (node:http's default sweep was 30 s, which let
 * a slowloris client live up to 30 s past either limit).
 */
function checkingIntervalMs(l: Pick<H1Limits, 'headersTimeoutMs' | 'requestTimeoutMs'>): number {
  return Math.max(100, Math.min(1000, Math.floor(Math.min(l.headersTimeoutMs, l.requestTimeoutMs) / 4)));
}

/** The HTTP/1.1 side of one listener: its connections and their time limits. */
export class H1Server {
  limits: H1Limits;
  readonly hooks: H1Hooks;
  readonly #conns = new Set<H1Connection>();
  #timer: NodeJS.Timeout | null = null;

  constructor(limits: H1Limits, hooks: H1Hooks) {
    this.limits = limits;
    this.hooks = hooks;
  }

  /**
   * New limits apply to open connections from the next sweep (a reload); the idle timeout is set
   * on each socket when it is accepted, so it applies to new connections only (as node:http's).
   */
  setLimits(limits: H1Limits): void {
    const restart = this.#timer !== null && checkingIntervalMs(limits) !== checkingIntervalMs(this.limits);
    this.limits = limits;
    if (restart) {
      this.#stopSweep();
      this.#startSweep();
    }
  }

  /** A socket that passed the handshake check and negotiated HTTP/1.1 (or nothing). */
  accept(socket: Socket): void {
    if (socket.destroyed) return;
    this.#conns.add(new H1Connection(this, socket));
    if (this.#timer === null) this.#startSweep();
  }

  forget(conn: H1Connection): void {
    this.#conns.delete(conn);
    if (this.#conns.size === 0) this.#stopSweep();
  }

  #startSweep(): void {
    this.#timer = setInterval(() => {
      const now = performance.now();
      for (const c of this.#conns) c.check(now, this.limits);
    }, checkingIntervalMs(this.limits));
    this.#timer.unref();
  }

  #stopSweep(): void {
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
  }
}
