/**
 * Shared by the floods-*.test.ts files. Each attack runs for a
 * bounded time from a separate process (flood-agent.ts: real attackers are other machines, and
 * an attacker sharing the sidecar's event loop would measure its own TLS encryption) while a
 * well-behaved client on its own keep-alive connection sends a request every 5 ms. What these
 * tests assert is behaviour, the same on a busy machine as on a quiet one: the flood is cut (the
 * server closes the attacking connections, with GOAWAY on HTTP/2), every request of the
 * well-behaved client gets a 200 while it runs, and nothing of the attack reaches the app.
 * Latency and memory budgets under the same floods are measured on the sidecar's own process by
 * `make flood-budgets` (bench/flood-budgets.mjs), not here: this process also holds the app and
 * the client, and shares the machine with the other test files.
 *
 * Each flood gets a fresh sidecar and app. Floods (and the testssl run) hold a cross-process lock
 * (harness.ts heavyLock), so two of them never load the 2-core box at once. Every line of
 * measurements is printed, for information.
 */
import { performance } from 'node:perf_hooks';
import { afterAll, afterEach, beforeEach, expect } from 'vitest';
import type { TestContext } from 'vitest';
import type { AgentReport, Attack } from './flood-agent.js';
import { GoodClient, cleanupAgent, heavyLock, runAgent, startTarget } from './harness.js';
import { http2Engine } from '../../src/transport/listener.js';
import { ErrorCode } from './h2frames.js';
import type { ProbeStats, Target } from './harness.js';

export const DURATION_MS = 2500;
/** The well-behaved client's requests before this are not counted: the attacking process takes ~100-200 ms to start. */
const WARMUP_MS = 300;
export const MAX_STREAMS = 20;
export const MAX_CONNECTIONS = 1000;

export interface Outcome {
  readonly report: AgentReport;
  readonly good: ProbeStats;
  /** Requests that reached the app, not counting the well-behaved client's. */
  readonly appRequests: number;
  readonly target: Target;
}

/** Registers the per-test target; returns a function that runs one flood against it. */
export function floodSuite(): (ctx: TestContext, attack: Attack, maxConnections: number, paceMs?: number, durationMs?: number) => Promise<Outcome> {
  let t: Target | undefined;
  let release: (() => Promise<void>) | null = null;
  beforeEach(async () => {
    // One flood (or testssl run) at a time across vitest workers.
    release = await heavyLock();
    t = await startTarget({
      limits: {
        headersTimeout: '2s',
        requestTimeout: '4s',
        idleTimeout: '10s',
        maxHeaders: 100,
        maxHeaderSize: '16KiB',
        maxConcurrentStreams: MAX_STREAMS,
        maxConnections: MAX_CONNECTIONS,
      },
    });
  }, 300_000);
  afterEach(async () => {
    await t?.close();
    await release?.();
    release = null;
  });
  afterAll(async () => cleanupAgent());

  return async (ctx, attack, maxConnections, paceMs = 0, durationMs = DURATION_MS) => {
    if (t === undefined) throw new Error('no target');
    const target = t;
    const good = new GoodClient(target.sc);
    await good.start(5);
    const before = target.app.seen.length;
    const running = runAgent({ attack, port: target.sc.port, durationMs, maxConnections, paceMs });
    const measureFrom = performance.now() + WARMUP_MS;
    const report = await running;
    const stats = await good.stop(measureFrom);
    const out: Outcome = { report, good: stats, appRequests: target.app.seen.length - before - stats.total, target };
    const line =
      `${attack}: ${report.connections} attacking connections, ${report.sent} frames/requests, closed by server ${report.serverClosed}, ` +
      `GOAWAY ${JSON.stringify(report.goaways)}, app requests ${out.appRequests}; good client n=${stats.count} p50=${stats.p50.toFixed(1)} ` +
      `p99=${stats.p99.toFixed(1)} max=${stats.max.toFixed(1)} ms (information only: budgets are make flood-budgets)`;
    // eslint-disable-next-line no-console -- the numbers are for whoever runs it (information only)
    console.info(line);
    await ctx.annotate(line);
    return out;
  };
}

/**
 * The well-behaved client was served throughout the flood: every request it made (one at a time,
 * each given 5 s) got a 200, and some of them ran while the flood did. How many is a matter of
 * speed (~400 on a quiet machine, ~20 with the machine loaded eight times over), which
 * `make flood-budgets` measures; here only that none failed.
 */
export function goodClientServed(o: Outcome): void {
  expect(o.good.errors).toEqual([]);
  expect(o.good.statuses).toEqual({ 200: o.good.total });
  expect(o.good.count).toBeGreaterThan(0);
}

/** GOAWAY codes node:http2 (nghttp2) cuts a flood with; its session-memory limit closes without one. */
const NODE_CUT_CODES = [ErrorCode.ENHANCE_YOUR_CALM, ErrorCode.INTERNAL_ERROR, ErrorCode.PROTOCOL_ERROR].map(String);

/**
 * An HTTP/2 flood was cut: every attacking connection closed by the server, which said why. The
 * own engine with GOAWAY ENHANCE_YOUR_CALM; node:http2 (`make test` runs the HTTP/2 flood files
 * on it too, MTLS_SIDECAR_HTTP2=node) with nghttp2's code for what it refused, or none.
 */
export function cut(o: Outcome): void {
  expect(o.report.serverClosed).toBeGreaterThanOrEqual(o.report.connections - 1);
  const codes = Object.keys(o.report.goaways);
  if (http2Engine() === 'own') expect(codes).toEqual([String(ErrorCode.ENHANCE_YOUR_CALM)]);
  else expect(codes.filter((c) => !NODE_CUT_CODES.includes(c))).toEqual([]);
}
