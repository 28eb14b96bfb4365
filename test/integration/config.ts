/** A baseline sidecar config over the test PKI, for integration tests to extend. */
import type { TestPki } from '../helpers/pki.js';
import type { ConfigObject } from '../helpers/sidecar.js';

export function baseConfig(pki: TestPki, upstreamUrl: string, overrides: ConfigObject = {}): ConfigObject {
  const uri = (name: string): string => `spiffe://cluster.local/ns/shop/sa/${name}`;
  return {
    version: 1,
    tls: {
      cert: pki.server.cert,
      key: pki.server.key,
      clientCAs: [pki.rootCa.cert],
      ...(overrides['tls'] as object | undefined),
    },
    identities: [
      { name: 'orders', match: { uri: uri('orders') }, scopes: ['orders:read', 'orders:write'] },
      { name: 'billing', match: { uri: uri('billing') }, scopes: ['orders:read'] },
    ],
    routes: [
      { name: 'health', path: '/healthz', methods: ['GET'], public: true },
      { name: 'read', prefix: '/orders', methods: ['GET', 'HEAD'], scopes: ['orders:read'] },
      { name: 'write', prefix: '/orders', methods: ['POST', 'PUT', 'PATCH', 'DELETE'], scopes: ['orders:write'] },
    ],
    upstream: { url: upstreamUrl, connectTimeout: '1s', timeout: '2s' },
    ...Object.fromEntries(Object.entries(overrides).filter(([k]) => k !== 'tls')),
  };
}

export function creds(pki: TestPki, name: keyof TestPki['clients']): { cert: string; key: string; ca: string } {
  const c = pki.clients[name];
  return { cert: c.chain ?? c.cert, key: c.key, ca: pki.rootCa.cert };
}
