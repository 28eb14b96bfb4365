import { X509Certificate } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCa, issueLeaf } from '../../../src/pki/devca.js';
import {
  normalizeSha256Thumbprint,
  sha256Hex,
  sha256Thumbprint,
  spkiPin,
  spkiPinFromCertDer,
} from '../../../src/pki/thumbprint.js';
import { openssl, opensslBuf, tempDir } from './util.js';

let tmp: { dir: string; cleanup: () => Promise<void> };
const files: string[] = [];

beforeAll(async () => {
  tmp = await tempDir();
  const ca = await createCa({ commonName: 'Root', days: 10 });
  const leaf = await issueLeaf(ca, { commonName: 'leaf', uris: ['spiffe://td/ns/a/sa/leaf'] });
  for (const [name, pem] of [
    ['ca', ca.certPem],
    ['leaf', leaf.certPem],
  ] as const) {
    const p = join(tmp.dir, `${name}.crt`);
    await writeFile(p, pem);
    files.push(p);
  }
  for (const [name, args] of [
    ['ec', ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256']],
    ['ed25519', ['-newkey', 'ed25519']],
  ] as const) {
    const p = join(tmp.dir, `${name}.crt`);
    const r = openssl(['req', '-x509', ...args, '-keyout', join(tmp.dir, `${name}.key`), '-out', p, '-nodes', '-subj', `/CN=${name}`, '-days', '1']);
    expect(r.status).toBe(0);
    files.push(p);
  }
});
afterAll(() => tmp.cleanup());

describe('thumbprints agree with openssl', () => {
  it('sha256 thumbprint equals `openssl x509 -fingerprint -sha256`', async () => {
    for (const f of files) {
      const x = new X509Certificate(await readFile(f));
      const out = openssl(['x509', '-in', f, '-noout', '-fingerprint', '-sha256']).stdout.trim();
      expect(out).toBe(`sha256 Fingerprint=${sha256Thumbprint(x.raw)}`);
      expect(sha256Thumbprint(x.raw)).toMatch(/^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
      expect(sha256Hex(x.raw)).toBe(sha256Thumbprint(x.raw).replace(/:/g, '').toLowerCase());
      expect(x.fingerprint256).toBe(sha256Thumbprint(x.raw));
    }
  });

  it('spki pin equals openssl pubkey | sha256 | base64', async () => {
    for (const f of files) {
      const x = new X509Certificate(await readFile(f));
      const pub = opensslBuf(['x509', '-in', f, '-noout', '-pubkey']);
      const spkiDer = opensslBuf(['pkey', '-pubin', '-outform', 'DER'], pub);
      const digest = opensslBuf(['dgst', '-sha256', '-binary'], spkiDer);
      expect(spkiPin(x)).toBe(digest.toString('base64'));
      expect(spkiPinFromCertDer(x.raw)).toBe(spkiPin(x));
    }
  });
});

describe('normalizeSha256Thumbprint', () => {
  const hex = 'ab'.repeat(32);
  const canonical = Array(32).fill('AB').join(':');
  it('accepts the usual spellings', () => {
    expect(normalizeSha256Thumbprint(canonical)).toBe(canonical);
    expect(normalizeSha256Thumbprint(`sha256:${canonical.toLowerCase()}`)).toBe(canonical);
    expect(normalizeSha256Thumbprint(hex)).toBe(canonical);
    expect(normalizeSha256Thumbprint(`SHA256:${hex.toUpperCase()} `)).toBe(canonical);
  });
  it('rejects anything else', () => {
    expect(normalizeSha256Thumbprint('ab'.repeat(31))).toBeNull();
    expect(normalizeSha256Thumbprint(`${hex}ab`)).toBeNull();
    expect(normalizeSha256Thumbprint('zz'.repeat(32))).toBeNull();
    expect(normalizeSha256Thumbprint(`A:B${canonical.slice(3)}`)).toBeNull();
    expect(normalizeSha256Thumbprint(`spki:${hex}`)).toBeNull();
  });
});
