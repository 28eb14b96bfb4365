/**
 * A real, throwaway `redis-server` on a loopback port, for the Redis rate-limit tests.
 *
 * Redis needs an explicit port, so one is picked by binding 127.0.0.1:0 and closing it. The
 * server keeps nothing on disk (`--save '' --appendonly no`, cwd in a temp folder). `kill()` and
 * `start()` simulate an outage and a restart on the same port; `pause()`/`resume()` (SIGSTOP /
 * SIGCONT) a Redis that accepts connections but never answers.
 */
import { spawn, spawnSync } from 'node:child_process';
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

/** One raw RESP command over a fresh socket (no client library): resolves the first reply line. */
export function rawCommand(port: number, args: readonly string[], timeoutMs = 1000): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    let buf = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`redis on port ${port}: no reply in ${timeoutMs} ms`));
    }, timeoutMs);
    socket.setEncoding('utf8');
    socket.on('connect', () => {
      socket.write(`*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`);
    });
    socket.on('data', (d: string) => {
      buf += d;
      const end = buf.indexOf('\r\n');
      if (end >= 0) {
        clearTimeout(timer);
        socket.destroy();
        resolve(buf.slice(0, end));
      }
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

export async function startRedis(): Promise<RedisServer> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mtls-sidecar-redis-'));
  let port = 0;
  let child: ChildProcess | null = null;
  let exited: Promise<void> = Promise.resolve();

  const launch = async (): Promise<void> => {
    const proc = spawn(
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--loglevel', 'warning'],
      { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let stderr = '';
    proc.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child = proc;
    let gone = false;
    exited = new Promise<void>((resolve) => proc.once('exit', () => {
      gone = true;
      resolve();
    }));
    const deadline = Date.now() + 10_000;
    for (;;) {
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
