/** Per-connection and per-request state, with fixed shapes (every field set in the constructor). */
import type { X509Certificate } from 'node:crypto';
import type { IdentityRule, RouteRule, TrustPolicy } from '../config/snapshot.js';
import type { PeerInfo } from '../identity/peer.js';
import { AuditConn } from '../audit/audit.js';
import type { RequestReason } from '../reasons.js';
import type { JwtConnectionCache, JwtOk } from '../jwt/verify.js';
import type { InboundRequest, OutboundResponse } from '../transport/types.js';

const kConn = Symbol('mtls-sidecar.conn');

interface Carrier {
  [kConn]?: ConnInfo;
}

/**
 * The ConnInfo lives on the TLS socket itself under a symbol. HTTP/2 hands the pipeline only a
 * Proxy of the socket (session.socket), which forwards property reads but is a different
 * object, so a WeakMap keyed by the socket could not find it; a session caches it once.
 */
export function attachConn(socket: object, conn: ConnInfo): void {
  (socket as Carrier)[kConn] = conn;
}

export function connOf(socket: object | null | undefined): ConnInfo | undefined {
  return socket == null ? undefined : (socket as Carrier)[kConn];
}

/**
 * The ConnInfo of a request's connection (InboundRequest.connection): on the TLS socket itself, or
 * found once through a session's `socket` (node:http2's Proxy) and then kept on the session.
 */
export function connOfConnection(connection: object | null): ConnInfo | undefined {
  if (connection === null) return undefined;
  const carrier = connection as Carrier & { readonly socket?: object };
  let conn = carrier[kConn];
  if (conn === undefined) {
    conn = connOf(carrier.socket);
    if (conn !== undefined) carrier[kConn] = conn;
  }
  return conn;
}

/** Computed once per TLS connection, after the handshake check; tagged with the config generation. */
export class ConnInfo {
  generation: number;
  /** Set through setIdentity (the audit fields follow it). */
  identity: IdentityRule | null;
  /** This connection's audit fields, serialized once. */
  audit: AuditConn;
  /** The trust this connection was last judged against (a reload compares with it). */
  trust: TrustPolicy;
  /** Requests in flight on this connection (drain closes idle HTTP/1.1 connections at once). */
  inflight: number;
  /** The HTTP/2 session on this connection, if any (drain sends it GOAWAY). */
  h2: { close(): void } | null;
  /** The TLS SNI name the client asked for (lower case), or null when it sent none. */
  sni: string | null;
  /** The last Host/:authority value found to be served on this connection (not misdirected). */
  servedHost: string | null;
  /** HTTP/1.1: the current request was answered while its body is still arriving. */
  answeredBodyPending: boolean;
  /** base64url SHA-256 of the leaf, for RFC 8705 token binding (computed on first JWT use). */
  jwtThumbprint: string | null;
  /** Verified tokens on this connection (created on first JWT use). */
  jwtCache: JwtConnectionCache | null;
  readonly peer: PeerInfo;
  readonly x509: X509Certificate;
  readonly remote: string;
  readonly tlsVersion: string | null;
  constructor(
    generation: number,
    trust: TrustPolicy,
    x509: X509Certificate,
    peer: PeerInfo,
    identity: IdentityRule | null,
    remote: string,
    tlsVersion: string | null,
  ) {
    this.generation = generation;
    this.trust = trust;
    this.inflight = 0;
    this.h2 = null;
    this.jwtThumbprint = null;
    this.jwtCache = null;
    this.answeredBodyPending = false;
    this.sni = null;
    this.servedHost = null;
    this.x509 = x509;
    this.peer = peer;
    this.identity = identity;
    this.remote = remote;
    this.tlsVersion = tlsVersion;
    this.audit = this.#auditConn();
  }

  /** A reload matched the peer again: identity (and with it the audit fields) may change. */
  setIdentity(identity: IdentityRule | null): void {
    if (identity === this.identity) return;
    this.identity = identity;
    this.audit = this.#auditConn();
  }

  #auditConn(): AuditConn {
    const p = this.peer;
    return new AuditConn(this.identity === null ? null : this.identity.name, p.sha256Hex, p.uri, p.subject, this.remote, this.tlsVersion);
  }
}

/** What the forward step needs, gathered by the checks before it (fixed shape). */
export class ForwardPlan {
  readonly headers: string[];
  readonly authority: string | null;
  readonly contentLength: number | null;
  readonly pathAndQuery: string;
  readonly expectContinue: boolean;
  readonly authorization: string | undefined;
  constructor(headers: string[], authority: string | null, contentLength: number | null, pathAndQuery: string, expectContinue: boolean, authorization: string | undefined) {
    this.headers = headers;
    this.authority = authority;
    this.contentLength = contentLength;
    this.pathAndQuery = pathAndQuery;
    this.expectContinue = expectContinue;
    this.authorization = authorization;
  }
}

export class RequestContext {
  readonly start: number;
  readonly conn: ConnInfo;
  readonly protocol: string;
  readonly method: string;
  readonly req: InboundRequest;
  readonly res: OutboundResponse;
  /** The upstream exchange, once forwarded (the client leaving aborts it). */
  handler: { abort(): void } | null;
  /** Claims of a validated token, when the route needed one. */
  jwt: JwtOk | null;
  /** Response headers the checks add (RateLimit-*), or null. */
  extraHeaders: Record<string, string> | null;
  requestId: string;
  /** Normalized path (no query) once known; the raw path before normalization. */
  path: string;
  route: RouteRule | null;
  decision: 'allow' | 'deny';
  reason: RequestReason;
  /** policy.mode audit: the authorization refusal this request would have had (the first one). */
  wouldDeny: RequestReason | null;
  status: number;
  upstreamStart: number;
  upstreamMs: number | null;
  bytesIn: number;
  bytesOut: number;
  audited: boolean;
  constructor(start: number, conn: ConnInfo, protocol: string, method: string, req: InboundRequest, res: OutboundResponse) {
    this.start = start;
    this.conn = conn;
    this.protocol = protocol;
    this.method = method;
    this.req = req;
    this.res = res;
    this.handler = null;
    this.jwt = null;
    this.extraHeaders = null;
    this.requestId = '';
    this.path = '';
    this.route = null;
    this.decision = 'deny';
    this.wouldDeny = null;
    this.reason = 'ok';
    this.status = 0;
    this.upstreamStart = 0;
    this.upstreamMs = null;
    this.bytesIn = 0;
    this.bytesOut = 0;
    this.audited = false;
  }
}
