/**
 * Waiting in tests: for a condition, poll it with a deadline (never a fixed sleep, which is too
 * short on a busy machine and needlessly long on a quiet one). `sleep` is for pacing a client
 * or for a silence that is itself the behaviour under test.
 */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * Poll `pred` every `everyMs` until it holds or `timeoutMs` has passed; resolves whether it came
 * to hold (the caller asserts, so the failure names what was awaited).
 */
export async function until(pred: () => boolean | Promise<boolean>, timeoutMs: number, everyMs = 20): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!(await pred())) {
    if (Date.now() > deadline) return false;
    await sleep(everyMs);
  }
  return true;
}

/**
 * When a native timer of `ms` armed now actually fires (performance.now()). A limit armed at the
 * same moment is held to this rather than to `ms` itself: on a busy machine both are late by the
 * same event-loop lag, so a test can tell a limit on a coarse clock from a loaded process.
 */
export function nativeTimerFires(ms: number): Promise<number> {
  return new Promise((r) => setTimeout(() => r(performance.now()), ms));
}
