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
/** `explain`: the request would be refused. */
export const EXIT_DENIED = 3;

/** One readable line for any thrown value: the message, without a stack. */
export function describeError(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    return typeof code === 'string' && !err.message.includes(code) ? `${err.message} (${code})` : err.message;
  }
  return String(err);
}

/**
 * What the operational log may say of an unexpected exception (a bug): its name, code and where
 * it was thrown (stack frames). Not the message: one built from input (JSON.parse quotes it, for
 * one) could carry a header value or a token into the log.
 */
export function bugFacts(err: unknown): { error: string; code?: string; at: string[] } {
  if (!(err instanceof Error)) return { error: typeof err, at: [] };
  const code = (err as { code?: unknown }).code;
  const at: string[] = [];
  for (const line of (err.stack ?? '').split('\n')) {
    // V8's frame lines; the message's own lines come before them.
    if (line.startsWith('    at ')) at.push(line.slice(7));
    if (at.length === 8) break;
  }
  return typeof code === 'string' ? { error: err.name, code, at } : { error: err.name, at };
}
