// Latency and memory budgets under floods (`make flood-budgets`): each flood of the adversarial
// suite (test/adversarial/floods-*.test.ts) against the sidecar running as its own process
// (`node dist/main.js run`), so that what is measured is the sidecar alone:
//  - its resident memory, from /proc/<pid>/status (VmRSS sampled every 25 ms, and VmHWM, the
//    kernel's own peak, at the end); a fresh process per flood, so no flood inherits another's;
//  - the p99 latency of a well-behaved client (one keep-alive HTTP/1.1 connection, GET /healthz
//    every 5 ms), measured from this process while the flood runs.
// The attacker is test/adversarial/flood-agent.ts in a child process; the app is an HTTP server
// in this process. `make test` checks the behaviour under the same floods (flood cut, good client
// served, nothing reaches the app); this checks the numbers, and is meant to run alone: on a busy
// machine it measures the machine. No retries: a run over budget is a failure.
//
//   node bench/flood-budgets.mjs [attack ...]      (after `npm run build`)
//   FLOOD_RUNS [3]  runs per flood;  FLOOD_OUT [bench/out/flood-budgets.json]  every run's numbers
//
// Loopback only; every flood is bounded in time (2.5 s) and in connections; every process
// started here is stopped at the end, on an error and on Ctrl-C.
import fs from 'node:fs';
import http from 'node:http';
import { stripTypeScriptTypes } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { Agent, request } from 'undici';
import { NICE, cpuSeconds, pinSelf, run, start, stop, stopAll, waitFor } from './lib/proc.mjs';

const BENCH = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.dirname(BENCH);
const NODE = process.execPath;
const MAIN = path.join(ROOT, 'dist', 'main.js');
const ADV = path.join(ROOT, 'test', 'adversarial');

// The floods and their settings, as in the adversarial suite (flood-budget.ts and the three
// floods-*.test.ts): 2.5 s each, the limits below. Budgets per flood, from 10 runs of each on the
// 2-core development machine with other work running (bench/README.md "Flood budgets"): p99 of
// the good client under twice the worst run, or the issue's 100 ms where that is higher; peak RSS
// of the sidecar under 1.25 times the worst run, rounded up to 8 MiB.
const DURATION_MS = 2500;
const WARMUP_MS = 300;
/** Fewer good requests than this in the 2.2 s measured: too slow to be served, and too few for a p99. */
const MIN_GOOD = 40;
const FLOODS = [
  { attack: 'h1-many-headers', connections: 300, paceMs: 0, p99Ms: 110, rssMiB: 136 },
  { attack: 'h1-slowloris', connections: 300, paceMs: 50, p99Ms: 100, rssMiB: 144 },
  { attack: 'h1-pipeline', connections: 20, paceMs: 0, p99Ms: 130, rssMiB: 136 },
  { attack: 'idle-tcp', connections: 2000, paceMs: 5, p99Ms: 100, rssMiB: 168 },
  { attack: 'continuation', connections: 200, paceMs: 0, p99Ms: 120, rssMiB: 136 },
  { attack: 'settings', connections: 200, paceMs: 0, p99Ms: 350, rssMiB: 136 },
  { attack: 'ping', connections: 200, paceMs: 0, p99Ms: 100, rssMiB: 144 },
  { attack: 'hpack-bomb', connections: 200, paceMs: 0, p99Ms: 210, rssMiB: 144 },
  { attack: 'h2-many-headers', connections: 200, paceMs: 0, p99Ms: 140, rssMiB: 168 },
  { attack: 'rapid-reset', connections: 200, paceMs: 2, p99Ms: 240, rssMiB: 144 },
  { attack: 'streams', connections: 200, paceMs: 2, p99Ms: 100, rssMiB: 136 },
];
const LIMITS = {
  headersTimeout: '2s',
  requestTimeout: '4s',
  idleTimeout: '10s',
  maxHeaders: 100,
  maxHeaderSize: '16KiB',
  maxConcurrentStreams: 20,
  maxConnections: 1000,
};
const ROUTES = [
  { name: 'health', path: '/healthz', methods: ['GET'], public: true },
  { name: 'read', prefix: '/orders', methods: ['GET', 'HEAD'], scopes: ['orders:read'] },
  { name: 'write', prefix: '/orders', methods: ['POST', 'PUT', 'PATCH', 'DELETE'], scopes: ['orders:write'] },
  { name: 'admin', prefix: '/admin', scopes: ['admin'] },
];

const RUNS = Number(process.env.FLOOD_RUNS ?? 3);
// As `make bench`: the sidecar alone on one core, the attacker and this process (app, good
// client) on the other; as root all of them at nice -10 (BENCH_NICE), so other work on a shared
// machine gets little of either core.
const TARGET_CPU = process.env.BENCH_TARGET_CPU ?? '0';
const LOAD_CPU = process.env.BENCH_LOAD_CPU ?? '1';

/**
 * With autogroup scheduling (sched(7)), a process's nice value only weighs against processes of
 * its own session: other sessions' work shares the core with it equally whatever the nice. The
 * session's own weight is its autogroup's nice, which root can set. The children started here
 * each have their own session (lib/proc.mjs starts them detached); this process shares its
 * session with whoever started it, so its autogroup is put back as it was on exit.
 */
function prioritize(pid) {
  if (NICE === 0) return null;
  const file = `/proc/${pid}/autogroup`;
  try {
    const before = /nice (-?\d+)/.exec(fs.readFileSync(file, 'utf8'))?.[1] ?? '0';
    fs.writeFileSync(file, String(NICE));
    return before;
  } catch {
    return null; // no autogroups here: nice alone does it
  }
}
const OUT = process.env.FLOOD_OUT ?? path.join(BENCH, 'out', 'flood-budgets.json');
const MiB = 2 ** 20;
const log = (...m) => console.log(...m);

function percentile(sorted, p) {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.max(0, Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1))];
}

/** /proc/<pid>/status fields in bytes (VmRSS, VmHWM), or null once the process is gone. */
function memOf(pid) {
  try {
    const s = fs.readFileSync(`/proc/${pid}/status`, 'latin1');
    const kb = (k) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(s)?.[1] ?? Number.NaN) * 1024;
    return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
  } catch {
    return null;
  }
}

/** Busy and total jiffies of the whole machine (all cores), from /proc/stat. */
function machineJiffies() {
  const f = /^cpu (.*)$/m.exec(fs.readFileSync('/proc/stat', 'latin1'))[1].trim().split(/\s+/).map(Number);
  return { busy: f[0] + f[1] + f[2] + f[5] + f[6] + f[7], total: f.slice(0, 8).reduce((a, b) => a + b, 0) };
}

/** flood-agent.ts and h2frames.ts type-stripped into `dir` as .mjs (they import nothing else), as harness.ts does. */
function buildAgent(dir) {
  const strip = (name) => stripTypeScriptTypes(fs.readFileSync(path.join(ADV, `${name}.ts`), 'utf8')).replaceAll("'./h2frames.js'", "'./h2frames.mjs'");
  fs.writeFileSync(path.join(dir, 'h2frames.mjs'), strip('h2frames'));
  fs.writeFileSync(path.join(dir, 'flood-agent.mjs'), strip('flood-agent'));
  return path.join(dir, 'flood-agent.mjs');
}

/** The app: 200 with a small body; counts the requests that are not the good client's. */
async function startApp() {
  const app = { port: 0, attackRequests: 0, server: null };
  app.server = http.createServer((req, res) => {
    if (req.url !== '/healthz') app.attackRequests++;
    req.resume();
    req.on('end', () => res.end('{"ok":true}\n'));
  });
  await new Promise((r) => app.server.listen(0, '127.0.0.1', r));
  app.port = app.server.address().port;
  return app;
}

/** The sidecar as its own process on an ephemeral port (read from its "listening" log line). */
async function startSidecar(dir, pki, appPort, n) {
  const audit = path.join(dir, `audit-${n}.log`);
  const config = {
    version: 1,
    listen: { address: '127.0.0.1', port: 0, http2: true },
    admin: { address: '127.0.0.1', port: 0 },
    tls: { cert: path.join(pki, 'server.crt'), key: path.join(pki, 'server.key'), clientCAs: [path.join(pki, 'ca.crt')] },
    identities: [
      { name: 'orders', match: { uri: 'spiffe://cluster.local/ns/default/sa/orders' }, scopes: ['orders:read', 'orders:write'] },
      { name: 'billing', match: { uri: 'spiffe://cluster.local/ns/default/sa/billing' }, scopes: ['orders:read'] },
    ],
    routes: ROUTES,
    upstream: { url: `http://127.0.0.1:${appPort}`, connectTimeout: '1s', timeout: '2s' },
    limits: LIMITS,
    audit: { file: audit },
  };
  // JSON is YAML: the product's own loader reads it.
  const file = path.join(dir, `sidecar-${n}.yaml`);
  fs.writeFileSync(file, JSON.stringify(config, null, 2));
  const logFile = path.join(dir, `sidecar-${n}.log`);
  const proc = start('sidecar', NODE, [MAIN, 'run', '--config', file], { cpu: TARGET_CPU, log: logFile, cwd: dir });
  prioritize(proc.pid);
  const port = await waitFor(
    `sidecar (log: ${logFile})`,
    () => {
      const line = fs.readFileSync(logFile, 'utf8').split('\n').find((l) => l.includes('"msg":"listening"'));
      const m = line === undefined ? null : /"port":(\d+)/.exec(line);
      return m === null ? null : Number(m[1]);
    },
    { proc, timeoutMs: 20_000, intervalMs: 50 },
  );
  return { proc, port, audit, logFile, file };
}

/** A well-behaved client: sequential GET /healthz on one keep-alive connection every `intervalMs`. */
function goodClient(port, creds) {
  const agent = new Agent({ connect: { ...creds, servername: 'localhost' }, connections: 1, pipelining: 1, keepAliveTimeout: 60_000 });
  const samples = [];
  const statuses = {};
  const errors = [];
  let running = false;
  let loop = Promise.resolve();
  const once = async (record) => {
    const t0 = performance.now();
    try {
      const res = await request(`https://localhost:${port}/healthz`, { dispatcher: agent, headersTimeout: 5000, bodyTimeout: 5000 });
      await res.body.dump();
      if (record) {
        samples.push([t0, performance.now() - t0]);
        statuses[res.statusCode] = (statuses[res.statusCode] ?? 0) + 1;
      }
    } catch (err) {
      if (record) errors.push(err.message);
    }
  };
  return {
    async start(intervalMs = 5, max = 2000) {
      for (let i = 0; i < 5; i++) await once(false); // handshake and JIT outside the measurement
      running = true;
      loop = (async () => {
        for (let i = 0; i < max && running; i++) {
          await once(true);
          await sleep(intervalMs);
        }
      })();
    },
    async stop(since) {
      running = false;
      await loop;
      await agent.close();
      const sorted = samples.filter(([t0]) => t0 >= since).map(([, ms]) => ms).sort((a, b) => a - b);
      return { count: sorted.length, statuses, errors, p50: percentile(sorted, 50), p99: percentile(sorted, 99), max: sorted.at(-1) ?? Number.NaN };
    },
  };
}

/** One attack in a child process; resolves with its report and the CPU seconds it used. */
async function runAgent(script, dir, cfg) {
  const file = path.join(dir, `agent-${cfg.attack}.json`);
  fs.writeFileSync(file, JSON.stringify(cfg), { mode: 0o600 });
  const proc = start('flood-agent', NODE, ['--no-warnings', script, file], { cpu: LOAD_CPU, pipe: true });
  prioritize(proc.pid);
  proc.child.stdin.end();
  let out = '';
  let err = '';
  proc.child.stdout.setEncoding('utf8').on('data', (d) => (out += d));
  proc.child.stderr.setEncoding('utf8').on('data', (d) => (err += d));
  // Its CPU time can only be read while it lives: sampled until it exits.
  let cpu = 0;
  const sampler = setInterval(() => (cpu = Math.max(cpu, cpuSeconds(proc.pid))), 50);
  const killer = setTimeout(() => void stop(proc, 0), cfg.durationMs + 15_000);
  const code = await proc.exited;
  clearInterval(sampler);
  clearTimeout(killer);
  const line = out.trim().split('\n').at(-1) ?? '';
  if (code !== 0 || line === '') throw new Error(`flood agent ${cfg.attack} exited ${code}: ${err.slice(0, 2000)}`);
  return { report: JSON.parse(line), cpu };
}

async function one(ctx, { attack, connections: maxConnections, paceMs }, n) {
  const sc = await startSidecar(ctx.dir, ctx.pki, ctx.app.port, n);
  const good = goodClient(sc.port, ctx.creds);
  await good.start();
  const base = memOf(sc.proc.pid);
  let maxRss = base?.rss ?? 0;
  const sampler = setInterval(() => {
    const m = memOf(sc.proc.pid);
    if (m !== null && m.rss > maxRss) maxRss = m.rss;
  }, 25);
  const appBefore = ctx.app.attackRequests;
  const cpu0 = cpuSeconds(sc.proc.pid);
  const self0 = process.cpuUsage();
  const jiffies0 = machineJiffies();
  const wall0 = performance.now();
  const { report, cpu: agentCpu } = await runAgent(ctx.agent, ctx.dir, { attack, port: sc.port, durationMs: DURATION_MS, maxConnections, paceMs, path: '/orders/1', ...ctx.agentCreds });
  clearInterval(sampler);
  const wallS = (performance.now() - wall0) / 1000;
  const jiffies1 = machineJiffies();
  const sidecarCpu = cpuSeconds(sc.proc.pid) - cpu0;
  const self = process.cpuUsage(self0);
  const stats = await good.stop(wall0 + WARMUP_MS);
  const end = memOf(sc.proc.pid);
  await stop(sc.proc);
  fs.rmSync(sc.audit, { force: true });
  // How busy the machine was over the flood, in cores: everything, and what was not ours
  // (not the sidecar, the attacker, or this process with the app and the good client).
  const machineCores = ((jiffies1.busy - jiffies0.busy) / (jiffies1.total - jiffies0.total || 1)) * os.cpus().length;
  const oursCores = (sidecarCpu + agentCpu + (self.user + self.system) / 1e6) / wallS;
  return {
    attack,
    run: n,
    p50: stats.p50,
    p99: stats.p99,
    max: stats.max,
    good: stats.count,
    statuses: stats.statuses,
    errors: stats.errors.length,
    rssStartMiB: (base?.rss ?? Number.NaN) / MiB,
    rssMaxMiB: Math.max(maxRss, end?.rss ?? 0) / MiB,
    hwmMiB: (end?.hwm ?? Number.NaN) / MiB,
    sidecarCores: sidecarCpu / wallS,
    agentCores: agentCpu / wallS,
    machineCores,
    otherCores: Math.max(0, machineCores - oursCores),
    load1: os.loadavg()[0],
    appRequests: ctx.app.attackRequests - appBefore,
    connections: report.connections,
    serverClosed: report.serverClosed,
    goaways: report.goaways,
  };
}

function verdict(r, flood) {
  const why = [];
  if (r.errors > 0 || Object.keys(r.statuses).some((s) => s !== '200')) why.push(`good client errors ${r.errors}, statuses ${JSON.stringify(r.statuses)}`);
  if (r.good < MIN_GOOD) why.push(`only ${r.good} good requests measured`);
  if (!(r.p99 < flood.p99Ms)) why.push(`p99 ${r.p99.toFixed(1)} ms >= ${flood.p99Ms}`);
  if (!(r.hwmMiB < flood.rssMiB)) why.push(`peak RSS ${r.hwmMiB.toFixed(1)} MiB >= ${flood.rssMiB}`);
  return why;
}

const f1 = (x) => (Number.isFinite(x) ? x.toFixed(1) : '–');
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? Number.NaN : s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

async function main() {
  if (!fs.existsSync(MAIN)) throw new Error('dist/main.js is missing: npm run build first');
  const only = process.argv.slice(2);
  const floods = only.length === 0 ? FLOODS : FLOODS.filter((f) => only.includes(f.attack));
  if (floods.length === 0) throw new Error(`no such flood: ${only.join(', ')} (known: ${FLOODS.map((f) => f.attack).join(', ')})`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mtls-sidecar-floods-'));
  pinSelf(LOAD_CPU);
  const ownGroup = prioritize(process.pid);
  if (ownGroup !== null) process.on('exit', () => fs.writeFileSync(`/proc/${process.pid}/autogroup`, ownGroup));
  const app = await startApp();
  try {
    const pkiDir = path.join(dir, 'pki');
    const made = await run('certs', NODE, [MAIN, 'certs', '--out', pkiDir], { timeoutMs: 60_000 });
    if (made.code !== 0) throw new Error(`mtls-sidecar certs failed: ${made.stderr}`);
    const creds = { ca: fs.readFileSync(path.join(pkiDir, 'ca.crt')), cert: fs.readFileSync(path.join(pkiDir, 'orders.crt')), key: fs.readFileSync(path.join(pkiDir, 'orders.key')) };
    const ctx = {
      dir,
      pki: pkiDir,
      app,
      creds,
      agent: buildAgent(dir),
      agentCreds: { ca: creds.ca.toString(), cert: creds.cert.toString(), key: creds.key.toString() },
    };
    log(`flood-budgets: ${floods.length} floods x ${RUNS} runs, budgets per flood (p99 of a good client, peak RSS of the sidecar); ` +
      `sidecar on core ${TARGET_CPU}, attacker, app and good client on core ${LOAD_CPU}, nice ${NICE}; ` +
      `${os.cpus().length} cores, load ${os.loadavg().map((x) => x.toFixed(1)).join(' ')}; Node ${process.version}`);
    const rows = [];
    let n = 0;
    // Runs interleaved (every flood once, then again), so a busy spell on the machine spreads over the floods.
    for (let k = 0; k < RUNS; k++) {
      for (const flood of floods) {
        const r = await one(ctx, flood, n++);
        r.fail = verdict(r, flood);
        rows.push(r);
        log(`${r.attack.padEnd(16)} run ${k + 1}: good n=${r.good} p50 ${f1(r.p50)} p99 ${f1(r.p99)} max ${f1(r.max)} ms; ` +
          `RSS ${f1(r.rssStartMiB)} -> ${f1(r.rssMaxMiB)} MiB (peak ${f1(r.hwmMiB)}); sidecar ${f1(r.sidecarCores * 100)} % of a core, ` +
          `attacker ${f1(r.agentCores * 100)} %, other work ${f1(r.otherCores)} cores, load ${f1(r.load1)}; app ${r.appRequests}, closed ${r.serverClosed}/${r.connections}, GOAWAY ${JSON.stringify(r.goaways)}` +
          `${r.fail.length ? `  OVER BUDGET: ${r.fail.join('; ')}` : ''}`);
      }
    }
    fs.mkdirSync(path.dirname(OUT), { recursive: true });
    fs.writeFileSync(OUT, JSON.stringify({ floods, node: process.version, cores: os.cpus().length, targetCpu: TARGET_CPU, loadCpu: LOAD_CPU, nice: NICE, rows }, null, 2));
    log('\n| flood | runs | good client p99 ms, median / max (budget) | sidecar peak RSS MiB, median / max (budget) | other work, cores (median / max) |');
    log('|---|---:|---|---|---|');
    for (const f of floods) {
      const rs = rows.filter((r) => r.attack === f.attack);
      const mm = (xs) => `${f1(median(xs))} / ${f1(Math.max(...xs))}`;
      log(`| ${f.attack} | ${rs.length} | ${mm(rs.map((r) => r.p99))} (${f.p99Ms}) | ${mm(rs.map((r) => r.hwmMiB))} (${f.rssMiB}) | ${mm(rs.map((r) => r.otherCores))} |`);
    }
    const failed = rows.filter((r) => r.fail.length > 0);
    log(`\nflood-budgets: ${rows.length - failed.length} of ${rows.length} runs within budget; every run in ${OUT}`);
    return failed.length === 0 ? 0 : 1;
  } finally {
    await stopAll();
    app.server.closeAllConnections();
    await new Promise((r) => app.server.close(r));
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().then(
  (code) => process.exit(code),
  async (err) => {
    console.error(`flood-budgets: ${err?.stack ?? err}`);
    await stopAll();
    process.exit(1);
  },
);
