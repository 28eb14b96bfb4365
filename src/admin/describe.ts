/**
 * The effective config for GET /config: an explicit allow-list of what may be shown. Keys never
 * appear (the snapshot's TlsMaterial is not read here), URLs lose their userinfo, and each
 * certificate is described by subject, SANs, thumbprint and validity.
 */
import type { Snapshot } from '../config/snapshot.js';

export function describeConfig(s: Snapshot): Record<string, unknown> {
  return {
    generation: s.generation,
    configFile: s.configFile,
    listen: s.listen,
    tls: {
      minVersion: s.tls.minVersion,
      serverCertificate: s.certs.filter((c) => c.role === 'server').map(certView),
      clientCAs: s.certs.filter((c) => c.role === 'clientCA').map(certView),
      pins: [...[...s.tls.trust.pinsSha256].map((p) => `sha256:${p}`), ...[...s.tls.trust.pinsSpki].map((p) => `spki:${p}`)],
      crls: [
        ...[...s.tls.trust.crlsByIssuer.values()].flat().map((c) => ({
          file: c.file,
          issuer: c.ca.subject.split('\n').join(', '),
          thisUpdate: c.thisUpdate,
          nextUpdate: c.nextUpdate,
          revoked: c.revoked.size,
        })),
        // Signed by an intermediate only clients present: checked against it in the handshake.
        ...s.tls.trust.pendingCrls.map((c) => ({
          file: c.file,
          issuer: 'intermediate CA (not in clientCAs)',
          thisUpdate: c.thisUpdate,
          nextUpdate: c.nextUpdate,
          revoked: c.revoked.size,
        })),
      ],
    },
    identities: s.identities.map((i) => ({ name: i.name, match: i.match, scopes: i.scopes })),
    routes: s.routes.map((r) => ({
      name: r.name,
      ...(r.path !== undefined ? { path: r.path } : {}),
      ...(r.prefix !== undefined ? { prefix: r.prefix } : {}),
      ...(r.glob !== undefined ? { glob: r.glob } : {}),
      methods: r.methods ?? 'any',
      public: r.public,
      scopes: r.scopes,
      ...(r.tokenScopes !== undefined ? { tokenScopes: r.tokenScopes } : {}),
      ...(r.rateLimit !== undefined ? { rateLimit: r.rateLimit } : {}),
    })),
    rateLimit:
      s.rateLimit === null
        ? null
        : {
            default: s.rateLimit.default ?? null,
            identities: Object.fromEntries(s.rateLimit.identities),
            backend: s.rateLimit.backend,
            redis: s.rateLimit.redis === undefined ? null : { ...s.rateLimit.redis, url: withoutCredentials(s.rateLimit.redis.url) },
          },
    upstream: { ...s.upstream, origin: withoutCredentials(s.upstream.origin) },
    forwardClientCert: s.forwardClientCert,
    limits: s.limits,
    securityHeaders: s.securityHeaders,
    audit: s.audit,
    admin: s.admin,
    shutdown: s.shutdown,
    outbound:
      s.outbound === null
        ? null
        : {
            // Default tls.cert: the serving certificate above is the one presented.
            certificate: s.certs.filter((c) => c.role === 'outbound').map(certView),
            trust: s.certs.filter((c) => c.role === 'outboundCA').map(certView),
            proxy: s.outbound.proxy,
            destinations: s.outbound.destinations.map((d) => ({
              name: d.name,
              listen: d.listen,
              target: d.target,
              serverName: d.serverName,
              expect: d.expect,
              hosts: d.hosts,
              http2: d.http2,
              connectTimeoutMs: d.connectTimeoutMs,
              timeoutMs: d.timeoutMs,
              maxConnections: d.maxConnections,
            })),
          },
  };
}

function certView(c: Snapshot['certs'][number]): Record<string, unknown> {
  return { file: c.file, subject: c.subject, issuer: c.issuer, sans: c.sans, sha256: `sha256:${c.sha256}`, notBefore: c.notBefore, notAfter: c.notAfter };
}

/** redis://user:secret@host -> redis://***@host */
export function withoutCredentials(url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^@/]*@/i, '$1***@');
}
