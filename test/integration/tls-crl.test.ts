/**
 * SPEC §3 revocation beyond one CA and one CRL, on real handshakes:
 * - a CRL signed by an intermediate that only the client presents (tls.clientCAs holds the root
 *   alone) is accepted at load and applied to that intermediate's leaves, its signature checked
 *   against the intermediate the client presented (as nginx's ssl_crl and Envoy do);
 * - an intermediate the client presents, revoked by the root's CRL, refuses its leaves;
 * - two client CAs sharing a subject name: a CRL applies only to what its own signer issued;
 * - freshness: past a CRL's nextUpdate, the clients it covers are refused (crl_expired) until a
 *   current CRL is loaded, as nginx and Envoy do; mtls_sidecar_crl_next_update_timestamp_seconds
 *   says when; a reload that brings a stale CRL is refused and the old snapshot keeps serving.
 * The sidecar's clock is injected (deps.now) to move past nextUpdate.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { stringify } from 'yaml';
import { describeConfig } from '../../src/admin/describe.js';
import { loadAndCompile } from '../../src/config/index.js';
import { silentLog } from '../../src/log.js';
import { parseCrlFile } from '../../src/pki/crl.js';
import { createCa, createCrl, issueLeaf } from '../../src/pki/devca.js';
import type { IssuedCert } from '../../src/pki/devca.js';
import { Reloader } from '../../src/runtime/reload.js';
import type { PkiEntry } from '../helpers/pki.js';
import { parseProm, value } from '../helpers/prom.js';
import { startSidecarFile, withEphemeralPorts } from '../helpers/sidecar.js';
import type { RunningSidecar } from '../helpers/sidecar.js';
import { attempt, expectCertificateRefusal, hexThumbprint, presenting, refusedAttempt } from '../helpers/tls-probe.js';
import { startUpstream } from '../helpers/upstream.js';
import type { Upstream } from '../helpers/upstream.js';
import { baseConfig } from './config.js';

const pki = inject('pki');
const DAY = 24 * 60 * 60 * 1000;

let dir = '';
let app: Upstream;
let sc: RunningSidecar;
let reloader: Reloader;
let configFile = '';
let config: Record<string, unknown> = {};
/** The sidecar's clock: real time plus this. */
let offset = 0;
/** nextUpdate of root.crl.pem (2 days): the first CRL to go stale. */
let rootCrlNextUpdate = 0;
let rootCa: IssuedCert;
let revokedInterSerial = '';

type Name = 'rootLeaf' | 'interOk' | 'interRevoked' | 'underRevokedInter' | 'twinALeaf' | 'twinBLeaf';
let clients: Record<Name, PkiEntry>;

const client = (commonName: string) => ({ commonName, uris: [`spiffe://cluster.local/ns/shop/sa/${commonName}`], eku: ['clientAuth' as const], days: 30 });

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'mtls-sidecar-crls-'));
  const root = await createCa({ commonName: 'CRL Test Root', days: 365 });
  rootCa = root;
  const [inter, revokedInter, twinA, twinB] = await Promise.all([
    createCa({ commonName: 'CRL Test Intermediate', days: 365, parent: root }),
    createCa({ commonName: 'CRL Test Revoked Intermediate', days: 365, parent: root }),
    // Two CAs, one subject name, two keys.
    createCa({ commonName: 'CRL Test Twin CA', days: 365 }),
    createCa({ commonName: 'CRL Test Twin CA', days: 365 }),
  ]);
  const issued: Record<Name, IssuedCert> = {
    rootLeaf: await issueLeaf(root, client('root-leaf')),
    interOk: await issueLeaf(inter, client('inter-ok')),
    interRevoked: await issueLeaf(inter, client('inter-revoked')),
    underRevokedInter: await issueLeaf(revokedInter, client('under-revoked-inter')),
    twinALeaf: await issueLeaf(twinA, client('twin-a')),
    twinBLeaf: await issueLeaf(twinB, client('twin-b')),
  };
  const write = async (name: string, text: string): Promise<string> => {
    const file = path.join(dir, name);
    await writeFile(file, text);
    return file;
  };
  const entries: Partial<Record<Name, PkiEntry>> = {};
  for (const [name, ic] of Object.entries(issued) as [Name, IssuedCert][]) {
    const cert = await write(`${name}.crt`, ic.certPem);
    const chain = ic.parent?.parent != null ? await write(`${name}.chain.crt`, ic.certPem + ic.parent.certPem) : undefined;
    entries[name] = { cert, key: await write(`${name}.key`, ic.keyPem), ...(chain !== undefined ? { chain } : {}), sha256: ic.sha256, spki: '', serialHex: ic.serialHex, commonName: name };
  }
  clients = entries as Record<Name, PkiEntry>;
  revokedInterSerial = revokedInter.serialHex;
  const rootCrl = createCrl(root, [{ serialHex: revokedInter.serialHex }], { days: 2 });
  rootCrlNextUpdate = parseCrlFile(rootCrl)[0]?.nextUpdate?.getTime() ?? Number.NaN;
  const files = {
    root: await write('root.crt', root.certPem),
    twins: await write('twins.crt', twinA.certPem + twinB.certPem),
    interCrl: await write('intermediate.crl.pem', createCrl(inter, [{ serialHex: issued.interRevoked.serialHex }], { days: 30 })),
    rootCrl: await write('root.crl.pem', rootCrl),
    // Twin A's CRL lists its own leaf and twin B's leaf: only the first is A's to revoke.
    twinCrl: await write('twin-a.crl.pem', createCrl(twinA, [{ serialHex: issued.twinALeaf.serialHex }, { serialHex: issued.twinBLeaf.serialHex }], { days: 30 })),
  };
  app = await startUpstream();
  config = withEphemeralPorts(baseConfig(pki, app.url, { tls: { clientCAs: [files.root, files.twins], crls: [files.interCrl, files.rootCrl, files.twinCrl] } }));
  configFile = await write('sidecar.yaml', stringify(config));
  sc = await startSidecarFile(configFile, null, { now: () => Date.now() + offset });
  reloader = new Reloader(sc.sidecar, configFile, silentLog());
});
afterAll(async () => {
  /* eslint-disable @typescript-eslint/no-unnecessary-condition -- undefined when beforeAll failed */
  reloader?.close();
  await sc?.close();
  await app?.close();
  /* eslint-enable @typescript-eslint/no-unnecessary-condition */
  if (dir !== '') await rm(dir, { recursive: true, force: true });
});

async function refused(entry: PkiEntry, reason: string, alpn: 'http/1.1' | 'h2' = 'http/1.1'): Promise<void> {
  const before = app.seen.length;
  const r = await refusedAttempt(sc, presenting(pki, entry), alpn);
  expectCertificateRefusal(r);
  expect(r.line).toMatchObject({ reason, certSha256: hexThumbprint(entry) });
  expect(app.seen.length).toBe(before);
}

async function served(entry: PkiEntry): Promise<void> {
  const a = await attempt(sc, presenting(pki, entry));
  expect({ outcome: a.outcome, rejections: a.rejections }).toEqual({ outcome: { ok: true, status: 200 }, rejections: [] });
}

describe('a CRL signed by an intermediate that only clients present (clientCAs: the root alone)', () => {
  it('is accepted at load, and /config lists it', () => {
    const crls = (describeConfig(sc.sidecar.snapshot)['tls'] as { crls: Array<{ file: string; issuer: string; revoked: number }> }).crls;
    expect(crls.map((c) => [path.basename(c.file), c.issuer, c.revoked])).toEqual([
      ['root.crl.pem', 'CN=CRL Test Root', 1],
      ['twin-a.crl.pem', 'CN=CRL Test Twin CA', 2],
      ['intermediate.crl.pem', 'intermediate CA (not in clientCAs)', 1],
    ]);
  });

  it('refuses the leaf it lists when the client presents the intermediate, over HTTP/1.1 and h2: revoked', async () => {
    await refused(clients.interRevoked, 'revoked');
    await refused(clients.interRevoked, 'revoked', 'h2');
  });

  it('serves the intermediate\'s other leaves', async () => {
    await served(clients.interOk);
  });
});

describe('an intermediate the client presents, revoked by the root\'s CRL', () => {
  it('refuses its leaves: revoked', async () => {
    await refused(clients.underRevokedInter, 'revoked');
  });
});

describe('two client CAs sharing a subject name', () => {
  it('a CRL revokes what its own signer issued: revoked', async () => {
    await refused(clients.twinALeaf, 'revoked');
  });

  it('and not a leaf of the other CA that it happens to list (the signature decides, not the name)', async () => {
    await served(clients.twinBLeaf);
  });
});

describe('CRL freshness', () => {
  it('exports each CRL file\'s nextUpdate: mtls_sidecar_crl_next_update_timestamp_seconds{crl="<file name>"}', async () => {
    const samples = parseProm(await (await fetch(`${sc.admin}/metrics`)).text());
    expect(value(samples, 'mtls_sidecar_crl_next_update_timestamp_seconds', { crl: 'root.crl.pem' })).toBe(Math.floor(rootCrlNextUpdate / 1000));
    for (const crl of ['intermediate.crl.pem', 'twin-a.crl.pem']) {
      expect(value(samples, 'mtls_sidecar_crl_next_update_timestamp_seconds', { crl })).toBeGreaterThan(rootCrlNextUpdate / 1000);
    }
  });

  it('past nextUpdate, the clients that CRL covers are refused (crl_expired), others are served; a current clock serves them again', async () => {
    try {
      offset = rootCrlNextUpdate - Date.now() + DAY;
      await refused(clients.rootLeaf, 'crl_expired');
      // The root's CRL also vouches for the intermediate the client presents.
      await refused(clients.interOk, 'crl_expired', 'h2');
      // Revoked stays revoked; a CA without a CRL is not affected.
      await refused(clients.twinALeaf, 'revoked');
      await served(clients.twinBLeaf);
    } finally {
      offset = 0;
    }
    await served(clients.rootLeaf);
  });

  it('a config whose CRL is past its nextUpdate does not load (so a reload that brings one is refused)', async () => {
    const later = rootCrlNextUpdate + 1000;
    const outcome = await loadAndCompile(configFile, 2, { now: () => later });
    expect(outcome.ok).toBe(false);
    if (outcome.ok) return;
    expect(outcome.lines).toEqual([expect.stringMatching(/ tls\.crls\[1\]: CRL expired \(nextUpdate .*\): replace it with the issuer's current CRL$/)]);
  });

  it('a reload that brings a stale CRL is refused; the previous CRL keeps serving', async () => {
    const generation = sc.sidecar.snapshot.generation;
    const failures = async (): Promise<number> => value(parseProm(await (await fetch(`${sc.admin}/metrics`)).text()), 'mtls_sidecar_config_reloads_total', { result: 'failure' });
    const before = await failures();
    const file = path.join(dir, 'root.crl.pem');
    const current = await readFile(file);
    // What a CRL fetcher that lost contact with the CA would leave: past its nextUpdate in real time.
    await writeFile(file, createCrl(rootCa, [{ serialHex: revokedInterSerial }], { thisUpdate: new Date(Date.now() - 3 * DAY), nextUpdate: new Date(Date.now() - DAY) }));
    try {
      expect(await reloader.reload('test')).toBe('failed');
      expect(sc.sidecar.snapshot.generation).toBe(generation);
      expect(await failures()).toBe(before + 1);
      await served(clients.rootLeaf);
      await refused(clients.underRevokedInter, 'revoked');
    } finally {
      await writeFile(file, current);
    }
  });
});
