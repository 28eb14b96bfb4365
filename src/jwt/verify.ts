/**
 * JWT bearer-token check (SPEC §3 `jwt`, §4): defence in depth behind mTLS.
 *
 * API
 *   const m = await loadJwtMaterial(settings)   // reads and checks the JWKS file and denylist; throws JwtError
 *   const keys = m.keySource({ now, fetch, onError })   // the JWKS file's keys, or the URL's cache
 *   const v = m.verifier(keys, { now })                  // sync; keep `keys` across reloads while m.keysKey is equal
 *   (or in one step: const v = await createJwtVerifier(settings, { now, fetch, onError }))
 *   const cache = v.newConnectionCache()                                    // once per TLS connection
 *   const r = v.verify(req.headers.authorization, conn.jwtThumbprint, route.tokenScopes, cache)
 *   const res = r instanceof Promise ? await r : r   // sync for a missing/malformed token and a cache hit
 *   res.ok ? set x-jwt-sub (res.subHeader, when not null) and x-jwt-scopes (res.scopesHeader)
 *          : refuse with REFUSALS[res.reason] and `WWW-Authenticate: ${wwwAuthenticate(res.reason)}`
 *   v.reloadFiles()   // on a change of v.watchedFiles(); old keys/denylist stay on failure (throws)
 *   v.close()         // closes its key source (a runtime that shares one across verifiers closes the source itself)
 *
 * What is checked, in this order
 *   1. `Authorization`: no header, or another scheme (`Basic …`) -> jwt_missing: no bearer token
 *      was presented. `Bearer` (any case) followed by nothing, by something that is not a JWS
 *      compact serialization, or by more than 16 KiB -> jwt_invalid: a token was presented and
 *      it is bad.
 *   2. Per-connection cache (by exact token string): a hit skips 3 and 4 while the token is
 *      unexpired (with the skew, as jose would judge it) and the key set has not changed.
 *   3. jose `jwtVerify`: `alg` in the configured list (asymmetric only: `none` and HS* can never
 *      be configured, and the key resolver refuses secret algorithms anyway, so an HS256 token
 *      "signed" with the RSA public key is refused); the key from the JWKS by `kid`/alg; the
 *      signature; `crit` refused unless understood (jose understands only `b64`, and refuses
 *      unencoded payloads in a JWT); `exp` required (and `jti` with requireJti); `iss` exact;
 *      `aud` exact (one of the configured audiences); `nbf` and `exp` with `clockSkew`.
 *      ERR_JWT_EXPIRED -> jwt_expired; every other failure (including "JWKS unavailable") ->
 *      jwt_invalid.
 *   4. Claims jose does not type-check: `iat` in the future beyond the skew, `sub`/`jti` not
 *      strings, `scope` not a string, `scp` not a string or string array, `cnf` not an object or
 *      `cnf["x5t#S256"]` not a string -> jwt_invalid.
 *   5. Certificate binding (RFC 8705): when the token carries `cnf["x5t#S256"]` it must equal the
 *      connection's thumbprint — always, not only with certificateBound (a bound token used
 *      from another certificate is the theft RFC 8705 exists to stop). certificateBound: true
 *      additionally refuses tokens without it. Either -> jwt_cert_mismatch.
 *   6. Denylist: a `jti` listed in the denylist file -> jwt_revoked (live set: applies to cache
 *      hits too).
 *   7. Route `tokenScopes`: every one must be in the token's scopes -> else token_scope_missing.
 *
 * Scopes come from `scope` (space-separated string, RFC 8693/9068), or else `scp` (array, or a
 * space-separated string). Scope tokens outside printable ASCII (\x21-\x7e) are dropped, so
 * `x-jwt-scopes` is always header-safe. `subHeader` is `sub` with every byte outside \x21-\x7e,
 * and `%`, percent-encoded (UTF-8), so a hostile `sub` cannot split or inject a header.
 *
 * Never in a message, log or error: the token or any claim value. Refusal results carry only a
 * reason.
 */
import { createHash } from 'node:crypto';
import path from 'node:path';
import type * as Jose from 'jose';
import type { CompactJWSHeaderParameters, FlattenedJWSInput, JWTPayload, JWTVerifyOptions } from 'jose';
import { loadDenylist, parseDenylist } from './denylist.js';
import { JwtError, readJwtFile } from './errors.js';
import type * as Keys from './keys.js';
import type { JwksFetch, KeySource, ParsedJwks } from './keys.js';

/**
 * jose and keys.ts (which needs jose), loaded by createJwtVerifier. The request pipeline imports
 * this module for its helpers on every start, while only a config with a `jwt` section needs
 * jose: a static import would keep jose's ~50 modules resident in every sidecar.
 */
interface JwtLib {
  readonly jwtVerify: typeof Jose.jwtVerify;
  readonly FileKeySource: typeof Keys.FileKeySource;
  readonly RemoteKeySource: typeof Keys.RemoteKeySource;
  readonly isSupportedAlgorithm: typeof Keys.isSupportedAlgorithm;
  readonly parseJwks: typeof Keys.parseJwks;
}

let jwtLib: Promise<JwtLib> | null = null;

function loadJwtLib(): Promise<JwtLib> {
  jwtLib ??= Promise.all([import('jose'), import('./keys.js')]).then(
    ([jose, keys]) => ({
      jwtVerify: jose.jwtVerify,
      FileKeySource: keys.FileKeySource,
      RemoteKeySource: keys.RemoteKeySource,
      isSupportedAlgorithm: keys.isSupportedAlgorithm,
      parseJwks: keys.parseJwks,
    }),
    (err: unknown) => {
      // Let a later config load try again rather than remember the failure.
      jwtLib = null;
      throw err;
    },
  );
  return jwtLib;
}

export type JwtReason = 'jwt_missing' | 'jwt_invalid' | 'jwt_expired' | 'jwt_cert_mismatch' | 'jwt_revoked' | 'token_scope_missing';

export interface JwtOk {
  readonly ok: true;
  /** The raw `sub` claim, or null when the token has none. Not header-safe: use subHeader. */
  readonly sub: string | null;
  /** `sub` percent-encoded for `x-jwt-sub`; null when the token has no `sub` (set no header). */
  readonly subHeader: string | null;
  readonly scopes: ReadonlySet<string>;
  /** Space-separated, for `x-jwt-scopes` (may be empty). */
  readonly scopesHeader: string;
  /** The `exp` claim, seconds since the epoch. */
  readonly exp: number;
}
export type JwtResult = JwtOk | { readonly ok: false; readonly reason: JwtReason };

export interface JwtSettings {
  readonly issuer: string;
  readonly audience: string | readonly string[];
  readonly algorithms: readonly string[];
  readonly clockSkewMs: number;
  readonly requireJti: boolean;
  readonly certificateBound: boolean;
  /** An absolute path (relative ones resolve against the working directory). */
  readonly jwks: { readonly file: string } | { readonly url: string; readonly cacheForMs: number };
  readonly denylistFile?: string | undefined;
}

export interface JwtVerifierOptions {
  /** Clock (ms since the epoch) for claims, the token cache and the JWKS cache. */
  readonly now?: () => number;
  /** For the JWKS URL (default: global fetch, i.e. Node's bundled CA store + NODE_EXTRA_CA_CERTS). */
  readonly fetch?: JwksFetch;
  /** Background problems (a failed JWKS refresh). Messages hold no token. Default: ignored. */
  readonly onError?: (err: JwtError) => void;
  /** A JWKS fetch succeeded after failed ones. */
  readonly onRecovered?: () => void;
  /** Minimum time between JWKS fetches after a successful one (default 30 s). */
  readonly jwksCooldownMs?: number;
  /** ...and after a failed one (default 5 s). */
  readonly jwksFailureCooldownMs?: number;
  /** How long past `cacheFor` cached keys keep serving while the issuer fails (default 1 h). */
  readonly jwksMaxStaleMs?: number;
  /** Timeout of one JWKS fetch (default 5 s). */
  readonly jwksTimeoutMs?: number;
  /** Verified tokens remembered per connection (default 4; oldest evicted). */
  readonly connectionCacheSize?: number;
}

/** base64url(SHA-256(certificate DER)): the RFC 8705 `x5t#S256` form. Compute once per connection. */
export function certThumbprintB64url(certDer: Uint8Array): string {
  return createHash('sha256').update(certDer).digest('base64url');
}

/** The `WWW-Authenticate` value for a refusal (SPEC §4: 401 carries error="invalid_token"). */
export function wwwAuthenticate(reason: JwtReason): string {
  return reason === 'token_scope_missing' ? 'Bearer error="insufficient_scope"' : 'Bearer error="invalid_token"';
}

const MAX_TOKEN_LENGTH = 16 * 1024;
const JWS_COMPACT = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;
const SCOPE_TOKEN = /^[\x21-\x7e]+$/;
const HEADER_SAFE = /^[\x21-\x24\x26-\x7e]*$/;
const MISSING: JwtResult = Object.freeze({ ok: false, reason: 'jwt_missing' });
const INVALID: JwtResult = Object.freeze({ ok: false, reason: 'jwt_invalid' });
const EXPIRED: JwtResult = Object.freeze({ ok: false, reason: 'jwt_expired' });
const CERT_MISMATCH: JwtResult = Object.freeze({ ok: false, reason: 'jwt_cert_mismatch' });
const REVOKED: JwtResult = Object.freeze({ ok: false, reason: 'jwt_revoked' });
const SCOPE_MISSING: JwtResult = Object.freeze({ ok: false, reason: 'token_scope_missing' });

/** A verified token, as remembered on a connection. */
interface Verified {
  readonly result: JwtOk;
  readonly jti: string | null;
  /** cnf["x5t#S256"], or null when the token is not certificate-bound. */
  readonly cnf: string | null;
  /** Past this instant (ms) jose would call the token expired. */
  readonly validUntilMs: number;
  /** Key-set generation the signature was checked against. */
  readonly keyGeneration: number;
}

/**
 * Per-connection memory of verified tokens. Create with JwtVerifier#newConnectionCache.
 * A few slots scanned linearly: comparing strings with `===` costs a length check and a memcmp,
 * while a Map would hash the whole (~1 KB, freshly parsed) token on every request (~3 µs).
 */
export class JwtConnectionCache {
  /** The verifier that filled it: a cache met by another verifier (config reload) starts over. */
  owner: JwtVerifier | null;
  private readonly tokens: (string | null)[];
  private readonly values: (Verified | null)[];
  private next: number;
  constructor(owner: JwtVerifier | null, slots: number) {
    this.owner = owner;
    this.tokens = new Array<string | null>(slots).fill(null);
    this.values = new Array<Verified | null>(slots).fill(null);
    this.next = 0;
  }

  /** Tokens currently remembered. */
  get size(): number {
    let n = 0;
    for (const t of this.tokens) if (t !== null) n++;
    return n;
  }

  /** @internal */
  find(token: string): number {
    const tokens = this.tokens;
    for (let i = 0; i < tokens.length; i++) if (tokens[i] === token) return i;
    return -1;
  }

  /** @internal */
  at(i: number): Verified {
    return this.values[i]!;
  }

  /** @internal Remember a token, replacing the oldest slot when full. */
  add(token: string, v: Verified): void {
    const i = this.next;
    this.tokens[i] = token;
    this.values[i] = v;
    this.next = (i + 1) % this.tokens.length;
  }

  /** @internal */
  drop(i: number): void {
    this.tokens[i] = null;
    this.values[i] = null;
  }

  /** @internal */
  clear(owner: JwtVerifier): void {
    this.owner = owner;
    this.tokens.fill(null);
    this.values.fill(null);
    this.next = 0;
  }
}

export interface JwtStats {
  /** Key lookups by jose, one per signature check: a cache hit does not add one. */
  readonly keyResolutions: number;
  readonly cacheHits: number;
  readonly jwksFetches: number;
  readonly jwksFetchFailures: number;
}

export class JwtVerifier {
  private denylist: ReadonlySet<string>;
  private readonly now: () => number;
  private readonly skewSec: number;
  private readonly cacheSize: number;
  private readonly baseOptions: JWTVerifyOptions;
  private readonly getKey: (h: CompactJWSHeaderParameters, t: FlattenedJWSInput) => ReturnType<KeySource['resolve']>;
  private keyResolutions = 0;
  private cacheHits = 0;

  /** Use createJwtVerifier. */
  constructor(
    private readonly settings: JwtSettings,
    private readonly keys: KeySource,
    denylist: ReadonlySet<string>,
    opts: JwtVerifierOptions,
    private readonly lib: JwtLib,
  ) {
    this.denylist = denylist;
    this.now = opts.now ?? Date.now;
    this.skewSec = settings.clockSkewMs / 1000;
    this.cacheSize = Math.max(1, opts.connectionCacheSize ?? 4);
    this.baseOptions = Object.freeze({
      algorithms: [...settings.algorithms],
      issuer: settings.issuer,
      audience: typeof settings.audience === 'string' ? settings.audience : [...settings.audience],
      clockTolerance: this.skewSec,
      requiredClaims: settings.requireJti ? ['exp', 'jti'] : ['exp'],
    });
    this.getKey = (h, t) => {
      this.keyResolutions++;
      return this.keys.resolve(h, t);
    };
  }

  newConnectionCache(): JwtConnectionCache {
    return new JwtConnectionCache(this, this.cacheSize);
  }

  /**
   * `authorization`: the raw header value; `certThumbprint`: certThumbprintB64url(leaf DER) of
   * this connection; `requiredScopes`: the route's tokenScopes; `conn`: this connection's cache
   * (null: no caching). Never throws.
   */
  verify(
    authorization: string | undefined,
    certThumbprint: string,
    requiredScopes: readonly string[] | undefined,
    conn: JwtConnectionCache | null,
  ): JwtResult | Promise<JwtResult> {
    const token = bearerToken(authorization);
    if (typeof token !== 'string') return token;
    if (conn !== null) {
      if (conn.owner !== this) conn.clear(this);
      const i = conn.find(token);
      if (i !== -1) {
        const hit = conn.at(i);
        if (hit.keyGeneration === this.keys.generation && this.now() < hit.validUntilMs) {
          this.cacheHits++;
          return this.authorize(hit, certThumbprint, requiredScopes);
        }
        conn.drop(i);
      }
    }
    if (!JWS_COMPACT.test(token)) return INVALID;
    return this.verifySignature(token, certThumbprint, requiredScopes, conn);
  }

  /** Re-read the JWKS file (if any) and the denylist (if any). Each keeps its old contents on failure. */
  async reloadFiles(): Promise<void> {
    const failures: JwtError[] = [];
    if (this.keys instanceof this.lib.FileKeySource) {
      try {
        await this.keys.reload();
      } catch (err) {
        failures.push(asJwtError(err, ['jwt', 'jwks', 'file']));
      }
    }
    if (this.settings.denylistFile !== undefined) {
      try {
        this.denylist = await loadDenylist(this.settings.denylistFile);
      } catch (err) {
        failures.push(asJwtError(err, ['jwt', 'denylist']));
      }
    }
    const first = failures[0];
    if (first === undefined) return;
    if (failures.length === 1) throw first;
    throw new JwtError(first.code, first.configPath, failures.map((f) => f.message).join('; '), { cause: failures });
  }

  /** Absolute paths of the files reloadFiles reads (JWKS file, denylist). */
  watchedFiles(): readonly string[] {
    const out: string[] = [];
    if (this.keys instanceof this.lib.FileKeySource) out.push(this.keys.file);
    if (this.settings.denylistFile !== undefined) out.push(this.settings.denylistFile);
    return out;
  }

  /** With a JWKS URL: fetch the keys now (e.g. at start-up) and throw if that fails. No-op for a file. */
  async prefetch(): Promise<void> {
    if (this.keys instanceof this.lib.RemoteKeySource) await this.keys.prefetch();
  }

  stats(): JwtStats {
    const remote = this.keys instanceof this.lib.RemoteKeySource ? this.keys : null;
    return {
      keyResolutions: this.keyResolutions,
      cacheHits: this.cacheHits,
      jwksFetches: remote?.fetches ?? 0,
      jwksFetchFailures: remote?.fetchFailures ?? 0,
    };
  }

  close(): void {
    this.keys.close();
  }

  private async verifySignature(
    token: string,
    certThumbprint: string,
    requiredScopes: readonly string[] | undefined,
    conn: JwtConnectionCache | null,
  ): Promise<JwtResult> {
    const keyGeneration = this.keys.generation;
    const now = this.now();
    let payload: JWTPayload;
    try {
      ({ payload } = await this.lib.jwtVerify(token, this.getKey, { ...this.baseOptions, currentDate: new Date(now) }));
    } catch (err) {
      return (err as { code?: unknown }).code === 'ERR_JWT_EXPIRED' ? EXPIRED : INVALID;
    }
    const v = this.claims(payload, now, keyGeneration);
    if (v === null) return INVALID;
    if (conn !== null && conn.owner === this && conn.find(token) === -1) conn.add(token, v);
    return this.authorize(v, certThumbprint, requiredScopes);
  }

  /** Claims jose leaves unchecked; null when one is malformed. */
  private claims(p: JWTPayload, now: number, keyGeneration: number): Verified | null {
    const { sub, jti, iat, exp } = p;
    if (typeof exp !== 'number') return null; // required and type-checked by jose; narrows here
    if (sub !== undefined && typeof sub !== 'string') return null;
    if (jti !== undefined && (typeof jti !== 'string' || jti === '')) return null;
    if (typeof iat === 'number' && iat > Math.floor(now / 1000) + this.skewSec) return null;
    const scopes = scopesOf(p);
    if (scopes === null) return null;
    let cnf: string | null = null;
    const c: unknown = p['cnf'];
    if (c !== undefined) {
      if (typeof c !== 'object' || c === null || Array.isArray(c)) return null;
      const x5t: unknown = (c as Record<string, unknown>)['x5t#S256'];
      if (x5t !== undefined && typeof x5t !== 'string') return null;
      if (typeof x5t === 'string') cnf = x5t;
    }
    const result: JwtOk = Object.freeze({
      ok: true,
      sub: sub ?? null,
      subHeader: sub === undefined ? null : headerSafe(sub),
      scopes,
      scopesHeader: [...scopes].join(' '),
      exp,
    });
    return { result, jti: jti ?? null, cnf, validUntilMs: (exp + this.skewSec) * 1000, keyGeneration };
  }

  private authorize(v: Verified, certThumbprint: string, requiredScopes: readonly string[] | undefined): JwtResult {
    if (v.cnf === null ? this.settings.certificateBound : v.cnf !== certThumbprint) return CERT_MISMATCH;
    if (v.jti !== null && this.denylist.has(v.jti)) return REVOKED;
    if (requiredScopes !== undefined) {
      for (let i = 0; i < requiredScopes.length; i++) {
        if (!v.result.scopes.has(requiredScopes[i]!)) return SCOPE_MISSING;
      }
    }
    return v.result;
  }
}

/**
 * A `jwt` section, loaded: the settings (paths absolute) with the JWKS file and the denylist read
 * and checked. Data only, no sockets, timers or caches, so a config snapshot can hold it; the
 * runtime makes the key source and the verifier from it, and keeps them across reloads while
 * `keysKey` / `verifierKey` say that nothing they depend on changed (runtime/sidecar.ts). Both keys
 * are over the loaded contents, not the file names: a JWKS file or denylist rewritten in place
 * gives new keys.
 */
export class JwtMaterial {
  readonly settings: JwtSettings;
  /** SHA-256 (hex) of each file read, from the very bytes that were parsed. */
  readonly fileDigests: ReadonlyMap<string, string>;
  /** Equal for two loads whose key source can be shared: the same JWKS URL and cache settings, or the same JWKS file contents. */
  readonly keysKey: string;
  /** Equal for two loads that judge every token alike: same keys, claim rules and denylist. */
  readonly verifierKey: string;
  readonly #jwks: ParsedJwks | null;
  readonly #denylist: ReadonlySet<string>;
  readonly #lib: JwtLib;

  /** Use loadJwtMaterial. */
  constructor(settings: JwtSettings, jwks: ParsedJwks | null, denylist: ReadonlySet<string>, fileDigests: ReadonlyMap<string, string>, lib: JwtLib) {
    this.settings = settings;
    this.fileDigests = fileDigests;
    this.#jwks = jwks;
    this.#denylist = denylist;
    this.#lib = lib;
    const k = settings.jwks;
    this.keysKey = digest(['file' in k ? ['file', k.file, jwks?.canonical ?? ''] : ['url', k.url, k.cacheForMs], settings.algorithms]);
    this.verifierKey = digest([
      this.keysKey,
      settings.issuer,
      settings.audience,
      settings.clockSkewMs,
      settings.requireJti,
      settings.certificateBound,
      settings.denylistFile ?? null,
      [...denylist].sort(),
    ]);
    Object.freeze(this);
  }

  /** A new key source: the JWKS file's keys, or the URL's (fetched lazily, then cached by the source). */
  keySource(opts: JwtVerifierOptions = {}): KeySource {
    const { FileKeySource, RemoteKeySource } = this.#lib;
    const s = this.settings;
    if ('file' in s.jwks) {
      // Never null for a file: loadJwtMaterial parsed it.
      if (this.#jwks === null) throw new Error('invariant: JWT material for a JWKS file has no parsed keys');
      return FileKeySource.of(s.jwks.file, s.algorithms, this.#jwks);
    }
    return new RemoteKeySource({
      url: s.jwks.url,
      cacheForMs: s.jwks.cacheForMs,
      algorithms: s.algorithms,
      now: opts.now ?? Date.now,
      fetch: opts.fetch ?? fetch,
      cooldownMs: opts.jwksCooldownMs ?? 30_000,
      failureCooldownMs: opts.jwksFailureCooldownMs ?? 5_000,
      maxStaleMs: opts.jwksMaxStaleMs ?? 3_600_000,
      timeoutMs: opts.jwksTimeoutMs ?? 5_000,
      onError: opts.onError ?? (() => {}),
      ...(opts.onRecovered !== undefined ? { onRecovered: opts.onRecovered } : {}),
    });
  }

  /** A verifier over `keys`: keySource() of this material, or of one with the same keysKey. */
  verifier(keys: KeySource, opts: JwtVerifierOptions = {}): JwtVerifier {
    return new JwtVerifier(this.settings, keys, this.#denylist, { ...opts, now: opts.now ?? Date.now }, this.#lib);
  }
}

/**
 * Load a `jwt` section: read and check the JWKS file (a JWKS URL is fetched later, by the key
 * source) and the denylist. Throws JwtError (`code`, `configPath`, `line` for the denylist) when
 * a file is unreadable or malformed.
 */
export async function loadJwtMaterial(s: JwtSettings): Promise<JwtMaterial> {
  const lib = await loadJwtLib();
  if (s.algorithms.length === 0 || !s.algorithms.every(lib.isSupportedAlgorithm)) {
    throw new TypeError(`jwt algorithms must be asymmetric JWS algorithms, got ${s.algorithms.join(', ')}`);
  }
  const settings: JwtSettings = Object.freeze({
    ...s,
    jwks: 'file' in s.jwks ? { file: path.resolve(s.jwks.file) } : s.jwks,
    denylistFile: s.denylistFile === undefined ? undefined : path.resolve(s.denylistFile),
  });
  const digests = new Map<string, string>();
  let jwks: ParsedJwks | null = null;
  if ('file' in settings.jwks) {
    const file = settings.jwks.file;
    const buf = await readJwtFile(file, 'ERR_JWKS_FILE', ['jwt', 'jwks', 'file']);
    digests.set(file, createHash('sha256').update(buf).digest('hex'));
    jwks = lib.parseJwks(buf.toString('utf8'), file, ['jwt', 'jwks', 'file'], settings.algorithms);
  }
  let denylist: ReadonlySet<string> = new Set<string>();
  if (settings.denylistFile !== undefined) {
    const file = settings.denylistFile;
    const buf = await readJwtFile(file, 'ERR_DENYLIST', ['jwt', 'denylist']);
    digests.set(file, createHash('sha256').update(buf).digest('hex'));
    denylist = parseDenylist(buf.toString('utf8'), file);
  }
  return new JwtMaterial(settings, jwks, denylist, digests, lib);
}

/**
 * Build a verifier with its own key source: reads the JWKS file and the denylist (a JWKS URL is
 * fetched lazily, or by `prefetch()`). Throws as loadJwtMaterial does.
 */
export async function createJwtVerifier(s: JwtSettings, opts: JwtVerifierOptions = {}): Promise<JwtVerifier> {
  const material = await loadJwtMaterial(s);
  return material.verifier(material.keySource(opts), opts);
}

function digest(v: unknown): string {
  return createHash('sha256').update(JSON.stringify(v)).digest('hex');
}

/** The token, or the refusal: jwt_missing without a Bearer scheme, jwt_invalid for a bad one. */
function bearerToken(h: string | undefined): string | JwtResult {
  if (h === undefined || h.length < 6) return MISSING;
  // "Bearer" case-insensitively, then 1*SP (RFC 6750 §2.1); anything else is not a bearer credential.
  if ((h.charCodeAt(0) | 0x20) !== 0x62 || h.slice(1, 6).toLowerCase() !== 'earer') return MISSING;
  if (h.length === 6) return INVALID;
  const sep = h.charCodeAt(6);
  if (sep !== 0x20) return sep === 0x09 ? INVALID : MISSING;
  let i = 7;
  while (h.charCodeAt(i) === 0x20) i++;
  if (i === h.length || h.length - i > MAX_TOKEN_LENGTH) return INVALID;
  return i === 7 ? h.slice(7) : h.slice(i);
}

/** Scopes from `scope` (string) or `scp` (array or string); null when the claim is malformed. */
function scopesOf(p: JWTPayload): ReadonlySet<string> | null {
  const scope: unknown = p['scope'];
  const scp: unknown = p['scp'];
  let raw: readonly unknown[];
  if (scope !== undefined) {
    if (typeof scope !== 'string') return null;
    raw = scope.split(' ');
  } else if (scp !== undefined) {
    if (typeof scp === 'string') raw = scp.split(' ');
    else if (Array.isArray(scp) && scp.every((s) => typeof s === 'string')) raw = scp;
    else return null;
  } else {
    raw = [];
  }
  const out = new Set<string>();
  for (const s of raw) if (typeof s === 'string' && SCOPE_TOKEN.test(s)) out.add(s);
  return out;
}

function headerSafe(s: string): string {
  if (HEADER_SAFE.test(s)) return s;
  let out = '';
  for (const b of Buffer.from(s, 'utf8')) {
    out += b >= 0x21 && b <= 0x7e && b !== 0x25 ? String.fromCharCode(b) : `%${b < 16 ? '0' : ''}${b.toString(16).toUpperCase()}`;
  }
  return out;
}

function asJwtError(err: unknown, configPath: JwtError['configPath']): JwtError {
  return err instanceof JwtError ? err : new JwtError(configPath[1] === 'denylist' ? 'ERR_DENYLIST' : 'ERR_JWKS_FILE', configPath, String(err), { cause: err });
}
