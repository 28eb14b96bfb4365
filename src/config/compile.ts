/**
 * RawConfig -> Snapshot: resolve paths, read and check every file the config names, compile
 * identity and route matchers, normalize pins, freeze. All I/O and precomputation happen here,
 * once per load, so a reload can build a complete new snapshot before swapping it in.
 */
import { X509Certificate, createHash, createPrivateKey } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { IdentityMatcher } from '../identity/match.js';
import { RouteTable } from '../policy/routes.js';
import { crlSignatureAlgorithm, parseCrlFile, verifyCrlSignature } from '../pki/crl.js';
import { canonicalSerial, subjectNameDer } from '../pki/certinfo.js';
import { normalizeSha256Thumbprint } from '../pki/thumbprint.js';
import { loadJwtMaterial } from '../jwt/verify.js';
import { JwtError } from '../jwt/errors.js';
import type { JwtSettings } from '../jwt/verify.js';
import type { ConfigIssue, Locator } from './load.js';
import { formatPath } from './load.js';
import type { RawConfig } from './schema.js';
import { compileOutbound } from './outbound.js';
import { TlsMaterial } from './snapshot.js';
import type { Bucket, CertSummary, CrlFileSummary, CrlIndex, IdentityRule, PendingCrl, RouteRule, Snapshot } from './snapshot.js';

export type CompileResult = { readonly ok: true; readonly snapshot: Snapshot } | { readonly ok: false; readonly issues: readonly ConfigIssue[] };

export interface CompileOptions {
  readonly configFile: string;
  readonly locate: Locator;
  readonly generation: number;
  /** The config text, so its digest joins the file digests (reloads skip unchanged inputs). */
  readonly text?: string;
  /** Injected clock so tests can compile "in the future" (expired CRLs). */
  readonly now?: () => number;
}

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

class Issues {
  readonly list: ConfigIssue[] = [];
  readonly digests = new Map<string, string>();
  constructor(private readonly locate: Locator) {}
  add(p: readonly PropertyKey[], message: string, code: ConfigIssue['code'] = 'file'): void {
    this.list.push({ code, path: formatPath(p), ...this.locate(p), message });
  }
}

export async function compileConfig(raw: RawConfig, opts: CompileOptions): Promise<CompileResult> {
  const base = path.dirname(path.resolve(opts.configFile));
  const resolve = (f: string): string => path.resolve(base, f);
  const issues = new Issues(opts.locate);
  const now = (opts.now ?? Date.now)();

  // --- server certificate and key ---
  const certs: CertSummary[] = [];
  const certFile = resolve(raw.tls.cert);
  const keyFile = resolve(raw.tls.key);
  const certPem = await readOrIssue(certFile, ['tls', 'cert'], issues);
  const keyPem = await readOrIssue(keyFile, ['tls', 'key'], issues);
  let serverChain: X509Certificate[] = [];
  if (certPem !== null) {
    serverChain = parseCerts(certPem, ['tls', 'cert'], issues);
    const leaf = serverChain[0];
    if (leaf !== undefined) {
      certs.push(summarize(leaf, 'server', certFile));
      if (leaf.validToDate.getTime() < now) issues.add(['tls', 'cert'], `server certificate expired on ${leaf.validToDate.toISOString()}`);
    }
  }
  let key: KeyObject | null = null;
  if (keyPem !== null) {
    try {
      key = createPrivateKey(keyPem);
    } catch {
      // The key's own parse error could echo key bytes; say only what is wrong.
      issues.add(['tls', 'key'], 'not a readable private key (PEM, unencrypted)');
    }
  }
  const leaf = serverChain[0];
  if (key !== null && leaf !== undefined && !leaf.checkPrivateKey(key)) {
    issues.add(['tls', 'key'], 'private key does not match the certificate in tls.cert');
  }

  // --- client CAs ---
  const caPems: Buffer[] = [];
  const cas: X509Certificate[] = [];
  for (const [i, f] of raw.tls.clientCAs.entries()) {
    const p = ['tls', 'clientCAs', i];
    const pem = await readOrIssue(resolve(f), p, issues);
    if (pem === null) continue;
    const parsed = parseCerts(pem, p, issues);
    for (const ca of parsed) {
      if (!ca.ca) {
        issues.add(p, `"${ca.subject.replace(/\n/g, ', ')}" is not a CA certificate (basicConstraints CA:TRUE missing)`);
        continue;
      }
      if (ca.validToDate.getTime() < now) issues.add(p, `CA "${oneLine(ca.subject)}" expired on ${ca.validToDate.toISOString()}`);
      cas.push(ca);
      caPems.push(Buffer.from(ca.toString()));
      certs.push(summarize(ca, 'clientCA', resolve(f)));
    }
  }

  // --- pins ---
  const pinsSha256 = new Set<string>();
  const pinsSpki = new Set<string>();
  for (const pin of raw.tls.pins) {
    if (pin.startsWith('spki:')) pinsSpki.add(pin.slice(5));
    else pinsSha256.add(normalizeSha256Thumbprint(pin) ?? pin);
  }

  // --- CRLs: each must be current and signed by one of the client CAs, or else name an
  // intermediate that only clients present (checked against it in the handshake, tls/chain.ts) ---
  const crlsByIssuer = new Map<string, CrlIndex[]>();
  const pendingCrls: PendingCrl[] = [];
  const crlFiles: CrlFileSummary[] = [];
  for (const [i, f] of raw.tls.crls.entries()) {
    const p = ['tls', 'crls', i];
    const file = resolve(f);
    const buf = await readOrIssue(file, p, issues);
    if (buf === null) continue;
    let parsed;
    try {
      parsed = parseCrlFile(buf);
    } catch (err) {
      issues.add(p, `not a CRL (PEM or DER): ${messageOf(err)}`);
      continue;
    }
    let earliest: number | null = null;
    for (const crl of parsed) {
      if (crl.nextUpdate !== null && crl.nextUpdate.getTime() < now) {
        issues.add(p, `CRL expired (nextUpdate ${crl.nextUpdate.toISOString()}): replace it with the issuer's current CRL`);
        continue;
      }
      try {
        crlSignatureAlgorithm(crl);
      } catch (err) {
        issues.add(p, `CRL signature cannot be checked: ${messageOf(err)}`);
        continue;
      }
      const dates = {
        file,
        revoked: new Set([...crl.revokedSerials].map(canonicalSerial)),
        thisUpdate: crl.thisUpdate.toISOString(),
        nextUpdate: crl.nextUpdate === null ? null : crl.nextUpdate.toISOString(),
        nextUpdateMs: crl.nextUpdate === null ? Infinity : crl.nextUpdate.getTime(),
      };
      if (crl.nextUpdate !== null) earliest = Math.min(earliest ?? Infinity, crl.nextUpdate.getTime());
      // Several CAs may share a subject name: the one whose key verifies the CRL issued it.
      const named = cas.filter((ca) => subjectNameDer(ca.raw).equals(crl.issuerDer));
      if (named.length === 0) {
        pendingCrls.push(Object.freeze({ ...dates, crl }));
        continue;
      }
      const issuer = named.find((ca) => verifyCrlSignature(crl, ca.publicKey));
      if (issuer === undefined) {
        issues.add(p, `CRL signature does not verify with CA "${oneLine(named[0]!.subject)}"`);
        continue;
      }
      const list = crlsByIssuer.get(issuer.subject) ?? [];
      list.push(Object.freeze({ ...dates, ca: issuer }));
      crlsByIssuer.set(issuer.subject, list);
    }
    crlFiles.push(Object.freeze({ file, nextUpdateMs: earliest }));
  }

  // --- identities and routes (already validated by the schema) ---
  const identities: IdentityRule[] = raw.identities.map((id, index) =>
    Object.freeze({
      index,
      name: id.name,
      match: Object.freeze({ ...id.match }),
      scopes: Object.freeze([...id.scopes]),
      scopeSet: new Set(id.scopes),
      scopesHeader: id.scopes.join(' '),
    }),
  );
  const routes: RouteRule[] = raw.routes.map((r, index) =>
    Object.freeze({
      index,
      name: r.name,
      ...(r.path !== undefined ? { path: r.path } : {}),
      ...(r.prefix !== undefined ? { prefix: r.prefix } : {}),
      ...(r.glob !== undefined ? { glob: r.glob } : {}),
      ...(r.methods !== undefined ? { methods: Object.freeze([...r.methods]) } : {}),
      public: r.public,
      scopes: Object.freeze([...r.scopes]),
      tokenScopes: r.tokenScopes === undefined ? undefined : Object.freeze([...r.tokenScopes]),
      rateLimit: r.rateLimit === undefined ? undefined : Object.freeze({ ...r.rateLimit }),
    }),
  );

  // --- JWT: keys and denylist are read now, so a bad JWKS is a config error like a bad PEM.
  // Only the loaded data goes into the snapshot; the sidecar builds (and keeps) the verifier.
  let jwt: Snapshot['jwt'] = null;
  if (raw.jwt !== undefined) {
    try {
      const material = await loadJwtMaterial(jwtSettingsFromConfig(raw.jwt, resolve));
      for (const [f, digest] of material.fileDigests) issues.digests.set(f, digest);
      jwt = Object.freeze({ material, required: raw.jwt.required });
    } catch (err) {
      if (err instanceof JwtError) issues.add(err.configPath, err.message);
      else issues.add(['jwt'], messageOf(err));
    }
  } else {
    raw.routes.forEach((r, i) => {
      if (r.tokenScopes !== undefined) issues.add(['routes', i, 'tokenScopes'], 'tokenScopes needs a jwt section', 'schema');
    });
  }

  const outbound =
    raw.outbound === undefined
      ? null
      : await compileOutbound(
          raw.outbound,
          raw.tls,
          { certPem, keyPem, caPems },
          {
            now,
            resolve,
            read: (file, p) => readOrIssue(file, p, issues),
            parseCerts: (pem, p) => parseCerts(pem, p, issues),
            summarize,
            issue: (p, message) => issues.add(p, message),
          },
          certs,
        );

  if (issues.list.length > 0 || key === null || certPem === null || keyPem === null) {
    return { ok: false, issues: issues.list };
  }

  const rl = raw.rateLimit;
  const snapshot: Snapshot = {
    generation: opts.generation,
    configFile: path.resolve(opts.configFile),
    fileDigests: new Map([
      ...(opts.text !== undefined ? [[path.resolve(opts.configFile), createHash('sha256').update(opts.text).digest('hex')] as const] : []),
      ...issues.digests,
    ]),
    listen: Object.freeze({ ...raw.listen }),
    tls: Object.freeze({
      material: new TlsMaterial(certPem, keyPem, caPems),
      serverLeaf: serverChain[0] ?? null,
      minVersion: raw.tls.minVersion,
      trust: Object.freeze({
        hasClientCAs: cas.length > 0,
        cas: Object.freeze([...cas]),
        caFingerprints: new Set(cas.map((ca) => ca.fingerprint256)),
        pinsSha256,
        pinsSpki,
        crlsByIssuer: new Map([...crlsByIssuer].map(([k, v]) => [k, Object.freeze(v)] as const)),
        pendingCrls: Object.freeze(pendingCrls),
      }),
      files: Object.freeze([certFile, keyFile, ...raw.tls.clientCAs.map(resolve), ...raw.tls.crls.map(resolve)]),
    }),
    certs: Object.freeze(certs.map((c) => Object.freeze(c))),
    crlFiles: Object.freeze(crlFiles),
    identities: Object.freeze(identities),
    identityMatcher: new IdentityMatcher(identities),
    routes: Object.freeze(routes),
    routeTable: new RouteTable(routes),
    jwt,
    rateLimit:
      rl === undefined
        ? null
        : Object.freeze({
            default: rl.default === undefined ? undefined : Object.freeze({ ...rl.default }),
            identities: new Map<string, Bucket>(Object.entries(rl.identities).map(([k, v]) => [k, Object.freeze({ ...v })])),
            backend: rl.backend,
            redis: rl.redis === undefined ? undefined : Object.freeze({ ...rl.redis }),
          }),
    upstream: Object.freeze({
      origin: raw.upstream.url.replace(/\/$/, ''),
      connectTimeoutMs: raw.upstream.connectTimeout,
      timeoutMs: raw.upstream.timeout,
    }),
    forwardClientCert: raw.forwardClientCert,
    limits: Object.freeze({
      maxBodySize: raw.limits.maxBodySize,
      maxHeaderSize: raw.limits.maxHeaderSize,
      headersTimeoutMs: raw.limits.headersTimeout,
      requestTimeoutMs: raw.limits.requestTimeout,
      idleTimeoutMs: raw.limits.idleTimeout,
      maxHeaders: raw.limits.maxHeaders,
      maxConcurrentStreams: raw.limits.maxConcurrentStreams,
      maxConnections: raw.limits.maxConnections,
    }),
    securityHeaders: raw.securityHeaders,
    audit: Object.freeze({ file: raw.audit.file === 'stdout' || raw.audit.file === 'stderr' ? raw.audit.file : resolve(raw.audit.file), onFull: raw.audit.onFull }),
    admin: Object.freeze({ ...raw.admin }),
    shutdown: Object.freeze({ drainDelayMs: raw.shutdown.drainDelay, timeoutMs: raw.shutdown.timeout }),
    outbound,
  };
  return { ok: true, snapshot: Object.freeze(snapshot) };
}

async function readOrIssue(file: string, p: readonly PropertyKey[], issues: Issues): Promise<Buffer | null> {
  try {
    const buf = await readFile(file);
    issues.digests.set(file, createHash('sha256').update(buf).digest('hex'));
    return buf;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    issues.add(p, code === 'ENOENT' ? `file not found: ${file}` : `cannot read ${file}: ${code ?? 'error'}`);
    return null;
  }
}

function parseCerts(pem: Buffer, p: readonly PropertyKey[], issues: Issues): X509Certificate[] {
  const blocks = pem.toString('latin1').match(PEM_CERT) ?? [];
  if (blocks.length === 0) {
    issues.add(p, 'no PEM certificate found (expected -----BEGIN CERTIFICATE-----)');
    return [];
  }
  const out: X509Certificate[] = [];
  for (const [n, block] of blocks.entries()) {
    try {
      out.push(new X509Certificate(block));
    } catch {
      issues.add(p, `certificate #${n + 1} in the file does not parse`);
    }
  }
  return out;
}

function summarize(c: X509Certificate, role: CertSummary['role'], file: string): CertSummary {
  return {
    role,
    file,
    subject: oneLine(c.subject),
    issuer: oneLine(c.issuer),
    sans: c.subjectAltName === undefined ? [] : c.subjectAltName.split(', '),
    sha256: c.fingerprint256,
    notBefore: c.validFromDate.toISOString(),
    notAfter: c.validToDate.toISOString(),
    notAfterMs: c.validToDate.getTime(),
  };
}

function oneLine(subject: string): string {
  return subject.split('\n').join(', ');
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export type RawJwtConfig = NonNullable<RawConfig['jwt']>;

/** The `jwt` config section (schema.ts) -> JwtSettings, with file paths resolved by the caller; here so jwt/ never reads raw config. */
export function jwtSettingsFromConfig(jwt: RawJwtConfig, resolvePath: (file: string) => string): JwtSettings {
  return {
    issuer: jwt.issuer,
    audience: jwt.audience,
    algorithms: jwt.algorithms,
    clockSkewMs: jwt.clockSkew,
    requireJti: jwt.requireJti,
    certificateBound: jwt.certificateBound,
    jwks: 'file' in jwt.jwks ? { file: resolvePath(jwt.jwks.file) } : { url: jwt.jwks.url, cacheForMs: jwt.jwks.cacheFor },
    denylistFile: jwt.denylist === undefined ? undefined : resolvePath(jwt.denylist),
  };
}
