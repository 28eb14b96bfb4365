import { X509Certificate, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OID, subjectNameDer } from '../../../src/pki/certinfo.js';
import {
  crlIssuedBy,
  crlTimeStatus,
  crlToPem,
  parseCrlDer,
  parseCrlFile,
  verifyCrlSignature,
  type ParsedCrl,
} from '../../../src/pki/crl.js';
import { children, readRoot } from '../../../src/pki/der.js';
import { chainPem, createCa, createCrl, issueLeaf, type IssuedCert } from '../../../src/pki/devca.js';
import { PkiError } from '../../../src/pki/errors.js';
import { der, oidDer, openssl, tempDir } from './util.js';

let tmp: { dir: string; cleanup: () => Promise<void> };
let root: IssuedCert;
let inter: IssuedCert;
let other: IssuedCert;
let good: IssuedCert;
let revoked: IssuedCert;
let interLeaf: IssuedCert;
let rootCrlPem: string;
let interCrlPem: string;
const p = (name: string) => join(tmp.dir, name);
const pub = (c: IssuedCert) => new X509Certificate(c.certDer).publicKey;

function expectCode(fn: () => unknown, code: string, msg?: RegExp): void {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(PkiError);
    expect((e as PkiError).code).toBe(code);
    if (msg) expect((e as Error).message).toMatch(msg);
    return;
  }
  throw new Error(`expected ${code}`);
}

beforeAll(async () => {
  tmp = await tempDir();
  [root, other] = await Promise.all([
    createCa({ commonName: 'CRL Root', organization: 'tests', days: 100 }),
    createCa({ commonName: 'Other Root', days: 100 }),
  ]);
  inter = await createCa({ commonName: 'CRL Inter', days: 100, parent: root });
  [good, revoked, interLeaf] = await Promise.all([
    issueLeaf(root, { commonName: 'good', uris: ['spiffe://td/ns/a/sa/good'] }),
    issueLeaf(root, { commonName: 'revoked', uris: ['spiffe://td/ns/a/sa/revoked'] }),
    issueLeaf(inter, { commonName: 'inter-leaf', uris: ['spiffe://td/ns/a/sa/inter-leaf'] }),
  ]);
  rootCrlPem = createCrl(root, [{ serialHex: revoked.serialHex, date: new Date('2024-05-06T07:08:09Z') }, { serialHex: '00FF' }], {
    crlNumber: 42n,
  });
  interCrlPem = createCrl(inter, []);
  await writeFile(p('root.crt'), root.certPem);
  await writeFile(p('inter.crt'), inter.certPem);
  await writeFile(p('other.crt'), other.certPem);
  await writeFile(p('good.crt'), good.certPem);
  await writeFile(p('revoked.crt'), revoked.certPem);
  await writeFile(p('inter-leaf.crt'), interLeaf.certPem);
  await writeFile(p('root.crl'), rootCrlPem);
  await writeFile(p('inter.crl'), interCrlPem);
});
afterAll(() => tmp.cleanup());

describe('createCrl -> parseCrlFile round trip', () => {
  it('parses what createCrl writes', () => {
    const [crl, ...rest] = parseCrlFile(rootCrlPem);
    expect(rest).toHaveLength(0);
    const c = crl!;
    expect(c.version).toBe(2);
    expect(c.revokedSerials).toEqual(new Set([revoked.serialHex, 'FF']));
    expect(c.revokedSerials.has(new X509Certificate(revoked.certDer).serialNumber)).toBe(true);
    expect(c.revokedSerials.has(good.serialHex)).toBe(false);
    expect(c.issuerDer.equals(subjectNameDer(root.certDer))).toBe(true);
    expect(c.signatureOid).toBe(OID.sha256WithRSAEncryption);
    expect(c.crlNumber).toBe('2A');
    expect(c.authorityKeyId?.toString('binary')).toBe(root.keyId);
    expect(c.scope).toBe('all');
    expect(c.nextUpdate!.getTime() - c.thisUpdate.getTime()).toBe(30 * 24 * 3600 * 1000);
    expect(Math.abs(c.thisUpdate.getTime() - (Date.now() - 5 * 60 * 1000))).toBeLessThan(60_000);
    expect(crlTimeStatus(c)).toBe('current');
    // tbs is the exact slice of the input, not a re-encoding.
    expect(c.tbs.buffer).toBe(c.der.buffer);
    expect(crlToPem(c)).toBe(rootCrlPem);
  });

  it('an empty CRL omits revokedCertificates entirely', () => {
    const c = parseCrlFile(interCrlPem)[0]!;
    expect(c.revokedSerials.size).toBe(0);
    // version, signature, issuer, thisUpdate, nextUpdate, [0] extensions: no SEQUENCE OF.
    const tbsKids = children(c.tbs, readRoot(c.tbs));
    expect(tbsKids.map((k) => k.tag)).toEqual([0x02, 0x30, 0x30, 0x17, 0x17, 0xa0]);
    expect(openssl(['crl', '-in', p('inter.crl'), '-noout', '-text']).stdout).toContain('No Revoked Certificates');
  });

  it('uses GeneralizedTime from 2050 and honours explicit dates', () => {
    const thisUpdate = new Date('2049-12-31T23:00:00Z');
    const nextUpdate = new Date('2050-06-01T00:00:00Z');
    const c = parseCrlFile(createCrl(root, [], { thisUpdate, nextUpdate }))[0]!;
    expect(c.thisUpdate).toEqual(thisUpdate);
    expect(c.nextUpdate).toEqual(nextUpdate);
    const tbsKids = children(c.tbs, readRoot(c.tbs));
    expect(tbsKids.map((k) => k.tag).slice(3, 5)).toEqual([0x17, 0x18]);
    expect(crlTimeStatus(c, new Date('2049-01-01T00:00:00Z'))).toBe('not_yet_valid');
    expect(crlTimeStatus(c, new Date('2050-01-01T00:00:00Z'))).toBe('current');
    expect(crlTimeStatus(c, nextUpdate)).toBe('expired');
  });

  it('refuses bad options', () => {
    const now = new Date();
    expectCode(() => createCrl(root, [], { thisUpdate: now, nextUpdate: now }), 'ERR_PKI_INPUT');
    expectCode(() => createCrl(good, []), 'ERR_PKI_INPUT', /only a CA/);
    expectCode(() => createCrl(root, [{ serialHex: 'xyz' }]), 'ERR_PKI_INPUT', /serial/);
  });
});

describe('openssl accepts the CRLs', () => {
  it('`openssl crl -CAfile` verifies the signature', () => {
    for (const [crl, ca] of [
      ['root.crl', 'root.crt'],
      ['inter.crl', 'inter.crt'],
    ]) {
      const r = openssl(['crl', '-in', p(crl!), '-CAfile', p(ca!), '-noout']);
      expect(r.status, r.stderr).toBe(0);
      expect(r.stderr + r.stdout).toMatch(/verify OK/);
    }
    const wrong = openssl(['crl', '-in', p('root.crl'), '-CAfile', p('other.crt'), '-noout']);
    expect(wrong.stderr + wrong.stdout).not.toMatch(/verify OK/);
  });

  it('`openssl verify -crl_check` refuses the revoked cert only', () => {
    const verify = (leaf: string) =>
      openssl(['verify', '-crl_check', '-CAfile', p('root.crt'), '-CRLfile', p('root.crl'), p(leaf)]);
    const ok = verify('good.crt');
    expect(ok.status, ok.stderr).toBe(0);
    expect(ok.stdout).toMatch(/: OK/);
    const bad = verify('revoked.crt');
    expect(bad.status).not.toBe(0);
    expect(bad.stdout + bad.stderr).toMatch(/certificate revoked/);
  });

  it('`openssl verify -crl_check_all` through the intermediate', async () => {
    await writeFile(p('inter-chain.crt'), chainPem(interLeaf));
    const r = openssl([
      'verify',
      '-crl_check_all',
      '-CAfile',
      p('root.crt'),
      '-untrusted',
      p('inter.crt'),
      '-CRLfile',
      p('root.crl'),
      '-CRLfile',
      p('inter.crl'),
      p('inter-leaf.crt'),
    ]);
    expect(r.status, r.stdout + r.stderr).toBe(0);
  });
});

describe('parseCrlFile formats', () => {
  it('reads several PEM CRLs from one file, ignoring other blocks', () => {
    const both = parseCrlFile(Buffer.from(`${good.certPem}${rootCrlPem}\n${interCrlPem}`));
    expect(both).toHaveLength(2);
    expect(both[0]!.revokedSerials.size).toBe(2);
    expect(both[1]!.issuerDer.equals(subjectNameDer(inter.certDer))).toBe(true);
  });

  it('reads DER (as openssl writes it)', async () => {
    const r = openssl(['crl', '-in', p('root.crl'), '-outform', 'DER', '-out', p('root.crl.der')]);
    expect(r.status).toBe(0);
    const der = await readFile(p('root.crl.der'));
    const [c] = parseCrlFile(der);
    expect(c!.revokedSerials).toEqual(parseCrlFile(rootCrlPem)[0]!.revokedSerials);
    expect(verifyCrlSignature(c!, pub(root))).toBe(true);
  });

  it('tolerates CRLF line endings', () => {
    expect(parseCrlFile(rootCrlPem.replace(/\n/g, '\r\n'))).toHaveLength(1);
  });

  it('refuses files without a CRL', () => {
    expectCode(() => parseCrlFile('hello world'), 'ERR_CRL_PEM', /neither PEM/);
    expectCode(() => parseCrlFile(Buffer.alloc(0)), 'ERR_CRL_PEM');
    expectCode(() => parseCrlFile(good.certPem), 'ERR_CRL_PEM', /found CERTIFICATE/);
    expectCode(
      () => parseCrlFile('-----BEGIN X509 CRL-----\nnot base64!\n-----END X509 CRL-----\n'),
      'ERR_CRL_PEM',
      /invalid base64/,
    );
  });

  it('reports malformed CRLs as ERR_CRL, naming the block', () => {
    const truncated = `-----BEGIN X509 CRL-----\n${parseCrlFile(rootCrlPem)[0]!.der.subarray(0, 50).toString('base64')}\n-----END X509 CRL-----\n`;
    expectCode(() => parseCrlFile(truncated), 'ERR_CRL', /^malformed CRL: /);
    expectCode(() => parseCrlFile(rootCrlPem + truncated), 'ERR_CRL', /^CRL #2: malformed CRL/);
    expectCode(() => parseCrlDer(good.certDer), 'ERR_CRL', /malformed CRL/);
  });
});

describe('verifyCrlSignature', () => {
  let crl: ParsedCrl;
  beforeAll(() => {
    crl = parseCrlFile(rootCrlPem)[0]!;
  });

  it('accepts the issuing CA key and refuses others', () => {
    expect(verifyCrlSignature(crl, pub(root))).toBe(true);
    expect(verifyCrlSignature(crl, pub(other))).toBe(false);
    expect(verifyCrlSignature(crl, pub(inter))).toBe(false);
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey;
    expect(verifyCrlSignature(crl, ec)).toBe(false);
  });

  it('detects a modified CRL', () => {
    const der = Buffer.from(crl.der);
    // Flip a byte inside the revoked serial of the first entry (structure stays valid).
    const idx = der.indexOf(Buffer.from(revoked.serialHex, 'hex'));
    expect(idx).toBeGreaterThan(0);
    der[idx + 3] = der[idx + 3]! ^ 0x01;
    const tampered = parseCrlDer(der);
    expect(tampered.revokedSerials.has(revoked.serialHex)).toBe(false);
    expect(verifyCrlSignature(tampered, pub(root))).toBe(false);
  });

  it('crlIssuedBy checks both the Name and the signature', () => {
    expect(crlIssuedBy(crl, new X509Certificate(root.certDer))).toBe(true);
    expect(crlIssuedBy(crl, new X509Certificate(other.certDer))).toBe(false);
    expect(crlIssuedBy(parseCrlFile(interCrlPem)[0]!, new X509Certificate(inter.certDer))).toBe(true);
    expect(crlIssuedBy(parseCrlFile(interCrlPem)[0]!, new X509Certificate(root.certDer))).toBe(false);
  });
});

/** CRLs signed by openssl's own CA code: EC, Ed25519, other digests, entry extensions. */
describe('CRLs generated by `openssl ca -gencrl`', () => {
  async function opensslCrl(name: string, keyArgs: string[], md: string | null) {
    const dir = p(`ossl-${name}`);
    await mkdir(dir);
    await writeFile(
      join(dir, 'ca.cnf'),
      `[ ca ]\ndefault_ca = d\n[ d ]\ndatabase = ${dir}/index.txt\ncrlnumber = ${dir}/crlnumber\ndefault_md = default\ndefault_crl_days = 7\ncrl_extensions = ext\n[ ext ]\nauthorityKeyIdentifier = keyid:always\n`,
    );
    await writeFile(
      join(dir, 'index.txt'),
      'R\t301231235959Z\t240101000000Z,keyCompromise\t0123AB\tunknown\t/CN=x\n' +
        'V\t301231235959Z\t\t05\tunknown\t/CN=y\n' +
        'R\t301231235959Z\t240102000000Z\t00FF\tunknown\t/CN=z\n',
    );
    await writeFile(join(dir, 'crlnumber'), '1000\n');
    let r = openssl(['req', '-x509', ...keyArgs, '-keyout', join(dir, 'ca.key'), '-out', join(dir, 'ca.crt'), '-nodes', '-subj', `/O=tests/CN=${name} CA`, '-days', '10']);
    expect(r.status, r.stderr).toBe(0);
    r = openssl(['ca', '-gencrl', '-config', join(dir, 'ca.cnf'), '-keyfile', join(dir, 'ca.key'), '-cert', join(dir, 'ca.crt'), '-out', join(dir, 'crl.pem'), ...(md ? ['-md', md] : [])]);
    expect(r.status, r.stderr).toBe(0);
    return {
      ca: new X509Certificate(await readFile(join(dir, 'ca.crt'))),
      crl: parseCrlFile(await readFile(join(dir, 'crl.pem')))[0]!,
    };
  }

  const cases: [string, string[], string | null, string][] = [
    ['rsa-sha384', ['-newkey', 'rsa:2048'], 'sha384', OID.sha384WithRSAEncryption],
    ['rsa-sha512', ['-newkey', 'rsa:2048'], 'sha512', OID.sha512WithRSAEncryption],
    ['p256', ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'], 'sha256', OID.ecdsaWithSHA256],
    ['p384', ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-384'], 'sha384', OID.ecdsaWithSHA384],
    ['p521', ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-521'], 'sha512', OID.ecdsaWithSHA512],
    ['ed25519', ['-newkey', 'ed25519'], null, OID.ed25519],
  ];
  for (const [name, keyArgs, md, oid] of cases) {
    it(`parses and verifies ${name}`, async () => {
      const { ca, crl } = await opensslCrl(name, keyArgs, md);
      expect(crl.signatureOid).toBe(oid);
      expect(crl.revokedSerials).toEqual(new Set(['0123AB', 'FF']));
      expect(crl.crlNumber).toBe('1000');
      expect(crl.issuerDer.equals(subjectNameDer(ca.raw))).toBe(true);
      expect(verifyCrlSignature(crl, ca.publicKey)).toBe(true);
      expect(crlIssuedBy(crl, ca)).toBe(true);
      expect(crl.nextUpdate!.getTime() - crl.thisUpdate.getTime()).toBe(7 * 24 * 3600 * 1000);
    });
  }

  it('refuses SHA-1 and RSA-PSS signed CRLs with ERR_CRL_ALG', async () => {
    const { ca, crl } = await opensslCrl('rsa-sha1', ['-newkey', 'rsa:2048'], 'sha1');
    expect(crl.signatureOid).toBe(OID.sha1WithRSAEncryption);
    expectCode(() => verifyCrlSignature(crl, ca.publicKey), 'ERR_CRL_ALG', /unsupported CRL signature algorithm 1\.2\.840\.113549\.1\.1\.5/);
  });
});

/** Hand-built CRLs for the structural rules (signed with Ed25519 for brevity). */
describe('synthetic CRLs', () => {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const ed25519Alg = der(0x30, oidDer(OID.ed25519));
  const name = der(0x30, der(0x31, der(0x30, oidDer('2.5.4.3'), der(0x0c, Buffer.from('Synthetic')))));
  const utc = (s: string) => der(0x17, Buffer.from(s));
  const int = (...b: number[]) => der(0x02, Buffer.from(b));
  const ext = (oid: string, critical: boolean, value: Buffer) =>
    der(0x30, oidDer(oid), ...(critical ? [der(0x01, Buffer.from([0xff]))] : []), der(0x04, value));
  const entry = (serial: number[], ...exts: Buffer[]) =>
    der(0x30, int(...serial), utc('240101000000Z'), ...(exts.length ? [der(0x30, ...exts)] : []));

  function build(opts: { version?: Buffer | null; alg?: Buffer; outerAlg?: Buffer; next?: boolean; revoked?: Buffer[]; exts?: Buffer[]; key?: KeyObject }) {
    const tbs = der(
      0x30,
      ...(opts.version === null ? [] : [opts.version ?? int(1)]),
      opts.alg ?? ed25519Alg,
      name,
      utc('240101000000Z'),
      ...(opts.next === false ? [] : [utc('300101000000Z')]),
      ...(opts.revoked ? [der(0x30, ...opts.revoked)] : []),
      ...(opts.exts ? [der(0xa0, der(0x30, ...opts.exts))] : []),
    );
    const sig = sign(null, tbs, opts.key ?? privateKey);
    return der(0x30, tbs, opts.outerAlg ?? opts.alg ?? ed25519Alg, der(0x03, Buffer.from([0]), sig));
  }

  it('a v1 CRL without version, nextUpdate or extensions', () => {
    const c = parseCrlDer(build({ version: null, next: false, revoked: [entry([7]), entry([0x00, 0x80]), entry([0xfe])] }));
    expect(c.version).toBe(1);
    expect(c.nextUpdate).toBeNull();
    expect(crlTimeStatus(c, new Date('2100-01-01T00:00:00Z'))).toBe('current');
    expect(c.revokedSerials).toEqual(new Set(['07', '80', '-02'])); // 0xFE is a negative serial
    expect(verifyCrlSignature(c, publicKey)).toBe(true);
  });

  it('known entry extensions and non-critical unknown extensions are fine', () => {
    const reason = ext('2.5.29.21', false, der(0x0a, Buffer.from([1])));
    const c = parseCrlDer(
      build({ revoked: [entry([1], reason)], exts: [ext('1.2.3.4', false, der(0x05)), ext('2.5.29.20', false, int(5))] }),
    );
    expect(c.crlNumber).toBe('05');
    expect(c.revokedSerials.has('01')).toBe(true);
  });

  it('refuses delta, indirect and unknown-critical CRLs', () => {
    expectCode(() => parseCrlDer(build({ exts: [ext('2.5.29.27', true, int(3))] })), 'ERR_CRL_UNSUPPORTED', /delta/);
    expectCode(() => parseCrlDer(build({ exts: [ext('1.2.3.4', true, der(0x05))] })), 'ERR_CRL_UNSUPPORTED', /1\.2\.3\.4/);
    const certIssuer = ext('2.5.29.29', true, der(0x30, der(0x82, Buffer.from('x.example'))));
    expectCode(() => parseCrlDer(build({ revoked: [entry([1], certIssuer)] })), 'ERR_CRL_UNSUPPORTED', /indirect/);
    const idpIndirect = ext('2.5.29.28', true, der(0x30, der(0x84, Buffer.from([0xff]))));
    expectCode(() => parseCrlDer(build({ exts: [idpIndirect] })), 'ERR_CRL_UNSUPPORTED', /indirect/);
    const idpReasons = ext('2.5.29.28', true, der(0x30, der(0x83, Buffer.from([0x07, 0x80]))));
    expectCode(() => parseCrlDer(build({ exts: [idpReasons] })), 'ERR_CRL_UNSUPPORTED', /onlySomeReasons/);
  });

  it('reads the issuingDistributionPoint scope', () => {
    const idpUsers = ext('2.5.29.28', true, der(0x30, der(0x81, Buffer.from([0xff]))));
    expect(parseCrlDer(build({ exts: [idpUsers] })).scope).toBe('userCerts');
    const idpCas = ext('2.5.29.28', true, der(0x30, der(0x82, Buffer.from([0xff]))));
    expect(parseCrlDer(build({ exts: [idpCas] })).scope).toBe('caCerts');
  });

  it('refuses structural problems', () => {
    const rsaAlg = der(0x30, oidDer(OID.sha256WithRSAEncryption), der(0x05));
    expectCode(() => parseCrlDer(build({ outerAlg: rsaAlg })), 'ERR_CRL', /signature algorithms differ/);
    expectCode(() => parseCrlDer(build({ version: int(2) })), 'ERR_CRL', /version/);
    expectCode(() => parseCrlDer(Buffer.concat([build({}), Buffer.from([0])])), 'ERR_CRL', /trailing/);
    const badEntry = der(0x30, int(1)); // no revocationDate
    expectCode(() => parseCrlDer(build({ revoked: [badEntry] })), 'ERR_CRL', /revocationDate: missing/);
  });

  it('unknown algorithms are ERR_CRL_ALG, wrong key types are false', () => {
    const pss = der(0x30, oidDer(OID.rsassaPss), der(0x30));
    expectCode(() => verifyCrlSignature(parseCrlDer(build({ alg: pss })), publicKey), 'ERR_CRL_ALG');
    const ok = parseCrlDer(build({}));
    expect(verifyCrlSignature(ok, generateKeyPairSync('ed25519').publicKey)).toBe(false);
    expect(verifyCrlSignature(ok, generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey)).toBe(false);
  });
});
