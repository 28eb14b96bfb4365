/** The webhook's Prometheus metrics: its own registry (injected, so tests run several). */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { ReviewResult } from './review.js';

const RESULTS: readonly ReviewResult[] = ['injected', 'skipped', 'ignored', 'refused', 'bad_request'];

export class WebhookMetrics {
  readonly registry: Registry;
  readonly #admissions: Counter<'result'>;
  readonly #duration: Histogram;
  readonly #certExpiry: Gauge;
  readonly #reloads: Counter<'result'>;

  constructor(registry: Registry = new Registry()) {
    this.registry = registry;
    collectDefaultMetrics({ register: registry });
    this.#admissions = new Counter({
      name: 'mtls_sidecar_webhook_admissions_total',
      help: 'Admission requests by result (injected, skipped, ignored, refused, bad_request).',
      labelNames: ['result'],
      registers: [registry],
    });
    this.#duration = new Histogram({
      name: 'mtls_sidecar_webhook_admission_duration_seconds',
      help: 'Time to answer an admission request, from its last byte to the reply.',
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
      registers: [registry],
    });
    this.#certExpiry = new Gauge({
      name: 'mtls_sidecar_webhook_cert_expiry_timestamp_seconds',
      help: "Not-after of the webhook's serving certificate, as a Unix timestamp.",
      registers: [registry],
    });
    this.#reloads = new Counter({
      name: 'mtls_sidecar_webhook_cert_reloads_total',
      help: 'Serving certificate reloads by result (success, failure).',
      labelNames: ['result'],
      registers: [registry],
    });
    for (const r of RESULTS) this.#admissions.labels(r).inc(0);
    this.#reloads.labels('success').inc(0);
    this.#reloads.labels('failure').inc(0);
  }

  admission(result: ReviewResult, seconds: number): void {
    this.#admissions.labels(result).inc();
    this.#duration.observe(seconds);
  }

  certificate(notAfterMs: number): void {
    this.#certExpiry.set(Math.floor(notAfterMs / 1000));
  }

  reload(result: 'success' | 'failure'): void {
    this.#reloads.labels(result).inc();
  }
}
