/**
 * Golden files for `mtls-sidecar inject` (test/fixtures/inject/README.md): byte-exact output,
 * warnings, Kubernetes schema validity, idempotence, and untouched documents copied verbatim.
 */
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { injectManifests } from '../../../src/inject/documents.js';
import { DEFAULT_SETTINGS } from '../../../src/inject/settings.js';
import { validateK8s } from './k8s-schema.js';
import { runInject } from './run.js';

const ROOT = path.resolve(import.meta.dirname, '../../fixtures/inject');
const UPDATE = process.env['UPDATE_GOLDEN'] === '1';
const cases = readdirSync(ROOT, { withFileTypes: true })
  .filter((e) => e.isDirectory())
  .map((e) => e.name)
  .sort();

function read(file: string): string | undefined {
  return existsSync(file) ? readFileSync(file, 'utf8') : undefined;
}

/** The source text of each document, split the way the injector splits it. */
function segments(text: string): string[] {
  const docs = parseAllDocuments(text, { version: '1.1' });
  if ('empty' in docs) return [];
  let start = 0;
  return docs.map((d, i) => {
    const end = i === docs.length - 1 ? text.length : d.range[2];
    const s = text.slice(start, end);
    start = end;
    return s;
  });
}

describe('inject golden files', () => {
  it('has the corpus the issue asks for', () => {
    expect(cases.length).toBeGreaterThanOrEqual(11);
  });

  for (const name of cases) {
    it(name, async () => {
      const dir = path.join(ROOT, name);
      const input = readFileSync(path.join(dir, 'input.yaml'), 'utf8');
      const args = (read(path.join(dir, 'args')) ?? '').split(/\s+/).filter((a) => a !== '');
      const ran = await runInject(args, input);
      expect(ran.code, ran.stderr).toBe(0);
      if (UPDATE) {
        writeFileSync(path.join(dir, 'expected.yaml'), ran.stdout);
        if (ran.stderr !== '') writeFileSync(path.join(dir, 'expected.stderr'), ran.stderr);
      }
      expect(ran.stdout).toBe(readFileSync(path.join(dir, 'expected.yaml'), 'utf8'));
      expect(ran.stderr).toBe(read(path.join(dir, 'expected.stderr')) ?? '');

      // Every output document is a valid Kubernetes object.
      const docs = parseAllDocuments(ran.stdout, { version: '1.1' });
      if (!('empty' in docs)) {
        for (const doc of docs) {
          expect(doc.errors).toEqual([]);
          const js: unknown = doc.toJS();
          if (js !== null) validateK8s(js);
        }
      }

      // Idempotent: injecting the output changes nothing, and warns about nothing new (the
      // warnings about the manifests come again; line numbers move as documents grew).
      const again = await runInject(args, ran.stdout);
      expect(again.code).toBe(0);
      expect(again.stdout).toBe(ran.stdout);
      const warningsOf = (stderr: string): string[] => stderr.split('\n').filter((l) => l.startsWith('inject: warning: ')).map((l) => l.replace(/^(inject: warning: <stdin>):\d+ /, '$1 '));
      const first = warningsOf(ran.stderr);
      for (const w of warningsOf(again.stderr)) expect(first, 'a warning only the second run gives').toContain(w);
      const summary = again.stderr.trimEnd().split('\n').at(-1) ?? '';
      expect(summary).toMatch(/^inject: (injected 0 of \d+ workloads?|no workloads to inject)/);

      // Documents that were not injected are copied byte for byte.
      const result = injectManifests(input, { settings: args.includes('--legacy') ? { ...DEFAULT_SETTINGS, mode: 'legacy' } : DEFAULT_SETTINGS, policy: args.includes('--all') ? 'all' : 'label' });
      expect(result.ok).toBe(true);
      if (!result.ok) return;
      const injected = new Set(result.reports.filter((r) => r.outcome === 'injected').map((r) => r.document));
      const inSegs = segments(input);
      const outSegs = segments(ran.stdout);
      expect(outSegs.length).toBe(inSegs.length);
      inSegs.forEach((seg, i) => {
        if (!injected.has(i + 1)) expect(outSegs[i], `document ${i + 1}`).toBe(seg);
      });
    });
  }

  it('07-already-injected is its own output', () => {
    const dir = path.join(ROOT, '07-already-injected');
    expect(readFileSync(path.join(dir, 'expected.yaml'), 'utf8')).toBe(readFileSync(path.join(dir, 'input.yaml'), 'utf8'));
  });

  it('03-not-opted-in is copied byte for byte', () => {
    const dir = path.join(ROOT, '03-not-opted-in');
    expect(readFileSync(path.join(dir, 'expected.yaml'), 'utf8')).toBe(readFileSync(path.join(dir, 'input.yaml'), 'utf8'));
  });
});
