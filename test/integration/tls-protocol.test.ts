/**
 * SPEC §3 `minVersion` and §4 "TLS 1.2 cipher suites are ECDHE with AEAD only": clients that
 * only speak an older protocol or offer only weak suites never complete a handshake, and each
 * refusal is one `handshake_rejected` audit line with reason `protocol`.
 */
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { startSidecar } from '../helpers/sidecar.js';
import type { RunningSidecar } from '../helpers/sidecar.js';
import { attempt, negotiate, presenting, refusedAttempt } from '../helpers/tls-probe.js';
import { startUpstream } from '../helpers/upstream.js';
import type { Upstream } from '../helpers/upstream.js';
import { baseConfig } from './config.js';

const pki = inject('pki');
const orders = pki.clients.orders;
/** OpenSSL 3 needs security level 0 before it will even offer TLS 1.0/1.1 or SHA-1 suites. */
const LEGACY = 'DEFAULT:@SECLEVEL=0';

let app: Upstream;
/** minVersion: TLSv1.2 (the default) */
let v12: RunningSidecar;
/** minVersion: TLSv1.3 */
let v13: RunningSidecar;

beforeAll(async () => {
  app = await startUpstream();
  [v12, v13] = await Promise.all([
    startSidecar(baseConfig(pki, app.url)),
    startSidecar(baseConfig(pki, app.url, { tls: { minVersion: 'TLSv1.3' } })),
  ]);
});
afterAll(async () => {
  /* eslint-disable @typescript-eslint/no-unnecessary-condition -- undefined when beforeAll failed */
  await Promise.all([v12, v13].filter((s) => s !== undefined).map((s) => s.close()));
  await app?.close();
  /* eslint-enable @typescript-eslint/no-unnecessary-condition */
});

describe('protocol versions', () => {
  it('refuses a TLS 1.0-only client and audits it as protocol', async () => {
    const r = await refusedAttempt(
      v12,
      presenting(pki, orders, { extra: { minVersion: 'TLSv1', maxVersion: 'TLSv1', ciphers: LEGACY } }),
    );
    expect(r.outcome.error).toMatch(/PROTOCOL_VERSION/);
    expect(r.line.reason).toBe('protocol');
  });

  it('refuses a TLS 1.1-only client and audits it as protocol', async () => {
    const r = await refusedAttempt(
      v12,
      presenting(pki, orders, { extra: { minVersion: 'TLSv1.1', maxVersion: 'TLSv1.1', ciphers: LEGACY } }),
    );
    expect(r.outcome.error).toMatch(/PROTOCOL_VERSION/);
    expect(r.line.reason).toBe('protocol');
  });

  it('serves a trusted TLS 1.2 client by default (minVersion TLSv1.2)', async () => {
    const a = await attempt(v12, presenting(pki, orders, { extra: { maxVersion: 'TLSv1.2' } }));
    expect(a.outcome).toEqual({ ok: true, status: 200 });
    expect(a.rejections).toEqual([]);
  });

  it('with minVersion TLSv1.3, refuses a TLS 1.2-only client (protocol)', async () => {
    const r = await refusedAttempt(v13, presenting(pki, orders, { extra: { maxVersion: 'TLSv1.2' } }));
    expect(r.outcome.error).toMatch(/PROTOCOL_VERSION/);
    expect(r.line.reason).toBe('protocol');
  });

  it('with minVersion TLSv1.3, serves a TLS 1.3 client', async () => {
    const a = await attempt(v13, presenting(pki, orders, { extra: { minVersion: 'TLSv1.3' } }));
    expect(a.outcome).toEqual({ ok: true, status: 200 });
    expect(a.rejections).toEqual([]);
  });
});

describe('TLS 1.2 cipher suites: ECDHE + AEAD only', () => {
  const tls12 = (ciphers: string) => presenting(pki, orders, { extra: { maxVersion: 'TLSv1.2', ciphers } });

  it('refuses a client offering only AES128-SHA256 (RSA key exchange, CBC)', async () => {
    const r = await refusedAttempt(v12, tls12('AES128-SHA256:@SECLEVEL=0'));
    expect(r.outcome.error).toMatch(/HANDSHAKE_FAILURE/);
    expect(r.line.reason).toBe('protocol');
  });

  it('refuses a client offering only ECDHE-RSA-AES128-SHA (ECDHE, but CBC with SHA-1 MAC)', async () => {
    const r = await refusedAttempt(v12, tls12('ECDHE-RSA-AES128-SHA:@SECLEVEL=0'));
    expect(r.outcome.error).toMatch(/HANDSHAKE_FAILURE/);
    expect(r.line.reason).toBe('protocol');
  });

  it('refuses a client offering only non-ECDHE AEAD suites (DHE/RSA + GCM)', async () => {
    const r = await refusedAttempt(v12, tls12('AES128-GCM-SHA256:DHE-RSA-AES128-GCM-SHA256'));
    expect(r.outcome.error).toMatch(/HANDSHAKE_FAILURE/);
    expect(r.line.reason).toBe('protocol');
  });

  it('refuses a client offering every suite except ECDHE + AES-GCM/ChaCha20 (CBC, CCM, DHE, RSA kx...)', async () => {
    const r = await refusedAttempt(v12, tls12('ALL:!ECDHE+AESGCM:!ECDHE+CHACHA20:@SECLEVEL=0'));
    expect(r.outcome.error).toMatch(/HANDSHAKE_FAILURE/);
    expect(r.line.reason).toBe('protocol');
  });

  it('a client offering everything it knows, weakest first, still lands on ECDHE + AEAD', async () => {
    const n = await negotiate(v12.port, tls12('ALL:-ECDHE+AESGCM:-ECDHE+CHACHA20:ECDHE+AESGCM:ECDHE+CHACHA20:@SECLEVEL=0'));
    expect(n).toMatchObject({ ok: true, protocol: 'TLSv1.2' });
    if (!n.ok) return;
    expect(n.cipher.name).toMatch(/^ECDHE-(RSA|ECDSA)-(AES(128|256)-GCM-SHA(256|384)|CHACHA20-POLY1305)$/);
  });

  it.each(['ECDHE-RSA-AES128-GCM-SHA256', 'ECDHE-RSA-AES256-GCM-SHA384', 'ECDHE-RSA-CHACHA20-POLY1305'])(
    'accepts %s',
    async (suite) => {
      const a = await attempt(v12, tls12(suite));
      expect(a.outcome).toEqual({ ok: true, status: 200 });
      expect(a.rejections).toEqual([]);
    },
  );
});
