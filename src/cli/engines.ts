/**
 * `--version`, and the refusal to run on a Node older than package.json's `engines` (SPEC §2):
 * both read package.json, the one place the version and the supported Node are written.
 */
import { readFileSync } from 'node:fs';

interface PackageFacts {
  readonly version: string;
  /** `engines.node`, e.g. ">=22.13". */
  readonly node: string;
}

let facts: PackageFacts | null = null;

/** package.json beside dist/ (and src/, for the tests): read once, at start-up. */
export function packageFacts(): PackageFacts {
  if (facts === null) {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: unknown; engines?: { node?: unknown } };
    facts = { version: typeof pkg.version === 'string' ? pkg.version : '0.0.0', node: typeof pkg.engines?.node === 'string' ? pkg.engines.node : '>=0' };
  }
  return facts;
}

/** `mtls-sidecar <version> (node <version>)`. */
export function versionLine(nodeVersion: string = process.version): string {
  return `mtls-sidecar ${packageFacts().version} (node ${nodeVersion})`;
}

/**
 * Null when `nodeVersion` (e.g. "v22.13.0") satisfies `range`, a ">=X[.Y[.Z]]" floor as
 * package.json writes it; else the one line that says which Node is needed.
 */
export function nodeTooOld(nodeVersion: string, range: string): string | null {
  const floor = /^>=\s*(\d+)(?:\.(\d+))?(?:\.(\d+))?$/.exec(range.trim());
  if (floor === null) return null;
  const have = /^v?(\d+)\.(\d+)\.(\d+)/.exec(nodeVersion);
  if (have === null) return null;
  const want = [Number(floor[1]), Number(floor[2] ?? 0), Number(floor[3] ?? 0)];
  const got = [Number(have[1]), Number(have[2]), Number(have[3])];
  for (let i = 0; i < 3; i++) {
    if (got[i]! > want[i]!) return null;
    if (got[i]! < want[i]!) return `mtls-sidecar needs Node ${range.trim()} (this is Node ${nodeVersion}): install a supported Node (22 or 24) and run it again`;
  }
  return null;
}
