/**
 * Outbound connections: TLS to a destination's target, presenting the workload certificate,
 * and judged (outbound/verify.ts) before undici may write on them. A refused server gets its
 * audit line and metric here, once per connection, and the connection is destroyed before the
 * HTTP client sees it; requests waiting for it fail with `ServerRefused`.
 */
import type { buildConnector } from 'undici';
import type { TLSSocket } from 'node:tls';
import type { PeerInfo } from '../identity/peer.js';
import type { OutboundHandshakeReason } from '../reasons.js';
import { TLS12_CIPHERS, TLS13_CIPHERS } from '../tls/context.js';
import { judgeServer } from './verify.js';
import type { ExpectMatcher } from './verify.js';

/** A destination's server failed verification: the request is never sent (502). */
export class ServerRefused extends Error {
  readonly code = 'ERR_OUTBOUND_SERVER_REFUSED';
  readonly reason: OutboundHandshakeReason;
  constructor(reason: OutboundHandshakeReason) {
    super(`the destination's server was refused: ${reason}`);
    this.reason = reason;
  }
}

/** The TLS material one generation of a destination's pool connects with. */
export interface OutboundTls {
  /** PEM chain and key presented as the client certificate. */
  readonly cert: string;
  readonly key: string;
  /** PEM CAs the server's chain must verify to. */
  readonly ca: readonly string[];
  readonly minVersion: 'TLSv1.2' | 'TLSv1.3';
}

export interface ConnectorHooks {
  /** A verified server: the connection is about to carry requests. */
  onAccepted(peer: PeerInfo, socket: TLSSocket): void;
  /** A refused server (or a TLS failure that is the server's): audited and counted by the caller. */
  onRejected(reason: OutboundHandshakeReason, peer: PeerInfo | null): void;
}

export interface ConnectorOptions {
  readonly tls: OutboundTls;
  readonly serverName: string;
  readonly expect: ExpectMatcher;
  readonly connectTimeoutMs: number;
  readonly allowH2: boolean;
  readonly now: () => number;
}

type Connector = ReturnType<typeof buildConnector>;

/** Where a connection's verified server is kept, so a request can name the server that answered. */
export interface PeerSlot {
  peer: PeerInfo | null;
}

/**
 * A connector for one undici Client: the slot holds the peer of that client's current
 * connection (a Client has one connection at a time).
 */
/** `build`: undici's buildConnector (loaded lazily by the caller). */
export function outboundConnector(o: ConnectorOptions, hooks: ConnectorHooks, slot: PeerSlot, build: typeof buildConnector): Connector {
  const base = build({
    cert: o.tls.cert,
    key: o.tls.key,
    ca: [...o.tls.ca],
    minVersion: o.tls.minVersion,
    ciphers: [...TLS13_CIPHERS, ...TLS12_CIPHERS].join(':'),
    servername: o.serverName,
    // The verdict is read from the socket (verify.ts), so the refused certificate stays
    // readable for the audit line; nothing is written before the verdict.
    rejectUnauthorized: false,
    // `expect` says who the server is (verify.ts); node's host-name check would otherwise put
    // ERR_TLS_CERT_ALTNAME_INVALID where only the chain's verdict belongs.
    checkServerIdentity: () => undefined,
    // No session resumption: every connection is judged on a full handshake, so a rotated trust
    // or expect can never ride on a session verified under the old one (keep-alive connections
    // carry many requests, so handshakes stay rare).
    maxCachedSessions: 0,
    // 0 means no limit of our own; undici still gives up after its default (10 s).
    ...(o.connectTimeoutMs > 0 ? { timeout: o.connectTimeoutMs } : {}),
    allowH2: o.allowH2,
  });
  return (opts, callback) => {
    base({ ...opts, servername: o.serverName }, (err, socket) => {
      if (err !== null) {
        if (isTlsFailure(err)) hooks.onRejected('protocol', null);
        callback(err, null);
        return;
      }
      const verdict = judgeServer(socket as TLSSocket, o.expect, o.now());
      if (!verdict.ok) {
        socket.destroy();
        slot.peer = null;
        hooks.onRejected(verdict.reason, verdict.peer);
        callback(new ServerRefused(verdict.reason), null);
        return;
      }
      slot.peer = verdict.peer;
      hooks.onAccepted(verdict.peer, socket as TLSSocket);
      callback(null, socket);
    });
  };
}

/** An OpenSSL error during the handshake (alert, version, cipher), not a refused TCP connect. */
function isTlsFailure(err: Error): boolean {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' && (code.startsWith('ERR_SSL_') || code === 'ERR_TLS_CERT_ALTNAME_INVALID' || code.startsWith('ERR_TLS_'));
}
