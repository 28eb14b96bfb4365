/**
 * JwtVerifier with a local JWKS file: real RS256/ES256/EdDSA signatures, every claim rule, the
 * classic attacks (alg none, HS256 keyed with the RSA public key, crit), RFC 8705 binding,
 * scopes, the jti denylist and the per-connection cache.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, inject, it } from 'vitest';
import { isJwtError } from '../../../src/jwt/errors.js';
import { createJwtVerifier, wwwAuthenticate } from '../../../src/jwt/verify.js';
import type { JwtResult, JwtSettings, JwtVerifier, JwtVerifierOptions, JwtConnectionCache } from '../../../src/jwt/verify.js';
import {
  TEST_AUDIENCE,
  TEST_ISSUER,
  hs256WithPublicKey,
  jwksOf,
  makeSigningKey,
  mintToken,
  rawToken,
  claimsFor,
  thumbprintOfPem,
  unsignedToken,
  writeDenylist,
  writeJwksFile,
} from '../../helpers/jwt.js';
import type { MintOptions, SigningKey } from '../../helpers/jwt.js';

const pki = inject('pki');

let dir: string;
let rs: SigningKey;
let es: SigningKey;
let ed: SigningKey;
let jwksFile: string;
let denyFile: string;
let ordersThumb: string;
let billingThumb: string;
/** The injected clock: tests move it, tokens are minted against it. */
let clock = 0;
const now = (): number => clock;
const nowSec = (): number => Math.floor(clock / 1000);

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'jwt-unit-'));
  [rs, es, ed] = await Promise.all([makeSigningKey('RS256', 'rs-1'), makeSigningKey('ES256', 'es-1'), makeSigningKey('EdDSA', 'ed-1')]);
  jwksFile = path.join(dir, 'jwks.json');
  denyFile = path.join(dir, 'revoked.txt');
  ordersThumb = thumbprintOfPem(await readFile(pki.clients.orders.cert));
  billingThumb = thumbprintOfPem(await readFile(pki.clients.billing.cert));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

beforeEach(async () => {
  clock = Date.UTC(2030, 0, 1, 12, 0, 0);
  await writeJwksFile(jwksFile, jwksOf(rs, es, ed));
  await writeDenylist(denyFile, ['revoked-1']);
});

function settings(over: Partial<JwtSettings> = {}): JwtSettings {
  return {
    issuer: TEST_ISSUER,
    audience: TEST_AUDIENCE,
    algorithms: ['RS256', 'ES256', 'EdDSA'],
    clockSkewMs: 30_000,
    requireJti: true,
    certificateBound: false,
    jwks: { file: jwksFile },
    denylistFile: denyFile,
    ...over,
  };
}

async function verifier(over: Partial<JwtSettings> = {}, opts: JwtVerifierOptions = {}): Promise<JwtVerifier> {
  return createJwtVerifier(settings(over), { now, ...opts });
}

const mint = (key: SigningKey, o: MintOptions = {}): Promise<string> => mintToken(key, { now: clock, ...o });

async function check(
  v: JwtVerifier,
  token: string | undefined,
  o: { thumb?: string; scopes?: readonly string[]; conn?: JwtConnectionCache | null; raw?: boolean } = {},
): Promise<JwtResult> {
  const header = token === undefined || o.raw === true ? token : `Bearer ${token}`;
  return v.verify(header, o.thumb ?? ordersThumb, o.scopes, o.conn ?? null);
}

const reason = (r: JwtResult): string => (r.ok ? 'ok' : r.reason);

describe('valid tokens', () => {
  it.each(['RS256', 'ES256', 'EdDSA'] as const)('%s: accepted with sub, scopes and exp', async (alg) => {
    const key = { RS256: rs, ES256: es, EdDSA: ed }[alg];
    const v = await verifier();
    const r = await check(v, await mint(key, { sub: 'alice', scope: 'orders:read orders:write' }));
    expect(r).toEqual({
      ok: true,
      sub: 'alice',
      subHeader: 'alice',
      scopes: new Set(['orders:read', 'orders:write']),
      scopesHeader: 'orders:read orders:write',
      exp: nowSec() + 300,
    });
  });

  it('accepts an aud array holding the audience, and any of several configured audiences', async () => {
    const v = await verifier();
    expect(reason(await check(v, await mint(rs, { aud: ['other', TEST_AUDIENCE] })))).toBe('ok');
    const multi = await verifier({ audience: ['api://a', 'api://b'] });
    expect(reason(await check(multi, await mint(rs, { aud: 'api://b' })))).toBe('ok');
    expect(reason(await check(multi, await mint(rs, { aud: TEST_AUDIENCE })))).toBe('jwt_invalid');
  });

  it('a token without sub has sub and subHeader null', async () => {
    const v = await verifier();
    const r = await check(v, await mint(rs, { sub: null }));
    expect(r.ok && r.sub === null && r.subHeader === null).toBe(true);
  });

  it('jti is optional with requireJti: false', async () => {
    const v = await verifier({ requireJti: false });
    expect(reason(await check(v, await mint(rs, { jti: null })))).toBe('ok');
  });
});

describe('time claims (clockSkew 30 s)', () => {
  it('expired: refused as jwt_expired beyond the skew, accepted within it', async () => {
    const v = await verifier();
    expect(reason(await check(v, await mint(rs, { exp: nowSec() - 31 })))).toBe('jwt_expired');
    expect(reason(await check(v, await mint(rs, { exp: nowSec() - 20 })))).toBe('ok');
  });

  it('not yet valid (nbf): jwt_invalid beyond the skew, accepted within it', async () => {
    const v = await verifier();
    expect(reason(await check(v, await mint(rs, { nbf: nowSec() + 60 })))).toBe('jwt_invalid');
    expect(reason(await check(v, await mint(rs, { nbf: nowSec() + 20 })))).toBe('ok');
  });

  it('issued in the future (iat) beyond the skew: jwt_invalid', async () => {
    const v = await verifier();
    expect(reason(await check(v, await mint(rs, { iat: nowSec() + 120 })))).toBe('jwt_invalid');
    expect(reason(await check(v, await mint(rs, { iat: nowSec() + 20 })))).toBe('ok');
  });

  it('no exp: jwt_invalid', async () => {
    const v = await verifier();
    expect(reason(await check(v, await mint(rs, { exp: null })))).toBe('jwt_invalid');
  });

  it('non-numeric exp / nbf: jwt_invalid', async () => {
    const v = await verifier();
    expect(reason(await check(v, await mint(rs, { claims: { exp: String(nowSec() + 300) } })))).toBe('jwt_invalid');
    expect(reason(await check(v, await mint(rs, { claims: { nbf: 'yesterday' } })))).toBe('jwt_invalid');
  });

  it('a custom clockSkew is honoured', async () => {
    const v = await verifier({ clockSkewMs: 0 });
    expect(reason(await check(v, await mint(rs, { exp: nowSec() - 1 })))).toBe('jwt_expired');
  });
});

describe('issuer, audience, jti', () => {
  it('wrong iss (also one differing only by a trailing slash): jwt_invalid', async () => {
    const v = await verifier();
    expect(reason(await check(v, await mint(rs, { iss: 'https://evil.test' })))).toBe('jwt_invalid');
    expect(reason(await check(v, await mint(rs, { iss: `${TEST_ISSUER}/` })))).toBe('jwt_invalid');
    expect(reason(await check(v, await mint(rs, { claims: { iss: undefined } })))).toBe('jwt_invalid');
  });

  it('wrong or missing aud: jwt_invalid', async () => {
    const v = await verifier();
    expect(reason(await check(v, await mint(rs, { aud: 'api://billing' })))).toBe('jwt_invalid');
    expect(reason(await check(v, await mint(rs, { aud: ['api://billing'] })))).toBe('jwt_invalid');
    expect(reason(await check(v, await mint(rs, { claims: { aud: undefined } })))).toBe('jwt_invalid');
  });

  it('no jti (requireJti: true), empty or non-string jti: jwt_invalid', async () => {
    const v = await verifier();
    expect(reason(await check(v, await mint(rs, { jti: null })))).toBe('jwt_invalid');
    expect(reason(await check(v, await mint(rs, { jti: '' })))).toBe('jwt_invalid');
    expect(reason(await check(v, await mint(rs, { claims: { jti: 42 } })))).toBe('jwt_invalid');
  });

  it('non-string sub: jwt_invalid', async () => {
    const v = await verifier();
    expect(reason(await check(v, await mint(rs, { claims: { sub: 7 } })))).toBe('jwt_invalid');
  });
});

describe('algorithms and headers', () => {
  it('alg none (empty signature, with or without kid): jwt_invalid', async () => {
    const v = await verifier();
    expect(reason(await check(v, unsignedToken({ now: clock })))).toBe('jwt_invalid');
    expect(reason(await check(v, rawToken({ alg: 'none', kid: rs.kid }, claimsFor({ now: clock }))))).toBe('jwt_invalid');
    // "none" with a junk signature segment, which gets past the syntax check, reaches jose.
    expect(reason(await check(v, rawToken({ alg: 'none' }, claimsFor({ now: clock }), 'AAAA')))).toBe('jwt_invalid');
  });

  it('HS256 "signed" with the RSA public key as the HMAC secret: jwt_invalid, no key is even resolved', async () => {
    const v = await verifier();
    expect(reason(await check(v, hs256WithPublicKey(rs, { now: clock })))).toBe('jwt_invalid');
    expect(v.stats().keyResolutions).toBe(0);
  });

  it('an alg outside the configured list: jwt_invalid', async () => {
    const v = await verifier({ algorithms: ['ES256'] });
    expect(reason(await check(v, await mint(es)))).toBe('ok');
    expect(reason(await check(v, await mint(rs)))).toBe('jwt_invalid');
  });

  it('a kid naming a key of another type (RS256 header, EC key id): jwt_invalid', async () => {
    const v = await verifier();
    const forged = await mint(rs, { header: { kid: es.kid } });
    expect(reason(await check(v, forged))).toBe('jwt_invalid');
  });

  it('an unknown critical header: jwt_invalid', async () => {
    const v = await verifier();
    expect(reason(await check(v, await mint(rs, { crit: ['urn:example:must-understand'] })))).toBe('jwt_invalid');
  });

  it('a tampered payload or a signature by an unknown key: jwt_invalid', async () => {
    const v = await verifier();
    const [h, , s] = (await mint(rs)).split('.');
    const evil = Buffer.from(JSON.stringify(claimsFor({ now: clock, sub: 'admin' }))).toString('base64url');
    expect(reason(await check(v, `${h}.${evil}.${s}`))).toBe('jwt_invalid');
    const stranger = await makeSigningKey('RS256', rs.kid);
    expect(reason(await check(v, await mint(stranger)))).toBe('jwt_invalid');
    expect(reason(await check(v, await mint(rs, { header: { kid: 'nope' } })))).toBe('jwt_invalid');
  });

  it('a key embedded in the header (jwk, jku, x5c) is never used', async () => {
    const v = await verifier();
    const attacker = await makeSigningKey('ES256', 'attacker');
    const t = await mint(attacker, { header: { jwk: { ...attacker.publicJwk }, jku: 'https://evil.test/jwks', x5c: [] } });
    expect(reason(await check(v, t))).toBe('jwt_invalid');
  });

  it('a token without kid is accepted when exactly one key fits its alg', async () => {
    const v = await verifier();
    expect(reason(await check(v, await mint(es, { header: { kid: null } })))).toBe('ok');
  });
});

describe('Authorization header', () => {
  it('absent, empty, or another scheme: jwt_missing', async () => {
    const v = await verifier();
    expect(reason(await check(v, undefined))).toBe('jwt_missing');
    expect(reason(await check(v, '', { raw: true }))).toBe('jwt_missing');
    expect(reason(await check(v, 'Basic dXNlcjpwYXNz', { raw: true }))).toBe('jwt_missing');
    expect(reason(await check(v, 'Bearerish abc.def.ghi', { raw: true }))).toBe('jwt_missing');
  });

  it('a malformed Bearer credential: jwt_invalid', async () => {
    const v = await verifier();
    const good = await mint(rs);
    for (const h of ['Bearer', 'Bearer !!!', 'Bearer a.b', 'Bearer a.b.c.d.e', `Bearer ${good} extra`, `Bearer\t${good}`, `Bearer ${'a'.repeat(17_000)}.b.c`]) {
      expect(reason(await check(v, h, { raw: true })), h.slice(0, 20)).toBe('jwt_invalid');
    }
  });

  it('the scheme is case-insensitive and extra spaces are tolerated', async () => {
    const v = await verifier();
    const t = await mint(rs);
    expect(reason(await check(v, `bearer ${t}`, { raw: true }))).toBe('ok');
    expect(reason(await check(v, `BEARER   ${t}`, { raw: true }))).toBe('ok');
  });

  it('WWW-Authenticate values', () => {
    expect(wwwAuthenticate('jwt_missing')).toBe('Bearer error="invalid_token"');
    expect(wwwAuthenticate('jwt_cert_mismatch')).toBe('Bearer error="invalid_token"');
    expect(wwwAuthenticate('token_scope_missing')).toBe('Bearer error="insufficient_scope"');
  });
});

describe('RFC 8705 certificate binding', () => {
  it('certificateBound: the token bound to this connection passes; to another cert or unbound is jwt_cert_mismatch', async () => {
    const v = await verifier({ certificateBound: true });
    const bound = await mint(rs, { x5t: ordersThumb });
    expect(reason(await check(v, bound, { thumb: ordersThumb }))).toBe('ok');
    expect(reason(await check(v, bound, { thumb: billingThumb }))).toBe('jwt_cert_mismatch');
    expect(reason(await check(v, await mint(rs)))).toBe('jwt_cert_mismatch');
  });

  it('without certificateBound a bound token is still checked; an unbound one passes', async () => {
    const v = await verifier({ certificateBound: false });
    expect(reason(await check(v, await mint(rs, { x5t: billingThumb }), { thumb: ordersThumb }))).toBe('jwt_cert_mismatch');
    expect(reason(await check(v, await mint(rs)))).toBe('ok');
  });

  it('a malformed cnf is jwt_invalid', async () => {
    const v = await verifier({ certificateBound: true });
    expect(reason(await check(v, await mint(rs, { claims: { cnf: 'x' } })))).toBe('jwt_invalid');
    expect(reason(await check(v, await mint(rs, { claims: { cnf: { 'x5t#S256': 5 } } })))).toBe('jwt_invalid');
  });

  it('the thumbprint is base64url SHA-256 of the DER (43 chars, no padding)', () => {
    expect(ordersThumb).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(Buffer.from(ordersThumb, 'base64url').toString('hex').toUpperCase()).toBe(pki.clients.orders.sha256.replaceAll(':', ''));
  });
});

describe('scopes', () => {
  it('a route tokenScope the token lacks: token_scope_missing; present: ok', async () => {
    const v = await verifier();
    const t = await mint(rs, { scope: 'orders:read' });
    expect(reason(await check(v, t, { scopes: ['orders:read'] }))).toBe('ok');
    expect(reason(await check(v, t, { scopes: ['orders:read', 'orders:write'] }))).toBe('token_scope_missing');
    expect(reason(await check(v, await mint(rs), { scopes: ['orders:read'] }))).toBe('token_scope_missing');
    expect(reason(await check(v, t, { scopes: [] }))).toBe('ok');
  });

  it('scp as an array or a string; scope wins over scp', async () => {
    const v = await verifier();
    const arr = await check(v, await mint(rs, { claims: { scp: ['a', 'b'] } }));
    expect(arr.ok && arr.scopesHeader).toBe('a b');
    const str = await check(v, await mint(rs, { claims: { scp: 'c d' } }));
    expect(str.ok && str.scopesHeader).toBe('c d');
    const both = await check(v, await mint(rs, { scope: 'x', claims: { scp: ['y'] } }));
    expect(both.ok && [...both.scopes]).toEqual(['x']);
  });

  it('malformed scope claims are jwt_invalid; non-printable scope tokens are dropped', async () => {
    const v = await verifier();
    expect(reason(await check(v, await mint(rs, { claims: { scope: ['a'] } })))).toBe('jwt_invalid');
    expect(reason(await check(v, await mint(rs, { claims: { scp: [1] } })))).toBe('jwt_invalid');
    const r = await check(v, await mint(rs, { scope: 'ok  bad\r\nx-evil:1 ünï also-ok' }));
    expect(r.ok && r.scopesHeader).toBe('ok also-ok');
  });

  it('x-jwt-sub is header-safe: CR/LF, spaces, % and non-ASCII are percent-encoded', async () => {
    const v = await verifier();
    const r = await check(v, await mint(rs, { sub: 'a\r\nX-Injected: 1 100% é' }));
    expect(r.ok && r.sub).toBe('a\r\nX-Injected: 1 100% é');
    expect(r.ok && r.subHeader).toBe('a%0D%0AX-Injected:%201%20100%25%20%C3%A9');
  });
});

describe('jti denylist', () => {
  it('a listed jti is jwt_revoked; a reload picks up new entries', async () => {
    const v = await verifier();
    expect(reason(await check(v, await mint(rs, { jti: 'revoked-1' })))).toBe('jwt_revoked');
    const t = await mint(rs, { jti: 'later' });
    expect(reason(await check(v, t))).toBe('ok');
    await writeDenylist(denyFile, ['revoked-1', 'later  # leaked']);
    await v.reloadFiles();
    expect(reason(await check(v, t))).toBe('jwt_revoked');
  });

  it('a malformed denylist on reload keeps the old one and throws ERR_DENYLIST with the line', async () => {
    const v = await verifier();
    await writeFile(denyFile, '# ok\nrevoked-1\nrevoked-2, revoked-3\n');
    const err: unknown = await v.reloadFiles().catch((e: unknown) => e);
    expect(isJwtError(err) && err.code).toBe('ERR_DENYLIST');
    expect(isJwtError(err) && err.line).toBe(3);
    expect(isJwtError(err) && err.configPath).toEqual(['jwt', 'denylist']);
    expect(reason(await check(v, await mint(rs, { jti: 'revoked-1' })))).toBe('jwt_revoked');
    expect(reason(await check(v, await mint(rs, { jti: 'revoked-2' })))).toBe('ok');
  });

  it('watchedFiles names the JWKS file and the denylist', async () => {
    const v = await verifier();
    expect(v.watchedFiles()).toEqual([jwksFile, denyFile]);
    const noDeny = await verifier({ denylistFile: undefined });
    expect(noDeny.watchedFiles()).toEqual([jwksFile]);
  });
});

describe('per-connection cache', () => {
  it('a hit is synchronous and does not re-verify the signature', async () => {
    const v = await verifier();
    const conn = v.newConnectionCache();
    const t = await mint(es, { scope: 'orders:read' });
    const first = v.verify(`Bearer ${t}`, ordersThumb, ['orders:read'], conn);
    expect(first).toBeInstanceOf(Promise);
    expect(reason(await first)).toBe('ok');
    expect(v.stats().keyResolutions).toBe(1);
    for (let i = 0; i < 5; i++) {
      const again = v.verify(`Bearer ${t}`, ordersThumb, ['orders:read'], conn);
      expect(again).not.toBeInstanceOf(Promise);
      expect(reason(again as JwtResult)).toBe('ok');
    }
    expect(v.stats()).toMatchObject({ keyResolutions: 1, cacheHits: 5 });
    // Another connection has its own cache.
    expect(reason(await check(v, t, { conn: v.newConnectionCache() }))).toBe('ok');
    expect(v.stats().keyResolutions).toBe(2);
  });

  it('a hit still honours the denylist, the certificate binding and the route scopes', async () => {
    const v = await verifier();
    const conn = v.newConnectionCache();
    const t = await mint(rs, { jti: 'cached-jti', x5t: ordersThumb, scope: 'orders:read' });
    expect(reason(await check(v, t, { conn }))).toBe('ok');
    expect(reason(await check(v, t, { conn, thumb: billingThumb }))).toBe('jwt_cert_mismatch');
    expect(reason(await check(v, t, { conn, scopes: ['orders:write'] }))).toBe('token_scope_missing');
    await writeDenylist(denyFile, ['cached-jti']);
    await v.reloadFiles();
    const r = v.verify(`Bearer ${t}`, ordersThumb, undefined, conn);
    expect(r).not.toBeInstanceOf(Promise);
    expect(reason(r as JwtResult)).toBe('jwt_revoked');
    expect(v.stats().keyResolutions).toBe(1);
  });

  it('a cached token expires with the clock (skew included)', async () => {
    const v = await verifier();
    const conn = v.newConnectionCache();
    const t = await mint(rs, { exp: nowSec() + 10 });
    expect(reason(await check(v, t, { conn }))).toBe('ok');
    clock += 35_000;
    expect(reason(await check(v, t, { conn }))).toBe('ok');
    clock += 10_000;
    expect(reason(await check(v, t, { conn }))).toBe('jwt_expired');
  });

  it('a key removed from the JWKS file invalidates cached tokens it signed', async () => {
    const v = await verifier();
    const conn = v.newConnectionCache();
    const t = await mint(rs);
    expect(reason(await check(v, t, { conn }))).toBe('ok');
    // Rewriting the same keys is not a change: the cache survives.
    await writeJwksFile(jwksFile, jwksOf(rs, es, ed));
    await v.reloadFiles();
    expect(reason(await check(v, t, { conn }))).toBe('ok');
    expect(v.stats().keyResolutions).toBe(1);
    await writeJwksFile(jwksFile, jwksOf(es, ed));
    await v.reloadFiles();
    expect(reason(await check(v, t, { conn }))).toBe('jwt_invalid');
  });

  it('is bounded (oldest evicted) and starts over when met by another verifier', async () => {
    const v = await verifier({}, { connectionCacheSize: 2 });
    const conn = v.newConnectionCache();
    const [a, b, c] = await Promise.all([mint(rs), mint(rs), mint(rs)]);
    for (const t of [a, b, c]) expect(reason(await check(v, t, { conn }))).toBe('ok');
    expect(conn.size).toBe(2);
    expect(v.stats().keyResolutions).toBe(3);
    await check(v, c, { conn });
    expect(v.stats().keyResolutions).toBe(3);
    await check(v, a, { conn });
    expect(v.stats().keyResolutions).toBe(4);

    const next = await verifier();
    expect(reason(await check(next, c, { conn }))).toBe('ok');
    expect(next.stats().keyResolutions).toBe(1);
    expect(conn.owner).toBe(next);
  });

  it('refusals are not cached and never carry the token', async () => {
    const v = await verifier();
    const conn = v.newConnectionCache();
    const t = await mint(rs, { exp: nowSec() - 100 });
    const r = await check(v, t, { conn });
    expect(r).toEqual({ ok: false, reason: 'jwt_expired' });
    expect(conn.size).toBe(0);
    expect(JSON.stringify(r)).not.toContain(t.slice(0, 20));
  });
});

describe('loading files', () => {
  async function loadError(over: Partial<JwtSettings>): Promise<{ code: string; message: string; configPath: readonly string[] }> {
    const err: unknown = await verifier(over).catch((e: unknown) => e);
    if (!isJwtError(err)) throw new Error(`expected a JwtError, got ${String(err)}`);
    return { code: err.code, message: err.message, configPath: err.configPath };
  }

  it('a missing JWKS file: ERR_JWKS_FILE at jwt.jwks.file', async () => {
    const e = await loadError({ jwks: { file: path.join(dir, 'nope.json') } });
    expect(e).toMatchObject({ code: 'ERR_JWKS_FILE', configPath: ['jwt', 'jwks', 'file'] });
    expect(e.message).toContain('file not found');
  });

  it.each([
    ['not JSON', '{"keys": ['],
    ['not a JWK set', '{"kty":"RSA"}'],
    ['a symmetric key', '{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"h"}]}'],
    ['a malformed EC key', '{"keys":[{"kty":"EC","crv":"P-256","x":"AQAB","y":"AQAB","kid":"x"}]}'],
    ['an RSA key under 2048 bits', '{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB","kid":"x"}]}'],
    ['a non-string kid', '{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":5}]}'],
  ])('%s: ERR_JWKS', async (_name, text) => {
    await writeFile(jwksFile, text);
    expect((await loadError({})).code).toBe('ERR_JWKS');
  });

  it('a private key in the JWKS: ERR_JWKS', async () => {
    const { exportJWK } = await import('jose');
    const priv = { ...(await exportJWK(rs.privateKey)), kid: 'p' };
    await writeFile(jwksFile, JSON.stringify({ keys: [priv] }));
    const e = await loadError({});
    expect(e.code).toBe('ERR_JWKS');
    expect(e.message).toContain('private');
  });

  it('no key usable with the configured algorithms: ERR_JWKS', async () => {
    await writeJwksFile(jwksFile, jwksOf(rs));
    const e = await loadError({ algorithms: ['ES256', 'EdDSA'] });
    expect(e.code).toBe('ERR_JWKS');
    expect(e.message).toContain('ES256, EdDSA');
  });

  it('a malformed denylist: ERR_DENYLIST with the line number in the message', async () => {
    await writeFile(denyFile, 'a\n\n# c\nb c\n');
    const e = await loadError({});
    expect(e).toMatchObject({ code: 'ERR_DENYLIST', configPath: ['jwt', 'denylist'] });
    expect(e.message).toContain('line 4');
  });

  it('a JWKS file broken on reload keeps the old keys', async () => {
    const v = await verifier();
    await writeFile(jwksFile, 'garbage');
    const err: unknown = await v.reloadFiles().catch((e: unknown) => e);
    expect(isJwtError(err) && err.code).toBe('ERR_JWKS');
    expect(reason(await check(v, await mint(rs)))).toBe('ok');
  });

  it('HS or none algorithms cannot be configured', async () => {
    await expect(verifier({ algorithms: ['HS256'] })).rejects.toThrow(TypeError);
    await expect(verifier({ algorithms: ['none'] })).rejects.toThrow(TypeError);
  });
});
