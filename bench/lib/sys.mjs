// Machine facts for the bench: tools (installing nginx/haproxy from Debian if missing), versions,
// and how busy each core is with work that is not ours (the bench machine may be shared).
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { which } from './proc.mjs';
import { ROOT } from './targets.mjs';

function sh(cmd, args, opts = {}) {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 600_000, ...opts });
}

/**
 * nginx and haproxy from Debian when missing (root only). Debian starts both services on
 * install; stop them again (only when this call installed them). Returns the missing tools.
 */
export function ensureTools(log) {
  for (const t of ['openssl', 'taskset']) if (which(t) === null) throw new Error(`${t} is required (Debian: openssl, util-linux)`);
  const missing = ['nginx', 'haproxy'].filter((t) => which(t) === null);
  if (missing.length === 0) return [];
  if (process.getuid?.() !== 0 || which('apt-get') === null) {
    log(`bench: ${missing.join(', ')} missing and cannot install (not root on Debian); skipping them`);
    return missing;
  }
  log(`bench: installing ${missing.join(' ')} (apt-get)`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  sh('apt-get', ['update', '-qq'], { env });
  sh('apt-get', ['install', '-y', '-qq', ...missing], { env });
  for (const svc of missing) {
    try {
      sh('service', [svc, 'stop']);
    } catch {
      /* not started (no init in containers) */
    }
  }
  return missing.filter((t) => which(t) === null);
}

function firstLine(cmd, args) {
  try {
    const r = execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    return r.split('\n')[0].trim();
  } catch (err) {
    // nginx -v prints on stderr
    return String(err.stderr ?? err.stdout ?? '').split('\n')[0].trim() || null;
  }
}

export function versions(nodeBin) {
  let nginxV = null;
  try {
    nginxV = execFileSync('bash', ['-c', 'nginx -v 2>&1'], { encoding: 'utf8' }).trim() || null;
  } catch {
    /* missing */
  }
  const nodeInfo = JSON.parse(execFileSync(nodeBin, ['-p', 'JSON.stringify({v: process.version, openssl: process.versions.openssl})'], { encoding: 'utf8' }));
  const pkg = (name) => {
    try {
      return JSON.parse(fs.readFileSync(path.join(ROOT, 'node_modules', name, 'package.json'), 'utf8')).version;
    } catch {
      return null;
    }
  };
  let commit = null;
  try {
    commit = sh('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD']).trim();
    const dirty = sh('git', ['-C', ROOT, 'status', '--porcelain', '--', 'src']).trim() !== '';
    if (dirty) commit += ' + uncommitted changes in src/';
  } catch {
    /* not a checkout */
  }
  const cpuModel = os.cpus()[0]?.model ?? 'unknown';
  return {
    nproc: os.cpus().length,
    cpu: cpuModel,
    memGiB: Math.round(os.totalmem() / 2 ** 30),
    kernel: `${os.type()} ${os.release()}`,
    debian: fs.existsSync('/etc/debian_version') ? fs.readFileSync('/etc/debian_version', 'utf8').trim() : null,
    node: `${nodeInfo.v} (OpenSSL ${nodeInfo.openssl})`,
    nginx: nginxV,
    haproxy: firstLine('haproxy', ['-v']),
    openssl: firstLine('openssl', ['version']),
    undici: pkg('undici'),
    pino: pkg('pino'),
    sidecarCommit: commit,
  };
}

function readCores(cores) {
  const text = fs.readFileSync('/proc/stat', 'latin1');
  const out = {};
  for (const c of cores) {
    const m = new RegExp(`^cpu${c} (.*)$`, 'm').exec(text);
    if (m === null) continue;
    const f = m[1].trim().split(/\s+/).map(Number);
    out[c] = { busy: f[0] + f[1] + f[2] + f[5] + f[6], total: f.slice(0, 8).reduce((x, y) => x + y, 0) };
  }
  return out;
}

/** Busy % of each core over `ms` while our own processes are idle. */
export async function coreBusy(cores, ms = 500) {
  const a = readCores(cores);
  await sleep(ms);
  const b = readCores(cores);
  const out = {};
  for (const c of cores) out[c] = (100 * (b[c].busy - a[c].busy)) / (b[c].total - a[c].total || 1);
  return out;
}

/**
 * Wait (bounded by the remaining budget) until both cores are quiet: busy below maxPct while
 * nothing of ours runs. Returns { waitedMs, busy } (the last sample).
 */
export async function waitQuiet(cores, { maxPct, budget }) {
  const t0 = Date.now();
  let busy = await coreBusy(cores, 300);
  while (Object.values(busy).some((v) => v > maxPct) && budget.ms > 0) {
    const s0 = Date.now();
    busy = await coreBusy(cores, 700);
    budget.ms -= Date.now() - s0;
  }
  return { waitedMs: Date.now() - t0, busy };
}
