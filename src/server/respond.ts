/** Sidecar-made responses: reason -> status, generic JSON body, extra headers (SPEC §4). */
import { REFUSALS } from '../reasons.js';
import type { ErrorCode, RequestReason } from '../reasons.js';
import { SECURITY_HEADERS } from '../http/security-headers.js';
import type { OutboundResponse } from '../transport/types.js';

export type RefusalReason = Exclude<RequestReason, 'ok' | 'client_aborted' | 'audit_mode'>;

export function refusalBody(reason: RefusalReason, requestId: string): string {
  return errorBody(REFUSALS[reason].code, requestId);
}

/** The one shape of every sidecar-made error body (SPEC §4). */
function errorBody(code: ErrorCode, requestId: string): string {
  return `{"error":"${code}","requestId":"${requestId}"}`;
}

/**
 * Write a refusal. `close` asks HTTP/1.1 to close the connection afterwards (an unread
 * request body must not be parsed as the next request).
 */
export function writeRefusal(
  res: OutboundResponse,
  reason: RefusalReason,
  requestId: string,
  securityHeaders: boolean,
  extra: Record<string, string> | null,
  close: boolean,
): number {
  const { status } = REFUSALS[reason];
  const body = refusalBody(reason, requestId);
  const headers: Record<string, string | number> = {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
    'x-request-id': requestId,
  };
  if (securityHeaders) for (const [k, v] of SECURITY_HEADERS) headers[k] = v;
  if (extra !== null) Object.assign(headers, extra);
  if (close) res.disableKeepAlive();
  res.writeHead(status, headers);
  res.end(body);
  return Buffer.byteLength(body);
}

/** Why the HTTP/1.1 server refused a request it could not read (transport/h1: a parser error or a time limit). */
export function clientErrorReason(code: string | undefined): 'header_too_large' | 'request_timeout' | 'bad_request' {
  return code === 'HPE_HEADER_OVERFLOW' ? 'header_too_large' : code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 'request_timeout' : 'bad_request';
}

/** A raw HTTP/1.1 refusal for parser-level errors, where there is no response object. */
export function rawRefusal(reason: RefusalReason, requestId: string): string {
  const { status } = REFUSALS[reason];
  return rawResponse(status, refusalBody(reason, requestId), requestId);
}

/**
 * The unsolicited answer to a client refused for its certificate (SPEC §4), sent before any
 * request was read: 400 with the generic code, `Connection: close`.
 */
export function certificateRefusal(requestId: string): string {
  return rawResponse(400, certificateRefusalBody(requestId), requestId);
}

export function certificateRefusalBody(requestId: string): string {
  return errorBody('certificate_refused', requestId);
}

function rawResponse(status: number, body: string, requestId: string): string {
  const head = [
    `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? 'Error'}`,
    'content-type: application/json',
    `content-length: ${Buffer.byteLength(body)}`,
    'cache-control: no-store',
    `x-request-id: ${requestId}`,
    'connection: close',
  ];
  for (const [k, v] of SECURITY_HEADERS) head.push(`${k}: ${v}`);
  return `${head.join('\r\n')}\r\n\r\n${body}`;
}

const STATUS_TEXT: Readonly<Record<number, string>> = {
  400: 'Bad Request',
  408: 'Request Timeout',
  413: 'Payload Too Large',
  421: 'Misdirected Request',
  431: 'Request Header Fields Too Large',
};
