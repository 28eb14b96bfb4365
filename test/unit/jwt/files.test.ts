/** The denylist format and the config -> settings mapping. */
import { describe, expect, it } from 'vitest';
import { configSchema } from '../../../src/config/schema.js';
import { parseDenylist } from '../../../src/jwt/denylist.js';
import { isJwtError } from '../../../src/jwt/errors.js';
import { jwtSettingsFromConfig } from '../../../src/config/jwt.js';
import { routeNeedsToken } from '../../../src/jwt/settings.js';

describe('parseDenylist', () => {
  it('one id per line; blank lines, # lines and trailing # comments ignored; CRLF and BOM tolerated', () => {
    const text = '\uFEFF# revoked\r\n\r\nabc\r\n  def  \n3f2c-9a # leaked 2025-01-04\n#not-an-id\nid#with-hash\n';
    expect([...parseDenylist(text, 'f')]).toEqual(['abc', 'def', '3f2c-9a', 'id#with-hash']);
    expect(parseDenylist('', 'f').size).toBe(0);
  });

  it.each([
    ['two ids on a line', 'a\nb c\n', 2],
    ['comma separated', 'a, b\n', 1],
    ['an id too long', `ok\n${'x'.repeat(1025)}\n`, 2],
  ])('%s: ERR_DENYLIST with the line', (_n, text, line) => {
    let err: unknown;
    try {
      parseDenylist(text, 'revoked.txt');
    } catch (e) {
      err = e;
    }
    expect(isJwtError(err) && err.code).toBe('ERR_DENYLIST');
    expect(isJwtError(err) && err.line).toBe(line);
    expect(isJwtError(err) && err.message).toContain(`revoked.txt line ${line}:`);
  });
});

describe('jwtSettingsFromConfig', () => {
  const base = { version: 1, tls: { cert: 'c', key: 'k', clientCAs: ['ca'] } };

  it('maps a file JWKS with defaults, resolving paths', () => {
    const raw = configSchema.parse({ ...base, jwt: { issuer: 'https://i', audience: 'api://a', jwks: { file: 'jwks.json' }, denylist: 'revoked.txt' } });
    expect(jwtSettingsFromConfig(raw.jwt!, (f) => `/etc/sidecar/${f}`)).toEqual({
      issuer: 'https://i',
      audience: 'api://a',
      algorithms: ['RS256', 'ES256', 'EdDSA'],
      clockSkewMs: 30_000,
      requireJti: true,
      certificateBound: false,
      jwks: { file: '/etc/sidecar/jwks.json' },
      denylistFile: '/etc/sidecar/revoked.txt',
    });
  });

  it('maps a URL JWKS with cacheFor', () => {
    const raw = configSchema.parse({ ...base, jwt: { issuer: 'https://i', audience: ['a', 'b'], jwks: { url: 'https://i/jwks', cacheFor: '5m' }, clockSkew: '10s' } });
    const s = jwtSettingsFromConfig(raw.jwt!, (f) => f);
    expect(s.jwks).toEqual({ url: 'https://i/jwks', cacheForMs: 300_000 });
    expect(s.clockSkewMs).toBe(10_000);
    expect(s.denylistFile).toBeUndefined();
  });

  it('routeNeedsToken: tokenScopes always; required covers non-public routes only', () => {
    expect(routeNeedsToken({ public: false, tokenScopes: ['a'] }, false)).toBe(true);
    expect(routeNeedsToken({ public: true, tokenScopes: ['a'] }, false)).toBe(true);
    expect(routeNeedsToken({ public: false }, false)).toBe(false);
    expect(routeNeedsToken({ public: false }, true)).toBe(true);
    expect(routeNeedsToken({ public: true }, true)).toBe(false);
  });
});
