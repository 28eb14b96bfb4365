/**
 * The folder layout reads top-down: every import between folders of src/ points to a lower
 * layer, so no folder depends on one above it and there is no cycle between folders. The layers
 * are written out here (ARCHITECTURE.md says the same in words); a new folder must be placed in
 * one before this passes. Relative specifiers only: packages and node: builtins are not layers.
 */
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const SRC = path.resolve(import.meta.dirname, '../../src');

/** Top to bottom. Folders in one row are peers and must not import each other. */
const LAYERS: readonly (readonly string[])[] = [
  ['main'],
  ['cli'],
  ['runtime'],
  ['outbound'],
  ['server'],
  ['admin', 'webhook'],
  ['proxy'],
  ['transport'],
  ['tls'],
  ['config'],
  ['identity', 'policy', 'jwt', 'ratelimit', 'audit', 'inject', 'http1', 'http'],
  ['pki'],
  ['base'],
];

const LAYER_OF = new Map<string, number>();
LAYERS.forEach((row, i) => {
  for (const folder of row) LAYER_OF.set(folder, i);
});

/** src/x/... -> x; src/main.ts -> main; the other top-level files (errors, reasons, log) -> base. */
function folderOf(file: string): string {
  const parts = path.relative(SRC, file).split(path.sep);
  if (parts.length > 1) return parts[0]!;
  return parts[0] === 'main.ts' ? 'main' : 'base';
}

// `from '…'` (import and export), `import('…')` and a bare `import '…'`.
const SPECIFIER = /(?:\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)(['"])(\.{1,2}\/[^'"]+)\1/g;

interface Edge {
  readonly file: string;
  readonly from: string;
  readonly to: string;
}

/** Every import between two different folders of `dir`, read from the source text. */
function folderEdges(dir: string): Edge[] {
  const edges: Edge[] = [];
  for (const rel of readdirSync(dir, { recursive: true, encoding: 'utf8' })) {
    if (!rel.endsWith('.ts')) continue;
    const file = path.join(dir, rel);
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(SPECIFIER)) {
      const target = path.resolve(path.dirname(file), m[2]!);
      const from = folderOf(file);
      const to = folderOf(target);
      if (from !== to) edges.push({ file: path.relative(SRC, file), from, to });
    }
  }
  return edges;
}

/** The imports that run sideways or back up, as "file (from) -> to" lines. */
function upwardImports(edges: readonly Edge[]): string[] {
  const bad: string[] = [];
  for (const e of edges) {
    const a = LAYER_OF.get(e.from);
    const b = LAYER_OF.get(e.to);
    if (a === undefined || b === undefined || b <= a) bad.push(`${e.file} (${e.from}) -> ${e.to}`);
  }
  return bad;
}

/** A cycle between folders, as a list of folders, or null. */
function folderCycle(edges: readonly Edge[]): string[] | null {
  const next = new Map<string, Set<string>>();
  for (const e of edges) {
    let s = next.get(e.from);
    if (s === undefined) next.set(e.from, (s = new Set()));
    s.add(e.to);
  }
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const visit = (n: string): string[] | null => {
    state.set(n, 'open');
    stack.push(n);
    for (const m of next.get(n) ?? []) {
      if (state.get(m) === 'open') return [...stack.slice(stack.indexOf(m)), m];
      if (state.get(m) === undefined) {
        const c = visit(m);
        if (c !== null) return c;
      }
    }
    stack.pop();
    state.set(n, 'done');
    return null;
  };
  for (const n of next.keys()) {
    if (state.get(n) === undefined) {
      const c = visit(n);
      if (c !== null) return c;
    }
  }
  return null;
}

describe('source layout', () => {
  const edges = folderEdges(SRC);

  it('reads imports (the check is not vacuous)', () => {
    expect(edges.length).toBeGreaterThan(50);
    expect(edges).toContainEqual({ file: path.join('server', 'pipeline.ts'), from: 'server', to: 'proxy' });
  });

  it('places every folder of src/ in a layer', () => {
    const folders = new Set(readdirSync(SRC, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.ts')).map((f) => folderOf(path.join(SRC, f))));
    expect([...folders].filter((f) => !LAYER_OF.has(f))).toEqual([]);
  });

  it('has no import from a folder to one at its own layer or above', () => {
    expect(upwardImports(edges)).toEqual([]);
  });

  it('has no cycle between folders', () => {
    expect(folderCycle(edges)).toBeNull();
  });

  it('would catch a back-import and the cycle it makes', () => {
    const back = [...edges, { file: path.join('proxy', 'forward.ts'), from: 'proxy', to: 'server' }];
    expect(upwardImports(back)).toEqual([`${path.join('proxy', 'forward.ts')} (proxy) -> server`]);
    expect(folderCycle(back)).not.toBeNull();
  });
});
