/**
 * testssl.sh (Debian package `testssl.sh`, binary `testssl`) against the listener: nothing rated
 * MEDIUM or worse. Skipped only when testssl is not installed
 * (`apt-get install -y testssl.sh`).
 *
 * Check set: `-p -s -f -P -S -U` — protocols, cipher categories, forward secrecy, server
 * preferences, server defaults (certificate) and every vulnerability check. These are all of
 * testssl's *rated* checks that apply here. Left out: client simulation (-c) and the per-cipher
 * list (-e), which rate nothing (INFO) and more than double the run (full default run ~95 s,
 * this set ~70 s on the 2-core CI box; --fast is no faster there); HTTP header checks (-h),
 * which testssl 3.0 cannot run against an mTLS listener (it has no client-certificate option,
 * so it never gets an HTTP response). The run is bounded: testssl's own connect/openssl
 * timeouts, and the process is killed (by pid) after 4 minutes.
 *
 * The server certificate is issued here for a year by a fresh test CA that testssl is told to
 * trust (--add-ca): the shared test PKI's 30-day leaf would only measure the test fixture.
 *
 * Allowlist (findings that are properties of the deployment's PKI, or of testssl, not of the
 * sidecar):
 *  - cert_revocation (HIGH, "Neither CRL nor OCSP URI provided"): the server certificate comes
 *    from the operator's private mesh CA; the sidecar serves whatever it is given and cannot add
 *    a CRL distribution point or OCSP responder to it. Private mesh CAs (SPIFFE/SPIRE, Istio,
 *    cert-manager CA issuers) typically issue short-lived certificates without either.
 *  - secure_client_renego (HIGH, "VULNERABLE, DoS threat"): testssl has no client certificate,
 *    so the sidecar answers its connection with the certificate refusal (400, close_notify) right
 *    after the handshake, before any "R" is sent. testssl takes openssl s_client's exit 0 after
 *    that clean close for a renegotiation that went through (it looks for "closed" at the start
 *    of a line, and the JSON body has no newline). No renegotiation happens; client-initiated
 *    renegotiation is refused, on a served connection, in tls.test.ts.
 * testssl's own notices (WARN, DEBUG) are not findings.
 */
import { spawn, execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCa, issueLeaf } from '../../src/pki/devca.js';
import { heavyLock, startTarget } from './harness.js';
import type { Target } from './harness.js';

interface Finding {
  id: string;
  severity: string;
  finding: string;
  cve?: string;
}

const RATED_BAD = new Set(['MEDIUM', 'HIGH', 'CRITICAL']);
const ALLOWLIST: Readonly<Record<string, string>> = {
  cert_revocation: 'server certificate from a private mesh CA without CRL/OCSP URLs: deployment PKI, not the sidecar',
  secure_client_renego: "testssl reads the certificate refusal's clean close as a renegotiation; tls.test.ts tests the real one",
};
const RUN_BOUND_MS = 240_000;

function which(bin: string): Promise<string | null> {
  return new Promise((resolve) => execFile('sh', ['-c', `command -v ${bin}`], (err, out) => resolve(err === null && out.trim() !== '' ? out.trim() : null)));
}

let testssl: string | null = null;
let dir = '';
let t: Target | undefined;

beforeAll(async () => {
  testssl = (await which('testssl')) ?? (await which('testssl.sh'));
  if (testssl === null) return;
  dir = await mkdtemp(path.join(os.tmpdir(), 'mtls-sidecar-testssl-'));
  const ca = await createCa({ commonName: 'testssl Test CA', days: 3650 });
  const server = await issueLeaf(ca, { commonName: 'localhost', dnsNames: ['localhost'], ips: ['127.0.0.1'], eku: ['serverAuth'], days: 365 });
  await Promise.all([
    writeFile(path.join(dir, 'ca.crt'), ca.certPem),
    writeFile(path.join(dir, 'server.crt'), server.certPem + ca.certPem),
    writeFile(path.join(dir, 'server.key'), server.keyPem, { mode: 0o600 }),
  ]);
  t = await startTarget({ tls: { cert: path.join(dir, 'server.crt'), key: path.join(dir, 'server.key') } });
}, 60_000);
afterAll(async () => {
  await t?.close();
  if (dir !== '') await rm(dir, { recursive: true, force: true });
});

function runTestssl(bin: string, port: number, jsonFile: string): Promise<{ code: number | null; out: string; ms: number }> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const args = [
      '--quiet',
      '--color', '0',
      '--warnings', 'off',
      '--connect-timeout', '5',
      '--openssl-timeout', '5',
      '--add-ca', path.join(dir, 'ca.crt'),
      '--jsonfile', jsonFile,
      '--ip', '127.0.0.1',
      '-p', '-s', '-f', '-P', '-S', '-U',
      `localhost:${port}`,
    ];
    const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const killer = setTimeout(() => child.kill('SIGKILL'), RUN_BOUND_MS);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(killer);
      resolve({ code, out, ms: Date.now() - started });
    });
  });
}

describe('testssl.sh against the listener', () => {
  it('rates nothing MEDIUM or worse (apart from the documented allowlist)', async (ctx) => {
    if (testssl === null || t === undefined) {
      ctx.skip();
      return;
    }
    const jsonFile = path.join(dir, 'testssl.json');
    // Not while a flood loads the box in the other worker (harness.ts heavyLock).
    const release = await heavyLock();
    const run = await runTestssl(testssl, t.sc.port, jsonFile).finally(release);
    const findings = JSON.parse(await readFile(jsonFile, 'utf8')) as Finding[];
    // The scan itself completed.
    expect(findings.filter((f) => f.severity === 'FATAL'), run.out.slice(-2000)).toEqual([]);
    expect(findings.find((f) => f.id === 'TLS1_3')?.finding).toMatch(/offered/);
    expect(findings.find((f) => f.id === 'heartbleed')?.severity).toBe('OK');

    const bad = findings.filter((f) => RATED_BAD.has(f.severity) && ALLOWLIST[f.id] === undefined);
    expect(bad.map((f) => `${f.severity} ${f.id}: ${f.finding}`)).toEqual([]);

    // What the scan established, asserted so a regression names itself.
    const sev = (id: string): string | undefined => findings.find((f) => f.id === id)?.severity;
    for (const id of ['SSLv2', 'SSLv3', 'TLS1', 'TLS1_1']) expect(findings.find((f) => f.id === id)?.finding, id).toMatch(/not offered/);
    for (const id of ['cipherlist_NULL', 'cipherlist_aNULL', 'cipherlist_EXPORT', 'cipherlist_LOW', 'cipherlist_3DES_IDEA', 'cipherlist_AVERAGE']) {
      expect(findings.find((f) => f.id === id)?.finding, id).toMatch(/not offered/);
    }
    expect(findings.find((f) => f.id === 'PFS')?.finding).toMatch(/offered/);
    for (const id of ['ROBOT', 'CCS', 'SWEET32', 'FREAK', 'LOGJAM', 'BEAST', 'LUCKY13', 'RC4', 'CRIME_TLS', 'POODLE_SSL', 'secure_renego']) {
      expect(['OK', 'INFO'], `${id}: ${findings.find((f) => f.id === id)?.finding ?? 'missing'}`).toContain(sev(id));
    }
    await ctx.annotate(`testssl ran ${Math.round(run.ms / 1000)} s; ${findings.length} results; allowlisted: ${findings.filter((f) => ALLOWLIST[f.id] !== undefined && RATED_BAD.has(f.severity)).map((f) => f.id).join(', ') || 'none'}`);
  }, 2 * RUN_BOUND_MS + 30_000);
});
