/** What a command may touch of the process: injected so commands run in-process in tests. */
export interface CommandIo {
  stdout(line: string): void;
  stderr(line: string): void;
  /**
   * A second SIGTERM/SIGINT while `run` or `webhook` drains (SPEC §7): main.ts ends the process at
   * once. Commands never exit themselves; in-process tests stop them with a promise instead.
   */
  readonly onSecondSignal?: () => void;
}

export type Command = (argv: string[], io: CommandIo) => Promise<number>;

/** Config path per SPEC §2: --config, else $MTLS_SIDECAR_CONFIG, else ./sidecar.yaml. */
export function resolveConfigPath(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  return flag ?? env['MTLS_SIDECAR_CONFIG'] ?? 'sidecar.yaml';
}

/** parseArgs messages are long and suggest `--` tricks; keep one useful line. */
export function parseArgsMessage(e: unknown): string {
  const err = e as { code?: string; message?: string };
  const msg = err.message ?? String(e);
  if (err.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
    const m = /Unknown option '([^']+)'/.exec(msg);
    return `unknown option ${m?.[1] ?? '?'} (see --help)`;
  }
  if (err.code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') {
    const m = /Unexpected argument '([^']+)'/.exec(msg);
    return `unexpected argument ${m?.[1] ?? '?'} (see --help)`;
  }
  // e.g. "Option '--out <value>' argument missing"; parseArgs adds hint lines we drop.
  return (msg.split('\n')[0] ?? msg).replace(/\.$/, '');
}

/**
 * File names from the command line and certificate fields may carry attacker-chosen bytes:
 * control characters are shown escaped, never sent to the terminal.
 */
export function printable(s: string): string {
  return s.replace(/[\x00-\x1f\x7f-\x9f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}
