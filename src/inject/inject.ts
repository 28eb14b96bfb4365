/**
 * The one injection function shared by `mtls-sidecar inject` and the webhook: a pod template
 * (a Pod's or a workload's `{metadata, spec}`) in, the same template with the sidecar out.
 * Pure: the input is never modified, the output is a new object, and injecting an injected
 * template changes nothing.
 */
import { formatAppProbes, parseAppProbes } from './app-probes.js';
import {
  ADMIN_PORT_NAME,
  APP_PROBES_ENV,
  CERTS_MOUNT,
  CERTS_VOLUME,
  CONFIG_KEY,
  CONFIG_MOUNT,
  CONFIG_VOLUME,
  CONTAINER_NAME,
  CSI_DRIVER,
  DEFAULT_CONTAINER_ANNOTATION,
  INJECT_LABEL,
  LISTEN_PORT_NAME,
  PROMETHEUS_ANNOTATIONS,
  SIDECAR_VERSION,
  STATUS_ANNOTATION,
} from './constants.js';
import { checkNamedList, ensureList, ensureObj, isObj, namedList, str } from './k8s.js';
import type { Obj } from './k8s.js';
import { rewriteAppProbes } from './probes.js';
import { resolveSettings } from './settings.js';
import type { InjectSettings } from './settings.js';

/**
 * label: only templates labelled `mtls-sidecar.io/inject: "true"` (the CLI's default);
 * all: every template not labelled `"false"` (the CLI's --all, and the webhook, whose
 * selectors already decided).
 */
export type InjectPolicy = 'label' | 'all';

export interface InjectOptions {
  readonly settings: InjectSettings;
  readonly policy: InjectPolicy;
}

export type SkipReason = 'not_opted_in' | 'opted_out' | 'already_injected' | 'host_network';

export type InjectOutcome =
  | { readonly kind: 'injected'; readonly template: Obj; readonly warnings: readonly string[] }
  | { readonly kind: 'skipped'; readonly reason: SkipReason; readonly warnings: readonly string[] }
  | { readonly kind: 'invalid'; readonly message: string };

export function injectTemplate(template: unknown, options: InjectOptions): InjectOutcome {
  const shape = checkShape(template);
  if (shape !== null) return { kind: 'invalid', message: shape };
  const t = template as Obj;
  const meta = isObj(t['metadata']) ? t['metadata'] : {};
  const labels = isObj(meta['labels']) ? meta['labels'] : {};
  const annotations = isObj(meta['annotations']) ? meta['annotations'] : {};
  const spec = t['spec'] as Obj;
  const warnings: string[] = [];

  const label = labels[INJECT_LABEL];
  if (label === 'false') return { kind: 'skipped', reason: 'opted_out', warnings };
  if (options.policy === 'label' && label !== 'true') {
    if (label !== undefined) warnings.push(`label ${INJECT_LABEL} is ${JSON.stringify(label)}; only the string "true" opts in`);
    else if (annotations[INJECT_LABEL] !== undefined) warnings.push(`${INJECT_LABEL} is an annotation here; it must be a label (webhook selectors match labels)`);
    return { kind: 'skipped', reason: 'not_opted_in', warnings };
  }
  if (isInjected(spec)) return { kind: 'skipped', reason: 'already_injected', warnings };
  if (spec['hostNetwork'] === true) {
    warnings.push('hostNetwork pods are not injected: the sidecar would bind its ports on the node');
    return { kind: 'skipped', reason: 'host_network', warnings };
  }

  const resolved = resolveSettings(options.settings, annotations);
  if (!resolved.ok) return { kind: 'invalid', message: resolved.message };
  const s = resolved.settings;
  warnings.push(...resolved.warnings);

  for (const c of [...namedList(spec['initContainers']), ...namedList(spec['containers'])]) {
    for (const p of namedList(c['ports'])) {
      if (p['containerPort'] === s.port || p['containerPort'] === s.adminPort) {
        return { kind: 'invalid', message: `container ${String(c['name'])} already uses port ${String(p['containerPort'])}; choose others with mtls-sidecar.io/port and mtls-sidecar.io/admin-port` };
      }
    }
  }

  const out = structuredClone(t);
  const outSpec = out['spec'] as Obj;
  const outMeta = ensureObj(out, 'metadata');
  const outAnnotations = ensureObj(outMeta, 'annotations');

  let probeEnv: string | null = null;
  const probePaths: string[] = [];
  if (s.rewriteProbes) {
    const rewrite = rewriteAppProbes(ensureList(outSpec, 'containers'), { admin: s.adminPort, listen: s.port });
    warnings.push(...rewrite.warnings);
    probePaths.push(...Object.keys(rewrite.probes));
    if (probePaths.length > 0) {
      probeEnv = formatAppProbes(rewrite.probes);
      // The sidecar will refuse a map it cannot parse: refuse it here instead, with the reason.
      const check = parseAppProbes(probeEnv);
      if (!check.ok) return { kind: 'invalid', message: `cannot record the app's probes: ${check.error}` };
    }
  }

  const volumes = ensureList(outSpec, 'volumes');
  const serviceAccount = str(spec['serviceAccountName']) ?? str(spec['serviceAccount']) ?? 'default';
  for (const [name, volume] of [
    [CERTS_VOLUME, certsVolume(s, serviceAccount)],
    [CONFIG_VOLUME, { name: CONFIG_VOLUME, configMap: { name: s.configMap.replaceAll('{serviceAccount}', serviceAccount) } }],
  ] as const) {
    // A volume of the pod already named like ours is the workload's own choice (e.g. a
    // projected Secret): it is kept, and the sidecar mounts it (docs/kubernetes.md).
    if (volumes.some((v) => v['name'] === name)) warnings.push(`volume ${name} is defined by the workload and is used as is`);
    else volumes.push(volume);
  }

  const sidecar = sidecarContainer(s, probeEnv);
  if (s.mode === 'native') {
    ensureList(outSpec, 'initContainers').push(sidecar);
  } else {
    const containers = ensureList(outSpec, 'containers');
    const first = str(containers[0]?.['name']);
    containers.unshift(sidecar);
    if (first !== undefined && outAnnotations[DEFAULT_CONTAINER_ANNOTATION] === undefined) outAnnotations[DEFAULT_CONTAINER_ANNOTATION] = first;
  }

  if (outAnnotations[PROMETHEUS_ANNOTATIONS.scrape] === undefined) {
    outAnnotations[PROMETHEUS_ANNOTATIONS.scrape] = 'true';
    outAnnotations[PROMETHEUS_ANNOTATIONS.port] = String(s.adminPort);
    outAnnotations[PROMETHEUS_ANNOTATIONS.path] = '/metrics';
  } else {
    warnings.push(`the pod's own ${PROMETHEUS_ANNOTATIONS.scrape} annotations are kept; scrape the sidecar with the PodMonitor (port ${ADMIN_PORT_NAME})`);
  }
  outAnnotations[STATUS_ANNOTATION] = JSON.stringify({
    version: SIDECAR_VERSION,
    mode: s.mode,
    container: CONTAINER_NAME,
    volumes: [CERTS_VOLUME, CONFIG_VOLUME],
    probes: probePaths,
  });
  return { kind: 'injected', template: out, warnings };
}

/** Injected = a container or init container of ours is already there (by name). */
export function isInjected(spec: Obj): boolean {
  return [...namedList(spec['initContainers']), ...namedList(spec['containers'])].some((c) => c['name'] === CONTAINER_NAME);
}

function checkShape(template: unknown): string | null {
  if (!isObj(template)) return 'the pod template must be a mapping';
  const meta = template['metadata'];
  if (meta !== undefined && meta !== null && !isObj(meta)) return 'metadata must be a mapping';
  if (isObj(meta)) {
    for (const key of ['labels', 'annotations']) {
      const m = meta[key];
      if (m === undefined || m === null) continue;
      if (!isObj(m)) return `metadata.${key} must be a mapping`;
    }
  }
  const spec = template['spec'];
  if (!isObj(spec)) return 'spec must be a mapping';
  if (!Array.isArray(spec['containers']) || spec['containers'].length === 0) return 'spec.containers must be a non-empty list';
  return (
    checkNamedList(spec['containers'], 'spec.containers') ??
    checkNamedList(spec['initContainers'], 'spec.initContainers') ??
    checkNamedList(spec['volumes'], 'spec.volumes') ??
    checkPorts(spec)
  );
}

function checkPorts(spec: Obj): string | null {
  for (const key of ['initContainers', 'containers']) {
    for (const c of namedList(spec[key])) {
      const ports = c['ports'];
      if (ports === undefined || ports === null) continue;
      if (!Array.isArray(ports) || !ports.every(isObj)) return `spec.${key} ${String(c['name'])}: ports must be a list of mappings`;
    }
  }
  return null;
}

function certsVolume(s: InjectSettings, serviceAccount: string): Obj {
  if (s.certSource === 'secret') {
    return { name: CERTS_VOLUME, secret: { secretName: s.certSecret.replaceAll('{serviceAccount}', serviceAccount) } };
  }
  // cert-manager csi-driver: a key and certificate per pod, never stored in a Secret. The
  // driver substitutes ${POD_NAMESPACE} and ${SERVICE_ACCOUNT_NAME} itself.
  const attributes: Obj = {
    'csi.cert-manager.io/issuer-name': s.csi.issuerName,
    'csi.cert-manager.io/issuer-kind': s.csi.issuerKind,
    'csi.cert-manager.io/issuer-group': s.csi.issuerGroup,
    'csi.cert-manager.io/uri-sans': `spiffe://${s.csi.trustDomain}/ns/\${POD_NAMESPACE}/sa/\${SERVICE_ACCOUNT_NAME}`,
    'csi.cert-manager.io/dns-names': '${SERVICE_ACCOUNT_NAME}.${POD_NAMESPACE}.svc',
    'csi.cert-manager.io/key-usages': 'server auth,client auth',
  };
  if (s.runAsUser !== null) attributes['csi.cert-manager.io/fs-group'] = String(s.runAsUser);
  return { name: CERTS_VOLUME, csi: { driver: CSI_DRIVER, readOnly: true, volumeAttributes: attributes } };
}

function sidecarContainer(s: InjectSettings, probeEnv: string | null): Obj {
  const admin = (path: string, periodSeconds: number, failureThreshold: number): Obj => ({
    httpGet: { path, port: s.adminPort },
    periodSeconds,
    timeoutSeconds: 1,
    failureThreshold,
  });
  const securityContext: Obj = {
    runAsNonRoot: true,
    ...(s.runAsUser !== null ? { runAsUser: s.runAsUser, runAsGroup: s.runAsUser } : {}),
    readOnlyRootFilesystem: true,
    allowPrivilegeEscalation: false,
    privileged: false,
    capabilities: { drop: ['ALL'] },
    seccompProfile: { type: 'RuntimeDefault' },
  };
  return {
    name: CONTAINER_NAME,
    image: s.image,
    imagePullPolicy: s.imagePullPolicy,
    ...(s.mode === 'native' ? { restartPolicy: 'Always' } : {}),
    args: ['run', '--config', `${CONFIG_MOUNT}/${CONFIG_KEY}`],
    ...(probeEnv !== null ? { env: [{ name: APP_PROBES_ENV, value: probeEnv }] } : {}),
    ports: [
      { name: LISTEN_PORT_NAME, containerPort: s.port, protocol: 'TCP' },
      { name: ADMIN_PORT_NAME, containerPort: s.adminPort, protocol: 'TCP' },
    ],
    volumeMounts: [
      { name: CERTS_VOLUME, mountPath: CERTS_MOUNT, readOnly: true },
      { name: CONFIG_VOLUME, mountPath: CONFIG_MOUNT, readOnly: true },
    ],
    resources: {
      ...(Object.keys(s.resources.requests).length > 0 ? { requests: { ...s.resources.requests } } : {}),
      ...(Object.keys(s.resources.limits).length > 0 ? { limits: { ...s.resources.limits } } : {}),
    },
    securityContext,
    // /healthz, not /readyz: /readyz needs the app, which a native sidecar's startup probe
    // holds back, so /readyz here would never pass.
    startupProbe: admin('/healthz', 1, 60),
    readinessProbe: admin('/readyz', 5, 2),
    livenessProbe: admin('/healthz', 10, 3),
  };
}
