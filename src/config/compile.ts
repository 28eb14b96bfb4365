/**
 * RawConfig -> Snapshot: resolve paths, read and check every file the config names, compile
 * identity and route matchers, normalize pins, freeze. All I/O and precomputation happen here,
 * once per load, so a reload can build a complete new snapshot before swapping it in.
 *
 * One compile function per config section, each returning its part of the snapshot and
 * reporting its problems to the CompileContext at their YAML path. A new section is one function
 * and one line in compileConfig: above the check when it reads files or can find problems, in the
 * snapshot literal when it only maps values.
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

export async function compileConfig(raw: RawConfig, opts: CompileOptions): Promise<CompileResult> {
  const ctx = new CompileContext(opts.configFile, opts.locate, (opts.now ?? Date.now)());
  // Sections that read files, in the order their problems are reported.
  const tls = await compileTls(raw.tls, ctx);
  const jwt = await compileJwt(raw.jwt, raw.routes, ctx);
  if (tls === null || ctx.issues.length > 0) return { ok: false, issues: ctx.issues };

  const configFile = path.resolve(opts.configFile);
  const snapshot: Snapshot = {
    generation: opts.generation,
    configFile,
    fileDigests: new Map([...(opts.text !== undefined ? [[configFile, createHash('sha256').update(opts.text).digest('hex')] as const] : []), ...ctx.digests]),
    listen: Object.freeze({ ...raw.listen }),
    ...tls,
    ...compileRules(raw.identities, raw.routes),
    jwt,
    rateLimit: compileRateLimit(raw.rateLimit),
    upstream: compileUpstream(raw.upstream),
    forwardClientCert: raw.forwardClientCert,
    limits: compileLimits(raw.limits),
    securityHeaders: raw.securityHeaders,
    audit: compileAudit(raw.audit, ctx),
    admin: Object.freeze({ ...raw.admin }),
    shutdown: Object.freeze({ drainDelayMs: raw.shutdown.drainDelay, timeoutMs: raw.shutdown.timeout }),
  };
  return { ok: true, snapshot: Object.freeze(snapshot) };
}

/**
 * What every section shares: the config's folder (relative paths resolve against it), the clock,
 * and where problems and file digests go. A section reports each problem at its YAML path and
 * carries on, so `check` prints them all at once.
 */
class CompileContext {
  /** In the order found. */
  readonly issues: ConfigIssue[] = [];
  /** SHA-256 (hex) of every file read, by absolute path, in the order read. */
  readonly digests = new Map<string, string>();
  readonly #base: string;
  readonly #locate: Locator;

  constructor(
    configFile: string,
    locate: Locator,
    readonly now: number,
  ) {
    this.#base = path.dirname(path.resolve(configFile));
    this.#locate = locate;
  }

  /** A path from the config, relative to the config file's folder. */
  resolve(file: string): string {
    return path.resolve(this.#base, file);
  }

  add(p: readonly PropertyKey[], message: string, code: ConfigIssue['code'] = 'file'): void {
    this.issues.push({ code, path: formatPath(p), ...this.#locate(p), message });
  }

  /** The file's bytes (digest recorded), or null with the problem reported at `p`. */
  async read(file: string, p: readonly PropertyKey[]): Promise<Buffer | null> {
    try {
      const buf = await readFile(file);
      this.digests.set(file, createHash('sha256').update(buf).digest('hex'));
      return buf;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      this.add(p, code === 'ENOENT' ? `file not found: ${file}` : `cannot read ${file}: ${code ?? 'error'}`);
      return null;
    }
  }
}

// ---------------------------------------------------------------- tls

type RawTls = RawConfig['tls'];

/** The `tls` section -> the snapshot's tls, certs and crlFiles; null when a problem was reported. */
async function compileTls(t: RawTls, ctx: CompileContext): Promise<Pick<Snapshot, 'tls' | 'certs' | 'crlFiles'> | null> {
  const server = await compileServerCert(t, ctx);
  const clientCAs = await compileClientCAs(t.clientCAs, ctx);
  const pins = compilePins(t.pins);
  const crls = await compileCrls(t.crls, clientCAs.cas, ctx);
  if (server === null) return null;
  const cas = clientCAs.cas;
  return {
    tls: Object.freeze({
      material: new TlsMaterial(server.certPem, server.keyPem, clientCAs.pems),
      serverLeaf: server.leaf,
      minVersion: t.minVersion,
      trust: Object.freeze({
        hasClientCAs: cas.length > 0,
        cas: Object.freeze([...cas]),
        caFingerprints: new Set(cas.map((ca) => ca.fingerprint256)),
        pinsSha256: pins.sha256,
        pinsSpki: pins.spki,
        crlsByIssuer: crls.byIssuer,
        pendingCrls: crls.pending,
      }),
      files: Object.freeze([server.certFile, server.keyFile, ...t.clientCAs.map((f) => ctx.resolve(f)), ...t.crls.map((f) => ctx.resolve(f))]),
    }),
    certs: Object.freeze([...server.certs, ...clientCAs.certs].map((c) => Object.freeze(c))),
    crlFiles: Object.freeze(crls.files),
  };
}

interface ServerCert {
  readonly certFile: string;
  readonly keyFile: string;
  readonly certPem: Buffer;
  readonly keyPem: Buffer;
  readonly leaf: X509Certificate | null;
  readonly certs: readonly CertSummary[];
}

/** tls.cert and tls.key: both readable, the leaf current, the key its own; null when not usable. */
async function compileServerCert(t: RawTls, ctx: CompileContext): Promise<ServerCert | null> {
  const certs: CertSummary[] = [];
  const certFile = ctx.resolve(t.cert);
  const keyFile = ctx.resolve(t.key);
  const certPem = await ctx.read(certFile, ['tls', 'cert']);
  const keyPem = await ctx.read(keyFile, ['tls', 'key']);
  let serverChain: X509Certificate[] = [];
  if (certPem !== null) {
    serverChain = parseCerts(certPem, ['tls', 'cert'], ctx);
    const leaf = serverChain[0];
    if (leaf !== undefined) {
      certs.push(summarize(leaf, 'server', certFile));
      if (leaf.validToDate.getTime() < ctx.now) ctx.add(['tls', 'cert'], `server certificate expired on ${leaf.validToDate.toISOString()}`);
    }
  }
  let key: KeyObject | null = null;
  if (keyPem !== null) {
    try {
      key = createPrivateKey(keyPem);
    } catch {
      // The key's own parse error could echo key bytes; say only what is wrong.
      ctx.add(['tls', 'key'], 'not a readable private key (PEM, unencrypted)');
    }
  }
  const leaf = serverChain[0];
  if (key !== null && leaf !== undefined && !leaf.checkPrivateKey(key)) {
    ctx.add(['tls', 'key'], 'private key does not match the certificate in tls.cert');
  }
  if (key === null || certPem === null || keyPem === null) return null;
  return { certFile, keyFile, certPem, keyPem, leaf: leaf ?? null, certs };
}

/** tls.clientCAs: CA certificates only, each current. */
async function compileClientCAs(files: readonly string[], ctx: CompileContext): Promise<{ cas: X509Certificate[]; pems: Buffer[]; certs: CertSummary[] }> {
  const pems: Buffer[] = [];
  const cas: X509Certificate[] = [];
  const certs: CertSummary[] = [];
  for (const [i, f] of files.entries()) {
    const p = ['tls', 'clientCAs', i];
    const pem = await ctx.read(ctx.resolve(f), p);
    if (pem === null) continue;
    const parsed = parseCerts(pem, p, ctx);
    for (const ca of parsed) {
      if (!ca.ca) {
        ctx.add(p, `"${ca.subject.replace(/\n/g, ', ')}" is not a CA certificate (basicConstraints CA:TRUE missing)`);
        continue;
      }
      if (ca.validToDate.getTime() < ctx.now) ctx.add(p, `CA "${oneLine(ca.subject)}" expired on ${ca.validToDate.toISOString()}`);
      cas.push(ca);
      pems.push(Buffer.from(ca.toString()));
      certs.push(summarize(ca, 'clientCA', ctx.resolve(f)));
    }
  }
  return { cas, pems, certs };
}

/** tls.pins (checked by the schema): SHA-256 thumbprints normalized, SPKI pins as written. */
function compilePins(pins: readonly string[]): { sha256: Set<string>; spki: Set<string> } {
  const sha256 = new Set<string>();
  const spki = new Set<string>();
  for (const pin of pins) {
    if (pin.startsWith('spki:')) spki.add(pin.slice(5));
    else sha256.add(normalizeSha256Thumbprint(pin) ?? pin);
  }
  return { sha256, spki };
}

/**
 * tls.crls: each must be current and signed by one of the client CAs, or else name an
 * intermediate that only clients present (checked against it in the handshake, tls/chain.ts).
 */
async function compileCrls(
  files: readonly string[],
  cas: readonly X509Certificate[],
  ctx: CompileContext,
): Promise<{ byIssuer: ReadonlyMap<string, readonly CrlIndex[]>; pending: readonly PendingCrl[]; files: CrlFileSummary[] }> {
  const crlsByIssuer = new Map<string, CrlIndex[]>();
  const pendingCrls: PendingCrl[] = [];
  const crlFiles: CrlFileSummary[] = [];
  for (const [i, f] of files.entries()) {
    const p = ['tls', 'crls', i];
    const file = ctx.resolve(f);
    const buf = await ctx.read(file, p);
    if (buf === null) continue;
    let parsed;
    try {
      parsed = parseCrlFile(buf);
    } catch (err) {
      ctx.add(p, `not a CRL (PEM or DER): ${messageOf(err)}`);
      continue;
    }
    let earliest: number | null = null;
    for (const crl of parsed) {
      if (crl.nextUpdate !== null && crl.nextUpdate.getTime() < ctx.now) {
        ctx.add(p, `CRL expired (nextUpdate ${crl.nextUpdate.toISOString()}): replace it with the issuer's current CRL`);
        continue;
      }
      try {
        crlSignatureAlgorithm(crl);
      } catch (err) {
        ctx.add(p, `CRL signature cannot be checked: ${messageOf(err)}`);
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
        ctx.add(p, `CRL signature does not verify with CA "${oneLine(named[0]!.subject)}"`);
        continue;
      }
      const list = crlsByIssuer.get(issuer.subject) ?? [];
      list.push(Object.freeze({ ...dates, ca: issuer }));
      crlsByIssuer.set(issuer.subject, list);
    }
    crlFiles.push(Object.freeze({ file, nextUpdateMs: earliest }));
  }
  return {
    byIssuer: new Map([...crlsByIssuer].map(([k, v]) => [k, Object.freeze(v)] as const)),
    pending: Object.freeze(pendingCrls),
    files: crlFiles,
  };
}

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

function parseCerts(pem: Buffer, p: readonly PropertyKey[], ctx: CompileContext): X509Certificate[] {
  const blocks = pem.toString('latin1').match(PEM_CERT) ?? [];
  if (blocks.length === 0) {
    ctx.add(p, 'no PEM certificate found (expected -----BEGIN CERTIFICATE-----)');
    return [];
  }
  const out: X509Certificate[] = [];
  for (const [n, block] of blocks.entries()) {
    try {
      out.push(new X509Certificate(block));
    } catch {
      ctx.add(p, `certificate #${n + 1} in the file does not parse`);
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

// ---------------------------------------------------------------- identities, routes

/** `identities` and `routes` (already validated by the schema) -> frozen rules and their matchers. */
function compileRules(
  rawIdentities: RawConfig['identities'],
  rawRoutes: RawConfig['routes'],
): Pick<Snapshot, 'identities' | 'identityMatcher' | 'routes' | 'routeTable'> {
  const identities: IdentityRule[] = rawIdentities.map((id, index) =>
    Object.freeze({
      index,
      name: id.name,
      match: Object.freeze({ ...id.match }),
      scopes: Object.freeze([...id.scopes]),
      scopeSet: new Set(id.scopes),
      scopesHeader: id.scopes.join(' '),
    }),
  );
  const routes: RouteRule[] = rawRoutes.map((r, index) =>
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
  return {
    identities: Object.freeze(identities),
    identityMatcher: new IdentityMatcher(identities),
    routes: Object.freeze(routes),
    routeTable: new RouteTable(routes),
  };
}

// ---------------------------------------------------------------- jwt

/**
 * The `jwt` section: keys and denylist are read now, so a bad JWKS is a config error like a bad
 * PEM. Only the loaded data goes into the snapshot; the sidecar builds (and keeps) the verifier.
 * Without the section, a route's tokenScopes has nothing to check it.
 */
async function compileJwt(jwt: RawJwtConfig | undefined, routes: RawConfig['routes'], ctx: CompileContext): Promise<Snapshot['jwt']> {
  if (jwt === undefined) {
    routes.forEach((r, i) => {
      if (r.tokenScopes !== undefined) ctx.add(['routes', i, 'tokenScopes'], 'tokenScopes needs a jwt section', 'schema');
    });
    return null;
  }
  try {
    const material = await loadJwtMaterial(jwtSettingsFromConfig(jwt, (f) => ctx.resolve(f)));
    for (const [f, digest] of material.fileDigests) ctx.digests.set(f, digest);
    return Object.freeze({ material, required: jwt.required });
  } catch (err) {
    if (err instanceof JwtError) ctx.add(err.configPath, err.message);
    else ctx.add(['jwt'], messageOf(err));
    return null;
  }
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

// ---------------------------------------------------------------- the value-only sections

function compileRateLimit(rl: RawConfig['rateLimit']): Snapshot['rateLimit'] {
  if (rl === undefined) return null;
  return Object.freeze({
    default: rl.default === undefined ? undefined : Object.freeze({ ...rl.default }),
    identities: new Map<string, Bucket>(Object.entries(rl.identities).map(([k, v]) => [k, Object.freeze({ ...v })])),
    backend: rl.backend,
    redis: rl.redis === undefined ? undefined : Object.freeze({ ...rl.redis }),
  });
}

function compileUpstream(u: RawConfig['upstream']): Snapshot['upstream'] {
  return Object.freeze({
    origin: u.url.replace(/\/$/, ''),
    connectTimeoutMs: u.connectTimeout,
    timeoutMs: u.timeout,
  });
}

function compileLimits(l: RawConfig['limits']): Snapshot['limits'] {
  return Object.freeze({
    maxBodySize: l.maxBodySize,
    maxHeaderSize: l.maxHeaderSize,
    headersTimeoutMs: l.headersTimeout,
    requestTimeoutMs: l.requestTimeout,
    idleTimeoutMs: l.idleTimeout,
    maxHeaders: l.maxHeaders,
    maxConcurrentStreams: l.maxConcurrentStreams,
    maxConnections: l.maxConnections,
  });
}

/** stdout and stderr are destinations, not file names. */
function compileAudit(a: RawConfig['audit'], ctx: CompileContext): Snapshot['audit'] {
  return Object.freeze({ file: a.file === 'stdout' || a.file === 'stderr' ? a.file : ctx.resolve(a.file), onFull: a.onFull });
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
