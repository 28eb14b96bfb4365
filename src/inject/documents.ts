/**
 * Multi-document YAML in, the same YAML out with the sidecar added to every pod template that
 * opts in. Untouched documents are copied byte for byte from the input; an injected document
 * is edited through the `yaml` Document API, replaying the JSON-Patch operations of the
 * injection onto its nodes, so its comments and key order survive too.
 *
 * YAML is read as 1.1, as Kubernetes (sigs.k8s.io/yaml) reads it: `0644` is octal and `on` a
 * boolean, so the injector sees what the API server will see.
 */
import { isMap, isScalar, isSeq, LineCounter, parseAllDocuments, visit } from 'yaml';
import type { Document } from 'yaml';
import { bypassWarnings, collectNeighbours, NO_POLICY_WARNING } from './bypass.js';
import { injectTemplate } from './inject.js';
import type { InjectOptions, SkipReason } from './inject.js';
import { diff } from './json-patch.js';
import { isObj, str } from './k8s.js';
import type { Obj } from './k8s.js';

/** Where the pod template sits in each workload kind that has one. */
const TEMPLATE_PATHS: Readonly<Record<string, readonly string[]>> = {
  Pod: [],
  Deployment: ['spec', 'template'],
  StatefulSet: ['spec', 'template'],
  DaemonSet: ['spec', 'template'],
  ReplicaSet: ['spec', 'template'],
  ReplicationController: ['spec', 'template'],
  Job: ['spec', 'template'],
  CronJob: ['spec', 'jobTemplate', 'spec', 'template'],
};

export const WORKLOAD_KINDS: readonly string[] = Object.keys(TEMPLATE_PATHS);

export interface DocumentReport {
  /** 1-based document number and the line its content starts on. */
  readonly document: number;
  readonly line: number;
  /** `Deployment/web`, `List/items[2] Pod/x`. */
  readonly object: string;
  readonly outcome: 'injected' | 'skipped';
  readonly reason?: SkipReason;
  readonly warnings: readonly string[];
}

export type ManifestResult =
  | {
      readonly ok: true;
      readonly output: string;
      /** One per pod template found, in input order. */
      readonly reports: readonly DocumentReport[];
      /** The kind of each object without a pod template (`?` when it has none), a List's items one by one. */
      readonly passedThrough: readonly string[];
      /** Warnings about the input as a whole. */
      readonly warnings: readonly string[];
    }
  | { readonly ok: false; readonly error: string };

interface Template {
  readonly path: (string | number)[];
  readonly object: string;
  /** The workload's namespace, if its manifest names one. */
  readonly namespace: string | undefined;
}

export function injectManifests(text: string, options: InjectOptions): ManifestResult {
  const lineCounter = new LineCounter();
  const docs = parseAllDocuments(text, { version: '1.1', lineCounter, uniqueKeys: true, prettyErrors: false });
  if ('empty' in docs) return { ok: true, output: text, reports: [], passedThrough: [], warnings: [] };
  for (const doc of docs) {
    const e = doc.errors[0];
    if (e !== undefined) {
      const pos = lineCounter.linePos(e.pos[0]);
      return { ok: false, error: `${pos.line}:${pos.col}: ${firstLine(e.message)}` };
    }
  }

  // All documents first: a workload's Services and NetworkPolicies may come after it.
  const parsed: { doc: Document.Parsed; line: number; js: unknown }[] = [];
  for (const doc of docs) {
    const contentStart = doc.contents?.range[0] ?? doc.range[0];
    const line = lineCounter.linePos(contentStart).line;
    try {
      parsed.push({ doc, line, js: doc.toJS({ maxAliasCount: 1000 }) });
    } catch (err) {
      return { ok: false, error: `${line}:1: ${firstLine((err as Error).message)}` };
    }
  }
  const neighbours = collectNeighbours(parsed.map((p) => p.js));

  const reports: DocumentReport[] = [];
  const passedThrough: string[] = [];
  let output = '';
  let start = 0;
  for (const [n, { doc, line, js }] of parsed.entries()) {
    const end = n === parsed.length - 1 ? text.length : doc.range[2];
    const original = text.slice(start, end);
    start = end;
    const templates = findTemplates(js);
    passedThrough.push(...untouchedKinds(js));
    let changed = false;
    for (const t of templates) {
      const before = getAt(js, t.path);
      const outcome = injectTemplate(before, options);
      if (outcome.kind === 'invalid') return { ok: false, error: `${line}:1: ${t.object}: ${outcome.message}` };
      if (outcome.kind === 'skipped') {
        // An injected template is judged again on every run: the warnings describe the manifests, not the run.
        const more = outcome.reason === 'already_injected' && isObj(before) ? bypassWarnings(before, t.namespace, neighbours) : [];
        reports.push({ document: n + 1, line, object: t.object, outcome: 'skipped', reason: outcome.reason, warnings: [...outcome.warnings, ...more] });
        continue;
      }
      reports.push({ document: n + 1, line, object: t.object, outcome: 'injected', warnings: [...outcome.warnings, ...bypassWarnings(outcome.template, t.namespace, neighbours)] });
      applyToDocument(doc, t.path, before, outcome.template);
      changed = true;
    }
    output += changed ? doc.toString({ lineWidth: 0, ...styleOf(original) }) : original;
  }
  const warnings: string[] = [];
  // Said once for the input rather than for each workload: most inputs carry no policy at all.
  if (neighbours.policies?.length === 0 && reports.some((r) => r.outcome === 'injected' || r.reason === 'already_injected')) warnings.push(NO_POLICY_WARNING);
  return { ok: true, output, reports, passedThrough, warnings };
}

/** The kinds of the objects of a document that have no pod template (a List's items one by one). */
function untouchedKinds(js: unknown): string[] {
  if (js === null || js === undefined) return [];
  if (isObj(js) && js['kind'] === 'List' && Array.isArray(js['items'])) return js['items'].filter((item: unknown) => templateOf(item).length === 0).map(kindOf);
  return templateOf(js).length === 0 ? [kindOf(js)] : [];
}

/** `Service`; a workload kind also with its apiVersion, as one of another API is passed through. */
function kindOf(js: unknown): string {
  const kind = isObj(js) ? str(js['kind']) : undefined;
  if (!isObj(js) || kind === undefined) return '?';
  return TEMPLATE_PATHS[kind] === undefined ? kind : `${kind} (${str(js['apiVersion']) ?? 'no apiVersion'})`;
}

/** Pod templates in one document: a workload's, or each workload's in a `kind: List`. */
function findTemplates(js: unknown): Template[] {
  if (!isObj(js)) return [];
  const kind = str(js['kind']);
  if (kind === 'List' && Array.isArray(js['items'])) {
    return js['items'].flatMap((item: unknown, i: number) =>
      templateOf(item).map((t) => ({ ...t, path: ['items', i, ...t.path], object: `List/items[${i}] ${t.object}` })),
    );
  }
  return templateOf(js);
}

function templateOf(o: unknown): Template[] {
  if (!isObj(o)) return [];
  const kind = str(o['kind']);
  const path = kind === undefined ? undefined : TEMPLATE_PATHS[kind];
  // Only the built-in workload APIs: a CRD that happens to be called "Deployment" passes through.
  if (path === undefined || !isBuiltinApi(kind ?? '', str(o['apiVersion']))) return [];
  if (getAt(o, path) === undefined) return [];
  const meta = isObj(o['metadata']) ? o['metadata'] : {};
  const name = str(meta['name']) ?? str(meta['generateName']) ?? '?';
  return [{ path: [...path], object: `${kind}/${name}`, namespace: str(meta['namespace']) }];
}

function isBuiltinApi(kind: string, apiVersion: string | undefined): boolean {
  switch (kind) {
    case 'Pod':
    case 'ReplicationController':
      return apiVersion === 'v1';
    case 'Job':
    case 'CronJob':
      return apiVersion === 'batch/v1';
    default:
      return apiVersion === 'apps/v1';
  }
}

function getAt(o: unknown, path: readonly (string | number)[]): unknown {
  let cur: unknown = o;
  for (const p of path) {
    if (Array.isArray(cur) && typeof p === 'number') cur = cur[p];
    else if (isObj(cur) && typeof p === 'string') cur = cur[p];
    else return undefined;
  }
  return cur;
}

/**
 * Edit the YAML nodes of the template at `base` from `before` to `after`. Where the template
 * uses anchors, aliases or merge keys, the nodes do not mirror the data one to one, so the
 * whole template is written anew (resolved) instead.
 */
function applyToDocument(doc: Document.Parsed, base: readonly (string | number)[], before: unknown, after: Obj): void {
  const node = base.length === 0 ? doc.contents : doc.getIn(base, true);
  let aliased = false;
  if (node !== null && node !== undefined) {
    visit(node as Parameters<typeof visit>[0], {
      Alias() {
        aliased = true;
        return visit.BREAK;
      },
    });
  }
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- set in the visitor callback, which TS does not follow
  if (aliased || !isMap(node)) {
    const fresh = doc.createNode(after);
    // File modes read best in octal, as they were most likely written.
    visit(fresh, {
      Pair(_, pair) {
        if (isScalar(pair.key) && (pair.key.value === 'defaultMode' || pair.key.value === 'mode') && isScalar(pair.value) && typeof pair.value.value === 'number') {
          pair.value.format = 'OCT';
        }
      },
    });
    if (base.length === 0) (doc as Document).contents = fresh;
    else doc.setIn(base, fresh);
    return;
  }
  for (const op of diff(before, after)) {
    const full = [...base, ...op.path];
    const key = full[full.length - 1] as string | number;
    const parentPath = full.slice(0, -1);
    const parent = parentPath.length === 0 ? doc.contents : doc.getIn(parentPath, true);
    if (isSeq(parent) && typeof key === 'number') {
      if (op.op === 'add') parent.items.splice(key, 0, doc.createNode(op.value));
      else if (op.op === 'replace') parent.items[key] = doc.createNode(op.value);
      else parent.items.splice(key, 1);
    } else if (isMap(parent)) {
      if (op.op === 'remove') parent.delete(key);
      else parent.set(key, doc.createNode(op.value));
    } else {
      // Not reachable for a template without aliases; stay correct anyway.
      doc.setIn(base, doc.createNode(after));
      return;
    }
  }
}

/**
 * Keep the document's own look where the writer has a choice: block sequences level with their
 * key (kubectl's style) or indented, and `{a: b}` or `{ a: b }` for flow mappings.
 */
function styleOf(text: string): { indentSeq: boolean; flowCollectionPadding: boolean } {
  const level = /^( *)[^\s#-][^\n]*:[ \t]*\n\1- /m.test(text);
  const indented = /^( *)[^\s#-][^\n]*:[ \t]*\n\1 +- /m.test(text);
  return { indentSeq: indented || !level, flowCollectionPadding: /[{[] \S/.test(text) || !/[{[]\S/.test(text) };
}

function firstLine(s: string): string {
  const i = s.indexOf('\n');
  return i === -1 ? s : s.slice(0, i);
}
