import { X509Certificate } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fingerprintCommand } from '../../../src/cli/fingerprint.js';
import { chainPem, createCa, issueLeaf } from '../../../src/pki/devca.js';
import { captureIo, openssl, opensslBuf, tempDir } from './util.js';

let tmp: { dir: string; cleanup: () => Promise<void> };
const p = (f: string) => join(tmp.dir, f);

beforeAll(async () => {
  tmp = await tempDir('fp-cmd-');
  const ca = await createCa({ commonName: 'FP Root', days: 10 });
  const inter = await createCa({ commonName: 'FP Inter', days: 10, parent: ca });
  const leaf = await issueLeaf(inter, {
    commonName: 'orders',
    organization: 'shop',
    uris: ['spiffe://cluster.local/ns/shop/sa/orders'],
    dnsNames: ['orders.shop.svc'],
    notAfter: new Date('2030-01-02T03:04:05Z'),
  });
  const evil = await issueLeaf(ca, { commonName: 'evil"\r\nX-Injected: 1\u001b[31m', uris: ['spiffe://td/ns/a/sa/evil'] });
  await writeFile(p('ca.crt'), ca.certPem);
  await writeFile(p('leaf.crt'), leaf.certPem);
  await writeFile(p('chain.crt'), `# comment lines are fine\n${chainPem(leaf)}`);
  await writeFile(p('evil.crt'), evil.certPem);
  await writeFile(p('leaf.key'), leaf.keyPem);
  await writeFile(p('mixed.pem'), leaf.keyPem + leaf.certPem);
  await writeFile(p('text.txt'), 'just text\n');
  await writeFile(p('garbage.crt'), '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n');
  for (const [name, args] of [
    ['ec', ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-384']],
    ['ed25519', ['-newkey', 'ed25519']],
  ] as const) {
    const r = openssl(['req', '-x509', ...args, '-keyout', p(`${name}.key`), '-out', p(`${name}.crt`), '-nodes', '-subj', `/CN=${name}`, '-addext', `subjectAltName=DNS:${name}.example`, '-days', '2']);
    expect(r.status, r.stderr).toBe(0);
  }
}, 30_000);
afterAll(() => tmp.cleanup());

async function run(args: string[]) {
  const cap = captureIo();
  const code = await fingerprintCommand(args, cap.io);
  return { code, out: cap.out(), err: cap.err() };
}

function opensslSha256(file: string): string {
  return openssl(['x509', '-in', file, '-noout', '-fingerprint', '-sha256']).stdout.trim().replace('sha256 Fingerprint=', '');
}

function opensslSpki(file: string): string {
  const pub = opensslBuf(['x509', '-in', file, '-noout', '-pubkey']);
  const der = opensslBuf(['pkey', '-pubin', '-outform', 'DER'], pub);
  return opensslBuf(['dgst', '-sha256', '-binary'], der).toString('base64');
}

describe('fingerprint', () => {
  it('prints subject, SANs, not-after, sha256 and spki', async () => {
    const r = await run([p('leaf.crt')]);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(r.out).toBe(
      `${p('leaf.crt')}\n` +
        '  subject:   O=shop, CN=orders\n' +
        '  san:       URI:spiffe://cluster.local/ns/shop/sa/orders, DNS:orders.shop.svc\n' +
        '  not-after: 2030-01-02T03:04:05.000Z\n' +
        `  sha256:${opensslSha256(p('leaf.crt'))}\n` +
        `  spki:${opensslSpki(p('leaf.crt'))}\n` +
        // As the audit log's certSha256 and XFCC's Hash write it: one grep finds it everywhere.
        `  hex:   ${opensslSha256(p('leaf.crt')).replaceAll(':', '').toLowerCase()}\n`,
    );
  });

  it('handles several files and several certificates per file', async () => {
    const r = await run([p('ca.crt'), p('chain.crt')]);
    expect(r.code).toBe(0);
    const blocks = r.out.split('\n\n');
    expect(blocks).toHaveLength(3);
    expect(blocks[0]).toMatch(new RegExp(`^${p('ca.crt')}\\n  subject:   CN=FP Root\\n  san:       \\(none\\)`));
    expect(blocks[1]).toMatch(new RegExp(`^${p('chain.crt')} \\[1/2\\]\\n  subject:   O=shop, CN=orders`));
    expect(blocks[2]).toMatch(new RegExp(`^${p('chain.crt')} \\[2/2\\]\\n  subject:   CN=FP Inter`));
    expect(blocks[0]).toContain(`sha256:${opensslSha256(p('ca.crt'))}`);
  });

  it('handles EC and Ed25519 certificates', async () => {
    const r = await run([p('ec.crt'), p('ed25519.crt')]);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    for (const name of ['ec', 'ed25519']) {
      expect(r.out).toContain(`  subject:   CN=${name}\n  san:       DNS:${name}.example\n`);
      expect(r.out).toContain(`  sha256:${opensslSha256(p(`${name}.crt`))}\n  spki:${opensslSpki(p(`${name}.crt`))}\n`);
    }
  });

  it('ignores non-certificate blocks in a file', async () => {
    const r = await run([p('mixed.pem')]);
    expect(r.code).toBe(0);
    expect(r.out).toContain('CN=orders');
    expect(r.out).not.toContain('PRIVATE');
  });

  it('never prints control characters from a certificate', async () => {
    const r = await run([p('evil.crt')]);
    expect(r.code).toBe(0);
    expect(r.out).not.toMatch(/[\r\u001b]/);
    expect(r.out.split('\n')[1]).toMatch(/^ {2}subject: {3}CN=evil/);
    expect(new X509Certificate(await readFile(p('evil.crt'))).subject).toContain('evil');
  });

  it('exit 2, one line per bad file, good files still printed', async () => {
    const r = await run([p('missing.crt'), p('leaf.crt'), p('text.txt'), p('leaf.key'), p('garbage.crt'), tmp.dir]);
    expect(r.code).toBe(2);
    expect(r.out).toContain('CN=orders');
    expect(r.err.split('\n').filter(Boolean)).toEqual([
      `fingerprint: ${p('missing.crt')}: cannot read: no such file`,
      `fingerprint: ${p('text.txt')}: no PEM certificate found (expected -----BEGIN CERTIFICATE-----)`,
      `fingerprint: ${p('leaf.key')}: no PEM certificate found (expected -----BEGIN CERTIFICATE-----)`,
      `fingerprint: ${p('garbage.crt')}: certificate #1 is not a valid X.509 certificate`,
      `fingerprint: ${tmp.dir}: cannot read: is a directory`,
    ]);
  });

  it('usage: --help, no file, unknown option', async () => {
    const help = await run(['--help']);
    expect(help.code).toBe(0);
    expect(help.out).toMatch(/^Usage: mtls-sidecar fingerprint FILE\.\.\./);
    const none = await run([]);
    expect(none.code).toBe(2);
    expect(none.err).toBe('fingerprint: no FILE given (usage: mtls-sidecar fingerprint FILE...)\n');
    const bogus = await run(['--bogus', p('leaf.crt')]);
    expect(bogus.code).toBe(2);
    expect(bogus.err).toBe('fingerprint: unknown option --bogus (see --help)\n');
    expect(bogus.out).toBe('');
    const arg = await run(['--help=yes']);
    expect(arg.code).toBe(2);
    expect(arg.err).toBe("fingerprint: Option '-h, --help' does not take an argument\n");
  });
});
