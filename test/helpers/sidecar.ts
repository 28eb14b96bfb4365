/**
 * Start the real sidecar in-process on an ephemeral loopback port, from a real YAML file
 * loaded and compiled by the product's own loader.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { stringify } from 'yaml';
import { createAudit } from '../../src/audit/audit.js';
import type { Audit } from '../../src/audit/audit.js';
import { loadAndCompile } from '../../src/config/index.js';
import { silentLog } from '../../src/log.js';
import type { Log } from '../../src/log.js';
import { pino } from 'pino';
import { Sidecar } from '../../src/runtime/sidecar.js';
import type { SidecarDeps } from '../../src/runtime/sidecar.js';
import { AuditSink } from './audit-sink.js';

export interface RunningSidecar {
  readonly port: number;
  readonly adminPort: number;
  readonly admin: string;
  readonly origin: string;
  readonly audit: AuditSink;
  readonly sidecar: Sidecar;
  readonly configFile: string;
  /** The port of an outbound destination's listener (throws when there is none). */
  outboundPort(name: string): number;
  /** The port of the outbound proxy listener (throws when there is none). */
  outboundProxyPort(): number;
  close(): Promise<void>;
}

export type ConfigObject = Record<string, unknown>;

export async function writeConfig(config: ConfigObject): Promise<{ file: string; dir: string }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'mtls-sidecar-cfg-'));
  const file = path.join(dir, 'sidecar.yaml');
  await writeFile(file, stringify(config));
  return { file, dir };
}

export interface StartOptions {
  /** Clock of the in-memory rate limiter (ms), for exact rate-limit tests. */
  readonly rateClock?: () => number;
  /** Deadline of one Redis decision (default 75 ms); exact-sequence tests raise it. */
  readonly redisTimeoutMs?: number;
  /** The operational log (default: silent); see memoryLog. */
  readonly log?: Log;
  /** JWT runtime options: a fetch that trusts the test CA for a JWKS URL, a clock. */
  readonly jwt?: SidecarDeps['jwt'];
  /** A real audit sink (a FIFO, /dev/full) instead of the in-memory one; `audit` then stays empty. */
  readonly audit?: Audit;
  /** Wall clock of the config load and the handshake checks (validity, CRL freshness). */
  readonly now?: () => number;
}

/** An operational log kept in memory, lines parsed (the same pino sink the audit tests use). */
export function memoryLog(level = 'debug'): { log: Log; lines: AuditSink } {
  const lines = new AuditSink();
  return { log: pino({ level }, lines), lines };
}

export async function startSidecar(config: ConfigObject, opts: StartOptions = {}): Promise<RunningSidecar> {
  const { file, dir } = await writeConfig(withEphemeralPorts(config));
  return startSidecarFile(file, dir, opts);
}

/** Listen and admin on ephemeral loopback ports unless the config says otherwise. */
export function withEphemeralPorts(config: ConfigObject): ConfigObject {
  return {
    ...config,
    listen: { address: '127.0.0.1', port: 0, ...(config['listen'] as object | undefined) },
    admin: { address: '127.0.0.1', port: 0, ...(config['admin'] as object | undefined) },
  };
}

/** Start from a config file the test controls (reload tests edit it in place). */
export async function startSidecarFile(file: string, cleanupDir: string | null = null, opts: StartOptions = {}): Promise<RunningSidecar> {
  const outcome = await loadAndCompile(file, 1, opts.now !== undefined ? { now: opts.now } : {});
  if (!outcome.ok) throw new Error(`test config rejected:\n${outcome.lines.join('\n')}`);
  const sink = new AuditSink();
  const audit = opts.audit ?? createAudit('stdout', sink);
  const sidecar = new Sidecar(outcome.snapshot, {
    audit,
    log: opts.log ?? silentLog(),
    ...(opts.rateClock !== undefined ? { rateClock: opts.rateClock } : {}),
    ...(opts.redisTimeoutMs !== undefined ? { redisTimeoutMs: opts.redisTimeoutMs } : {}),
    ...(opts.jwt !== undefined ? { jwt: opts.jwt } : {}),
    ...(opts.now !== undefined ? { now: opts.now } : {}),
  });
  const admin = await sidecar.listenAdmin();
  const addr = await sidecar.listen();
  return {
    port: addr.port,
    adminPort: admin.port,
    admin: `http://127.0.0.1:${admin.port}`,
    origin: `https://localhost:${addr.port}`,
    audit: sink,
    sidecar,
    configFile: file,
    outboundPort(name) {
      const port = sidecar.outbound?.port(name);
      if (port === undefined) throw new Error(`no outbound listener for "${name}"`);
      return port;
    },
    outboundProxyPort() {
      const port = sidecar.outbound?.proxyPort();
      if (port === undefined) throw new Error('no outbound proxy listener');
      return port;
    },
    async close() {
      sidecar.destroyConnections();
      await sidecar.close(100);
      if (cleanupDir !== null) await rm(cleanupDir, { recursive: true, force: true });
    },
  };
}
