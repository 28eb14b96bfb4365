/**
 * The `outbound` section -> OutboundSettings: the workload certificate (default tls.cert/key)
 * must be usable as a client certificate, the trust CAs (default tls.clientCAs) must be CAs,
 * and each destination's `expect` is compiled once.
 */
import { X509Certificate, createHash, createPrivateKey } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { IdentityMatcher } from '../identity/match.js';
import { EKU_CLIENT_AUTH, ekuAllows } from '../pki/certinfo.js';
import type { CompileContext } from './compile-context.js';
import type { RawConfig } from './schema.js';
import { TlsMaterial } from './snapshot.js';
import type { CertSummary, OutboundDestination, OutboundSettings, Snapshot } from './snapshot.js';
import { oneLine, parseCerts, summarize } from './tls.js';

type RawOutbound = NonNullable<RawConfig['outbound']>;

/**
 * The `outbound` section -> the snapshot's outbound (and the summaries of its own certificates);
 * null when absent or when a problem was reported. `inbound`: the compiled tls section (its
 * certificate, key and client CAs are the defaults), null when it had problems of its own.
 */
export async function compileOutbound(
  raw: RawConfig['outbound'],
  tls: RawConfig['tls'],
  inbound: Pick<Snapshot, 'tls'> | null,
  ctx: CompileContext,
): Promise<{ outbound: OutboundSettings; certs: CertSummary[] } | null> {
  if (raw === undefined) return null;
  const certs: CertSummary[] = [];
  const outbound = await compile(raw, tls, inbound, ctx, certs);
  return outbound === null ? null : { outbound, certs };
}

async function compile(raw: RawOutbound, tls: RawConfig['tls'], inbound: Pick<Snapshot, 'tls'> | null, ctx: CompileContext, certs: CertSummary[]): Promise<OutboundSettings | null> {
  const own = raw.cert !== undefined && raw.key !== undefined;
  // The defaults come from the tls section; when it failed, its own problems say why.
  if (inbound === null && (!own || raw.trust === undefined)) return null;
  const certPath = own ? ['outbound', 'cert'] : ['tls', 'cert'];
  const keyPath = own ? ['outbound', 'key'] : ['tls', 'key'];
  const certFile = ctx.resolve(raw.cert ?? tls.cert);
  const material = inbound?.tls.material ?? null;
  const certPem = own ? await ctx.read(certFile, certPath) : (material?.cert ?? null);
  const keyPem = own && raw.key !== undefined ? await ctx.read(ctx.resolve(raw.key), keyPath) : (material?.key ?? null);
  let ok = certPem !== null && keyPem !== null;

  const chain = certPem === null ? [] : own ? parseCerts(certPem, certPath, ctx) : parseQuietly(certPem);
  const leaf = chain[0];
  if (leaf !== undefined) {
    if (!ekuAllows(leaf, EKU_CLIENT_AUTH)) {
      ctx.add(own ? ['outbound', 'cert'] : ['outbound'], `the certificate presented to destinations (${own ? 'outbound.cert' : 'tls.cert, the default'}) lacks the clientAuth extended key usage: servers would refuse it`);
      ok = false;
    }
    if (own) {
      certs.push(summarize(leaf, 'outbound', certFile));
      if (leaf.validToDate.getTime() < ctx.now) ctx.add(certPath, `outbound certificate expired on ${leaf.validToDate.toISOString()}`);
    }
  } else {
    ok = false;
  }
  if (own && keyPem !== null && leaf !== undefined) {
    let key: KeyObject | null = null;
    try {
      key = createPrivateKey(keyPem);
    } catch {
      // The key's own parse error could echo key bytes; say only what is wrong.
      ctx.add(keyPath, 'not a readable private key (PEM, unencrypted)');
      ok = false;
    }
    if (key !== null && !leaf.checkPrivateKey(key)) {
      ctx.add(keyPath, 'private key does not match the certificate in outbound.cert');
      ok = false;
    }
  }

  // Trust: outbound.trust, else the inbound client CAs (one mesh CA signs both directions).
  const caPems: Buffer[] = [];
  if (raw.trust === undefined) {
    caPems.push(...(material?.ca ?? []));
    if (caPems.length === 0) {
      ctx.add(['outbound', 'trust'], 'give outbound.trust: tls.clientCAs is empty, so there is no CA to verify destinations against');
      ok = false;
    }
  } else {
    for (const [i, f] of raw.trust.entries()) {
      const p = ['outbound', 'trust', i];
      const file = ctx.resolve(f);
      const pem = await ctx.read(file, p);
      if (pem === null) {
        ok = false;
        continue;
      }
      for (const ca of parseCerts(pem, p, ctx)) {
        if (!ca.ca) {
          ctx.add(p, `"${oneLine(ca.subject)}" is not a CA certificate (basicConstraints CA:TRUE missing)`);
          ok = false;
          continue;
        }
        if (ca.validToDate.getTime() < ctx.now) ctx.add(p, `CA "${oneLine(ca.subject)}" expired on ${ca.validToDate.toISOString()}`);
        caPems.push(Buffer.from(ca.toString()));
        certs.push(summarize(ca, 'outboundCA', file));
      }
    }
  }
  if (!ok || certPem === null || keyPem === null) return null;

  const presented = new TlsMaterial(certPem, keyPem, caPems);
  const common = createHash('sha256');
  common.update(certPem).update('\0').update(keyPem).update('\0');
  for (const ca of caPems) common.update(ca).update('\0');
  const commonDigest = common.update(raw.destinations.length > 0 ? tls.minVersion : '').digest('hex');

  const destinations: OutboundDestination[] = raw.destinations.map((d) => {
    const { host, port } = splitTarget(d.target);
    const serverName = d.serverName ?? host;
    const expect = Object.freeze({ ...d.expect });
    // HTTP/2 carries many requests per connection: a few connections absorb a burst that
    // HTTP/1.1 (one request at a time per connection) needs many for.
    const maxConnections = d.maxConnections ?? (d.http2 ? 4 : 64);
    const poolKey = createHash('sha256')
      .update(JSON.stringify([commonDigest, d.target, serverName, expect, d.http2, d.connectTimeout, d.timeout, maxConnections]))
      .digest('hex');
    return Object.freeze({
      name: d.name,
      listen: d.listen === undefined ? null : Object.freeze({ ...d.listen }),
      target: d.target,
      host,
      port,
      serverName,
      hostHeader: port === 443 ? serverName : `${serverName}:${String(port)}`,
      expect,
      expectMatcher: new IdentityMatcher([{ match: expect }]),
      hosts: Object.freeze(d.hosts.map((h) => h.toLowerCase())),
      http2: d.http2,
      connectTimeoutMs: d.connectTimeout,
      timeoutMs: d.timeout,
      maxConnections,
      poolKey,
    });
  });
  const byAuthority = new Map<string, OutboundDestination>();
  for (const d of destinations) for (const h of d.hosts) byAuthority.set(h, d);
  return Object.freeze({
    material: presented,
    minVersion: tls.minVersion,
    proxy: raw.proxy === undefined ? null : Object.freeze({ ...raw.proxy }),
    destinations: Object.freeze(destinations),
    byAuthority,
  });
}

/** `host:port` (the schema checked its shape); a bracketed IPv6 literal loses its brackets. */
export function splitTarget(target: string): { host: string; port: number } {
  const at = target.lastIndexOf(':');
  const host = target.slice(0, at);
  return { host: host.startsWith('[') ? host.slice(1, -1) : host, port: Number(target.slice(at + 1)) };
}

/** tls.cert was parsed (and its problems reported) by the tls section already. */
function parseQuietly(pem: Buffer): X509Certificate[] {
  const block = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(pem.toString('latin1'));
  if (block === null) return [];
  try {
    return [new X509Certificate(block[0])];
  } catch {
    return [];
  }
}
