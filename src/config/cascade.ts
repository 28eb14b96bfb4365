/**
 * One mistake, one error. A misspelt key is an unknown key, but it is also a key that is now
 * missing, and a rule that needed that key now fails too (`prefx:` in a route: unknown key, and
 * "give exactly one of path, prefix or glob"; `identites:` at the top: unknown key, and "no
 * identity named" for each rate limit). Here, after validation and before printing:
 *  - an unknown key close to a key its map allows but does not have (edit distance, case and
 *    `_`/`-` ignored) says "did you mean", and stands for that key: a "required" error for the
 *    key it meant is dropped;
 *  - a rule's error that follows from other keys (the schema marks it with `dependent()`) is
 *    dropped when one of those keys itself already has an error (it is missing, misspelt, of the
 *    wrong type), or an unknown key stands for it. An error deeper inside such a key does not
 *    count: a duplicate identity name does not make "no identity named" a consequence.
 * Errors that do not follow from another are all kept, so `check` still lists every mistake.
 */
import { z } from 'zod';

/** params of a dependent issue: the keys it follows from, relative to the object its rule ran on. */
interface DependsOn {
  readonly dependsOn: readonly (readonly (string | number)[])[];
  /** How many trailing elements of the issue's path are its own (below the rule's object). */
  readonly depth: number;
}

/**
 * A rule's issue that follows from the given keys (paths relative to the object the rule runs
 * on); `path` is the issue's own, relative to that object too.
 */
export function dependent(path: (string | number)[], dependsOn: (string | number)[][], message: string): { code: 'custom'; path: (string | number)[]; message: string; params: DependsOn } {
  return { code: 'custom', path, message, params: { dependsOn, depth: path.length } };
}

function isDependsOn(p: unknown): p is DependsOn {
  if (typeof p !== 'object' || p === null || !('dependsOn' in p) || !('depth' in p)) return false;
  return Array.isArray(p.dependsOn) && typeof p.depth === 'number';
}

/** The absolute paths a dependent issue follows from, or null for an issue that stands alone. */
export function dependenciesOf(issue: z.core.$ZodIssue): PropertyKey[][] | null {
  if (issue.code !== 'custom') return null;
  const params: unknown = issue.params;
  if (!isDependsOn(params)) return null;
  const base = issue.path.slice(0, issue.path.length - params.depth);
  return params.dependsOn.map((rel) => [...base, ...rel]);
}

export function samePath(a: readonly PropertyKey[], b: readonly PropertyKey[]): boolean {
  return a.length === b.length && a.every((k, i) => String(k) === String(b[i]));
}

/** The keys the object schema at `path` allows, or null when it is not an object (or unknown). */
export function keysAt(schema: unknown, path: readonly PropertyKey[]): string[] | null {
  let s = schema;
  let i = 0;
  for (;;) {
    if (s instanceof z.ZodOptional || s instanceof z.ZodDefault || s instanceof z.ZodPrefault || s instanceof z.ZodNullable) {
      s = s.unwrap();
    } else if (s instanceof z.ZodPipe) {
      s = s.in;
    } else if (i === path.length) {
      if (s instanceof z.ZodObject) return Object.keys(s.shape);
      if (s instanceof z.ZodUnion) return [...new Set(s.options.flatMap((o) => keysAt(o, []) ?? []))];
      return null;
    } else if (s instanceof z.ZodObject) {
      s = s.shape[String(path[i++])];
    } else if (s instanceof z.ZodArray) {
      s = s.element;
      i++;
    } else if (s instanceof z.ZodRecord) {
      s = s.valueType;
      i++;
    } else {
      return null;
    }
  }
}

/** Optimal string alignment distance (a swap of two neighbours counts once). */
function distance(a: string, b: string): number {
  const d: number[][] = [];
  for (let i = 0; i <= a.length; i++) {
    const row: number[] = [i];
    for (let j = 1; j <= b.length; j++) {
      if (i === 0) {
        row.push(j);
        continue;
      }
      const up = d[i - 1] ?? [];
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let best = Math.min((up[j] ?? 0) + 1, (row[j - 1] ?? 0) + 1, (up[j - 1] ?? 0) + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) best = Math.min(best, (d[i - 2]?.[j - 2] ?? 0) + 1);
      row.push(best);
    }
    d.push(row);
  }
  return d[a.length]?.[b.length] ?? Math.max(a.length, b.length);
}

function fold(key: string): string {
  return key.toLowerCase().replace(/[_-]/g, '');
}

/**
 * The one candidate `key` is most likely a misspelling of: at most 1 edit for keys of up to 4
 * letters, 2 for longer ones; none when two candidates are equally close.
 */
export function closestKey(key: string, candidates: readonly string[]): string | null {
  const k = fold(key);
  const limit = k.length <= 4 ? 1 : 2;
  let best: string | null = null;
  let bestD = limit + 1;
  let tie = false;
  for (const c of candidates) {
    const d = distance(k, fold(c));
    if (d < bestD) {
      best = c;
      bestD = d;
      tie = false;
    } else if (d === bestD) {
      tie = true;
    }
  }
  return best === null || tie ? null : best;
}
