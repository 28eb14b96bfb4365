/**
 * The configuration schema (SPEC §3). Strict objects everywhere: an unknown key is an error,
 * reported with its YAML path and line by load.ts. Units are parsed here so a bad "5x" points
 * at its own line; file contents are checked later in compile.ts.
 */
import { z } from 'zod';
import { dependent } from './cascade.js';
import { parseDuration, parseSize } from './units.js';
import { validateRouteSpec } from '../policy/routes.js';
import { validateIdentityMatch } from '../identity/match.js';
import { clusterPrefixProblem, parseClusterSeed } from '../ratelimit/cluster.js';

const duration = z.string().transform((text, ctx) => {
  const ms = parseDuration(text);
  if (ms === null) {
    ctx.addIssue({ code: 'custom', message: `"${text}" is not a duration (use e.g. 250ms, 30s, 5m)` });
    return z.NEVER;
  }
  return ms;
});

const size = z.union([z.number(), z.string()]).transform((value, ctx) => {
  const bytes = parseSize(value);
  if (bytes === null) {
    ctx.addIssue({ code: 'custom', message: `"${String(value)}" is not a size (use bytes or e.g. 64KiB, 1MiB)` });
    return z.NEVER;
  }
  return bytes;
});

const port = z.number().int().min(0).max(65535);
const file = z.string().min(1, 'a file path is required');
/** Config names become header values and metric labels, so they are kept to a safe alphabet. */
const name = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._:-]{0,62}$/, 'names use letters, digits and . _ : - (at most 63)');
const scope = z.string().regex(/^[\x21-\x7e]{1,128}$/, 'a scope is 1-128 printable characters without spaces');
const method = z.string().regex(/^[A-Z][A-Z0-9_-]{0,31}$/, 'methods are upper-case tokens such as GET');

const pin = z.string().refine(
  (p) => /^sha256:([0-9A-Fa-f]{2}:){31}[0-9A-Fa-f]{2}$/.test(p) || /^sha256:[0-9A-Fa-f]{64}$/.test(p) || /^spki:[A-Za-z0-9+/]{43}=$/.test(p),
  { error: 'a pin is "sha256:AB:CD:..." (32 bytes) or "spki:<base64 of 32 bytes>"' },
);

const bucket = z.strictObject({
  rps: z.number().positive(),
  burst: z.number().int().min(1),
});

const listen = z.strictObject({
  address: z.string().min(1).default('0.0.0.0'),
  port: port.default(8443),
  http2: z.boolean().default(true),
});

const tls = z
  .strictObject({
    cert: file,
    key: file,
    clientCAs: z.array(file).default([]),
    pins: z.array(pin).default([]),
    crls: z.array(file).default([]),
    minVersion: z.enum(['TLSv1.2', 'TLSv1.3']).default('TLSv1.2'),
  })
  .superRefine((t, ctx) => {
    if (t.clientCAs.length === 0 && t.pins.length === 0) {
      ctx.addIssue(dependent(['clientCAs'], [['clientCAs'], ['pins']], 'give tls.clientCAs, tls.pins, or both: every client must be trusted by something'));
    }
    if (t.crls.length > 0 && t.clientCAs.length === 0) {
      ctx.addIssue(dependent(['crls'], [['clientCAs']], 'CRLs need the CAs that issued them in tls.clientCAs'));
    }
  });

const MATCH_FIELDS = ['uri', 'dns', 'cn', 'o', 'ou', 'sha256'] as const;

const identityMatch = z
  .strictObject({
    uri: z.string().min(1).optional(),
    dns: z.string().min(1).optional(),
    cn: z.string().min(1).optional(),
    o: z.string().min(1).optional(),
    ou: z.string().min(1).optional(),
    sha256: z.string().min(1).optional(),
  })
  .superRefine((m, ctx) => {
    const problem = validateIdentityMatch(m);
    if (problem === null) return;
    // No field at all may be one misspelt (`url:`), which already has its error.
    if (MATCH_FIELDS.every((f) => m[f] === undefined)) ctx.addIssue(dependent([], MATCH_FIELDS.map((f) => [f]), problem));
    else ctx.addIssue({ code: 'custom', message: problem });
  });

const identity = z.strictObject({
  name,
  match: identityMatch,
  scopes: z.array(scope).default([]),
});

const route = z
  .strictObject({
    name,
    path: z.string().optional(),
    prefix: z.string().optional(),
    glob: z.string().optional(),
    methods: z.array(method).min(1).optional(),
    public: z.boolean().default(false),
    scopes: z.array(scope).default([]),
    tokenScopes: z.array(scope).optional(),
    rateLimit: bucket.optional(),
    mode: z.enum(['enforce', 'audit']).optional(),
  })
  .superRefine((r, ctx) => {
    const problem = validateRouteSpec(r);
    // None of path, prefix, glob may be one misspelt (`prefx:`), which already has its error.
    if (problem !== null && r.path === undefined && r.prefix === undefined && r.glob === undefined) ctx.addIssue(dependent([], [['path'], ['prefix'], ['glob']], problem));
    else if (problem !== null) ctx.addIssue({ code: 'custom', message: problem });
    if (r.public && r.scopes.length > 0) {
      ctx.addIssue({ code: 'custom', path: ['scopes'], message: 'a public route admits any trusted certificate, so it cannot require scopes' });
    }
  });

const rateLimit = z.strictObject({
  default: bucket.optional(),
  identities: z.record(name, bucket).default({}),
  backend: z.enum(['memory', 'redis']).default('memory'),
  redis: z
    .strictObject({
      url: z.string().regex(/^rediss?:\/\//, 'a redis:// or rediss:// URL'),
      keyPrefix: z.string().default('mtls-sidecar:'),
      onError: z.enum(['allow', 'deny']).default('allow'),
      cluster: z.boolean().default(false),
    })
    .optional(),
});

const jwks = z.union([
  z.strictObject({ file }),
  z.strictObject({ url: z.url({ protocol: /^https$/ }), cacheFor: duration.default(600_000) }),
]);

const jwt = z.strictObject({
  issuer: z.string().min(1),
  audience: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]),
  jwks,
  algorithms: z.array(z.enum(['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'])).min(1).default(['RS256', 'ES256', 'EdDSA']),
  clockSkew: duration.default(30_000),
  requireJti: z.boolean().default(true),
  certificateBound: z.boolean().default(false),
  required: z.boolean().default(false),
  denylist: file.optional(),
});

const upstream = z.strictObject({
  url: z.string().regex(/^http:\/\/[^/?#]+\/?$/, 'an http:// origin such as http://127.0.0.1:8080 (no path)'),
  connectTimeout: duration.default(2_000),
  timeout: duration.default(30_000),
});

const limits = z.strictObject({
  maxBodySize: size.default(1024 * 1024),
  maxHeaderSize: size.default(16 * 1024),
  headersTimeout: duration.default(10_000),
  requestTimeout: duration.default(60_000),
  idleTimeout: duration.default(60_000),
  maxHeaders: z.number().int().min(8).max(10_000).default(100),
  maxConcurrentStreams: z.number().int().min(1).max(10_000).default(100),
  maxConnections: z.number().int().min(1).default(10_000),
});

const audit = z.strictObject({ file: z.string().min(1).default('stdout'), onFull: z.enum(['refuse', 'drop']).default('refuse') });
const admin = z.strictObject({ address: z.string().min(1).default('127.0.0.1'), port: port.default(9901), exposeConfig: z.boolean().default(false) });
const shutdown = z.strictObject({ drainDelay: duration.default(5_000), timeout: duration.default(25_000) });

/** `host:port` of a remote sidecar; a bracketed IPv6 literal is allowed. */
const target = z.string().regex(/^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})):(?:[1-9][0-9]{0,4})$/, 'a host:port such as billing.pay.svc.cluster.local:8443');
/** An authority the proxy listener maps to a destination: a host name, optionally with :port. */
const authority = z.string().regex(/^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})(?::[1-9][0-9]{0,4})?$/, 'a host name, optionally with :port');
const loopbackListen = z.strictObject({ address: z.string().min(1).default('127.0.0.1'), port });

const destination = z.strictObject({
  name,
  listen: loopbackListen.optional(),
  target,
  serverName: z.string().min(1).optional(),
  expect: identityMatch,
  hosts: z.array(authority).default([]),
  http2: z.boolean().default(false),
  connectTimeout: duration.default(2_000),
  timeout: duration.default(30_000),
  /** Default by protocol (config/outbound.ts): 64 for HTTP/1.1, 4 for HTTP/2, which multiplexes. */
  maxConnections: z.number().int().min(1).max(10_000).optional(),
});

const outbound = z
  .strictObject({
    cert: file.optional(),
    key: file.optional(),
    trust: z.array(file).min(1).optional(),
    proxy: loopbackListen.optional(),
    destinations: z.array(destination).min(1, 'give at least one destination'),
  })
  .superRefine((o, ctx) => {
    if ((o.cert === undefined) !== (o.key === undefined)) {
      ctx.addIssue(dependent([o.cert === undefined ? 'cert' : 'key'], [['cert'], ['key']], 'outbound.cert and outbound.key go together (or both default to tls.cert and tls.key)'));
    }
    uniqueNames(o.destinations, 'destinations', ctx);
    const claimed = new Map<string, string>();
    o.destinations.forEach((d, i) => {
      if (d.listen === undefined && d.hosts.length === 0) {
        ctx.addIssue(dependent(['destinations', i], [['destinations', i, 'listen'], ['destinations', i, 'hosts']], `destination "${d.name}" is reachable neither by a listen port nor by hosts on the proxy listener`));
      }
      d.hosts.forEach((h, j) => {
        const key = h.toLowerCase();
        const owner = claimed.get(key);
        if (owner !== undefined) ctx.addIssue({ code: 'custom', path: ['destinations', i, 'hosts', j], message: `"${h}" is already claimed by destination "${owner}"` });
        else claimed.set(key, d.name);
      });
    });
    if (o.proxy === undefined && o.destinations.some((d) => d.hosts.length > 0)) {
      const i = o.destinations.findIndex((d) => d.hosts.length > 0);
      ctx.addIssue(dependent(['destinations', i, 'hosts'], [['proxy']], 'hosts are matched by the proxy listener: give outbound.proxy too'));
    }
  });

export const configSchema = z
  .strictObject({
    version: z.literal(1, { error: 'version must be 1' }),
    listen: listen.prefault({}),
    tls,
    identities: z.array(identity).default([]),
    routes: z.array(route).default([]),
    rateLimit: rateLimit.optional(),
    jwt: jwt.optional(),
    upstream: upstream.prefault({ url: 'http://127.0.0.1:8080' }),
    forwardClientCert: z.enum(['sanitize_set', 'sanitize']).default('sanitize_set'),
    limits: limits.prefault({}),
    securityHeaders: z.boolean().default(true),
    audit: audit.prefault({}),
    admin: admin.prefault({}),
    shutdown: shutdown.prefault({}),
    outbound: outbound.optional(),
    policy: z.strictObject({ mode: z.enum(['enforce', 'audit']).default('enforce') }).prefault({}),
  })
  .superRefine((c, ctx) => {
    uniquePorts(c, ctx);
    uniqueNames(c.identities, 'identities', ctx);
    uniqueNames(c.routes, 'routes', ctx);
    if (c.jwt === undefined) {
      c.routes.forEach((r, i) => {
        if (r.tokenScopes !== undefined) ctx.addIssue(dependent(['routes', i, 'tokenScopes'], [['jwt']], 'tokenScopes needs a jwt section'));
      });
    }
    const known = new Set(c.identities.map((i) => i.name));
    for (const id of Object.keys(c.rateLimit?.identities ?? {})) {
      if (!known.has(id)) ctx.addIssue(dependent(['rateLimit', 'identities', id], [['identities']], `no identity named "${id}"`));
    }
    if (c.rateLimit?.backend === 'redis' && c.rateLimit.redis === undefined) {
      ctx.addIssue(dependent(['rateLimit', 'redis'], [['rateLimit', 'redis']], 'backend redis needs rateLimit.redis.url'));
    }
    const redis = c.rateLimit?.redis;
    if (redis?.cluster === true) {
      const seed = parseClusterSeed(redis.url);
      if (!seed.ok) ctx.addIssue({ code: 'custom', path: ['rateLimit', 'redis', 'url'], message: seed.message });
      const prefix = clusterPrefixProblem(redis.keyPrefix);
      if (prefix !== null) ctx.addIssue({ code: 'custom', path: ['rateLimit', 'redis', 'keyPrefix'], message: prefix });
    }
  });

/**
 * Two listeners on one port: the second would fail at start-up (or, on 0.0.0.0 and 127.0.0.1,
 * one would shadow the other), so it is a config error. Port 0 (any free port) never clashes.
 */
function uniquePorts(c: { listen: { address: string; port: number }; admin: { address: string; port: number }; outbound?: { proxy?: { address: string; port: number } | undefined; destinations: readonly { name: string; listen?: { address: string; port: number } | undefined }[] } | undefined }, ctx: z.RefinementCtx): void {
  const seen = new Map<number, string>();
  const take = (port: number, what: string, path: (string | number)[]): void => {
    if (port === 0) return;
    const other = seen.get(port);
    if (other !== undefined) ctx.addIssue({ code: 'custom', path, message: `port ${port} is already used by ${other}` });
    else seen.set(port, what);
  };
  take(c.listen.port, 'listen', ['listen', 'port']);
  take(c.admin.port, 'admin', ['admin', 'port']);
  const o = c.outbound;
  if (o === undefined) return;
  if (o.proxy !== undefined) take(o.proxy.port, 'outbound.proxy', ['outbound', 'proxy', 'port']);
  o.destinations.forEach((d, i) => {
    if (d.listen !== undefined) take(d.listen.port, `outbound destination "${d.name}"`, ['outbound', 'destinations', i, 'listen', 'port']);
  });
}

function uniqueNames(items: readonly { name: string }[], key: string, ctx: z.RefinementCtx): void {
  const seen = new Set<string>();
  items.forEach((item, i) => {
    if (seen.has(item.name)) ctx.addIssue({ code: 'custom', path: [key, i, 'name'], message: `duplicate name "${item.name}"` });
    seen.add(item.name);
  });
}

export type RawConfig = z.output<typeof configSchema>;
