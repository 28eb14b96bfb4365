/** Run `mtls-sidecar inject` in-process, capturing what it prints. */
import { injectCommand } from '../../../src/cli/inject.js';

export interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

export async function runInject(args: string[], stdin?: string): Promise<Ran> {
  let stdout = '';
  let stderr = '';
  const code = await injectCommand(
    args,
    {
      stdout: (line) => (stdout += `${line}\n`),
      stderr: (line) => (stderr += `${line}\n`),
    },
    stdin === undefined ? {} : { stdin },
  );
  return { code, stdout, stderr };
}
