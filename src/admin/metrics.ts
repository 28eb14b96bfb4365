/**
 * Prometheus metrics (SPEC §6), one registry per sidecar (injected, so tests run several).
 * Label values come only from config names plus "unknown"/"OTHER", so cardinality is bounded
 * whatever clients send.
 *
 * The series bumped per request or per connection (requests, durations, handshakes, rate
 * limiting) live in plain objects found by Map lookups on the strings the caller already holds:
 * prom-client's own inc()/observe() validate, hash and wrap the labels on every call, which cost
 * microseconds per request. They are turned into prom-client's value shape only at scrape time,
 * so the exposition is exactly what prom-client would print for the same observations
 * (test/unit/admin/metrics.test.ts compares the two). Rare series (reloads, certificate expiry,
 * open connections) and the process metrics stay plain prom-client.
 */
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { Metric } from 'prom-client';
import path from 'node:path';
import type { CertSummary, CrlFileSummary } from '../config/snapshot.js';
import type { HandshakeReason, OutboundHandshakeReason } from '../reasons.js';
import type { InternalErrorWhere } from '../transport/listener.js';

/** From about 100 µs (a refusal) to 10 s (a slow app). */
export const LATENCY_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/**
 * Node's default gauges whose names end in `_total`: promtool check metrics refuses a gauge named
 * like a counter. Each is the sum of the labelled gauge of the same name without the suffix
 * (nodejs_active_handles{type}, ...), so dropping them loses nothing: sum(nodejs_active_handles)
 * is the same number.
 */
const GAUGES_NAMED_TOTAL = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];

const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'TRACE', 'CONNECT']);

export function methodLabel(method: string): string {
  return METHODS.has(method) ? method : 'OTHER';
}

/** Method label by index; the last one is OTHER, so any method maps to one of 10 values. */
const METHOD_LABELS = [...METHODS, 'OTHER'];
const OTHER_INDEX = METHOD_LABELS.length - 1;
const METHOD_INDEX = new Map(METHOD_LABELS.slice(0, OTHER_INDEX).map((m, i) => [m, i]));

type Labels = Readonly<Record<string, string>>;

/** Every `where` of mtls_sidecar_internal_errors_total, pre-created at 0. */
const INTERNAL_ERROR_WHERE: readonly InternalErrorWhere[] = ['h1', 'h2', 'h2_frame', 'upstream', 'outbound'];

/** One counter series, in prom-client's Counter value shape. */
interface CounterSeries {
  value: number;
  readonly labels: Labels;
}

/** A sample line as prom-client's Histogram hands it to the registry (lib/histogram.js setValuePair). */
interface HistogramSample {
  labels: Record<string, string | number>;
  sharedLabels: Labels;
  value: number;
  metricName: string;
  exemplar: null | undefined;
}

/** prom-client's MetricObjectWithValues, as its Counter.get()/Histogram.get() return it. */
interface MetricData<V> {
  name: string;
  help: string;
  type: 'counter' | 'histogram';
  values: V[];
  aggregator: 'sum';
}

/**
 * What the Registry needs of a metric (prom-client 15 lib/registry.js): `name`, `type`, get() or
 * getForPromString() for the exposition and JSON, reset() for resetMetrics(). That is all it
 * calls, so registering these objects through a cast is safe; the one thing they lack is the
 * labels()/inc() API a caller of registry.getSingleMetric() might try, and nothing does that.
 */
abstract class ScrapeTimeMetric {
  /** Mutable: registry.metrics() strips `_total` off counter names in OpenMetrics mode. */
  name: string;
  readonly help: string;
  readonly aggregator = 'sum' as const;
  readonly #onReset: () => void;

  constructor(registry: Registry, name: string, help: string, onReset: () => void) {
    this.name = name;
    this.help = help;
    this.#onReset = onReset;
    registry.registerMetric(this as unknown as Metric);
  }

  /** Like prom-client's reset() of a labelled metric: every series goes, including pre-created ones. */
  reset(): void {
    this.clear();
    this.#onReset();
  }

  protected abstract clear(): void;
}

class ScrapeTimeCounter extends ScrapeTimeMetric {
  readonly type = 'counter' as const;
  /** In creation order, which is the order prom-client prints (insertion order of its hashMap). */
  #series: CounterSeries[] = [];

  /** A new series at 0; the caller keeps it and bumps `value`. */
  series(labels: Labels): CounterSeries {
    const s: CounterSeries = { value: 0, labels };
    this.#series.push(s);
    return s;
  }

  // Same key order and shape as prom-client's Counter.get().
  get(): Promise<MetricData<CounterSeries>> {
    return Promise.resolve({
      help: this.help,
      name: this.name,
      type: this.type,
      values: this.#series.map((s) => ({ value: s.value, labels: s.labels })),
      aggregator: this.aggregator,
    });
  }

  protected clear(): void {
    this.#series = [];
  }
}

const BOUNDS = Float64Array.from(LATENCY_BUCKETS);
const NB = BOUNDS.length;

/** One histogram series: per-bucket (not cumulative) counts, like prom-client's bucketValues. */
class HistogramSeries {
  readonly counts = new Float64Array(NB);
  sum = 0;
  count = 0;
  constructor(readonly labels: Labels) {}

  /** `v` must be finite (prom-client throws otherwise; callers here drop it instead). */
  observe(v: number): void {
    // prom-client's findBound: the first bound >= v; above the last, only +Inf (count) sees it.
    let i = 0;
    while (i < NB && v > BOUNDS[i]!) i++;
    if (i < NB) this.counts[i]!++;
    this.sum += v;
    this.count += 1;
  }
}

class ScrapeTimeHistogram extends ScrapeTimeMetric {
  readonly type = 'histogram' as const;
  #series: HistogramSeries[] = [];

  series(labels: Labels): HistogramSeries {
    const s = new HistogramSeries(labels);
    this.#series.push(s);
    return s;
  }

  // The lines prom-client builds (extractBucketValuesForExport + addSumAndCountForExport):
  // cumulative buckets with a numeric `le`, then +Inf (= count), _sum and _count.
  getForPromString(): Promise<MetricData<HistogramSample>> {
    const bucket = `${this.name}_bucket`;
    const sum = `${this.name}_sum`;
    const count = `${this.name}_count`;
    const values: HistogramSample[] = [];
    for (const s of this.#series) {
      let acc = 0;
      for (let i = 0; i < NB; i++) {
        acc += s.counts[i]!;
        values.push({ labels: { le: LATENCY_BUCKETS[i]! }, sharedLabels: s.labels, value: acc, metricName: bucket, exemplar: null });
      }
      values.push(
        { labels: { le: '+Inf' }, sharedLabels: s.labels, value: s.count, metricName: bucket, exemplar: null },
        { labels: {}, sharedLabels: s.labels, value: s.sum, metricName: sum, exemplar: undefined },
        { labels: {}, sharedLabels: s.labels, value: s.count, metricName: count, exemplar: undefined },
      );
    }
    return Promise.resolve({ name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator });
  }

  // prom-client's Histogram.get(): the same samples with the series labels merged in (splayLabels).
  async get(): Promise<MetricData<Omit<HistogramSample, 'sharedLabels'>>> {
    const data = await this.getForPromString();
    return {
      ...data,
      values: data.values.map(({ sharedLabels, labels, ...rest }) => ({ ...rest, labels: Object.assign(labels, sharedLabels) })),
    };
  }

  protected clear(): void {
    this.#series = [];
  }
}

/** The series of one identity/route pair. */
class RouteEntry {
  /** Request counters by packed (code, decision, method): see Metrics.request. */
  readonly counts = new Map<number, CounterSeries>();
  /** Counters for a code that is not a uint32 (Node never reports one; kept so nothing is lost). */
  odd: Map<string, CounterSeries> | null = null;
  duration: HistogramSeries | null = null;
}

/** The outbound series of one destination. */
class OutboundEntry {
  readonly counts = new Map<number, CounterSeries>();
  duration: HistogramSeries | null = null;
}

/** Above this many distinct decisions the packed key would overflow its bits; such calls take the slow path. */
const MAX_PACKED_DECISIONS = 4096;

export class Metrics {
  readonly registry: Registry;
  readonly #requests: ScrapeTimeCounter;
  readonly #requestDuration: ScrapeTimeHistogram;
  readonly #upstreamDuration: ScrapeTimeHistogram;
  readonly #handshakes: ScrapeTimeCounter;
  readonly #rateLimited: ScrapeTimeCounter;
  readonly #rateLimitErrors: ScrapeTimeCounter;
  readonly #certExpiry: Gauge<'cert'>;
  readonly #crlNextUpdate: Gauge<'crl'>;
  readonly #reloads: Counter<'result'>;
  readonly #lastReloadOk: Gauge;
  readonly #lastReloadOkTime: Gauge;
  readonly #jwksFetchFailures: Counter;
  readonly #internalErrors: Counter<'where'>;
  readonly #wouldDeny: Counter<'identity' | 'route' | 'reason'>;
  readonly #outboundRequests: ScrapeTimeCounter;
  readonly #outboundDuration: ScrapeTimeHistogram;
  readonly #outboundHandshakes: ScrapeTimeCounter;
  /** destination → (method index, code) → series; destination names come from the config. */
  readonly #outbound = new Map<string, OutboundEntry>();
  readonly #outboundHandshakeSeries = new Map<string, CounterSeries>();
  /** identity → route → series: two lookups on the (interned config-name) strings, no key building. */
  readonly #routes = new Map<string, Map<string, RouteEntry>>();
  readonly #upstreamByRoute = new Map<string, HistogramSeries>();
  readonly #handshakeSeries = new Map<string, Map<string, CounterSeries>>();
  readonly #rateLimitedSeries = new Map<string, CounterSeries>();
  readonly #rateLimitErrorSeries = new Map<string, CounterSeries>();
  /** Decision label → small integer for the packed key; callers only pass allow/deny. */
  readonly #decisions = new Map<string, number>([
    ['allow', 0],
    ['deny', 1],
  ]);

  readonly #now: () => number;

  /** `now`: wall clock (ms) of the reload timestamps; injected so tests can compare expositions. */
  constructor(activeConnections: () => number, registry: Registry = new Registry(), now: () => number = Date.now) {
    this.registry = registry;
    this.#now = now;
    collectDefaultMetrics({ register: registry });
    for (const name of GAUGES_NAMED_TOTAL) registry.removeSingleMetric(name);
    // Registration order is exposition order: keep it as it always was.
    this.#requests = new ScrapeTimeCounter(registry, 'mtls_sidecar_requests_total', 'Requests by identity, route, method, status code and decision.', () => {
      for (const byRoute of this.#routes.values()) {
        for (const e of byRoute.values()) {
          e.counts.clear();
          e.odd = null;
        }
      }
    });
    this.#requestDuration = new ScrapeTimeHistogram(
      registry,
      'mtls_sidecar_request_duration_seconds',
      'Time from request start to response end, as seen by the sidecar.',
      () => {
        for (const byRoute of this.#routes.values()) for (const e of byRoute.values()) e.duration = null;
      },
    );
    this.#upstreamDuration = new ScrapeTimeHistogram(
      registry,
      'mtls_sidecar_upstream_duration_seconds',
      'Time from forwarding a request to the app until its response headers arrive.',
      () => this.#upstreamByRoute.clear(),
    );
    this.#handshakes = new ScrapeTimeCounter(registry, 'mtls_sidecar_tls_handshakes_total', 'TLS handshakes by result (accepted, rejected) and reason.', () =>
      this.#handshakeSeries.clear(),
    );
    this.#rateLimited = new ScrapeTimeCounter(registry, 'mtls_sidecar_rate_limited_total', 'Requests refused by the rate limiter, by identity.', () =>
      this.#rateLimitedSeries.clear(),
    );
    this.#rateLimitErrors = new ScrapeTimeCounter(
      registry,
      'mtls_sidecar_ratelimit_backend_errors_total',
      'Rate-limit decisions the backend (Redis) could not make, by what was done (allow, deny).',
      () => this.#rateLimitErrorSeries.clear(),
    );
    this.#outboundRequests = new ScrapeTimeCounter(
      registry,
      'mtls_sidecar_outbound_requests_total',
      "The app's requests out through a destination, by destination, method and status code.",
      () => {
        for (const e of this.#outbound.values()) e.counts.clear();
      },
    );
    this.#outboundDuration = new ScrapeTimeHistogram(registry, 'mtls_sidecar_outbound_duration_seconds', 'Outbound request duration by destination, in seconds.', () => {
      for (const e of this.#outbound.values()) e.duration = null;
    });
    this.#outboundHandshakes = new ScrapeTimeCounter(
      registry,
      'mtls_sidecar_outbound_handshakes_total',
      "TLS handshakes with a destination's servers by destination, result (accepted, rejected) and reason.",
      () => this.#outboundHandshakeSeries.clear(),
    );
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
    this.#crlNextUpdate = new Gauge({
      name: 'mtls_sidecar_crl_next_update_timestamp_seconds',
      help: 'nextUpdate of each CRL file (the earliest of the CRLs in it), as a Unix timestamp: past it, the clients its CRLs cover are refused (crl_expired).',
      labelNames: ['crl'],
      registers: [registry],
    });
    this.#reloads = new Counter({
      name: 'mtls_sidecar_config_reloads_total',
      help: 'Configuration and certificate reloads by result (success, failure).',
      labelNames: ['result'],
      registers: [registry],
    });
    this.#internalErrors = new Counter({
      name: 'mtls_sidecar_internal_errors_total',
      help: 'Bugs caught in request handling, by where (h1, h2, upstream, outbound: the request got a 500 or was cut; h2_frame: the connection was closed).',
      labelNames: ['where'],
      registers: [registry],
    });
    // Pre-create the series operators alert on, so they read 0 rather than being absent.
    this.#reloads.labels('success').inc(0);
    this.#reloads.labels('failure').inc(0);
    // As Prometheus exposes for its own config: the sidecar started on a good config, so 1 and now.
    this.#lastReloadOk = new Gauge({
      name: 'mtls_sidecar_config_last_reload_successful',
      help: 'Whether the last configuration reload attempt succeeded (1) or was refused (0).',
      registers: [registry],
    });
    this.#lastReloadOkTime = new Gauge({
      name: 'mtls_sidecar_config_last_reload_success_timestamp_seconds',
      help: 'Time of the last successful configuration reload (or of the start), as a Unix timestamp.',
      registers: [registry],
    });
    this.#lastReloadOk.set(1);
    this.#lastReloadOkTime.set(now() / 1000);
    this.#jwksFetchFailures = new Counter({
      name: 'mtls_sidecar_jwks_fetch_failures_total',
      help: 'Failed fetches of the JWKS URL (unreachable, not HTTP 200, too large, or not a usable JWK Set).',
      registers: [registry],
    });
    // Per request only in audit mode (a rollout phase), so prom-client's own counter is enough.
    this.#wouldDeny = new Counter({
      name: 'mtls_sidecar_policy_would_deny_total',
      help: 'Requests served in audit mode that authorization would have refused, by identity, route and reason.',
      labelNames: ['identity', 'route', 'reason'],
      registers: [registry],
    });
    this.#handshakeSeriesFor('accepted', 'ok');
    for (const where of INTERNAL_ERROR_WHERE) this.#internalErrors.labels(where).inc(0);
  }

  /**
   * Non-finite durations (NaN from a broken clock source, say) are dropped from the histograms
   * rather than throwing as prom-client would; the request is still counted.
   */
  request(identity: string, route: string, method: string, code: number, decision: string, seconds: number, upstreamSeconds: number | null): void {
    let byRoute = this.#routes.get(identity);
    if (byRoute === undefined) {
      byRoute = new Map();
      this.#routes.set(identity, byRoute);
    }
    let e = byRoute.get(route);
    if (e === undefined) {
      e = new RouteEntry();
      byRoute.set(route, e);
    }
    // Keyed by the bounded method label (its index): arbitrary HTTP/2 methods must not add series.
    const mi = METHOD_INDEX.get(method) ?? OTHER_INDEX;
    const di = decision === 'allow' ? 0 : decision === 'deny' ? 1 : this.#decisionIndex(decision);
    if (code >>> 0 === code && di < MAX_PACKED_DECISIONS) {
      // code < 2^32, di < 2^12, mi < 2^4: the product stays below 2^48, exact in a double.
      const key = (code * MAX_PACKED_DECISIONS + di) * 16 + mi;
      let c = e.counts.get(key);
      if (c === undefined) {
        c = this.#requestSeries(identity, route, mi, code, decision);
        e.counts.set(key, c);
      }
      c.value += 1;
    } else {
      this.#oddRequest(e, identity, route, mi, code, decision);
    }
    if (Number.isFinite(seconds)) {
      let d = e.duration;
      if (d === null) {
        d = this.#requestDuration.series({ identity, route });
        e.duration = d;
      }
      d.observe(seconds);
    }
    if (upstreamSeconds !== null && Number.isFinite(upstreamSeconds)) {
      let u = this.#upstreamByRoute.get(route);
      if (u === undefined) {
        u = this.#upstreamDuration.series({ route });
        this.#upstreamByRoute.set(route, u);
      }
      u.observe(upstreamSeconds);
    }
  }

  /** One outbound request (any outcome); `seconds` non-finite: counted, not timed. */
  outboundRequest(destination: string, method: string, code: number, seconds: number): void {
    let e = this.#outbound.get(destination);
    if (e === undefined) {
      e = new OutboundEntry();
      this.#outbound.set(destination, e);
    }
    const mi = METHOD_INDEX.get(method) ?? OTHER_INDEX;
    // code < 2^32 (status codes are 3 digits), mi < 2^4: exact in a double.
    const key = code * 16 + mi;
    let c = e.counts.get(key);
    if (c === undefined) {
      c = this.#outboundRequests.series({ destination, method: METHOD_LABELS[mi]!, code: String(code) });
      e.counts.set(key, c);
    }
    c.value += 1;
    if (Number.isFinite(seconds)) {
      e.duration ??= this.#outboundDuration.series({ destination });
      e.duration.observe(seconds);
    }
  }

  outboundHandshake(destination: string, result: 'accepted' | 'rejected', reason: OutboundHandshakeReason | 'ok'): void {
    const key = `${destination}\u0000${result}\u0000${reason}`;
    let s = this.#outboundHandshakeSeries.get(key);
    if (s === undefined) {
      s = this.#outboundHandshakes.series({ destination, result, reason });
      this.#outboundHandshakeSeries.set(key, s);
    }
    s.value += 1;
  }

  handshake(result: 'accepted' | 'rejected', reason: HandshakeReason | 'ok'): void {
    this.#handshakeSeriesFor(result, reason).value += 1;
  }

  rateLimited(identity: string): void {
    let s = this.#rateLimitedSeries.get(identity);
    if (s === undefined) {
      s = this.#rateLimited.series({ identity });
      this.#rateLimitedSeries.set(identity, s);
    }
    s.value += 1;
  }

  rateLimitBackendError(action: 'allow' | 'deny'): void {
    let s = this.#rateLimitErrorSeries.get(action);
    if (s === undefined) {
      s = this.#rateLimitErrors.series({ action });
      this.#rateLimitErrorSeries.set(action, s);
    }
    s.value += 1;
  }

  /** A reload attempt: counted, and the last-reload gauges set ("unchanged" is a success). */
  reload(result: 'success' | 'failure'): void {
    this.#reloads.labels(result).inc();
    this.#lastReloadOk.set(result === 'success' ? 1 : 0);
    if (result === 'success') this.#lastReloadOkTime.set(this.#now() / 1000);
  }

  /** policy.mode audit: a request authorization would have refused, served. */
  policyWouldDeny(identity: string, route: string, reason: string): void {
    this.#wouldDeny.labels(identity, route, reason).inc();
  }

  jwksFetchFailure(): void {
    this.#jwksFetchFailures.inc();
  }

  /**
   * The audit sink's backlog, failed writes and lost lines (SPEC §6), read from the sink at
   * scrape time: the sink counts in plain fields, nothing is bumped per request here.
   */
  auditSink(sink: { readonly bufferedBytes: number; readonly writeErrors: number; readonly linesDropped: number }): void {
    const registers = [this.registry];
    new Gauge({
      name: 'mtls_sidecar_audit_buffered_bytes',
      help: 'Audit lines held in memory, not yet taken by the audit destination (bytes; bounded).',
      registers,
      collect() {
        this.set(sink.bufferedBytes);
      },
    });
    new Counter({
      name: 'mtls_sidecar_audit_write_errors_total',
      help: 'Failed writes to the audit destination (a failing destination is retried every 250 ms).',
      registers,
      collect() {
        this.reset();
        this.inc(sink.writeErrors);
      },
    });
    new Counter({
      name: 'mtls_sidecar_audit_lines_dropped_total',
      help: 'Audit lines never written: no room in the buffer, the destination gone, or left at shutdown.',
      registers,
      collect() {
        this.reset();
        this.inc(sink.linesDropped);
      },
    });
  }

  internalError(where: InternalErrorWhere): void {
    this.#internalErrors.labels(where).inc();
  }

  /** Replace the expiry series with the certificates of the current snapshot. */
  certificates(certs: readonly CertSummary[]): void {
    this.#certExpiry.reset();
    for (const c of certs) this.#certExpiry.labels(certLabel(c)).set(Math.floor(c.notAfterMs / 1000));
  }

  /** Replace the CRL freshness series with the CRL files of the current snapshot. */
  crls(files: readonly CrlFileSummary[]): void {
    this.#crlNextUpdate.reset();
    const earliest = new Map<string, number>();
    for (const f of files) {
      if (f.nextUpdateMs === null) continue;
      // Two files may share a basename: the series shows the one that goes stale first.
      const label = crlLabel(f);
      earliest.set(label, Math.min(earliest.get(label) ?? Infinity, f.nextUpdateMs));
    }
    for (const [label, ms] of earliest) this.#crlNextUpdate.labels(label).set(Math.floor(ms / 1000));
  }

  #requestSeries(identity: string, route: string, mi: number, code: number, decision: string): CounterSeries {
    // Label order and the stringified code are what prom-client's labels(...) produced.
    return this.#requests.series({ identity, route, method: METHOD_LABELS[mi]!, code: String(code), decision });
  }

  #oddRequest(e: RouteEntry, identity: string, route: string, mi: number, code: number, decision: string): void {
    e.odd ??= new Map();
    const key = `${String(code)}\u0000${decision}\u0000${mi}`;
    let c = e.odd.get(key);
    if (c === undefined) {
      c = this.#requestSeries(identity, route, mi, code, decision);
      e.odd.set(key, c);
    }
    c.value += 1;
  }

  #decisionIndex(decision: string): number {
    let i = this.#decisions.get(decision);
    if (i === undefined) {
      i = this.#decisions.size;
      this.#decisions.set(decision, i);
    }
    return i;
  }

  #handshakeSeriesFor(result: string, reason: string): CounterSeries {
    let byReason = this.#handshakeSeries.get(result);
    if (byReason === undefined) {
      byReason = new Map();
      this.#handshakeSeries.set(result, byReason);
    }
    let s = byReason.get(reason);
    if (s === undefined) {
      s = this.#handshakes.series({ result, reason });
      byReason.set(reason, s);
    }
    return s;
  }
}

/**
 * `server` for the serving cert, `outbound` for the workload cert presented to destinations,
 * `clientCA:<CN>` / `outboundCA:<CN>` (or the thumbprint's head) for each CA.
 */
export function certLabel(c: CertSummary): string {
  if (c.role === 'server' || c.role === 'outbound') return c.role;
  const cn = /(?:^|, )CN=([^,]+)/.exec(c.subject)?.[1];
  return `${c.role}:${cn ?? c.sha256.slice(0, 23)}`;
}

/** The CRL file's name without its folder: bounded by the config, stable across mounts. */
export function crlLabel(f: CrlFileSummary): string {
  return path.basename(f.file);
}
