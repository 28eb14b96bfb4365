/**
 * JWKS over a real HTTPS server on loopback (the test PKI's server cert, a fetch trusting the
 * test CA): lazy fetch and cache, key rotation via unknown kid, the refetch cooldown against a
 * flood of bogus kids, stale keys while the issuer is down (within a bound), bad responses.
 */
import { readFile } from 'node:fs/promises';
import { randomUUID } from 'node:crypto';
import { afterEach, beforeAll, beforeEach, describe, expect, inject, it, vi } from 'vitest';
import type { JwtError } from '../../../src/jwt/errors.js';
import { isJwtError } from '../../../src/jwt/errors.js';
import { createJwtVerifier } from '../../../src/jwt/verify.js';
import type { JwtResult, JwtVerifier, JwtVerifierOptions } from '../../../src/jwt/verify.js';
import { TEST_AUDIENCE, TEST_ISSUER, jwksOf, makeSigningKey, mintToken, startJwksServer, thumbprintOfPem } from '../../helpers/jwt.js';
import type { JwksServer, MintOptions, SigningKey } from '../../helpers/jwt.js';

const pki = inject('pki');
const MIN = 60_000;

let tlsFiles: { cert: Buffer; key: Buffer; ca: Buffer };
let a: SigningKey;
let b: SigningKey;
let thumb: string;
let server: JwksServer;
let verifiers: JwtVerifier[];
let errors: JwtError[];
let clock = 0;
const now = (): number => clock;

beforeAll(async () => {
  tlsFiles = { cert: await readFile(pki.server.cert), key: await readFile(pki.server.key), ca: await readFile(pki.rootCa.cert) };
  [a, b] = await Promise.all([makeSigningKey('ES256', 'key-a'), makeSigningKey('RS256', 'key-b')]);
  thumb = thumbprintOfPem(await readFile(pki.clients.orders.cert));
});

beforeEach(async () => {
  clock = Date.UTC(2030, 0, 1, 12, 0, 0);
  server = await startJwksServer(tlsFiles, jwksOf(a));
  verifiers = [];
  errors = [];
});

afterEach(async () => {
  for (const v of verifiers) v.close();
  await server.close();
});

async function remote(opts: JwtVerifierOptions = {}, url = server.url): Promise<JwtVerifier> {
  const v = await createJwtVerifier(
    {
      issuer: TEST_ISSUER,
      audience: TEST_AUDIENCE,
      algorithms: ['RS256', 'ES256', 'EdDSA'],
      clockSkewMs: 30_000,
      requireJti: true,
      certificateBound: false,
      jwks: { url, cacheForMs: 10 * MIN },
    },
    { now, fetch: server.fetch, onError: (e) => errors.push(e), ...opts },
  );
  verifiers.push(v);
  return v;
}

const mint = (key: SigningKey, o: MintOptions = {}): Promise<string> => mintToken(key, { now: clock, exp: Math.floor(clock / 1000) + 24 * 3600, ...o });
const check = async (v: JwtVerifier, token: string): Promise<string> => {
  const r: JwtResult = await v.verify(`Bearer ${token}`, thumb, undefined, null);
  return r.ok ? 'ok' : r.reason;
};

describe('JWKS URL', () => {
  it('is fetched lazily, once, then served from the cache', async () => {
    const v = await remote();
    expect(server.requests).toBe(0);
    expect(await check(v, await mint(a))).toBe('ok');
    expect(await check(v, await mint(a))).toBe('ok');
    expect(server.requests).toBe(1);
  });

  it('key rotation: an unknown kid refetches the JWKS (once the cooldown has passed)', async () => {
    const v = await remote();
    expect(await check(v, await mint(a))).toBe('ok');
    server.jwks = jwksOf(a, b);
    const tokenB = await mint(b);
    // Within 30 s of the last fetch an unknown kid does not reach the issuer.
    expect(await check(v, tokenB)).toBe('jwt_invalid');
    expect(server.requests).toBe(1);
    clock += 31_000;
    expect(await check(v, tokenB)).toBe('ok');
    expect(server.requests).toBe(2);
    expect(await check(v, await mint(a))).toBe('ok');
    expect(server.requests).toBe(2);
  });

  it('a flood of unknown kids causes at most one refetch per cooldown', async () => {
    const v = await remote();
    expect(await check(v, await mint(a))).toBe('ok');
    const bogus = (): Promise<string[]> => Promise.all(Array.from({ length: 100 }, () => mint(a, { header: { kid: randomUUID() } })));
    clock += 31_000;
    const wave1 = await Promise.all((await bogus()).map((t) => check(v, t)));
    expect(new Set(wave1)).toEqual(new Set(['jwt_invalid']));
    expect(server.requests).toBe(2);
    for (const step of [0, 10_000, 19_000]) {
      clock += step;
      await Promise.all((await bogus()).map((t) => check(v, t)));
      expect(server.requests).toBe(2);
    }
    clock += 2_000; // 31 s after the second fetch
    await Promise.all((await bogus()).map((t) => check(v, t)));
    expect(server.requests).toBe(3);
    // Genuine tokens kept working throughout.
    expect(await check(v, await mint(a))).toBe('ok');
  });

  it('issuer down after the first fetch: cached keys keep serving within the bound, then tokens are refused', async () => {
    const v = await remote({ jwksMaxStaleMs: 60 * MIN });
    expect(await check(v, await mint(a))).toBe('ok');
    server.mode = 'reset';
    clock += 11 * MIN; // stale: a background refresh starts and fails
    expect(await check(v, await mint(a))).toBe('ok');
    await vi.waitFor(() => expect(errors.map((e) => e.code)).toContain('ERR_JWKS_FETCH'));
    clock += 50 * MIN; // 61 min old: still within cacheFor + maxStale
    expect(await check(v, await mint(a))).toBe('ok');
    clock += 10 * MIN; // 71 min old: beyond the bound
    expect(await check(v, await mint(a))).toBe('jwt_invalid');
    expect(v.stats().jwksFetchFailures).toBeGreaterThanOrEqual(2);
    server.mode = 'up';
    clock += 5_001; // the failure cooldown
    expect(await check(v, await mint(a))).toBe('ok');
  });

  it('an HTTP error from the issuer is reported and the old keys kept', async () => {
    const v = await remote();
    expect(await check(v, await mint(a))).toBe('ok');
    server.mode = 'http503';
    clock += 11 * MIN;
    expect(await check(v, await mint(a))).toBe('ok');
    await vi.waitFor(() => expect(errors[0]?.message).toContain('HTTP 503'));
    expect(errors[0]?.code).toBe('ERR_JWKS_FETCH');
    expect(await check(v, await mint(a))).toBe('ok');
  });

  it('a key removed from the JWKS stops verifying after cacheFor', async () => {
    const v = await remote();
    const conn = v.newConnectionCache();
    const tokenA = await mint(a);
    expect((await v.verify(`Bearer ${tokenA}`, thumb, undefined, conn)).ok).toBe(true);
    server.jwks = jwksOf(b);
    clock += 11 * MIN;
    expect(await check(v, await mint(a))).toBe('ok'); // served stale while the refresh runs
    await vi.waitFor(async () => expect(await check(v, await mint(a))).toBe('jwt_invalid'));
    // The connection's cached copy is dropped too: the key set changed.
    expect(await v.verify(`Bearer ${tokenA}`, thumb, undefined, conn)).toEqual({ ok: false, reason: 'jwt_invalid' });
    expect(await check(v, await mint(b))).toBe('ok');
    expect(server.requests).toBe(2);
  });

  it('cold start with the issuer down: refused at once, retried after the failure cooldown', async () => {
    const v = await remote();
    server.mode = 'reset';
    expect(await check(v, await mint(a))).toBe('jwt_invalid');
    expect(await check(v, await mint(a))).toBe('jwt_invalid');
    expect(server.requests).toBe(1);
    server.mode = 'up';
    clock += 5_001;
    expect(await check(v, await mint(a))).toBe('ok');
    expect(server.requests).toBe(2);
  });

  it('prefetch throws ERR_JWKS_FETCH when the issuer is down, and loads the keys when it is up', async () => {
    const v = await remote();
    server.mode = 'http503';
    const err: unknown = await v.prefetch().catch((e: unknown) => e);
    expect(isJwtError(err) && err.code).toBe('ERR_JWKS_FETCH');
    expect(isJwtError(err) && err.configPath).toEqual(['jwt', 'jwks', 'url']);
    server.mode = 'up';
    await v.prefetch();
    const before = server.requests;
    expect(await check(v, await mint(a))).toBe('ok');
    expect(server.requests).toBe(before);
  });

  it('a JWKS holding a private key is refused and the old keys kept', async () => {
    const { exportJWK } = await import('jose');
    const v = await remote();
    expect(await check(v, await mint(a))).toBe('ok');
    server.jwks = { keys: [{ ...(await exportJWK(b.privateKey)), kid: 'key-b' }] };
    clock += 11 * MIN;
    expect(await check(v, await mint(a))).toBe('ok');
    await vi.waitFor(() => expect(errors[0]?.code).toBe('ERR_JWKS'));
    expect(await check(v, await mint(a))).toBe('ok');
  });

  it('error messages show the URL without its query string', async () => {
    const v = await remote({}, `${server.url}?access_token=s3cret`);
    server.mode = 'http503';
    const err: unknown = await v.prefetch().catch((e: unknown) => e);
    expect(isJwtError(err) && err.message).toContain('/.well-known/jwks.json');
    expect(String(isJwtError(err) && err.message)).not.toContain('s3cret');
  });

  it('an untrusted issuer certificate is a fetch failure, not an exception', async () => {
    const v = await remote({ fetch: undefined }); // global fetch: does not trust the test CA
    expect(await check(v, await mint(a))).toBe('jwt_invalid');
    expect(errors[0]?.code).toBe('ERR_JWKS_FETCH');
  });
});
