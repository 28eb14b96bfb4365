/**
 * Errors raised while loading JWT key material and the jti denylist. Request-time failures are
 * never thrown: they are `JwtResult` values. Messages name files and line numbers only — never
 * a token, a claim value or key bytes — so they can go to the operational log as they are.
 */
import { readFile } from 'node:fs/promises';
import { SidecarError } from '../errors.js';

export type JwtErrorCode =
  | 'ERR_JWKS_FILE' // the JWKS file cannot be read
  | 'ERR_JWKS' // a JWKS (file or URL) that is not a usable public JWK Set
  | 'ERR_JWKS_FETCH' // the JWKS URL could not be fetched (status, timeout, network, size)
  | 'ERR_DENYLIST'; // the jti denylist cannot be read or has a malformed line

/** Which config key the error belongs to, for the loader's `path line:col` report. */
export type JwtConfigKey = readonly ['jwt', 'jwks', 'file'] | readonly ['jwt', 'jwks', 'url'] | readonly ['jwt', 'denylist'];

export class JwtError extends SidecarError {
  declare readonly code: JwtErrorCode;
  readonly configPath: JwtConfigKey;
  /** 1-based line in the denylist file, when the problem is on one line. */
  readonly line: number | null;

  constructor(code: JwtErrorCode, configPath: JwtConfigKey, message: string, options?: { cause?: unknown; line?: number }) {
    super(code, message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'JwtError';
    this.configPath = configPath;
    this.line = options?.line ?? null;
  }
}

export function isJwtError(e: unknown): e is JwtError {
  return e instanceof JwtError;
}

/** Read a JWKS or denylist file; a missing or unreadable one is a JwtError naming the file (never its bytes). */
export async function readJwtFile(file: string, code: 'ERR_JWKS_FILE' | 'ERR_DENYLIST', configPath: JwtConfigKey): Promise<Buffer> {
  try {
    return await readFile(file);
  } catch (err) {
    const errno = (err as NodeJS.ErrnoException).code;
    throw new JwtError(code, configPath, errno === 'ENOENT' ? `file not found: ${file}` : `cannot read ${file}: ${errno ?? 'error'}`, { cause: err });
  }
}
