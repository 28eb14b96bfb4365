/**
 * Shared pieces of the adversarial suite: a sidecar + app pair with a route table that has
 * something worth stealing (/admin), a well-behaved client that keeps measuring latency while
 * an attack runs, a resident-memory sampler, and raw TLS sockets for bytes no HTTP library
 * would send. Every loop here is bounded in count and in time.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { stripTypeScriptTypes } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { inject } from 'vitest';
import { Agent, request } from 'undici';
import type { ClientCreds } from '../helpers/client.js';
import { tlsOptions } from '../helpers/client.js';
import { startSidecar } from '../helpers/sidecar.js';
import type { ConfigObject, RunningSidecar } from '../helpers/sidecar.js';
import { startUpstream } from '../helpers/upstream.js';
import { sleep, until } from '../helpers/wait.js';
import type { Upstream, UpstreamHandler } from '../helpers/upstream.js';
import { baseConfig, creds } from '../integration/config.js';
import type { AgentConfig, AgentReport } from './flood-agent.js';

export const pki = inject('pki');

/** orders: orders:read + orders:write; billing: orders:read; nobody holds `admin`. */
export const ROUTES = [
  { name: 'health', path: '/healthz', methods: ['GET'], public: true },
  { name: 'read', prefix: '/orders', methods: ['GET', 'HEAD'], scopes: ['orders:read'] },
  { name: 'write', prefix: '/orders', methods: ['POST', 'PUT', 'PATCH', 'DELETE'], scopes: ['orders:write'] },
  { name: 'admin', prefix: '/admin', scopes: ['admin'] },
  { name: 'pub', prefix: '/public', methods: ['GET'], public: true },
];

export interface Target {
  readonly app: Upstream;
  readonly sc: RunningSidecar;
  close(): Promise<void>;
}

export async function startTarget(overrides: ConfigObject = {}, handler?: UpstreamHandler): Promise<Target> {
  const app = await startUpstream(handler);
  // `upstream` overrides are merged over the app's URL and baseConfig's timeouts.
  const upstream = { url: app.url, connectTimeout: '1s', timeout: '2s', ...(overrides['upstream'] as object | undefined) };
  const sc = await startSidecar(baseConfig(pki, app.url, { routes: ROUTES, ...overrides, upstream }));
  return {
    app,
    sc,
    async close() {
      await sc.close();
      await app.close();
    },
  };
}

export const orders = (): ClientCreds => creds(pki, 'orders');
export const billing = (): ClientCreds => creds(pki, 'billing');

// ---------------------------------------------------------------------------------------------
// Measurements

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const i = Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1);
  return sorted[Math.max(0, i)] ?? Number.NaN;
}

export interface ProbeStats {
  /** Requests measured (those started at or after `since`). */
  readonly count: number;
  /** Requests made while running, measured or not (the app saw each of them). */
  readonly total: number;
  readonly statuses: Record<number, number>;
  readonly errors: string[];
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
}

/**
 * A well-behaved client on its own keep-alive connection: sequential GET /healthz every
 * `intervalMs` until stop() (and at most `maxRequests`), recording latency and status.
 * The connection is opened (and warmed) by start(), before any attack begins.
 */
export class GoodClient {
  readonly #agent: Agent;
  readonly #origin: string;
  /** [time the request started, latency], ms on performance.now(). */
  readonly #samples: Array<readonly [number, number]> = [];
  readonly #statuses: Record<number, number> = {};
  readonly #errors: string[] = [];
  #running = false;
  #loop: Promise<void> = Promise.resolve();
  #seq = 0;
  /** The five slowest requests (their x-request-id finds their audit lines). */
  readonly slowest: Array<{ id: string; ms: number }> = [];

  constructor(sc: RunningSidecar, c: ClientCreds = orders(), readonly path = '/healthz') {
    this.#agent = new Agent({ connect: tlsOptions(c), connections: 1, pipelining: 1, keepAliveTimeout: 60_000 });
    this.#origin = sc.origin;
  }

  async #once(record: boolean): Promise<void> {
    const t0 = performance.now();
    const id = `good-${this.#seq++}`;
    try {
      const res = await request(`${this.#origin}${this.path}`, {
        dispatcher: this.#agent,
        headers: { 'x-request-id': id },
        headersTimeout: 5000,
        bodyTimeout: 5000,
      });
      await res.body.dump();
      if (record) {
        const ms = performance.now() - t0;
        this.#samples.push([t0, ms]);
        this.slowest.push({ id, ms });
        this.slowest.sort((a, b) => b.ms - a.ms);
        this.slowest.length = Math.min(this.slowest.length, 5);
        this.#statuses[res.statusCode] = (this.#statuses[res.statusCode] ?? 0) + 1;
      }
    } catch (err) {
      if (record) this.#errors.push((err as Error).message);
    }
  }

  async start(intervalMs = 10, maxRequests = 2000): Promise<void> {
    // Warm the connection (TLS handshake, JIT) outside the measurement.
    for (let i = 0; i < 5; i++) await this.#once(false);
    this.#running = true;
    this.#loop = (async () => {
      for (let i = 0; i < maxRequests && this.#running; i++) {
        await this.#once(true);
        await new Promise((r) => setTimeout(r, intervalMs));
      }
    })();
  }

  /** Stop; statistics over the requests started at or after `since` (performance.now() ms). */
  async stop(since = 0): Promise<ProbeStats> {
    this.#running = false;
    await this.#loop;
    await this.#agent.close();
    const sorted = this.#samples.filter(([t0]) => t0 >= since).map(([, ms]) => ms).sort((a, b) => a - b);
    return {
      count: sorted.length,
      total: this.#samples.length + this.#errors.length,
      statuses: { ...this.#statuses },
      errors: [...this.#errors],
      p50: percentile(sorted, 50),
      p99: percentile(sorted, 99),
      max: sorted.at(-1) ?? Number.NaN,
    };
  }
}

/** Max resident set size of this process (the sidecar, the app and the clients of a test) while running. */
export class RssSampler {
  #max = 0;
  readonly #timer: NodeJS.Timeout;
  readonly start = process.memoryUsage().rss;
  constructor(everyMs = 25) {
    this.#sample();
    this.#timer = setInterval(() => this.#sample(), everyMs);
  }
  #sample(): void {
    const rss = process.memoryUsage().rss;
    if (rss > this.#max) this.#max = rss;
  }
  stop(): { startMiB: number; maxMiB: number } {
    clearInterval(this.#timer);
    this.#sample();
    return { startMiB: this.start / 2 ** 20, maxMiB: this.#max / 2 ** 20 };
  }
}

export const MiB = 2 ** 20;

/** Re-exported: the adversarial files take every helper from here. */
export { sleep, until };

// ---------------------------------------------------------------------------------------------
// Raw TLS sockets

export interface RawConn {
  readonly socket: tls.TLSSocket;
  /** Everything received so far, latin1. */
  received(): string;
  readonly closedAt: () => number | null;
  write(s: string | Buffer): Promise<boolean>;
  waitClosed(timeoutMs: number): Promise<boolean>;
  /** Wait until the received bytes satisfy `pred` (false after the bound or on close). */
  waitFor(pred: (received: string) => boolean, timeoutMs: number): Promise<boolean>;
  destroy(): void;
}

export function rawConnect(port: number, c: ClientCreds, extra: tls.ConnectionOptions = {}): Promise<RawConn> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let closedAt: number | null = null;
    const socket = tls.connect({ host: '127.0.0.1', port, ...tlsOptions(c), ...extra });
    const conn: RawConn = {
      socket,
      received: () => Buffer.concat(chunks).toString('latin1'),
      closedAt: () => closedAt,
      write: (s) =>
        socket.destroyed || !socket.writable ? Promise.resolve(false) : new Promise((r) => socket.write(s, (err) => r(err == null))),
      async waitClosed(timeoutMs) {
        const deadline = Date.now() + timeoutMs;
        while (closedAt === null) {
          if (Date.now() > deadline) return false;
          await sleep(20);
        }
        return true;
      },
      async waitFor(pred, timeoutMs) {
        const deadline = Date.now() + timeoutMs;
        for (;;) {
          if (pred(conn.received())) return true;
          if (closedAt !== null || Date.now() > deadline) return pred(conn.received());
          await sleep(10);
        }
      },
      destroy: () => socket.destroy(),
    };
    socket.on('data', (d: Buffer) => chunks.push(d));
    socket.on('close', () => {
      closedAt = performance.now();
    });
    socket.once('secureConnect', () => resolve(conn));
    // After secureConnect this is a no-op: a reset shows up as the close above.
    socket.on('error', (err: Error) => reject(err));
  });
}

export interface ParsedResponse {
  readonly status: number;
  readonly head: string;
  readonly body: string;
  /** The exact bytes of this response. */
  readonly raw: string;
}

/**
 * Every HTTP/1.1 response in a raw byte stream, framed as a client would frame them:
 * 1xx/204/304 have no body, then Content-Length, then chunked, else the body runs to the close
 * (RFC 9112 §6.3). `rest` is whatever does not parse as a response.
 */
export function parseAll(raw: string): { responses: ParsedResponse[]; rest: string } {
  const responses: ParsedResponse[] = [];
  let at = 0;
  while (raw.startsWith('HTTP/1.', at)) {
    const end = raw.indexOf('\r\n\r\n', at);
    if (end === -1) break;
    const head = raw.slice(at, end);
    const status = Number(head.slice(9, 12));
    let bodyEnd = end + 4;
    const cl = /\r\ncontent-length: *(\d+)/i.exec(head);
    if ((status >= 100 && status < 200) || status === 204 || status === 304) {
      // no body
    } else if (cl !== null) {
      bodyEnd += Number(cl[1]);
      if (bodyEnd > raw.length) break;
    } else if (/\r\ntransfer-encoding: *chunked/i.test(head)) {
      for (;;) {
        const lineEnd = raw.indexOf('\r\n', bodyEnd);
        if (lineEnd === -1) return { responses, rest: raw.slice(at) };
        const size = parseInt(raw.slice(bodyEnd, lineEnd), 16);
        if (Number.isNaN(size)) return { responses, rest: raw.slice(at) };
        bodyEnd = lineEnd + 2 + size + 2;
        if (size === 0) break;
      }
    } else {
      bodyEnd = raw.length;
    }
    responses.push({ status, head, body: raw.slice(end + 4, bodyEnd), raw: raw.slice(at, bodyEnd) });
    at = bodyEnd;
  }
  return { responses, rest: raw.slice(at) };
}

/** Status codes of every HTTP/1.1 response in a raw stream. */
export function statusLines(raw: string): number[] {
  return parseAll(raw).responses.map((r) => r.status);
}

// ---------------------------------------------------------------------------------------------
// Out-of-process attackers (flood-agent.ts)

let agentScript: Promise<string> | null = null;

/** Remove the stripped agent copies (afterAll of a file that used runAgent). */
export async function cleanupAgent(): Promise<void> {
  if (agentScript === null) return;
  const script = await agentScript;
  agentScript = null;
  await rm(path.dirname(script), { recursive: true, force: true });
}

/**
 * flood-agent.ts and h2frames.ts, type-stripped by Node itself into a temp folder as .mjs (they
 * import nothing else), so a plain `node` child process can run them. Built once per worker.
 */
function buildAgent(): Promise<string> {
  agentScript ??= (async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'mtls-sidecar-agent-'));
    const here = path.dirname(fileURLToPath(import.meta.url));
    const strip = async (name: string): Promise<string> =>
      stripTypeScriptTypes(await readFile(path.join(here, `${name}.ts`), 'utf8')).replaceAll("'./h2frames.js'", "'./h2frames.mjs'");
    await writeFile(path.join(dir, 'h2frames.mjs'), await strip('h2frames'));
    await writeFile(path.join(dir, 'flood-agent.mjs'), await strip('flood-agent'));
    return path.join(dir, 'flood-agent.mjs');
  })();
  return agentScript;
}

export type AgentOptions = Omit<AgentConfig, 'cert' | 'key' | 'ca' | 'path' | 'paceMs'> & { path?: string; paceMs?: number; creds?: ClientCreds };

/** Run one attack in a child process; resolves with its report. Killed (by pid) if it overstays. */
export async function runAgent(opts: AgentOptions): Promise<AgentReport> {
  const script = await buildAgent();
  const c = opts.creds ?? orders();
  const cfg: AgentConfig = {
    attack: opts.attack,
    port: opts.port,
    durationMs: opts.durationMs,
    maxConnections: opts.maxConnections,
    path: opts.path ?? '/orders/1',
    paceMs: opts.paceMs ?? 0,
    cert: await readFile(c.cert, 'utf8'),
    key: await readFile(c.key, 'utf8'),
    ca: await readFile(c.ca, 'utf8'),
  };
  const cfgFile = path.join(path.dirname(script), `cfg-${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2)}.json`);
  await writeFile(cfgFile, JSON.stringify(cfg), { mode: 0o600 });
  try {
    return await new Promise<AgentReport>((resolve, reject) => {
      const child = spawn(process.execPath, ['--no-warnings', script, cfgFile], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr.on('data', (d: Buffer) => (err += d.toString()));
      const killer = setTimeout(() => child.kill('SIGKILL'), opts.durationMs + 15_000);
      child.on('error', reject);
      child.on('close', (code) => {
        clearTimeout(killer);
        const line = out.trim().split('\n').at(-1) ?? '';
        if (code !== 0 || line === '') reject(new Error(`flood agent ${opts.attack} exited ${String(code)}: ${err.slice(0, 2000)}`));
        else resolve(JSON.parse(line) as AgentReport);
      });
    });
  } finally {
    await rm(cfgFile, { force: true });
  }
}

// ---------------------------------------------------------------------------------------------
// One heavy test at a time across vitest workers

const LOCK = path.join(os.tmpdir(), 'mtls-sidecar-adversarial-heavy.lock');

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * A cross-process lock for the tests that put heavy load on the box (the floods, testssl):
 * vitest runs two files at once, and two floods on a 2-core machine would starve each other. Waits (bounded by `timeoutMs`) for the lock; a lock left by a dead
 * process is taken over. Returns the release function.
 */
export async function heavyLock(timeoutMs = 240_000): Promise<() => Promise<void>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await writeFile(LOCK, String(process.pid), { flag: 'wx' });
      return () => rm(LOCK, { force: true });
    } catch {
      const holder = Number(await readFile(LOCK, 'utf8').catch(() => ''));
      if (Number.isInteger(holder) && holder > 0 && holder !== process.pid && !alive(holder)) await rm(LOCK, { force: true });
      if (Date.now() > deadline) throw new Error(`heavy-test lock ${LOCK} still held by pid ${holder} after ${timeoutMs} ms`);
      await sleep(100);
    }
  }
}
