/**
 * HTTP/1.1 and connection floods with a well-behaved client and memory measured throughout (see
 * flood-budget.ts for the method and budgets; single-connection behaviour: exhaustion.test.ts).
 *
 * Intensity: as fast as the attacking process goes, except the two that open many connections
 * (slowloris, idle TCP): 10 connections per 50 ms / 5 ms (200/s and 2,000/s). A burst of
 * hundreds of simultaneous TLS handshakes measures CPU, not a protocol weakness: RSA-2048
 * signing costs ~1 ms per handshake on one core (an ECDSA P-256 server certificate ~10x less).
 */
import { describe, expect, it } from 'vitest';
import { FLOOD_RETRY, MAX_CONNECTIONS, floodSuite, withinBudget } from './flood-budget.js';

const flood = floodSuite();

describe('HTTP/1.1 and connection floods, a well-behaved client measured throughout', { retry: FLOOD_RETRY }, () => {
  it('1,000 header fields per request (431)', async (ctx) => {
    const o = await flood(ctx, 'h1-many-headers', 300);
    withinBudget(o);
    expect(o.appRequests).toBe(0);
    expect(o.report.serverClosed).toBeGreaterThanOrEqual(o.report.connections - 10);
  });

  it('slowloris: 300 connections dripping a header (headersTimeout 2 s)', async (ctx) => {
    const o = await flood(ctx, 'h1-slowloris', 300, 50);
    withinBudget(o);
    expect(o.appRequests).toBe(0);
    // The connections opened first are already cut within the 2.5 s attack.
    expect(o.report.serverClosed).toBeGreaterThan(0);
  });

  it('pipelining without reading: 20 connections writing GETs as fast as they can', async (ctx) => {
    const o = await flood(ctx, 'h1-pipeline', 20);
    withinBudget(o);
    // One request at a time per connection reaches the app (server/h1.ts: the rest wait, or cut the connection off).
    expect(o.appRequests).toBeLessThan(10 * o.report.connections);
  });

  it('2,000 idle TCP connections that never send a ClientHello', async (ctx) => {
    const o = await flood(ctx, 'idle-tcp', 2000, 5);
    withinBudget(o);
    expect(o.target.sc.sidecar.activeConnections).toBeLessThanOrEqual(MAX_CONNECTIONS + 1);
  });
});
