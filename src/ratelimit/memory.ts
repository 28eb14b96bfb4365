/**
 * In-process rate limiter: an exact token bucket per key (bucket.ts), no timers, synchronous.
 *
 * Memory stays bounded whatever clients do:
 *  - Pinned keys (`id/…`, see keys.ts) come from config identities, so there are few of them;
 *    they live in their own map and are never evicted.
 *  - Every other key (one per client certificate) lives in a Map plus an intrusive doubly linked
 *    list in least-recently-used order, capped at `maxIdleKeys` entries. Inserting a new key
 *    first drops up to two idle entries from the old end: not used for `idleMs` and already
 *    refilled to full, so dropping them loses nothing (a missing key *is* a full bucket). If the
 *    map is still at the cap, the least recently used entry goes even if it was not yet full
 *    (that caller's bucket starts over full); `stats().evictedEarly` counts those, and it only
 *    happens when more than `maxIdleKeys` distinct certificates were active within about one
 *    refill time. Every operation is O(1): no Map iteration (whose cost grows with deleted
 *    slots), no timers.
 *
 * Clock: `now()` in ms, monotonic by default (performance.now); tests inject their own. A clock
 * that steps backwards never refills a bucket (fullAt only ever compares against `now`).
 *
 * Each call returns a fresh decision object; nothing returned is reused.
 */
import { EPSILON_MS, resetSeconds, retryAfterSeconds, spend, tokensAt, waitMs } from './bucket.js';
import { isPinnedKey } from './keys.js';
import type { Bucket, RateDecision, RateLimiter, Take } from './types.js';

export interface MemoryRateLimiterOptions {
  /** Clock in ms (default performance.now: monotonic). */
  readonly now?: () => number;
  /** Cap on buckets for non-identity keys (default 100,000). */
  readonly maxIdleKeys?: number;
  /** A non-identity bucket unused this long, and full again, may be dropped (default 60 s). */
  readonly idleMs?: number;
}

export interface MemoryRateLimiterStats {
  /** Buckets of config identities (never evicted). */
  readonly pinned: number;
  /** Buckets of other keys (<= maxIdleKeys). */
  readonly transient: number;
  /** Transient buckets dropped before they had refilled, because the map was full. */
  readonly evictedEarly: number;
}

/** Mutable per-key state; transient entries are also nodes of the LRU list. */
interface Entry {
  /** When the bucket is full again (ms). */
  fullAt: number;
  /** Last use (ms); transient entries only. */
  used: number;
  readonly key: string;
  /** Towards the most recently used end. */
  newer: Entry | null;
  /** Towards the least recently used end. */
  older: Entry | null;
}

/** Idle entries examined per insertion. */
const SWEEP_PER_INSERT = 2;

export class MemoryRateLimiter implements RateLimiter {
  readonly #now: () => number;
  readonly #maxIdleKeys: number;
  readonly #idleMs: number;
  readonly #pinned = new Map<string, Entry>();
  readonly #transient = new Map<string, Entry>();
  /** Most and least recently used transient entries. */
  #newest: Entry | null = null;
  #oldest: Entry | null = null;
  /** Entries of the current take(), so the spend pass needs no second lookup. */
  readonly #scratch: Entry[] = [];
  #evictedEarly = 0;

  constructor(opts: MemoryRateLimiterOptions = {}) {
    this.#now = opts.now ?? (() => performance.now());
    this.#maxIdleKeys = Math.max(1, Math.floor(opts.maxIdleKeys ?? 100_000));
    // At least 1 ms, so an entry used in the current take() is never idle.
    this.#idleMs = Math.max(1, opts.idleMs ?? 60_000);
  }

  take(takes: readonly Take[]): RateDecision {
    const n = takes.length;
    if (n === 0) throw new RangeError('take() needs at least one bucket');
    const now = this.#now();
    const scratch = this.#scratch;

    // Pass 1: find every bucket; remember the one that frees a token last.
    let denyAt = -1;
    let denyWait = EPSILON_MS;
    for (let i = 0; i < n; i++) {
      const t = takes[i] as Take;
      const e = this.#entry(t.key, now);
      scratch[i] = e;
      const w = waitMs(e.fullAt, t.bucket, now);
      if (w > denyWait) {
        denyWait = w;
        denyAt = i;
      }
    }

    if (denyAt >= 0) {
      const policy = (takes[denyAt] as Take).bucket;
      const e = scratch[denyAt] as Entry;
      return {
        kind: 'deny',
        retryAfterSeconds: retryAfterSeconds(denyWait),
        resetSeconds: resetSeconds(e.fullAt, now),
        policy,
        index: denyAt,
      };
    }

    // Pass 2: every bucket holds a token; spend one from each. Report the one with the fewest
    // tokens left (a tie goes to the one that takes longer to refill).
    let best = 0;
    let bestRemaining = Infinity;
    let bestFullAt = -Infinity;
    for (let i = 0; i < n; i++) {
      const b: Bucket = (takes[i] as Take).bucket;
      const e = scratch[i] as Entry;
      const fullAt = spend(e.fullAt, b, now);
      e.fullAt = fullAt;
      const remaining = tokensAt(fullAt, b, now);
      if (remaining < bestRemaining || (remaining === bestRemaining && fullAt > bestFullAt)) {
        best = i;
        bestRemaining = remaining;
        bestFullAt = fullAt;
      }
    }
    return {
      kind: 'allow',
      remaining: bestRemaining,
      resetSeconds: resetSeconds(bestFullAt, now),
      policy: (takes[best] as Take).bucket,
      index: best,
    };
  }

  /** Drop idle, refilled non-identity buckets (also done as new keys arrive). Returns how many. */
  sweep(limit = Infinity): number {
    const now = this.#now();
    let dropped = 0;
    while (dropped < limit && this.#dropIdle(now)) dropped++;
    return dropped;
  }

  stats(): MemoryRateLimiterStats {
    return { pinned: this.#pinned.size, transient: this.#transient.size, evictedEarly: this.#evictedEarly };
  }

  close(): Promise<void> {
    this.#pinned.clear();
    this.#transient.clear();
    this.#newest = null;
    this.#oldest = null;
    this.#scratch.length = 0;
    return Promise.resolve();
  }

  #entry(key: string, now: number): Entry {
    if (isPinnedKey(key)) {
      let e = this.#pinned.get(key);
      if (e === undefined) {
        e = { fullAt: now, used: now, key, newer: null, older: null };
        this.#pinned.set(key, e);
      }
      return e;
    }
    let e = this.#transient.get(key);
    if (e !== undefined) {
      e.used = now;
      if (e !== this.#newest) {
        this.#unlink(e);
        this.#pushNewest(e);
      }
      return e;
    }
    // A new key: first drop a few idle, refilled entries, then the LRU one if still at the cap.
    for (let i = 0; i < SWEEP_PER_INSERT && this.#dropIdle(now); i++);
    const oldest = this.#oldest;
    if (oldest !== null && this.#transient.size >= this.#maxIdleKeys) {
      if (oldest.fullAt > now) this.#evictedEarly++;
      this.#unlink(oldest);
      this.#transient.delete(oldest.key);
    }
    e = { fullAt: now, used: now, key, newer: null, older: null };
    this.#transient.set(key, e);
    this.#pushNewest(e);
    return e;
  }

  /** Drop the least recently used entry if it is idle and full again; false if it is not. */
  #dropIdle(now: number): boolean {
    const e = this.#oldest;
    if (e === null || now - e.used < this.#idleMs || e.fullAt > now) return false;
    this.#unlink(e);
    this.#transient.delete(e.key);
    return true;
  }

  #unlink(e: Entry): void {
    if (e.newer !== null) e.newer.older = e.older;
    else this.#newest = e.older;
    if (e.older !== null) e.older.newer = e.newer;
    else this.#oldest = e.newer;
    e.newer = null;
    e.older = null;
  }

  #pushNewest(e: Entry): void {
    e.older = this.#newest;
    e.newer = null;
    if (this.#newest !== null) this.#newest.newer = e;
    else this.#oldest = e;
    this.#newest = e;
  }
}
