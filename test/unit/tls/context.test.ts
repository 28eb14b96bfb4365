/**
 * tls/context.ts's hook on Node's tls.Server (the partial-chain context put where Node keeps the
 * server's context) fails loudly on a Node that keeps it elsewhere. That it takes effect on real
 * handshakes is proved in test/integration/tls-trust.test.ts (at start) and reload.test.ts (after
 * a reload).
 */
import { rm } from 'node:fs/promises';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { loadAndCompile } from '../../../src/config/index.js';
import type { Snapshot } from '../../../src/config/snapshot.js';
import { applySecureContext } from '../../../src/tls/context.js';
import { writeConfig, withEphemeralPorts } from '../../helpers/sidecar.js';
import { baseConfig } from '../../integration/config.js';

const pki = inject('pki');
let dir = '';

async function snapshotOf(): Promise<Snapshot> {
  const written = await writeConfig(withEphemeralPorts(baseConfig(pki, 'http://127.0.0.1:1')));
  dir = written.dir;
  const outcome = await loadAndCompile(written.file, 1);
  if (!outcome.ok) throw new Error(outcome.lines.join('\n'));
  return outcome.snapshot;
}

let withCa: Snapshot;
beforeAll(async () => {
  withCa = await snapshotOf();
});
afterAll(async () => rm(dir, { recursive: true, force: true }));

/** Stand-in for a Node whose tls.Server keeps its context under another name. */
class ContextElsewhere extends tls.Server {
  override setSecureContext(options: tls.SecureContextOptions): void {
    super.setSecureContext(options);
    const self = this as unknown as { _sharedCreds?: unknown; _credentials?: unknown };
    self._credentials = self._sharedCreds;
    delete self._sharedCreds;
  }
}

function codeOf(fn: () => void): unknown {
  try {
    fn();
  } catch (err) {
    return { code: (err as { code?: unknown }).code, message: (err as Error).message };
  }
  return 'no error';
}

describe('applySecureContext', () => {
  it('on this Node: installs the context without complaint, and again (a reload)', () => {
    const server = tls.createServer({});
    expect(codeOf(() => applySecureContext(server, withCa))).toBe('no error');
    expect(codeOf(() => applySecureContext(server, withCa))).toBe('no error');
  });

  it('on a Node that keeps the server\'s context elsewhere: ERR_TLS_PARTIAL_CHAIN_HOOK, one line that says what is lost', () => {
    expect(codeOf(() => applySecureContext(new ContextElsewhere({}), withCa))).toEqual({
      code: 'ERR_TLS_PARTIAL_CHAIN_HOOK',
      message: expect.stringMatching(/^Node v[\d.]+ keeps no tls\.Server#_sharedCreds, so an intermediate alone in tls\.clientCAs cannot be made a trust anchor/) as unknown,
    });
  });
});
