/**
 * YAML text -> validated RawConfig, or every problem with its YAML path and line:col.
 * Never throws for bad input: `check` prints all issues at once, `run` refuses to start,
 * and a reload keeps the old config (SPEC §2, §7).
 */
import { readFile } from 'node:fs/promises';
import { isMap, isNode, isPair, isScalar, LineCounter, parseDocument } from 'yaml';
import type { Document, Scalar } from 'yaml';
import type { z } from 'zod';
import { closestKey, dependenciesOf, keysAt, samePath } from './cascade.js';
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
    return { ok: false, issues: toIssues(parsed.error.issues, doc, lineCounter, locate) };
  }
  return { ok: true, raw: parsed.data, locate, text };
}

/**
 * Zod's issues -> ours, each at its YAML line, one error per mistake (cascade.ts): an unknown
 * key says which allowed key it probably meant and stands for it, and an error that follows
 * from a key that already has one is left out.
 */
function toIssues(zodIssues: readonly z.core.$ZodIssue[], doc: Document, lc: LineCounter, locate: Locator): ConfigIssue[] {
  const found: Found[] = [];
  for (const issue of zodIssues) {
    const path = issue.path;
    if (issue.code === 'unrecognized_keys') {
      const present = mapKeys(doc, path);
      const allowed = (keysAt(configSchema, path) ?? []).filter((k) => !present.has(k));
      // Point at each unknown key itself, not at the map that holds it.
      for (const key of issue.keys) {
        const meant = closestKey(key, allowed);
        const pos = locateKey(doc, lc, path, key) ?? locate(path);
        const message = `unknown key "${key}"${meant === null ? '' : ` (did you mean "${meant}"?)`}`;
        found.push({ issue: { code: 'schema', path: formatPath([...path, key]), ...pos, message }, at: [...path, key], meant: meant === null ? null : [...path, meant], missing: false, deps: null });
      }
      continue;
    }
    const missing = path.length > 0 && issue.code !== 'custom' && !hasPath(doc, path);
    let message = issue.message;
    if (issue.code === 'invalid_type') message = missing ? `is required (${issue.expected})` : `expected ${issue.expected}`;
    found.push({ issue: { code: 'schema', path: formatPath(path), ...locate(path), message }, at: path, meant: null, missing, deps: dependenciesOf(issue) });
  }
  // A key an unknown key stands for is not missing, and it has failed (its error is the unknown key's).
  const meant = found.flatMap((f) => (f.meant === null ? [] : [f.meant]));
  const keep = found.map((f) => !(f.missing && meant.some((m) => samePath(m, f.at))));
  const failed: (readonly PropertyKey[])[] = [...meant];
  found.forEach((f, i) => {
    if (keep[i] === true && f.deps === null) failed.push(f.at);
  });
  // In order, so of two dependent errors with one cause (no clientCAs: "give clientCAs or pins",
  // then "CRLs need clientCAs") only the first is kept.
  found.forEach((f, i) => {
    if (keep[i] !== true || f.deps === null) return;
    if (f.deps.some((d) => failed.some((p) => samePath(p, d)))) keep[i] = false;
    else failed.push(f.at);
  });
  return found.filter((_, i) => keep[i] === true).map((f) => f.issue);
}

interface Found {
  readonly issue: ConfigIssue;
  readonly at: readonly PropertyKey[];
  /** An unknown key's probable meaning, as a path. */
  readonly meant: readonly PropertyKey[] | null;
  /** A key that is required but absent from the YAML. */
  readonly missing: boolean;
  /** A rule's error that follows from these keys (cascade.ts `dependent`). */
  readonly deps: readonly PropertyKey[][] | null;
}

/** The scalar keys written in the YAML map at `path` (none when it is not a map). */
function yamlKeysAt(doc: Document, path: readonly PropertyKey[]): Scalar[] {
  const map = path.length === 0 ? doc.contents : doc.getIn(path as unknown[], true);
  const keys: Scalar[] = [];
  if (!isMap(map)) return keys;
  for (const pair of map.items) if (isPair(pair) && isScalar(pair.key)) keys.push(pair.key);
  return keys;
}

/** The keys written in the YAML map at `path`, as strings. */
function mapKeys(doc: Document, path: readonly PropertyKey[]): Set<string> {
  return new Set(yamlKeysAt(doc, path).map((k) => String(k.value)));
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
  for (const k of yamlKeysAt(doc, path)) if (String(k.value) === key && k.range) return lc.linePos(k.range[0]);
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
