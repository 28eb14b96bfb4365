/**
 * Redis-backed rate limiter: every sidecar replica that shares a Redis enforces one limit per key.
 *
 * One decision = one EVALSHA of the script below, all takes in one call, so the check and the
 * spend are atomic across replicas. The script is bucket.ts in Lua (a token bucket in GCRA form:
 * each key holds the time its bucket is full again), it reads the clock with Redis `TIME` (so
 * replicas with skewed clocks agree), and it stores each key with `SET … PX <ms until full>`:
 * a key expires exactly when its bucket would be full, and a missing key is a full bucket.
 * Denials write nothing.
 *
 * Failure behaviour — never crash, never hang a request:
 *  - each take() settles within `timeoutMs` (own deadline per call, covering the NOSCRIPT
 *    fallback too); a late reply is still read by the client and then dropped;
 *  - while the connection is not ready, take() answers `unavailable` at once (synchronously):
 *    the client's offline queue is off, so nothing piles up while Redis is away;
 *  - at most `maxInFlight` calls wait on Redis at once, beyond that: `unavailable` at once;
 *  - a connection that stops answering for `socketTimeoutMs` is dropped; a dropped connection is
 *    re-established with backoff capped at `maxReconnectDelayMs`, for ever;
 *  - the script is loaded (SCRIPT LOAD) on every (re)connect and run by SHA; a NOSCRIPT reply
 *    (Redis restarted or SCRIPT FLUSH) falls back to EVAL, which also caches it again.
 * `unavailable` is the pipeline's cue to apply `rateLimit.redis.onError`.
 *
 * Redis Cluster (`cluster: true`): `url` is one seed node; ioredis' Cluster client learns the
 * slots and the other masters from it and follows MOVED/ASK. Every key is stored as
 * `keyPrefix + clusterKey(key)` (keys.ts): the subject in a hash tag, so one decision's keys
 * share a slot and its script runs on one master. A master that goes away takes only its
 * slots' decisions with it (unless the cluster itself stops serving: cluster-require-full-
 * coverage): calls for those slots fail at once (no retry on a closed connection or on
 * CLUSTERDOWN, both of which would outlast the deadline) and are `unavailable`, logged once per
 * node. The dead node's connection is not retried on a timer: the next call routed there
 * (a MOVED from a live node) connects again, to it or to the replica promoted in its place.
 *
 * Client: ioredis (see the report in the ratelimit change for why); the URL may be redis:// or
 * rediss://, with credentials and a database number as ioredis parses them. Never logged.
 */
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import type * as IORedis from 'ioredis';
import type { Cluster, Redis } from 'ioredis';
import type { Log } from '../log.js';
import { retryAfterSeconds, secondsCeil } from './bucket.js';
import { parseClusterSeed } from './cluster.js';
import { clusterKey } from './keys.js';
import { UNAVAILABLE } from './types.js';
import type { RateDecision, RateLimiter, Take } from './types.js';

export interface RedisRateLimiterOptions {
  /** redis://[user:password@]host:port[/db] or rediss://… */
  readonly url: string;
  /** Prepended to every bucket key (SPEC default "mtls-sidecar:"). */
  readonly keyPrefix?: string;
  /**
   * `url` is a seed node of a Redis Cluster (default false). The caller has checked the URL and
   * prefix (config/schema.ts, with ratelimit/cluster.ts); the constructor throws on a bad URL.
   * All keys of one take() must have the same subject (RatePlanner's do): see keys.ts.
   */
  readonly cluster?: boolean;
  /** Upper bound on one decision, ms (default 75). */
  readonly timeoutMs?: number;
  /** Operational log (connection lost/restored, script errors), rate-limited to one line per episode. */
  readonly log?: Log;
  /** Calls allowed to wait on Redis at once (default 10,000). */
  readonly maxInFlight?: number;
  /** TCP connect timeout, ms (default 1,000). */
  readonly connectTimeoutMs?: number;
  /** Drop a connection that has replies outstanding and receives nothing for this long, ms (default 1,000). */
  readonly socketTimeoutMs?: number;
  /** Reconnect backoff cap, ms (default 1,000). */
  readonly maxReconnectDelayMs?: number;
}

/**
 * KEYS[i]: a bucket; its value is the time (ms, Redis clock) at which it is full again.
 * ARGV[2i-1], ARGV[2i]: rps and burst of KEYS[i].
 * Reply {1, i, remaining, resetMs}: every bucket had a token and one was spent from each;
 *       i (1-based) is the bucket with the fewest tokens left (tie: the longer refill).
 * Reply {0, i, waitMs, resetMs}: some bucket had none and nothing was spent;
 *       i is the bucket that frees a token last, waitMs how long until it does.
 * Same formulas as bucket.ts (waitMs, spend, tokensAt), including the 1 µs slack.
 * Lua numbers passed to redis.call keep full precision (Redis formats them with %.17g or
 * shortest round-trip); tostring() (%.14g) is only used for the small ms values returned.
 */
export const SCRIPT = `
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local n = #KEYS
local full = {}
local deny, denyWait = 0, 0.001
for i = 1, n do
  local rps = tonumber(ARGV[2 * i - 1])
  local burst = tonumber(ARGV[2 * i])
  local f = tonumber(redis.call('GET', KEYS[i]) or '') or now
  if f < now then f = now end
  full[i] = f
  local wait = f - now - (burst - 1) * (1000 / rps)
  if wait > denyWait then deny = i; denyWait = wait end
end
if deny > 0 then
  return {0, deny, tostring(denyWait), tostring(full[deny] - now)}
end
local best, bestRem, bestFull = 0, 0, 0
for i = 1, n do
  local rps = tonumber(ARGV[2 * i - 1])
  local burst = tonumber(ARGV[2 * i])
  local f = full[i] + 1000 / rps
  redis.call('SET', KEYS[i], f, 'PX', math.ceil(f - now))
  local rem = math.floor(burst - (f - now) * rps / 1000 + 1e-9)
  if rem < 0 then rem = 0 end
  if best == 0 or rem < bestRem or (rem == bestRem and f > bestFull) then best = i; bestRem = rem; bestFull = f end
end
return {1, best, bestRem, tostring(bestFull - now)}
`;

export const SCRIPT_SHA1 = createHash('sha1').update(SCRIPT).digest('hex');

let ioredis: typeof IORedis | undefined;

/**
 * ioredis, loaded by the first limiter rather than by importing this module: runtime/sidecar.ts
 * imports it in every sidecar, and only `rateLimit.backend: redis` needs ioredis (~55 modules
 * resident). require() keeps the constructor synchronous; ioredis is CommonJS, so this is the
 * same module object a static import gives.
 */
function loadIoredis(): typeof IORedis {
  ioredis ??= createRequire(import.meta.url)('ioredis') as typeof IORedis;
  return ioredis;
}

export class RedisRateLimiter implements RateLimiter {
  readonly #client: Redis | Cluster;
  readonly #cluster: boolean;
  readonly #prefix: string;
  readonly #timeoutMs: number;
  readonly #maxInFlight: number;
  readonly #log: Log | undefined;
  #inFlight = 0;
  #closed = false;
  /** Whether the last connection state we logged was "up", so each outage is logged once. */
  #up = true;
  #lastScriptErrorLog = 0;
  #timeouts = 0;
  #errors = 0;
  /** Cluster nodes ("host:port") whose outage was logged and that have not come back since. */
  readonly #downNodes = new Set<string>();

  constructor(opts: RedisRateLimiterOptions) {
    this.#prefix = opts.keyPrefix ?? 'mtls-sidecar:';
    this.#timeoutMs = Math.max(1, opts.timeoutMs ?? 75);
    this.#maxInFlight = Math.max(1, opts.maxInFlight ?? 10_000);
    this.#log = opts.log;
    this.#cluster = opts.cluster === true;
    const maxDelay = Math.max(10, opts.maxReconnectDelayMs ?? 1000);
    // 100, 200, 400, 800 ms, then every maxDelay ms, for ever.
    const backoff = (times: number): number => Math.min(maxDelay, 50 * 2 ** Math.min(times, 16));
    const connection = {
      // Fail fast while disconnected: nothing re-sent after a reconnect.
      autoResendUnfulfilledCommands: false,
      maxRetriesPerRequest: 0,
      enableReadyCheck: true,
      connectTimeout: Math.max(1, opts.connectTimeoutMs ?? 1000),
      socketTimeout: Math.max(1, opts.socketTimeoutMs ?? 1000),
    };
    const io = loadIoredis();
    if (this.#cluster) {
      const seed = parseClusterSeed(opts.url);
      if (!seed.ok) throw new RangeError(`rateLimit.redis.url: ${seed.message}`);
      const { host, port, username, password, tls } = seed.seed;
      const cluster = new io.Cluster([{ host, port }], {
        // No offline queue: while the cluster (or a node) is not ready, calls fail at once.
        enableOfflineQueue: false,
        // Off: ioredis sends its ready check (CLUSTER INFO) to a random node, and without an
        // offline queue a node still connecting fails it, so the client reconnected for ever
        // (seen against a real 3-master cluster). A cluster that is not ok answers CLUSTERDOWN,
        // which is `unavailable` all the same.
        enableReadyCheck: false,
        lazyConnect: false,
        scaleReads: 'master',
        // A decision has a 75 ms deadline: retrying after a closed connection or CLUSTERDOWN
        // (100 ms by default, up to 16 times) could only answer after it. MOVED/ASK (resharding,
        // failover) are still followed at once; TRYAGAIN (a slot mid-migration) shortly.
        retryDelayOnFailover: 0,
        retryDelayOnClusterDown: 0,
        retryDelayOnTryAgain: 10,
        slotsRefreshTimeout: connection.connectTimeout,
        clusterRetryStrategy: backoff,
        // With TLS, connect by the name as given so the certificate is checked against it
        // (ioredis resolves seed names to IPs otherwise; its README's note on TLS clusters).
        ...(tls ? { dnsLookup: (address: string, callback: (err: null, address: string) => void) => callback(null, address) } : {}),
        redisOptions: {
          ...connection,
          ...(username === undefined ? {} : { username }),
          ...(password === undefined ? {} : { password }),
          ...(tls ? { tls: {} } : {}),
        },
      });
      // Each node gets the script as soon as the client knows it (EVALSHA then finds it; a
      // NOSCRIPT still falls back to EVAL), and tells when it is back after an outage.
      cluster.on('+node', (node: Redis) => this.#onNode(node));
      cluster.on('node error', (err: unknown, key: unknown) => this.#onNodeDown(err, String(key)));
      this.#client = cluster;
    } else {
      this.#client = new io.Redis(opts.url, {
        ...connection,
        enableOfflineQueue: false,
        lazyConnect: false,
        retryStrategy: backoff,
      });
    }
    this.#client.on('ready', () => this.#onReady());
    // Without an 'error' listener an EventEmitter error would be thrown; log once per outage.
    this.#client.on('error', (err: unknown) => this.#onDown(err));
    this.#client.on('close', () => this.#onDown(null));
  }

  /** True while the connection is up (e.g. for a readiness probe). */
  get connected(): boolean {
    return this.#client.status === 'ready';
  }

  /** Calls waiting on Redis now; calls that hit the deadline; calls that failed (since start). */
  stats(): { readonly inFlight: number; readonly timeouts: number; readonly errors: number } {
    return { inFlight: this.#inFlight, timeouts: this.#timeouts, errors: this.#errors };
  }

  take(takes: readonly Take[]): RateDecision | Promise<RateDecision> {
    const n = takes.length;
    if (n === 0) throw new RangeError('take() needs at least one bucket');
    if (this.#closed || this.#client.status !== 'ready' || this.#inFlight >= this.#maxInFlight) return UNAVAILABLE;

    // [sha, numkeys, key1..keyN, rps1, burst1, …, rpsN, burstN]
    const args: (string | number)[] = new Array<string | number>(2 + 3 * n);
    args[0] = SCRIPT_SHA1;
    args[1] = n;
    for (let i = 0; i < n; i++) {
      const t = takes[i] as Take;
      args[2 + i] = this.#prefix + (this.#cluster ? clusterKey(t.key) : t.key);
      args[2 + n + 2 * i] = t.bucket.rps;
      args[3 + n + 2 * i] = t.bucket.burst;
    }

    this.#inFlight++;
    const call = this.#run(args);
    return new Promise<RateDecision>((resolve) => {
      let settled = false;
      // When the deadline passes, give a reply that already sits in the socket one more I/O
      // turn: after an event-loop stall, timers run before I/O, and a late-looking answer that
      // had in fact arrived in time should not become `unavailable`.
      const timer = setTimeout(() => {
        setImmediate(() => {
          if (settled) return;
          settled = true;
          this.#timeouts++;
          resolve(UNAVAILABLE);
        });
      }, this.#timeoutMs);
      call.then(
        (reply) => {
          this.#inFlight--;
          clearTimeout(timer);
          if (settled) return;
          settled = true;
          resolve(this.#decide(reply, takes));
        },
        (err: unknown) => {
          this.#inFlight--;
          clearTimeout(timer);
          if (settled) return;
          settled = true;
          this.#onCallError(err);
          resolve(UNAVAILABLE);
        },
      );
    });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const client = this.#client;
    if (client.status === 'ready') {
      // Polite QUIT, but never wait on a Redis that does not answer.
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        client.quit().then(
          () => undefined,
          () => undefined,
        ),
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, this.#timeoutMs);
        }),
      ]);
      clearTimeout(timer);
    }
    client.disconnect(false);
  }

  async #run(args: (string | number)[]): Promise<unknown> {
    try {
      return await this.#client.call('evalsha', args);
    } catch (err) {
      if (!(err instanceof Error) || !err.message.startsWith('NOSCRIPT')) throw err;
      const evalArgs = args.slice();
      evalArgs[0] = SCRIPT;
      return await this.#client.call('eval', evalArgs);
    }
  }

  #decide(reply: unknown, takes: readonly Take[]): RateDecision {
    if (Array.isArray(reply) && reply.length === 4) {
      const [flag, index, a, b] = reply as unknown[];
      const i = Number(index) - 1;
      const take = takes[i];
      const x = Number(a);
      const reset = Number(b);
      if (take !== undefined && Number.isFinite(x) && Number.isFinite(reset)) {
        if (flag === 1) return { kind: 'allow', remaining: x, resetSeconds: secondsCeil(reset), policy: take.bucket, index: i };
        if (flag === 0) return { kind: 'deny', retryAfterSeconds: retryAfterSeconds(x), resetSeconds: secondsCeil(reset), policy: take.bucket, index: i };
      }
    }
    this.#errors++;
    this.#logCallError('unexpected reply from the rate-limit script');
    return UNAVAILABLE;
  }

  #onReady(): void {
    if (!this.#up) this.#log?.info({ component: 'ratelimit' }, 'rate limit: redis connection restored');
    this.#up = true;
    // Best effort: EVALSHA falls back to EVAL on NOSCRIPT anyway. (A cluster loads it per node.)
    if (!this.#cluster) this.#client.script('LOAD', SCRIPT).catch(() => undefined);
  }

  #onNode(node: Redis): void {
    node.script('LOAD', SCRIPT).catch(() => undefined);
    node.on('ready', () => {
      const key = `${node.options.host ?? ''}:${node.options.port ?? ''}`;
      if (this.#downNodes.delete(key) && !this.#closed) this.#log?.info({ component: 'ratelimit', node: key }, 'rate limit: redis cluster node restored');
    });
  }

  #onNodeDown(err: unknown, key: string): void {
    // A dead node fails every call routed to it: one line per outage, not one per request.
    if (this.#closed || this.#downNodes.has(key)) return;
    this.#downNodes.add(key);
    this.#log?.warn({ component: 'ratelimit', node: key, err: describe(err) }, 'rate limit: redis cluster node unavailable, decisions for its slots are "unavailable" until it is back');
  }

  #onDown(err: unknown): void {
    if (this.#closed || !this.#up) return;
    this.#up = false;
    this.#log?.warn({ component: 'ratelimit', err: describe(err) }, 'rate limit: redis unavailable, decisions are "unavailable" until it is back');
  }

  #onCallError(err: unknown): void {
    this.#errors++;
    // Connection-level failures ("Connection is closed.", a destroyed socket…) are the outage
    // that #onDown logs once. Log what Redis itself refused (a ReplyError: a script error, or
    // WRONGTYPE on a key someone else wrote), at most every 10 s.
    if (err instanceof Error && err.name === 'ReplyError') this.#logCallError(err.message);
  }

  #logCallError(detail: string): void {
    if (this.#closed) return;
    // eslint-disable-next-line no-restricted-syntax -- a log throttle, not a rate decision (Redis's clock decides those)
    const now = Date.now();
    if (now - this.#lastScriptErrorLog < 10_000) return;
    this.#lastScriptErrorLog = now;
    this.#log?.warn({ component: 'ratelimit', err: detail }, 'rate limit: redis call failed, decision is "unavailable"');
  }
}

function describe(err: unknown): string | undefined {
  if (err === null || err === undefined) return undefined;
  // eslint-disable-next-line @typescript-eslint/no-base-to-string -- whatever ioredis rejected with, for a log line
  return err instanceof Error ? err.message : String(err);
}
