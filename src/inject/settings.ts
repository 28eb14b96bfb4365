/**
 * What the injector needs to know: defaults (the `inject` section of the webhook config, also
 * read by `inject --config`), then per-workload overrides from `mtls-sidecar.io/*` annotations.
 * The same validators serve both, so an annotation is refused for the same reasons a config
 * value is.
 */
import { z } from 'zod';
import { ANNOTATION_PREFIX, DEFAULT_IMAGE, OVERRIDE_ANNOTATIONS, STATUS_ANNOTATION } from './constants.js';

export type InjectMode = 'native' | 'legacy';
export type CertSource = 'secret' | 'csi';

export interface CsiSettings {
  readonly issuerName: string;
  readonly issuerKind: string;
  readonly issuerGroup: string;
  readonly trustDomain: string;
}

export interface ResourceSettings {
  readonly requests: Readonly<Record<string, string>>;
  readonly limits: Readonly<Record<string, string>>;
}

export interface InjectSettings {
  readonly image: string;
  readonly imagePullPolicy: 'Always' | 'IfNotPresent' | 'Never';
  /** native: an initContainers entry with restartPolicy Always (Kubernetes 1.29+); legacy: a container. */
  readonly mode: InjectMode;
  /** The sidecar's mTLS port (its config's listen.port must match). */
  readonly port: number;
  /** The sidecar's admin port (its config's admin.port must match; admin.address 0.0.0.0). */
  readonly adminPort: number;
  /** ConfigMap holding `sidecar.yaml`; `{serviceAccount}` is replaced by the pod's service account. */
  readonly configMap: string;
  /** Secret with tls.crt, tls.key, ca.crt; `{serviceAccount}` is replaced by the pod's service account. */
  readonly certSecret: string;
  readonly certSource: CertSource;
  readonly csi: CsiSettings;
  readonly resources: ResourceSettings;
  /** UID and GID the sidecar runs as; null leaves them to the runtime (e.g. OpenShift's range). */
  readonly runAsUser: number | null;
  /** Rewrite the app's HTTP and TCP probes through the admin port's /app-health/. */
  readonly rewriteProbes: boolean;
}

// ---- validators shared by the config schema and the annotations ------------------------------

const DNS_1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;
/** A Kubernetes resource quantity (`50m`, `64Mi`, `1`, `0.5`, `1e3`). */
const QUANTITY = /^[+]?(\d+(\.\d*)?|\.\d+)(m|k|Ki|Mi|Gi|Ti|Pi|Ei|M|G|T|P|E|[eE][+-]?\d+)?$/;
const IMAGE = /^[a-zA-Z0-9][a-zA-Z0-9._\-/:@]{0,511}$/;
const KIND = /^[A-Z][A-Za-z0-9]{0,62}$/;
const TRUST_DOMAIN = /^[a-z0-9]([-a-z0-9.]{0,250}[a-z0-9])?$/;

export function checkPort(value: string | number): number | string {
  const n = typeof value === 'number' ? value : /^\d{1,5}$/.test(value) ? Number(value) : NaN;
  return Number.isInteger(n) && n >= 1 && n <= 65535 ? n : `"${String(value)}" is not a port (1-65535)`;
}

/** A ConfigMap or Secret name; `{serviceAccount}` is allowed where `template` is true. */
export function checkObjectName(value: string, template: boolean): string | null {
  const probe = template ? value.replaceAll('{serviceAccount}', 'sa') : value;
  return DNS_1123_SUBDOMAIN.test(probe) ? null : `"${value}" is not a valid object name (lower-case letters, digits, - and .)`;
}

export function checkQuantity(value: string): string | null {
  return QUANTITY.test(value) ? null : `"${value}" is not a resource quantity (e.g. 50m, 64Mi)`;
}

export function checkImage(value: string): string | null {
  return IMAGE.test(value) ? null : `"${value}" is not an image reference`;
}

// ---- the config section ----------------------------------------------------------------------

const port = z.number().int().min(1).max(65535);
const objectName = (template: boolean) =>
  z.string().superRefine((v, ctx) => {
    const problem = checkObjectName(v, template);
    if (problem !== null) ctx.addIssue({ code: 'custom', message: problem });
  });
const quantity = z.string().superRefine((v, ctx) => {
  const problem = checkQuantity(v);
  if (problem !== null) ctx.addIssue({ code: 'custom', message: problem });
});
const quantities = z.strictObject({ cpu: quantity.optional(), memory: quantity.optional(), 'ephemeral-storage': quantity.optional() });

export const DEFAULT_SETTINGS: InjectSettings = Object.freeze({
  image: DEFAULT_IMAGE,
  imagePullPolicy: 'IfNotPresent',
  mode: 'native',
  port: 8443,
  adminPort: 9901,
  configMap: '{serviceAccount}-sidecar',
  certSecret: '{serviceAccount}-mtls',
  certSource: 'secret',
  csi: Object.freeze({ issuerName: 'mtls-ca', issuerKind: 'ClusterIssuer', issuerGroup: 'cert-manager.io', trustDomain: 'cluster.local' }),
  resources: Object.freeze({ requests: Object.freeze({ cpu: '50m', memory: '64Mi' }), limits: Object.freeze({ memory: '256Mi' }) }),
  runAsUser: 65532,
  rewriteProbes: true,
});

const d = DEFAULT_SETTINGS;

export const injectSettingsSchema = z
  .strictObject({
    image: z
      .string()
      .default(d.image)
      .superRefine((v, ctx) => {
        const problem = checkImage(v);
        if (problem !== null) ctx.addIssue({ code: 'custom', message: problem });
      }),
    imagePullPolicy: z.enum(['Always', 'IfNotPresent', 'Never']).default(d.imagePullPolicy),
    mode: z.enum(['native', 'legacy']).default(d.mode),
    port: port.default(d.port),
    adminPort: port.default(d.adminPort),
    configMap: objectName(true).default(d.configMap),
    certSecret: objectName(true).default(d.certSecret),
    certSource: z.enum(['secret', 'csi']).default(d.certSource),
    csi: z
      .strictObject({
        issuerName: objectName(false).default(d.csi.issuerName),
        issuerKind: z.string().regex(KIND, 'a kind such as ClusterIssuer').default(d.csi.issuerKind),
        issuerGroup: objectName(false).default(d.csi.issuerGroup),
        trustDomain: z.string().regex(TRUST_DOMAIN, 'a trust domain such as cluster.local').default(d.csi.trustDomain),
      })
      .prefault({}),
    resources: z
      .strictObject({
        requests: quantities.default({ ...d.resources.requests }),
        limits: quantities.default({ ...d.resources.limits }),
      })
      .prefault({}),
    runAsUser: z.number().int().min(1).max(2 ** 31 - 1).nullable().default(d.runAsUser),
    rewriteProbes: z.boolean().default(d.rewriteProbes),
  })
  .superRefine((s, ctx) => {
    if (s.port === s.adminPort) ctx.addIssue({ code: 'custom', path: ['adminPort'], message: 'the admin port must differ from the mTLS port' });
  });

export function settingsFromConfig(raw: z.output<typeof injectSettingsSchema>): InjectSettings {
  return {
    ...raw,
    csi: { ...raw.csi },
    resources: { requests: definedOnly(raw.resources.requests), limits: definedOnly(raw.resources.limits) },
  };
}

function definedOnly(q: Record<string, string | undefined>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(q)) if (v !== undefined) out[k] = v;
  return out;
}

// ---- annotation overrides --------------------------------------------------------------------

export type SettingsResult = { readonly ok: true; readonly settings: InjectSettings; readonly warnings: readonly string[] } | { readonly ok: false; readonly message: string };

const KNOWN_ANNOTATIONS: ReadonlySet<string> = new Set([...Object.values(OVERRIDE_ANNOTATIONS), STATUS_ANNOTATION]);

/** Base settings with the workload's `mtls-sidecar.io/*` annotations applied (and checked). */
export function resolveSettings(base: InjectSettings, annotations: Readonly<Record<string, unknown>>): SettingsResult {
  const warnings: string[] = [];
  const s = { ...base, csi: { ...base.csi }, resources: { requests: { ...base.resources.requests }, limits: { ...base.resources.limits } } };
  for (const [key, raw] of Object.entries(annotations)) {
    if (!key.startsWith(ANNOTATION_PREFIX)) continue;
    if (!KNOWN_ANNOTATIONS.has(key)) {
      warnings.push(`unknown annotation ${key} ignored`);
      continue;
    }
    if (key === STATUS_ANNOTATION) continue;
    if (typeof raw !== 'string') return { ok: false, message: `annotation ${key} must be a string` };
    const problem = applyOverride(s, key, raw.trim());
    if (problem !== null) return { ok: false, message: `annotation ${key}: ${problem}` };
  }
  if (s.port === s.adminPort) return { ok: false, message: `the admin port ${s.adminPort} must differ from the mTLS port` };
  return { ok: true, settings: s, warnings };
}

type Mutable = {
  -readonly [K in Exclude<keyof InjectSettings, 'csi' | 'resources'>]: InjectSettings[K];
} & { csi: { -readonly [K in keyof CsiSettings]: string }; resources: { requests: Record<string, string>; limits: Record<string, string> } };

function applyOverride(s: Mutable, key: string, v: string): string | null {
  const A = OVERRIDE_ANNOTATIONS;
  switch (key) {
    case A.image:
      return set(checkImage(v), () => (s.image = v));
    case A.port:
    case A.adminPort: {
      const p = checkPort(v);
      if (typeof p === 'string') return p;
      if (key === A.port) s.port = p;
      else s.adminPort = p;
      return null;
    }
    case A.configMap:
      return set(checkObjectName(v, true), () => (s.configMap = v));
    case A.certSecret:
      return set(checkObjectName(v, true), () => (s.certSecret = v));
    case A.certSource:
      if (v !== 'secret' && v !== 'csi') return `"${v}" is not one of secret, csi`;
      s.certSource = v;
      return null;
    case A.csiIssuer:
      return set(checkObjectName(v, false), () => (s.csi.issuerName = v));
    case A.csiIssuerKind:
      return set(KIND.test(v) ? null : `"${v}" is not a kind such as ClusterIssuer`, () => (s.csi.issuerKind = v));
    case A.cpuRequest:
      return set(checkQuantity(v), () => (s.resources.requests['cpu'] = v));
    case A.memoryRequest:
      return set(checkQuantity(v), () => (s.resources.requests['memory'] = v));
    case A.cpuLimit:
      return set(checkQuantity(v), () => (s.resources.limits['cpu'] = v));
    case A.memoryLimit:
      return set(checkQuantity(v), () => (s.resources.limits['memory'] = v));
    case A.rewriteProbes:
      if (v !== 'true' && v !== 'false') return `"${v}" is not "true" or "false"`;
      s.rewriteProbes = v === 'true';
      return null;
    default:
      return null;
  }
}

function set(problem: string | null, apply: () => void): string | null {
  if (problem === null) apply();
  return problem;
}
