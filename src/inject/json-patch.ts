/**
 * A small JSON diff producing RFC 6902 operations, enough for what injection does: keys added,
 * replaced or removed, and list entries inserted (init containers appended, a legacy sidecar
 * prepended) while existing entries change in place. The webhook sends these operations as its
 * JSONPatch; the CLI replays them onto the YAML document so comments and key order survive.
 */
import { deepEqual, isObj } from './k8s.js';

export type PatchOp =
  | { readonly op: 'add'; readonly path: string; readonly value: unknown }
  | { readonly op: 'replace'; readonly path: string; readonly value: unknown }
  | { readonly op: 'remove'; readonly path: string };

/** RFC 6901: `~` is `~0`, `/` is `~1` (annotation keys such as `mtls-sidecar.io/status`). */
export function escapePointer(token: string | number): string {
  return String(token).replaceAll('~', '~0').replaceAll('/', '~1');
}

export function pointer(path: readonly (string | number)[]): string {
  return path.map((p) => `/${escapePointer(p)}`).join('');
}

export function unescapePointer(token: string): string {
  return token.replaceAll('~1', '/').replaceAll('~0', '~');
}

/** Operations turning `from` into `to`, with paths split into tokens (see `pointer`). */
export function diff(from: unknown, to: unknown): { readonly op: PatchOp['op']; readonly path: (string | number)[]; readonly value?: unknown }[] {
  const ops: { op: PatchOp['op']; path: (string | number)[]; value?: unknown }[] = [];
  walk(from, to, [], ops);
  return ops;
}

/** The same operations as RFC 6902 JSON, ready to be sent. */
export function jsonPatch(from: unknown, to: unknown): PatchOp[] {
  return diff(from, to).map((o) => (o.op === 'remove' ? { op: 'remove', path: pointer(o.path) } : { op: o.op, path: pointer(o.path), value: o.value }));
}

function walk(a: unknown, b: unknown, path: (string | number)[], ops: { op: PatchOp['op']; path: (string | number)[]; value?: unknown }[]): void {
  if (deepEqual(a, b)) return;
  if (isObj(a) && isObj(b)) {
    for (const key of Object.keys(a)) if (!Object.hasOwn(b, key)) ops.push({ op: 'remove', path: [...path, key] });
    for (const [key, value] of Object.entries(b)) {
      if (!Object.hasOwn(a, key)) ops.push({ op: 'add', path: [...path, key], value });
      else walk(a[key], value, [...path, key], ops);
    }
    return;
  }
  if (Array.isArray(a) && Array.isArray(b)) {
    if (walkInsertions(a, b, path, ops)) return;
    if (a.length === b.length) {
      for (let i = 0; i < a.length; i++) walk(a[i], b[i], [...path, i], ops);
      return;
    }
  }
  ops.push({ op: 'replace', path, value: b });
}

/**
 * When `b` is `a` with entries inserted (and entries of `a` possibly changed in place, matched
 * by `name` where every entry has one, else by equality), emit adds and nested changes only.
 */
function walkInsertions(a: readonly unknown[], b: readonly unknown[], path: (string | number)[], ops: { op: PatchOp['op']; path: (string | number)[]; value?: unknown }[]): boolean {
  if (b.length <= a.length) return false;
  const named = [...a, ...b].every((e) => isObj(e) && typeof e['name'] === 'string');
  const same = (x: unknown, y: unknown): boolean => (named ? (x as { name: string }).name === (y as { name: string }).name : deepEqual(x, y));
  const pending: { op: PatchOp['op']; path: (string | number)[]; value?: unknown }[] = [];
  let i = 0;
  for (let j = 0; j < b.length; j++) {
    if (i < a.length && same(a[i], b[j])) {
      walk(a[i], b[j], [...path, j], pending);
      i++;
    } else {
      pending.push({ op: 'add', path: [...path, j], value: b[j] });
    }
  }
  if (i !== a.length) return false;
  ops.push(...pending);
  return true;
}
