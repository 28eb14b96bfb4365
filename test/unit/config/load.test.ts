import { describe, expect, it } from 'vitest';
import { parseConfigText } from '../../../src/config/load.js';
import { parseDuration, parseSize } from '../../../src/config/units.js';

const GOOD = `version: 1
tls:
  cert: server.crt
  key: server.key
  clientCAs: [ca.crt]
routes:
  - { name: health, path: /healthz, public: true }
`;

function issues(text: string): Array<{ path: string; line: number; col: number; message: string }> {
  const r = parseConfigText(text);
  if (r.ok) return [];
  return r.issues.map((i) => ({ path: i.path, line: i.line, col: i.col, message: i.message }));
}

describe('config loading', () => {
  it('accepts a minimal config and fills the defaults', () => {
    const r = parseConfigText(GOOD);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.raw.listen).toEqual({ address: '0.0.0.0', port: 8443, http2: true });
    expect(r.raw.limits.maxBodySize).toBe(1024 * 1024);
    expect(r.raw.limits.headersTimeout).toBe(10_000);
    expect(r.raw.upstream.url).toBe('http://127.0.0.1:8080');
    expect(r.raw.shutdown).toEqual({ drainDelay: 5000, timeout: 25_000 });
  });

  it('names an unknown key with its path and line:col', () => {
    const text = GOOD.replace('  key: server.key\n', '  key: server.key\n  certt: oops\n');
    expect(issues(text)).toEqual([{ path: 'tls.certt', line: 5, col: 3, message: 'unknown key "certt"' }]);
  });

  it('names a wrong type at the value', () => {
    const text = `${GOOD}listen: { port: "eighty" }\n`;
    const [i] = issues(text);
    expect(i).toMatchObject({ path: 'listen.port', line: 8, col: 17 });
    expect(i?.message).toMatch(/number/);
  });

  it('rejects a bad duration and a bad size where they are written', () => {
    const text = `${GOOD}limits:\n  requestTimeout: 5x\n  maxBodySize: lots\n`;
    const found = issues(text);
    expect(found).toHaveLength(2);
    expect(found.find((i) => i.path === 'limits.requestTimeout')).toMatchObject({ line: 9, col: 19 });
    expect(found.find((i) => i.path === 'limits.maxBodySize')).toMatchObject({ line: 10, col: 16 });
  });

  it('reports a missing required key at its parent', () => {
    const text = 'version: 1\ntls:\n  cert: a.crt\n  clientCAs: [ca.crt]\n';
    const [i] = issues(text);
    expect(i).toMatchObject({ path: 'tls.key', line: 3 });
    expect(i?.message).toMatch(/required/);
  });

  it('reports a route with two matchers and one with none', () => {
    const text = `${GOOD}  - { name: both, path: /a, prefix: /a }\n  - { name: none, methods: [GET] }\n`;
    const found = issues(text);
    expect(found.map((i) => [i.path, i.line])).toEqual([
      ['routes[1]', 8],
      ['routes[2]', 9],
    ]);
  });

  it('rejects invalid YAML with the line of the problem', () => {
    const [i] = issues('version: 1\ntls:\n  cert: [unclosed\n');
    expect(i?.line).toBeGreaterThanOrEqual(3);
  });

  it('rejects duplicate identity names and rate limits for unknown identities', () => {
    const text = `${GOOD}identities:\n  - { name: a, match: { cn: a } }\n  - { name: a, match: { cn: b } }\nrateLimit:\n  identities: { ghost: { rps: 1, burst: 1 } }\n`;
    const found = issues(text);
    expect(found.map((i) => i.path).sort()).toEqual(['identities[1].name', 'rateLimit.identities.ghost']);
  });

  it('rateLimit.redis.cluster: a boolean; with true, a seed URL on database 0 and a keyPrefix without braces', () => {
    const redis = (fields: string): string => `${GOOD}rateLimit:\n  backend: redis\n  redis: { ${fields} }\n`;
    const ok = parseConfigText(redis('url: "redis://10.0.0.1:7000", cluster: true'));
    expect(ok.ok && ok.raw.rateLimit?.redis).toEqual({ url: 'redis://10.0.0.1:7000', keyPrefix: 'mtls-sidecar:', onError: 'allow', cluster: true });
    const dflt = parseConfigText(redis('url: "redis://10.0.0.1:7000"'));
    expect(dflt.ok && dflt.raw.rateLimit?.redis?.cluster).toBe(false);
    // Braces mean nothing to a single Redis.
    expect(issues(redis('url: "redis://h:1/2", keyPrefix: "{app}:"'))).toEqual([]);

    const [notBool] = issues(redis('url: "redis://h:1", cluster: "yes"'));
    expect(notBool).toMatchObject({ path: 'rateLimit.redis.cluster', line: 10 });
    expect(notBool?.message).toBe('expected boolean');
    const found = issues(redis('url: "redis://user:s3cret@h:1/2", keyPrefix: "{app}:", cluster: true'));
    expect(found.map((i) => i.path).sort()).toEqual(['rateLimit.redis.keyPrefix', 'rateLimit.redis.url']);
    expect(found.find((i) => i.path === 'rateLimit.redis.url')?.message).toMatch(/only database 0/);
    expect(found.find((i) => i.path === 'rateLimit.redis.keyPrefix')?.message).toMatch(/must not contain "\{" or "\}"/);
    expect(JSON.stringify(found)).not.toContain('s3cret');
  });

  it('requires clientCAs or pins', () => {
    const [i] = issues('version: 1\ntls: { cert: a, key: b }\n');
    expect(i?.path).toBe('tls.clientCAs');
  });

  it('rejects malformed pins', () => {
    const [i] = issues(GOOD.replace('clientCAs: [ca.crt]', 'pins: ["sha256:AB:CD"]'));
    expect(i?.path).toBe('tls.pins[0]');
  });
});

describe('units', () => {
  it.each([
    ['250ms', 250],
    ['30s', 30_000],
    ['5m', 300_000],
    ['1h', 3_600_000],
    ['1.5s', 1500],
    ['10', null],
    ['-1s', null],
    ['s', null],
  ])('duration %s -> %s', (text, ms) => expect(parseDuration(text)).toBe(ms));

  it.each([
    [1024, 1024],
    ['64KiB', 65_536],
    ['1MiB', 1_048_576],
    ['100', 100],
    ['1.5MiB', null],
    [-1, null],
    ['lots', null],
  ] as const)('size %s -> %s', (value, bytes) => expect(parseSize(value)).toBe(bytes));
});
