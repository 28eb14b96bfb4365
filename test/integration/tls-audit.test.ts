/**
 * What a certificate can smuggle through the sidecar: a subject CN with CR/LF, a header-looking
 * tail and a double quote must reach neither the app's headers nor the audit log raw; and a
 * refused handshake's audit line names the leaf (certSha256, subject) but never key material.
 */
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { AuditLine } from '../helpers/audit-sink.js';
import { agentFor, call } from '../helpers/client.js';
import { startSidecar } from '../helpers/sidecar.js';
import type { RunningSidecar } from '../helpers/sidecar.js';
import { expectCertificateRefusal, hexThumbprint, presenting, refusedAttempt } from '../helpers/tls-probe.js';
import { startUpstream } from '../helpers/upstream.js';
import type { Upstream } from '../helpers/upstream.js';
import { baseConfig, creds } from './config.js';

const pki = inject('pki');
const c = pki.clients;
const CONTROL = /[\x00-\x1f\x7f]/;
/**
 * SPEC §5: msg, reason, remote, certSha256?, subject? (plus the timestamp, a diagnostic, and the
 * requestId the refused client was given).
 */
const HANDSHAKE_KEYS = new Set(['time', 'msg', 'reason', 'remote', 'requestId', 'certSha256', 'subject', 'detail']);

let app: Upstream;
/** clientCAs: [root]: the evil-CN client is trusted */
let rootTrust: RunningSidecar;
/** clientCAs: [intermediate]: the evil-CN client is refused (untrusted) */
let interTrust: RunningSidecar;

beforeAll(async () => {
  app = await startUpstream();
  [rootTrust, interTrust] = await Promise.all([
    startSidecar(baseConfig(pki, app.url)),
    startSidecar(baseConfig(pki, app.url, { tls: { clientCAs: [pki.intermediateCa.cert] } })),
  ]);
});
afterAll(async () => {
  /* eslint-disable @typescript-eslint/no-unnecessary-condition -- undefined when beforeAll failed */
  await Promise.all([rootTrust, interTrust].filter((s) => s !== undefined).map((s) => s.close()));
  await app?.close();
  /* eslint-enable @typescript-eslint/no-unnecessary-condition */
});

function expectCleanHandshakeLine(line: AuditLine, raw: string): void {
  for (const k of Object.keys(line)) expect(HANDSHAKE_KEYS, `unexpected key ${k}`).toContain(k);
  expect(raw).not.toContain('PRIVATE KEY');
  expect(raw).not.toContain('-----BEGIN');
  if (typeof line.subject === 'string') expect(line.subject).not.toMatch(CONTROL);
}

describe('a CN with CR/LF, a quote and a header-looking tail (evilCn, issued by root)', () => {
  it('is served, and nothing it carries splits or adds an upstream header', async () => {
    expect(pki.evilCommonName).toMatch(/\r\n/);
    const agent = agentFor(creds(pki, 'evilCn'));
    const before = app.seen.length;
    try {
      const res = await call(agent, rootTrust.origin, '/healthz');
      expect(res.status).toBe(200);
    } finally {
      await agent.close();
    }
    const seen = app.seen.slice(before);
    expect(seen).toHaveLength(1);
    const got = seen[0];
    if (got === undefined) throw new Error('unreachable');
    expect(got.url).toBe('/healthz');
    expect(Object.keys(got.headers)).not.toContain('x-injected');
    for (let i = 0; i < got.rawHeaders.length; i += 2) {
      const name = got.rawHeaders[i] ?? '';
      const value = got.rawHeaders[i + 1] ?? '';
      expect(name.toLowerCase()).not.toBe('x-injected');
      expect(value, `header ${name}`).not.toMatch(/[\r\n]/);
    }
    // The identity did reach the app, escaped: the hash is the leaf's and the subject is one line.
    const xfcc = got.headers['x-forwarded-client-cert'];
    expect(typeof xfcc).toBe('string');
    expect(xfcc).toContain(`Hash=${hexThumbprint(c.evilCn)}`);

    const line = await rootTrust.audit.waitFor((l) => l.msg === 'request' && l.certSha256 === hexThumbprint(c.evilCn));
    expect(line).toMatchObject({ path: '/healthz', status: 200, decision: 'allow' });
    expect(typeof line.subject).toBe('string');
    expect(line.subject).not.toMatch(CONTROL);
  });

  it('its XFCC Subject is one well-formed quoted-string that decodes to the audited subject', async () => {
    const agent = agentFor(creds(pki, 'evilCn'));
    const before = app.seen.length;
    try {
      expect((await call(agent, rootTrust.origin, '/healthz')).status).toBe(200);
    } finally {
      await agent.close();
    }
    const xfcc = app.seen[before]?.headers['x-forwarded-client-cert'];
    if (typeof xfcc !== 'string') throw new Error('no x-forwarded-client-cert reached the app');
    const line = await rootTrust.audit.waitFor((l) => l.msg === 'request' && l.certSha256 === hexThumbprint(c.evilCn));
    const field = readQuotedField(xfcc, 'Subject');
    // The quoted value must end exactly where the field ends (at `;` or the end of the header),
    // and unescape (quoted-pair: backslash + any char) to the very subject the audit line holds.
    expect(field).toEqual({ value: line.subject, next: expect.stringMatching(/^(;|$)/) });
  });

  it('when refused in the handshake, its audit subject has no raw control characters either', async () => {
    const r = await refusedAttempt(interTrust, presenting(pki, c.evilCn));
    expectCertificateRefusal(r);
    expect(r.line).toMatchObject({ reason: 'untrusted', certSha256: hexThumbprint(c.evilCn) });
    expect(typeof r.line.subject).toBe('string');
    expectCleanHandshakeLine(r.line, r.raw);
  });
});

describe('the handshake_rejected audit line', () => {
  it('carries the leaf\'s lower-case hex SHA-256, its subject and the remote address, and no key material', async () => {
    const r = await refusedAttempt(rootTrust, presenting(pki, c.expired));
    expectCertificateRefusal(r);
    expect(r.line).toMatchObject({
      msg: 'handshake_rejected',
      reason: 'expired',
      remote: '127.0.0.1',
      certSha256: hexThumbprint(c.expired),
      subject: 'CN=expired,OU=backend,O=shop',
    });
    expect(r.line.certSha256).toMatch(/^[0-9a-f]{64}$/);
    expectCleanHandshakeLine(r.line, r.raw);
  });

  it('names the leaf, not its issuer, when a chain was presented', async () => {
    const r = await refusedAttempt(rootTrust, presenting(pki, c.chain4));
    expectCertificateRefusal(r);
    expect(r.line).toMatchObject({
      reason: 'untrusted',
      certSha256: hexThumbprint(c.chain4),
      subject: 'CN=chain4,OU=backend,O=shop',
    });
    expectCleanHandshakeLine(r.line, r.raw);
  });

  it('no audit line written by these sidecars contains key material', () => {
    const raw = [...rootTrust.audit.raw, ...interTrust.audit.raw];
    expect(raw.length).toBeGreaterThan(0);
    for (const l of raw) {
      expect(l).not.toContain('PRIVATE KEY');
      expect(l).not.toContain('-----BEGIN');
    }
  });
});

/**
 * Read `Name="..."` from an XFCC element with quoted-pair escapes (a backslash escapes the next
 * character, as the sidecar itself does for quoted URI/DNS values). Returns the unescaped
 * value and what follows the closing quote.
 */
function readQuotedField(xfcc: string, name: string): { value: string; next: string } | null {
  const start = xfcc.indexOf(`${name}="`);
  if (start === -1) return null;
  let value = '';
  for (let i = start + name.length + 2; i < xfcc.length; i++) {
    const ch = xfcc.charAt(i);
    if (ch === '\\') {
      value += xfcc[i + 1] ?? '';
      i++;
    } else if (ch === '"') {
      return { value, next: xfcc.slice(i + 1) };
    } else {
      value += ch;
    }
  }
  return null;
}
