/**
 * The security headers the sidecar adds (SPEC §4): to its own responses (server/respond.ts) and to
 * the app's unless the app set its own (proxy/headers.ts). Here so both import it downward.
 */
export const SECURITY_HEADERS: ReadonlyArray<readonly [string, string]> = [
  ['strict-transport-security', 'max-age=31536000'],
  ['x-content-type-options', 'nosniff'],
  ['x-frame-options', 'DENY'],
  ['referrer-policy', 'no-referrer'],
];
