/**
 * The compiled, frozen configuration the request path reads. Everything here was computed
 * once per load (compile.ts); nothing on the hot path parses or allocates from config.
 */
import type { X509Certificate } from 'node:crypto';
import type { IdentityMatcher, IdentityMatch } from '../identity/match.js';
import type { RouteTable } from '../policy/routes.js';
import type { JwtMaterial } from '../jwt/verify.js';
import type { ParsedCrl } from '../pki/crl.js';

export interface Bucket {
  readonly rps: number;
  readonly burst: number;
}

export interface IdentityRule {
  readonly index: number;
  readonly name: string;
  readonly match: IdentityMatch;
  readonly scopes: readonly string[];
  readonly scopeSet: ReadonlySet<string>;
  /** Pre-joined value of x-client-scopes. */
  readonly scopesHeader: string;
}

export interface RouteRule {
  readonly index: number;
  readonly name: string;
  readonly path?: string;
  readonly prefix?: string;
  readonly glob?: string;
  readonly methods?: readonly string[];
  readonly public: boolean;
  readonly scopes: readonly string[];
  readonly tokenScopes: readonly string[] | undefined;
  readonly rateLimit: Bucket | undefined;
  /** This route's policy mode (its own `mode`, else `policy.mode`). */
  readonly audit: boolean;
}

export interface CertSummary {
  readonly role: 'server' | 'clientCA' | 'outbound' | 'outboundCA';
  readonly file: string;
  readonly subject: string;
  readonly issuer: string;
  readonly sans: readonly string[];
  readonly sha256: string;
  readonly notBefore: string;
  readonly notAfter: string;
  readonly notAfterMs: number;
}

export interface CrlIndex {
  readonly file: string;
  readonly ca: X509Certificate;
  /** Serial numbers, upper-case hex without leading zeros. */
  readonly revoked: ReadonlySet<string>;
  readonly thisUpdate: string;
  readonly nextUpdate: string | null;
  /** nextUpdate in ms since the epoch (Infinity when the CRL has none): past it the CRL is stale. */
  readonly nextUpdateMs: number;
}

/**
 * A CRL whose issuer is none of tls.clientCAs: an intermediate only clients present. Its
 * signature is checked against that intermediate once a verified chain brings it (tls/chain.ts).
 */
export interface PendingCrl {
  readonly file: string;
  readonly crl: ParsedCrl;
  readonly revoked: ReadonlySet<string>;
  readonly thisUpdate: string;
  readonly nextUpdate: string | null;
  readonly nextUpdateMs: number;
}

/** Per CRL file, for mtls_sidecar_crl_next_update_timestamp_seconds: the earliest nextUpdate in it. */
export interface CrlFileSummary {
  readonly file: string;
  /** null when no CRL in the file has a nextUpdate (it never goes stale). */
  readonly nextUpdateMs: number | null;
}

/** What the handshake check needs (tls/verify.ts). */
export interface TrustPolicy {
  readonly hasClientCAs: boolean;
  readonly cas: readonly X509Certificate[];
  /** SHA-256 thumbprints of `cas`, to tell whether a reload removed any. */
  readonly caFingerprints: ReadonlySet<string>;
  readonly pinsSha256: ReadonlySet<string>;
  readonly pinsSpki: ReadonlySet<string>;
  /** Keyed by the issuing CA's subject as node:crypto prints it (X509Certificate#subject). */
  readonly crlsByIssuer: ReadonlyMap<string, readonly CrlIndex[]>;
  /** CRLs of intermediates that are not in clientCAs (their clients present them). */
  readonly pendingCrls: readonly PendingCrl[];
}

/**
 * Secure-context material. The key is held in a class whose JSON form is redacted, so an
 * accidental log or /config dump of the snapshot cannot leak it.
 */
export class TlsMaterial {
  readonly cert: Buffer;
  readonly ca: readonly Buffer[];
  readonly #key: Buffer;
  constructor(cert: Buffer, key: Buffer, ca: readonly Buffer[]) {
    this.cert = cert;
    this.#key = key;
    this.ca = ca;
  }
  get key(): Buffer {
    return this.#key;
  }
  toJSON(): string {
    return '[tls material]';
  }
}

export interface Snapshot {
  readonly generation: number;
  readonly configFile: string;
  /** SHA-256 of every file read for this snapshot, by absolute path (the config file included). */
  readonly fileDigests: ReadonlyMap<string, string>;
  readonly listen: { readonly address: string; readonly port: number; readonly http2: boolean };
  readonly tls: {
    readonly material: TlsMaterial;
    /** The serving certificate (the leaf of tls.cert): which hosts this listener is authoritative for. */
    readonly serverLeaf: X509Certificate | null;
    readonly minVersion: 'TLSv1.2' | 'TLSv1.3';
    readonly trust: TrustPolicy;
    readonly files: readonly string[];
  };
  readonly certs: readonly CertSummary[];
  readonly crlFiles: readonly CrlFileSummary[];
  readonly identities: readonly IdentityRule[];
  readonly identityMatcher: IdentityMatcher<IdentityRule>;
  readonly routes: readonly RouteRule[];
  readonly routeTable: RouteTable<RouteRule>;
  readonly rateLimit: {
    readonly default: Bucket | undefined;
    readonly identities: ReadonlyMap<string, Bucket>;
    readonly backend: 'memory' | 'redis';
    readonly redis: { readonly url: string; readonly keyPrefix: string; readonly onError: 'allow' | 'deny'; readonly cluster: boolean } | undefined;
  } | null;
  /**
   * `jwt` section: its settings with the JWKS file and denylist read and checked, or null. Data
   * only: the verifier and the JWKS URL's key cache live in the Sidecar, which keeps them across
   * reloads that do not change them.
   */
  readonly jwt: { readonly material: JwtMaterial; readonly required: boolean } | null;
  readonly upstream: { readonly origin: string; readonly connectTimeoutMs: number; readonly timeoutMs: number };
  readonly forwardClientCert: 'sanitize_set' | 'sanitize';
  readonly limits: {
    readonly maxBodySize: number;
    readonly maxHeaderSize: number;
    readonly headersTimeoutMs: number;
    readonly requestTimeoutMs: number;
    readonly idleTimeoutMs: number;
    readonly maxHeaders: number;
    readonly maxConcurrentStreams: number;
    readonly maxConnections: number;
  };
  readonly securityHeaders: boolean;
  /** onFull: what happens when the audit destination cannot keep up or fails (audit/sink.ts). */
  readonly audit: { readonly file: string; readonly onFull: 'refuse' | 'drop' };
  /** exposeConfig: /config to every caller, not just loopback ones (SPEC §6). */
  readonly admin: { readonly address: string; readonly port: number; readonly exposeConfig: boolean };
  readonly shutdown: { readonly drainDelayMs: number; readonly timeoutMs: number };
  /** `policy.mode: audit`: authorization refusals are logged and counted, not enforced (a route's own `mode` wins). */
  readonly policyAudit: boolean;
  /** `outbound` section: the app's calls out over mTLS; null when absent. */
  readonly outbound: OutboundSettings | null;
}

export interface ListenAddress {
  readonly address: string;
  readonly port: number;
}

/** One named destination (SPEC §3 `outbound.destinations[]`). */
export interface OutboundDestination {
  readonly name: string;
  /** The loopback port the app calls; null when only the proxy listener reaches it. */
  readonly listen: ListenAddress | null;
  /** `host:port` as configured, and its parts (an IPv6 literal without brackets). */
  readonly target: string;
  readonly host: string;
  readonly port: number;
  readonly serverName: string;
  /** The Host header the remote gets: serverName, with the port unless 443. */
  readonly hostHeader: string;
  readonly expect: IdentityMatch;
  readonly expectMatcher: IdentityMatcher<{ readonly match: IdentityMatch }>;
  /** Lower-cased authorities the proxy listener maps here. */
  readonly hosts: readonly string[];
  readonly http2: boolean;
  readonly connectTimeoutMs: number;
  readonly timeoutMs: number;
  readonly maxConnections: number;
  /**
   * Digest of everything a pooled connection was made with and judged against (certificate,
   * key, trust, expect, target, TLS settings): while it is unchanged a reload keeps the pool;
   * otherwise the pool's connections are retired.
   */
  readonly poolKey: string;
}

export interface OutboundSettings {
  /** The workload certificate presented to servers (default tls.cert/tls.key). */
  readonly material: TlsMaterial;
  readonly minVersion: 'TLSv1.2' | 'TLSv1.3';
  readonly proxy: ListenAddress | null;
  readonly destinations: readonly OutboundDestination[];
  /** Authority (lower case, `host` or `host:port`) -> destination, for the proxy listener. */
  readonly byAuthority: ReadonlyMap<string, OutboundDestination>;
}
