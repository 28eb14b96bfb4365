/**
 * SPEC §3 pins: "with `pins` alone, a pinned self-signed leaf is accepted"; with clientCAs and
 * pins, the chain must verify AND the leaf must match a pin. Real handshakes on loopback.
 */
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { startSidecar } from '../helpers/sidecar.js';
import type { RunningSidecar } from '../helpers/sidecar.js';
import { attempt, expectCertificateRefusal, hexThumbprint, presenting, refusedAttempt, serverTrust } from '../helpers/tls-probe.js';
import { startUpstream } from '../helpers/upstream.js';
import type { Upstream } from '../helpers/upstream.js';
import { baseConfig } from './config.js';

const pki = inject('pki');
const c = pki.clients;

let app: Upstream;
/** clientCAs: [], pins: [sha256:<pinned>] */
let sha256Only: RunningSidecar;
/** clientCAs: [], pins: [spki:<pinned>] */
let spkiOnly: RunningSidecar;
/** clientCAs: [root], pins: [sha256:<orders>, sha256:<pinned (self-signed)>] */
let caAndPin: RunningSidecar;
/** clientCAs: [], pins: [sha256:<expired>, sha256:<serverAuthOnly>]: only the sidecar's own leaf checks stand */
let pinnedButBad: RunningSidecar;

beforeAll(async () => {
  app = await startUpstream();
  [sha256Only, spkiOnly, caAndPin, pinnedButBad] = await Promise.all([
    startSidecar(baseConfig(pki, app.url, { tls: { clientCAs: [], pins: [`sha256:${c.pinned.sha256}`] } })),
    startSidecar(baseConfig(pki, app.url, { tls: { clientCAs: [], pins: [`spki:${c.pinned.spki}`] } })),
    startSidecar(baseConfig(pki, app.url, { tls: { clientCAs: [pki.rootCa.cert], pins: [`sha256:${c.orders.sha256}`, `sha256:${c.pinned.sha256}`] } })),
    startSidecar(baseConfig(pki, app.url, { tls: { clientCAs: [], pins: [`sha256:${c.expired.sha256}`, `sha256:${c.serverAuthOnly.sha256}`] } })),
  ]);
});
afterAll(async () => {
  /* eslint-disable @typescript-eslint/no-unnecessary-condition -- undefined when beforeAll failed */
  await Promise.all([sha256Only, spkiOnly, caAndPin, pinnedButBad].filter((s) => s !== undefined).map((s) => s.close()));
  await app?.close();
  /* eslint-enable @typescript-eslint/no-unnecessary-condition */
});

describe('pins only (no clientCAs)', () => {
  it('accepts the pinned self-signed client via its sha256: pin', async () => {
    const a = await attempt(sha256Only, presenting(pki, c.pinned));
    expect(a.outcome).toEqual({ ok: true, status: 200 });
    expect(a.rejections).toEqual([]);
  });

  it('accepts the pinned self-signed client via its spki: pin', async () => {
    const a = await attempt(spkiOnly, presenting(pki, c.pinned));
    expect(a.outcome).toEqual({ ok: true, status: 200 });
    expect(a.rejections).toEqual([]);
  });

  it('refuses an unpinned self-signed client: pin_mismatch (sha256: pin configured)', async () => {
    const r = await refusedAttempt(sha256Only, presenting(pki, c.unpinned));
    expectCertificateRefusal(r);
    expect(r.line).toMatchObject({ reason: 'pin_mismatch', certSha256: hexThumbprint(c.unpinned) });
  });

  it('refuses an unpinned self-signed client: pin_mismatch (spki: pin configured)', async () => {
    const r = await refusedAttempt(spkiOnly, presenting(pki, c.unpinned));
    expectCertificateRefusal(r);
    expect(r.line).toMatchObject({ reason: 'pin_mismatch', certSha256: hexThumbprint(c.unpinned) });
  });

  it('refuses a CA-issued client whose leaf is not pinned: pin_mismatch', async () => {
    const r = await refusedAttempt(sha256Only, presenting(pki, c.orders));
    expectCertificateRefusal(r);
    expect(r.line).toMatchObject({ reason: 'pin_mismatch', certSha256: hexThumbprint(c.orders) });
  });

  it('refuses a client with no certificate: no_cert', async () => {
    const r = await refusedAttempt(spkiOnly, serverTrust(pki));
    expectCertificateRefusal(r);
    expect(r.line.reason).toBe('no_cert');
  });
});

describe('clientCAs + pins (both must hold)', () => {
  it('accepts the pinned CA-issued client', async () => {
    const a = await attempt(caAndPin, presenting(pki, c.orders));
    expect(a.outcome).toEqual({ ok: true, status: 200 });
    expect(a.rejections).toEqual([]);
  });

  it('refuses a CA-issued but unpinned client: pin_mismatch', async () => {
    const r = await refusedAttempt(caAndPin, presenting(pki, c.billing));
    expectCertificateRefusal(r);
    expect(r.line).toMatchObject({ reason: 'pin_mismatch', certSha256: hexThumbprint(c.billing) });
  });

  it('refuses a pinned self-signed client that does not chain to a clientCA: untrusted', async () => {
    // With clientCAs given, a pin narrows trust; it never replaces the chain check.
    const r = await refusedAttempt(caAndPin, presenting(pki, c.pinned));
    expectCertificateRefusal(r);
    expect(r.line).toMatchObject({ reason: 'untrusted', certSha256: hexThumbprint(c.pinned) });
  });
});

// With pins alone OpenSSL's verdict is set aside (a pinned self-signed leaf is its own anchor),
// so validity and EKU rest on the sidecar's own checks: a pin does not make them optional.
describe('pins only: a pinned leaf is still checked for validity and EKU', () => {
  it('refuses a pinned but expired client: expired', async () => {
    const r = await refusedAttempt(pinnedButBad, presenting(pki, c.expired));
    expectCertificateRefusal(r);
    expect(r.line).toMatchObject({ reason: 'expired', certSha256: hexThumbprint(c.expired) });
  });

  it('refuses a pinned client whose EKU is serverAuth only: bad_eku', async () => {
    const r = await refusedAttempt(pinnedButBad, presenting(pki, c.serverAuthOnly), 'h2');
    expectCertificateRefusal(r);
    expect(r.line).toMatchObject({ reason: 'bad_eku', certSha256: hexThumbprint(c.serverAuthOnly) });
  });
});
