/** What a command may touch of the process: injected so commands run in-process in tests. */
export interface CommandIo {
  stdout(line: string): void;
  stderr(line: string): void;
}

export type Command = (argv: string[], io: CommandIo) => Promise<number>;

/** Config path per SPEC §2: --config, else $MTLS_SIDECAR_CONFIG, else ./sidecar.yaml. */
export function resolveConfigPath(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  return flag ?? env['MTLS_SIDECAR_CONFIG'] ?? 'sidecar.yaml';
}
