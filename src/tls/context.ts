/**
 * Secure-context options for the listener (SPEC §3, §4 protective defaults) and the one place
 * that installs them on a server, at start and on every reload.
 */
import { constants } from 'node:crypto';
import tls from 'node:tls';
import type { Snapshot } from '../config/snapshot.js';
import { SidecarError } from '../errors.js';

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

/** Node's own fields on a tls.Server (lib/_tls_wrap.js, the same in Node 22 and 24). */
interface WithSharedCreds {
  /** The context every new TLSSocket of the server is made with; Server#setSecureContext assigns it. */
  _sharedCreds?: unknown;
  sessionIdContext?: string;
}

function hookGone(what: string): SidecarError {
  return new SidecarError(
    'ERR_TLS_PARTIAL_CHAIN_HOOK',
    `Node ${process.version} ${what}, so an intermediate alone in tls.clientCAs cannot be made a trust anchor (tls/context.ts); run the sidecar on the Node it supports`,
  );
}

/**
 * Install a snapshot's certificates and trust on the server. Open connections keep the
 * context they were made with; new handshakes use the new one. A fresh context also brings
 * fresh session ticket keys, so tickets issued under withdrawn trust stop resuming.
 *
 * An intermediate alone in clientCAs must be a trust anchor (`allowPartialTrustChain`), and
 * Node gives a tls.Server no supported way to ask for it: Server#setSecureContext and the
 * constructor pass createSecureContext a fixed list of options without it, and there is no
 * `secureContext` server option. An SNICallback returning a prebuilt context is not called for a
 * client that sends no SNI (one connecting by IP), and a net.Server wrapping sockets in
 * `new TLSSocket({ secureContext })` would give up tls.Server's handshake timeout and
 * node:http2's server. So the context setSecureContext built is replaced with one that has the
 * flag, where Node keeps it (`_sharedCreds`, which it hands to every new TLSSocket). Each step is
 * checked: if a Node upgrade keeps the context elsewhere, this throws ERR_TLS_PARTIAL_CHAIN_HOOK
 * when the listener is made, so `run` stops with one line and exit 1 instead of refusing every
 * client of such an intermediate as untrusted. test/integration/tls-trust.test.ts proves the
 * flag on real handshakes, at start and after a reload.
 */
export function applySecureContext(server: tls.Server, s: Snapshot): void {
  const opts = secureContextOptions(s);
  if (opts.ca === undefined) {
    // Pins alone: no CA, no chain for OpenSSL to build.
    server.setSecureContext(opts);
    return;
  }
  const internal = server as unknown as WithSharedCreds;
  const partial = tls.createSecureContext({
    ...opts,
    allowPartialTrustChain: true,
    ...(internal.sessionIdContext !== undefined ? { sessionIdContext: internal.sessionIdContext } : {}),
  });
  const SecureContext = partial.constructor;
  const before = internal._sharedCreds;
  if (!(before instanceof SecureContext)) throw hookGone('keeps no tls.Server#_sharedCreds');
  server.setSecureContext(opts);
  const built = internal._sharedCreds;
  if (built === before || !(built instanceof SecureContext)) throw hookGone('no longer installs a new context in tls.Server#_sharedCreds');
  internal._sharedCreds = partial;
  if (internal._sharedCreds !== partial) throw hookGone('does not let tls.Server#_sharedCreds be replaced');
}
