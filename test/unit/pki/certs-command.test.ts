import { X509Certificate, createPrivateKey } from 'node:crypto';
import { chmod, cp, readFile, readdir, stat, unlink, writeFile } from 'node:fs/promises';
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

  it('workload certs: CN=name; the SPIFFE ID, cluster and loopback names; clientAuth and serverAuth', async () => {
    for (const name of ['orders', 'billing']) {
      const x = new X509Certificate(await readFile(join(dir, `${name}.crt`)));
      expect(x.subject).toBe(`CN=${name}`);
      expect(x.subjectAltName).toBe(
        `URI:spiffe://cluster.local/ns/default/sa/${name}, DNS:${name}, DNS:${name}.default.svc, ` +
          `DNS:${name}.default.svc.cluster.local, DNS:localhost, IP Address:127.0.0.1`,
      );
      expect([...x.keyUsage].sort()).toEqual([EKU_SERVER, EKU_CLIENT]);
      expect(x.ca).toBe(false);
      // OpenSSL agrees that one certificate serves and calls.
      for (const purpose of ['sslclient', 'sslserver']) {
        const r = openssl(['verify', '-CAfile', join(dir, 'ca.crt'), '-purpose', purpose, join(dir, `${name}.crt`)]);
        expect(r.status, `${name} ${purpose}: ${r.stderr}`).toBe(0);
      }
    }
  });

  it('every key is ECDSA P-256: the certificates and the key files', async () => {
    for (const name of ['ca', 'server', 'orders', 'billing']) {
      const x = new X509Certificate(await readFile(join(dir, `${name}.crt`)));
      expect(x.publicKey.asymmetricKeyType, name).toBe('ec');
      expect(x.publicKey.asymmetricKeyDetails?.namedCurve, name).toBe('prime256v1');
      const key = createPrivateKey(await readFile(join(dir, `${name}.key`)));
      expect(key.asymmetricKeyType, name).toBe('ec');
      expect(key.asymmetricKeyDetails?.namedCurve, name).toBe('prime256v1');
      expect(openssl(['x509', '-in', join(dir, `${name}.crt`), '-noout', '-text']).stdout).toContain('Signature Algorithm: ecdsa-with-SHA256');
    }
  });

  it('every cert verifies against the CA (openssl) and matches its key', async () => {
    for (const name of ['server', 'orders', 'billing']) {
      const r = openssl(['verify', '-CAfile', join(dir, 'ca.crt'), '-crl_check', '-CRLfile', join(dir, 'crl.pem'), join(dir, `${name}.crt`)]);
      expect(r.status, r.stdout + r.stderr).toBe(0);
      const x = new X509Certificate(await readFile(join(dir, `${name}.crt`)));
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
    expect(web.subjectAltName).toBe(
      'URI:spiffe://example.org/ns/prod/sa/web, DNS:web, DNS:web.prod.svc, DNS:web.prod.svc.cluster.local, DNS:localhost, IP Address:127.0.0.1',
    );
    const api = new X509Certificate(await readFile(join(dir, 'api.v2.crt')));
    expect(api.subject).toBe('CN=api.v2');
    expect(api.subjectAltName).toMatch(/^URI:spiffe:\/\/example\.org\/ns\/prod\/sa\/api\.v2, DNS:api\.v2, DNS:api\.v2\.prod\.svc, /);
    expect(Math.round((web.validToDate.getTime() - Date.now()) / 86400e3)).toBe(30);
    const server = new X509Certificate(await readFile(join(dir, 'server.crt')));
    expect(server.subjectAltName).toBe(
      'DNS:localhost, DNS:sidecar.local, DNS:*.svc.example.org, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1, IP Address:10.0.0.7',
    );
  }, 30_000);

  it('--key-type rsa: RSA 2048 keys for the CA, the server and the workloads', async () => {
    const dir = join(tmp.dir, 'rsa');
    const r = await run(['--out', dir, '--key-type', 'rsa', '--services', 'web']);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    for (const name of ['ca', 'server', 'web']) {
      const x = new X509Certificate(await readFile(join(dir, `${name}.crt`)));
      expect(x.publicKey.asymmetricKeyType, name).toBe('rsa');
      expect(x.publicKey.asymmetricKeyDetails?.modulusLength, name).toBe(2048);
      const key = createPrivateKey(await readFile(join(dir, `${name}.key`)));
      expect(key.asymmetricKeyType, name).toBe('rsa');
      expect(x.checkPrivateKey(key)).toBe(true);
    }
    const web = new X509Certificate(await readFile(join(dir, 'web.crt')));
    expect([...web.keyUsage].sort()).toEqual([EKU_SERVER, EKU_CLIENT]);
    const [crl] = parseCrlFile(await readFile(join(dir, 'crl.pem')));
    expect(verifyCrlSignature(crl!, new X509Certificate(await readFile(join(dir, 'ca.crt'))).publicKey)).toBe(true);
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
    expect(r.out).toMatch(/--add a,b/);
    expect(r.out).toMatch(/--key-type T +ecdsa \(P-256, the default\) or rsa/);
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
    [['--key-type', 'dsa'], /^certs: --key-type must be ecdsa or rsa, got "dsa"\n$/],
    [['--key-type', 'ECDSA'], /--key-type must be ecdsa or rsa/],
    [['--services', `${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(40)}`], /is too long for the DNS name/],
    [['--add', 'a', '--services', 'b'], /^certs: --add and --services do not combine/],
    [['--add', 'a', '--dns', 'x.example'], /^certs: --dns names the server certificate, which --add does not touch\n$/],
    [['--add', ' , '], /^certs: --add needs at least one service name\n$/],
    [['--add', 'ca'], /^certs: --add: "ca" is reserved/],
    [['--add', 'crl'], /"crl" is reserved/],
    [['--add', 'Web'], /^certs: --add: "Web" is not a valid service account name/],
    [['--add', 'a,a'], /--add: "a" is listed twice/],
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

describe('certs --add', () => {
  let dir: string;
  const FILES = ['ca.crt', 'ca.key', 'crl.pem', 'server.crt', 'server.key', 'orders.crt', 'orders.key', 'billing.crt', 'billing.key'];
  const snapshot = async (d: string, names: string[]) => Object.fromEntries(await Promise.all(names.map(async (f) => [f, await readFile(join(d, f))] as const)));

  beforeAll(async () => {
    dir = join(tmp.dir, 'add');
    const r = await run(['--out', dir, '--namespace', 'shop']);
    expect(r.code).toBe(0);
  }, 30_000);

  it('issues only the named workload certs from the CA in --out; every other file stays byte for byte', async () => {
    const before = await snapshot(dir, FILES);
    const r = await run(['--out', dir, '--namespace', 'shop', '--add', 'payments, shipping']);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect((await readdir(dir)).sort()).toEqual([...FILES, 'payments.crt', 'payments.key', 'shipping.crt', 'shipping.key'].sort());
    expect(await snapshot(dir, FILES)).toEqual(before);
    // Only the new certificates are printed, with their thumbprints.
    const lines = r.out.trimEnd().split('\n');
    expect(lines.map((l) => l.split('  ')[0])).toEqual([join(dir, 'payments.crt'), join(dir, 'shipping.crt')]);
    const ca = new X509Certificate(await readFile(join(dir, 'ca.crt')));
    for (const [i, name] of ['payments', 'shipping'].entries()) {
      const x = new X509Certificate(await readFile(join(dir, `${name}.crt`)));
      expect(lines[i]).toBe(`${join(dir, `${name}.crt`)}  sha256:${sha256Thumbprint(x.raw)}`);
      expect(x.subject).toBe(`CN=${name}`);
      expect(x.subjectAltName).toBe(
        `URI:spiffe://cluster.local/ns/shop/sa/${name}, DNS:${name}, DNS:${name}.shop.svc, ` +
          `DNS:${name}.shop.svc.cluster.local, DNS:localhost, IP Address:127.0.0.1`,
      );
      expect([...x.keyUsage].sort()).toEqual([EKU_SERVER, EKU_CLIENT]);
      expect(x.checkIssued(ca)).toBe(true);
      expect(x.verify(ca.publicKey)).toBe(true);
      expect(x.publicKey.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
      expect(x.checkPrivateKey(createPrivateKey(await readFile(join(dir, `${name}.key`))))).toBe(true);
      expect((await stat(join(dir, `${name}.key`))).mode & 0o777).toBe(0o600);
      expect((await stat(join(dir, `${name}.crt`))).mode & 0o777).toBe(0o644);
      const v = openssl(['verify', '-CAfile', join(dir, 'ca.crt'), '-crl_check', '-CRLfile', join(dir, 'crl.pem'), join(dir, `${name}.crt`)]);
      expect(v.status, v.stderr).toBe(0);
    }
  }, 30_000);

  it('refuses to overwrite a service cert without --force, changing nothing; --force replaces that cert alone', async () => {
    const all = [...FILES, 'payments.crt', 'payments.key', 'shipping.crt', 'shipping.key'];
    const before = await snapshot(dir, all);
    const r = await run(['--out', dir, '--add', 'orders']);
    expect(r.code).toBe(2);
    expect(r.out).toBe('');
    expect(r.err).toBe(`certs: ${join(dir, 'orders.crt')} already exists (use --force to overwrite)\n`);
    expect(await snapshot(dir, all)).toEqual(before);

    await chmod(join(dir, 'orders.key'), 0o644);
    const f = await run(['--out', dir, '--namespace', 'shop', '--add', 'orders', '--force']);
    expect(f.err).toBe('');
    expect(f.code).toBe(0);
    const after = await snapshot(dir, all);
    for (const name of all) {
      if (name.startsWith('orders.')) expect(after[name], name).not.toEqual(before[name]);
      else expect(after[name], name).toEqual(before[name]);
    }
    expect((await stat(join(dir, 'orders.key'))).mode & 0o777).toBe(0o600);
    expect((await readdir(dir)).filter((n) => n.startsWith('.'))).toEqual([]);
  }, 30_000);

  it('issues from an RSA CA too (the new cert is ECDSA unless --key-type rsa)', async () => {
    const d = join(tmp.dir, 'add-rsa');
    expect((await run(['--out', d, '--key-type', 'rsa', '--services', ''])).code).toBe(0);
    expect((await run(['--out', d, '--add', 'ec1'])).code).toBe(0);
    expect((await run(['--out', d, '--add', 'rsa1', '--key-type', 'rsa'])).code).toBe(0);
    const ca = new X509Certificate(await readFile(join(d, 'ca.crt')));
    for (const [name, type] of [['ec1', 'ec'], ['rsa1', 'rsa']] as const) {
      const x = new X509Certificate(await readFile(join(d, `${name}.crt`)));
      expect(x.publicKey.asymmetricKeyType).toBe(type);
      expect(x.verify(ca.publicKey)).toBe(true);
    }
  }, 30_000);

  it('without a CA in --out: exit 2, one line saying what to do, nothing written', async () => {
    const d = join(tmp.dir, 'add-none');
    const r = await run(['--out', d, '--add', 'payments']);
    expect(r.code).toBe(2);
    expect(r.out).toBe('');
    expect(r.err).toBe(
      `certs: --add issues from the CA in ${d}, but ${join(d, 'ca.crt')} does not exist (create the PKI first: mtls-sidecar certs --out ${d})\n`,
    );
    await expect(readdir(d)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('a CA whose key is missing, does not match, or is no CA: exit 2, one line, nothing written', async () => {
    const d = join(tmp.dir, 'add-bad');
    await cp(dir, d, { recursive: true });
    const names = async () => (await readdir(d)).sort();
    const before = await names();
    const cases: [() => Promise<void>, string][] = [
      [() => cp(join(dir, 'server.key'), join(d, 'ca.key')), `${join(d, 'ca.key')} does not match ${join(d, 'ca.crt')}`],
      [() => cp(join(dir, 'server.crt'), join(d, 'ca.crt')), `${join(d, 'ca.crt')} is not a CA certificate (basicConstraints CA:TRUE)`],
      [() => writeFile(join(d, 'ca.key'), 'not a key'), `${join(d, 'ca.key')} is not an unencrypted PEM private key`],
    ];
    for (const [breakIt, msg] of cases) {
      await cp(join(dir, 'ca.crt'), join(d, 'ca.crt'));
      await cp(join(dir, 'ca.key'), join(d, 'ca.key'));
      await breakIt();
      const r = await run(['--out', d, '--add', 'late']);
      expect(r.code).toBe(2);
      expect(r.out).toBe('');
      expect(r.err).toBe(`certs: ${msg}\n`);
      expect(await names()).toEqual(before);
    }
    await unlink(join(d, 'ca.key'));
    const r = await run(['--out', d, '--add', 'late']);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/^certs: --add issues from the CA in .*, but .*ca\.key does not exist/);
    expect(r.err.split('\n').filter(Boolean)).toHaveLength(1);
  });
});
