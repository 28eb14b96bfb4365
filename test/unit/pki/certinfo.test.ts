import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  OID,
  certFields,
  isCaCertificate,
  isSha1Signature,
  issuerNameDer,
  namesEqual,
  serialNumberHex,
  signatureAlgorithmOid,
  subjectNameDer,
  subjectPublicKeyInfoDer,
  usesSha1Signature,
} from '../../../src/pki/certinfo.js';
import { createCa, issueLeaf, selfSigned, type IssuedCert } from '../../../src/pki/devca.js';
import { PkiError } from '../../../src/pki/errors.js';
import { openssl, tempDir } from './util.js';

let root: IssuedCert;
let inter: IssuedCert;
let leaf: IssuedCert;
let sha1Leaf: IssuedCert;
let caTrueLeaf: IssuedCert;
let self: IssuedCert;
let tmp: { dir: string; cleanup: () => Promise<void> };

async function opensslCert(name: string, args: string[]): Promise<Buffer> {
  const crt = join(tmp.dir, `${name}.crt`);
  const r = openssl(['req', '-x509', ...args, '-keyout', join(tmp.dir, `${name}.key`), '-out', crt, '-nodes', '-subj', `/CN=${name}`, '-days', '1']);
  if (r.status !== 0) throw new Error(r.stderr);
  return new X509Certificate(await readFile(crt)).raw;
}

beforeAll(async () => {
  tmp = await tempDir();
  root = await createCa({ commonName: 'Root', days: 10 });
  inter = await createCa({ commonName: 'Inter', days: 10, parent: root });
  [leaf, sha1Leaf, caTrueLeaf, self] = await Promise.all([
    issueLeaf(inter, { commonName: 'leaf', organization: 'shop', uris: ['spiffe://td/ns/a/sa/leaf'] }),
    issueLeaf(root, { commonName: 'sha1', signatureHash: 'sha1' }),
    issueLeaf(root, { commonName: 'ca-true', isCa: true }),
    selfSigned({ commonName: 'self', uris: ['spiffe://td/ns/a/sa/self'] }),
  ]);
});
afterAll(() => tmp.cleanup());

describe('signature algorithm', () => {
  it('reads the outer signature algorithm OID', () => {
    expect(signatureAlgorithmOid(leaf.certDer)).toBe(OID.sha256WithRSAEncryption);
    expect(signatureAlgorithmOid(sha1Leaf.certDer)).toBe(OID.sha1WithRSAEncryption);
  });

  it('flags SHA-1 signatures only', () => {
    expect(isSha1Signature(OID.sha1WithRSAEncryption)).toBe(true);
    expect(isSha1Signature(OID.ecdsaWithSHA1)).toBe(true);
    expect(isSha1Signature(OID.dsaWithSHA1)).toBe(true);
    expect(isSha1Signature(OID.sha1WithRSAOiw)).toBe(true);
    expect(isSha1Signature(OID.sha256WithRSAEncryption)).toBe(false);
    expect(isSha1Signature(OID.ecdsaWithSHA256)).toBe(false);
    expect(isSha1Signature(OID.ed25519)).toBe(false);
    expect(usesSha1Signature(sha1Leaf.certDer)).toBe(true);
    expect(usesSha1Signature(leaf.certDer)).toBe(false);
  });

  it('reads EC and Ed25519 certificates made by openssl', async () => {
    const ec = await opensslCert('ec', ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-sha256']);
    const ec384 = await opensslCert('ec384', ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-384', '-sha384']);
    const ed = await opensslCert('ed', ['-newkey', 'ed25519']);
    expect(signatureAlgorithmOid(ec)).toBe(OID.ecdsaWithSHA256);
    expect(signatureAlgorithmOid(ec384)).toBe(OID.ecdsaWithSHA384);
    expect(signatureAlgorithmOid(ed)).toBe(OID.ed25519);
    expect(usesSha1Signature(ed)).toBe(false);
  });

  it('sees SHA-1 inside RSASSA-PSS parameters (explicit or by default)', async () => {
    const pssSha1 = await opensslCert('pss1', ['-newkey', 'rsa:2048', '-sigopt', 'rsa_padding_mode:pss', '-sha1']);
    const pssSha256 = await opensslCert('pss256', ['-newkey', 'rsa:2048', '-sigopt', 'rsa_padding_mode:pss', '-sha256']);
    expect(signatureAlgorithmOid(pssSha1)).toBe(OID.rsassaPss);
    expect(usesSha1Signature(pssSha1)).toBe(true);
    expect(usesSha1Signature(pssSha256)).toBe(false);
  });
});

describe('names, serial, SPKI', () => {
  it('issuer of a leaf is byte-equal to its CA subject', () => {
    expect(namesEqual(issuerNameDer(leaf.certDer), subjectNameDer(inter.certDer))).toBe(true);
    expect(namesEqual(issuerNameDer(inter.certDer), subjectNameDer(root.certDer))).toBe(true);
    expect(namesEqual(issuerNameDer(leaf.certDer), subjectNameDer(root.certDer))).toBe(false);
    expect(namesEqual(issuerNameDer(self.certDer), subjectNameDer(self.certDer))).toBe(true);
  });

  it('Names are whole DER TLVs and views into the certificate', () => {
    const subject = subjectNameDer(leaf.certDer);
    expect(subject[0]).toBe(0x30);
    expect(subject.buffer).toBe(leaf.certDer.buffer);
    // openssl agrees on the Name's contents.
    const x = new X509Certificate(leaf.certDer);
    expect(x.subject).toBe('O=shop\nCN=leaf');
    expect(subject.toString('latin1')).toContain('shop');
  });

  it('serial matches X509Certificate.serialNumber', () => {
    for (const c of [root, inter, leaf, sha1Leaf, self]) {
      expect(serialNumberHex(c.certDer)).toBe(new X509Certificate(c.certDer).serialNumber);
      expect(c.serialHex).toBe(new X509Certificate(c.certDer).serialNumber);
    }
  });

  it('SPKI DER equals what node:crypto exports', () => {
    const x = new X509Certificate(leaf.certDer);
    expect(subjectPublicKeyInfoDer(leaf.certDer)).toEqual(x.publicKey.export({ type: 'spki', format: 'der' }));
  });

  it('detects CA:TRUE', () => {
    expect(isCaCertificate(root.certDer)).toBe(true);
    expect(isCaCertificate(inter.certDer)).toBe(true);
    expect(isCaCertificate(caTrueLeaf.certDer)).toBe(true);
    expect(isCaCertificate(leaf.certDer)).toBe(false);
    expect(isCaCertificate(self.certDer)).toBe(false);
    expect(new X509Certificate(caTrueLeaf.certDer).ca).toBe(true);
  });

  it('reports the version and extensions', () => {
    const f = certFields(leaf.certDer);
    expect(f.version).toBe(2);
    expect(f.extensions).not.toBeNull();
  });
});

describe('malformed input', () => {
  it('throws ERR_CERT with a readable message', () => {
    const truncated = leaf.certDer.subarray(0, 100);
    for (const bad of [truncated, Buffer.from('hello'), Buffer.concat([leaf.certDer, Buffer.from([0])])]) {
      try {
        signatureAlgorithmOid(bad);
        throw new Error('no throw');
      } catch (e) {
        expect(e).toBeInstanceOf(PkiError);
        expect((e as PkiError).code).toBe('ERR_CERT');
        expect((e as Error).message).toMatch(/^malformed certificate: /);
      }
    }
  });
});
