// Micro-benchmark of the per-request metrics path (Metrics.request) and the per-connection
// counters, in ns per call. Runs against the build, so `npm run build` first:
//
//   node bench/micro-metrics.mjs [path/to/metrics.js]    # default dist/admin/metrics.js
//
// The inputs are a realistic, bounded mix (3 identities x 4 routes, a few methods incl. one that
// maps to OTHER, a few codes, allow/deny, upstream time absent on denials), precomputed so the
// loop measures the metrics code rather than input generation.
import { createHash } from 'node:crypto';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { Registry } from 'prom-client';

const modPath = path.resolve(process.argv[2] ?? new URL('../dist/admin/metrics.js', import.meta.url).pathname);
const { Metrics } = await import(pathToFileURL(modPath).href);

const N = 1_000_000;
const ROUNDS = 7;
const MASK = 1023;

const identities = ['orders-api', 'billing', 'unknown'];
const routes = ['api', 'admin', 'health', 'unknown'];
const methods = ['GET', 'GET', 'GET', 'POST', 'HEAD', 'PUT', 'PROPFIND'];
const codes = [200, 200, 200, 201, 404, 403, 503];

// Deterministic pseudo-random inputs (xorshift), so runs are comparable.
let seed = 0x9e3779b9;
function rnd() {
  seed ^= seed << 13;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  return (seed >>> 0) / 0x100000000;
}
const pick = (a) => a[Math.floor(rnd() * a.length)];

const inId = [], inRoute = [], inMethod = [], inCode = [], inDecision = [], inSec = [], inUp = [];
for (let i = 0; i <= MASK; i++) {
  const code = pick(codes);
  const deny = code === 403 || (code === 503 && rnd() < 0.5);
  inId.push(pick(identities));
  inRoute.push(pick(routes));
  inMethod.push(pick(methods));
  inCode.push(code);
  inDecision.push(deny ? 'deny' : 'allow');
  const up = Math.exp(-9 + rnd() * 7); // ~0.1 ms .. ~100 ms
  inSec.push(up * 1.1 + 0.00005);
  inUp.push(deny ? null : up);
}

const metrics = new Metrics(() => 0, new Registry());

function runRequests(n) {
  for (let i = 0; i < n; i++) {
    const k = i & MASK;
    metrics.request(inId[k], inRoute[k], inMethod[k], inCode[k], inDecision[k], inSec[k], inUp[k]);
  }
}

const reasons = ['ok', 'untrusted', 'expired', 'no_cert'];
function runOthers(n) {
  for (let i = 0; i < n; i++) {
    const k = i & MASK;
    metrics.handshake(k & 1 ? 'accepted' : 'rejected', k & 1 ? 'ok' : reasons[k & 3]);
    metrics.rateLimited(inId[k]);
    metrics.rateLimitBackendError(k & 2 ? 'allow' : 'deny');
  }
}

function time(fn, n, callsPerIter) {
  fn(n / 5); // warm-up, lets the JIT settle before timing
  const samples = [];
  for (let r = 0; r < ROUNDS; r++) {
    const t0 = process.hrtime.bigint();
    fn(n);
    samples.push(Number(process.hrtime.bigint() - t0) / (n * callsPerIter));
  }
  samples.sort((a, b) => a - b);
  return { median: samples[ROUNDS >> 1], min: samples[0] };
}

const req = time(runRequests, N, 1);
const oth = time(runOthers, N, 3);
const text = await metrics.registry.metrics();

const f = (x) => x.toFixed(1);
console.log(`module: ${path.relative(process.cwd(), modPath)}  (node ${process.version})`);
console.log(`request():                                   ${f(req.median)} ns/call median, ${f(req.min)} min (${ROUNDS} x ${N} calls)`);
console.log(`handshake()/rateLimited()/rateLimitBackendError(): ${f(oth.median)} ns/call median, ${f(oth.min)} min`);
// Same calls, same exposition: the digest must match between implementations.
const ours = text.split('\n').filter((l) => /^(# (HELP|TYPE) )?mtls_sidecar_/.test(l));
const digest = createHash('sha256').update(ours.join('\n')).digest('hex').slice(0, 16);
console.log(`exposition: ${ours.length} mtls_sidecar_ lines, sha256 ${digest}`);
