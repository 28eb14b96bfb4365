/**
 * The contract between the injector and the sidecar's admin port: the app's original probes,
 * keyed by the exact path the kubelet now calls on the admin port. The injector writes it as
 * JSON into the sidecar's MTLS_SIDECAR_APP_PROBES environment variable (Istio's
 * ISTIO_KUBE_APP_PROBERS idea); the admin port parses it once at start-up.
 *
 *   {"/app-health/web/livez":{"httpGet":{"path":"/healthz","port":8080,"scheme":"HTTP"},"timeoutSeconds":1},
 *    "/app-health/web/readyz":{"tcpSocket":{"port":8080},"timeoutSeconds":1}}
 */
import { z } from 'zod';
import { APP_HEALTH_PREFIX, APP_PROBES_ENV } from './constants.js';

export type ProbeKind = 'livenessProbe' | 'readinessProbe' | 'startupProbe';

/** The last path segment for each probe kind (Istio's names). */
export const PROBE_SEGMENT: Readonly<Record<ProbeKind, string>> = {
  livenessProbe: 'livez',
  readinessProbe: 'readyz',
  startupProbe: 'startupz',
};

export interface HttpAppProbe {
  readonly httpGet: {
    readonly path: string;
    readonly port: number;
    readonly scheme: 'HTTP' | 'HTTPS';
    readonly httpHeaders?: readonly { readonly name: string; readonly value: string }[];
  };
  readonly timeoutSeconds: number;
}

export interface TcpAppProbe {
  readonly tcpSocket: { readonly port: number };
  readonly timeoutSeconds: number;
}

export type AppProbe = HttpAppProbe | TcpAppProbe;
export type AppProbeMap = Readonly<Record<string, AppProbe>>;

/** `/app-health/<container>/<livez|readyz|startupz>`; container names are DNS-1123 labels. */
export const APP_HEALTH_PATH = /^\/app-health\/[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\/(livez|readyz|startupz)$/;

export function appHealthPath(container: string, kind: ProbeKind): string {
  return `${APP_HEALTH_PREFIX}${container}/${PROBE_SEGMENT[kind]}`;
}

const port = z.number().int().min(1).max(65535);
const timeoutSeconds = z.number().int().min(1).max(3600).default(1);
// Header names and values end up in an HTTP request: keep them to what a header may hold.
const header = z.strictObject({
  name: z.string().regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}$/, 'an HTTP header name'),
  value: z.string().regex(/^[\t\x20-\x7e\x80-\xff]{0,8192}$/, 'a header value without control characters'),
});
const httpProbe = z.strictObject({
  httpGet: z.strictObject({
    path: z.string().regex(/^\/[\x21-\x7e]{0,2047}$/, 'an absolute path without spaces'),
    port,
    scheme: z.enum(['HTTP', 'HTTPS']).default('HTTP'),
    httpHeaders: z.array(header).max(64).optional(),
  }),
  timeoutSeconds,
});
const tcpProbe = z.strictObject({ tcpSocket: z.strictObject({ port }), timeoutSeconds });
const probeMap = z.record(z.string().regex(APP_HEALTH_PATH, 'keys are /app-health/<container>/<livez|readyz|startupz>'), z.union([httpProbe, tcpProbe]));

export type ParseResult = { readonly ok: true; readonly probes: AppProbeMap } | { readonly ok: false; readonly error: string };

/** Parse and check the recorded probes (the JSON text of the environment variable). */
export function parseAppProbes(text: string): ParseResult {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return { ok: false, error: `${APP_PROBES_ENV} is not JSON` };
  }
  const parsed = probeMap.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue === undefined || issue.path.length === 0 ? '' : ` at ${issue.path.map(String).join('.')}`;
    const message = issue?.code === 'invalid_key' ? 'keys are /app-health/<container>/<livez|readyz|startupz>' : (issue?.message ?? 'invalid');
    return { ok: false, error: `${APP_PROBES_ENV}${where}: ${message}` };
  }
  return { ok: true, probes: parsed.data };
}

/** Compact, stable JSON (keys in insertion order) for the environment variable. */
export function formatAppProbes(probes: AppProbeMap): string {
  return JSON.stringify(probes);
}
