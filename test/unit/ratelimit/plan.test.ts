import { describe, expect, it } from 'vitest';
import { RatePlanner } from '../../../src/ratelimit/plan.js';
import type { RateLimitSettings, RouteLimit } from '../../../src/ratelimit/plan.js';
import { isPinnedKey } from '../../../src/ratelimit/keys.js';

const DEFAULT = { rps: 100, burst: 200 };
const BILLING = { rps: 10, burst: 20 };
const WRITE = { rps: 1, burst: 5 };
const settings: RateLimitSettings = { default: DEFAULT, identities: new Map([['billing', BILLING]]) };
const read: RouteLimit = { name: 'read', rateLimit: undefined };
const write: RouteLimit = { name: 'write', rateLimit: WRITE };
const SHA = 'ab'.repeat(32);

describe('RatePlanner', () => {
  it('identity override, default, route bucket on top', () => {
    const p = new RatePlanner(settings);
    expect(p.plan('billing', SHA, read)).toEqual({ takes: [{ key: 'id/billing', bucket: BILLING }], names: ['identity:billing'] });
    expect(p.plan('orders', SHA, read)).toEqual({ takes: [{ key: 'id/orders', bucket: DEFAULT }], names: ['default'] });
    expect(p.plan('billing', SHA, write)).toEqual({
      takes: [
        { key: 'id/billing', bucket: BILLING },
        { key: 'id/billing/rt/write', bucket: WRITE },
      ],
      names: ['identity:billing', 'route:write'],
    });
  });

  it('a caller without an identity is keyed by certificate, with the default bucket', () => {
    const p = new RatePlanner(settings);
    const plan = p.plan(null, SHA, write);
    expect(plan).toEqual({
      takes: [
        { key: `cert/${SHA}`, bucket: DEFAULT },
        { key: `cert/${SHA}/rt/write`, bucket: WRITE },
      ],
      names: ['default', 'route:write'],
    });
    for (const t of plan?.takes ?? []) expect(isPinnedKey(t.key)).toBe(false);
  });

  it('identity keys are pinned, and plans for identities are built once', () => {
    const p = new RatePlanner(settings);
    const a = p.plan('orders', SHA, write);
    expect(p.plan('orders', 'cd'.repeat(32), write)).toBe(a);
    for (const t of a?.takes ?? []) expect(isPinnedKey(t.key)).toBe(true);
  });

  it('null when no bucket applies', () => {
    const none = new RatePlanner(null);
    expect(none.plan('orders', SHA, read)).toBeNull();
    expect(none.plan(null, SHA, read)).toBeNull();
    expect(none.plan('orders', SHA, write)).toEqual({ takes: [{ key: 'id/orders/rt/write', bucket: WRITE }], names: ['route:write'] });
    const overridesOnly = new RatePlanner({ default: undefined, identities: new Map([['billing', BILLING]]) });
    expect(overridesOnly.plan('orders', SHA, read)).toBeNull();
    expect(overridesOnly.plan(null, SHA, read)).toBeNull();
    expect(RatePlanner.inert(null, [read])).toBe(true);
    expect(RatePlanner.inert(null, [read, write])).toBe(false);
    expect(RatePlanner.inert(settings, [read])).toBe(false);
  });
});
