/**
 * Metrics keeps its hot series outside prom-client and hands them over at scrape time; the
 * exposition must stay byte-identical to what plain prom-client prints for the same calls.
 * The reference below is the previous implementation (prom-client children all the way down).
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { OpenMetricsContentType } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { LATENCY_BUCKETS, Metrics, certLabel, crlLabel, methodLabel } from '../../../src/admin/metrics.js';
import type { CertSummary, CrlFileSummary } from '../../../src/config/snapshot.js';
import type { HandshakeReason } from '../../../src/reasons.js';

/**
 * The former Metrics, verbatim except that non-finite durations are skipped: prom-client throws
 * on them, the new code drops them (and still counts the request).
 */
class ReferenceMetrics {
  readonly registry: Registry;
  readonly #requests: Counter<'identity' | 'route' | 'method' | 'code' | 'decision'>;
  readonly #requestDuration: Histogram<'identity' | 'route'>;
  readonly #upstreamDuration: Histogram<'route'>;
  readonly #handshakes: Counter<'result' | 'reason'>;
  readonly #rateLimited: Counter<'identity'>;
  readonly #rateLimitErrors: Counter<'action'>;
  readonly #outboundRequests: Counter<'destination' | 'method' | 'code'>;
  readonly #outboundDuration: Histogram<'destination'>;
  readonly #outboundHandshakes: Counter<'destination' | 'result' | 'reason'>;
  readonly #certExpiry: Gauge<'cert'>;
  readonly #crlNextUpdate: Gauge<'crl'>;
  readonly #reloads: Counter<'result'>;
  readonly #lastReloadOk: Gauge;
  readonly #lastReloadOkTime: Gauge;
  readonly #now: () => number;
  readonly #internalErrors: Counter<'where'>;

  constructor(activeConnections: () => number, registry: Registry = new Registry(), now: () => number = Date.now) {
    this.registry = registry;
    this.#now = now;
    collectDefaultMetrics({ register: registry });
    for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) registry.removeSingleMetric(name);
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
    this.#outboundRequests = new Counter({
      name: 'mtls_sidecar_outbound_requests_total',
      help: "The app's requests out through a destination, by destination, method and status code.",
      labelNames: ['destination', 'method', 'code'],
      registers: [registry],
    });
    this.#outboundDuration = new Histogram({
      name: 'mtls_sidecar_outbound_duration_seconds',
      help: 'Outbound request duration by destination, in seconds.',
      labelNames: ['destination'],
      buckets: LATENCY_BUCKETS,
      registers: [registry],
    });
    this.#outboundHandshakes = new Counter({
      name: 'mtls_sidecar_outbound_handshakes_total',
      help: "TLS handshakes with a destination's servers by destination, result (accepted, rejected) and reason.",
      labelNames: ['destination', 'result', 'reason'],
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
    this.#reloads.labels('success').inc(0);
    this.#reloads.labels('failure').inc(0);
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
    new Counter({
      name: 'mtls_sidecar_jwks_fetch_failures_total',
      help: 'Failed fetches of the JWKS URL (unreachable, not HTTP 200, too large, or not a usable JWK Set).',
      registers: [registry],
    });
    new Counter({
      name: 'mtls_sidecar_policy_would_deny_total',
      help: 'Requests served in audit mode that authorization would have refused, by identity, route and reason.',
      labelNames: ['identity', 'route', 'reason'],
      registers: [registry],
    });
    this.#handshakes.labels('accepted', 'ok').inc(0);
    for (const where of ['h1', 'h2', 'h2_frame', 'upstream', 'outbound']) this.#internalErrors.labels(where).inc(0);
  }

  request(identity: string, route: string, method: string, code: number, decision: string, seconds: number, upstreamSeconds: number | null): void {
    this.#requests.labels(identity, route, methodLabel(method), String(code), decision).inc();
    if (Number.isFinite(seconds)) this.#requestDuration.labels(identity, route).observe(seconds);
    if (upstreamSeconds !== null && Number.isFinite(upstreamSeconds)) this.#upstreamDuration.labels(route).observe(upstreamSeconds);
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
    this.#lastReloadOk.set(result === 'success' ? 1 : 0);
    if (result === 'success') this.#lastReloadOkTime.set(this.#now() / 1000);
  }

  internalError(where: 'h1' | 'h2' | 'h2_frame' | 'upstream' | 'outbound'): void {
    this.#internalErrors.labels(where).inc();
  }

  outboundRequest(destination: string, method: string, code: number, seconds: number): void {
    this.#outboundRequests.labels(destination, methodLabel(method), String(code)).inc();
    if (Number.isFinite(seconds)) this.#outboundDuration.labels(destination).observe(seconds);
  }

  outboundHandshake(destination: string, result: 'accepted' | 'rejected', reason: string): void {
    this.#outboundHandshakes.labels(destination, result, reason).inc();
  }

  certificates(certs: readonly CertSummary[]): void {
    this.#certExpiry.reset();
    for (const c of certs) this.#certExpiry.labels(certLabel(c)).set(Math.floor(c.notAfterMs / 1000));
  }

  crls(files: readonly CrlFileSummary[]): void {
    this.#crlNextUpdate.reset();
    for (const f of files) if (f.nextUpdateMs !== null) this.#crlNextUpdate.labels(crlLabel(f)).set(Math.floor(f.nextUpdateMs / 1000));
  }
}

type Sink = Pick<Metrics, 'request' | 'handshake' | 'rateLimited' | 'rateLimitBackendError' | 'reload' | 'certificates' | 'internalError' | 'crls' | 'outboundRequest' | 'outboundHandshake'>;

const CERTS = [
  { role: 'server', subject: 'CN=sidecar', sha256: 'aa:bb:cc:dd:ee:ff:00:11:22:33:44:55', notAfterMs: 1_900_000_000_123 },
  { role: 'clientCA', subject: 'O=Example, CN=Example Root', sha256: '01:02:03:04:05:06:07:08:09:0a:0b:0c', notAfterMs: 2_000_000_000_999 },
] as unknown as CertSummary[];

/** A file with a nextUpdate, and one whose CRLs have none (no series). */
const CRLS: CrlFileSummary[] = [
  { file: '/etc/mtls-sidecar/crls/root.crl.pem', nextUpdateMs: 1_800_000_000_500 },
  { file: '/etc/mtls-sidecar/crls/forever.crl', nextUpdateMs: null },
];

/** Deterministic xorshift, so a failure replays. */
function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 0x100000000;
  };
}

/** The same scripted calls for both implementations. */
function feed(m: Sink, seed = 7): void {
  const identities = ['orders', 'billing', 'unknown', 'svc:a.b-c_1'];
  const routes = ['api', 'admin', 'unknown', 'r.2'];
  const methods = ['GET', 'POST', 'HEAD', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'TRACE', 'CONNECT', 'PROPFIND', 'get', 'X-CUSTOM'];
  const codes = [200, 201, 204, 301, 400, 403, 404, 429, 500, 502, 503, 504, 0, 101];

  // Every bucket bound exactly, just above and just below it, on both histograms.
  for (const b of LATENCY_BUCKETS) {
    m.request('orders', 'api', 'GET', 200, 'allow', b, b);
    m.request('orders', 'api', 'GET', 200, 'allow', b * (1 + Number.EPSILON), b * (1 - Number.EPSILON));
  }
  // Outside the bounds: zero, tiny, negative, beyond the last bucket (+Inf only).
  m.request('billing', 'admin', 'POST', 201, 'allow', 0, 0);
  m.request('billing', 'admin', 'POST', 201, 'allow', 1e-9, 3e-7);
  m.request('billing', 'admin', 'POST', 201, 'allow', -0.001, -0);
  m.request('billing', 'admin', 'POST', 201, 'allow', 11, 1e6);
  // No upstream time (refused before forwarding), and denials.
  m.request('unknown', 'unknown', 'OTHER', 403, 'deny', 0.00012, null);
  m.request('orders', 'unknown', 'GET', 404, 'deny', 0.0002, null);
  // Unknown methods collapse into one OTHER series.
  m.request('orders', 'api', 'PROPFIND', 200, 'allow', 0.003, 0.002);
  m.request('orders', 'api', 'get', 200, 'allow', 0.003, 0.002);
  m.request('orders', 'api', 'BREW', 200, 'allow', 0.003, 0.002);
  // Non-finite durations: counted as requests, absent from the histograms; a route seen first
  // with a NaN must not get an empty series.
  m.request('nan-only', 'nan-route', 'GET', 200, 'allow', Number.NaN, Number.NaN);
  m.request('orders', 'api', 'GET', 200, 'allow', Number.NaN, 0.004);
  m.request('orders', 'api', 'GET', 200, 'allow', 0.005, Number.POSITIVE_INFINITY);
  m.request('orders', 'api', 'GET', 200, 'allow', Number.NEGATIVE_INFINITY, null);
  // Codes Node never reports, through the slow path; and an unusual decision label.
  m.request('orders', 'api', 'GET', 2.5, 'allow', 0.001, null);
  m.request('orders', 'api', 'GET', -1, 'allow', 0.001, null);
  m.request('orders', 'api', 'GET', Number.NaN, 'deny', 0.001, null);
  m.request('orders', 'api', 'GET', 4294967296, 'deny', 0.001, null);
  m.request('orders', 'api', 'GET', 200, 'maybe', 0.001, null);

  m.handshake('rejected', 'untrusted');
  m.handshake('accepted', 'ok');
  m.handshake('rejected', 'no_cert');
  m.handshake('rejected', 'untrusted');
  m.rateLimited('billing');
  m.rateLimited('orders');
  m.rateLimited('billing');
  m.rateLimitBackendError('deny');
  m.rateLimitBackendError('allow');
  m.rateLimitBackendError('deny');
  m.reload('success');
  m.internalError('h2');
  m.internalError('h1');
  m.internalError('h2');
  m.internalError('outbound');
  m.outboundRequest('billing', 'GET', 200, 0.002);
  m.outboundRequest('billing', 'BREW', 502, 0.5);
  m.outboundRequest('unknown', 'CONNECT', 405, Number.NaN);
  m.outboundRequest('billing', 'GET', 200, 0.001);
  m.outboundHandshake('billing', 'accepted', 'ok');
  m.outboundHandshake('payments', 'rejected', 'identity_mismatch');
  m.outboundHandshake('billing', 'accepted', 'ok');
  m.certificates(CERTS);
  m.crls(CRLS);

  // A bulk of random traffic: many float additions into the sums, in the same order.
  const r = rng(seed);
  const pick = <T>(a: readonly T[]): T => a[Math.floor(r() * a.length)]!;
  for (let i = 0; i < 20_000; i++) {
    const up = Math.exp(-10 + r() * 13);
    const deny = r() < 0.2;
    m.request(pick(identities), pick(routes), pick(methods), pick(codes), deny ? 'deny' : 'allow', up * 1.1 + r() * 1e-4, deny ? null : up);
    if (i % 97 === 0) m.handshake(r() < 0.5 ? 'accepted' : 'rejected', r() < 0.5 ? 'ok' : 'expired');
    if (i % 89 === 0) m.rateLimited(pick(identities));
  }
}

/** The exposition split per metric: the names in order, and the text of our own metrics. */
function ours(text: string): { names: string[]; blocks: string[] } {
  expect(text.endsWith('\n')).toBe(true);
  const all = text.slice(0, -1).split('\n\n');
  const names = all.map((b) => /^# HELP (\S+) /.exec(b)?.[1] ?? '?');
  // Process metrics move between scrapes; only the order of their blocks is comparable.
  return { names, blocks: all.filter((b) => b.startsWith('# HELP mtls_sidecar_')) };
}

function pair(): { mine: Metrics; ref: ReferenceMetrics } {
  const clock = (): number => 1_700_000_000_250;
  return { mine: new Metrics(() => 3, new Registry(), clock), ref: new ReferenceMetrics(() => 3, new Registry(), clock) };
}

describe('Metrics exposition', () => {
  it('is byte-identical to plain prom-client before any traffic', async () => {
    const { mine, ref } = pair();
    const a = ours(await mine.registry.metrics());
    const b = ours(await ref.registry.metrics());
    expect(a.names).toEqual(b.names);
    expect(a.blocks.join('\n\n')).toBe(b.blocks.join('\n\n'));
    expect(a.blocks.join('\n')).toContain('mtls_sidecar_tls_handshakes_total{result="accepted",reason="ok"} 0');
  });

  it('is byte-identical to plain prom-client for the same observations', async () => {
    const { mine, ref } = pair();
    feed(mine);
    feed(ref);
    const a = ours(await mine.registry.metrics());
    const b = ours(await ref.registry.metrics());
    expect(a.names).toEqual(b.names);
    expect(a.blocks.length).toBe(18);
    expect(a.blocks.join('\n\n')).toBe(b.blocks.join('\n\n'));
    // And per metric through the registry's single-metric path.
    for (const name of a.names.filter((n) => n.startsWith('mtls_sidecar_'))) {
      expect(await mine.registry.getSingleMetricAsString(name)).toBe(await ref.registry.getSingleMetricAsString(name));
    }
    // Spot checks that the comparison is about something.
    const text = a.blocks.join('\n');
    expect(text).toMatch(/^mtls_sidecar_request_duration_seconds_bucket\{le="0.0001",identity="orders",route="api"\} [1-9]/m);
    expect(text).toMatch(/^mtls_sidecar_upstream_duration_seconds_bucket\{le="\+Inf",route="api"\} [1-9]/m);
    expect(text).toMatch(/^mtls_sidecar_crl_next_update_timestamp_seconds\{crl="root\.crl\.pem"\} 1800000000$/m);
    expect(text).not.toContain('forever.crl');
    expect(text).toContain('mtls_sidecar_requests_total{identity="orders",route="api",method="OTHER",code="200",decision="allow"}');
    expect(text).toContain('mtls_sidecar_requests_total{identity="nan-only",route="nan-route",method="GET",code="200",decision="allow"} 1');
    expect(text).not.toContain('identity="nan-only",route="nan-route"}');
    expect(text).not.toContain('route="nan-route"}');
  });

  it('gives the same JSON (getMetricsAsJSON) as plain prom-client', async () => {
    const { mine, ref } = pair();
    feed(mine, 11);
    feed(ref, 11);
    const pick = async (r: Registry): Promise<unknown[]> => (await r.getMetricsAsJSON()).filter((m) => m.name.startsWith('mtls_sidecar_'));
    expect(await pick(mine.registry)).toStrictEqual(await pick(ref.registry));
  });

  it('stays identical after registry.resetMetrics() and more traffic', async () => {
    const { mine, ref } = pair();
    feed(mine, 3);
    feed(ref, 3);
    mine.registry.resetMetrics();
    ref.registry.resetMetrics();
    expect(ours(await mine.registry.metrics()).blocks).toEqual(ours(await ref.registry.metrics()).blocks);
    feed(mine, 5);
    feed(ref, 5);
    expect(ours(await mine.registry.metrics()).blocks.join('\n\n')).toBe(ours(await ref.registry.metrics()).blocks.join('\n\n'));
  });

  it('stays identical in OpenMetrics mode', async () => {
    const { mine, ref } = pair();
    // Metrics' type only admits Prometheus-text registries; the switch is a runtime one.
    for (const r of [mine.registry, ref.registry]) (r as unknown as Registry<OpenMetricsContentType>).setContentType(Registry.OPENMETRICS_CONTENT_TYPE);
    feed(mine, 9);
    feed(ref, 9);
    const strip = (t: string): string =>
      t
        .split('\n')
        .filter((l) => /^(# (HELP|TYPE) )?mtls_sidecar_/.test(l))
        .join('\n');
    const a = await mine.registry.metrics();
    expect(strip(a)).toBe(strip(await ref.registry.metrics()));
    expect(a).toContain('mtls_sidecar_requests_total{identity="orders"');
  });
});

describe('Metrics.request', () => {
  it('does not throw on non-finite durations and still counts the request', async () => {
    const m = new Metrics(() => 0, new Registry());
    expect(() => m.request('a', 'r', 'GET', 200, 'allow', Number.NaN, Number.NaN)).not.toThrow();
    expect(() => m.request('a', 'r', 'GET', 200, 'allow', Number.POSITIVE_INFINITY, null)).not.toThrow();
    const text = await m.registry.metrics();
    expect(text).toContain('mtls_sidecar_requests_total{identity="a",route="r",method="GET",code="200",decision="allow"} 2');
    expect(text).not.toContain('mtls_sidecar_request_duration_seconds_count{');
  });

  it('keeps the method label bounded whatever clients send', async () => {
    const m = new Metrics(() => 0, new Registry());
    for (let i = 0; i < 500; i++) m.request('a', 'r', `M${i}`, 200, 'allow', 0.001, 0.001);
    m.request('a', 'r', 'GET', 200, 'allow', 0.001, 0.001);
    const lines = (await m.registry.metrics()).split('\n').filter((l) => l.startsWith('mtls_sidecar_requests_total{'));
    expect(lines).toEqual([
      'mtls_sidecar_requests_total{identity="a",route="r",method="OTHER",code="200",decision="allow"} 500',
      'mtls_sidecar_requests_total{identity="a",route="r",method="GET",code="200",decision="allow"} 1',
    ]);
  });
});

describe('Metrics reload state', () => {
  const read = async (m: Metrics, name: string): Promise<number | undefined> => (await m.registry.getSingleMetric(name)?.get())?.values[0]?.value;

  it('reads 1 and the start time at first; a refused reload sets 0 and keeps the time; "success" sets 1 and the time', async () => {
    let clock = 1_700_000_000_000;
    const m = new Metrics(() => 0, new Registry(), () => clock);
    expect(await read(m, 'mtls_sidecar_config_last_reload_successful')).toBe(1);
    expect(await read(m, 'mtls_sidecar_config_last_reload_success_timestamp_seconds')).toBe(1_700_000_000);
    clock += 60_000;
    m.reload('failure');
    expect(await read(m, 'mtls_sidecar_config_last_reload_successful')).toBe(0);
    expect(await read(m, 'mtls_sidecar_config_last_reload_success_timestamp_seconds')).toBe(1_700_000_000);
    clock += 60_000;
    m.reload('success');
    expect(await read(m, 'mtls_sidecar_config_last_reload_successful')).toBe(1);
    expect(await read(m, 'mtls_sidecar_config_last_reload_success_timestamp_seconds')).toBe(1_700_000_120);
  });
});

describe('Metrics naming', () => {
  it('no gauge (nor anything but a counter) is named *_total, Node\'s defaults included', async () => {
    const m = new Metrics(() => 0, new Registry());
    const misnamed = (await m.registry.getMetricsAsJSON()).filter((x) => x.name.endsWith('_total') && String(x.type) !== 'counter').map((x) => x.name);
    expect(misnamed).toEqual([]);
    // What they counted is still there, by type: the labelled gauges they were the sums of.
    const names = (await m.registry.getMetricsAsJSON()).map((x) => x.name);
    expect(names).toEqual(expect.arrayContaining(['nodejs_active_handles', 'nodejs_active_requests', 'nodejs_active_resources']));
  });
});
