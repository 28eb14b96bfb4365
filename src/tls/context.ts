/**
 * Secure-context options for the listener (SPEC §3, §4 protective defaults) and the one place
 * that installs them on a server, at start and on every reload.
 */
import { constants } from 'node:crypto';
import tls from 'node:tls';
import type { Snapshot } from '../config/snapshot.js';

/** TLS 1.2: ECDHE key exchange with AEAD ciphers only. TLS 1.3 suites are all AEAD. */
export const TLS12_CIPHERS = [
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
];
export const TLS13_CIPHERS = ['TLS_AES_128_GCM_SHA256', 'TLS_AES_256_GCM_SHA384', 'TLS_CHACHA20_POLY1305_SHA256'];
const CIPHERS = [...TLS13_CIPHERS, ...TLS12_CIPHERS].join(':');

/** Refuse client-initiated renegotiation outright (not just rate-limit it as Node does). */
const SECURE_OPTIONS = constants.SSL_OP_NO_RENEGOTIATION | constants.SSL_OP_CIPHER_SERVER_PREFERENCE;

export function secureContextOptions(s: Snapshot): tls.SecureContextOptions {
  const m = s.tls.material;
  return {
    cert: m.cert,
    key: m.key,
    // An empty CA list would fall back to Node's public roots for the CertificateRequest; with
    // pins alone we verify in tls/verify.ts and need no CA at all.
    ...(m.ca.length > 0 ? { ca: [...m.ca] } : {}),
    minVersion: s.tls.minVersion,
    ciphers: CIPHERS,
    honorCipherOrder: true,
    secureOptions: SECURE_OPTIONS,
  };
}

/** Options fixed for the server's lifetime (not reloadable by setSecureContext). */
export function serverTlsOptions(s: Snapshot): tls.TlsOptions {
  return {
    ...secureContextOptions(s),
    // We verify in JS (tls/verify.ts) exactly as Node itself does with rejectUnauthorized:
    // Node never aborts the handshake for a bad client cert; it destroys the socket right after.
    requestCert: true,
    rejectUnauthorized: false,
  };
}

interface WithSharedCreds {
  _sharedCreds?: tls.SecureContext;
  sessionIdContext?: string;
}

/**
 * Install a snapshot's certificates and trust on the server. Open connections keep the
 * context they were made with; new handshakes use the new one. A fresh context also brings
 * fresh session ticket keys, so tickets issued under withdrawn trust stop resuming.
 *
 * Node's Server#setSecureContext does not forward `allowPartialTrustChain` (needed so that
 * an intermediate alone in clientCAs is a trust anchor), so the context it built is replaced
 * with one that has it. The same object is what new TLS sockets are created with.
 */
export function applySecureContext(server: tls.Server, s: Snapshot): void {
  const opts = secureContextOptions(s);
  server.setSecureContext(opts);
  const internal = server as unknown as WithSharedCreds;
  if (opts.ca !== undefined && typeof internal._sharedCreds === 'object') {
    internal._sharedCreds = tls.createSecureContext({
      ...opts,
      allowPartialTrustChain: true,
      ...(internal.sessionIdContext !== undefined ? { sessionIdContext: internal.sessionIdContext } : {}),
    });
  }
}
