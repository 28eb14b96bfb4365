/** docs/sidecar.schema.json is the code's schema, as `make schema` writes it; the examples point editors at it. */
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { configJsonSchema } from '../../../src/config/json-schema.js';

const ROOT = path.resolve(import.meta.dirname, '../../..');

describe('the config JSON Schema', () => {
  it('is what the code generates (run `make schema` after changing src/config/schema.ts)', () => {
    const shipped = readFileSync(path.join(ROOT, 'docs/sidecar.schema.json'), 'utf8');
    expect(shipped).toBe(`${JSON.stringify(configJsonSchema(), null, 2)}\n`);
  });

  it('lists every top-level key, refuses unknown ones, and knows the outbound section', () => {
    const s = configJsonSchema() as { properties: Record<string, { properties?: Record<string, unknown> }>; additionalProperties: boolean; required: string[] };
    expect(s.additionalProperties).toBe(false);
    expect(s.required).toEqual(expect.arrayContaining(['version', 'tls']));
    expect(Object.keys(s.properties)).toEqual(expect.arrayContaining(['listen', 'tls', 'identities', 'routes', 'rateLimit', 'jwt', 'upstream', 'limits', 'audit', 'admin', 'shutdown', 'outbound']));
    expect(Object.keys(s.properties['admin']?.properties ?? {})).toContain('exposeConfig');
  });

  it('every example config names it for the YAML language server', () => {
    const examples = readdirSync(path.join(ROOT, 'examples')).filter((f) => f.endsWith('.yaml'));
    expect(examples.length).toBeGreaterThan(0);
    for (const f of examples) expect(readFileSync(path.join(ROOT, 'examples', f), 'utf8').split('\n')[0], f).toBe('# yaml-language-server: $schema=../docs/sidecar.schema.json');
  });
});
