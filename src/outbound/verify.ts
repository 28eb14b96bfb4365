/**
 * Outbound stage 1: is the server we connected to the one the destination expects? Runs once per
 * outbound connection, after the TLS handshake and before the connection is handed to the HTTP
 * client, so a refused server never receives a byte of the request.
 *
 * OpenSSL verifies the chain against `outbound.trust` (as a client it checks the serverAuth
 * purpose, so a leaf whose EKU lacks serverAuth fails there too); node records the verdict in
 * `authorizationError` because the socket is made with rejectUnauthorized: false, which keeps
 * the refused certificate readable for the audit line. We add the identity check (`expect`),
 * which replaces the host-name check: the SPIFFE ID, not the DNS name, says who the server is.
 */
import type { X509Certificate } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import type { IdentityMatch, IdentityMatcher } from '../identity/match.js';
import { describePeer } from '../identity/peer.js';
import { EKU_SERVER_AUTH, ekuAllows } from '../pki/certinfo.js';
import type { PeerInfo } from '../identity/peer.js';
import type { OutboundHandshakeReason } from '../reasons.js';

export type ServerVerdict =
  | { readonly ok: true; readonly peer: PeerInfo }
  | { readonly ok: false; readonly reason: OutboundHandshakeReason; readonly peer: PeerInfo | null };

/** OpenSSL verify codes that name a more specific reason than "untrusted". */
const OPENSSL_REASONS: Readonly<Record<string, OutboundHandshakeReason>> = {
  CERT_HAS_EXPIRED: 'expired',
  CERT_NOT_YET_VALID: 'not_yet_valid',
  INVALID_PURPOSE: 'bad_eku',
};

/** The `expect` rule of one destination, compiled once per configuration. */
export type ExpectMatcher = IdentityMatcher<{ readonly match: IdentityMatch }>;

export function judgeServer(socket: TLSSocket, expect: ExpectMatcher, now: number): ServerVerdict {
  const x509 = socket.getPeerX509Certificate();
  if (x509 === undefined) return { ok: false, reason: 'untrusted', peer: null };
  const peer = describePeer(x509);
  const reason = serverReason(x509, chainErrorCode(socket.authorizationError), now) ?? (expect.match(peer.fields) === undefined ? 'identity_mismatch' : null);
  return reason === null ? { ok: true, peer } : { ok: false, reason, peer };
}

/** Validity first (the reason an operator acts on), then the chain, then the leaf's EKU. */
function serverReason(x509: X509Certificate, chainError: string | null, now: number): OutboundHandshakeReason | null {
  if (now < x509.validFromDate.getTime()) return 'not_yet_valid';
  if (now > x509.validToDate.getTime()) return 'expired';
  if (chainError !== null) return OPENSSL_REASONS[chainError] ?? 'untrusted';
  // Belt and braces for OpenSSL's purpose check: an EKU that is present must allow serverAuth.
  if (!ekuAllows(x509, EKU_SERVER_AUTH)) return 'bad_eku';
  return null;
}

function chainErrorCode(err: unknown): string | null {
  if (err === null || err === undefined) return null;
  if (typeof err === 'string') return err;
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' ? code : 'UNKNOWN';
}
