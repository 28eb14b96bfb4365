// The outbound pair scenario of `make bench` (bench/README.md, "Outbound pair"): an app's plain
// HTTP call through a proxy A that carries it over mTLS to a proxy B in front of the app, the
// sidecar pair (A's outbound destination -> B's inbound) against an nginx pair doing the same.
// Measures throughput (keep-alive and a new app connection per request; A->B pooled in both),
// CPU per request of A and B at a fixed offered rate, and the latency the outbound hop adds at
// low load (through A, minus straight to B over TLS). Report: a RESULTS.md section.
import * as T from './targets.mjs';
import { stop } from './proc.mjs';
import { fmt, median } from './stats.mjs';

/** A pair's side under this CPU % was not saturated: its req/s ratio does not count. */
const SATURATED = 90;

export const PAIR_SCENARIOS = [
  { id: 'pair-ka', title: 'Keep-alive, 64 app connections', args: ['--mode', 'ka', '--conns', '64', '--plain'] },
  { id: 'pair-newconn', title: 'A new plain app connection per request, 16 clients (A→B pooled)', args: ['--mode', 'newconn', '--conns', '16', '--plain'] },
  { id: 'pair-rate', title: 'Fixed offered rate, keep-alive, 16 app connections', rate: 'rate', args: ['--mode', 'ka', '--conns', '16', '--plain'] },
  { id: 'pair-lat', title: 'Low load, 1 connection: through A, and straight to B over TLS', rate: 'lat', args: ['--mode', 'ka', '--conns', '1'] },
];

export function pairSettings(env) {
  const num = (v, d) => (v === undefined || v === '' ? d : Number(v));
  return { rate: num(env.BENCH_PAIR_RATE, 1000), latRate: num(env.BENCH_PAIR_LAT_RATE, 200), warmSeconds: num(env.BENCH_PAIR_WARM, 3) };
}

/**
 * Start both pairs, probe them, and measure: for each run, each pair scenario, each pair in turn.
 * `measure(target, args, watch, seconds?)` runs the load generator (run.mjs's, with its quiet
 * wait; `seconds` given: a warm-up pass, no warm-up of its own).
 * Returns { results, probes }.
 */
export async function runPairs({ ctx, runs, pairs, settings, measure, log, afterEach }) {
  const started = {};
  const probes = {};
  for (const kind of pairs) {
    started[kind] = await T.startPair(kind, ctx);
    const p = await T.probePair(ctx.pki, started[kind]);
    probes[kind] = p;
    if (p.problems.length > 0) throw new Error(`${kind} pair does not do the job: ${p.problems.join('; ')} (logs: ${started[kind].a.log}, ${started[kind].b.log})`);
    log(`bench: ${kind} pair ready: A on 127.0.0.1:${started[kind].a.port} (plain, core ${ctx.targetCpu}), B on 127.0.0.1:${started[kind].b.port} (mTLS, core ${ctx.pairBCpu}); B without a client cert: ${p.anonymous}`);
  }
  // The pairs start cold, unlike the per-target scenarios' targets (which the earlier scenarios
  // warm): one unmeasured keep-alive pass each, so that JIT warm-up is not in the first numbers.
  for (const kind of pairs) {
    if (!(settings.warmSeconds > 0)) break;
    const { a, b } = started[kind];
    const res = await measure(a, PAIR_SCENARIOS[0].args, { a: a.pids, b: b.pids }, settings.warmSeconds);
    await afterEach([a, b]);
    log(`bench: ${kind} pair warmed: ${res.rps} req/s for ${settings.warmSeconds} s (not counted)`);
  }
  const results = [];
  for (let r = 1; r <= runs; r++) {
    for (const sc of PAIR_SCENARIOS) {
      for (const kind of pairs) {
        const { a, b } = started[kind];
        const watch = { a: a.pids, b: b.pids };
        const legs =
          sc.rate === 'lat'
            ? [
                { via: 'a', target: a, args: [...sc.args, '--plain', '--rate', String(settings.latRate)] },
                { via: 'b', target: b, args: [...sc.args, '--rate', String(settings.latRate)] },
              ]
            : [{ via: 'a', target: a, args: sc.rate === 'rate' ? [...sc.args, '--rate', String(settings.rate)] : sc.args }];
        for (const leg of legs) {
          const res = await measure(leg.target, leg.args, watch);
          Object.assign(res, { run: r, scenario: sc.id, pair: kind, via: leg.via });
          const cpuAB = (res.cpu.a ?? 0) + (res.cpu.b ?? 0);
          res.eff = cpuAB > 0 ? res.rps / (cpuAB / 100) : null;
          res.usPerReq = res.rps > 0 ? { a: (res.cpu.a * 1e4) / res.rps, b: (res.cpu.b * 1e4) / res.rps, pair: (cpuAB * 1e4) / res.rps } : null;
          results.push(res);
          await afterEach([a, b]);
          log(
            `run ${r}/${runs} ${sc.id.padEnd(12)} ${`${kind} pair${leg.via === 'b' ? ' (B only)' : ''}`.padEnd(20)} ${String(res.rps).padStart(6)} req/s  p50 ${fmt(res.p50ms, 3)} ms  p99 ${fmt(res.p99ms, 3)} ms  ` +
              `A ${fmt(res.cpu.a, 0)}%  B ${fmt(res.cpu.b, 0)}%  load ${fmt((res.cpu.loadgen ?? 0) + (res.cpu.upstream ?? 0), 0)}%  ` +
              `${res.usPerReq ? `${fmt(res.usPerReq.pair, 0)} µs CPU/req  ` : ''}errors ${res.errors}`,
          );
          for (const p of [a, b]) if (p.exitCode !== null) throw new Error(`${p.target} exited during the run (${p.exitCode}); log: ${p.log}`);
        }
      }
    }
  }
  for (const kind of pairs) {
    await stop(started[kind].a);
    await stop(started[kind].b);
  }
  return { results, probes };
}

// ---- report --------------------------------------------------------------------------------------


/**
 * The "## Outbound pair" section of RESULTS.md, and console lines. `foreign(res)` says how much
 * of the bench cores other work took ({ noisy }).
 */
export function pairReport({ results, probes, pairs, settings, cpus, runs, seconds, warmup, foreign }) {
  const rows = (sc, kind, via = 'a') => results.filter((r) => r.scenario === sc && r.pair === kind && r.via === via);
  const med = (sc, kind, f, via = 'a') => median(rows(sc, kind, via).map(f));
  // Ratio sidecar pair / nginx pair within each run, then the median (as run.mjs does).
  const ratio = (sc, f) => {
    const all = rows(sc, 'sidecar')
      .map((s) => {
        const n = results.find((x) => x.scenario === sc && x.pair === 'nginx' && x.via === 'a' && x.run === s.run);
        const a = f(s);
        const b = n ? f(n) : null;
        return a > 0 && b > 0 ? a / b : null;
      })
      .filter((x) => x !== null);
    return { median: median(all), all };
  };
  const noisyIn = (sc) => results.some((r) => r.scenario === sc && foreign(r).noisy);
  const shared = cpus.b === cpus.load;
  // A and B on one core: the pair's core is its CPU budget, at full CPU when A + B is.
  const oneCore = cpus.a === cpus.b;
  const full = (k, sc = 'pair-ka') => {
    const a = med(sc, k, (x) => x.cpu.a) ?? 0;
    const b = med(sc, k, (x) => x.cpu.b) ?? 0;
    return oneCore ? a + b >= SATURATED : a >= SATURATED && b >= SATURATED;
  };
  const L = [];
  const S = [];
  L.push('## Outbound pair', '');
  L.push(
    `An app's call through a proxy A (plain HTTP/1.1 on loopback in, mTLS out on a keep-alive pool) to a proxy B (the bench's inbound job: client certificate required, identity, audit) in front of the app: the **mtls-sidecar pair** (A: an \`outbound.destinations[]\` listener, presenting workload certificate pair-a and checking B's SPIFFE ID; B: bench/sidecar.yaml with workload certificate pair-b) against the **nginx pair** (A: bench/nginx-pair-a.conf, \`proxy_pass https://\` with \`proxy_ssl_certificate\`, \`proxy_ssl_verify on\`, \`proxy_ssl_name\`, \`keepalive 64\`; B: bench/nginx.conf with pair-b). Both workload certificates carry serverAuth and clientAuth and a SPIFFE URI, from the bench CA. The A→B hop is HTTP/1.1 and pooled in both pairs, also when the app opens a new connection per request.`,
    '',
  );
  L.push(
    `Pinning: A on core ${cpus.a}, B on core ${cpus.b}, load generator and upstream on core ${cpus.load}` +
      (oneCore
        ? ` — A and B share one core, so each pair runs at full CPU on it (A + B CPU % near 100) as a single target does on its own core, and the load core is left to the load generator and the app; a req/s ratio then counts when both pairs' A + B reach ${SATURATED} % (the bench's rule: a ratio counts only at full CPU).`
        : shared
          ? ` — one core each for A and B, which on this ${cpus.nproc}-core machine puts B on the load core: B, the generator and the upstream share it, so neither pair can have both A and B at full CPU, and a req/s ratio alone does not count (the bench's rule: a ratio counts only with both targets at full CPU).`
          : '.') +
      ` Where a pair was under ${SATURATED} % CPU the verdict uses req/s per CPU-second of A + B in \`pair-ka\`, as the per-target scenarios do when nginx was not at full CPU; CPU per request at a fixed offered rate (${settings.rate} req/s, \`pair-rate\`, where both pairs do the same work) is shown beside it.` +
      ` ${runs} run(s), ${seconds} s after ${warmup} s warm-up; medians over runs, ratios within a run.`,
    '',
  );
  L.push('| scenario | pair | req/s | p50 ms | p99 ms | A CPU % | B CPU % | load core % | A+B µs CPU / req | req/s per CPU-s (A+B) | ratio to nginx pair | ratio per CPU-s | errors | noisy |', '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|');
  for (const sc of PAIR_SCENARIOS.filter((s) => s.rate !== 'lat')) {
    for (const kind of pairs) {
      const rs = rows(sc.id, kind);
      if (rs.length === 0) continue;
      const isNginx = kind === 'nginx';
      const noisy = rs.filter((r) => foreign(r).noisy).length;
      L.push(
        `| ${sc.id}${sc.rate === 'rate' ? ` (${settings.rate} req/s offered)` : ''} | ${T.PAIR_LABELS[kind]} | ${Math.round(med(sc.id, kind, (r) => r.rps))} | ${fmt(med(sc.id, kind, (r) => r.p50ms))} | ${fmt(med(sc.id, kind, (r) => r.p99ms))} | ` +
          `${fmt(med(sc.id, kind, (r) => r.cpu.a), 0)} | ${fmt(med(sc.id, kind, (r) => r.cpu.b), 0)} | ${fmt(med(sc.id, kind, (r) => (r.cpu.loadgen ?? 0) + (r.cpu.upstream ?? 0)), 0)} | ` +
          `${fmt(med(sc.id, kind, (r) => r.usPerReq?.pair), 0)} | ${Math.round(med(sc.id, kind, (r) => r.eff) ?? 0)} | ` +
          `${isNginx ? '1.00' : fmt(ratio(sc.id, (r) => r.rps).median)} | ${isNginx ? '1.00' : fmt(ratio(sc.id, (r) => r.eff).median)} | ${rs.reduce((s, r) => s + r.errors, 0)} | ${noisy ? `⚠ ${noisy}/${rs.length}` : ''} |`,
      );
    }
  }
  L.push('');
  L.push(`At the fixed rate, CPU per request of each side (µs of CPU time per request; lower is better):`, '');
  L.push('| pair | offered / achieved req/s | A µs / req | B µs / req | A+B µs / req | nginx pair / this pair |', '|---|---:|---:|---:|---:|---:|');
  for (const kind of pairs) {
    const rs = rows('pair-rate', kind);
    if (rs.length === 0) continue;
    const eff = kind === 'nginx' ? '1.00' : fmt(median(ratio('pair-rate', (r) => (r.usPerReq ? 1 / r.usPerReq.pair : null)).all));
    L.push(`| ${T.PAIR_LABELS[kind]} | ${settings.rate} / ${Math.round(med('pair-rate', kind, (r) => r.rps))} | ${fmt(med('pair-rate', kind, (r) => r.usPerReq?.a), 0)} | ${fmt(med('pair-rate', kind, (r) => r.usPerReq?.b), 0)} | ${fmt(med('pair-rate', kind, (r) => r.usPerReq?.pair), 0)} | ${eff} |`);
  }
  L.push('');
  L.push(`The outbound hop's added latency at low load (\`pair-lat\`: one keep-alive connection at ${settings.latRate} req/s): p50 of app→A→B→app minus p50 of the load generator speaking mTLS to B directly, measured back to back in each run:`, '');
  L.push('| pair | p50 via A ms | p50 straight to B ms | added p50 ms | p99 via A ms | p99 straight to B ms |', '|---|---:|---:|---:|---:|---:|');
  const added = {};
  for (const kind of pairs) {
    const viaA = rows('pair-lat', kind, 'a');
    if (viaA.length === 0) continue;
    const d = viaA
      .map((x) => {
        const y = results.find((z) => z.scenario === 'pair-lat' && z.pair === kind && z.via === 'b' && z.run === x.run);
        return y ? x.p50ms - y.p50ms : null;
      })
      .filter((x) => x !== null);
    added[kind] = { median: median(d), all: d };
    L.push(`| ${T.PAIR_LABELS[kind]} | ${fmt(med('pair-lat', kind, (r) => r.p50ms, 'a'), 3)} | ${fmt(med('pair-lat', kind, (r) => r.p50ms, 'b'), 3)} | ${fmt(added[kind].median, 3)} | ${fmt(med('pair-lat', kind, (r) => r.p99ms, 'a'), 3)} | ${fmt(med('pair-lat', kind, (r) => r.p99ms, 'b'), 3)} |`);
  }
  L.push('');

  // goals
  const checks = [];
  if (pairs.includes('sidecar') && pairs.includes('nginx')) {
    const r = ratio('pair-ka', (x) => x.rps);
    const e = ratio('pair-ka', (x) => x.eff);
    const fixed = ratio('pair-rate', (x) => (x.usPerReq ? 1 / x.usPerReq.pair : null));
    const atFull = ['sidecar', 'nginx'].every((k) => full(k));
    const basis = atFull ? r.median : e.median;
    if (basis !== null) {
      const cpuText = ['sidecar', 'nginx'].map((k) => `${k} A ${fmt(med('pair-ka', k, (x) => x.cpu.a), 0)} % / B ${fmt(med('pair-ka', k, (x) => x.cpu.b), 0)} %`).join(', ');
      checks.push([
        'keep-alive: sidecar pair ≥ 0.5× nginx pair',
        `${fmt(r.median)}× req/s (runs: ${r.all.map((x) => fmt(x)).join(', ')}; ${cpuText}); ${fmt(e.median)}× per CPU-s; ${fmt(fixed.median)}× CPU per request at ${settings.rate} req/s` +
          (atFull ? '' : oneCore ? ' — not both pairs at full CPU on their core: verdict on per CPU-s' : ' — not every side at full CPU: verdict on per CPU-s'),
        basis >= 0.5,
        noisyIn('pair-ka') || noisyIn('pair-rate'),
      ]);
    }
  }
  if (added.sidecar?.median !== null && added.sidecar !== undefined) {
    checks.push([
      `outbound hop adds < 1 ms at p50 (${settings.latRate} req/s, 1 connection)`,
      `${fmt(added.sidecar.median, 3)} ms (runs: ${added.sidecar.all.map((x) => fmt(x, 3)).join(', ')})${added.nginx ? `; nginx pair ${fmt(added.nginx.median, 3)} ms` : ''}`,
      added.sidecar.median < 1,
      noisyIn('pair-lat'),
    ]);
  }
  L.push('| goal | measured | verdict |', '|---|---|---|');
  const short = pairs.filter((k) => (med('pair-rate', k, (r) => r.rps) ?? 0) < 0.95 * settings.rate);
  if (short.length > 0 && checks.length > 0 && checks[0][0].startsWith('keep-alive')) {
    checks[0][1] += ` (the ${short.join(' and ')} pair reached under 95 % of the offered ${settings.rate} req/s: that CPU-per-request figure is then not at one rate; lower BENCH_PAIR_RATE)`;
  }
  for (const [what, measured, ok, noisy] of checks) L.push(`| ${what} | ${measured} | ${ok ? '**PASS**' : '**FAIL**'}${noisy ? ' ⚠' : ''} |`);
  L.push('');
  L.push(`B of each pair refused a client without a certificate: ${pairs.map((k) => `${k}: ${probes[k]?.anonymous ?? 'not recorded'}`).join('; ')}. The sidecar pair's audit: A writes one outbound line and B one inbound line per request; nginx writes no access log (BENCH_PEER_LOGS=1 turns them on).`, '', '');
  for (const sc of PAIR_SCENARIOS) S.push(`${sc.id}: ` + pairs.map((k) => `${k} pair ${Math.round(med(sc.id, k, (r) => r.rps) ?? 0)} req/s p50 ${fmt(med(sc.id, k, (r) => r.p50ms), 3)} ms`).join(', '));
  for (const [what, measured, ok, noisy] of checks) S.push(`${ok ? 'PASS' : 'FAIL'}${noisy ? ' (noisy)' : ''}  ${what}: ${measured}`);
  return { md: L.join('\n'), summary: S.join('\n') };
}

/** Put `section` (starting "## Outbound pair") into RESULTS.md text: in place of an older one, else before "## Chart", else at the end. */
export function spliceSection(md, section) {
  const head = '## Outbound pair';
  const start = md.indexOf(`\n${head}\n`);
  if (start >= 0) {
    const next = md.indexOf('\n## ', start + head.length + 2);
    return md.slice(0, start + 1) + section + (next >= 0 ? md.slice(next + 1) : '');
  }
  const chart = md.indexOf('\n## Chart\n');
  if (chart >= 0) return md.slice(0, chart + 1) + section + md.slice(chart + 1);
  return `${md.replace(/\n*$/, '\n\n')}${section}`;
}
