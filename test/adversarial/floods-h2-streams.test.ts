/**
 * HTTP/2 floods, part 2: HPACK bombs, header lists, rapid reset and too many streams, with a
 * well-behaved client served throughout (see flood-budget.ts for the method; frame-level
 * behaviour of each attack: h2.test.ts; CONTINUATION, SETTINGS and PING floods:
 * floods-h2-control.test.ts; latency and memory under the same floods: `make flood-budgets`).
 *
 * Intensity: as fast as the attacking process goes, except the two that get requests forwarded
 * upstream (rapid reset, stream flood), paced at 2 ms between batches (still 10,000+
 * frames/s, every attacking connection cut).
 */
import { describe, expect, it } from 'vitest';
import { RAPID_RESET_MIN } from '../../src/transport/h2/guard.js';
import { http2Engine } from '../../src/transport/listener.js';
import { MAX_STREAMS, cut, floodSuite, goodClientServed } from './flood-budget.js';

const flood = floodSuite();
/** `make test` runs this file on both HTTP/2 engines (MTLS_SIDECAR_HTTP2). */
const ENGINE = http2Engine();

describe('HTTP/2 floods (streams and header lists), a well-behaved client served throughout', () => {
  it('HPACK bomb, a new stream each time (RFC 7541 §7.3)', async (ctx) => {
    const o = await flood(ctx, 'hpack-bomb', 200);
    goodClientServed(o);
    // node:http2 refuses each such stream with RST_STREAM and keeps the connection (as h2.test.ts shows).
    if (ENGINE === 'own') cut(o);
    expect(o.appRequests).toBe(0);
  });

  it('header list of 2,000 fields per request', async (ctx) => {
    const o = await flood(ctx, 'h2-many-headers', 200);
    goodClientServed(o);
    if (ENGINE === 'own') cut(o); // node:http2: as for the HPACK bomb
    expect(o.appRequests).toBe(0);
  });

  it('rapid reset (CVE-2023-44487)', async (ctx) => {
    const o = await flood(ctx, 'rapid-reset', 200, 2);
    goodClientServed(o);
    cut(o);
    // Each connection is cut after at most maxConcurrentStreams + RAPID_RESET_MIN streams.
    expect(o.appRequests).toBeLessThanOrEqual(o.report.connections * (MAX_STREAMS + RAPID_RESET_MIN));
  });

  it('too many concurrent streams (RFC 9113 §5.1.2)', async (ctx) => {
    const o = await flood(ctx, 'streams', 200, 2);
    goodClientServed(o);
    cut(o);
    // At most maxConcurrentStreams of each connection's streams were forwarded before the cut.
    expect(o.appRequests).toBeLessThanOrEqual(o.report.connections * MAX_STREAMS);
  });
});
