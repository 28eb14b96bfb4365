/**
 * HTTP/2 floods, part 1: CONTINUATION, SETTINGS and PING, with a well-behaved client served
 * throughout (see flood-budget.ts for the method; frame-level behaviour of each attack:
 * h2.test.ts; the other HTTP/2 floods: floods-h2-streams.test.ts; latency and memory under the
 * same floods: `make flood-budgets`). As fast as the attacking process goes.
 */
import { describe, expect, it } from 'vitest';
import { cut, floodSuite, goodClientServed } from './flood-budget.js';

const flood = floodSuite();

describe('HTTP/2 control-frame floods, a well-behaved client served throughout', () => {
  it('CONTINUATION flood (CVE-2024-27316)', async (ctx) => {
    const o = await flood(ctx, 'continuation', 200);
    goodClientServed(o);
    cut(o);
    expect(o.appRequests).toBe(0);
  });

  it('SETTINGS flood (CVE-2019-9515)', async (ctx) => {
    const o = await flood(ctx, 'settings', 200);
    goodClientServed(o);
    cut(o);
    expect(o.appRequests).toBe(0);
  });

  it('PING flood (CVE-2019-9512)', async (ctx) => {
    const o = await flood(ctx, 'ping', 200);
    goodClientServed(o);
    cut(o);
    expect(o.appRequests).toBe(0);
  });
});
