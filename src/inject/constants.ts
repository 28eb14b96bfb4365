/**
 * Names shared by the injector (CLI and webhook), the sidecar's admin port and deploy/.
 * These are part of the product's outside: manifests, selectors and docs depend on them.
 */

/** The version injected by default (the image tag); kept equal to package.json's by a test. */
export const SIDECAR_VERSION = '0.1.0';
export const DEFAULT_IMAGE = `mtls-sidecar:${SIDECAR_VERSION}`;

/** Pod (template) label that opts a workload in (`"true"`) or out (`"false"`). */
export const INJECT_LABEL = 'mtls-sidecar.io/inject';
/** Namespace label selected by the webhook's second entry. */
export const NAMESPACE_LABEL = 'mtls-sidecar.io/injection';

/** Every annotation of ours starts with this. */
export const ANNOTATION_PREFIX = 'mtls-sidecar.io/';
/** Written by the injector: what was injected (JSON). Its presence is informational. */
export const STATUS_ANNOTATION = 'mtls-sidecar.io/status';

/** Per-workload overrides, read from the pod template's annotations (docs/kubernetes.md). */
export const OVERRIDE_ANNOTATIONS = {
  image: 'mtls-sidecar.io/image',
  port: 'mtls-sidecar.io/port',
  adminPort: 'mtls-sidecar.io/admin-port',
  configMap: 'mtls-sidecar.io/config',
  certSecret: 'mtls-sidecar.io/cert-secret',
  certSource: 'mtls-sidecar.io/cert-source',
  csiIssuer: 'mtls-sidecar.io/csi-issuer',
  csiIssuerKind: 'mtls-sidecar.io/csi-issuer-kind',
  cpuRequest: 'mtls-sidecar.io/cpu-request',
  memoryRequest: 'mtls-sidecar.io/memory-request',
  cpuLimit: 'mtls-sidecar.io/cpu-limit',
  memoryLimit: 'mtls-sidecar.io/memory-limit',
  rewriteProbes: 'mtls-sidecar.io/rewrite-probes',
} as const;

export const CONTAINER_NAME = 'mtls-sidecar';
export const CERTS_VOLUME = 'mtls-sidecar-certs';
export const CONFIG_VOLUME = 'mtls-sidecar-config';
export const CERTS_MOUNT = '/etc/mtls-sidecar/certs';
export const CONFIG_MOUNT = '/etc/mtls-sidecar/config';
/** The file the sidecar reads from the config ConfigMap. */
export const CONFIG_KEY = 'sidecar.yaml';

/** Port names on the sidecar container (IANA_SVC_NAME: at most 15 characters). */
export const LISTEN_PORT_NAME = 'mtls';
export const ADMIN_PORT_NAME = 'mtls-admin';

/**
 * The sidecar's environment variable holding the app's original probes, as JSON keyed by the
 * rewritten path (see app-probes.ts). Read by the admin port's /app-health/ handler.
 */
export const APP_PROBES_ENV = 'MTLS_SIDECAR_APP_PROBES';
export const APP_HEALTH_PREFIX = '/app-health/';

/** Prometheus scrape annotations (the de-facto convention of the kubernetes-pods job). */
export const PROMETHEUS_ANNOTATIONS = {
  scrape: 'prometheus.io/scrape',
  port: 'prometheus.io/port',
  path: 'prometheus.io/path',
} as const;

/** Which container `kubectl logs/exec` picks when none is named (legacy mode only). */
export const DEFAULT_CONTAINER_ANNOTATION = 'kubectl.kubernetes.io/default-container';

export const CSI_DRIVER = 'csi.cert-manager.io';
