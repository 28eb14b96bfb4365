/**
 * Prometheus metrics (SPEC §6), one registry per sidecar (injected, so tests run several).
 * Label values come only from config names plus "unknown"/"OTHER", so cardinality is bounded
 * whatever clients send. Child handles are cached per label tuple: prom-client's labels()
 * allocates on every call, the cache makes the request path a Map lookup.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { CertSummary } from '../config/snapshot.js';
import type { HandshakeReason } from '../reasons.js';

/** From about 100 µs (a refusal) to 10 s (a slow app). */
export const LATENCY_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'TRACE', 'CONNECT']);

export function methodLabel(method: string): string {
  return METHODS.has(method) ? method : 'OTHER';
}

type RequestChild = { inc(): void };
type DurationChild = { observe(v: number): void };

export class Metrics {
  readonly registry: Registry;
  readonly #requests: Counter<'identity' | 'route' | 'method' | 'code' | 'decision'>;
  readonly #requestDuration: Histogram<'identity' | 'route'>;
  readonly #upstreamDuration: Histogram<'route'>;
  readonly #handshakes: Counter<'result' | 'reason'>;
  readonly #rateLimited: Counter<'identity'>;
  readonly #rateLimitErrors: Counter<'action'>;
  readonly #certExpiry: Gauge<'cert'>;
  readonly #reloads: Counter<'result'>;
  readonly #requestChildren = new Map<string, RequestChild>();
  readonly #durationChildren = new Map<string, DurationChild>();
  readonly #upstreamChildren = new Map<string, DurationChild>();

  constructor(activeConnections: () => number, registry: Registry = new Registry()) {
    this.registry = registry;
    collectDefaultMetrics({ register: registry });
    this.#requests = new Counter({
      name: 'mtls_sidecar_requests_total',
      help: 'Requests by identity, route, method, status code and decision.',
      labelNames: ['identity', 'route', 'method', 'code', 'decision'],
      registers: [registry],
    });
    this.#requestDuration = new Histogram({
      name: 'mtls_sidecar_request_duration_seconds',
      help: 'Time from request start to response end, as seen by the sidecar.',
      labelNames: ['identity', 'route'],
      buckets: LATENCY_BUCKETS,
      registers: [registry],
    });
    this.#upstreamDuration = new Histogram({
      name: 'mtls_sidecar_upstream_duration_seconds',
      help: 'Time from forwarding a request to the app until its response headers arrive.',
      labelNames: ['route'],
      buckets: LATENCY_BUCKETS,
      registers: [registry],
    });
    this.#handshakes = new Counter({
      name: 'mtls_sidecar_tls_handshakes_total',
      help: 'TLS handshakes by result (accepted, rejected) and reason.',
      labelNames: ['result', 'reason'],
      registers: [registry],
    });
    this.#rateLimited = new Counter({
      name: 'mtls_sidecar_rate_limited_total',
      help: 'Requests refused by the rate limiter, by identity.',
      labelNames: ['identity'],
      registers: [registry],
    });
    this.#rateLimitErrors = new Counter({
      name: 'mtls_sidecar_ratelimit_backend_errors_total',
      help: 'Rate-limit decisions the backend (Redis) could not make, by what was done (allow, deny).',
      labelNames: ['action'],
      registers: [registry],
    });
    new Gauge({
      name: 'mtls_sidecar_active_connections',
      help: 'Open client connections.',
      registers: [registry],
      collect() {
        this.set(activeConnections());
      },
    });
    this.#certExpiry = new Gauge({
      name: 'mtls_sidecar_cert_expiry_timestamp_seconds',
      help: 'Not-after of the server certificate and of each client CA, as a Unix timestamp.',
      labelNames: ['cert'],
      registers: [registry],
    });
    this.#reloads = new Counter({
      name: 'mtls_sidecar_config_reloads_total',
      help: 'Configuration and certificate reloads by result (success, failure).',
      labelNames: ['result'],
      registers: [registry],
    });
    // Pre-create the series operators alert on, so they read 0 rather than being absent.
    this.#reloads.labels('success').inc(0);
    this.#reloads.labels('failure').inc(0);
    this.#handshakes.labels('accepted', 'ok').inc(0);
  }

  request(identity: string, route: string, method: string, code: number, decision: string, seconds: number, upstreamSeconds: number | null): void {
    // The key uses the bounded method label: arbitrary HTTP/2 methods must not grow the cache.
    const m = methodLabel(method);
    const key = `${identity}\u0000${route}\u0000${m}\u0000${code}\u0000${decision}`;
    let child = this.#requestChildren.get(key);
    if (child === undefined) {
      child = this.#requests.labels(identity, route, m, String(code), decision);
      this.#requestChildren.set(key, child);
    }
    child.inc();
    const dkey = `${identity}\u0000${route}`;
    let d = this.#durationChildren.get(dkey);
    if (d === undefined) {
      d = this.#requestDuration.labels(identity, route);
      this.#durationChildren.set(dkey, d);
    }
    d.observe(seconds);
    if (upstreamSeconds !== null) {
      let u = this.#upstreamChildren.get(route);
      if (u === undefined) {
        u = this.#upstreamDuration.labels(route);
        this.#upstreamChildren.set(route, u);
      }
      u.observe(upstreamSeconds);
    }
  }

  handshake(result: 'accepted' | 'rejected', reason: HandshakeReason | 'ok'): void {
    this.#handshakes.labels(result, reason).inc();
  }

  rateLimited(identity: string): void {
    this.#rateLimited.labels(identity).inc();
  }

  rateLimitBackendError(action: 'allow' | 'deny'): void {
    this.#rateLimitErrors.labels(action).inc();
  }

  reload(result: 'success' | 'failure'): void {
    this.#reloads.labels(result).inc();
  }

  /** Replace the expiry series with the certificates of the current snapshot. */
  certificates(certs: readonly CertSummary[]): void {
    this.#certExpiry.reset();
    for (const c of certs) this.#certExpiry.labels(certLabel(c)).set(Math.floor(c.notAfterMs / 1000));
  }
}

/** `server` for the serving cert; `clientCA:<CN>` (or the thumbprint's head) for each CA. */
export function certLabel(c: CertSummary): string {
  if (c.role === 'server') return 'server';
  const cn = /(?:^|, )CN=([^,]+)/.exec(c.subject)?.[1];
  return `clientCA:${cn ?? c.sha256.slice(0, 23)}`;
}
