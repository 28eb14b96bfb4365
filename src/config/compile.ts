/**
 * RawConfig -> Snapshot: resolve paths, read and check every file the config names, compile
 * identity and route matchers, normalize pins, freeze. All I/O and precomputation happen here,
 * once per load, so a reload can build a complete new snapshot before swapping it in.
 *
 * One compile function per config section (`tls.ts`, `rules.ts`, `jwt.ts`; the value-only ones
 * below), each returning its part of the snapshot and reporting its problems to the
 * CompileContext at their YAML path. A new section is one function and one line in
 * compileConfig: above the check when it reads files or can find problems, in the snapshot
 * literal when it only maps values.
 */
import { createHash } from 'node:crypto';
import path from 'node:path';
import { CompileContext } from './compile-context.js';
import { compileJwt } from './jwt.js';
import { compileOutbound } from './outbound.js';
import type { ConfigIssue, Locator } from './load.js';
import { compileRules } from './rules.js';
import type { RawConfig } from './schema.js';
import type { Bucket, Snapshot } from './snapshot.js';
import { compileTls } from './tls.js';

export type CompileResult = { readonly ok: true; readonly snapshot: Snapshot } | { readonly ok: false; readonly issues: readonly ConfigIssue[] };

export interface CompileOptions {
  readonly configFile: string;
  readonly locate: Locator;
  readonly generation: number;
  /** The config text, so its digest joins the file digests (reloads skip unchanged inputs). */
  readonly text?: string;
  /** Injected clock so tests can compile "in the future" (expired CRLs). */
  readonly now?: () => number;
}

export async function compileConfig(raw: RawConfig, opts: CompileOptions): Promise<CompileResult> {
  const ctx = new CompileContext(opts.configFile, opts.locate, (opts.now ?? Date.now)());
  // Sections that read files, in the order their problems are reported.
  const tls = await compileTls(raw.tls, ctx);
  const jwt = await compileJwt(raw.jwt, ctx);
  const outbound = await compileOutbound(raw.outbound, raw.tls, tls, ctx);
  if (tls === null || ctx.issues.length > 0) return { ok: false, issues: ctx.issues };

  const configFile = path.resolve(opts.configFile);
  const snapshot: Snapshot = {
    generation: opts.generation,
    configFile,
    fileDigests: new Map([...(opts.text !== undefined ? [[configFile, createHash('sha256').update(opts.text).digest('hex')] as const] : []), ...ctx.digests]),
    listen: Object.freeze({ ...raw.listen }),
    ...tls,
    certs: outbound === null ? tls.certs : Object.freeze([...tls.certs, ...outbound.certs.map((c) => Object.freeze(c))]),
    ...compileRules(raw.identities, raw.routes, raw.policy.mode),
    jwt,
    rateLimit: compileRateLimit(raw.rateLimit),
    upstream: compileUpstream(raw.upstream),
    forwardClientCert: raw.forwardClientCert,
    limits: compileLimits(raw.limits),
    securityHeaders: raw.securityHeaders,
    audit: compileAudit(raw.audit, ctx),
    admin: Object.freeze({ ...raw.admin }),
    shutdown: Object.freeze({ drainDelayMs: raw.shutdown.drainDelay, timeoutMs: raw.shutdown.timeout }),
    outbound: outbound?.outbound ?? null,
  };
  return { ok: true, snapshot: Object.freeze(snapshot) };
}

// ---------------------------------------------------------------- the value-only sections

function compileRateLimit(rl: RawConfig['rateLimit']): Snapshot['rateLimit'] {
  if (rl === undefined) return null;
  return Object.freeze({
    default: rl.default === undefined ? undefined : Object.freeze({ ...rl.default }),
    identities: new Map<string, Bucket>(Object.entries(rl.identities).map(([k, v]) => [k, Object.freeze({ ...v })])),
    backend: rl.backend,
    redis: rl.redis === undefined ? undefined : Object.freeze({ ...rl.redis }),
  });
}

export function compileUpstream(u: RawConfig['upstream']): Snapshot['upstream'] {
  return Object.freeze({
    origin: u.url.replace(/\/$/, ''),
    connectTimeoutMs: u.connectTimeout,
    timeoutMs: u.timeout,
  });
}

function compileLimits(l: RawConfig['limits']): Snapshot['limits'] {
  return Object.freeze({
    maxBodySize: l.maxBodySize,
    maxHeaderSize: l.maxHeaderSize,
    headersTimeoutMs: l.headersTimeout,
    requestTimeoutMs: l.requestTimeout,
    idleTimeoutMs: l.idleTimeout,
    maxHeaders: l.maxHeaders,
    maxConcurrentStreams: l.maxConcurrentStreams,
    maxConnections: l.maxConnections,
  });
}

/** stdout and stderr are destinations, not file names. */
function compileAudit(a: RawConfig['audit'], ctx: CompileContext): Snapshot['audit'] {
  return Object.freeze({ file: a.file === 'stdout' || a.file === 'stderr' ? a.file : ctx.resolve(a.file), onFull: a.onFull });
}
