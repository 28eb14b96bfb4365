// Runs bench/loadgen.mjs once (pinned to the load core) and returns its JSON result.
import path from 'node:path';
import { run, start } from './proc.mjs';
import { BENCH, NODE } from './targets.mjs';

// A larger young generation: fewer scavenges on the load core (the generator allocates a
// little per request: chunks, header strings).
const NODE_FLAGS = ['--max-semi-space-size=64'];

function common(pki, port) {
  return [...NODE_FLAGS, path.join(BENCH, 'loadgen.mjs'), '--port', String(port), '--ca', pki.ca, '--cert', pki.clientCert, '--key', pki.clientKey];
}

/** `watch`: processes whose CPU to report, by name (default: the target's, as `target`). */
export async function loadgen({ pki, target, upstream = null, args, seconds, warmup, cpu, cores = [], watch = null }) {
  const w = watch ?? { target: target.pids };
  const a = [
    ...common(pki, target.port),
    ...args,
    '--seconds', String(seconds),
    '--warmup', String(warmup),
    ...Object.entries(w).flatMap(([name, pids]) => ['--watch', `${name}=${pids.join(',')}`]),
    ...(upstream ? ['--watch', `upstream=${upstream.pids.join(',')}`] : []),
    ...(cores.length ? ['--cores', cores.join(',')] : []),
  ];
  const r = await run('loadgen', NODE, a, { cpu, timeoutMs: (warmup + seconds + 30) * 1000 });
  const line = r.stdout.trim().split('\n').pop();
  try {
    return JSON.parse(line);
  } catch {
    throw new Error(`loadgen failed (${r.code}): ${r.stderr.slice(0, 2000)}`);
  }
}

/**
 * Opens `conns` idle keep-alive mTLS connections (one request each) and keeps them until
 * release() (or holdSeconds). Resolves with { info, release } once they are all open.
 */
export async function holdConnections({ pki, port, conns, cpu, holdSeconds = 600, openTimeoutMs = 300_000 }) {
  const p = start('loadgen-hold', NODE, [...common(pki, port), '--mode', 'hold', '--conns', String(conns), '--hold-seconds', String(holdSeconds)], { cpu, pipe: true });
  let out = '';
  let err = '';
  p.child.stderr.setEncoding('utf8').on('data', (d) => (err += d));
  const info = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('hold: connections not open in time')), openTimeoutMs);
    p.child.stdout.setEncoding('utf8').on('data', (d) => {
      out += d;
      const nl = out.indexOf('\n');
      if (nl >= 0) {
        clearTimeout(timer);
        resolve(JSON.parse(out.slice(0, nl)));
      }
    });
    p.exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`hold: loadgen exited (${code}) ${err.slice(0, 500)}`));
    });
  });
  const release = async () => {
    p.child.stdin.end();
    await Promise.race([p.exited, new Promise((r) => setTimeout(r, 5000))]);
    if (p.exitCode === null) process.kill(-p.pid, 'SIGKILL');
  };
  return { info, release, proc: p };
}
