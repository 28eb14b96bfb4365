/**
 * deploy/: every kustomize base renders with `kubectl kustomize` and every rendered object is
 * valid against the Kubernetes (and cert-manager, prometheus-operator) schemas; the pieces
 * agree with each other (ports, names, mounts, selectors); the example apps are exactly what
 * `inject` makes of their source; their sidecar configs pass the config schema, and orders'
 * outbound destination reaches billing through both sidecars run from those very configs; the
 * alerting rules pass promtool (check and unit tests) and use only metric names of
 * docs/reference.md §6.
 */
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, inject, it } from 'vitest';
import { request } from 'undici';
import { parse, parseAllDocuments } from 'yaml';
import { parseConfigText } from '../../src/config/load.js';
import type { RawConfig } from '../../src/config/schema.js';
import { CERTS_MOUNT, CONFIG_KEY, CONFIG_MOUNT } from '../../src/inject/constants.js';
import { parseWebhookConfigText } from '../../src/webhook/config.js';
import { validateK8s } from '../unit/inject/k8s-schema.js';
import { runInject } from '../unit/inject/run.js';
import { referenceMetricNames } from '../helpers/reference.js';
import { startSidecar } from '../helpers/sidecar.js';
import type { ConfigObject } from '../helpers/sidecar.js';
import { startUpstream } from '../helpers/upstream.js';

const run = promisify(execFile);
const ROOT = path.resolve(import.meta.dirname, '../..');
const DEPLOY = path.join(ROOT, 'deploy');
type Obj = Record<string, unknown>;

/** The value at a path of keys and indices in a rendered manifest (undefined when absent). */
function get(o: unknown, ...keys: (string | number)[]): unknown {
  let cur = o;
  for (const k of keys) cur = cur !== null && typeof cur === 'object' ? (cur as Record<string | number, unknown>)[k] : undefined;
  return cur;
}
/** The list of mappings at a path ([] when absent). */
function list(o: unknown, ...keys: (string | number)[]): Obj[] {
  const v = get(o, ...keys);
  return Array.isArray(v) ? (v as Obj[]) : [];
}
function str(o: unknown, ...keys: (string | number)[]): string {
  return String(get(o, ...keys));
}

const BASES = readdirSync(DEPLOY, { withFileTypes: true })
  .filter((e) => e.isDirectory() && existsSync(path.join(DEPLOY, e.name, 'kustomization.yaml')))
  .map((e) => e.name)
  .sort();

async function has(tool: string): Promise<boolean> {
  try {
    await run('sh', ['-c', `command -v ${tool}`]);
    return true;
  } catch {
    return false;
  }
}

const rendered = new Map<string, Obj[]>();
let kubectl = false;

beforeAll(async () => {
  kubectl = await has('kubectl');
  if (!kubectl) return;
  await Promise.all(
    BASES.map(async (base) => {
      const { stdout } = await run('kubectl', ['kustomize', path.join(DEPLOY, base)], { maxBuffer: 16 * 1024 * 1024 });
      const docs = parseAllDocuments(stdout, { version: '1.1' });
      rendered.set(base, 'empty' in docs ? [] : docs.map((d) => d.toJS() as Obj));
    }),
  );
}, 60_000);

function find(base: string, kind: string, name?: unknown): Obj {
  const o = (rendered.get(base) ?? []).find((x) => x['kind'] === kind && (name === undefined || get(x, 'metadata', 'name') === name));
  if (o === undefined) throw new Error(`${base}: no ${kind}${name !== undefined ? `/${typeof name === 'string' ? name : JSON.stringify(name)}` : ''}`);
  return o;
}

/** What Pod Security Standards "restricted" requires of a pod spec (the parts that apply here). */
function restrictedViolations(spec: unknown): string[] {
  const out: string[] = [];
  const pod = get(spec, 'securityContext');
  for (const c of [...list(spec, 'initContainers'), ...list(spec, 'containers')]) {
    const sc = get(c, 'securityContext');
    const where = `container ${str(c, 'name')}`;
    if (get(sc, 'allowPrivilegeEscalation') !== false) out.push(`${where}: allowPrivilegeEscalation must be false`);
    const drop = get(sc, 'capabilities', 'drop');
    if (!Array.isArray(drop) || !drop.includes('ALL')) out.push(`${where}: capabilities must drop ALL`);
    if ((get(sc, 'runAsNonRoot') ?? get(pod, 'runAsNonRoot')) !== true) out.push(`${where}: runAsNonRoot must be true`);
    if ((get(sc, 'seccompProfile', 'type') ?? get(pod, 'seccompProfile', 'type')) !== 'RuntimeDefault') out.push(`${where}: seccompProfile must be RuntimeDefault`);
    if ((get(sc, 'runAsUser') ?? get(pod, 'runAsUser')) === 0) out.push(`${where}: runAsUser must not be 0`);
    if (get(sc, 'privileged') === true) out.push(`${where}: must not be privileged`);
  }
  for (const v of list(spec, 'volumes')) {
    const type = Object.keys(v).find((k) => k !== 'name');
    if (!['configMap', 'csi', 'downwardAPI', 'emptyDir', 'ephemeral', 'persistentVolumeClaim', 'projected', 'secret'].includes(String(type))) out.push(`volume ${str(v, 'name')}: type ${type} not allowed`);
  }
  return out;
}

describe('kubectl kustomize deploy/<base>', () => {
  it('finds the bases', () => {
    expect(BASES).toEqual(['cert-manager', 'example', 'monitoring', 'webhook']);
  });

  for (const base of BASES) {
    it(`${base} renders and every object validates`, (ctx) => {
      if (!kubectl) ctx.skip();
      const objects = rendered.get(base) ?? [];
      expect(objects.length).toBeGreaterThan(0);
      for (const o of objects) validateK8s(o);
    });
  }

  it('every pod template meets Pod Security Standards "restricted"', (ctx) => {
    if (!kubectl) ctx.skip();
    const deployments = ['webhook', 'example'].flatMap((base) => (rendered.get(base) ?? []).filter((o) => o['kind'] === 'Deployment'));
    expect(deployments.length).toBe(1 + Object.keys(WORKLOADS).length);
    for (const d of deployments) expect(restrictedViolations(get(d, 'spec', 'template', 'spec')), str(d, 'metadata', 'name')).toEqual([]);
  });
});

describe('the webhook base', () => {
  it('MutatingWebhookConfiguration: v1 reviews, no side effects, a timeout, opt-in selectors, the CA from cert-manager', (ctx) => {
    if (!kubectl) ctx.skip();
    const mwc = find('webhook', 'MutatingWebhookConfiguration');
    const svc = find('webhook', 'Service', 'mtls-sidecar-webhook');
    const hooks = list(mwc, 'webhooks');
    expect(hooks).toHaveLength(2);
    for (const h of hooks) {
      expect(h['admissionReviewVersions']).toEqual(['v1']);
      expect(h['sideEffects']).toBe('None');
      expect(['Fail', 'Ignore']).toContain(h['failurePolicy']);
      expect(h['timeoutSeconds']).toBeGreaterThanOrEqual(1);
      expect(h['timeoutSeconds']).toBeLessThanOrEqual(10);
      expect(h['rules']).toEqual([{ operations: ['CREATE'], apiGroups: [''], apiVersions: ['v1'], resources: ['pods'], scope: 'Namespaced' }]);
      expect(get(h, 'clientConfig', 'service')).toEqual({
        name: get(svc, 'metadata', 'name'),
        namespace: get(svc, 'metadata', 'namespace'),
        path: '/mutate',
        port: get(svc, 'spec', 'ports', 0, 'port'),
      });
      // The system namespaces (and the webhook's own) are never sent.
      expect(get(h, 'namespaceSelector', 'matchExpressions')).toContainEqual(
        expect.objectContaining({ key: 'kubernetes.io/metadata.name', operator: 'NotIn', values: expect.arrayContaining(['kube-system', 'mtls-sidecar-system']) }),
      );
    }
    const [byPod, byNamespace] = hooks;
    expect(get(byPod, 'objectSelector')).toEqual({ matchLabels: { 'mtls-sidecar.io/inject': 'true' } });
    expect(get(byNamespace, 'namespaceSelector', 'matchLabels')).toEqual({ 'mtls-sidecar.io/injection': 'enabled' });
    expect(get(byNamespace, 'objectSelector')).toEqual({ matchExpressions: [{ key: 'mtls-sidecar.io/inject', operator: 'NotIn', values: ['false', 'true'] }] });
    // cert-manager injects the CA of the very Certificate whose Secret the webhook serves.
    const [ns, name] = str(mwc, 'metadata', 'annotations', 'cert-manager.io/inject-ca-from').split('/');
    const cert = find('webhook', 'Certificate', name);
    expect(get(cert, 'metadata', 'namespace')).toBe(ns);
    expect(get(cert, 'spec', 'dnsNames')).toContain(`${str(svc, 'metadata', 'name')}.${str(svc, 'metadata', 'namespace')}.svc`);
    expect(list(find('webhook', 'Deployment'), 'spec', 'template', 'spec', 'volumes')).toContainEqual({ name: 'tls', secret: { secretName: get(cert, 'spec', 'secretName') } });
  });

  it("the Deployment runs `webhook` with a config that validates and agrees with the pod's ports and mounts", (ctx) => {
    if (!kubectl) ctx.skip();
    const deployment = find('webhook', 'Deployment');
    const pod = get(deployment, 'spec', 'template', 'spec');
    const container = list(pod, 'containers')[0];
    const args = get(container, 'args') as string[];
    expect(args.slice(0, 2)).toEqual(['webhook', '--config']);
    const configPath = String(args[2]);
    const mounts = list(container, 'volumeMounts');
    const mount = mounts.find((m) => configPath.startsWith(`${str(m, 'mountPath')}/`));
    const volume = list(pod, 'volumes').find((v) => v['name'] === mount?.['name']);
    const cm = find('webhook', 'ConfigMap', get(volume, 'configMap', 'name'));
    const parsed = parseWebhookConfigText(str(cm, 'data', path.basename(configPath)), path.dirname(configPath));
    if (!parsed.ok) throw new Error(JSON.stringify(parsed.issues));
    const c = parsed.config;
    const port = (n: string): unknown => list(container, 'ports').find((p) => p['name'] === n)?.['containerPort'];
    expect(c.listen.port).toBe(port('https'));
    expect(c.admin.port).toBe(port('admin'));
    const tlsMount = str(mounts.find((m) => m['name'] === 'tls'), 'mountPath');
    expect(c.tls.cert).toBe(`${tlsMount}/tls.crt`);
    expect(c.tls.key).toBe(`${tlsMount}/tls.key`);
    expect(c.inject.image).toBe(get(container, 'image')); // one release: the webhook injects its own version
    expect(get(find('webhook', 'Service'), 'spec', 'ports', 0, 'targetPort')).toBe('https');
    expect(get(container, 'readinessProbe', 'httpGet')).toEqual({ path: '/healthz', port: 'admin' });
    // The webhook's own pods are never injected.
    expect(get(deployment, 'spec', 'template', 'metadata', 'labels', 'mtls-sidecar.io/inject')).toBe('false');
  });

  it('the checked-in webhook.yaml is the one the ConfigMap carries', (ctx) => {
    if (!kubectl) ctx.skip();
    expect(get(find('webhook', 'ConfigMap'), 'data', 'webhook.yaml')).toBe(readFileSync(path.join(DEPLOY, 'webhook/webhook.yaml'), 'utf8'));
  });
});

/** The example's workloads and the file each one's ConfigMap (`<name>-sidecar`) carries. */
const WORKLOADS = { orders: 'sidecar.yaml', billing: 'billing-sidecar.yaml' } as const;
type Workload = keyof typeof WORKLOADS;
const WORKLOAD_NAMES = Object.keys(WORKLOADS) as Workload[];

function exampleDocs(file: string): Obj[] {
  const docs = parseAllDocuments(readFileSync(path.join(DEPLOY, 'example', file), 'utf8'), { version: '1.1' });
  return 'empty' in docs ? [] : docs.map((d) => d.toJS() as Obj);
}
function exampleDoc(file: string, kind: string, name: string): Obj {
  const o = exampleDocs(file).find((x) => x['kind'] === kind && get(x, 'metadata', 'name') === name);
  if (o === undefined) throw new Error(`deploy/example/${file}: no ${kind}/${name}`);
  return o;
}
function exampleConfig(w: Workload): RawConfig {
  const loaded = parseConfigText(readFileSync(path.join(DEPLOY, 'example', WORKLOADS[w]), 'utf8'));
  if (!loaded.ok) throw new Error(`${WORKLOADS[w]}: ${JSON.stringify(loaded.issues)}`);
  return loaded.raw;
}

describe('the example apps', () => {
  it('app.yaml is exactly `mtls-sidecar inject -f app.source.yaml`', async () => {
    const source = path.join(DEPLOY, 'example/app.source.yaml');
    const ran = await runInject(['-f', source]);
    expect(ran.code).toBe(0);
    expect(ran.stdout).toBe(readFileSync(path.join(DEPLOY, 'example/app.yaml'), 'utf8'));
    expect(exampleDocs('app.yaml').filter((o) => o['kind'] === 'Deployment').map((o) => get(o, 'metadata', 'name'))).toEqual(WORKLOAD_NAMES);
    // The Services target the sidecars; the policies live in networkpolicy.yaml, which inject
    // does not see here and says so (once).
    expect(ran.stderr.split('\n')).toEqual([
      `inject: warning: ${source}: no NetworkPolicy in the input limits the injected pods' ingress to their sidecar's ports: pods can reach an app around its sidecar if it listens on the pod IP (policies applied separately are fine)`,
      'inject: injected 2 of 2 workloads; passed through: 2 Service',
      '',
    ]);
  });

  it('leaves no way around the sidecars: inject with the NetworkPolicies warns about nothing', async () => {
    const input = `${readFileSync(path.join(DEPLOY, 'example/app.source.yaml'), 'utf8')}---\n${readFileSync(path.join(DEPLOY, 'example/networkpolicy.yaml'), 'utf8')}`;
    const ran = await runInject([], input);
    expect(ran.code).toBe(0);
    expect(ran.stderr).toBe('inject: injected 2 of 2 workloads; passed through: 2 Service, 2 NetworkPolicy\n');
    // And the policies are what keeps it so: without orders' rules, orders is open.
    const open = input.replace('    - port: 8443 # the sidecar\'s mTLS port\n      protocol: TCP\n  - from:', '    - port: 8080\n  - from:');
    expect(open).not.toBe(input);
    expect((await runInject([], open)).stderr).toContain('Deployment/orders: NetworkPolicy/orders allows ingress to port 8080');
  });

  for (const w of WORKLOAD_NAMES) {
    it(`${w}: ${WORKLOADS[w]} passes the config schema and matches what was injected`, () => {
      const cfg = exampleConfig(w);
      const spec = get(exampleDoc('app.yaml', 'Deployment', w), 'spec', 'template', 'spec');
      const sidecar = list(spec, 'initContainers').find((c) => c['name'] === 'mtls-sidecar');
      const port = (n: string): unknown => list(sidecar, 'ports').find((p) => p['name'] === n)?.['containerPort'];
      expect(cfg.listen.port).toBe(port('mtls'));
      expect(cfg.admin.port).toBe(port('mtls-admin'));
      expect(cfg.admin.address).toBe('0.0.0.0'); // the kubelet and Prometheus reach it on the pod IP
      expect(get(sidecar, 'args')).toEqual(['run', '--config', `${CONFIG_MOUNT}/${CONFIG_KEY}`]);
      for (const f of [cfg.tls.cert, cfg.tls.key, ...cfg.tls.clientCAs]) expect(f.startsWith(`${CERTS_MOUNT}/`)).toBe(true);
      const appPort = get(spec, 'containers', 0, 'ports', 0, 'containerPort');
      expect(cfg.upstream.url).toBe(`http://127.0.0.1:${String(appPort)}`);
      expect(get(spec, 'containers', 0, 'args')).toContain(`-listen=127.0.0.1:${String(appPort)}`);
    });

    it(`${w}: the rendered ConfigMap, Secret and Certificate are the ones the pod names`, (ctx) => {
      if (!kubectl) ctx.skip();
      const deployment = find('example', 'Deployment', w);
      const pod = get(deployment, 'spec', 'template');
      const volumes = list(pod, 'spec', 'volumes');
      const configMap = get(volumes.find((v) => v['name'] === 'mtls-sidecar-config'), 'configMap', 'name');
      const secret = get(volumes.find((v) => v['name'] === 'mtls-sidecar-certs'), 'secret', 'secretName');
      expect(get(find('example', 'ConfigMap', configMap), 'data', CONFIG_KEY)).toBe(readFileSync(path.join(DEPLOY, 'example', WORKLOADS[w]), 'utf8'));
      const cert = (rendered.get('example') ?? []).find((o) => o['kind'] === 'Certificate' && get(o, 'spec', 'secretName') === secret);
      expect(cert).toBeDefined();
      const ns = str(deployment, 'metadata', 'namespace');
      const sa = str(pod, 'spec', 'serviceAccountName');
      expect(get(cert, 'spec', 'uris')).toEqual([`spiffe://cluster.local/ns/${ns}/sa/${sa}`]);
      expect(get(cert, 'spec', 'usages')).toEqual(['server auth', 'client auth']);
      expect(get(cert, 'spec', 'privateKey', 'rotationPolicy')).toBe('Always');
      find('cert-manager', str(cert, 'spec', 'issuerRef', 'kind'), str(cert, 'spec', 'issuerRef', 'name'));
      find('example', 'ServiceAccount', sa);
      // By number: the port is declared only on the sidecar, an init container, and older
      // Kubernetes resolves a named targetPort against the regular containers alone.
      const sidecarPort = list(list(get(pod, 'spec') as Record<string, unknown>, 'initContainers').find((c) => c['name'] === 'mtls-sidecar'), 'ports').find((p) => p['name'] === 'mtls')?.['containerPort'];
      expect(get(find('example', 'Service', w), 'spec', 'ports', 0, 'targetPort')).toBe(sidecarPort);
    });
  }

  it("orders' outbound destination is billing's Service, SPIFFE ID and port; billing admits orders; the app's BILLING_URL is the listener", () => {
    const orders = exampleConfig('orders');
    const billing = exampleConfig('billing');
    const dest = orders.outbound?.destinations.find((d) => d.name === 'billing');
    if (dest === undefined) throw new Error('sidecar.yaml: no outbound destination "billing"');
    // The Service's cluster name and port, which lead to billing's sidecar (targetPort mtls).
    const svc = exampleDoc('app.yaml', 'Service', 'billing');
    const svcPort = list(svc, 'spec', 'ports').find((p) => p['targetPort'] === 8443);
    expect(dest.target).toBe(`billing.${str(svc, 'metadata', 'namespace')}.svc.cluster.local:${String(svcPort?.['port'])}`);
    // Who billing is: the URI SAN of the Certificate its pod mounts.
    const billingUri = get(exampleDoc('certificate.yaml', 'Certificate', 'billing-mtls'), 'spec', 'uris', 0);
    const ordersUri = get(exampleDoc('certificate.yaml', 'Certificate', 'orders-mtls'), 'spec', 'uris', 0);
    expect(dest.expect.uri).toBe(billingUri);
    // orders presents its workload certificate (outbound.cert defaults to tls.cert).
    expect(orders.outbound?.cert).toBeUndefined();
    // billing's sidecar knows orders by that certificate's SPIFFE ID, with scopes some route needs.
    const who = billing.identities.find((i) => i.match.uri === ordersUri);
    expect(who?.name).toBe('orders');
    expect(billing.routes.some((r) => r.methods?.includes('GET') === true && r.scopes.length > 0 && r.scopes.every((sc) => who?.scopes.includes(sc) === true))).toBe(true);
    const app = list(get(exampleDoc('app.yaml', 'Deployment', 'orders'), 'spec', 'template', 'spec'), 'containers')[0];
    expect(list(app, 'env')).toContainEqual({ name: 'BILLING_URL', value: `http://127.0.0.1:${String(dest.listen?.port)}` });
  });

  it('the NetworkPolicies: billing takes mTLS from orders only; orders may reach billing on mtls, and DNS', () => {
    const podLabels = (w: Workload): unknown => get(exampleDoc('app.yaml', 'Deployment', w), 'spec', 'template', 'metadata', 'labels', 'app.kubernetes.io/name');
    const billingPolicy = exampleDoc('networkpolicy.yaml', 'NetworkPolicy', 'billing');
    expect(get(billingPolicy, 'spec', 'podSelector', 'matchLabels', 'app.kubernetes.io/name')).toBe(podLabels('billing'));
    const mtlsIn = list(billingPolicy, 'spec', 'ingress').filter((r) => list(r, 'ports').some((p) => p['port'] === 8443));
    expect(mtlsIn).toEqual([{ from: [{ podSelector: { matchLabels: { 'app.kubernetes.io/name': podLabels('orders') } } }], ports: [{ port: 8443, protocol: 'TCP' }] }]);
    const ordersPolicy = exampleDoc('networkpolicy.yaml', 'NetworkPolicy', 'orders');
    expect(get(ordersPolicy, 'spec', 'policyTypes')).toEqual(['Ingress', 'Egress']);
    const egress = list(ordersPolicy, 'spec', 'egress');
    // A policy sees the pod's port after the Service's translation: "mtls" (8443), not 443.
    expect(egress).toContainEqual({ to: [{ podSelector: { matchLabels: { 'app.kubernetes.io/name': podLabels('billing') } } }], ports: [{ port: 8443, protocol: 'TCP' }] });
    expect(egress.some((r) => list(r, 'ports').some((p) => p['port'] === 53 && p['protocol'] === 'UDP'))).toBe(true);
  });

  it("orders' app calls billing through both sidecars, run from the example's own configs", async () => {
    // The example's configs as they are, but for what only a pod has: the mounted files (the test
    // PKI's workload certificates, same trust domain and namespace), the ports, and the Service
    // (billing's sidecar on loopback).
    const pki = inject('pki');
    const local = (w: Workload, appUrl: string): ConfigObject => {
      const cfg = parse(readFileSync(path.join(DEPLOY, 'example', WORKLOADS[w]), 'utf8')) as ConfigObject;
      return {
        ...cfg,
        tls: { ...(cfg['tls'] as ConfigObject), cert: pki.workloads[w].cert, key: pki.workloads[w].key, clientCAs: [pki.rootCa.cert] },
        listen: { address: '127.0.0.1', port: 0, http2: true },
        admin: { address: '127.0.0.1', port: 0 },
        upstream: { url: appUrl },
      };
    };
    const ordersApp = await startUpstream();
    const billingApp = await startUpstream();
    const billing = await startSidecar(local('billing', billingApp.url));
    const ordersCfg = local('orders', ordersApp.url);
    const outbound = ordersCfg['outbound'] as { destinations: ConfigObject[] };
    const dest = outbound.destinations[0] ?? {};
    expect(dest['target']).toBe('billing.shop.svc.cluster.local:443');
    // The SNI: a name of the Service that the test PKI's billing certificate carries (the
    // cert-manager one carries both .svc names).
    const orders = await startSidecar({
      ...ordersCfg,
      outbound: { ...outbound, destinations: [{ ...dest, listen: { port: 0 }, target: `127.0.0.1:${billing.port}`, serverName: 'billing.shop.svc' }] },
    });
    try {
      const call = async (method: string): Promise<number> => {
        const res = await request(`http://127.0.0.1:${orders.outboundPort('billing')}/invoices/1`, { method });
        await res.body.dump();
        return res.statusCode;
      };
      expect(await call('GET')).toBe(200);
      const seen = billingApp.seen.at(-1);
      expect(seen?.url).toBe('/invoices/1');
      expect(seen?.headers['x-client-identity']).toBe('orders');
      expect(seen?.headers['x-forwarded-client-cert']).toContain(`URI=${pki.workloads.orders.uri ?? ''}`);
      const line = await orders.audit.waitFor((l) => l['direction'] === 'outbound');
      expect(line).toMatchObject({ destination: 'billing', status: 200, peerUri: 'spiffe://cluster.local/ns/shop/sa/billing' });
      // billing admits orders for reading invoices only.
      expect(await call('POST')).toBe(403);
      expect(billingApp.seen).toHaveLength(1);
    } finally {
      await orders.close();
      await billing.close();
      await ordersApp.close();
      await billingApp.close();
    }
  });
});

describe('monitoring', () => {
  const SPEC_METRICS = [
    'mtls_sidecar_requests_total',
    'mtls_sidecar_request_duration_seconds',
    'mtls_sidecar_upstream_duration_seconds',
    'mtls_sidecar_tls_handshakes_total',
    'mtls_sidecar_rate_limited_total',
    'mtls_sidecar_active_connections',
    'mtls_sidecar_cert_expiry_timestamp_seconds',
    'mtls_sidecar_config_reloads_total',
    'mtls_sidecar_config_last_reload_successful',
    'mtls_sidecar_config_last_reload_success_timestamp_seconds',
    'mtls_sidecar_crl_next_update_timestamp_seconds',
    'mtls_sidecar_policy_would_deny_total',
    'mtls_sidecar_audit_buffered_bytes',
    'mtls_sidecar_audit_write_errors_total',
    'mtls_sidecar_audit_lines_dropped_total',
    'mtls_sidecar_outbound_requests_total',
    'mtls_sidecar_outbound_duration_seconds',
    'mtls_sidecar_outbound_handshakes_total',
  ];
  const HISTOGRAMS = ['mtls_sidecar_request_duration_seconds', 'mtls_sidecar_upstream_duration_seconds', 'mtls_sidecar_outbound_duration_seconds'];

  // The reference (docs/reference.md §6, checked against the code by test/unit/docs) also lists
  // metrics the rules and the dashboard do not use, so the list above is checked as a part of it.
  it('the list above is in the metrics of docs/reference.md §6', () => {
    const names = new Set(referenceMetricNames());
    expect(names.size).toBeGreaterThan(SPEC_METRICS.length);
    expect(SPEC_METRICS.filter((n) => !names.has(n))).toEqual([]);
  });

  it('every metric name used anywhere in deploy/ is a SPEC §6 name', () => {
    const files: string[] = [];
    const walk = (dir: string): void => {
      for (const e of readdirSync(dir, { withFileTypes: true })) {
        if (e.isDirectory()) walk(path.join(dir, e.name));
        else files.push(path.join(dir, e.name));
      }
    };
    walk(DEPLOY);
    const used = new Set<string>();
    for (const f of files) {
      for (const m of readFileSync(f, 'utf8').matchAll(/\bmtls_sidecar_[a-z_]+/g)) {
        const name = m[0];
        const base = HISTOGRAMS.find((h) => name === `${h}_bucket` || name === `${h}_sum` || name === `${h}_count`) ?? name;
        expect(SPEC_METRICS, `${path.relative(ROOT, f)} uses ${name}`).toContain(base);
        used.add(base);
      }
    }
    // The rules and the dashboard together cover every SPEC metric.
    expect([...used].sort()).toEqual([...SPEC_METRICS].sort());
  });

  it('alerts.yml passes promtool check rules', async (ctx) => {
    if (!(await has('promtool'))) ctx.skip();
    const { stdout } = await run('promtool', ['check', 'rules', path.join(DEPLOY, 'monitoring/alerts.yml')]);
    expect(stdout).toMatch(/SUCCESS: \d+ rules found/);
  });

  it('alerts.test.yml passes promtool test rules (the reload alert fires while broken, clears once fixed; the audit-mode alert fires at the first would-deny)', async (ctx) => {
    if (!(await has('promtool'))) ctx.skip();
    const { stdout } = await run('promtool', ['test', 'rules', path.join(DEPLOY, 'monitoring/alerts.test.yml')]);
    expect(stdout).toMatch(/SUCCESS/);
  });

  it('alerts on what the issue names', () => {
    const rules = list(parse(readFileSync(path.join(DEPLOY, 'monitoring/alerts.yml'), 'utf8')), 'groups').flatMap((g) => list(g, 'rules'));
    const expr = (alert: string): string => str(rules.find((r) => r['alert'] === alert), 'expr');
    expect(expr('MtlsSidecarCertificateExpiringSoon')).toMatch(/mtls_sidecar_cert_expiry_timestamp_seconds - time\(\)\) < 30 \* 24 \* 3600/);
    expect(expr('MtlsSidecarHandshakeRejectionsHigh')).toMatch(/mtls_sidecar_tls_handshakes_total\{result="rejected"\}/);
    expect(expr('MtlsSidecarHigh5xxRate')).toMatch(/mtls_sidecar_requests_total\{code=~"5.."\}/);
    expect(expr('MtlsSidecarRateLimiting')).toMatch(/mtls_sidecar_rate_limited_total/);
    // The gauge, not increase(failures[15m]): that cleared after 15 minutes with the file still
    // broken, and kept firing for 15 minutes after it was fixed.
    expect(expr('MtlsSidecarConfigReloadFailed')).toBe('mtls_sidecar_config_last_reload_successful == 0');
    expect(expr('MtlsSidecarCrlExpiringSoon')).toMatch(/\(mtls_sidecar_crl_next_update_timestamp_seconds - time\(\)\) < 24 \* 3600/);
    // Not increase(): a caller's first would-deny request starts its series, and increase() reads that as 0.
    expect(expr('MtlsSidecarAuditModeWouldDeny')).toMatch(/mtls_sidecar_policy_would_deny_total offset 1h/);
    expect(expr('MtlsSidecarAuditModeWouldDeny')).not.toMatch(/increase\(/);
    for (const r of rules) {
      expect(str(r, 'labels', 'severity'), str(r, 'alert')).toMatch(/^(critical|warning|info)$/);
      expect(get(r, 'annotations', 'summary'), str(r, 'alert')).toBeTruthy();
    }
  });

  it('the PrometheusRule carries exactly the groups of alerts.yml', () => {
    const plain: unknown = parse(readFileSync(path.join(DEPLOY, 'monitoring/alerts.yml'), 'utf8'));
    const crd: unknown = parse(readFileSync(path.join(DEPLOY, 'monitoring/prometheusrule.yaml'), 'utf8'));
    expect(get(crd, 'spec', 'groups')).toEqual(get(plain, 'groups'));
  });

  it('the PodMonitor scrapes the admin port the injector names', (ctx) => {
    if (!kubectl) ctx.skip();
    const pm = find('monitoring', 'PodMonitor', 'mtls-sidecar');
    expect(get(pm, 'spec', 'podMetricsEndpoints', 0)).toMatchObject({ port: 'mtls-admin', path: '/metrics' });
    expect(get(pm, 'spec', 'namespaceSelector')).toEqual({ any: true });
  });

  it('the Grafana dashboard is valid JSON with a query per panel', () => {
    const dash: unknown = JSON.parse(readFileSync(path.join(DEPLOY, 'monitoring/grafana-dashboard.json'), 'utf8'));
    expect(get(dash, 'uid')).toBe('mtls-sidecar');
    const panels = list(dash, 'panels');
    expect(panels.length).toBeGreaterThanOrEqual(10);
    expect(new Set(panels.map((p) => p['id'])).size).toBe(panels.length);
    for (const p of panels) {
      expect(list(p, 'targets').length, str(p, 'title')).toBeGreaterThan(0);
      for (const t of list(p, 'targets')) expect(str(t, 'expr')).toMatch(/mtls_sidecar_/);
    }
  });
});

describe('the image', () => {
  // The static shape; `make test-image` (test/image) builds the image and runs it.
  it('Dockerfile: no frontend to pull, one npm ci, a FROM scratch runtime with production dependencies, user 65532, every served port exposed', () => {
    const text = readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8');
    expect(text).not.toMatch(/^# *syntax=/m);
    expect(text.match(/^RUN npm ci /gm)?.length).toBe(1);
    expect(text).toMatch(/npm prune --omit=dev/);
    expect(text).toMatch(/^ARG NPM_CONFIG_REGISTRY$/m);
    expect(text).toMatch(/^ARG NPM_CONFIG_CA$/m);
    expect(text).toMatch(/^USER 65532:65532$/m);
    expect(text).toMatch(/^ENTRYPOINT \["\/usr\/local\/bin\/node", "\/app\/dist\/main\.js"\]$/m);
    expect(text).toMatch(/^EXPOSE 8443 9901 9902$/m);
    const last = text.slice(text.lastIndexOf('\nFROM '));
    expect(last).toMatch(/^\nFROM scratch$/m);
    expect(last).toMatch(/COPY --from=prod \/src\/node_modules/);
    expect(last).not.toMatch(/COPY --from=build \/src\/node_modules/);
    const ignore = readFileSync(path.join(ROOT, '.dockerignore'), 'utf8');
    expect(ignore.split('\n')).toContain('*');
    expect(ignore).not.toMatch(/^!.*(node_modules|certs|\.key)/m);
  });
});
