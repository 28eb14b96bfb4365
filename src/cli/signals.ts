/** Process signals for the long-running commands (`run`, `webhook`). */

/**
 * Resolves on the first SIGTERM or SIGINT. A second one calls `onSecondSignal` (main.ts ends the
 * process there, SPEC §7). Either way a handler is in place, so neither signal takes its default
 * action (ending the process without a drain).
 */
export function waitForSignal(onSecondSignal: (() => void) | undefined): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const second = (): void => onSecondSignal?.();
    const on = (sig: NodeJS.Signals): void => {
      process.off('SIGTERM', on);
      process.off('SIGINT', on);
      process.once('SIGTERM', second);
      process.once('SIGINT', second);
      resolve(sig);
    };
    process.once('SIGTERM', on);
    process.once('SIGINT', on);
  });
}

export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
