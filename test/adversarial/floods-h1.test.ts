/**
 * HTTP/1.1 and connection floods with a well-behaved client served throughout (see
 * flood-budget.ts for the method; single-connection behaviour: exhaustion.test.ts; latency and
 * memory under the same floods: `make flood-budgets`).
 *
 * Intensity: as fast as the attacking process goes, except the two that open many connections
 * (slowloris, idle TCP): 10 connections per 50 ms / 5 ms (200/s and 2,000/s). A burst of
 * hundreds of simultaneous TLS handshakes measures CPU, not a protocol weakness: RSA-2048
 * signing costs ~1 ms per handshake on one core (an ECDSA P-256 server certificate ~10x less).
 */
import { describe, expect, it } from 'vitest';
import { MAX_CONNECTIONS, floodSuite, goodClientServed } from './flood-budget.js';

const flood = floodSuite();

describe('HTTP/1.1 and connection floods, a well-behaved client served throughout', () => {
  it('1,000 header fields per request (431)', async (ctx) => {
    const o = await flood(ctx, 'h1-many-headers', 300);
    goodClientServed(o);
    expect(o.appRequests).toBe(0);
    expect(o.report.serverClosed).toBeGreaterThanOrEqual(o.report.connections - 10);
  });

  it('slowloris: 300 connections dripping a header (headersTimeout 2 s)', async (ctx) => {
    // 8 s of attack against a 2 s headersTimeout: the connections opened first are cut well
    // within it, however slowly a busy machine opens them (2.5 s left a margin of half a second).
    const o = await flood(ctx, 'h1-slowloris', 300, 50, 8000);
    goodClientServed(o);
    expect(o.appRequests).toBe(0);
    expect(o.report.serverClosed).toBeGreaterThan(0);
  });

  it('pipelining without reading: 20 connections writing GETs as fast as they can', async (ctx) => {
    const o = await flood(ctx, 'h1-pipeline', 20);
    goodClientServed(o);
    // One request at a time per connection reaches the app (transport/h1/connection.ts: the rest wait, and
    // past maxConcurrentStreams waiting the connection is cut off).
    expect(o.appRequests).toBeLessThan(10 * o.report.connections);
    expect(o.report.serverClosed).toBeGreaterThan(0);
  });

  it('2,000 idle TCP connections that never send a ClientHello', async (ctx) => {
    const o = await flood(ctx, 'idle-tcp', 2000, 5);
    goodClientServed(o);
    expect(o.appRequests).toBe(0);
    // Past maxConnections they are closed at once, the others when the handshake times out.
    expect(o.report.serverClosed).toBeGreaterThan(0);
    expect(o.target.sc.sidecar.activeConnections).toBeLessThanOrEqual(MAX_CONNECTIONS + 1);
  });
});
