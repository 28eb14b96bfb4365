import { X509Certificate, createPrivateKey, generateKeyPairSync } from 'node:crypto';
import { createRequire } from 'node:module';
import { lstat, readFile, readdir, stat, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type * as Forge from 'node-forge';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { certFields, issuerNameDer, subjectKeyIdentifier, subjectNameDer } from '../../../src/pki/certinfo.js';
import { parseCrlFile, verifyCrlSignature } from '../../../src/pki/crl.js';
import { children, readTlv } from '../../../src/pki/der.js';
import { chainPem, createCa, createCrl, issueLeaf, loadCa, selfSigned, writePki, type IssuedCert } from '../../../src/pki/devca.js';
import { PkiError } from '../../../src/pki/errors.js';
import { decodePem, encodePem, pemBlocks } from '../../../src/pki/pem.js';
import { openssl, tempDir } from './util.js';

let tmp: { dir: string; cleanup: () => Promise<void> };
let root: IssuedCert;
let inter: IssuedCert;
beforeAll(async () => {
  tmp = await tempDir('devca-');
  root = await createCa({ commonName: 'Dev Root', organization: 'tests', days: 3650 });
  inter = await createCa({ commonName: 'Dev Inter', days: 365, parent: root, pathLen: 0 });
});
afterAll(() => tmp.cleanup());

async function text(ic: IssuedCert): Promise<string> {
  const f = join(tmp.dir, `${ic.serialHex}.crt`);
  await writeFile(f, ic.certPem);
  return openssl(['x509', '-in', f, '-noout', '-text']).stdout;
}

async function expectPkiError(p: Promise<unknown> | (() => unknown), code: string, msg?: RegExp) {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    expect(e).toBeInstanceOf(PkiError);
    expect((e as PkiError).code).toBe(code);
    if (msg) expect((e as Error).message).toMatch(msg);
    return;
  }
  throw new Error(`expected ${code}`);
}

describe('createCa', () => {
  it('root: self-signed CA with critical basicConstraints/keyUsage, SKI = AKI', async () => {
    const t = await text(root);
    expect(t).toMatch(/X509v3 Basic Constraints: critical\n\s+CA:TRUE\n/);
    expect(t).toMatch(/X509v3 Key Usage: critical\n\s+Certificate Sign, CRL Sign\n/);
    const ski = /Subject Key Identifier: \n\s+([0-9A-F:]+)/.exec(t)![1];
    const aki = /Authority Key Identifier: \n\s+([0-9A-F:]+)/.exec(t)![1];
    expect(aki).toBe(ski);
    expect(t).toContain('Signature Algorithm: sha256WithRSAEncryption');
    expect(t).toContain('Public-Key: (2048 bit)');
    const x = new X509Certificate(root.certDer);
    expect(x.subject).toBe('O=tests\nCN=Dev Root');
    expect(x.verify(x.publicKey)).toBe(true);
  });

  it('intermediate: issued by the root, pathLen honoured, AKI = root SKI', async () => {
    const t = await text(inter);
    expect(t).toMatch(/CA:TRUE, pathlen:0/);
    const rootSki = /Subject Key Identifier: \n\s+([0-9A-F:]+)/.exec(await text(root))![1];
    expect(/Authority Key Identifier: \n\s+([0-9A-F:]+)/.exec(t)![1]).toBe(rootSki);
    expect(issuerNameDer(inter.certDer).equals(subjectNameDer(root.certDer))).toBe(true);
    expect(new X509Certificate(inter.certDer).checkIssued(new X509Certificate(root.certDer))).toBe(true);
    expect(inter.parent).toBe(root);
  });

  it('serials are random, positive, 16 bytes', async () => {
    const serials = new Set<string>();
    for (const c of [root, inter, await issueLeaf(root, { commonName: 'a' }), await issueLeaf(root, { commonName: 'b' })]) {
      const f = certFields(c.certDer);
      expect(f.serial.length).toBe(16);
      expect(c.certDer[f.serial.contentStart]! & 0x80).toBe(0);
      expect(c.certDer[f.serial.contentStart]).not.toBe(0);
      expect(c.serialHex).toMatch(/^[0-9A-F]{32}$/);
      serials.add(c.serialHex);
    }
    expect(serials.size).toBe(4);
  });

  it('refuses a non-CA parent', async () => {
    const leaf = await issueLeaf(root, { commonName: 'leaf' });
    await expectPkiError(createCa({ commonName: 'x', days: 1, parent: leaf }), 'ERR_PKI_INPUT', /parent of a CA/);
    await expectPkiError(issueLeaf(leaf, { commonName: 'x' }), 'ERR_PKI_INPUT', /issuer must be a CA/);
  });
});

describe('issueLeaf', () => {
  it('a server leaf: SANs, serverAuth by default, CA:FALSE, digitalSignature+keyEncipherment', async () => {
    const leaf = await issueLeaf(inter, { commonName: 'svc', dnsNames: ['svc.local'], ips: ['10.1.2.3', '2001:db8::1', '::ffff:192.0.2.1'] });
    const t = await text(leaf);
    expect(t).toMatch(/Basic Constraints: critical\n\s+CA:FALSE/);
    expect(t).toMatch(/Key Usage: critical\n\s+Digital Signature, Key Encipherment\n/);
    expect(t).toMatch(/Extended Key Usage: \n\s+TLS Web Server Authentication\n/);
    const x = new X509Certificate(leaf.certDer);
    expect(x.subjectAltName).toBe(
      'DNS:svc.local, IP Address:10.1.2.3, IP Address:2001:DB8:0:0:0:0:0:1, IP Address:0:0:0:0:0:FFFF:C000:201',
    );
    expect(x.checkIP('2001:db8::1')).toBe('2001:db8::1');
    expect(chainPem(leaf)).toBe(leaf.certPem + inter.certPem);
    expect(chainPem(inter)).toBe(inter.certPem);
  });

  it('a client leaf: URI SAN, clientAuth by default, O/OU/CN as UTF8String', async () => {
    const leaf = await issueLeaf(root, {
      commonName: 'Zoë',
      organization: 'shop',
      organizationalUnit: 'backend',
      uris: ['spiffe://cluster.local/ns/shop/sa/orders'],
    });
    const x = new X509Certificate(leaf.certDer);
    expect(x.subject).toBe('O=shop\nOU=backend\nCN=Zoë');
    expect(x.keyUsage).toEqual(['1.3.6.1.5.5.7.3.2']);
    // Every attribute value is a UTF8String (tag 0x0c).
    const name = subjectNameDer(leaf.certDer);
    for (const rdn of children(name, readTlv(name, 0))) {
      const atv = readTlv(name, rdn.contentStart);
      const [, value] = children(name, atv);
      expect(value!.tag).toBe(0x0c);
    }
  });

  it('eku: explicit both, or none at all', async () => {
    const both = await issueLeaf(root, { commonName: 'b', eku: ['serverAuth', 'clientAuth'] });
    expect(new X509Certificate(both.certDer).keyUsage).toEqual(['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2']);
    const none = await issueLeaf(root, { commonName: 'n', eku: [] });
    expect(await text(none)).not.toContain('Extended Key Usage');
  });

  it('validity: days, explicit dates, GeneralizedTime after 2049', async () => {
    const notBefore = new Date('2040-01-01T00:00:00Z');
    const notAfter = new Date('2060-01-01T00:00:00Z');
    const leaf = await issueLeaf(root, { commonName: 'long', notBefore, notAfter });
    const x = new X509Certificate(leaf.certDer);
    expect(x.validFromDate).toEqual(notBefore);
    expect(x.validToDate).toEqual(notAfter);
    const f = certFields(leaf.certDer);
    expect(children(leaf.certDer, f.validity).map((t) => t.tag)).toEqual([0x17, 0x18]);
    const d = await issueLeaf(root, { commonName: 'd', days: 10 });
    const xd = new X509Certificate(d.certDer);
    expect(Math.round((xd.validToDate.getTime() - Date.now()) / 86400e3)).toBe(10);
    expect(xd.validFromDate.getTime()).toBeLessThan(Date.now()); // backdated for clock skew
  });

  it('test-only knobs: CA:TRUE leaf, RSA-1024, SHA-1', async () => {
    const bad = await issueLeaf(root, { commonName: 'bad', isCa: true, keyBits: 1024, signatureHash: 'sha1' });
    const t = await text(bad);
    expect(t).toMatch(/Basic Constraints: critical\n\s+CA:TRUE/);
    expect(t).toContain('Public-Key: (1024 bit)');
    expect(t).toContain('Signature Algorithm: sha1WithRSAEncryption');
  });

  it('refuses bad input', async () => {
    await expectPkiError(issueLeaf(root, { commonName: 'x', ips: ['300.1.1.1'] }), 'ERR_PKI_INPUT', /invalid IP/);
    await expectPkiError(issueLeaf(root, { commonName: 'x', ips: ['fe80::1%eth0'] }), 'ERR_PKI_INPUT', /invalid IP/);
    await expectPkiError(issueLeaf(root, { commonName: 'x', dnsNames: ['a b'] }), 'ERR_PKI_INPUT', /DNS/);
    await expectPkiError(issueLeaf(root, { commonName: 'x', uris: ['no-scheme'] }), 'ERR_PKI_INPUT', /URI/);
    await expectPkiError(issueLeaf(root, { commonName: 'x', keyBits: 512 }), 'ERR_PKI_INPUT', /1024\.\.8192/);
    await expectPkiError(issueLeaf(root, { commonName: 'x', days: 0 }), 'ERR_PKI_INPUT', /days/);
    const now = new Date();
    await expectPkiError(issueLeaf(root, { commonName: 'x', notBefore: now, notAfter: now }), 'ERR_PKI_INPUT', /notAfter/);
  });
});

describe('selfSigned', () => {
  it('is its own issuer, CA:FALSE, verifiable with its own key', async () => {
    const s = await selfSigned({ commonName: 'pinned', uris: ['spiffe://td/ns/a/sa/pinned'] });
    const x = new X509Certificate(s.certDer);
    expect(x.issuer).toBe(x.subject);
    expect(x.verify(x.publicKey)).toBe(true);
    expect(x.ca).toBe(false);
    expect(s.parent).toBeNull();
    expect(chainPem(s)).toBe(s.certPem);
    const t = await text(s);
    const ski = /Subject Key Identifier: \n\s+([0-9A-F:]+)/.exec(t)![1];
    expect(/Authority Key Identifier: \n\s+([0-9A-F:]+)/.exec(t)![1]).toBe(ski);
  });
});

describe('ECDSA P-256 keys', () => {
  let ecRoot: IssuedCert;
  beforeAll(async () => {
    ecRoot = await createCa({ commonName: 'EC Root', days: 365, keyType: 'ecdsa' });
  });

  /** The AlgorithmIdentifier SEQUENCEs (TBS and outer) and how many fields each has. */
  function sigAlgFieldCounts(der: Buffer): number[] {
    const f = certFields(der);
    const [, , tbsSig] = children(der, f.tbs);
    return [children(der, tbsSig!).length, children(der, f.signatureAlgorithm).length];
  }

  it('CA and leaf: P-256 keys, ecdsa-with-SHA256 without parameters (RFC 5758), SKI/AKI chained', async () => {
    const leaf = await issueLeaf(ecRoot, { commonName: 'w', uris: ['spiffe://td/ns/a/sa/w'], keyType: 'ecdsa' });
    for (const ic of [ecRoot, leaf]) {
      const x = new X509Certificate(ic.certDer);
      expect(x.publicKey.asymmetricKeyType).toBe('ec');
      expect(x.publicKey.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
      expect(x.verify(new X509Certificate(ecRoot.certDer).publicKey)).toBe(true);
      expect(x.checkPrivateKey(createPrivateKey(ic.keyPem))).toBe(true);
      expect(ic.keyPem).toMatch(/^-----BEGIN PRIVATE KEY-----\n/); // PKCS#8
      expect(sigAlgFieldCounts(ic.certDer)).toEqual([1, 1]);
      expect(ic.key).toBeNull();
    }
    const t = await text(leaf);
    expect(t).toContain('Signature Algorithm: ecdsa-with-SHA256');
    expect(t).toContain('NIST CURVE: P-256');
    // Key transport is RSA only (RFC 5480 §3).
    expect(t).toMatch(/Key Usage: critical\n\s+Digital Signature\n/);
    const rootSki = /Subject Key Identifier: \n\s+([0-9A-F:]+)/.exec(await text(ecRoot))![1];
    expect(/Authority Key Identifier: \n\s+([0-9A-F:]+)/.exec(t)![1]).toBe(rootSki);
    const f = join(tmp.dir, 'ec-root.crt');
    await writeFile(f, ecRoot.certPem);
    const lf = join(tmp.dir, 'ec-leaf.crt');
    await writeFile(lf, leaf.certPem);
    expect(openssl(['verify', '-CAfile', f, '-purpose', 'sslclient', lf]).status).toBe(0);
  });

  it('RSA and ECDSA mix: an ECDSA CA signs an RSA leaf and the reverse; an ECDSA CA signs its CRL', async () => {
    const rsaLeaf = await issueLeaf(ecRoot, { commonName: 'r' });
    expect(new X509Certificate(rsaLeaf.certDer).publicKey.asymmetricKeyType).toBe('rsa');
    expect(new X509Certificate(rsaLeaf.certDer).verify(new X509Certificate(ecRoot.certDer).publicKey)).toBe(true);
    expect(await text(rsaLeaf)).toContain('Signature Algorithm: ecdsa-with-SHA256');
    const ecLeaf = await issueLeaf(root, { commonName: 'e', keyType: 'ecdsa' });
    expect(new X509Certificate(ecLeaf.certDer).verify(new X509Certificate(root.certDer).publicKey)).toBe(true);
    expect(sigAlgFieldCounts(ecLeaf.certDer)).toEqual([2, 2]); // sha256WithRSAEncryption, NULL
    const [crl] = parseCrlFile(createCrl(ecRoot, [{ serialHex: rsaLeaf.serialHex }]));
    expect(verifyCrlSignature(crl!, new X509Certificate(ecRoot.certDer).publicKey)).toBe(true);
  });

  it('keyBits is for RSA only', async () => {
    await expectPkiError(issueLeaf(root, { commonName: 'x', keyType: 'ecdsa', keyBits: 2048 }), 'ERR_PKI_INPUT', /RSA keys only/);
  });

  it('RSA certificates are byte for byte what forge itself encodes (the encoder is ours, for ECDSA)', async () => {
    const forge = createRequire(import.meta.url)('node-forge') as typeof Forge;
    const leaf = await issueLeaf(inter, { commonName: 'l', uris: ['spiffe://td/x'], dnsNames: ['a.b'], ips: ['::1'] });
    for (const ic of [root, inter, leaf, await selfSigned({ commonName: 's' })]) {
      const model = ic.cert;
      model.tbsCertificate = undefined as unknown as Forge.asn1.Asn1; // forge re-encodes the TBS from its model
      expect(Buffer.from(forge.asn1.toDer(forge.pki.certificateToAsn1(model)).getBytes(), 'binary').equals(ic.certDer)).toBe(true);
    }
  });
});

describe('loadCa', () => {
  it('issues from a CA read from its files: AKI = the CA SKI, chain verifies, for RSA and ECDSA CAs', async () => {
    const ecRoot = await createCa({ commonName: 'EC', days: 30, keyType: 'ecdsa' });
    for (const ca of [root, ecRoot]) {
      const loaded = loadCa(ca.certPem, ca.keyPem);
      expect(loaded.certDer.equals(ca.certDer)).toBe(true);
      const leaf = await issueLeaf(loaded, { commonName: 'late', uris: ['spiffe://td/ns/a/sa/late'], keyType: 'ecdsa' });
      const x = new X509Certificate(leaf.certDer);
      expect(x.checkIssued(new X509Certificate(ca.certDer))).toBe(true);
      expect(x.verify(new X509Certificate(ca.certDer).publicKey)).toBe(true);
      expect(issuerNameDer(leaf.certDer).equals(subjectNameDer(ca.certDer))).toBe(true);
      const t = await text(leaf);
      expect(/Authority Key Identifier: \n\s+([0-9A-F:]+)/.exec(t)![1]!.replaceAll(':', '')).toBe(
        subjectKeyIdentifier(ca.certDer)!.toString('hex').toUpperCase(),
      );
      expect(chainPem(leaf)).toBe(leaf.certPem);
    }
  });

  it('refuses what cannot issue, naming the file', async () => {
    const names = { cert: 'd/ca.crt', key: 'd/ca.key' };
    const leaf = await issueLeaf(root, { commonName: 'not-a-ca' });
    const other = await createCa({ commonName: 'Other', days: 30, keyType: 'ecdsa' });
    const ed = generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
    const cases: [string, string, RegExp][] = [
      ['', root.keyPem, /^d\/ca\.crt holds no PEM certificate$/],
      [root.keyPem, root.keyPem, /^d\/ca\.crt holds no PEM certificate$/],
      [leaf.certPem, leaf.keyPem, /^d\/ca\.crt is not a CA certificate/],
      [root.certPem, 'junk', /^d\/ca\.key is not an unencrypted PEM private key$/],
      [root.certPem, root.certPem, /^d\/ca\.key is not an unencrypted PEM private key$/],
      [root.certPem, other.keyPem, /^d\/ca\.key does not match d\/ca\.crt$/],
      [root.certPem, inter.keyPem, /^d\/ca\.key does not match d\/ca\.crt$/],
      [root.certPem, ed, /^d\/ca\.key: the dev CA signs with rsa or ec keys, not ed25519$/],
    ];
    for (const [cert, key, msg] of cases) await expectPkiError(() => loadCa(cert, key, names), 'ERR_CA_FILES', msg);
  });
});

describe('writePki', () => {
  it('writes keys 0600 and the rest 0644, creating the folder', async () => {
    const dir = join(tmp.dir, 'w1', 'nested');
    const written = await writePki(dir, [
      { name: 'a.crt', contents: 'cert' },
      { name: 'a.key', contents: 'key' },
      { name: 'token', contents: 'secret', secret: true },
      { name: 'b.key', contents: 'not secret after all', secret: false },
    ]);
    expect(written).toEqual(['a.crt', 'a.key', 'token', 'b.key'].map((f) => join(dir, f)));
    const mode = async (f: string) => (await stat(join(dir, f))).mode & 0o777;
    expect(await mode('a.crt')).toBe(0o644);
    expect(await mode('a.key')).toBe(0o600);
    expect(await mode('token')).toBe(0o600);
    expect(await mode('b.key')).toBe(0o644);
    expect(await readFile(join(dir, 'a.key'), 'utf8')).toBe('key');
  });

  it('refuses existing files (even dangling symlinks) before writing anything', async () => {
    const dir = join(tmp.dir, 'w2');
    await writePki(dir, [{ name: 'b.crt', contents: 'old' }]);
    await symlink(join(dir, 'nowhere'), join(dir, 'link.key'));
    await expectPkiError(
      writePki(dir, [
        { name: 'a.crt', contents: 'x' },
        { name: 'b.crt', contents: 'new' },
      ]),
      'ERR_EXISTS',
      new RegExp(`^${join(dir, 'b.crt')} already exists \\(use --force to overwrite\\)$`),
    );
    await expectPkiError(writePki(dir, [{ name: 'link.key', contents: 'x' }]), 'ERR_EXISTS', /link\.key/);
    expect((await readdir(dir)).sort()).toEqual(['b.crt', 'link.key']);
    expect(await readFile(join(dir, 'b.crt'), 'utf8')).toBe('old');
  });

  it('force replaces files (and symlinks) atomically with exact modes', async () => {
    const dir = join(tmp.dir, 'w3');
    await writePki(dir, [{ name: 'k.key', contents: 'old', secret: false }]);
    expect((await stat(join(dir, 'k.key'))).mode & 0o777).toBe(0o644);
    await writeFile(join(tmp.dir, 'target'), 'do not touch');
    await symlink(join(tmp.dir, 'target'), join(dir, 's.key'));
    await writePki(
      dir,
      [
        { name: 'k.key', contents: 'new' },
        { name: 's.key', contents: 'replaced' },
      ],
      { force: true },
    );
    expect(await readFile(join(dir, 'k.key'), 'utf8')).toBe('new');
    expect((await stat(join(dir, 'k.key'))).mode & 0o777).toBe(0o600);
    expect((await lstat(join(dir, 's.key'))).isSymbolicLink()).toBe(false);
    expect(await readFile(join(tmp.dir, 'target'), 'utf8')).toBe('do not touch');
    expect((await readdir(dir)).sort()).toEqual(['k.key', 's.key']);
  });

  it('refuses file names that are paths', async () => {
    for (const name of ['../x', 'a/b', '', '..', 'a\\b']) {
      await expectPkiError(writePki(tmp.dir, [{ name, contents: 'x' }]), 'ERR_PKI_INPUT', /invalid file name/);
    }
  });
});

describe('pem', () => {
  it('encodes 64-column PEM that decodes back', () => {
    const der = Buffer.from(Array.from({ length: 200 }, (_, i) => i));
    const pem = encodePem(der, 'TEST');
    expect(pem.split('\n').every((l) => l.length <= 64)).toBe(true);
    expect(pemBlocks(pem, 'TEST')).toEqual([der]);
    expect(pemBlocks(pem, 'OTHER')).toEqual([]);
  });

  it('reports blocks with invalid base64', () => {
    const r = decodePem('-----BEGIN A-----\nAA=A\n-----END A-----\n-----BEGIN B-----\nAAAA\n-----END B-----\n');
    expect(r.invalid).toEqual(['A']);
    expect(r.blocks.map((b) => b.label)).toEqual(['B']);
    // mismatched END labels are not a block
    expect(decodePem('-----BEGIN A-----\nAAAA\n-----END B-----\n').blocks).toEqual([]);
  });
});
