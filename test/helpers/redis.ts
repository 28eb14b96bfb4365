/**
 * A real, throwaway `redis-server` on a loopback port, for the Redis rate-limit tests.
 *
 * Redis needs an explicit port, so one is picked by binding 127.0.0.1:0 and closing it. The
 * server keeps nothing on disk (`--save '' --appendonly no`, cwd in a temp folder). `kill()` and
 * `start()` simulate an outage and a restart on the same port; `pause()`/`resume()` (SIGSTOP /
 * SIGCONT) a Redis that accepts connections but never answers.
 *
 * `startRedisCluster()` builds a real Redis Cluster of such servers (cluster mode on, each in its
 * own folder for nodes.conf), joined with `redis-cli --cluster create`.
 */
import { execFile, spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

/** Path of redis-server, or null when it is not installed (tests then skip, saying so). */
export function redisServerBinary(): string | null {
  const r = spawnSync('redis-server', ['--version'], { encoding: 'utf8' });
  return r.error === undefined && r.status === 0 ? 'redis-server' : null;
}

export const REDIS_MISSING = 'redis-server is not installed (apt-get install -y redis-server); Redis rate-limit tests skipped';

/** Whether redis-cli is installed too (it builds a cluster; Debian's redis-server brings it). */
export function redisCliBinary(): string | null {
  const r = spawnSync('redis-cli', ['--version'], { encoding: 'utf8' });
  return r.error === undefined && r.status === 0 ? 'redis-cli' : null;
}

export const REDIS_CLUSTER_MISSING = 'redis-server or redis-cli is not installed (apt-get install -y redis-server redis-tools); Redis Cluster rate-limit tests skipped';

export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/**
 * One raw RESP command over a fresh socket (no client library): resolves the first reply line
 * (`+PONG`, `:1`, `-MOVED …`), or for a bulk string (`$n`) its contents.
 */
export function rawCommand(port: number, args: readonly string[], timeoutMs = 1000): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    let buf = Buffer.alloc(0);
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`redis on port ${port}: no reply in ${timeoutMs} ms`));
    }, timeoutMs);
    socket.on('connect', () => {
      socket.write(`*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`);
    });
    socket.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      const end = buf.indexOf('\r\n');
      if (end < 0) return;
      const line = buf.toString('latin1', 0, end);
      let reply = line;
      if (line.startsWith('$') && Number(line.slice(1)) >= 0) {
        const n = Number(line.slice(1));
        if (buf.length < end + 2 + n + 2) return;
        reply = buf.toString('utf8', end + 2, end + 2 + n);
      }
      clearTimeout(timer);
      socket.destroy();
      resolve(reply);
    });
    socket.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

export interface RedisServer {
  readonly port: number;
  readonly url: string;
  /** Start (again) on the same port and wait for PONG. */
  start(): Promise<void>;
  /** SIGKILL: an abrupt outage. Resolves once the process is gone. */
  kill(): Promise<void>;
  pause(): void;
  resume(): void;
  /** Kill if running and remove the temp folder. */
  stop(): Promise<void>;
}

/**
 * `args`: more redis-server options (e.g. cluster mode), after the helper's own; a function is
 * asked again on each attempt to find a free port (for options that name ports too), and the
 * options of the attempt that worked are used by every restart.
 */
export async function startRedis(args: readonly string[] | (() => Promise<readonly string[]>) = []): Promise<RedisServer> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mtls-sidecar-redis-'));
  let port = 0;
  let extra: readonly string[] = [];
  let child: ChildProcess | null = null;
  let exited: Promise<void> = Promise.resolve();

  const launch = async (): Promise<void> => {
    const proc = spawn(
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--loglevel', 'warning', ...extra],
      { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let stderr = '';
    proc.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child = proc;
    let gone = false;
    exited = new Promise<void>((resolve) => proc.once('exit', () => {
      gone = true;
      resolve();
    }));
    const deadline = Date.now() + 10_000;
    for (;;) {
      // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- set by the exit handler
      if (gone) throw new Error(`redis-server exited at start on port ${port}: ${stderr.trim()}`);
      try {
        if ((await rawCommand(port, ['PING'], 500)) === '+PONG') return;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) {
        proc.kill('SIGKILL');
        throw new Error(`redis-server on port ${port} did not answer PING within 10 s`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  };

  // Another process may grab the probed port before redis binds it: try a few.
  for (let attempt = 0; ; attempt++) {
    port = await freePort();
    extra = typeof args === 'function' ? await args() : args;
    try {
      await launch();
      break;
    } catch (err) {
      if (attempt >= 3) {
        rmSync(dir, { recursive: true, force: true });
        throw err;
      }
    }
  }

  const kill = async (): Promise<void> => {
    const c = child;
    if (c === null) return;
    child = null;
    if (c.exitCode === null && c.signalCode === null) {
      c.kill('SIGCONT');
      c.kill('SIGKILL');
    }
    await exited;
  };

  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    start: async () => {
      if (child !== null) throw new Error('redis-server already running');
      await launch();
    },
    kill,
    pause: () => {
      child?.kill('SIGSTOP');
    },
    resume: () => {
      child?.kill('SIGCONT');
    },
    stop: async () => {
      await kill();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface RedisCluster {
  /** The masters, in the order given to redis-cli (which hands out slot ranges in that order). */
  readonly nodes: readonly RedisServer[];
  /** A seed node URL for clients (the first master). */
  readonly url: string;
  /** Index in `nodes` of the master that serves `key` now, as a running node answers (MOVED). */
  ownerOf(key: string): Promise<number>;
  /** Poll every running node until each says `cluster_state:ok`. */
  waitUntilOk(withinMs?: number): Promise<void>;
  /** Kill every node and remove their folders. */
  stop(): Promise<void>;
}

export interface RedisClusterOptions {
  readonly masters?: number;
  /** cluster-node-timeout (default 2 s): how long before the others mark a silent node failed. */
  readonly nodeTimeoutMs?: number;
  /** cluster-require-full-coverage (default false: the other masters keep serving their slots). */
  readonly fullCoverage?: boolean;
}

/**
 * A real Redis Cluster on loopback: `masters` redis-servers in cluster mode (no replicas), each
 * with its own folder and cluster bus port, joined by `redis-cli --cluster create`, and polled
 * until every node reports `cluster_state:ok`. Needs redis-cli (`redisCliBinary()`).
 */
export async function startRedisCluster(opts: RedisClusterOptions = {}): Promise<RedisCluster> {
  const masters = opts.masters ?? 3;
  const args = async (): Promise<readonly string[]> => [
    '--cluster-enabled', 'yes',
    '--cluster-config-file', 'nodes.conf',
    '--cluster-node-timeout', String(opts.nodeTimeoutMs ?? 2000),
    '--cluster-require-full-coverage', opts.fullCoverage === true ? 'yes' : 'no',
    // The bus port defaults to port + 10000, which may be taken or past 65535.
    '--cluster-port', String(await freePort()),
  ];
  const nodes: RedisServer[] = [];
  const stop = async (): Promise<void> => {
    await Promise.all(nodes.map((n) => n.stop()));
  };
  try {
    for (let i = 0; i < masters; i++) nodes.push(await startRedis(args));
    await new Promise<void>((resolve, reject) => {
      execFile(
        'redis-cli',
        ['--cluster', 'create', ...nodes.map((n) => `127.0.0.1:${n.port}`), '--cluster-replicas', '0', '--cluster-yes'],
        { timeout: 20_000 },
        (err, stdout, stderr) => (err === null ? resolve() : reject(new Error(`redis-cli --cluster create failed: ${err.message}\n${stdout}${stderr}`))),
      );
    });
  } catch (err) {
    await stop();
    throw err;
  }

  const running = async (): Promise<RedisServer[]> => {
    const up: RedisServer[] = [];
    for (const n of nodes) {
      try {
        if ((await rawCommand(n.port, ['PING'], 500)) === '+PONG') up.push(n);
      } catch {
        // killed
      }
    }
    return up;
  };

  const waitUntilOk = async (withinMs = 10_000): Promise<void> => {
    const deadline = Date.now() + withinMs;
    for (;;) {
      const up = await running();
      let ok = up.length > 0;
      for (const n of up) {
        const info = await rawCommand(n.port, ['CLUSTER', 'INFO']).catch(() => '');
        if (!info.includes('cluster_state:ok')) ok = false;
      }
      if (ok) return;
      if (Date.now() > deadline) throw new Error(`redis cluster not in cluster_state:ok within ${withinMs} ms`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };

  try {
    await waitUntilOk();
  } catch (err) {
    await stop();
    throw err;
  }

  return {
    nodes,
    url: `redis://127.0.0.1:${(nodes[0] as RedisServer).port}`,
    ownerOf: async (key: string) => {
      const [asked] = await running();
      if (asked === undefined) throw new Error('no cluster node is running');
      const reply = await rawCommand(asked.port, ['EXISTS', key]);
      // `:0`/`:1`: this node serves the key; `-MOVED <slot> <host>:<port>`: that one does.
      const port = reply.startsWith('-MOVED ') ? Number(reply.slice(reply.lastIndexOf(':') + 1)) : asked.port;
      const i = nodes.findIndex((n) => n.port === port);
      if (i < 0) throw new Error(`unexpected reply to EXISTS: ${reply}`);
      return i;
    },
    waitUntilOk,
    stop,
  };
}
