// The TLS side of the bench's Node reference servers (bare-undici-proxy.mjs, node-ceiling.mjs):
// client certificate required and verified, and the same TLS versions, suites and server
// preference as the sidecar (src/tls/context.ts), so the references differ from it only in what
// they do per request.
import fs from 'node:fs';

export function referenceTlsOptions(cert, key, ca) {
  return {
    cert: fs.readFileSync(cert),
    key: fs.readFileSync(key),
    ca: fs.readFileSync(ca),
    minVersion: 'TLSv1.2',
    ciphers: [
      'TLS_AES_128_GCM_SHA256', 'TLS_AES_256_GCM_SHA384', 'TLS_CHACHA20_POLY1305_SHA256',
      'ECDHE-ECDSA-AES128-GCM-SHA256', 'ECDHE-RSA-AES128-GCM-SHA256', 'ECDHE-ECDSA-AES256-GCM-SHA384',
      'ECDHE-RSA-AES256-GCM-SHA384', 'ECDHE-ECDSA-CHACHA20-POLY1305', 'ECDHE-RSA-CHACHA20-POLY1305',
    ].join(':'),
    honorCipherOrder: true,
    requestCert: true,
    rejectUnauthorized: true,
    allowHTTP1: true,
  };
}
