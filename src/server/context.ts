/** Per-connection and per-request state, with fixed shapes (every field set in the constructor). */
import type { X509Certificate } from 'node:crypto';
import type { IdentityRule, RouteRule } from '../config/snapshot.js';
import type { PeerInfo } from '../identity/peer.js';
import type { RequestReason } from '../reasons.js';

/** Computed once per TLS connection, after the handshake check; tagged with the config generation. */
export class ConnInfo {
  generation: number;
  identity: IdentityRule | null;
  readonly peer: PeerInfo;
  readonly x509: X509Certificate;
  readonly remote: string;
  readonly tlsVersion: string | null;
  constructor(generation: number, x509: X509Certificate, peer: PeerInfo, identity: IdentityRule | null, remote: string, tlsVersion: string | null) {
    this.generation = generation;
    this.x509 = x509;
    this.peer = peer;
    this.identity = identity;
    this.remote = remote;
    this.tlsVersion = tlsVersion;
  }
}

export class RequestContext {
  readonly start: number;
  readonly conn: ConnInfo;
  readonly protocol: string;
  readonly method: string;
  requestId: string;
  /** Normalized path (no query) once known; the raw path before normalization. */
  path: string;
  route: RouteRule | null;
  decision: 'allow' | 'deny';
  reason: RequestReason;
  status: number;
  upstreamStart: number;
  upstreamMs: number | null;
  bytesIn: number;
  bytesOut: number;
  audited: boolean;
  constructor(start: number, conn: ConnInfo, protocol: string, method: string) {
    this.start = start;
    this.conn = conn;
    this.protocol = protocol;
    this.method = method;
    this.requestId = '';
    this.path = '';
    this.route = null;
    this.decision = 'deny';
    this.reason = 'ok';
    this.status = 0;
    this.upstreamStart = 0;
    this.upstreamMs = null;
    this.bytesIn = 0;
    this.bytesOut = 0;
    this.audited = false;
  }
}
