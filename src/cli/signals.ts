/** Process signals for the long-running commands (`run`, `webhook`). */

/**
 * Resolves on the first SIGTERM or SIGINT. A second one ends the process at once (SPEC §7):
 * commands never exit themselves, so it is passed to main.ts as the `mtls-sidecar:abort` event.
 */
export function waitForSignal(): Promise<string> {
  return new Promise((resolve) => {
    const on = (sig: string): void => {
      process.off('SIGTERM', on);
      process.off('SIGINT', on);
      process.once('SIGTERM', () => process.emit('mtls-sidecar:abort' as 'SIGTERM'));
      process.once('SIGINT', () => process.emit('mtls-sidecar:abort' as 'SIGINT'));
      resolve(sig);
    };
    process.once('SIGTERM', on);
    process.once('SIGINT', on);
  });
}

export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
