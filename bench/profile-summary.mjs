// Summarize a V8 .cpuprofile (from `node --cpu-prof`): top functions by self time, and self time
// by area (sidecar code, undici, pino, prom-client, Node internals, GC, idle).
//   node bench/profile-summary.mjs FILE.cpuprofile [TOP [START_US END_US]]
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * `window` = [startUs, endUs] on CLOCK_MONOTONIC (what V8 stamps samples with, and what the
 * load generator reports as windowMonoUs): only samples inside it count. Percentages are of
 * the non-idle time; idle is reported apart.
 */
export function summarize(file, top = 25, window = null) {
  const prof = JSON.parse(fs.readFileSync(file, 'utf8'));
  const byId = new Map(prof.nodes.map((n) => [n.id, n]));
  const parent = new Map();
  for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  // The nearest frame on the stack that is sidecar or dependency code (not Node internals or
  // native): who to blame for a writev or a nextTick.
  const ownerCache = new Map();
  const ownerOf = (id) => {
    if (ownerCache.has(id)) return ownerCache.get(id);
    let cur = id;
    let found = null;
    while (cur !== undefined) {
      const n = byId.get(cur);
      const url = n?.callFrame.url ?? '';
      if (url.includes('/dist/') || url.includes('node_modules/') || url.includes('/bench/')) {
        found = `${n.callFrame.functionName || '(anonymous)'}\t${shortUrl(url)}:${n.callFrame.lineNumber + 1}`;
        break;
      }
      cur = parent.get(cur);
    }
    ownerCache.set(id, found);
    return found;
  };
  const selfUs = new Map();
  const { samples, timeDeltas } = prof;
  let t = prof.startTime;
  let kept = 0;
  for (let i = 0; i < samples.length; i++) {
    t += timeDeltas[i] ?? 0;
    if (window !== null && (t < window[0] || t > window[1])) continue;
    // timeDeltas[i] is the time since the previous sample: charge it to the previous sample's node
    const id = samples[i > 0 ? i - 1 : 0];
    selfUs.set(id, (selfUs.get(id) ?? 0) + (timeDeltas[i] ?? 0));
    kept++;
  }
  let total = 0;
  let idle = 0;
  const fns = new Map();
  const areas = new Map();
  const owners = new Map();
  for (const [id, us] of selfUs) {
    const n = byId.get(id);
    if (n === undefined) continue;
    if (n.callFrame.functionName === '(idle)') {
      idle += us;
      continue;
    }
    total += us;
    const cf = n.callFrame;
    const name = cf.functionName || '(anonymous)';
    const where = cf.url ? `${shortUrl(cf.url)}:${cf.lineNumber + 1}` : '';
    const key = `${name}\t${where}`;
    fns.set(key, (fns.get(key) ?? 0) + us);
    const area = areaOf(cf.url, name);
    areas.set(area, (areas.get(area) ?? 0) + us);
    const owner = ownerOf(id) ?? `${name}\t(no sidecar or dependency frame on the stack)`;
    owners.set(owner, (owners.get(owner) ?? 0) + us);
  }
  const rows = [...fns].sort((x, y) => y[1] - x[1]).slice(0, top).map(([k, us]) => {
    const [fn, where] = k.split('\t');
    return { fn, where, ms: us / 1000, pct: (100 * us) / total };
  });
  const areaRows = [...areas].sort((x, y) => y[1] - x[1]).map(([area, us]) => ({ area, ms: us / 1000, pct: (100 * us) / total }));
  const ownerRows = [...owners].sort((x, y) => y[1] - x[1]).slice(0, top).map(([k, us]) => {
    const [fn, where] = k.split('\t');
    return { fn, where, ms: us / 1000, pct: (100 * us) / total };
  });
  return { totalMs: total / 1000, idleMs: idle / 1000, samples: kept, windowed: window !== null, rows, areas: areaRows, owners: ownerRows };
}

function shortUrl(url) {
  const u = url.replace(/^file:\/\//, '');
  const nm = u.lastIndexOf('node_modules/');
  if (nm >= 0) return u.slice(nm + 'node_modules/'.length);
  const d = u.indexOf('/dist/');
  if (d >= 0) return u.slice(d + 1);
  return u;
}

function areaOf(url, name) {
  if (name === '(garbage collector)') return 'GC';
  if (name === '(program)') return '(program: native, not attributed)';
  if (!url) return 'native / builtins';
  if (url.includes('node_modules/undici')) return 'undici';
  if (url.includes('node_modules/pino') || url.includes('node_modules/sonic-boom') || url.includes('fast-redact') || url.includes('quick-format')) return 'pino / sonic-boom';
  if (url.includes('node_modules/prom-client')) return 'prom-client';
  if (url.includes('node_modules/')) return 'other dependencies';
  if (url.includes('/dist/')) return `sidecar: ${url.slice(url.indexOf('/dist/') + 6).split('/')[0]}`;
  if (url.startsWith('node:')) return 'Node internals (JS)';
  return 'other';
}

export function toMarkdown(s, title) {
  const lines = [];
  const idlePct = (100 * s.idleMs) / (s.totalMs + s.idleMs || 1);
  lines.push(`${title}: ${(s.totalMs / 1000).toFixed(2)} s busy, ${idlePct.toFixed(0)} % idle${s.windowed ? ', measured window only' : ''}; percentages of busy time.`, '');
  lines.push('| self % | self ms | function | where |', '|---:|---:|---|---|');
  for (const r of s.rows) lines.push(`| ${r.pct.toFixed(1)} | ${r.ms.toFixed(0)} | \`${r.fn}\` | ${r.where ? `\`${r.where}\`` : ''} |`);
  lines.push('', '| area | self % |', '|---|---:|');
  for (const r of s.areas) lines.push(`| ${r.area} | ${r.pct.toFixed(1)} |`);
  if (s.owners) {
    lines.push('', 'The same self time charged to the nearest sidecar or dependency frame on the stack (so native work such as `writev` or Node-internal stream code lands on the code that caused it):', '');
    lines.push('| % | ms | nearest sidecar / dependency frame | where |', '|---:|---:|---|---|');
    for (const r of s.owners.slice(0, 20)) lines.push(`| ${r.pct.toFixed(1)} | ${r.ms.toFixed(0)} | \`${r.fn}\` | ${r.where ? `\`${r.where}\`` : ''} |`);
  }
  return lines.join('\n');
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const file = process.argv[2];
  if (!file) {
    console.error('usage: profile-summary.mjs FILE.cpuprofile [TOP]');
    process.exit(2);
  }
  // optional: START_US END_US (CLOCK_MONOTONIC µs, as loadgen's windowMonoUs)
  const win = process.argv[5] ? [Number(process.argv[4]), Number(process.argv[5])] : null;
  console.log(toMarkdown(summarize(file, Number(process.argv[3] ?? 25), win), path.basename(file)));
}
