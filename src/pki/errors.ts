/**
 * Errors raised by the PKI helpers. Each carries a stable `code` so callers (config loader, CLI,
 * handshake hooks) can branch on it and print `message` as one readable line without a stack.
 */
export type PkiErrorCode =
  | 'ERR_DER' // malformed DER (bad tag, length, truncated, trailing bytes)
  | 'ERR_CERT' // a certificate whose structure is not X.509 v1/v3
  | 'ERR_CRL' // a CRL whose structure is not a valid X.509 CRL
  | 'ERR_CRL_PEM' // a CRL file with no PEM CRL block and no DER CRL
  | 'ERR_CRL_ALG' // a CRL signed with an algorithm we do not verify
  | 'ERR_CRL_UNSUPPORTED' // delta or indirect CRL, or an unknown critical extension
  | 'ERR_PKI_INPUT' // bad option given to the dev CA (name, IP, days...)
  | 'ERR_CA_FILES' // a CA loaded from files that cannot issue (not a CA, key does not match...)
  | 'ERR_EXISTS'; // refusing to overwrite a file

export class PkiError extends Error {
  readonly code: PkiErrorCode;

  constructor(code: PkiErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'PkiError';
    this.code = code;
  }
}

export function isPkiError(e: unknown): e is PkiError {
  return e instanceof PkiError;
}
