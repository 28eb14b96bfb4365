/**
 * Keeps V8's young generation at its initial size while `run` starts up.
 *
 * Start-up (loading modules, compiling the config) allocates ~20 MiB that mostly survives, and
 * V8 answers a high survival rate by doubling the young generation, which then stays committed
 * for the life of the process: ~6 MiB of an idle sidecar's RSS. `--semi-space-growth-factor` is
 * read at each growth, so setting it at run time takes effect (measured; `--max-semi-space-size`
 * does not); once serving starts the V8 default is put back and the young generation grows under
 * load exactly as before. Costs ~20 more scavenges (~25 ms) during start-up.
 */
import { setFlagsFromString } from 'node:v8';

const FLAG = '--semi-space-growth-factor';
/** V8's default (2 in the V8 of Node 20 through 24). */
const V8_DEFAULT = 2;

let held = false;

/** Whoever launched node set the factor on its command line (NODE_OPTIONS refuses it): theirs wins. */
function setByLauncher(): boolean {
  return process.execArgv.some((a) => a.replaceAll('_', '-').startsWith(FLAG));
}

export function holdYoungGeneration(): void {
  if (held || setByLauncher()) return;
  setFlagsFromString(`${FLAG}=1`);
  held = true;
}

/** After start-up; a no-op unless holdYoungGeneration took effect (e.g. `run` called in-process by tests). */
export function releaseYoungGeneration(): void {
  if (!held) return;
  held = false;
  setFlagsFromString(`${FLAG}=${V8_DEFAULT}`);
}
