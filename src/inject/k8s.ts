/**
 * Just enough structure to walk untrusted Kubernetes objects (YAML from a user, JSON from the
 * API server) without `any`: every read goes through a guard, every unknown field is kept.
 */

export type Obj = Record<string, unknown>;

export function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date);
}

export function str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

/** The object at `o[key]`, created (and attached) when absent. */
export function ensureObj(o: Obj, key: string): Obj {
  const v = o[key];
  if (isObj(v)) return v;
  const created: Obj = {};
  o[key] = created;
  return created;
}

/** The list of objects at `o[key]`, created when absent. The caller has checked its shape. */
export function ensureList(o: Obj, key: string): Obj[] {
  const v = o[key];
  if (Array.isArray(v)) return v as Obj[];
  const created: Obj[] = [];
  o[key] = created;
  return created;
}

/** Checks that `v` is absent or a list of objects that each have a string `name`. */
export function checkNamedList(v: unknown, where: string): string | null {
  if (v === undefined || v === null) return null;
  if (!Array.isArray(v)) return `${where} must be a list`;
  for (let i = 0; i < v.length; i++) {
    const item: unknown = v[i];
    if (!isObj(item)) return `${where}[${i}] must be a mapping`;
    if (typeof item['name'] !== 'string' || item['name'] === '') return `${where}[${i}].name must be a non-empty string`;
  }
  return null;
}

export function namedList(v: unknown): Obj[] {
  return Array.isArray(v) ? v.filter(isObj) : [];
}

/** Structural equality over JSON-like values (YAML 1.1 timestamps compare by value). */
export function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (a instanceof Date || b instanceof Date) return a instanceof Date && b instanceof Date && a.getTime() === b.getTime();
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!deepEqual(a[i], b[i])) return false;
    return true;
  }
  if (isObj(a)) {
    if (!isObj(b)) return false;
    const ka = Object.keys(a);
    if (ka.length !== Object.keys(b).length) return false;
    for (const k of ka) if (!Object.hasOwn(b, k) || !deepEqual(a[k], b[k])) return false;
    return true;
  }
  return false;
}
