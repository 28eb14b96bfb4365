/** Load + compile in one call, with issues already formatted as `file:line:col path: message`. */
import { compileConfig } from './compile.js';
import { formatIssue, loadConfigFile } from './load.js';
import type { Snapshot } from './snapshot.js';

export type ConfigOutcome = { readonly ok: true; readonly snapshot: Snapshot } | { readonly ok: false; readonly lines: readonly string[] };

export async function loadAndCompile(file: string, generation: number, extra: { now?: () => number } = {}): Promise<ConfigOutcome> {
  const loaded = await loadConfigFile(file);
  if (!loaded.ok) return { ok: false, lines: loaded.issues.map((i) => formatIssue(file, i)) };
  const compiled = await compileConfig(loaded.raw, { configFile: file, locate: loaded.locate, generation, text: loaded.text, ...extra });
  if (!compiled.ok) return { ok: false, lines: compiled.issues.map((i) => formatIssue(file, i)) };
  return { ok: true, snapshot: compiled.snapshot };
}

/**
 * `check --no-files`: the schema and its cross-references (names, identities the rate limits
 * name, ports, hosts, tokenScopes without jwt), none of the files: for CI of a config whose
 * certificates exist only in the pod.
 */
export async function loadWithoutFiles(file: string): Promise<{ readonly ok: true } | { readonly ok: false; readonly lines: readonly string[] }> {
  const loaded = await loadConfigFile(file);
  return loaded.ok ? { ok: true } : { ok: false, lines: loaded.issues.map((i) => formatIssue(file, i)) };
}
