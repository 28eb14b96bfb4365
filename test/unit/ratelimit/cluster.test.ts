import { describe, expect, it } from 'vitest';
import { clusterPrefixProblem, parseClusterSeed } from '../../../src/ratelimit/cluster.js';
import { clusterKey } from '../../../src/ratelimit/keys.js';
import { RatePlanner } from '../../../src/ratelimit/plan.js';

describe('clusterKey: the subject in a hash tag', () => {
  it.each([
    ['id/orders', '{id/orders}'],
    ['id/orders/rt/write', '{id/orders}/rt/write'],
    ['cert/' + 'ab'.repeat(32), '{cert/' + 'ab'.repeat(32) + '}'],
    ['cert/ff/rt/public-api', '{cert/ff}/rt/public-api'],
    // A route may be named "rt": only the first "/rt/" separates subject and route.
    ['id/a/rt/rt', '{id/a}/rt/rt'],
  ])('%s -> %s', (key, stored) => expect(clusterKey(key)).toBe(stored));

  it("gives every key of one plan the same tag", () => {
    const p = new RatePlanner({ default: { rps: 1, burst: 1 }, identities: new Map() });
    for (const identity of ['orders', null]) {
      const plan = p.plan(identity, 'ab'.repeat(32), { name: 'write', rateLimit: { rps: 1, burst: 1 } });
      const tags = new Set(plan?.takes.map((t) => /^\{([^}]*)\}/.exec(clusterKey(t.key))?.[1]));
      expect(plan?.takes).toHaveLength(2);
      expect(tags.size).toBe(1);
    }
  });
});

describe('parseClusterSeed', () => {
  it('reads host, port, credentials and TLS', () => {
    expect(parseClusterSeed('redis://10.0.0.1:7000')).toEqual({ ok: true, seed: { host: '10.0.0.1', port: 7000, username: undefined, password: undefined, tls: false } });
    expect(parseClusterSeed('rediss://app:p%40ss@redis.example/0')).toEqual({ ok: true, seed: { host: 'redis.example', port: 6379, username: 'app', password: 'p@ss', tls: true } });
    expect(parseClusterSeed('redis://:pw@[::1]:7001/')).toMatchObject({ ok: true, seed: { host: '::1', port: 7001, username: undefined, password: 'pw' } });
  });

  it.each([
    ['redis://10.0.0.1:7000/2', 'cluster_url_database'],
    ['redis://10.0.0.1:7000?family=6', 'cluster_url_query'],
    ['redis://', 'cluster_url_invalid'],
    ['redis://:%zz@h:1', 'cluster_url_invalid'],
    ['http://h:1', 'cluster_url_invalid'],
  ])('refuses %s (%s)', (url, code) => {
    const r = parseClusterSeed(url);
    expect(r).toMatchObject({ ok: false, code });
    if (!r.ok) expect(r.message).not.toContain('%zz');
  });
});

describe('clusterPrefixProblem', () => {
  it('accepts a prefix without braces and names the problem with one', () => {
    expect(clusterPrefixProblem('mtls-sidecar:')).toBeNull();
    expect(clusterPrefixProblem('')).toBeNull();
    for (const p of ['{app}:', 'x{}', 'a{b', 'a}b']) expect(clusterPrefixProblem(p)).toMatch(/must not contain "\{" or "\}"/);
  });
});
