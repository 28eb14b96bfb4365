/**
 * JWKS URL problems, reported. A refresh runs in the background and its failure reaches nobody
 * else: each one is counted, and the operational log gets the first failure of a kind (error
 * code), then at most one line per kind per interval while it goes on, saying how many were not
 * logged; and one line when a fetch works again. An issuer that is down is retried every few
 * seconds (the failure cooldown), so logging each failure would flood the log.
 */
import type { Log } from '../log.js';
import type { JwtError, JwtErrorCode } from './errors.js';

export interface JwksReportOptions {
  readonly log: Log;
  /** Called once per failure (the metric). */
  readonly count: () => void;
  /** Clock (ms). */
  readonly now?: () => number;
  /** Minimum time between two log lines of the same kind (default 5 minutes). */
  readonly intervalMs?: number;
}

export class JwksReport {
  readonly #o: JwksReportOptions;
  readonly #now: () => number;
  readonly #intervalMs: number;
  /** Per error code: when it was last logged and how many since were not. */
  readonly #kinds = new Map<JwtErrorCode, { at: number; notLogged: number }>();

  constructor(o: JwksReportOptions) {
    this.#o = o;
    this.#now = o.now ?? Date.now;
    this.#intervalMs = o.intervalMs ?? 5 * 60_000;
  }

  /** A failed fetch. The message names the URL without userinfo or query, never a token or key. */
  failure(err: JwtError): void {
    this.#o.count();
    const now = this.#now();
    const kind = this.#kinds.get(err.code);
    if (kind !== undefined && now - kind.at < this.#intervalMs) {
      kind.notLogged++;
      return;
    }
    this.#kinds.set(err.code, { at: now, notLogged: 0 });
    this.#o.log.warn(
      { code: err.code, err: err.message, ...(kind !== undefined && kind.notLogged > 0 ? { notLogged: kind.notLogged } : {}) },
      'JWKS fetch failed: the keys of the last good fetch keep serving up to 1 h past jwks.cacheFor; with none, tokens are refused',
    );
  }

  /** A fetch succeeded after failed ones. */
  recovered(): void {
    if (this.#kinds.size === 0) return; // no failure was reported since the last recovery
    let notLogged = 0;
    for (const k of this.#kinds.values()) notLogged += k.notLogged;
    this.#kinds.clear();
    this.#o.log.info(notLogged > 0 ? { notLogged } : {}, 'JWKS fetch works again');
  }
}
