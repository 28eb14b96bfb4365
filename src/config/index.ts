/** Load + compile in one call, with issues already formatted as `file:line:col path: message`. */
import { compileConfig, compileUpstream } from './compile.js';
import { formatIssue, loadConfigFile } from './load.js';
import type { Locator } from './load.js';
import { compileRules } from './rules.js';
import type { RawConfig } from './schema.js';
import type { Snapshot } from './snapshot.js';
import { configWarnings } from './warnings.js';
import type { ConfigWarning } from './warnings.js';

export type ConfigOutcome =
  | { readonly ok: true; readonly snapshot: Snapshot; readonly warnings: readonly ConfigWarning[] }
  | { readonly ok: false; readonly lines: readonly string[] };

/** Warnings (warnings.ts) come only with a config that loaded: a broken one gets its errors alone. */
export async function loadAndCompile(file: string, generation: number, extra: { now?: () => number } = {}): Promise<ConfigOutcome> {
  const loaded = await loadConfigFile(file);
  if (!loaded.ok) return { ok: false, lines: loaded.issues.map((i) => formatIssue(file, i)) };
  const compiled = await compileConfig(loaded.raw, { configFile: file, locate: loaded.locate, generation, text: loaded.text, ...extra });
  if (!compiled.ok) return { ok: false, lines: compiled.issues.map((i) => formatIssue(file, i)) };
  return { ok: true, snapshot: compiled.snapshot, warnings: configWarnings(compiled.snapshot, loaded.locate) };
}

/**
 * `check --no-files`: the schema and its cross-references (names, identities the rate limits
 * name, ports, hosts, tokenScopes without jwt), none of the files: for CI of a config whose
 * certificates exist only in the pod. The warnings too, from rules compiled as `run` would.
 */
export async function loadWithoutFiles(
  file: string,
): Promise<{ readonly ok: true; readonly warnings: readonly ConfigWarning[] } | { readonly ok: false; readonly lines: readonly string[] }> {
  const loaded = await loadConfigFile(file);
  if (!loaded.ok) return { ok: false, lines: loaded.issues.map((i) => formatIssue(file, i)) };
  return { ok: true, warnings: warningsWithoutFiles(loaded.raw, loaded.locate) };
}

/** The warnings of a validated config, from its rules compiled as `run` would (no file read). */
export function warningsWithoutFiles(raw: RawConfig, locate: Locator): ConfigWarning[] {
  const rules = compileRules(raw.identities, raw.routes, raw.policy.mode);
  return configWarnings({ ...rules, upstream: compileUpstream(raw.upstream) }, locate);
}
