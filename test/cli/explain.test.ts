/**
 * `mtls-sidecar explain` (SPEC §2) against the live sidecar: for a table of certificates x
 * methods x paths (x tokens), a real sidecar is sent the request over real mTLS and its audit
 * line read, and the built CLI is asked about the same certificate, method and path with the
 * same config file. Both must reach the same decision and the same reason (the handshake
 * line's reason for a refused certificate, the request line's otherwise), and the exit code
 * must follow the decision (0 allowed, 3 denied).
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { Agent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { AuditLine } from '../helpers/audit-sink.js';
import { TEST_AUDIENCE, TEST_ISSUER, jwksOf, makeSigningKey, mintToken, thumbprintOfPem, writeJwksFile } from '../helpers/jwt.js';
import type { PkiEntry } from '../helpers/pki.js';
import { startSidecar, writeConfig } from '../helpers/sidecar.js';
import type { RunningSidecar } from '../helpers/sidecar.js';
import { presenting } from '../helpers/tls-probe.js';
import { startUpstream } from '../helpers/upstream.js';
import type { Upstream } from '../helpers/upstream.js';
import { baseConfig } from '../integration/config.js';
import { readFileSync } from 'node:fs';

const run = promisify(execFile);
const pki = inject('pki');
const c = pki.clients;
const root = path.resolve(import.meta.dirname, '../..');
const bin = path.join(root, 'dist/main.js');
const uri = (name: string): string => `spiffe://cluster.local/ns/shop/sa/${name}`;

let dir = '';
let app: Upstream;
let sc: RunningSidecar;
/** Tokens by name, minted once the signing key exists. */
const tokens: Record<string, string> = {};

beforeAll(async () => {
  // `make test` builds first; a bare `vitest run` after a fresh clone builds here.
  if (!existsSync(bin)) await run(process.execPath, [path.join(root, 'node_modules/typescript/bin/tsc'), '-p', path.join(root, 'tsconfig.build.json')]);
  dir = await mkdtemp(path.join(os.tmpdir(), 'mtls-sidecar-explain-'));
  const key = await makeSigningKey('ES256');
  const jwksFile = path.join(dir, 'jwks.json');
  await writeJwksFile(jwksFile, jwksOf(key));
  const boundToOrders = thumbprintOfPem(readFileSync(c.orders.cert));
  tokens['good'] = await mintToken(key, { scope: 'pay:write', x5t: boundToOrders });
  tokens['wrongScope'] = await mintToken(key, { scope: 'pay:read', x5t: boundToOrders });
  tokens['otherAudience'] = await mintToken(key, { scope: 'pay:write', x5t: boundToOrders, aud: 'api://elsewhere' });
  app = await startUpstream();
  sc = await startSidecar(
    baseConfig(pki, app.url, {
      // The intermediate is not trusted itself: its clients present it.
      tls: { clientCAs: [pki.rootCa.cert, pki.deepRootCa.cert], crls: [pki.crls.root] },
      identities: [
        { name: 'orders', match: { uri: uri('orders') }, scopes: ['orders:read', 'orders:write'] },
        { name: 'billing', match: { uri: uri('billing') }, scopes: ['orders:read'] },
        { name: 'inter', match: { uri: uri('inter-client') }, scopes: ['orders:read'] },
      ],
      routes: [
        { name: 'health', path: '/healthz', methods: ['GET'], public: true },
        { name: 'pay', prefix: '/pay', scopes: ['orders:read'], tokenScopes: ['pay:write'] },
        { name: 'admin', prefix: '/admin', scopes: ['admin'], mode: 'audit' },
        { name: 'read', prefix: '/orders', methods: ['GET', 'HEAD'], scopes: ['orders:read'] },
        { name: 'write', prefix: '/orders', methods: ['POST', 'PUT', 'PATCH', 'DELETE'], scopes: ['orders:write'] },
      ],
      jwt: { issuer: TEST_ISSUER, audience: TEST_AUDIENCE, jwks: { file: jwksFile }, algorithms: ['ES256'], certificateBound: true },
      // Generous: the live requests must not be limited, explain only names the policy.
      rateLimit: { default: { rps: 1000, burst: 1000 }, identities: { billing: { rps: 500, burst: 500 } } },
    }),
  );
}, 120_000);
afterAll(async () => {
  /* eslint-disable @typescript-eslint/no-unnecessary-condition -- undefined when beforeAll failed */
  await sc?.close();
  await app?.close();
  /* eslint-enable @typescript-eslint/no-unnecessary-condition */
  if (dir !== '') await rm(dir, { recursive: true, force: true });
});

interface Outcome {
  readonly decision: unknown;
  readonly reason: unknown;
  readonly wouldDeny: unknown;
}

/** The file a client presents: the leaf and its intermediates, or the leaf alone. */
function certFile(entry: PkiEntry, leafOnly: boolean): string {
  return leafOnly ? entry.cert : (entry.chain ?? entry.cert);
}

/** One real request over mTLS; the decision and reason of the audit line it caused. */
async function live(entry: PkiEntry, method: string, target: string, token: string | null, leafOnly: boolean): Promise<Outcome> {
  const mark = sc.audit.lines.length;
  const agent = new Agent({ connect: presenting(pki, entry, { leafOnly }) });
  try {
    const res = await request(`https://localhost:${sc.port}${target}`, {
      dispatcher: agent,
      method,
      ...(token === null ? {} : { headers: { authorization: `Bearer ${token}` } }),
    });
    await res.body.text();
  } catch {
    // A refused certificate may end the exchange before a response: the audit line says why.
  } finally {
    await agent.close().catch(() => undefined);
  }
  const line: AuditLine = await sc.audit.waitFor((l) => sc.audit.lines.indexOf(l) >= mark && (l.msg === 'request' || l.msg === 'handshake_rejected'));
  if (line.msg === 'handshake_rejected') return { decision: 'deny', reason: line['reason'], wouldDeny: null };
  return { decision: line['decision'], reason: line['reason'], wouldDeny: line['wouldDeny'] ?? null };
}

/** The built CLI: `explain --json`, parsed, with its exit code. */
async function explain(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [bin, 'explain', ...args], { cwd: dir });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

interface Row {
  readonly name: string;
  readonly cert: PkiEntry;
  readonly method?: string;
  readonly path: string;
  readonly token?: string;
  readonly leafOnly?: boolean;
  /** What both must say (decision reason [wouldDeny]): the table is about these cases, not just agreement. */
  readonly expect: string;
}

const TABLE: readonly Row[] = [
  { name: 'allowed', cert: c.orders, path: '/orders/1', expect: 'allow ok' },
  { name: 'allowed, less privileged identity', cert: c.billing, path: '/orders/1', expect: 'allow ok' },
  { name: 'scope missing', cert: c.billing, method: 'POST', path: '/orders/1', expect: 'deny scope_missing' },
  { name: 'no route', cert: c.orders, path: '/nothing', expect: 'deny no_route' },
  { name: 'no route for this method', cert: c.orders, method: 'OPTIONS', path: '/orders/1', expect: 'deny no_route' },
  { name: 'no identity match', cert: pki.workloads.payments, path: '/orders/1', expect: 'deny no_identity' },
  { name: 'no identity match, public route', cert: pki.workloads.payments, path: '/healthz', expect: 'allow ok' },
  { name: 'bad path', cert: c.orders, path: '/orders/%2F1', expect: 'deny bad_path' },
  { name: 'untrusted (foreign CA)', cert: c.foreign, path: '/orders/1', expect: 'deny untrusted' },
  { name: 'expired', cert: c.expired, path: '/orders/1', expect: 'deny expired' },
  { name: 'not yet valid', cert: c.notYetValid, path: '/orders/1', expect: 'deny not_yet_valid' },
  { name: 'revoked (root CRL)', cert: c.revoked, path: '/orders/1', expect: 'deny revoked' },
  { name: 'no clientAuth EKU', cert: c.serverAuthOnly, path: '/orders/1', expect: 'deny bad_eku' },
  { name: 'CA:TRUE leaf', cert: c.caTrueLeaf, path: '/orders/1', expect: 'deny ca_leaf' },
  { name: 'intermediate presented', cert: c.interClient, path: '/orders/1', expect: 'allow ok' },
  { name: 'intermediate not presented', cert: c.interClient, path: '/orders/1', leafOnly: true, expect: 'deny untrusted' },
  { name: '4 CAs above the leaf', cert: c.chain4, path: '/healthz', expect: 'allow ok' },
  { name: '5 CAs above the leaf', cert: c.chain5, path: '/healthz', expect: 'deny chain_too_long' },
  { name: 'audit mode: would deny for a scope', cert: c.billing, path: '/admin/users', expect: 'allow audit_mode scope_missing' },
  { name: 'audit mode: would deny for no identity', cert: pki.workloads.payments, method: 'DELETE', path: '/admin', expect: 'allow audit_mode no_identity' },
  { name: 'token missing', cert: c.orders, path: '/pay/1', expect: 'deny jwt_missing' },
  { name: 'token valid and bound to the certificate', cert: c.orders, path: '/pay/1', token: 'good', expect: 'allow ok' },
  { name: 'token lacks the route scope', cert: c.orders, path: '/pay/1', token: 'wrongScope', expect: 'deny token_scope_missing' },
  { name: 'token for another audience', cert: c.orders, path: '/pay/1', token: 'otherAudience', expect: 'deny jwt_invalid' },
  { name: 'token bound to another certificate', cert: c.billing, path: '/pay/1', token: 'good', expect: 'deny jwt_cert_mismatch' },
];

describe('explain agrees with the live sidecar', () => {
  it.each(TABLE)('$name', async (row) => {
    const method = row.method ?? 'GET';
    const token = row.token === undefined ? null : (tokens[row.token] ?? null);
    const got = await live(row.cert, method, row.path, token, row.leafOnly === true);
    const args = ['--config', sc.configFile, '--cert', certFile(row.cert, row.leafOnly === true), '--method', method, '--json', row.path];
    if (token !== null) args.push('--token', token);
    const r = await explain(args);
    expect(r.stderr).toBe('');
    const e = JSON.parse(r.stdout) as { decision: string; reason: string; wouldDeny: string | null };
    const said = { decision: e.decision, reason: e.reason, wouldDeny: e.wouldDeny };
    expect(said).toEqual(got);
    expect([e.decision, e.reason, e.wouldDeny].filter((x) => x !== null).join(' ')).toBe(row.expect);
    expect(r.code).toBe(e.decision === 'allow' ? 0 : 3);
    // The token is the caller's secret: never printed back.
    if (token !== null) expect(r.stdout).not.toContain(token);
  }, 30_000);
});

describe('explain output', () => {
  it('tells each step on its own line: identity rule, route, scopes held and needed, rate-limit policy, decision', async () => {
    const r = await explain(['--config', sc.configFile, '--cert', c.billing.cert, '--method', 'POST', '/orders/1']);
    expect(r.code).toBe(3);
    const lines = r.stdout.trim().split('\n');
    expect(lines.map((l) => l.slice(0, 11).trim())).toEqual(['certificate', 'trust', 'identity', 'path', 'route', 'scopes', 'token', 'rate limit', 'decision']);
    const line = (step: string): string => lines.find((l) => l.startsWith(step)) ?? '';
    expect(line('identity')).toMatch(/ok +billing \(identities\[1\], matched on uri\)/);
    expect(line('route')).toMatch(/ok +write \(routes\[4\]: prefix \/orders, methods POST PUT PATCH DELETE, mode enforce\)/);
    expect(line('scopes')).toMatch(/deny +scope_missing: held orders:read; needed orders:write; missing orders:write/);
    expect(line('token')).toMatch(/not_reached/);
    expect(line('decision')).toMatch(/deny +scope_missing \(403 forbidden\)/);

    const ok = await explain(['--config', sc.configFile, '--cert', c.billing.cert, '/orders/1']);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(/^rate limit +ok +identity:billing 500 rps, burst 500 /m);
    expect(ok.stdout).toMatch(/^token +skipped +route "read" needs no token/m);
    expect(ok.stdout).toMatch(/^decision +allow +ok$/m);
  });

  it('says why no identity rule matched, and that a token is missing', async () => {
    const none = await explain(['--config', sc.configFile, '--cert', pki.workloads.payments.cert, '/orders/1']);
    expect(none.code).toBe(3);
    expect(none.stdout).toMatch(/^identity +none +none matched \(identities\[0\] orders: uri differs; identities\[1\] billing: uri differs; identities\[2\] inter: uri differs\)/m);
    const missing = await explain(['--config', sc.configFile, '--cert', c.orders.cert, '/pay/1']);
    expect(missing.stdout).toMatch(/^token +deny +jwt_missing: route "pay" needs a token and none was given/m);
    expect(missing.stdout).toMatch(/^decision +deny +jwt_missing \(401 unauthorized\)$/m);
  });

  it('a refused certificate stops at trust, with the handshake reason', async () => {
    const r = await explain(['--config', sc.configFile, '--cert', c.expired.cert, '--json', '/orders/1']);
    expect(r.code).toBe(3);
    const e = JSON.parse(r.stdout) as { status: number | null; steps: { step: string; result: string; reason: string | null }[] };
    expect(e.status).toBeNull();
    expect(e.steps.map((s) => s.result)).toEqual(['ok', 'deny', 'not_reached', 'not_reached', 'not_reached', 'not_reached', 'not_reached', 'not_reached']);
    expect(e.steps[1]).toMatchObject({ step: 'trust', reason: 'expired' });
  });
});

describe('explain usage', () => {
  it('exit 2 with one line: no --cert, no PATH, an unreadable certificate, a bad method, a bad config', async () => {
    const cfg = sc.configFile;
    const cases: string[][] = [
      ['--config', cfg, '/orders'],
      ['--config', cfg, '--cert', c.orders.cert],
      ['--config', cfg, '--cert', path.join(dir, 'missing.crt'), '/orders'],
      ['--config', cfg, '--cert', c.orders.key, '/orders'],
      ['--config', cfg, '--cert', c.orders.cert, '--method', 'GE T', '/orders'],
      ['--config', path.join(dir, 'missing.yaml'), '--cert', c.orders.cert, '/orders'],
      ['--config', cfg, '--cert', c.orders.cert, '--nope', '/orders'],
    ];
    for (const args of cases) {
      const r = await explain(args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stdout).toBe('');
      expect(r.stderr.trim().split('\n'), args.join(' ')).toHaveLength(1);
      expect(r.stderr).not.toMatch(/\n\s+at |PRIVATE KEY/);
    }
    const { file } = await writeConfig({ version: 1, routes: [{ name: 'r', prefix: '/', retries: 3 }] });
    const bad = await explain(['--config', file, '--cert', c.orders.cert, '/orders']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/routes\[0\]\.retries: unknown key/);
    await rm(path.dirname(file), { recursive: true, force: true });
  });

  it('--help exits 0', async () => {
    const r = await explain(['--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^Usage: mtls-sidecar explain/);
  });
});
