import { X509Certificate } from 'node:crypto';
import { chmod, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { certsCommand } from '../../../src/cli/certs.js';
import { parseCrlFile, verifyCrlSignature, crlTimeStatus } from '../../../src/pki/crl.js';
import { sha256Thumbprint } from '../../../src/pki/thumbprint.js';
import { captureIo, openssl, tempDir } from './util.js';

let tmp: { dir: string; cleanup: () => Promise<void> };
beforeAll(async () => {
  tmp = await tempDir('certs-cmd-');
});
afterAll(() => tmp.cleanup());

async function run(args: string[]) {
  const cap = captureIo();
  const code = await certsCommand(args, cap.io);
  return { code, out: cap.out(), err: cap.err() };
}

const EKU_SERVER = '1.3.6.1.5.5.7.3.1';
const EKU_CLIENT = '1.3.6.1.5.5.7.3.2';

describe('certs with defaults', () => {
  let out: string;
  let dir: string;
  beforeAll(async () => {
    dir = join(tmp.dir, 'default', 'certs');
    const r = await run(['--out', dir]);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    out = r.out;
  }, 30_000);

  it('writes the CA, server, orders and billing certs and an empty CRL', async () => {
    expect((await readdir(dir)).sort()).toEqual(
      ['billing.crt', 'billing.key', 'ca.crt', 'ca.key', 'crl.pem', 'orders.crt', 'orders.key', 'server.crt', 'server.key'].sort(),
    );
  });

  it('keys are 0600, certificates and the CRL 0644', async () => {
    for (const f of await readdir(dir)) {
      const mode = (await stat(join(dir, f))).mode & 0o777;
      expect(mode, f).toBe(f.endsWith('.key') ? 0o600 : 0o644);
    }
  });

  it('prints one line per certificate with its SHA-256 thumbprint', async () => {
    const lines = out.trimEnd().split('\n');
    expect(lines).toHaveLength(4);
    const names = ['ca.crt', 'server.crt', 'orders.crt', 'billing.crt'];
    for (const [i, line] of lines.entries()) {
      const m = /^(\S+) {2}sha256:((?:[0-9A-F]{2}:){31}[0-9A-F]{2})$/.exec(line);
      expect(m, line).not.toBeNull();
      expect(m![1]).toBe(join(dir, names[i]!));
      const x = new X509Certificate(await readFile(m![1]!));
      expect(m![2]).toBe(sha256Thumbprint(x.raw));
      // and openssl agrees
      expect(openssl(['x509', '-in', m![1]!, '-noout', '-fingerprint', '-sha256']).stdout.trim()).toBe(
        `sha256 Fingerprint=${m![2]}`,
      );
    }
  });

  it('the CA is a CA for 10 years with pathLen 0', async () => {
    const ca = new X509Certificate(await readFile(join(dir, 'ca.crt')));
    expect(ca.ca).toBe(true);
    const years = (ca.validToDate.getTime() - ca.validFromDate.getTime()) / (365 * 24 * 3600 * 1000);
    expect(years).toBeGreaterThan(9.9);
    expect(years).toBeLessThan(10.1);
    const text = openssl(['x509', '-in', join(dir, 'ca.crt'), '-noout', '-text']).stdout;
    expect(text).toMatch(/CA:TRUE, pathlen:0/);
    expect(text).toMatch(/Certificate Sign, CRL Sign/);
  });

  it('the server cert is localhost, 127.0.0.1, ::1 for serverAuth, valid 365 days', async () => {
    const x = new X509Certificate(await readFile(join(dir, 'server.crt')));
    expect(x.subject).toBe('CN=localhost');
    expect(x.subjectAltName).toBe('DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1');
    expect(x.keyUsage).toEqual([EKU_SERVER]);
    const days = (x.validToDate.getTime() - Date.now()) / (24 * 3600 * 1000);
    expect(Math.round(days)).toBe(365);
  });

  it('client certs carry the SPIFFE ID and CN, for clientAuth', async () => {
    for (const name of ['orders', 'billing']) {
      const x = new X509Certificate(await readFile(join(dir, `${name}.crt`)));
      expect(x.subject).toBe(`CN=${name}`);
      expect(x.subjectAltName).toBe(`URI:spiffe://cluster.local/ns/default/sa/${name}`);
      expect(x.keyUsage).toEqual([EKU_CLIENT]);
      expect(x.ca).toBe(false);
    }
  });

  it('every cert verifies against the CA (openssl) and matches its key', async () => {
    for (const name of ['server', 'orders', 'billing']) {
      const r = openssl(['verify', '-CAfile', join(dir, 'ca.crt'), '-crl_check', '-CRLfile', join(dir, 'crl.pem'), join(dir, `${name}.crt`)]);
      expect(r.status, r.stdout + r.stderr).toBe(0);
      const x = new X509Certificate(await readFile(join(dir, `${name}.crt`)));
      const { createPrivateKey } = await import('node:crypto');
      expect(x.checkPrivateKey(createPrivateKey(await readFile(join(dir, `${name}.key`))))).toBe(true);
    }
    const purpose = openssl(['verify', '-CAfile', join(dir, 'ca.crt'), '-purpose', 'sslclient', join(dir, 'orders.crt')]);
    expect(purpose.status).toBe(0);
  });

  it('the CRL is empty, current, and signed by the CA', async () => {
    const [crl] = parseCrlFile(await readFile(join(dir, 'crl.pem')));
    const ca = new X509Certificate(await readFile(join(dir, 'ca.crt')));
    expect(crl!.revokedSerials.size).toBe(0);
    expect(crlTimeStatus(crl!)).toBe('current');
    expect(verifyCrlSignature(crl!, ca.publicKey)).toBe(true);
    expect(crl!.nextUpdate!.getTime()).toBeGreaterThan(Date.now() + 360 * 24 * 3600 * 1000);
  });

  it('refuses to overwrite without --force, changing nothing', async () => {
    const before = await readFile(join(dir, 'ca.key'), 'utf8');
    const r = await run(['--out', dir]);
    expect(r.code).toBe(2);
    expect(r.out).toBe('');
    expect(r.err).toBe(`certs: ${join(dir, 'ca.crt')} already exists (use --force to overwrite)\n`);
    expect(await readFile(join(dir, 'ca.key'), 'utf8')).toBe(before);
  });

  it('refuses when any single target exists', async () => {
    const d = join(tmp.dir, 'partial');
    const r0 = await run(['--out', d, '--services', 'a']);
    expect(r0.code).toBe(0);
    const r = await run(['--out', d, '--services', 'b']); // ca.* exist, b.* do not
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/ca\.crt already exists/);
    expect((await readdir(d)).includes('b.crt')).toBe(false);
  });

  it('--force overwrites and restores key modes', async () => {
    const oldCa = await readFile(join(dir, 'ca.crt'), 'utf8');
    await chmod(join(dir, 'orders.key'), 0o644);
    const r = await run(['--out', dir, '--force']);
    expect(r.code).toBe(0);
    expect(r.err).toBe('');
    expect(await readFile(join(dir, 'ca.crt'), 'utf8')).not.toBe(oldCa);
    expect((await stat(join(dir, 'orders.key'))).mode & 0o777).toBe(0o600);
    // No temporary files left behind.
    expect((await readdir(dir)).filter((f) => f.startsWith('.'))).toEqual([]);
  });
});

describe('certs options', () => {
  it('honours --services, --trust-domain, --namespace, --days and --dns', async () => {
    const dir = join(tmp.dir, 'custom');
    const r = await run([
      '--out',
      dir,
      '--services',
      ' web , api.v2 ',
      '--trust-domain',
      'example.org',
      '--namespace',
      'prod',
      '--days',
      '30',
      '--dns',
      'sidecar.local,*.svc.example.org,10.0.0.7,localhost',
    ]);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(r.out.split('\n').filter(Boolean).map((l) => l.split('  ')[0])).toEqual(
      ['ca.crt', 'server.crt', 'web.crt', 'api.v2.crt'].map((f) => join(dir, f)),
    );
    const web = new X509Certificate(await readFile(join(dir, 'web.crt')));
    expect(web.subjectAltName).toBe('URI:spiffe://example.org/ns/prod/sa/web');
    expect(Math.round((web.validToDate.getTime() - Date.now()) / 86400e3)).toBe(30);
    const server = new X509Certificate(await readFile(join(dir, 'server.crt')));
    expect(server.subjectAltName).toBe(
      'DNS:localhost, DNS:sidecar.local, DNS:*.svc.example.org, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1, IP Address:10.0.0.7',
    );
  }, 30_000);

  it('--services "" issues only the CA and server', async () => {
    const dir = join(tmp.dir, 'none');
    const r = await run(['--out', dir, '--services', '']);
    expect(r.code).toBe(0);
    expect((await readdir(dir)).sort()).toEqual(['ca.crt', 'ca.key', 'crl.pem', 'server.crt', 'server.key']);
  });

  it('--help prints usage and exits 0', async () => {
    const r = await run(['--help']);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^Usage: mtls-sidecar certs/);
    expect(r.out).toMatch(/--trust-domain/);
    expect(r.err).toBe('');
  });

  const usage: [string[], RegExp][] = [
    [['--bogus'], /^certs: unknown option --bogus \(see --help\)\n$/],
    [['extra'], /^certs: unexpected argument extra/],
    [['--out'], /^certs: Option '--out <value>' argument missing\n$/],
    [['--out', '--force'], /^certs: Option '--out' argument is ambiguous\n$/],
    [['--force=yes'], /^certs: Option '--force' does not take an argument\n$/],
    [['--days', 'abc'], /--days must be a whole number/],
    [['--days', '0'], /--days must be a whole number/],
    [['--days', '1.5'], /--days must be a whole number/],
    [['--services', 'Orders'], /"Orders" is not a valid service account name/],
    [['--services', 'a/b'], /"a\/b" is not a valid/],
    [['--services', '../x'], /not a valid/],
    [['--services', 'ca'], /"ca" is reserved/],
    [['--services', 'server,x'], /"server" is reserved/],
    [['--services', 'a,a'], /"a" is listed twice/],
    [['--trust-domain', 'Bad Domain'], /not a valid SPIFFE trust domain/],
    [['--namespace', 'Prod'], /not a valid Kubernetes namespace/],
    [['--dns', 'bad name'], /"bad name" is not a valid DNS name/],
    [['--out', ''], /--out must not be empty/],
  ];
  for (const [args, msg] of usage) {
    it(`exit 2 for ${JSON.stringify(args)}`, async () => {
      const r = await run(args.includes('--out') ? args : [...args, '--out', join(tmp.dir, 'never')]);
      expect(r.code).toBe(2);
      expect(r.out).toBe('');
      expect(r.err).toMatch(msg);
      expect(r.err.split('\n').filter(Boolean)).toHaveLength(1); // one line, no stack
    });
  }

  it('reports file system errors as one line', async () => {
    const blocker = join(tmp.dir, 'a-file');
    await writeFile(blocker, 'x');
    const r = await run(['--out', join(blocker, 'sub')]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/^certs: (ENOTDIR|EEXIST)/);
    expect(r.err.split('\n').filter(Boolean)).toHaveLength(1);
  });
});
