/**
 * Where traffic could reach an injected app around its sidecar. The sidecar protects the app
 * only if the app listens on 127.0.0.1 and nothing routes to the pod's other ports; neither can
 * be seen from a manifest for certain, so these are warnings, judged from what the input holds:
 *
 * - a Service of the input that selects the pod and targets a port other than the sidecar's
 *   (or, when no Service of the input selects the pod, an app container that declares a port:
 *   a Service elsewhere could target it);
 * - no NetworkPolicy of the input that limits the pod's ingress to the sidecar's ports (only
 *   when the caller has the policies to judge: `inject` has its input, the webhook one pod).
 *
 * Pure: objects in, warning texts out (docs/kubernetes.md explains each).
 */
import { ADMIN_PORT_NAME, CONTAINER_NAME, LISTEN_PORT_NAME } from './constants.js';
import { isObj, namedList, str } from './k8s.js';
import type { Obj } from './k8s.js';

export interface ServiceView {
  readonly name: string;
  readonly namespace: string | undefined;
  readonly selector: Readonly<Record<string, string>>;
  readonly ports: readonly { readonly port: number; readonly target: number | string }[];
}

export interface PolicyView {
  readonly name: string;
  readonly namespace: string | undefined;
  readonly podSelector: unknown;
  /** The ingress rules when the policy isolates ingress; null when it does not (Egress only). */
  readonly ingress: readonly Obj[] | null;
}

export interface Neighbours {
  readonly services: readonly ServiceView[];
  /** null: the policies are unknown (the webhook sees one pod) and are not judged. */
  readonly policies: readonly PolicyView[] | null;
}

export const NO_POLICY_WARNING =
  "no NetworkPolicy in the input limits the injected pods' ingress to their sidecar's ports: pods can reach an app around its sidecar if it listens on the pod IP (policies applied separately are fine)";

export const NO_NEIGHBOURS: Neighbours = Object.freeze({ services: Object.freeze([]), policies: null });

/** The Services and NetworkPolicies among the input's objects (and inside `kind: List`s). */
export function collectNeighbours(objects: readonly unknown[]): Neighbours {
  const services: ServiceView[] = [];
  const policies: PolicyView[] = [];
  const visit = (o: unknown): void => {
    if (!isObj(o)) return;
    const kind = str(o['kind']);
    const apiVersion = str(o['apiVersion']);
    if (kind === 'List' && Array.isArray(o['items'])) for (const item of o['items'] as unknown[]) visit(item);
    else if (kind === 'Service' && apiVersion === 'v1') {
      const s = serviceView(o);
      if (s !== null) services.push(s);
    } else if (kind === 'NetworkPolicy' && apiVersion === 'networking.k8s.io/v1') {
      const p = policyView(o);
      if (p !== null) policies.push(p);
    }
  };
  for (const o of objects) visit(o);
  return { services, policies };
}

/**
 * The warnings for one injected pod template (`{metadata, spec}`, the sidecar in it) of an
 * object in `namespace` (undefined: whichever namespace it is applied to).
 */
export function bypassWarnings(template: Obj, namespace: string | undefined, n: Neighbours): string[] {
  const meta = isObj(template['metadata']) ? template['metadata'] : {};
  const spec = isObj(template['spec']) ? template['spec'] : {};
  const sidecar = sidecarPorts(spec);
  if (sidecar === null) return [];
  const labels = stringMap(meta['labels']);
  const app = appPorts(spec);
  const warnings: string[] = [];

  const services = n.services.filter((s) => sameNamespace(s.namespace, namespace) && Object.keys(s.selector).length > 0 && matchLabels(s.selector, labels));
  if (services.length > 0) {
    for (const s of services) {
      for (const p of s.ports) {
        const hit = routesAround(p.target, sidecar, app);
        if (hit !== null) {
          warnings.push(
            `Service/${s.name} port ${p.port} targets ${hit}, not the sidecar's mTLS port ${sidecar.listen}: its traffic bypasses the sidecar; target ${sidecar.listen}, and have the app listen on 127.0.0.1 only`,
          );
        }
      }
    }
  } else {
    for (const [container, ports] of groupBy(app, (p) => p.container)) {
      const list = ports.map((p) => (p.name === undefined ? `${p.number}` : `${p.number} (${p.name})`)).join(', ');
      warnings.push(`container ${container} declares port${ports.length === 1 ? '' : 's'} ${list}: a Service or pod that targets ${ports.length === 1 ? 'it' : 'them'} bypasses the sidecar; the app should listen on 127.0.0.1 only`);
    }
  }

  // No policy at all in the input: the caller says so once (NO_POLICY_WARNING), not per pod.
  if (n.policies !== null && n.policies.length > 0) {
    const applying = n.policies.filter((p) => p.ingress !== null && sameNamespace(p.namespace, namespace) && selects(p.podSelector, labels));
    if (applying.length === 0) {
      warnings.push(
        `no NetworkPolicy in the input limits its ingress to the sidecar's ports ${sidecar.listen} and ${sidecar.admin}: pods can reach the app around the sidecar if it listens on the pod IP (a policy applied separately is fine)`,
      );
    }
    for (const p of applying) {
      const open = openPorts(p.ingress ?? [], sidecar, app);
      if (open.length > 0) {
        const what = open[0] === 'every port' ? 'every port' : `${open.join(', ')} as well as the sidecar's`;
        warnings.push(`NetworkPolicy/${p.name} allows ingress to ${what}: pods can reach the app around the sidecar if it listens on the pod IP`);
      }
    }
  }
  return warnings;
}

// ---- the pod ----------------------------------------------------------------------------------

interface SidecarPorts {
  readonly listen: number;
  readonly admin: number;
}

interface AppPort {
  readonly container: string;
  readonly number: number;
  readonly name: string | undefined;
}

/** The injected sidecar's ports, as injection declared them; null when there is no sidecar. */
function sidecarPorts(spec: Obj): SidecarPorts | null {
  const c = [...namedList(spec['initContainers']), ...namedList(spec['containers'])].find((x) => x['name'] === CONTAINER_NAME);
  if (c === undefined) return null;
  const ports = namedList(c['ports']);
  const byName = (name: string): number | undefined => {
    const n = ports.find((p) => p['name'] === name)?.['containerPort'];
    return typeof n === 'number' ? n : undefined;
  };
  const listen = byName(LISTEN_PORT_NAME);
  const admin = byName(ADMIN_PORT_NAME);
  return listen === undefined || admin === undefined ? null : { listen, admin };
}

/** Ports declared by the pod's other long-running containers (its app, and other native sidecars). */
function appPorts(spec: Obj): AppPort[] {
  const running = [...namedList(spec['initContainers']).filter((c) => c['restartPolicy'] === 'Always'), ...namedList(spec['containers'])];
  const out: AppPort[] = [];
  for (const c of running) {
    const container = str(c['name']);
    if (container === undefined || container === CONTAINER_NAME) continue;
    for (const p of namedList(c['ports'])) {
      const number = p['containerPort'];
      if (typeof number === 'number') out.push({ container, number, name: str(p['name']) });
    }
  }
  return out;
}

/** Where a Service's targetPort leads when it is not the sidecar's: "port 8080 of container app". */
function routesAround(target: number | string, sidecar: SidecarPorts, app: readonly AppPort[]): string | null {
  if (typeof target === 'number') {
    if (target === sidecar.listen || target === sidecar.admin) return null;
    const declared = app.find((p) => p.number === target);
    return declared === undefined ? `port ${target}` : `port ${target} of container ${declared.container}`;
  }
  if (target === LISTEN_PORT_NAME || target === ADMIN_PORT_NAME) return null;
  // A name no container declares routes nowhere: that is not a way around the sidecar.
  const declared = app.find((p) => p.name === target);
  return declared === undefined ? null : `port ${target} (${declared.number}) of container ${declared.container}`;
}

/** The ports a policy's ingress rules open besides the sidecar's, as "port 8080", "every port". */
function openPorts(rules: readonly Obj[], sidecar: SidecarPorts, app: readonly AppPort[]): string[] {
  const open = new Set<string>();
  const ours = (n: number): boolean => n === sidecar.listen || n === sidecar.admin;
  for (const rule of rules) {
    const ports = namedList(rule['ports']);
    // A rule without ports admits every port.
    if (ports.length === 0) open.add('every port');
    for (const p of ports) {
      const port = p['port'];
      const end = p['endPort'];
      if (port === undefined || port === null) open.add('every port');
      else if (typeof port === 'number') {
        if (typeof end === 'number' && end > port) {
          // A range is only the sidecar's if it is the two sidecar ports side by side.
          if (!(end - port === 1 && ours(port) && ours(end))) open.add(`ports ${port}-${end}`);
        } else if (!ours(port)) open.add(`port ${port}`);
      } else if (typeof port === 'string' && port !== LISTEN_PORT_NAME && port !== ADMIN_PORT_NAME) {
        // A named port opens only what a container of the pod declares by that name.
        if (app.some((a) => a.name === port)) open.add(`port ${port}`);
      }
    }
  }
  // "every port" says it all.
  return open.has('every port') ? ['every port'] : [...open];
}

// ---- the neighbours ---------------------------------------------------------------------------

function serviceView(o: Obj): ServiceView | null {
  const meta = isObj(o['metadata']) ? o['metadata'] : {};
  const spec = isObj(o['spec']) ? o['spec'] : {};
  // An ExternalName Service, or one without a selector (manual endpoints), selects no pod.
  if (spec['type'] === 'ExternalName' || !isObj(spec['selector'])) return null;
  const ports: { port: number; target: number | string }[] = [];
  for (const p of namedList(spec['ports'])) {
    const port = p['port'];
    if (typeof port !== 'number') continue;
    const target = p['targetPort'];
    ports.push({ port, target: typeof target === 'number' || typeof target === 'string' ? target : port });
  }
  return { name: str(meta['name']) ?? '?', namespace: str(meta['namespace']), selector: stringMap(spec['selector']), ports };
}

function policyView(o: Obj): PolicyView | null {
  const meta = isObj(o['metadata']) ? o['metadata'] : {};
  const spec = o['spec'];
  if (!isObj(spec)) return null;
  const rules = namedList(spec['ingress']);
  // Without policyTypes, a policy isolates ingress always (and egress when it has egress rules).
  const types = spec['policyTypes'];
  const isolatesIngress = Array.isArray(types) ? types.includes('Ingress') : true;
  return { name: str(meta['name']) ?? '?', namespace: str(meta['namespace']), podSelector: spec['podSelector'], ingress: isolatesIngress ? rules : null };
}

// ---- labels -----------------------------------------------------------------------------------

/** An object without a namespace goes to whichever namespace it is applied to: assume the same. */
function sameNamespace(a: string | undefined, b: string | undefined): boolean {
  return a === undefined || b === undefined || a === b;
}

function stringMap(v: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (isObj(v)) for (const [k, x] of Object.entries(v)) if (typeof x === 'string') out[k] = x;
  return out;
}

function matchLabels(want: Readonly<Record<string, string>>, labels: Readonly<Record<string, string>>): boolean {
  return Object.entries(want).every(([k, v]) => labels[k] === v);
}

/** A LabelSelector (matchLabels and matchExpressions); absent or `{}` selects every pod. */
export function selects(selector: unknown, labels: Readonly<Record<string, string>>): boolean {
  if (selector === undefined || selector === null) return true;
  if (!isObj(selector)) return false;
  if (!matchLabels(stringMap(selector['matchLabels']), labels)) return false;
  const expressions = Array.isArray(selector['matchExpressions']) ? (selector['matchExpressions'] as unknown[]) : [];
  return expressions.every((e) => {
    if (!isObj(e)) return false;
    const key = str(e['key']);
    if (key === undefined) return false;
    const values = Array.isArray(e['values']) ? (e['values'] as unknown[]) : [];
    const has = Object.hasOwn(labels, key);
    switch (e['operator']) {
      case 'In':
        return has && values.includes(labels[key]);
      case 'NotIn':
        return !has || !values.includes(labels[key]);
      case 'Exists':
        return has;
      case 'DoesNotExist':
        return !has;
      default:
        // An operator the API server would refuse: the policy selects nothing we can tell.
        return false;
    }
  });
}

function groupBy<T>(items: readonly T[], key: (t: T) => string): Map<string, T[]> {
  const out = new Map<string, T[]>();
  for (const t of items) {
    const k = key(t);
    const list = out.get(k);
    if (list === undefined) out.set(k, [t]);
    else list.push(t);
  }
  return out;
}
