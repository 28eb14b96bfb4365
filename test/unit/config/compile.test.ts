/**
 * compile.ts over real files: what each config section becomes in the snapshot, and the file
 * problems it reports, each with its YAML path and line:col, in the order `check` prints them.
 */
import { copyFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { loadAndCompile } from '../../../src/config/index.js';
import { createCa } from '../../../src/pki/devca.js';
import type { Snapshot } from '../../../src/config/snapshot.js';
import { jwksOf, makeSigningKey, TEST_AUDIENCE, TEST_ISSUER, writeDenylist, writeJwksFile } from '../../helpers/jwt.js';
import { writeConfig, withEphemeralPorts } from '../../helpers/sidecar.js';
import type { ConfigObject } from '../../helpers/sidecar.js';
import { baseConfig } from '../../integration/config.js';
import { openssl } from '../pki/util.js';

const pki = inject('pki');
const SAN_CNF = [
  '[req]', 'distinguished_name = dn', 'x509_extensions = ext', 'prompt = no',
  '[dn]', 'CN = localhost',
  '[ext]', 'subjectAltName = @alt',
  '[alt]', 'DNS.1 = localhost', 'URI.1 = spiffe://cluster.local/ns/a, b',
].join('\n');
const dirs: string[] = [];
afterAll(async () => Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true }))));

/** Write the config (and `files`, by name, next to it), then load and compile it. */
async function compile(config: ConfigObject, files: Record<string, (dir: string) => Promise<void>> = {}, now?: () => number) {
  const written = await writeConfig(withEphemeralPorts(config));
  dirs.push(written.dir);
  for (const write of Object.values(files)) await write(written.dir);
  const outcome = await loadAndCompile(written.file, 7, now === undefined ? {} : { now });
  return { ...written, outcome };
}

async function snapshotOf(config: ConfigObject, files: Record<string, (dir: string) => Promise<void>> = {}): Promise<{ s: Snapshot; dir: string; file: string }> {
  const { outcome, dir, file } = await compile(config, files);
  if (!outcome.ok) throw new Error(outcome.lines.join('\n'));
  return { s: outcome.snapshot, dir, file };
}

/** The issue lines with the config's folder written as `<dir>`. */
async function problems(config: ConfigObject, files: Record<string, (dir: string) => Promise<void>> = {}, now?: () => number): Promise<string[]> {
  const { outcome, dir } = await compile(config, files, now);
  if (outcome.ok) throw new Error('compiled, expected problems');
  return outcome.lines.map((l) => l.replaceAll(dir, '<dir>'));
}

describe('compileConfig: a good config', () => {
  it('every section lands in the snapshot, in order, and every file read is digested', async () => {
    const rsa = await makeSigningKey('RS256', 'k1');
    const pinned = pki.clients.pinned;
    const config = baseConfig(pki, 'http://127.0.0.1:1/', {
      tls: { clientCAs: [pki.rootCa.cert], pins: [`sha256:${pinned.sha256}`, `spki:${pinned.spki}`], crls: [pki.crls.root, pki.crls.intermediate] },
      routes: [
        { name: 'health', path: '/healthz', methods: ['GET'], public: true },
        { name: 'read', prefix: '/orders', methods: ['GET'], scopes: ['orders:read'], tokenScopes: ['t:read'], rateLimit: { rps: 5, burst: 10 } },
      ],
      rateLimit: { default: { rps: 1, burst: 2 }, identities: { orders: { rps: 3, burst: 4 } } },
      jwt: { issuer: TEST_ISSUER, audience: TEST_AUDIENCE, jwks: { file: 'jwks.json' }, denylist: 'revoked.txt', algorithms: ['RS256'], required: true },
      audit: { file: 'audit.log' },
    });
    const { s, dir, file } = await snapshotOf(config, {
      jwks: (d) => writeJwksFile(path.join(d, 'jwks.json'), jwksOf(rsa)),
      deny: (d) => writeDenylist(path.join(d, 'revoked.txt'), ['gone']),
    });

    expect(Object.keys(s)).toEqual([
      'generation', 'configFile', 'fileDigests', 'listen', 'tls', 'certs', 'crlFiles', 'identities', 'identityMatcher', 'routes', 'routeTable', 'policyAudit',
      'jwt', 'rateLimit', 'upstream', 'forwardClientCert', 'limits', 'securityHeaders', 'audit', 'admin', 'shutdown', 'outbound',
    ]);
    expect(Object.isFrozen(s)).toBe(true);
    expect(s.generation).toBe(7);
    expect(s.configFile).toBe(file);
    const jwks = path.join(dir, 'jwks.json');
    const deny = path.join(dir, 'revoked.txt');
    expect([...s.fileDigests.keys()]).toEqual([file, pki.server.cert, pki.server.key, pki.rootCa.cert, pki.crls.root, pki.crls.intermediate, jwks, deny]);
    expect([...s.fileDigests.values()].every((d) => /^[0-9a-f]{64}$/.test(d))).toBe(true);

    expect(s.tls.files).toEqual([pki.server.cert, pki.server.key, pki.rootCa.cert, pki.crls.root, pki.crls.intermediate]);
    expect(s.tls.serverLeaf?.fingerprint256).toBe(pki.server.sha256);
    expect(s.tls.minVersion).toBe('TLSv1.2');
    expect(s.tls.material.ca).toHaveLength(1);
    expect(JSON.stringify(s.tls)).not.toContain('PRIVATE KEY');
    const trust = s.tls.trust;
    expect(trust.hasClientCAs).toBe(true);
    expect(trust.cas.map((c) => c.fingerprint256)).toEqual([pki.rootCa.sha256]);
    expect([...trust.caFingerprints]).toEqual([pki.rootCa.sha256]);
    expect([...trust.pinsSha256]).toEqual([pinned.sha256]);
    expect([...trust.pinsSpki]).toEqual([pinned.spki]);
    expect([...trust.crlsByIssuer.keys()]).toEqual([trust.cas[0]!.subject]);
    expect(trust.crlsByIssuer.get(trust.cas[0]!.subject)?.map((c) => [c.file, [...c.revoked]])).toEqual([[pki.crls.root, [pki.clients.revoked.serialHex.replace(/^0+/, '').toUpperCase()]]]);
    expect(trust.pendingCrls.map((c) => c.file)).toEqual([pki.crls.intermediate]);
    expect(s.crlFiles.map((c) => [c.file, typeof c.nextUpdateMs])).toEqual([[pki.crls.root, 'number'], [pki.crls.intermediate, 'number']]);

    expect(s.certs.map((c) => [c.role, c.file, c.sha256])).toEqual([
      ['server', pki.server.cert, pki.server.sha256],
      ['clientCA', pki.rootCa.cert, pki.rootCa.sha256],
    ]);
    expect(s.certs[0]).toMatchObject({ subject: 'CN=localhost', issuer: expect.stringContaining('CN=Test Root CA') as unknown, sans: ['DNS:localhost', 'IP Address:127.0.0.1', 'IP Address:0:0:0:0:0:0:0:1'] });

    expect(s.identities.map((i) => [i.index, i.name, i.scopesHeader])).toEqual([[0, 'orders', 'orders:read orders:write'], [1, 'billing', 'orders:read']]);
    expect(s.routes.map((r) => [r.index, r.name, r.public, r.tokenScopes, r.rateLimit])).toEqual([
      [0, 'health', true, undefined, undefined],
      [1, 'read', false, ['t:read'], { rps: 5, burst: 10 }],
    ]);
    expect(s.routeTable.match('GET', '/orders/1')?.name).toBe('read');

    expect(s.jwt?.required).toBe(true);
    expect(s.jwt?.material.settings).toEqual({
      issuer: TEST_ISSUER,
      audience: TEST_AUDIENCE,
      algorithms: ['RS256'],
      clockSkewMs: 30_000,
      requireJti: true,
      certificateBound: false,
      jwks: { file: jwks },
      denylistFile: deny,
    });
    expect(s.rateLimit).toEqual({ default: { rps: 1, burst: 2 }, identities: new Map([['orders', { rps: 3, burst: 4 }]]), backend: 'memory', redis: undefined });
    expect(s.upstream).toEqual({ origin: 'http://127.0.0.1:1', connectTimeoutMs: 1000, timeoutMs: 2000 });
    expect(s.audit).toEqual({ file: path.join(dir, 'audit.log'), onFull: 'refuse' });
    expect(s.limits.maxBodySize).toBe(1024 * 1024);
    expect(s.shutdown).toEqual({ drainDelayMs: 5000, timeoutMs: 25_000 });
  });

  it('a SAN that holds ", " is one entry in the certificate summary, decoded as identity/peer.ts reads it', async () => {
    // devca refuses a space in a SAN, so openssl makes this one; node:crypto prints it JSON-quoted
    // with the comma escaped: `URI:"spiffe://cluster.local/ns/a\u002c b"`.
    const { s } = await snapshotOf(baseConfig(pki, 'http://127.0.0.1:1', { tls: { cert: 'san.crt', key: 'san.key' } }), {
      pair: async (d) => {
        await writeFile(path.join(d, 'san.cnf'), SAN_CNF);
        const r = openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1', '-config', path.join(d, 'san.cnf'), '-keyout', path.join(d, 'san.key'), '-out', path.join(d, 'san.crt')]);
        expect(r.status, r.stderr).toBe(0);
      },
    });
    expect(s.certs[0]?.sans).toEqual(['DNS:localhost', 'URI:spiffe://cluster.local/ns/a, b']);
  });

  it('without jwt and rateLimit sections: both null; audit stdout is kept as it is', async () => {
    const { s } = await snapshotOf(baseConfig(pki, 'http://127.0.0.1:1'));
    expect(s.jwt).toBeNull();
    expect(s.rateLimit).toBeNull();
    expect(s.audit.file).toBe('stdout');
    expect(s.crlFiles).toEqual([]);
  });
});

describe('compileConfig: file problems, with YAML path and line:col, in order', () => {
  it('reports every problem of the tls section at once', async () => {
    const lines = await problems(
      baseConfig(pki, 'http://127.0.0.1:1', {
        tls: { cert: 'missing.crt', key: pki.rootCa.cert, clientCAs: [pki.server.cert, 'nope-ca.pem', pki.rootCa.cert], crls: [pki.rootCa.cert, 'nope.crl'] },
      }),
    );
    expect(lines).toEqual([
      '<dir>/sidecar.yaml:3:9: tls.cert: file not found: <dir>/missing.crt',
      '<dir>/sidecar.yaml:4:8: tls.key: not a readable private key (PEM, unencrypted)',
      '<dir>/sidecar.yaml:6:7: tls.clientCAs[0]: "CN=localhost" is not a CA certificate (basicConstraints CA:TRUE missing)',
      '<dir>/sidecar.yaml:7:7: tls.clientCAs[1]: file not found: <dir>/nope-ca.pem',
      '<dir>/sidecar.yaml:10:7: tls.crls[0]: not a CRL (PEM or DER): no X509 CRL PEM block found (found CERTIFICATE)',
      '<dir>/sidecar.yaml:11:7: tls.crls[1]: file not found: <dir>/nope.crl',
    ]);
  });

  it('a key that is not the certificate\'s', async () => {
    expect(await problems(baseConfig(pki, 'http://127.0.0.1:1', { tls: { key: pki.clients.orders.key } }))).toEqual([
      expect.stringMatching(/^<dir>\/sidecar\.yaml:4:8: tls\.key: private key does not match the certificate in tls\.cert$/),
    ]);
  });

  it('an expired server certificate and CRL, judged by the injected clock', async () => {
    const later = Date.now() + 5 * 365 * 24 * 3600 * 1000;
    const lines = await problems(baseConfig(pki, 'http://127.0.0.1:1', { tls: { crls: [pki.crls.root] } }), {}, () => later);
    expect(lines).toEqual([
      expect.stringMatching(/^<dir>\/sidecar\.yaml:3:9: tls\.cert: server certificate expired on \d{4}-/),
      expect.stringMatching(/^<dir>\/sidecar\.yaml:8:7: tls\.crls\[0\]: CRL expired \(nextUpdate .*\): replace it with the issuer's current CRL$/),
    ]);
  });

  it('a CRL whose issuer name is a client CA but whose signature is not', async () => {
    // The root CA's CRL, trusted under a CA of the same name with another key.
    const twin = await createCa({ commonName: 'Test Root CA', organization: 'mtls-sidecar tests', days: 30 });
    const lines = await problems(baseConfig(pki, 'http://127.0.0.1:1', { tls: { clientCAs: ['twin.pem'], crls: [pki.crls.root] } }), {
      twin: (d) => writeFile(path.join(d, 'twin.pem'), twin.certPem),
    });
    expect(lines).toEqual(['<dir>/sidecar.yaml:8:7: tls.crls[0]: CRL signature does not verify with CA "O=mtls-sidecar tests, CN=Test Root CA"']);
  });

  it('an expired client CA', async () => {
    const old = await createCa({ commonName: 'Old CA', days: 1, notBefore: new Date(Date.now() - 10 * 24 * 3600 * 1000) });
    const lines = await problems(baseConfig(pki, 'http://127.0.0.1:1', { tls: { clientCAs: [pki.rootCa.cert, 'old.pem'] } }), {
      old: (d) => writeFile(path.join(d, 'old.pem'), old.certPem),
    });
    expect(lines).toEqual([expect.stringMatching(/^<dir>\/sidecar\.yaml:7:7: tls\.clientCAs\[1\]: CA "CN=Old CA" expired on \d{4}-/)]);
  });

  it('tokenScopes without a jwt section is a schema problem at the route', async () => {
    const config = baseConfig(pki, 'http://127.0.0.1:1', { routes: [{ name: 'r', prefix: '/', tokenScopes: ['a'] }] });
    expect(await problems(config)).toEqual(['<dir>/sidecar.yaml:23:7: routes[0].tokenScopes: tokenScopes needs a jwt section']);
  });

  it('jwt files: a missing JWKS file, and a malformed denylist with its line', async () => {
    const jwt = { issuer: TEST_ISSUER, audience: TEST_AUDIENCE, jwks: { file: 'jwks.json' } };
    expect(await problems(baseConfig(pki, 'http://127.0.0.1:1', { jwt }))).toEqual([
      expect.stringMatching(/^<dir>\/sidecar\.yaml:\d+:\d+: jwt\.jwks\.file: file not found: <dir>\/jwks\.json$/),
    ]);
    const rsa = await makeSigningKey('RS256', 'k1');
    const lines = await problems(baseConfig(pki, 'http://127.0.0.1:1', { jwt: { ...jwt, denylist: 'revoked.txt' } }), {
      jwks: (d) => writeJwksFile(path.join(d, 'jwks.json'), jwksOf(rsa)),
      deny: (d) => writeFile(path.join(d, 'revoked.txt'), 'ok\nbad id\n'),
    });
    expect(lines).toEqual([expect.stringMatching(/^<dir>\/sidecar\.yaml:\d+:\d+: jwt\.denylist: <dir>\/revoked\.txt line 2: one token id per line/)]);
  });

  it('a JWKS file that is no JWK Set', async () => {
    const lines = await problems(baseConfig(pki, 'http://127.0.0.1:1', { jwt: { issuer: TEST_ISSUER, audience: TEST_AUDIENCE, jwks: { file: 'jwks.json' } } }), {
      jwks: (d) => copyFile(pki.rootCa.cert, path.join(d, 'jwks.json')),
    });
    expect(lines).toEqual([expect.stringMatching(/^<dir>\/sidecar\.yaml:\d+:\d+: jwt\.jwks\.file: <dir>\/jwks\.json: not valid JSON$/)]);
  });
});
