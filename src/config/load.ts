/**
 * YAML text -> validated RawConfig, or every problem with its YAML path and line:col.
 * Never throws for bad input: `check` prints all issues at once, `run` refuses to start,
 * and a reload keeps the old config (SPEC §2, §7).
 */
import { readFile } from 'node:fs/promises';
import { isMap, isNode, isPair, isScalar, LineCounter, parseDocument } from 'yaml';
import type { Document } from 'yaml';
import type { z } from 'zod';
import { configSchema } from './schema.js';
import type { RawConfig } from './schema.js';

export interface ConfigIssue {
  readonly code: 'yaml' | 'schema' | 'file' | 'io';
  /** Dotted YAML path, e.g. `routes[1].prefix`; '' for the whole document. */
  readonly path: string;
  readonly line: number;
  readonly col: number;
  readonly message: string;
}

export type LoadResult =
  | { readonly ok: true; readonly raw: RawConfig; readonly locate: Locator; readonly text: string }
  | { readonly ok: false; readonly issues: readonly ConfigIssue[] };

/** Maps a config path to its place in the YAML text, for errors found after validation. */
export type Locator = (path: readonly PropertyKey[]) => { line: number; col: number };

export async function loadConfigFile(file: string): Promise<LoadResult> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'EIO';
    return { ok: false, issues: [{ code: 'io', path: '', line: 0, col: 0, message: `cannot read config file: ${code}` }] };
  }
  return parseConfigText(text);
}

export function parseConfigText(text: string): LoadResult {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, uniqueKeys: true, prettyErrors: false });
  if (doc.errors.length > 0) {
    return {
      ok: false,
      issues: doc.errors.map((e) => {
        const pos = lineCounter.linePos(e.pos[0]);
        return { code: 'yaml' as const, path: '', line: pos.line, col: pos.col, message: firstLine(e.message) };
      }),
    };
  }
  const locate: Locator = (path) => locateNode(doc, lineCounter, path);
  const parsed = configSchema.safeParse(doc.toJS({ maxAliasCount: 100 }) ?? {});
  if (!parsed.success) {
    return { ok: false, issues: parsed.error.issues.flatMap((issue) => toIssues(issue, doc, lineCounter, locate)) };
  }
  return { ok: true, raw: parsed.data, locate, text };
}

function toIssues(issue: z.core.$ZodIssue, doc: Document, lc: LineCounter, locate: Locator): ConfigIssue[] {
  const path = issue.path;
  if (issue.code === 'unrecognized_keys') {
    // Point at each unknown key itself, not at the map that holds it.
    return issue.keys.map((key) => {
      const pos = locateKey(doc, lc, path, key) ?? locate(path);
      return { code: 'schema' as const, path: formatPath([...path, key]), ...pos, message: `unknown key "${key}"` };
    });
  }
  let message = issue.message;
  if (issue.code === 'invalid_type' && !hasPath(doc, path)) message = `is required (${issue.expected})`;
  else if (issue.code === 'invalid_type') message = `expected ${issue.expected}`;
  return [{ code: 'schema', path: formatPath(path), ...locate(path), message }];
}

function hasPath(doc: Document, path: readonly PropertyKey[]): boolean {
  return path.length === 0 || doc.hasIn(path.map(String)) || doc.hasIn(path as unknown[]);
}

/** The nearest existing node on the path (a missing key points at its parent map). */
function locateNode(doc: Document, lc: LineCounter, path: readonly PropertyKey[]): { line: number; col: number } {
  for (let n = path.length; n >= 0; n--) {
    const node = doc.getIn(path.slice(0, n) as unknown[], true);
    if (isNode(node) && node.range) return lc.linePos(node.range[0]);
  }
  return { line: 1, col: 1 };
}

function locateKey(doc: Document, lc: LineCounter, path: readonly PropertyKey[], key: string): { line: number; col: number } | null {
  const map = path.length === 0 ? doc.contents : doc.getIn(path as unknown[], true);
  if (!isMap(map)) return null;
  for (const pair of map.items) {
    if (isPair(pair) && isScalar(pair.key) && String(pair.key.value) === key && pair.key.range) {
      return lc.linePos(pair.key.range[0]);
    }
  }
  return null;
}

export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const p of path) {
    if (typeof p === 'number') out += `[${p}]`;
    else out += out === '' ? String(p) : `.${String(p)}`;
  }
  return out;
}

function firstLine(s: string): string {
  const i = s.indexOf('\n');
  return i === -1 ? s : s.slice(0, i);
}

/** `file:line:col path: message`, the one format `check`, `run` and reloads print. */
export function formatIssue(file: string, issue: ConfigIssue): string {
  const where = issue.line > 0 ? `${file}:${issue.line}:${issue.col}` : file;
  return issue.path === '' ? `${where}: ${issue.message}` : `${where}: ${issue.path}: ${issue.message}`;
}
