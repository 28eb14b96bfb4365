/**
 * Where verification keys come from: a local JWKS file or a JWKS URL. Both hand jose a key
 * resolver and expose a `generation` that changes only when the set of keys really changes, so
 * per-connection token caches can be dropped after a key rotation (verify.ts).
 *
 * The URL source does not use jose's createRemoteJWKSet: that one refuses to serve keys once
 * `cacheMaxAge` has passed and the issuer is down, and after a *failed* fetch it lets every
 * unknown `kid` trigger another fetch. The rules here (all times from the injected clock):
 * - keys are fresh for `cacheFor` after the last successful fetch; after that a refresh starts
 *   in the background and the old keys keep serving (stale-while-revalidate);
 * - if refreshes keep failing, the old keys serve for at most `maxStale` beyond `cacheFor`; then
 *   tokens are refused (jwt_invalid) until the issuer answers again;
 * - a token whose `kid` (or alg/key type) matches no key triggers a refetch, and the request
 *   waits for it; a fetch never starts sooner than `cooldown` (default 30 s) after the previous
 *   attempt, or `failureCooldown` (default 5 s) after a failed one, whatever triggered it; one
 *   fetch at a time, concurrent callers share it. So a flood of random kids costs the issuer at
 *   most one request per cooldown window.
 * - a response must be HTTP 200 (no redirects), at most 1 MiB, and a valid public JWK Set;
 *   otherwise the old keys are kept and the error is reported through `onError`.
 */
import { createPublicKey } from 'node:crypto';
import { createLocalJWKSet, errors } from 'jose';
import type { CompactJWSHeaderParameters, CryptoKey, FlattenedJWSInput, JSONWebKeySet, LocalJWKSet } from 'jose';
import { JwtError, readJwtFile } from './errors.js';
import type { JwtConfigKey } from './errors.js';

/** The slice of `fetch` the URL source uses; global fetch and undici's fetch both fit. */
export type JwksFetch = (
  url: string,
  init: { method: 'GET'; headers: Record<string, string>; redirect: 'manual'; signal: AbortSignal },
) => Promise<JwksResponse>;

export interface JwksResponse {
  readonly status: number;
  readonly headers: { get(name: string): string | null };
  readonly body?: { cancel(): Promise<void> } | null;
  text(): Promise<string>;
}

export interface KeySource {
  /** Changes whenever the usable key set changes (never on a no-op reload or refresh). */
  readonly generation: number;
  resolve(header: CompactJWSHeaderParameters, token: FlattenedJWSInput): Promise<CryptoKey>;
  close(): void;
}

const MAX_JWKS_BYTES = 1024 * 1024;
/** Members that only private or symmetric keys carry: a verification JWKS must not hold them. */
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k', 'priv'] as const;
const ALG_KEY: Readonly<Record<string, { kty: string; crv?: string }>> = {
  RS256: { kty: 'RSA' },
  RS384: { kty: 'RSA' },
  RS512: { kty: 'RSA' },
  PS256: { kty: 'RSA' },
  PS384: { kty: 'RSA' },
  PS512: { kty: 'RSA' },
  ES256: { kty: 'EC', crv: 'P-256' },
  ES384: { kty: 'EC', crv: 'P-384' },
  ES512: { kty: 'EC', crv: 'P-521' },
  EdDSA: { kty: 'OKP', crv: 'Ed25519' },
};

/** The asymmetric algorithms a verifier may be configured with (never `none`, never HS*). */
export function isSupportedAlgorithm(alg: string): boolean {
  return Object.hasOwn(ALG_KEY, alg);
}

export interface ParsedJwks {
  readonly jwks: JSONWebKeySet;
  /** Stable text of the parsed set, to tell a real change from a rewrite of the same keys. */
  readonly canonical: string;
  readonly set: LocalJWKSet;
}

/**
 * Parse and check a JWK Set: JSON object with `keys`, no private or symmetric key material,
 * every RSA/EC/OKP member a valid public key, `kid` a string, and at least one key usable with
 * one of `algorithms`. Keys of other types (e.g. a future AKP key) are ignored, not refused.
 */
export function parseJwks(text: string, label: string, configPath: JwtConfigKey, algorithms: readonly string[]): ParsedJwks {
  const fail = (msg: string, cause?: unknown): JwtError =>
    new JwtError('ERR_JWKS', configPath, `${label}: ${msg}`, cause === undefined ? undefined : { cause });
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw fail('not valid JSON', err);
  }
  if (!isPlainObject(json) || !Array.isArray(json['keys'])) throw fail('not a JWK Set (expected {"keys": [...]})');
  const keys: unknown[] = json['keys'];
  let usable = 0;
  for (const [i, key] of keys.entries()) {
    if (!isPlainObject(key) || typeof key['kty'] !== 'string') throw fail(`keys[${i}] is not a JWK (no "kty")`);
    const kty = key['kty'];
    if (kty === 'oct' || PRIVATE_MEMBERS.some((m) => Object.hasOwn(key, m))) {
      throw fail(`keys[${i}] holds private or secret key material; a JWKS for verification holds public keys only`);
    }
    if (key['kid'] !== undefined && typeof key['kid'] !== 'string') throw fail(`keys[${i}].kid must be a string`);
    if (kty !== 'RSA' && kty !== 'EC' && kty !== 'OKP') continue;
    let bits: number | undefined;
    try {
      bits = createPublicKey({ key, format: 'jwk' }).asymmetricKeyDetails?.modulusLength;
    } catch (err) {
      throw fail(`keys[${i}] is not a valid ${kty} public key`, err);
    }
    // jose refuses these at verification time anyway; say so at load time instead.
    if (kty === 'RSA' && (bits === undefined || bits < 2048)) throw fail(`keys[${i}] is an RSA key under 2048 bits`);
    if (algorithms.some((alg) => usableFor(key, alg))) usable++;
  }
  if (usable === 0) throw fail(`no key can verify any of the configured algorithms (${algorithms.join(', ')})`);
  const jwks = json as unknown as JSONWebKeySet;
  let set: LocalJWKSet;
  try {
    set = createLocalJWKSet(jwks);
  } catch (err) {
    throw fail('not a usable JWK Set', err);
  }
  return { jwks, canonical: JSON.stringify(jwks), set };
}

function usableFor(jwk: Record<string, unknown>, alg: string): boolean {
  const want = ALG_KEY[alg];
  if (want === undefined || jwk['kty'] !== want.kty) return false;
  if (want.crv !== undefined && jwk['crv'] !== want.crv) return false;
  if (jwk['alg'] !== undefined && jwk['alg'] !== alg) return false;
  if (jwk['use'] !== undefined && jwk['use'] !== 'sig') return false;
  const ops = jwk['key_ops'];
  return ops === undefined || (Array.isArray(ops) && ops.includes('verify'));
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

// ---------------------------------------------------------------- file

export class FileKeySource implements KeySource {
  generation = 0;
  private parsed: ParsedJwks;

  private constructor(
    readonly file: string,
    private readonly algorithms: readonly string[],
    parsed: ParsedJwks,
  ) {
    this.parsed = parsed;
  }

  static async load(file: string, algorithms: readonly string[]): Promise<FileKeySource> {
    return new FileKeySource(file, algorithms, await readJwksFile(file, algorithms));
  }

  /** Over keys already read and checked (`parsed` from parseJwks of `file`). */
  static of(file: string, algorithms: readonly string[], parsed: ParsedJwks): FileKeySource {
    return new FileKeySource(file, algorithms, parsed);
  }

  /** Re-read the file; on any problem the old keys stay and the error is thrown. */
  async reload(): Promise<void> {
    const next = await readJwksFile(this.file, this.algorithms);
    if (next.canonical !== this.parsed.canonical) {
      this.parsed = next;
      this.generation++;
    }
  }

  resolve(header: CompactJWSHeaderParameters, token: FlattenedJWSInput): Promise<CryptoKey> {
    return this.parsed.set(header, token);
  }

  close(): void {}
}

async function readJwksFile(file: string, algorithms: readonly string[]): Promise<ParsedJwks> {
  return parseJwks((await readJwtFile(file, 'ERR_JWKS_FILE', ['jwt', 'jwks', 'file'])).toString('utf8'), file, ['jwt', 'jwks', 'file'], algorithms);
}

// ---------------------------------------------------------------- URL

export interface RemoteKeyOptions {
  readonly url: string;
  readonly cacheForMs: number;
  readonly algorithms: readonly string[];
  readonly now: () => number;
  readonly fetch: JwksFetch;
  readonly cooldownMs: number;
  readonly failureCooldownMs: number;
  readonly maxStaleMs: number;
  readonly timeoutMs: number;
  readonly onError: (err: JwtError) => void;
  /** A fetch succeeded after failed ones (for a "works again" log line). */
  readonly onRecovered?: () => void;
}

/** Thrown into jose from the resolver when no keys can be served; maps to jwt_invalid. */
export class JwksUnavailable extends errors.JOSEError {
  override code = 'ERR_JWKS_UNAVAILABLE';
}

export class RemoteKeySource implements KeySource {
  generation = 0;
  fetches = 0;
  fetchFailures = 0;
  private parsed: ParsedJwks | null = null;
  private fetchedAt = 0;
  private lastAttemptAt: number | null = null;
  private lastFailed = false;
  private inflight: Promise<void> | null = null;
  private readonly abort = new AbortController();
  /** The URL without userinfo or query, for error messages. */
  private readonly label: string;

  constructor(private readonly o: RemoteKeyOptions) {
    const u = new URL(o.url);
    this.label = `${u.origin}${u.pathname}`;
  }

  async resolve(header: CompactJWSHeaderParameters, token: FlattenedJWSInput): Promise<CryptoKey> {
    const set = await this.current();
    try {
      return await set(header, token);
    } catch (err) {
      if (!(err instanceof errors.JWKSNoMatchingKey)) throw err;
      // An unknown kid may be a rotation we have not seen yet: refetch, within the cooldown.
      if (this.inflight === null) this.startFetch(this.o.now());
      if (this.inflight === null) throw err;
      await this.inflight;
      const after = this.parsed;
      if (after === null) throw err;
      return after.set(header, token);
    }
  }

  /** Fetch now (ignoring the cooldown), e.g. at start-up; throws the fetch error. */
  async prefetch(): Promise<void> {
    if (this.inflight !== null) await this.inflight;
    const p = this.fetchOnce(this.o.now());
    const shared = p.then(
      () => {},
      () => {},
    );
    this.inflight = shared;
    try {
      await p;
    } finally {
      if (this.inflight === shared) this.inflight = null;
    }
  }

  close(): void {
    this.abort.abort();
  }

  private async current(): Promise<LocalJWKSet> {
    const now = this.o.now();
    const parsed = this.parsed;
    if (parsed !== null) {
      const age = now - this.fetchedAt;
      if (age < this.o.cacheForMs) return parsed.set;
      this.startFetch(now);
      if (age < this.o.cacheForMs + this.o.maxStaleMs) return parsed.set;
    } else {
      this.startFetch(now);
    }
    if (this.inflight !== null) await this.inflight;
    const after = this.parsed;
    if (after !== null && this.o.now() - this.fetchedAt < this.o.cacheForMs + this.o.maxStaleMs) return after.set;
    throw new JwksUnavailable('no current JSON Web Key Set');
  }

  /** Start a background fetch unless one is running or the cooldown has not passed. Never rejects. */
  private startFetch(now: number): void {
    if (this.inflight !== null || this.abort.signal.aborted) return;
    if (this.lastAttemptAt !== null && now - this.lastAttemptAt < (this.lastFailed ? this.o.failureCooldownMs : this.o.cooldownMs)) return;
    const p = this.fetchOnce(now)
      .catch((err: unknown) => {
        if (this.abort.signal.aborted) return;
        try {
          this.o.onError(err instanceof JwtError ? err : this.fetchError(err));
        } catch {
          // A failing log callback must not turn into an unhandled rejection.
        }
      })
      .finally(() => {
        if (this.inflight === p) this.inflight = null;
      });
    this.inflight = p;
  }

  private async fetchOnce(now: number): Promise<void> {
    this.lastAttemptAt = now;
    this.fetches++;
    try {
      const signal = AbortSignal.any([this.abort.signal, AbortSignal.timeout(this.o.timeoutMs)]);
      let res: JwksResponse;
      try {
        res = await this.o.fetch(this.o.url, {
          method: 'GET',
          headers: { accept: 'application/jwk-set+json, application/json' },
          redirect: 'manual',
          signal,
        });
      } catch (err) {
        throw this.fetchError(err);
      }
      if (res.status !== 200) {
        await res.body?.cancel().catch(() => {});
        throw new JwtError('ERR_JWKS_FETCH', ['jwt', 'jwks', 'url'], `${this.label}: HTTP ${res.status} (expected 200)`);
      }
      const declared = Number(res.headers.get('content-length') ?? '0');
      if (declared > MAX_JWKS_BYTES) {
        await res.body?.cancel().catch(() => {});
        throw new JwtError('ERR_JWKS_FETCH', ['jwt', 'jwks', 'url'], `${this.label}: response larger than 1 MiB`);
      }
      let text: string;
      try {
        text = await res.text();
      } catch (err) {
        throw this.fetchError(err);
      }
      if (text.length > MAX_JWKS_BYTES) throw new JwtError('ERR_JWKS_FETCH', ['jwt', 'jwks', 'url'], `${this.label}: response larger than 1 MiB`);
      const next = parseJwks(text, this.label, ['jwt', 'jwks', 'url'], this.o.algorithms);
      if (this.parsed === null || next.canonical !== this.parsed.canonical) {
        this.parsed = next;
        this.generation++;
      }
      this.fetchedAt = this.o.now();
      const recovered = this.lastFailed;
      this.lastFailed = false;
      if (recovered) {
        try {
          this.o.onRecovered?.();
        } catch {
          // A failing log callback must not turn a good fetch into a failed one.
        }
      }
    } catch (err) {
      this.lastFailed = true;
      this.fetchFailures++;
      throw err;
    }
  }

  private fetchError(err: unknown): JwtError {
    const e = err as { name?: unknown; message?: unknown; cause?: { code?: unknown; message?: unknown } };
    const why =
      e.name === 'TimeoutError'
        ? `timed out after ${this.o.timeoutMs}ms`
        : typeof e.cause?.code === 'string'
          ? e.cause.code
          : typeof e.cause?.message === 'string'
            ? e.cause.message
            : typeof e.message === 'string'
              ? e.message
              : 'fetch failed';
    return new JwtError('ERR_JWKS_FETCH', ['jwt', 'jwks', 'url'], `cannot fetch ${this.label}: ${why}`, { cause: err });
  }
}
