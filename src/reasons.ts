/**
 * The closed set of reasons that appear in audit lines, metrics and the README (SPEC §5).
 * One place, so a new refusal cannot be invented ad hoc in a stage.
 */
export const REQUEST_REASONS = [
  'ok',
  'bad_path',
  'bad_request',
  'misdirected',
  'header_too_large',
  'request_timeout',
  'no_route',
  'no_identity',
  'scope_missing',
  'jwt_missing',
  'jwt_invalid',
  'jwt_expired',
  'jwt_cert_mismatch',
  'jwt_revoked',
  'token_scope_missing',
  'rate_limited',
  'ratelimit_unavailable',
  'body_too_large',
  'upstream_unreachable',
  'upstream_timeout',
  'upstream_error',
  'client_aborted',
  'draining',
  'trust_withdrawn',
  'audit_unavailable',
  // Outbound (the app's calls out): an authority no destination lists on the proxy listener, and
  // CONNECT there (never a tunnel: the sidecar must see every request it carries).
  'unknown_destination',
  'method_not_allowed',
  // policy.mode audit: authorization would have refused (wouldDeny says why); the request was served.
  'audit_mode',
  // A bug in the sidecar's own request handling (logged and counted; never the client's fault).
  'internal_error',
] as const;
export type RequestReason = (typeof REQUEST_REASONS)[number];

export const HANDSHAKE_REASONS = [
  'no_cert',
  'untrusted',
  'expired',
  'not_yet_valid',
  'revoked',
  'pin_mismatch',
  'bad_eku',
  'ca_leaf',
  'weak_key',
  'weak_signature',
  'chain_too_long',
  'crl_expired',
  'protocol',
] as const;
export type HandshakeReason = (typeof HANDSHAKE_REASONS)[number];

/**
 * Why an outbound connection's server was refused (the `outbound_handshake_rejected` line); the
 * refused request's own line carries the same reason.
 */
export const OUTBOUND_HANDSHAKE_REASONS = ['untrusted', 'expired', 'not_yet_valid', 'bad_eku', 'identity_mismatch', 'protocol'] as const;
export type OutboundHandshakeReason = (typeof OUTBOUND_HANDSHAKE_REASONS)[number];

/** The reason on an outbound request line. */
export type OutboundReason = RequestReason | OutboundHandshakeReason;

/** Generic error codes in refusal bodies; the specific reason stays in the audit line. */
export type ErrorCode =
  | 'bad_request'
  | 'unauthorized'
  | 'forbidden'
  | 'request_timeout'
  | 'payload_too_large'
  | 'rate_limited'
  | 'header_too_large'
  | 'bad_gateway'
  | 'service_unavailable'
  | 'gateway_timeout'
  | 'misdirected_request'
  | 'internal_error'
  | 'certificate_refused'
  | 'unknown_destination'
  | 'method_not_allowed';

export interface Refusal {
  readonly status: number;
  readonly code: ErrorCode;
}

/** reason -> HTTP status and generic body code; the one mapping (linkerd's errors module idea). */
export const REFUSALS: Readonly<Record<Exclude<RequestReason, 'ok' | 'client_aborted' | 'audit_mode'>, Refusal>> = Object.freeze({
  bad_path: { status: 400, code: 'bad_request' },
  bad_request: { status: 400, code: 'bad_request' },
  misdirected: { status: 421, code: 'misdirected_request' },
  header_too_large: { status: 431, code: 'header_too_large' },
  request_timeout: { status: 408, code: 'request_timeout' },
  no_route: { status: 403, code: 'forbidden' },
  no_identity: { status: 403, code: 'forbidden' },
  scope_missing: { status: 403, code: 'forbidden' },
  trust_withdrawn: { status: 403, code: 'forbidden' },
  jwt_missing: { status: 401, code: 'unauthorized' },
  jwt_invalid: { status: 401, code: 'unauthorized' },
  jwt_expired: { status: 401, code: 'unauthorized' },
  jwt_cert_mismatch: { status: 401, code: 'unauthorized' },
  jwt_revoked: { status: 401, code: 'unauthorized' },
  token_scope_missing: { status: 403, code: 'forbidden' },
  rate_limited: { status: 429, code: 'rate_limited' },
  ratelimit_unavailable: { status: 503, code: 'service_unavailable' },
  body_too_large: { status: 413, code: 'payload_too_large' },
  upstream_unreachable: { status: 502, code: 'bad_gateway' },
  upstream_error: { status: 502, code: 'bad_gateway' },
  upstream_timeout: { status: 504, code: 'gateway_timeout' },
  draining: { status: 503, code: 'service_unavailable' },
  audit_unavailable: { status: 503, code: 'service_unavailable' },
  internal_error: { status: 500, code: 'internal_error' },
  unknown_destination: { status: 403, code: 'unknown_destination' },
  method_not_allowed: { status: 405, code: 'method_not_allowed' },
});

