/**
 * SPEC §3 revocation, made deterministic: the shared test PKI gives every certificate a random
 * serial, so a serial whose first byte is below 0x10 (printed with a leading "0" nibble, e.g.
 * "0A1B...") only turns up in about one run in eight. Here a CA of our own issues two clients
 * with fixed serials, one with and one without a leading zero nibble, both listed in its CRL
 * (made by the product's own CRL writer), and both must be refused in the handshake.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import type * as Forge from 'node-forge';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createCa, createCrl, issueLeaf } from '../../src/pki/devca.js';
import type { IssuedCert, LeafOptions } from '../../src/pki/devca.js';
import type { PkiEntry } from '../helpers/pki.js';
import { startSidecar } from '../helpers/sidecar.js';
import type { RunningSidecar } from '../helpers/sidecar.js';
import { attempt, expectCertificateRefusal, hexThumbprint, presenting, refusedAttempt } from '../helpers/tls-probe.js';
import { startUpstream } from '../helpers/upstream.js';
import type { Upstream } from '../helpers/upstream.js';
import { baseConfig } from './config.js';

const forge = createRequire(import.meta.url)('node-forge') as typeof Forge;
const pki = inject('pki');

/** First byte 0x0A: Node prints X509Certificate.serialNumber as "0A5E...". */
const LEADING_ZERO_NIBBLE = '0a5ec1a100000000000000000000beef';
/** First byte 0x7A: no leading zero in any representation. */
const PLAIN = '7a5ec1a100000000000000000000beef';
/** Issued by the same CA, not on its CRL. */
const NOT_REVOKED = '0b5ec1a100000000000000000000cafe';

let dir = '';
let app: Upstream;
let sc: RunningSidecar;
type Name = 'leadingZero' | 'plain' | 'notRevoked';
let clients: Record<Name, PkiEntry>;

function leafOptions(name: string): LeafOptions {
  return {
    commonName: name,
    organization: 'shop',
    uris: [`spiffe://cluster.local/ns/shop/sa/${name}`],
    eku: ['clientAuth'],
    days: 30,
  };
}

/** Re-issue `leaf` under `ca` with a chosen serial (hex, positive, minimal DER). */
function withSerial(leaf: IssuedCert, ca: IssuedCert, serialHex: string): { certPem: string; sha256: string } {
  const cert = leaf.cert;
  if (ca.key === null) throw new Error('forge re-signs with an RSA CA only');
  cert.serialNumber = serialHex;
  cert.sign(ca.key, forge.md.sha256.create());
  const der = Buffer.from(forge.asn1.toDer(forge.pki.certificateToAsn1(cert)).getBytes(), 'binary');
  const hex = (forge.md.sha256.create().update(der.toString('binary')).digest().toHex()).toUpperCase();
  return { certPem: forge.pki.certificateToPem(cert), sha256: hex.replace(/(..)(?!$)/g, '$1:') };
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'mtls-sidecar-crl-'));
  const ca = await createCa({ commonName: 'Serial Test CA', days: 365 });
  const leaves = await Promise.all([
    issueLeaf(ca, leafOptions('leading-zero')),
    issueLeaf(ca, leafOptions('plain')),
    issueLeaf(ca, leafOptions('not-revoked')),
  ]);
  const write = async (name: Name, leaf: IssuedCert | undefined, serial: string): Promise<PkiEntry> => {
    if (leaf === undefined) throw new Error('unreachable');
    const re = withSerial(leaf, ca, serial);
    const cert = path.join(dir, `${name}.crt`);
    const key = path.join(dir, `${name}.key`);
    await writeFile(cert, re.certPem);
    await writeFile(key, leaf.keyPem, { mode: 0o600 });
    return { cert, key, sha256: re.sha256, spki: '', serialHex: serial.toUpperCase(), commonName: name };
  };
  clients = {
    leadingZero: await write('leadingZero', leaves[0], LEADING_ZERO_NIBBLE),
    plain: await write('plain', leaves[1], PLAIN),
    notRevoked: await write('notRevoked', leaves[2], NOT_REVOKED),
  };
  const caFile = path.join(dir, 'ca.crt');
  const crlFile = path.join(dir, 'ca.crl.pem');
  await writeFile(caFile, ca.certPem);
  // The CRL writer takes serials in any hex form; give them exactly as issued.
  await writeFile(crlFile, createCrl(ca, [{ serialHex: LEADING_ZERO_NIBBLE }, { serialHex: PLAIN }], { days: 30 }));

  app = await startUpstream();
  sc = await startSidecar(baseConfig(pki, app.url, { tls: { clientCAs: [caFile], crls: [crlFile] } }));
});
afterAll(async () => {
  /* eslint-disable @typescript-eslint/no-unnecessary-condition -- undefined when beforeAll failed */
  await sc?.close();
  await app?.close();
  /* eslint-enable @typescript-eslint/no-unnecessary-condition */
  if (dir !== '') await rm(dir, { recursive: true, force: true });
});

describe('revocation does not depend on how a serial is printed', () => {
  it('a client of the CRL\'s CA that is not listed is served', async () => {
    const a = await attempt(sc, presenting(pki, clients.notRevoked));
    expect(a.outcome).toEqual({ ok: true, status: 200 });
    expect(a.rejections).toEqual([]);
  });

  it('refuses a revoked client whose serial has no leading zero nibble (7A...): revoked', async () => {
    const r = await refusedAttempt(sc, presenting(pki, clients.plain));
    expectCertificateRefusal(r);
    expect(r.line).toMatchObject({ reason: 'revoked', certSha256: hexThumbprint(clients.plain) });
  });

  it('refuses a revoked client whose serial starts with a zero nibble (0A...): revoked', async () => {
    const r = await refusedAttempt(sc, presenting(pki, clients.leadingZero));
    expectCertificateRefusal(r);
    expect(r.line).toMatchObject({ reason: 'revoked', certSha256: hexThumbprint(clients.leadingZero) });
  });
});
