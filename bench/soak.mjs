// Soak: the sidecar under a rotating load (keep-alive 64, HTTP/2 16x8, a new connection per
// request, 4 KiB POSTs; SOAK_SEGMENT seconds each) for SOAK_SECONDS in all (10 minutes by
// default), sampling its resident memory and JS heap every SOAK_SAMPLE seconds, then idle.
// Loopback only; bounded in time. Writes bench/SOAK.md and bench/out/soak.json.
//
//   node bench/soak.mjs            (or BENCH_SOAK=1 make bench)
//   SOAK_SECONDS [600]  SOAK_SEGMENT [30]  SOAK_SAMPLE [5]  SOAK_TARGET [sidecar]
//   SOAK_MODES [ka64,h2,newconn,post4k]  SOAK_OUT [bench/SOAK.md]   (e.g. SOAK_MODES=newconn
//   SOAK_TARGET=bare SOAK_OUT=bench/out/soak-bare.md to see whether growth is the sidecar's)
//
// "No growth": the median RSS of the last quarter of the run is within max(10 %, 16 MiB) of the
// second quarter's (the first quarter is warm-up: JIT, pools, allocator arenas), and the JS heap
// used likewise within 20 %.
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { stopAll, rssBytes, treePids, pinSelf } from './lib/proc.mjs';
import { makePki } from './lib/pki.mjs';
import * as T from './lib/targets.mjs';
import { loadgen } from './lib/load.mjs';
import { ensureTools, versions } from './lib/sys.mjs';

const env = process.env;
const SECONDS = Number(env.SOAK_SECONDS ?? env.BENCH_SOAK_SECONDS ?? 600);
const SEGMENT = Number(env.SOAK_SEGMENT ?? 30);
const SAMPLE = Number(env.SOAK_SAMPLE ?? 5);
const TARGET = env.SOAK_TARGET ?? 'sidecar';
const TARGET_CPU = env.BENCH_TARGET_CPU ?? '0';
const LOAD_CPU = env.BENCH_LOAD_CPU ?? '1';
const MiB = 2 ** 20;
const log = (...m) => console.log(...m);

const ALL_MODES = [
  { id: 'ka64', args: ['--mode', 'ka', '--conns', '64'] },
  { id: 'h2', args: ['--mode', 'h2', '--conns', '16', '--streams', '8'] },
  { id: 'newconn', args: ['--mode', 'newconn', '--conns', '16'] },
  { id: 'post4k', args: ['--mode', 'ka', '--conns', '64', '--method', 'POST', '--body', '4096', '--path', '/bench/upload'] },
];
const MODES = env.SOAK_MODES ? ALL_MODES.filter((m) => env.SOAK_MODES.split(',').includes(m.id)) : ALL_MODES;
if (MODES.length === 0) throw new Error(`SOAK_MODES: none of ${ALL_MODES.map((m) => m.id).join(', ')}`);
const OUT_MD = env.SOAK_OUT ? path.resolve(env.SOAK_OUT) : null;

async function heapUsed(adminPort) {
  if (!adminPort) return null;
  try {
    const res = await fetch(`http://127.0.0.1:${adminPort}/metrics`, { signal: AbortSignal.timeout(3000) });
    const m = /^nodejs_heap_size_used_bytes ([0-9.e+]+)$/m.exec(await res.text());
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

const median = (xs) => {
  const v = xs.filter((x) => x !== null).sort((a, b) => a - b);
  return v.length ? v[v.length >> 1] : null;
};

async function main() {
  fs.mkdirSync(T.OUT, { recursive: true });
  pinSelf(LOAD_CPU);
  const missing = ensureTools(log);
  await T.checkPorts(['upstream', TARGET]);
  const pki = makePki(T.OUT, 'pki-soak');
  const ctx = T.makeContext({ pki, targetCpu: TARGET_CPU, loadCpu: LOAD_CPU, upstreamKind: missing.includes('nginx') ? 'node' : 'nginx' });
  const upstream = await T.startUpstream(ctx);
  const p = await T.startTarget(TARGET, ctx, { tag: '-soak' });
  const t0 = Date.now();
  const samples = [];
  let stopSampling = false;
  const sampler = (async () => {
    while (!stopSampling) {
      samples.push({ t: (Date.now() - t0) / 1000, rssMiB: rssBytes(treePids(p.pid)) / MiB, heapMiB: ((await heapUsed(p.admin)) ?? NaN) / MiB });
      await sleep(SAMPLE * 1000);
    }
  })();

  const segments = [];
  for (let i = 0; (Date.now() - t0) / 1000 + 1 < SECONDS; i++) {
    const mode = MODES[i % MODES.length];
    const left = SECONDS - (Date.now() - t0) / 1000;
    const secs = Math.max(1, Math.min(SEGMENT, Math.floor(left)));
    const r = await loadgen({ pki, target: p, upstream, args: mode.args, seconds: secs, warmup: 0, cpu: LOAD_CPU });
    segments.push({ mode: mode.id, seconds: secs, rps: r.rps, errors: r.errors, p99ms: r.p99ms, rssEnd: rssBytes(treePids(p.pid)) / MiB });
    if (p.audit) fs.truncateSync(p.audit, 0);
    const last = samples[samples.length - 1];
    log(`soak: ${((Date.now() - t0) / 1000).toFixed(0)}/${SECONDS} s ${mode.id.padEnd(7)} ${r.rps} req/s, errors ${r.errors}; RSS ${last?.rssMiB.toFixed(1)} MiB, heap ${last?.heapMiB.toFixed(1)} MiB`);
    if (p.exitCode !== null) throw new Error(`${TARGET} exited during the soak (${p.exitCode}); log: ${p.log}`);
  }
  // Idle tail: what is left once the load stops.
  await sleep(Math.max(2, SAMPLE * 2) * 1000);
  stopSampling = true;
  await sampler;
  const idle = { rssMiB: rssBytes(treePids(p.pid)) / MiB, heapMiB: ((await heapUsed(p.admin)) ?? NaN) / MiB };
  await stopAll();

  const loaded = samples.filter((s) => s.t <= SECONDS);
  const q = (k) => loaded.filter((s) => s.t >= (k * SECONDS) / 4 && s.t < ((k + 1) * SECONDS) / 4);
  const rss2 = median(q(1).map((s) => s.rssMiB));
  const rss4 = median(q(3).map((s) => s.rssMiB));
  const heap2 = median(q(1).map((s) => s.heapMiB).filter((x) => !Number.isNaN(x)));
  const heap4 = median(q(3).map((s) => s.heapMiB).filter((x) => !Number.isNaN(x)));
  const rssOk = rss2 !== null && rss4 !== null && rss4 <= rss2 + Math.max(0.1 * rss2, 16);
  const heapOk = heap2 === null || heap4 === null || heap4 <= heap2 * 1.2;
  const errors = segments.reduce((s, x) => s + x.errors, 0);

  const info = versions(T.NODE);
  const f = (x) => (x === null || Number.isNaN(x) ? '–' : x.toFixed(1));
  const L = ['# mtls-sidecar soak', ''];
  L.push(`Generated by \`node bench/soak.mjs\` on ${new Date().toISOString().replace(/\.\d+Z$/, 'Z')} (${info.nproc} × ${info.cpu}; Node ${info.node}; sidecar ${info.sidecarCommit}). ${T.LABELS[TARGET]} on core ${TARGET_CPU}, ${SECONDS} s of rotating load in ${SEGMENT} s segments (${MODES.map((m) => m.id).join(', ')}), RSS and JS heap sampled every ${SAMPLE} s.`, '');
  L.push('| | 2nd quarter (median) | last quarter (median) | idle after the load |', '|---|---:|---:|---:|');
  L.push(`| RSS MiB | ${f(rss2)} | ${f(rss4)} | ${f(idle.rssMiB)} |`);
  L.push(`| JS heap used MiB | ${f(heap2)} | ${f(heap4)} | ${f(idle.heapMiB)} |`);
  L.push('', `Requests: ${segments.reduce((s, x) => s + Math.round(x.rps * x.seconds), 0)} in ${segments.length} segments, ${errors} errors. Peak RSS ${f(Math.max(...samples.map((s) => s.rssMiB)))} MiB.`, '');
  L.push(`**${rssOk && heapOk ? 'PASS' : 'FAIL'}**: no growth = last-quarter RSS within max(10 %, 16 MiB) of the second quarter's (${rssOk ? 'yes' : 'no'}), heap within 20 % (${heapOk ? 'yes' : 'no'}).`, '');
  L.push('| segment | mode | req/s | p99 ms | errors |', '|---:|---|---:|---:|---:|');
  segments.forEach((s, i) => L.push(`| ${i + 1} | ${s.mode} | ${s.rps} | ${f(s.p99ms)} | ${s.errors} |`));
  L.push('');
  L.push('RSS by segment (sampled at each segment\'s end): growth that comes with one mode and not the others points at that path.', '');
  L.push('| segment | mode | RSS MiB at end | change MiB |', '|---:|---|---:|---:|');
  segments.forEach((s, i) => L.push(`| ${i + 1} | ${s.mode} | ${f(s.rssEnd)} | ${i === 0 ? '' : f(s.rssEnd - segments[i - 1].rssEnd)} |`));
  L.push('');
  fs.writeFileSync(OUT_MD ?? path.join(T.BENCH, 'SOAK.md'), L.join('\n'));
  fs.writeFileSync(path.join(T.OUT, `soak-${TARGET}-${MODES.map((m) => m.id).join('+')}.json`), JSON.stringify({ info, samples, segments, idle }, null, 2));
  log(L.slice(0, 10).join('\n'));
  log(`soak: wrote ${path.relative(T.ROOT, OUT_MD ?? path.join(T.BENCH, 'SOAK.md'))}`);
}

main().then(
  () => process.exit(0),
  async (err) => {
    console.error(`soak: ${err?.stack ?? err}`);
    await stopAll();
    process.exit(1);
  },
);
