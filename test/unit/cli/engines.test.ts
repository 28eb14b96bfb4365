/** The supported-Node floor read from package.json's engines, and the --version line (SPEC §2). */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { nodeTooOld, packageFacts, versionLine } from '../../../src/cli/engines.js';

const pkg = JSON.parse(readFileSync(path.resolve(import.meta.dirname, '../../../package.json'), 'utf8')) as { version: string; engines: { node: string } };

describe('engines', () => {
  it('reads the version and the Node floor from package.json', () => {
    expect(packageFacts()).toEqual({ version: pkg.version, node: pkg.engines.node });
    expect(versionLine('v24.1.0')).toBe(`mtls-sidecar ${pkg.version} (node v24.1.0)`);
  });

  it.each([
    ['v22.13.0', '>=22.13', true],
    ['v22.13.1', '>=22.13', true],
    ['v22.12.9', '>=22.13', false],
    ['v20.20.2', '>=22.13', false],
    ['v24.0.0', '>=22.13', true],
    ['v23.0.0', '>=22.13.5', true],
    ['v22.13.4', '>=22.13.5', false],
  ])('%s against %s: allowed %s', (version, range, ok) => {
    const line = nodeTooOld(version, range);
    if (ok) expect(line).toBeNull();
    else expect(line).toBe(`mtls-sidecar needs Node ${range} (this is Node ${version}): install a supported Node (22 or 24) and run it again`);
  });
});
