/**
 * Errors are values with stable codes (fastify/undici style): tests and callers branch on
 * `code`, never on message text, and users see `message` only — never a stack unless --debug.
 */
export class SidecarError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'SidecarError';
    this.code = code;
  }
}

/** Exit codes fixed by SPEC §2. */
export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

/** One readable line for any thrown value: the message, without a stack. */
export function describeError(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    return typeof code === 'string' && !err.message.includes(code) ? `${err.message} (${code})` : err.message;
  }
  return String(err);
}
