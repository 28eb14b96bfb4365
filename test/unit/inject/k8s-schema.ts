/**
 * Validate Kubernetes objects against the API's own OpenAPI schemas (kubernetes-models, plus
 * the cert-manager and prometheus-operator CRD models), for the inject goldens, the webhook's
 * patched pods and everything deploy/ renders. A kind without a model here is a test failure,
 * not a silent pass.
 *
 * The models' JSON schemas do not refuse unknown fields, and a misspelt field in a security
 * context (`runAsNonroot`) is exactly the mistake that would go unnoticed. So pod specs are also
 * checked field by field against the property lists of the models' own type declarations.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { Certificate, ClusterIssuer, Issuer } from '@kubernetes-models/cert-manager/cert-manager.io/v1';
import { PodMonitor, PrometheusRule } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1';
import { MutatingWebhookConfiguration } from 'kubernetes-models/admissionregistration.k8s.io/v1';
import { DaemonSet, Deployment, ReplicaSet, StatefulSet } from 'kubernetes-models/apps/v1';
import { CronJob, Job } from 'kubernetes-models/batch/v1';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { ClusterRole, ClusterRoleBinding, Role, RoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1';
import { ConfigMap, Namespace, Pod, ReplicationController, Secret, Service, ServiceAccount } from 'kubernetes-models/v1';

interface Validatable {
  validate(): void;
}
type ModelClass = new (data: never) => Validatable;

const MODELS: Readonly<Record<string, ModelClass>> = {
  'v1/Pod': Pod,
  'v1/ReplicationController': ReplicationController,
  'v1/Service': Service,
  'v1/ConfigMap': ConfigMap,
  'v1/Secret': Secret,
  'v1/Namespace': Namespace,
  'v1/ServiceAccount': ServiceAccount,
  'apps/v1/Deployment': Deployment,
  'apps/v1/StatefulSet': StatefulSet,
  'apps/v1/DaemonSet': DaemonSet,
  'apps/v1/ReplicaSet': ReplicaSet,
  'batch/v1/Job': Job,
  'batch/v1/CronJob': CronJob,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'networking.k8s.io/v1/NetworkPolicy': NetworkPolicy,
  'rbac.authorization.k8s.io/v1/Role': Role,
  'rbac.authorization.k8s.io/v1/RoleBinding': RoleBinding,
  'rbac.authorization.k8s.io/v1/ClusterRole': ClusterRole,
  'rbac.authorization.k8s.io/v1/ClusterRoleBinding': ClusterRoleBinding,
  'admissionregistration.k8s.io/v1/MutatingWebhookConfiguration': MutatingWebhookConfiguration,
  'cert-manager.io/v1/Certificate': Certificate,
  'cert-manager.io/v1/Issuer': Issuer,
  'cert-manager.io/v1/ClusterIssuer': ClusterIssuer,
  'monitoring.coreos.com/v1/PodMonitor': PodMonitor,
  'monitoring.coreos.com/v1/PrometheusRule': PrometheusRule,
};

/** API groups of made-up kinds the fixtures use to prove pass-through. */
const UNCHECKED_GROUPS = ['example.com/'];

/** Throws with the object's kind/name and the schema errors when `obj` is not valid. */
export function validateK8s(obj: unknown): void {
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) throw new Error(`not a Kubernetes object: ${JSON.stringify(obj)}`);
  const o = obj as Record<string, unknown>;
  const apiVersion = String(o['apiVersion']);
  const kind = String(o['kind']);
  if (UNCHECKED_GROUPS.some((g) => apiVersion.startsWith(g))) return;
  if (apiVersion === 'v1' && kind === 'List') {
    for (const item of (o['items'] as unknown[] | undefined) ?? []) validateK8s(item);
    return;
  }
  const Model = MODELS[`${apiVersion}/${kind}`];
  if (Model === undefined) throw new Error(`no schema model for ${apiVersion} ${kind}: add it to test/unit/inject/k8s-schema.ts`);
  const meta = o['metadata'] as { name?: string; generateName?: string } | undefined;
  const name = `${kind}/${meta?.name ?? meta?.generateName ?? '?'}`;
  try {
    new Model(structuredClone(obj) as never).validate();
  } catch (err) {
    throw new Error(`${name} is not valid: ${(err as Error).message}`, { cause: err });
  }
  const podSpecPath = POD_SPEC_PATHS[kind];
  if (podSpecPath !== undefined) {
    const unknown: string[] = [];
    unknownFields(at(obj, podSpecPath), 'PodSpec', podSpecPath.join('.'), unknown);
    if (unknown.length > 0) throw new Error(`${name} has fields Kubernetes does not know: ${unknown.join(', ')}`);
  }
}

const POD_SPEC_PATHS: Readonly<Record<string, readonly string[]>> = {
  Pod: ['spec'],
  Deployment: ['spec', 'template', 'spec'],
  StatefulSet: ['spec', 'template', 'spec'],
  DaemonSet: ['spec', 'template', 'spec'],
  ReplicaSet: ['spec', 'template', 'spec'],
  ReplicationController: ['spec', 'template', 'spec'],
  Job: ['spec', 'template', 'spec'],
  CronJob: ['spec', 'jobTemplate', 'spec', 'template', 'spec'],
};

function at(o: unknown, keys: readonly string[]): unknown {
  let cur = o;
  for (const k of keys) cur = typeof cur === 'object' && cur !== null ? (cur as Record<string, unknown>)[k] : undefined;
  return cur;
}

const V1 = path.resolve(import.meta.dirname, '../../../node_modules/kubernetes-models/v1');

interface Field {
  /** The core/v1 type of the field's value (or of each item, for lists); absent when opaque. */
  readonly ref?: string;
  readonly list: boolean;
}

const fieldCache = new Map<string, ReadonlyMap<string, Field>>();

/** The properties of `I<type>` as declared in kubernetes-models/v1/<type>.d.ts. */
function fields(type: string): ReadonlyMap<string, Field> {
  const cached = fieldCache.get(type);
  if (cached !== undefined) return cached;
  const file = path.join(V1, `${type}.d.ts`);
  const out = new Map<string, Field>();
  if (existsSync(file)) {
    const text = readFileSync(file, 'utf8');
    const start = text.indexOf(`export interface I${type} {`);
    const body = text.slice(start, text.indexOf('\n}', start));
    for (const m of body.matchAll(/^ {4}"([A-Za-z0-9]+)"\??: (.*)$/gm)) {
      const decl = m[2] ?? '';
      const ref = /^(Array<)?IIoK8sApiCoreV1([A-Za-z0-9]+)>?;$/.exec(decl);
      out.set(m[1] ?? '', ref ? { ref: ref[2] ?? '', list: ref[1] !== undefined } : { list: false });
    }
  }
  if (out.size === 0) throw new Error(`cannot read the fields of ${type} from kubernetes-models`);
  fieldCache.set(type, out);
  return out;
}

function unknownFields(value: unknown, type: string, where: string, out: string[]): void {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return;
  const known = fields(type);
  for (const [key, v] of Object.entries(value)) {
    const f = known.get(key);
    if (f === undefined) {
      out.push(`${where}.${key}`);
      continue;
    }
    if (f.ref === undefined) continue;
    if (f.list && Array.isArray(v)) v.forEach((item: unknown, i: number) => unknownFields(item, f.ref ?? '', `${where}.${key}[${i}]`, out));
    else unknownFields(v, f.ref, `${where}.${key}`, out);
  }
}
