/**
 * What `rateLimit.redis.cluster: true` asks of the config, shared by `check` (config/schema.ts)
 * and the limiter (redis.ts), so the two cannot disagree:
 *
 *  - `url` is one seed node, `redis[s]://[user:password@]host[:port]`; the client learns the
 *    other nodes from it (CLUSTER SLOTS). A Redis Cluster has only database 0, and the URL's
 *    query options are ioredis' single-node options, so a `/N` (N ≠ 0) or a `?…` is refused
 *    rather than silently ignored.
 *  - `keyPrefix` holds no `{` or `}`. The sidecar puts the hash tag itself around each
 *    decision's subject (keys.ts clusterKey). Redis hashes the first `{…}` of a key, so a brace
 *    in the prefix would take over: `{app}:` would put every identity in one slot (one master
 *    carrying all limits), `x{}` would hash whole keys and split one decision across slots.
 *
 * No ioredis here: this module is imported by the config schema.
 */

export interface ClusterSeed {
  readonly host: string;
  readonly port: number;
  readonly username: string | undefined;
  readonly password: string | undefined;
  readonly tls: boolean;
}

export type ClusterSeedResult =
  | { readonly ok: true; readonly seed: ClusterSeed }
  | { readonly ok: false; readonly code: 'cluster_url_invalid' | 'cluster_url_database' | 'cluster_url_query'; readonly message: string };

export function parseClusterSeed(url: string): ClusterSeedResult {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return { ok: false, code: 'cluster_url_invalid', message: 'not a URL: use redis://host:port of one cluster node' };
  }
  const tls = u.protocol === 'rediss:';
  // The hostname of a non-special scheme keeps IPv6 brackets; net.connect wants them off.
  const host = u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname;
  if ((u.protocol !== 'redis:' && !tls) || host === '') {
    return { ok: false, code: 'cluster_url_invalid', message: 'a seed node URL needs a host: redis://host:port or rediss://host:port' };
  }
  if (u.pathname !== '' && u.pathname !== '/' && u.pathname !== '/0') {
    return { ok: false, code: 'cluster_url_database', message: `a Redis Cluster has only database 0: remove "${u.pathname}" from the URL` };
  }
  if (u.search !== '' || u.hash !== '') {
    return { ok: false, code: 'cluster_url_query', message: 'with cluster: true the URL takes no ?options or #fragment' };
  }
  let username: string | undefined;
  let password: string | undefined;
  try {
    username = u.username === '' ? undefined : decodeURIComponent(u.username);
    password = u.password === '' ? undefined : decodeURIComponent(u.password);
  } catch {
    // Never echo the credentials themselves.
    return { ok: false, code: 'cluster_url_invalid', message: 'the user or password in the URL is not valid percent-encoding' };
  }
  return { ok: true, seed: { host, port: u.port === '' ? 6379 : Number(u.port), username, password, tls } };
}

/** Why `prefix` cannot be used with cluster: true, or null when it can. */
export function clusterPrefixProblem(prefix: string): string | null {
  if (!prefix.includes('{') && !prefix.includes('}')) return null;
  return 'with cluster: true keyPrefix must not contain "{" or "}": the sidecar adds the hash tag itself, one per identity ({id/<name>}), and a brace in the prefix would override it (every identity in one slot) or split one decision across slots';
}
