import { describe, expect, it } from 'vitest';
import { rateLimitHeaders, sfString } from '../../../src/ratelimit/headers.js';
import type { AllowDecision, DenyDecision } from '../../../src/ratelimit/types.js';

// draft-ietf-httpapi-ratelimit-headers-11 §3/§4: a List of String items with Integer parameters.
const SF_ITEM = /^"(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\["\\])*"(?:;[a-z*][a-z0-9_.*-]*=\d{1,15})+$/;

describe('rateLimitHeaders', () => {
  const policy = { rps: 100, burst: 200 };

  it('allowed: policy and current limit, no Retry-After', () => {
    const d: AllowDecision = { kind: 'allow', remaining: 57, resetSeconds: 2, policy, index: 0 };
    expect(rateLimitHeaders(d, 'default')).toEqual({
      'ratelimit-policy': '"default";q=200;w=2',
      ratelimit: '"default";r=57;t=2',
    });
  });

  it('denied: r=0, t equal to Retry-After (never earlier than the effective window)', () => {
    const d: DenyDecision = { kind: 'deny', retryAfterSeconds: 3, resetSeconds: 9, policy: { rps: 0.5, burst: 5 }, index: 1 };
    expect(rateLimitHeaders(d, 'route:write')).toEqual({
      'ratelimit-policy': '"route:write";q=5;w=10',
      ratelimit: '"route:write";r=0;t=3',
      'retry-after': '3',
    });
  });

  it('values are valid structured-field items', () => {
    const d: DenyDecision = { kind: 'deny', retryAfterSeconds: 1, resetSeconds: 1, policy: { rps: 3, burst: 7 }, index: 0 };
    const h = rateLimitHeaders(d, 'identity:billing');
    expect(h['ratelimit-policy']).toMatch(SF_ITEM);
    expect(h['ratelimit']).toMatch(SF_ITEM);
    expect(h['retry-after']).toMatch(/^[1-9]\d*$/);
  });

  it('policy names are always well-formed sf-strings', () => {
    expect(sfString('default')).toBe('"default"');
    expect(sfString('a"b\\c')).toBe('"a\\"b\\\\c"');
    expect(sfString('caf\u00e9\n')).toBe('"caf??"');
    expect(rateLimitHeaders({ kind: 'allow', remaining: 0, resetSeconds: 0, policy, index: 0 }, 'x"y')['ratelimit']).toMatch(SF_ITEM);
  });
});
