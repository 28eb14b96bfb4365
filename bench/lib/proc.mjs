// Process helpers for the bench scripts: start children in their own process group, pinned
// to a core; kill every one of them at the end (normal exit, error, Ctrl-C); read CPU time and
// resident memory from /proc. Nothing here touches a process this harness did not start.
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

export const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/**
 * Pinned bench processes run at this nice level (root only): on a machine shared with other
 * work, CFS then gives them ~90 % of their core instead of an even split. BENCH_NICE=0 disables.
 */
export const NICE = process.getuid?.() === 0 ? Number(process.env.BENCH_NICE ?? -10) : 0;

/**
 * With autogroup scheduling (sched(7)) a nice value only weighs against processes of the same
 * session, and every child here is its own session (detached): each would get an even share of
 * its core with every other session's work, whatever BENCH_NICE says. Root can set a session's
 * own weight, its autogroup nice: pinned children get NICE there too (as flood-budgets.mjs
 * does). BENCH_AUTOGROUP=0 leaves it.
 */
const AUTOGROUP = NICE !== 0 && process.env.BENCH_AUTOGROUP !== '0';
function prioritizeSession(pid) {
  if (!AUTOGROUP) return;
  try {
    fs.writeFileSync(`/proc/${pid}/autogroup`, String(NICE));
  } catch {
    /* no autogroups here (or already gone): nice alone does it */
  }
}

/** Every child started through start(), by pid. */
const children = new Map();
let cleanupInstalled = false;

function installCleanup() {
  if (cleanupInstalled) return;
  cleanupInstalled = true;
  // Last resort on exit: SIGKILL whatever is still alive (synchronous; exit handlers cannot wait).
  process.on('exit', () => {
    for (const pid of children.keys()) killGroup(pid, 'SIGKILL');
  });
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.on(sig, () => {
      process.stderr.write(`\nbench: ${sig}, stopping everything started\n`);
      stopAll().finally(() => process.exit(130));
    });
  }
  process.on('uncaughtException', (err) => {
    process.stderr.write(`bench: ${err?.stack ?? err}\n`);
    stopAll().finally(() => process.exit(1));
  });
}

function killGroup(pid, signal) {
  try {
    process.kill(-pid, signal);
  } catch {
    try {
      process.kill(pid, signal);
    } catch {
      /* gone */
    }
  }
}

/**
 * Start `cmd args` pinned to `cpu` (a taskset list such as "0", or null for no pinning), in its
 * own process group (so nginx's workers die with their master). stdout/stderr go to `log`
 * (a path) unless `pipe` is true. Returns { pid, child, name, exited }.
 */
export function start(name, cmd, args, { cpu = null, log = null, pipe = false, inherit = false, env = process.env, cwd } = {}) {
  installCleanup();
  let argv = cpu === null ? [cmd, ...args] : ['taskset', '-c', String(cpu), cmd, ...args];
  if (cpu !== null && NICE !== 0) argv = ['nice', '-n', String(NICE), ...argv];
  let stdio = 'ignore';
  let fd = null;
  if (pipe) stdio = ['pipe', 'pipe', 'pipe'];
  else if (inherit) stdio = ['ignore', 'inherit', 'inherit'];
  else if (log !== null) {
    fd = fs.openSync(log, 'w');
    stdio = ['ignore', fd, fd];
  }
  const child = spawn(argv[0], argv.slice(1), { stdio, env, cwd, detached: true });
  if (fd !== null) fs.closeSync(fd);
  if (cpu !== null && child.pid !== undefined) prioritizeSession(child.pid);
  const proc = { name, pid: child.pid, child, exitCode: null, exited: null };
  proc.exited = new Promise((resolve) => {
    child.once('exit', (code, signal) => {
      proc.exitCode = code ?? signal;
      children.delete(child.pid);
      resolve(proc.exitCode);
    });
    child.once('error', (err) => {
      proc.exitCode = `spawn error: ${err.message}`;
      children.delete(child.pid);
      resolve(proc.exitCode);
    });
  });
  if (child.pid !== undefined) children.set(child.pid, proc);
  return proc;
}

/** SIGTERM the process group, then SIGKILL after `graceMs`. */
export async function stop(proc, graceMs = 3000) {
  if (proc === null || proc === undefined || proc.exitCode !== null) return;
  killGroup(proc.pid, 'SIGTERM');
  const t = sleep(graceMs).then(() => 'timeout');
  if ((await Promise.race([proc.exited, t])) === 'timeout') {
    killGroup(proc.pid, 'SIGKILL');
    await Promise.race([proc.exited, sleep(2000)]);
  }
}

export async function stopAll() {
  await Promise.all([...children.values()].map((p) => stop(p)));
}

/** Run a command to completion, collecting stdout (bounded by timeoutMs). Tracked like start(). */
export function run(name, cmd, args, { cpu = null, timeoutMs = 120_000, env = process.env, input = null } = {}) {
  const proc = start(name, cmd, args, { cpu, pipe: true, env });
  let out = '';
  let err = '';
  proc.child.stdout.setEncoding('utf8').on('data', (d) => {
    if (out.length < 8 << 20) out += d;
  });
  proc.child.stderr.setEncoding('utf8').on('data', (d) => {
    if (err.length < 1 << 20) err += d;
  });
  if (input !== null) proc.child.stdin.end(input);
  else proc.child.stdin.end();
  const timer = setTimeout(() => killGroup(proc.pid, 'SIGKILL'), timeoutMs);
  return proc.exited.then((code) => {
    clearTimeout(timer);
    return { code, stdout: out, stderr: err };
  });
}

/** utime+stime in seconds of one pid (all its threads), or 0 if gone. */
export function cpuSeconds(pid) {
  try {
    const s = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / CLK_TCK;
  } catch {
    return 0;
  }
}

/** The pid and all its live descendants. */
export function treePids(root) {
  const parent = new Map();
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const s = fs.readFileSync(`/proc/${d}/stat`, 'latin1');
      const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
      parent.set(Number(d), Number(f[1]));
    } catch {
      /* raced */
    }
  }
  const out = [root];
  for (let i = 0; i < out.length; i++) {
    for (const [pid, ppid] of parent) if (ppid === out[i]) out.push(pid);
  }
  return out.filter((p) => parent.has(p));
}

/** Resident set size in bytes, summed over the pids. */
export function rssBytes(pids) {
  let total = 0;
  for (const pid of pids) {
    try {
      const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'latin1'));
      if (m) total += Number(m[1]) * 1024;
    } catch {
      /* gone */
    }
  }
  return total;
}

/** Resolves when `check()` resolves truthy; rejects after timeoutMs (or if proc exits). */
export async function waitFor(what, check, { timeoutMs = 15_000, proc = null, intervalMs = 100 } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last = null;
  while (Date.now() < deadline) {
    if (proc !== null && proc.exitCode !== null) throw new Error(`${what}: process exited (${proc.exitCode})`);
    try {
      const v = await check();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    await sleep(intervalMs);
  }
  throw new Error(`${what}: not ready after ${timeoutMs} ms${last ? ` (${last.message})` : ''}`);
}

/** True if nothing listens on 127.0.0.1:port. */
export async function portFree(port) {
  const net = await import('node:net');
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

export function which(cmd) {
  try {
    return execFileSync('bash', ['-c', `command -v ${cmd}`], { encoding: 'utf8' }).trim() || null;
  } catch {
    return null;
  }
}

/** Pin this process (the orchestrator, idle during measurements) to a core. */
export function pinSelf(cpu) {
  try {
    execFileSync('taskset', ['-cp', String(cpu), String(process.pid)], { stdio: 'ignore' });
    if (NICE !== 0) execFileSync('renice', ['-n', String(NICE), '-p', String(process.pid)], { stdio: 'ignore' });
  } catch {
    /* not fatal */
  }
}
