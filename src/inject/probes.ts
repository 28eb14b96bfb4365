/**
 * App probes under mTLS (Istio's "rewriteAppHTTPProbers"): the kubelet cannot present a client
 * certificate and the app listens on loopback only, so each HTTP or TCP liveness, readiness and
 * startup probe of an app container is pointed at the sidecar's admin port as
 * `/app-health/<container>/<livez|readyz|startupz>`, and the original is recorded for the
 * admin port to forward to on 127.0.0.1 (app-health.ts).
 *
 * Left alone, with a warning where it matters: exec probes (they run inside the container),
 * gRPC probes, probes with `host` set, probes on a named port the container does not declare,
 * probes already on the admin port, and probes aimed at the sidecar's own mTLS port.
 */
import { appHealthPath } from './app-probes.js';
import type { AppProbe, ProbeKind } from './app-probes.js';
import { isObj, namedList, str } from './k8s.js';
import type { Obj } from './k8s.js';

const KINDS: readonly ProbeKind[] = ['livenessProbe', 'readinessProbe', 'startupProbe'];

export interface ProbeRewrite {
  /** Recorded originals, keyed by the new path, in container then probe order. */
  readonly probes: Record<string, AppProbe>;
  readonly warnings: string[];
}

/** Rewrites the probes of `containers` in place (the caller passes a copy). */
export function rewriteAppProbes(containers: readonly Obj[], ports: { readonly admin: number; readonly listen: number }): ProbeRewrite {
  const probes: Record<string, AppProbe> = {};
  const warnings: string[] = [];
  for (const c of containers) {
    const name = str(c['name']) ?? '';
    for (const kind of KINDS) {
      const probe = c[kind];
      if (!isObj(probe)) continue;
      const where = `container ${name}: ${kind}`;
      const timeoutSeconds = positiveInt(probe['timeoutSeconds']) ?? 1;
      const path = appHealthPath(name, kind);
      if (isObj(probe['httpGet'])) {
        const hg = probe['httpGet'];
        const target = targetPort(c, hg, ports, where, warnings);
        if (target === null) continue;
        const scheme = hg['scheme'] === undefined ? 'HTTP' : hg['scheme'];
        if (scheme !== 'HTTP' && scheme !== 'HTTPS') {
          // eslint-disable-next-line @typescript-eslint/no-base-to-string -- any YAML value; printed as given
          warnings.push(`${where} has scheme ${String(scheme)}; left as is`);
          continue;
        }
        const headers = httpHeaders(hg['httpHeaders']);
        if (headers === null) {
          warnings.push(`${where} has malformed httpHeaders; left as is`);
          continue;
        }
        const original = str(hg['path']) ?? '/';
        probes[path] = {
          httpGet: { path: original.startsWith('/') ? original : `/${original}`, port: target, scheme, ...(headers.length > 0 ? { httpHeaders: headers } : {}) },
          timeoutSeconds,
        };
        probe['httpGet'] = { path, port: ports.admin, ...(hg['scheme'] !== undefined ? { scheme: 'HTTP' } : {}) };
      } else if (isObj(probe['tcpSocket'])) {
        const target = targetPort(c, probe['tcpSocket'], ports, where, warnings);
        if (target === null) continue;
        probes[path] = { tcpSocket: { port: target }, timeoutSeconds };
        delete probe['tcpSocket'];
        probe['httpGet'] = { path, port: ports.admin };
      } else if (isObj(probe['grpc'])) {
        warnings.push(`${where} is a gRPC probe and is not rewritten: the kubelet calls port ${String(probe['grpc']['port'])} on the pod IP directly`);
      }
    }
  }
  return { probes, warnings };
}

/** The numeric loopback port a probe aims at, or null (with a warning where useful) to leave it. */
function targetPort(container: Obj, action: Obj, ports: { readonly admin: number; readonly listen: number }, where: string, warnings: string[]): number | null {
  const host = action['host'];
  if (typeof host === 'string' && host !== '') {
    warnings.push(`${where} sets host ${host}; left as is`);
    return null;
  }
  const raw = action['port'];
  let port: number | undefined;
  if (typeof raw === 'number') port = raw;
  else if (typeof raw === 'string' && /^\d+$/.test(raw)) port = Number(raw);
  else if (typeof raw === 'string') {
    const named = namedList(container['ports']).find((p) => p['name'] === raw);
    port = typeof named?.['containerPort'] === 'number' ? named['containerPort'] : undefined;
    if (port === undefined) {
      warnings.push(`${where} uses port "${raw}", which the container does not declare; left as is`);
      return null;
    }
  }
  if (port === undefined || !Number.isInteger(port) || port < 1 || port > 65535) {
    warnings.push(`${where} has no valid port; left as is`);
    return null;
  }
  if (port === ports.admin) return null; // already through the sidecar
  if (port === ports.listen) {
    warnings.push(`${where} aims at the sidecar's mTLS port ${port}, which the kubelet cannot pass; point it at the app's port`);
    return null;
  }
  return port;
}

function httpHeaders(v: unknown): { name: string; value: string }[] | null {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) return null;
  const out: { name: string; value: string }[] = [];
  for (const h of v) {
    if (!isObj(h) || typeof h['name'] !== 'string' || typeof h['value'] !== 'string') return null;
    out.push({ name: h['name'], value: h['value'] });
  }
  return out;
}

function positiveInt(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isInteger(v) && v >= 1 ? v : undefined;
}
