/**
 * Certificate thumbprints and SPKI pins, in the exact textual forms the config accepts
 * (`sha256:AB:CD:...`, `spki:<base64>`), the CLI prints and XFCC's `Hash=` carries.
 */
import { createHash, type X509Certificate } from 'node:crypto';
import { subjectPublicKeyInfoDer } from './certinfo.js';

const HEX = '0123456789ABCDEF';

/** SHA-256 of the DER certificate as upper-case, colon-separated hex ("AB:CD:..."). */
export function sha256Thumbprint(der: Uint8Array): string {
  const d = createHash('sha256').update(der).digest();
  let out = '';
  for (let i = 0; i < d.length; i++) {
    const b = d[i]!;
    if (i > 0) out += ':';
    out += HEX[b >> 4]! + HEX[b & 15]!;
  }
  return out;
}

/** SHA-256 of the DER certificate as lower-case hex without separators (XFCC `Hash=`). */
export function sha256Hex(der: Uint8Array): string {
  return createHash('sha256').update(der).digest('hex');
}

/** base64 SHA-256 of the SubjectPublicKeyInfo (HPKP-style pin, survives re-issuance). */
export function spkiPin(x509: X509Certificate): string {
  return spkiPinFromSpkiDer(x509.publicKey.export({ type: 'spki', format: 'der' }));
}

/** Same pin straight from a DER certificate, without building an X509Certificate. */
export function spkiPinFromCertDer(certDer: Buffer): string {
  return spkiPinFromSpkiDer(subjectPublicKeyInfoDer(certDer));
}

export function spkiPinFromSpkiDer(spkiDer: Uint8Array): string {
  return createHash('sha256').update(spkiDer).digest('base64');
}

/**
 * Canonical form of a user-written SHA-256 thumbprint: accepts upper/lower case, with or without
 * colons and an optional `sha256:` prefix; returns "AB:CD:..." or null if it is not 32 bytes hex.
 */
export function normalizeSha256Thumbprint(input: string): string | null {
  let s = input.trim();
  if (s.toLowerCase().startsWith('sha256:')) s = s.slice(7);
  s = s.toUpperCase();
  // Colons either everywhere (every byte) or nowhere, so a mangled copy-paste is rejected.
  if (/^(?:[0-9A-F]{2}:){31}[0-9A-F]{2}$/.test(s)) return s;
  if (!/^[0-9A-F]{64}$/.test(s)) return null;
  return s.replace(/(..)(?!$)/g, '$1:');
}
