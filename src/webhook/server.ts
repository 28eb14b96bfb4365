/**
 * The admission webhook's servers: HTTPS for the API server (POST /mutate, plus /healthz and
 * /metrics), and plain HTTP on the admin port for the kubelet and Prometheus (/healthz,
 * /metrics). The serving certificate is re-read when its folder changes (cert-manager's
 * Secret update, Kubernetes' symlink swap) and on an interval; a bad new pair is refused and
 * the old one keeps serving. No request, however malformed, can take the process down.
 */
import { X509Certificate, createHash } from 'node:crypto';
import { watch } from 'node:fs';
import type { FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import http from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import tls from 'node:tls';
import type { Log } from '../log.js';
import { describeError } from '../errors.js';
import type { WebhookConfig } from './config.js';
import { WebhookMetrics } from './metrics.js';
import { badRequest, review } from './review.js';
import type { ReviewOutcome } from './review.js';

export interface WebhookDeps {
  readonly log: Log;
  readonly metrics?: WebhookMetrics;
}

interface CertPair {
  readonly cert: Buffer;
  readonly key: Buffer;
  readonly digest: string;
  readonly notAfterMs: number;
}

type CertResult = { readonly ok: true; readonly pair: CertPair } | { readonly ok: false; readonly error: string };

/** Read and check a certificate and key: both parse, and the key belongs to the certificate. */
export async function readCertPair(certFile: string, keyFile: string): Promise<CertResult> {
  let cert: Buffer;
  let key: Buffer;
  try {
    [cert, key] = await Promise.all([readFile(certFile), readFile(keyFile)]);
  } catch (err) {
    return { ok: false, error: `cannot read the serving certificate or key: ${(err as NodeJS.ErrnoException).code ?? describeError(err)}` };
  }
  try {
    const x509 = new X509Certificate(cert);
    tls.createSecureContext({ cert, key }); // throws when the key does not match
    const digest = createHash('sha256').update(cert).update('\0').update(key).digest('hex');
    return { ok: true, pair: { cert, key, digest, notAfterMs: Date.parse(x509.validTo) } };
  } catch (err) {
    return { ok: false, error: `bad serving certificate or key: ${describeError(err)}` };
  }
}

export class WebhookServer {
  readonly metrics: WebhookMetrics;
  readonly #config: WebhookConfig;
  readonly #log: Log;
  readonly #https: https.Server;
  readonly #admin: http.Server;
  readonly #watchers: FSWatcher[] = [];
  #interval: NodeJS.Timeout | undefined;
  #debounce: NodeJS.Timeout | undefined;
  #current: CertPair;
  #reloading: Promise<boolean> | null = null;

  private constructor(config: WebhookConfig, pair: CertPair, deps: WebhookDeps) {
    this.#config = config;
    this.#log = deps.log;
    this.metrics = deps.metrics ?? new WebhookMetrics();
    this.#current = pair;
    this.metrics.certificate(pair.notAfterMs);
    const handler = (api: boolean) => (req: IncomingMessage, res: ServerResponse) => {
      this.#handle(req, res, api).catch((err: unknown) => {
        this.#log.error({ err: describeError(err) }, 'webhook request failed');
        if (!res.headersSent) json(res, 500, { error: 'internal' });
        else res.destroy();
      });
    };
    this.#https = https.createServer({ cert: pair.cert, key: pair.key, minVersion: 'TLSv1.2' }, handler(true));
    this.#admin = http.createServer(handler(false));
    for (const s of [this.#https, this.#admin]) {
      s.requestTimeout = config.limits.requestTimeoutMs;
      s.headersTimeout = Math.min(config.limits.requestTimeoutMs, 10_000);
      s.keepAliveTimeout = 30_000;
      s.on('clientError', (_err, socket) => socket.destroy());
    }
    this.#https.on('tlsClientError', () => undefined);
  }

  /** Reads the serving certificate, then listens; refuses to start with a bad pair. */
  static async start(config: WebhookConfig, deps: WebhookDeps): Promise<WebhookServer> {
    const first = await readCertPair(config.tls.cert, config.tls.key);
    if (!first.ok) throw Object.assign(new Error(first.error), { code: 'WEBHOOK_TLS' });
    const server = new WebhookServer(config, first.pair, deps);
    try {
      await listen(server.#https, config.listen.address, config.listen.port);
      await listen(server.#admin, config.admin.address, config.admin.port);
    } catch (err) {
      await server.close();
      throw err;
    }
    server.#watch();
    return server;
  }

  get port(): number {
    return (this.#https.address() as AddressInfo).port;
  }

  get adminPort(): number {
    return (this.#admin.address() as AddressInfo).port;
  }

  /** Re-read the pair; swap it in if it changed and is good. True when a new pair is serving. */
  reloadCertificate(): Promise<boolean> {
    // One reload at a time; a change seen meanwhile is picked up by the next event or tick.
    this.#reloading ??= this.#reload().finally(() => {
      this.#reloading = null;
    });
    return this.#reloading;
  }

  async #reload(): Promise<boolean> {
    const next = await readCertPair(this.#config.tls.cert, this.#config.tls.key);
    if (!next.ok) {
      // Mid-rotation a folder can briefly hold a new cert with the old key: count it, keep serving.
      this.metrics.reload('failure');
      this.#log.warn({ error: next.error }, 'serving certificate not reloaded; the previous one keeps serving');
      return false;
    }
    if (next.pair.digest === this.#current.digest) return false;
    this.#https.setSecureContext({ cert: next.pair.cert, key: next.pair.key, minVersion: 'TLSv1.2' });
    this.#current = next.pair;
    this.metrics.reload('success');
    this.metrics.certificate(next.pair.notAfterMs);
    this.#log.info({ notAfter: new Date(next.pair.notAfterMs).toISOString() }, 'serving certificate reloaded');
    return true;
  }

  #watch(): void {
    const dirs = new Set([path.dirname(this.#config.tls.cert), path.dirname(this.#config.tls.key)]);
    for (const dir of dirs) {
      try {
        const w = watch(dir, { persistent: false }, () => this.#schedule());
        w.on('error', () => w.close());
        this.#watchers.push(w);
      } catch (err) {
        this.#log.warn({ dir, error: describeError(err) }, 'cannot watch the certificate folder; relying on the reload interval');
      }
    }
    this.#interval = setInterval(() => void this.reloadCertificate(), this.#config.tls.reloadIntervalMs);
    this.#interval.unref();
  }

  #schedule(): void {
    clearTimeout(this.#debounce);
    this.#debounce = setTimeout(() => void this.reloadCertificate(), 100);
    this.#debounce.unref();
  }

  async close(): Promise<void> {
    clearInterval(this.#interval);
    clearTimeout(this.#debounce);
    for (const w of this.#watchers) w.close();
    await Promise.all([this.#https, this.#admin].map((s) => closeServer(s)));
    await this.#reloading;
  }

  async #handle(req: IncomingMessage, res: ServerResponse, api: boolean): Promise<void> {
    const url = req.url ?? '/';
    const p = url.split('?')[0];
    if (p === '/healthz' || p === '/metrics') {
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        json(res, 405, { error: 'method_not_allowed' });
        return;
      }
      if (p === '/healthz') {
        json(res, 200, { status: 'ok' });
        return;
      }
      const body = await this.metrics.registry.metrics();
      res.writeHead(200, { 'content-type': this.metrics.registry.contentType, 'cache-control': 'no-store' });
      res.end(body);
      return;
    }
    if (!api || p !== '/mutate') {
      json(res, 404, { error: 'not_found' });
      return;
    }
    if (req.method !== 'POST') {
      this.#reply(res, badRequest('use POST', 405), 0);
      return;
    }
    const type = req.headers['content-type'] ?? '';
    if (!/^application\/json\s*(;|$)/i.test(type)) {
      this.#reply(res, badRequest('content-type must be application/json', 415), 0);
      return;
    }
    const max = this.#config.limits.maxRequestSize;
    const declared = Number(req.headers['content-length'] ?? NaN);
    if (declared > max) {
      this.#reply(res, badRequest(`the body is larger than ${max} bytes`, 413), 0, true);
      return;
    }
    const body = await readBody(req, max);
    if (body === null) {
      this.#reply(res, badRequest(`the body is larger than ${max} bytes`, 413), 0, true);
      return;
    }
    if (body === undefined) return; // the client went away
    const started = performance.now();
    const outcome = review(body, this.#config.inject);
    this.#reply(res, outcome, (performance.now() - started) / 1000);
  }

  #reply(res: ServerResponse, outcome: ReviewOutcome, seconds: number, close = false): void {
    this.metrics.admission(outcome.result, seconds);
    const level = outcome.result === 'refused' || outcome.result === 'bad_request' ? 'warn' : 'info';
    this.#log[level]({ uid: outcome.uid, result: outcome.result, detail: outcome.detail }, 'admission');
    if (close) res.setHeader('connection', 'close');
    json(res, outcome.status, outcome.body);
  }
}

/** The body as text; null when over `max`; undefined when the client aborted. */
function readBody(req: IncomingMessage, max: number): Promise<string | null | undefined> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > max) {
        over = true;
        chunks.length = 0;
        req.pause();
        resolve(null);
        return;
      }
      if (!over) chunks.push(chunk);
    });
    req.on('end', () => {
      if (!over) resolve(Buffer.concat(chunks).toString('utf8'));
    });
    // A client that goes away mid-body: settle (the handler returns), never hang or throw.
    req.on('error', () => resolve(undefined));
    req.on('close', () => {
      if (!req.complete) resolve(undefined);
    });
  });
}

function json(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function listen(server: http.Server | https.Server, address: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, address, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

function closeServer(server: http.Server | https.Server): Promise<void> {
  return new Promise((resolve) => {
    if (!server.listening) {
      resolve();
      return;
    }
    server.close(() => resolve());
    server.closeAllConnections();
  });
}
