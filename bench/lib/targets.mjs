// The processes under test and the upstream: config rendering (templates in bench/), start-up
// pinned to a core, readiness, and a correctness probe of each (mTLS GET and 4 KiB POST answered
// by the upstream over HTTP/1.1 and HTTP/2; a client without a certificate refused).
import fs from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import https from 'node:https';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { start, stop, treePids, waitFor, portFree } from './proc.mjs';
import { PAIR_URI } from './pki.mjs';

export const BENCH = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
export const ROOT = path.dirname(BENCH);
export const OUT = path.join(BENCH, 'out');
export const NODE = path.join(ROOT, 'node_modules', '.bin', 'node');
export const UPSTREAM_BODY = '{"ok":true}\n';

// Away from the sidecar's own defaults (8443/9901, and the 18443/19901 that tests and demos
// tend to use); BENCH_PORT_BASE moves the whole set.
const BASE = Number(process.env.BENCH_PORT_BASE ?? 28400);
export const PORTS = {
  upstream: BASE + 80,
  sidecar: BASE + 43,
  sidecarAdmin: BASE + 91,
  'sidecar-noaudit': BASE + 44,
  sidecarNoauditAdmin: BASE + 92,
  nginx: BASE + 45,
  haproxy: BASE + 46,
  bare: BASE + 47,
  ceiling: BASE + 48,
  node: BASE + 49,
  // The outbound pair (bench/README.md): A's plain listener, A's unused inbound side, B.
  pairSidecarA: BASE + 51,
  pairSidecarAInbound: BASE + 50,
  pairSidecarB: BASE + 52,
  pairNginxA: BASE + 53,
  pairNginxB: BASE + 54,
  pairSidecarAAdmin: BASE + 93,
  pairSidecarBAdmin: BASE + 94,
};

export const LABELS = {
  sidecar: 'mtls-sidecar',
  'sidecar-noaudit': 'mtls-sidecar, audit + metrics off',
  nginx: 'nginx',
  haproxy: 'HAProxy',
  bare: 'bare undici proxy (Node)',
  ceiling: 'ceiling: nginx `return 200`, no proxying',
  node: "Node's own server answering by itself",
};

function render(template, vars, outName) {
  let text = fs.readFileSync(path.join(BENCH, template), 'utf8');
  for (const [k, v] of Object.entries(vars)) text = text.replaceAll(`{{${k}}}`, String(v));
  const left = /\{\{[A-Z_]+\}\}/.exec(text);
  if (left) throw new Error(`${template}: unfilled ${left[0]}`);
  const file = path.join(OUT, outName);
  fs.writeFileSync(file, text);
  return file;
}

const NGINX_PROXY = [
  '      proxy_pass http://app;',
  '      proxy_http_version 1.1;',
  '      proxy_set_header Connection "";',
  '      proxy_set_header Host $host;',
  '      proxy_set_header X-Forwarded-Client-Cert "Hash=$ssl_client_fingerprint;Subject=\\"$ssl_client_s_dn\\"";',
].join('\n');
const NGINX_RETURN = `      return 200 '${UPSTREAM_BODY.replace('\n', '\\n')}';`;

function nginxArgs(conf, name) {
  return ['-p', OUT, '-e', path.join(OUT, `nginx-${name}.error.log`), '-c', conf, '-g', 'daemon off;'];
}

/** Options shared by every start: pki paths, cores, env knobs. */
export function makeContext({ pki, targetCpu, loadCpu, peerLogs = false, upstreamKind = 'nginx' }) {
  fs.mkdirSync(path.join(OUT, 'nginx-tmp'), { recursive: true });
  return { pki, targetCpu, loadCpu, peerLogs, upstreamKind };
}

export async function checkPorts(names) {
  const busy = [];
  for (const n of names) if (!(await portFree(PORTS[n]))) busy.push(`${n}:${PORTS[n]}`);
  if (busy.length > 0) throw new Error(`ports already in use on 127.0.0.1: ${busy.join(', ')} (another bench still running?)`);
}

/** The nginx upstream's config, written to OUT. */
export function upstreamConfig() {
  return render('nginx-upstream.conf', { OUT, UPSTREAM_PORT: PORTS.upstream }, 'nginx-upstream.conf');
}

export async function startUpstream(ctx) {
  let proc;
  if (ctx.upstreamKind === 'node') {
    proc = start('upstream', NODE, [path.join(BENCH, 'upstream.mjs'), String(PORTS.upstream)], {
      cpu: ctx.loadCpu,
      log: path.join(OUT, 'upstream.log'),
    });
  } else {
    const conf = upstreamConfig();
    proc = start('upstream', 'nginx', nginxArgs(conf, 'upstream'), { cpu: ctx.loadCpu, log: path.join(OUT, 'upstream.log') });
  }
  await waitFor('upstream', () => httpGet(PORTS.upstream), { proc });
  proc.pids = treePids(proc.pid);
  proc.kind = ctx.upstreamKind;
  return proc;
}

/**
 * The config file of a target that has one (the sidecars, nginx, the ceiling, HAProxy), written
 * to OUT: { conf, audit, admin } (audit and admin for a sidecar), or null for the Node targets.
 */
export function targetConfig(name, ctx, { auditOffLine = null, tag = '' } = {}) {
  const port = PORTS[name];
  switch (name) {
    case 'sidecar':
    case 'sidecar-noaudit': {
      const off = name === 'sidecar-noaudit';
      const audit = off ? '/dev/null' : path.join(OUT, `audit${tag}.log`);
      const admin = off ? PORTS.sidecarNoauditAdmin : PORTS.sidecarAdmin;
      const conf = render(
        'sidecar.yaml',
        { PORT: port, PKI: ctx.pki.dir, UPSTREAM_PORT: PORTS.upstream, AUDIT: audit, ADMIN_PORT: admin },
        `${name}${tag}.yaml`,
      );
      if (off && auditOffLine !== null) {
        const text = fs.readFileSync(conf, 'utf8').replace(/^audit: .*$/m, auditOffLine);
        fs.writeFileSync(conf, text);
      }
      return { conf, audit: off ? null : audit, admin };
    }
    case 'nginx':
    case 'ceiling': {
      const conf = render(
        'nginx.conf',
        {
          OUT,
          NAME: name,
          PORT: port,
          PKI: ctx.pki.dir,
          UPSTREAM_PORT: PORTS.upstream,
          ACCESS_LOG: ctx.peerLogs && name === 'nginx' ? `${OUT}/nginx-access.log combined buffer=64k flush=1s` : 'off',
          LOCATION: name === 'ceiling' ? NGINX_RETURN : NGINX_PROXY,
        },
        `nginx-${name}.conf`,
      );
      return { conf, audit: null, admin: null };
    }
    case 'haproxy': {
      const conf = render(
        'haproxy.cfg',
        {
          PORT: port,
          PKI: ctx.pki.dir,
          UPSTREAM_PORT: PORTS.upstream,
          GLOBAL_LOG: ctx.peerLogs ? '  log stdout format raw local0' : '',
          DEFAULTS_LOG: ctx.peerLogs ? '  log global\n  option httplog' : '',
        },
        'haproxy.cfg',
      );
      return { conf, audit: null, admin: null };
    }
    default:
      return null;
  }
}

/**
 * Start one target by name. Returns the proc with .pids (process tree), .port and, for the
 * sidecar, .audit (the audit file) and .admin (admin port).
 */
export async function startTarget(name, ctx, { nodeFlags = [], auditOffLine = null, tag = '' } = {}) {
  const port = PORTS[name];
  const logFile = path.join(OUT, `${name}${tag}.log`);
  let proc;
  const extra = {};
  switch (name) {
    case 'sidecar':
    case 'sidecar-noaudit': {
      const off = name === 'sidecar-noaudit';
      const { conf, audit, admin } = targetConfig(name, ctx, { auditOffLine, tag });
      if (audit !== null) fs.rmSync(audit, { force: true });
      // The "off" variant: audit lines and per-request metrics switched off by a bench-only
      // preload (bench/observability-off.mjs), unless BENCH_AUDIT_OFF_LINE replaces the audit line.
      const preload = off && auditOffLine === null ? ['--import', path.join(BENCH, 'observability-off.mjs')] : [];
      proc = start(name, NODE, [...nodeFlags, ...preload, path.join(ROOT, 'dist', 'main.js'), 'run', '--config', conf], {
        cpu: ctx.targetCpu,
        log: logFile,
        cwd: OUT,
      });
      extra.audit = audit;
      extra.admin = admin;
      extra.config = conf;
      break;
    }
    case 'nginx':
    case 'ceiling': {
      const { conf } = targetConfig(name, ctx);
      proc = start(name, 'nginx', nginxArgs(conf, name), { cpu: ctx.targetCpu, log: logFile });
      extra.config = conf;
      break;
    }
    case 'haproxy': {
      const { conf } = targetConfig(name, ctx);
      proc = start(name, 'haproxy', ['-db', '-f', conf], { cpu: ctx.targetCpu, log: logFile });
      extra.config = conf;
      break;
    }
    case 'bare':
    case 'node':
      proc = start(
        name,
        NODE,
        [...nodeFlags, path.join(BENCH, name === 'bare' ? 'bare-undici-proxy.mjs' : 'node-ceiling.mjs'), String(port), `http://127.0.0.1:${PORTS.upstream}`, ctx.pki.serverCert, ctx.pki.serverKey, ctx.pki.ca],
        { cpu: ctx.targetCpu, log: logFile, cwd: ROOT },
      );
      break;
    default:
      throw new Error(`unknown target ${name}`);
  }
  Object.assign(proc, extra, { port, target: name, log: logFile });
  await waitFor(`${name} (log: ${logFile})`, () => mtlsGet(ctx.pki, port).then((r) => r.status === 200), { proc, timeoutMs: 20_000 });
  proc.pids = treePids(proc.pid);
  return proc;
}

export { stop };

// ---- the outbound pair ---------------------------------------------------------------------------

export const PAIRS = ['sidecar', 'nginx'];
export const PAIR_LABELS = { sidecar: 'mtls-sidecar pair', nginx: 'nginx pair' };

/** Serve with the pair's workload certificate instead of the bench server certificate. */
function useWorkloadCert(file, pki, w) {
  const text = fs
    .readFileSync(file, 'utf8')
    .replaceAll(`${pki.dir}/server.crt`, pki[w].cert)
    .replaceAll(`${pki.dir}/server.key`, pki[w].key);
  fs.writeFileSync(file, text);
}

/**
 * The configs of one pair, written to OUT: { a, b } (file paths; for the sidecars also the audit
 * files). B is the bench's inbound config (sidecar.yaml / nginx.conf) with B's workload
 * certificate; sidecar A is the same inbound config (nobody calls it) with an `outbound`
 * destination to B, nginx A is bench/nginx-pair-a.conf.
 */
export function pairConfig(kind, ctx) {
  const { pki } = ctx;
  if (kind === 'sidecar') {
    const vars = (port, admin, audit) => ({ PORT: port, PKI: pki.dir, UPSTREAM_PORT: PORTS.upstream, AUDIT: audit, ADMIN_PORT: admin });
    const auditB = path.join(OUT, 'audit-pair-b.log');
    const b = render('sidecar.yaml', vars(PORTS.pairSidecarB, PORTS.pairSidecarBAdmin, auditB), 'sidecar-pair-b.yaml');
    useWorkloadCert(b, pki, 'pairB');
    const auditA = path.join(OUT, 'audit-pair-a.log');
    const a = render('sidecar.yaml', vars(PORTS.pairSidecarAInbound, PORTS.pairSidecarAAdmin, auditA), 'sidecar-pair-a.yaml');
    useWorkloadCert(a, pki, 'pairA');
    // outbound.cert/key/trust default to tls.cert/key/clientCAs: A's workload cert, the bench CA.
    // HTTP/1.1 keep-alive to B (http2 off), as nginx A's upstream pool.
    fs.appendFileSync(
      a,
      [
        'outbound:',
        '  destinations:',
        '    - name: pair-b',
        `      listen: { address: 127.0.0.1, port: ${PORTS.pairSidecarA} }`,
        `      target: "127.0.0.1:${PORTS.pairSidecarB}"`,
        '      serverName: localhost',
        `      expect: { uri: "${PAIR_URI.b}" }`,
        '      maxConnections: 64',
        '',
      ].join('\n'),
    );
    return { a, b, auditA, auditB };
  }
  const b = render(
    'nginx.conf',
    { OUT, NAME: 'pair-b', PORT: PORTS.pairNginxB, PKI: pki.dir, UPSTREAM_PORT: PORTS.upstream, ACCESS_LOG: ctx.peerLogs ? `${OUT}/nginx-pair-b-access.log combined buffer=64k flush=1s` : 'off', LOCATION: NGINX_PROXY },
    'nginx-pair-b.conf',
  );
  useWorkloadCert(b, pki, 'pairB');
  const a = render(
    'nginx-pair-a.conf',
    { OUT, NAME: 'pair-a', PORT: PORTS.pairNginxA, B_PORT: PORTS.pairNginxB, PKI: pki.dir, CERT: pki.pairA.cert, KEY: pki.pairA.key, ACCESS_LOG: ctx.peerLogs ? `${OUT}/nginx-pair-a-access.log combined buffer=64k flush=1s` : 'off' },
    'nginx-pair-a.conf',
  );
  return { a, b, auditA: null, auditB: null };
}

export function pairPorts(kind) {
  return kind === 'sidecar' ? { a: PORTS.pairSidecarA, b: PORTS.pairSidecarB } : { a: PORTS.pairNginxA, b: PORTS.pairNginxB };
}

/**
 * Start one pair: B pinned to `ctx.pairBCpu`, A to `ctx.targetCpu`. Returns { kind, a, b } with
 * a.port the plain listener the app calls and b.port B's mTLS port; a.audit/b.audit for the
 * sidecars.
 */
export async function startPair(kind, ctx) {
  const conf = pairConfig(kind, ctx);
  const ports = pairPorts(kind);
  const one = (side, file, cpu) => {
    const name = `pair-${kind}-${side}`;
    const logFile = path.join(OUT, `${name}.log`);
    const p =
      kind === 'sidecar'
        ? start(name, NODE, [path.join(ROOT, 'dist', 'main.js'), 'run', '--config', file], { cpu, log: logFile, cwd: OUT })
        : start(name, 'nginx', nginxArgs(file, `pair-${side}`), { cpu, log: logFile });
    return Object.assign(p, { log: logFile, config: file, port: ports[side], target: name });
  };
  for (const f of [conf.auditA, conf.auditB]) if (f) fs.rmSync(f, { force: true });
  const b = one('b', conf.b, ctx.pairBCpu);
  b.audit = conf.auditB;
  await waitFor(`${b.target} (log: ${b.log})`, () => mtlsGet(ctx.pki, b.port).then((r) => r.status === 200), { proc: b, timeoutMs: 20_000 });
  b.pids = treePids(b.pid);
  const a = one('a', conf.a, ctx.targetCpu);
  a.audit = conf.auditA;
  await waitFor(`${a.target} (log: ${a.log})`, () => plainGet(a.port).then((r) => r.status === 200), { proc: a, timeoutMs: 20_000 });
  a.pids = treePids(a.pid);
  return { kind, a, b };
}

/** One plain HTTP/1.1 request (the app calling A's listener). */
export function plainGet(port, { method = 'GET', body = null, path: p = '/bench/probe' } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, path: p, method, agent: false, timeout: 3000, headers: body ? { 'content-type': 'application/octet-stream', 'content-length': body.length } : {} },
      (res) => collect(res, resolve),
    );
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.end(body ?? undefined);
  });
}

/**
 * Checks that a pair does the job: GET and a 4 KiB POST through A reach the app, B does the job
 * of any target (probe()), and B refuses a client without a certificate.
 */
export async function probePair(pki, pair) {
  const problems = [];
  const get = await plainGet(pair.a.port).catch((e) => ({ status: 0, body: e.message }));
  if (get.status !== 200 || get.body !== UPSTREAM_BODY) problems.push(`GET through A: ${get.status} ${JSON.stringify(get.body).slice(0, 80)}`);
  const post = await plainGet(pair.a.port, { method: 'POST', body: Buffer.alloc(4096, 'x') }).catch((e) => ({ status: 0, body: e.message }));
  if (post.status !== 200 || post.body !== UPSTREAM_BODY) problems.push(`POST 4KiB through A: ${post.status} ${JSON.stringify(post.body).slice(0, 80)}`);
  const b = await probe(pki, pair.b.port);
  problems.push(...b.problems.map((x) => `B: ${x}`));
  return { problems, anonymous: b.anonymous };
}

// ---- probes -------------------------------------------------------------------------------------

function httpGet(port) {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/', agent: false, timeout: 2000 }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode === 200));
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('timeout')));
  });
}

/** A response's status, text body and headers, once it has ended. */
function collect(res, resolve) {
  let data = '';
  res.setEncoding('utf8').on('data', (d) => (data += d));
  res.on('end', () => resolve({ status: res.statusCode, body: data, headers: res.headers }));
}

/** One HTTPS request over HTTP/1.1; cert=false leaves out the client certificate. */
export function mtlsGet(pki, port, { cert = true, method = 'GET', body = null, path: p = '/bench/probe' } = {}) {
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: '127.0.0.1',
        port,
        path: p,
        method,
        servername: 'localhost',
        ca: fs.readFileSync(pki.ca),
        ...(cert ? { cert: fs.readFileSync(pki.clientCert), key: fs.readFileSync(pki.clientKey) } : {}),
        agent: false,
        timeout: 3000,
        headers: body ? { 'content-type': 'application/octet-stream', 'content-length': body.length } : {},
      },
      (res) => collect(res, resolve),
    );
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.end(body ?? undefined);
  });
}

function h2Get(pki, port) {
  return new Promise((resolve, reject) => {
    const s = http2.connect(`https://127.0.0.1:${port}`, {
      servername: 'localhost',
      ca: fs.readFileSync(pki.ca),
      cert: fs.readFileSync(pki.clientCert),
      key: fs.readFileSync(pki.clientKey),
    });
    s.on('error', reject);
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error('h2 timeout'));
    }, 3000);
    const req = s.request({ ':path': '/bench/probe', ':method': 'GET' });
    let status = 0;
    let data = '';
    req.on('response', (h) => (status = h[':status']));
    req.setEncoding('utf8').on('data', (d) => (data += d));
    req.on('end', () => {
      clearTimeout(timer);
      s.close();
      resolve({ status, body: data });
    });
    req.on('error', reject);
    req.end();
  });
}

/**
 * Checks that a target does the job: returns a list of problems (empty = fine). The ceiling
 * target answers by itself, so its bodies are not the upstream's but the same bytes.
 */
export async function probe(pki, port) {
  const problems = [];
  const get = await mtlsGet(pki, port).catch((e) => ({ status: 0, body: e.message }));
  if (get.status !== 200 || get.body !== UPSTREAM_BODY) problems.push(`GET: ${get.status} ${JSON.stringify(get.body).slice(0, 80)}`);
  const post = await mtlsGet(pki, port, { method: 'POST', body: Buffer.alloc(4096, 'x') }).catch((e) => ({ status: 0, body: e.message }));
  if (post.status !== 200 || post.body !== UPSTREAM_BODY) problems.push(`POST 4KiB: ${post.status} ${JSON.stringify(post.body).slice(0, 80)}`);
  const h2 = await h2Get(pki, port).catch((e) => ({ status: 0, body: e.message }));
  if (h2.status !== 200 || h2.body !== UPSTREAM_BODY) problems.push(`HTTP/2 GET: ${h2.status} ${JSON.stringify(h2.body).slice(0, 80)}`);
  const anon = await mtlsGet(pki, port, { cert: false }).catch((e) => ({ status: 0, body: e.code ?? e.message }));
  if (anon.status === 200) problems.push('a client without a certificate was answered 200');
  return { problems, anonymous: anon.status === 0 ? `refused (${anon.body})` : `HTTP ${anon.status}` };
}
