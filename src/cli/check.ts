/** `mtls-sidecar check`: load and compile the config exactly as `run` would, print every issue. */
import { parseArgs } from 'node:util';
import { loadAndCompile, loadWithoutFiles } from '../config/index.js';
import { formatWarning } from '../config/warnings.js';
import { EXIT_OK, EXIT_USAGE } from '../errors.js';
import type { CommandIo } from './io.js';
import { resolveConfigPath } from './io.js';

export const CHECK_HELP = `Usage: mtls-sidecar check [--config PATH] [--no-files]

Validates the config and every file it names (PEM parses, key matches cert, pins well formed,
CA usable, CRLs current and signed by a client CA, or naming an intermediate only clients
present, whose signature is checked when a client presents it). Prints "ok", or one line per problem:
  FILE:LINE:COL PATH: MESSAGE
Exit 0 when valid, 2 otherwise.

A valid config may still have probable mistakes; each is one line on stderr before "ok", and the
exit stays 0:
  FILE:LINE:COL PATH: warning: MESSAGE
(a route scope no identity holds, a route or identity rule shadowed by an earlier one, an
upstream that is not loopback). A config with errors gets its errors only.

  --no-files   the schema and cross-references only (names, ports, hosts, identities named by
               rate limits): for CI of a config whose files exist only in the pod`;

export async function checkCommand(argv: string[], io: CommandIo): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({ args: argv, options: { config: { type: 'string', short: 'c' }, 'no-files': { type: 'boolean' }, help: { type: 'boolean', short: 'h' } }, strict: true }));
  } catch (err) {
    io.stderr(`check: ${(err as Error).message}`);
    return EXIT_USAGE;
  }
  if (values.help === true) {
    io.stdout(CHECK_HELP);
    return EXIT_OK;
  }
  const file = resolveConfigPath(values.config);
  const result = values['no-files'] === true ? await loadWithoutFiles(file) : await loadAndCompile(file, 0);
  if (!result.ok) {
    for (const line of result.lines) io.stderr(line);
    return EXIT_USAGE;
  }
  for (const w of result.warnings) io.stderr(formatWarning(file, w));
  io.stdout('ok');
  return EXIT_OK;
}
