/**
 * Where traffic could reach an injected app around its sidecar: Services of the input that
 * target another port (or, with none selecting the pod, the app's declared ports), and
 * NetworkPolicies that do not limit the pod's ingress to the sidecar's ports.
 */
import { describe, expect, it } from 'vitest';
import { bypassWarnings, collectNeighbours, NO_NEIGHBOURS, selects } from '../../../src/inject/bypass.js';
import { injectManifests } from '../../../src/inject/documents.js';
import { injectTemplate } from '../../../src/inject/inject.js';
import { DEFAULT_SETTINGS } from '../../../src/inject/settings.js';

type Obj = Record<string, unknown>;

/** An injected pod template labelled app=web, with the app's `ports` and `spec` extras. */
function injected(opts: { ports?: Obj[]; spec?: Obj; annotations?: Obj; legacy?: boolean } = {}): Obj {
  const template = {
    metadata: { labels: { app: 'web', tier: 'front', 'mtls-sidecar.io/inject': 'true' }, ...(opts.annotations ? { annotations: opts.annotations } : {}) },
    spec: { containers: [{ name: 'web', image: 'web:1', ...(opts.ports ? { ports: opts.ports } : {}) }], ...opts.spec },
  };
  const out = injectTemplate(template, { settings: opts.legacy === true ? { ...DEFAULT_SETTINGS, mode: 'legacy' } : DEFAULT_SETTINGS, policy: 'label' });
  if (out.kind !== 'injected') throw new Error(JSON.stringify(out));
  return out.template;
}

const HTTP = [{ name: 'http', containerPort: 8080 }];

function service(spec: Obj, namespace?: string): Obj {
  return { apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', ...(namespace === undefined ? {} : { namespace }) }, spec };
}

function policy(spec: Obj, name = 'np', namespace?: string): Obj {
  return { apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { name, ...(namespace === undefined ? {} : { namespace }) }, spec };
}

/** A policy that admits only the sidecar's ports: with it in the input, (b) stays quiet. */
const TIGHT = policy({ podSelector: { matchLabels: { app: 'web' } }, ingress: [{ ports: [{ port: 'mtls' }, { port: 'mtls-admin' }] }] }, 'tight');

const warn = (template: Obj, objects: unknown[], namespace?: string): string[] => bypassWarnings(template, namespace, collectNeighbours(objects));

describe('Services that route around the sidecar', () => {
  it.each([
    ['the app port by number', { targetPort: 8080 }, 'Service/web port 80 targets port 8080 of container web'],
    ['the app port by name', { targetPort: 'http' }, 'Service/web port 80 targets port http (8080) of container web'],
    ['no targetPort: the port itself', { port: 8080 }, 'Service/web port 8080 targets port 8080 of container web'],
    ['a port nobody declares', { targetPort: 9000 }, 'Service/web port 80 targets port 9000,'],
  ])('warns for %s', (_, port, text) => {
    const ws = warn(injected({ ports: HTTP }), [service({ selector: { app: 'web' }, ports: [{ port: 80, ...port }] }), TIGHT]);
    expect(ws).toHaveLength(1);
    expect(ws[0]).toContain(text);
    expect(ws[0]).toContain("not the sidecar's mTLS port 8443: its traffic bypasses the sidecar");
  });

  it.each([
    ['the mTLS port by number', { targetPort: 8443 }],
    ['the mTLS port by name', { targetPort: 'mtls' }],
    ['the admin port (metrics)', { targetPort: 9901 }],
    ['the admin port by name', { targetPort: 'mtls-admin' }],
    ['a name no container declares (routes nowhere)', { targetPort: 'grpc' }],
  ])('is quiet for %s', (_, port) => {
    expect(warn(injected({ ports: HTTP }), [service({ selector: { app: 'web' }, ports: [{ port: 80, ...port }] }), TIGHT])).toEqual([]);
  });

  it('follows the annotation-set sidecar port', () => {
    const t = injected({ ports: HTTP, annotations: { 'mtls-sidecar.io/port': '9443' } });
    const ws = warn(t, [service({ selector: { app: 'web' }, ports: [{ port: 443, targetPort: 8443 }] }), TIGHT]);
    expect(ws).toEqual([expect.stringContaining("Service/web port 443 targets port 8443, not the sidecar's mTLS port 9443")]);
  });

  it('judges only Services that select the pod, in its namespace', () => {
    const t = injected({ ports: HTTP });
    const bad = { ports: [{ port: 80, targetPort: 8080 }] };
    const others = [
      service({ selector: { app: 'other' }, ...bad }),
      service({ selector: { app: 'web', tier: 'back' }, ...bad }),
      service({ selector: { app: 'web' }, ...bad }, 'elsewhere'),
      service({ type: 'ExternalName', externalName: 'x.example.com', selector: { app: 'web' }, ...bad }),
      service({ ...bad }), // no selector: manual endpoints
      { apiVersion: 'example.com/v1', kind: 'Service', metadata: { name: 'crd' }, spec: { selector: { app: 'web' }, ...bad } },
      service({ selector: { app: 'web' }, ports: [{ port: 443, targetPort: 8443 }] }, 'shop'),
    ];
    // One Service in the input selects the pod (to the sidecar): the declared port alone is not a warning.
    expect(warn(t, [...others, TIGHT], 'shop')).toEqual([]);
    // A Service without a namespace goes where it is applied: assumed to be the pod's.
    expect(warn(t, [service({ selector: { app: 'web' }, ...bad }), TIGHT], 'shop')).toHaveLength(1);
    // Inside a List too.
    expect(warn(t, [{ apiVersion: 'v1', kind: 'List', items: [service({ selector: { app: 'web' }, ...bad })] }, TIGHT])).toHaveLength(1);
  });

  it('with no Service selecting the pod, warns about each container that declares ports', () => {
    const t = injected({
      ports: [...HTTP, { containerPort: 9090 }],
      spec: {
        initContainers: [
          { name: 'agent', image: 'agent:1', restartPolicy: 'Always', ports: [{ name: 'agent', containerPort: 24224 }] },
          { name: 'migrate', image: 'm:1', ports: [{ containerPort: 5432 }] }, // runs to completion first: not a listener
        ],
      },
    });
    expect(warn(t, [TIGHT])).toEqual([
      'container agent declares port 24224 (agent): a Service or pod that targets it bypasses the sidecar; the app should listen on 127.0.0.1 only',
      'container web declares ports 8080 (http), 9090: a Service or pod that targets them bypasses the sidecar; the app should listen on 127.0.0.1 only',
    ]);
    // The sidecar's own ports are never the app's, in either mode; no ports, no warning.
    expect(warn(injected({ legacy: true }), [TIGHT])).toEqual([]);
    expect(warn(injected(), [TIGHT])).toEqual([]);
  });

  it('says nothing for a template without the sidecar', () => {
    expect(bypassWarnings({ metadata: {}, spec: { containers: [{ name: 'web', ports: HTTP }] } }, undefined, NO_NEIGHBOURS)).toEqual([]);
  });
});

describe('NetworkPolicies that leave the app reachable', () => {
  const t = injected();

  it('is not judged when the policies are unknown (the webhook) or the input has none (said once by the caller)', () => {
    expect(bypassWarnings(t, undefined, NO_NEIGHBOURS)).toEqual([]);
    expect(warn(t, [])).toEqual([]);
  });

  it.each([
    ['selects another pod', policy({ podSelector: { matchLabels: { app: 'other' } }, ingress: [] })],
    ['limits egress only', policy({ podSelector: {}, policyTypes: ['Egress'], egress: [{}] })],
    ['is in another namespace', policy({ podSelector: {}, ingress: [] }, 'np', 'elsewhere')],
  ])('warns when no policy of the input applies: the only one %s', (_, p) => {
    expect(warn(t, [p], 'shop')).toEqual([
      "no NetworkPolicy in the input limits its ingress to the sidecar's ports 8443 and 9901: pods can reach the app around the sidecar if it listens on the pod IP (a policy applied separately is fine)",
    ]);
  });

  it.each([
    ['a rule without ports', [{ from: [{ podSelector: {} }] }], 'every port'],
    ['a port entry without a port', [{ ports: [{ protocol: 'TCP' }] }], 'every port'],
    ['another port by number', [{ ports: [{ port: 8443 }, { port: 8080 }] }], "port 8080 as well as the sidecar's"],
    ['the app port by name', [{ ports: [{ port: 'http' }] }], "port http as well as the sidecar's"],
    ['a range past the sidecar port', [{ ports: [{ port: 8443, endPort: 8450 }] }], "ports 8443-8450 as well as the sidecar's"],
    ['several', [{ ports: [{ port: 1 }] }, { ports: [{ port: 2, protocol: 'UDP' }] }], "port 1, port 2 as well as the sidecar's"],
  ])('warns for %s', (_, ingress, text) => {
    const tt = injected({ ports: HTTP });
    const ws = warn(tt, [service({ selector: { app: 'web' }, ports: [{ port: 443, targetPort: 8443 }] }), policy({ podSelector: { matchLabels: { app: 'web' } }, ingress })]);
    expect(ws).toEqual([`NetworkPolicy/np allows ingress to ${text}: pods can reach the app around the sidecar if it listens on the pod IP`]);
  });

  it.each([
    ['the sidecar ports by number', [{ ports: [{ port: 8443, protocol: 'TCP' }, { port: 9901 }] }]],
    ['the sidecar ports by name', [{ ports: [{ port: 'mtls' }, { port: 'mtls-admin' }] }]],
    ['a name no container declares', [{ ports: [{ port: 8443 }, { port: 'nothing' }] }]],
    ['no ingress rule at all (deny all)', []],
  ])('is quiet for %s', (_, ingress) => {
    expect(warn(injected({ ports: HTTP }), [service({ selector: { app: 'web' }, ports: [{ port: 443, targetPort: 8443 }] }), policy({ podSelector: { matchLabels: { app: 'web' } }, ingress })])).toEqual([]);
  });

  it('adds up the rules of every policy that selects the pod, as Kubernetes does', () => {
    const deny = policy({ podSelector: {}, policyTypes: ['Ingress'] }, 'deny');
    const open = policy({ podSelector: { matchExpressions: [{ key: 'tier', operator: 'In', values: ['front'] }] }, ingress: [{}] }, 'front');
    expect(warn(t, [deny, TIGHT])).toEqual([]);
    expect(warn(t, [deny, TIGHT, open])).toEqual(["NetworkPolicy/front allows ingress to every port: pods can reach the app around the sidecar if it listens on the pod IP"]);
  });

  it('a range of exactly the two sidecar ports is the sidecar', () => {
    const tt = injected({ annotations: { 'mtls-sidecar.io/admin-port': '8444' } });
    expect(warn(tt, [policy({ podSelector: {}, ingress: [{ ports: [{ port: 8443, endPort: 8444 }] }] })])).toEqual([]);
  });
});

describe('label selectors', () => {
  const labels = { app: 'web', tier: 'front' };
  it.each([
    [undefined, true],
    [{}, true],
    [{ matchLabels: { app: 'web' } }, true],
    [{ matchLabels: { app: 'api' } }, false],
    [{ matchExpressions: [{ key: 'tier', operator: 'In', values: ['front', 'back'] }] }, true],
    [{ matchExpressions: [{ key: 'tier', operator: 'NotIn', values: ['front'] }] }, false],
    [{ matchExpressions: [{ key: 'zone', operator: 'NotIn', values: ['a'] }] }, true],
    [{ matchExpressions: [{ key: 'app', operator: 'Exists' }] }, true],
    [{ matchExpressions: [{ key: 'app', operator: 'DoesNotExist' }] }, false],
    [{ matchLabels: { app: 'web' }, matchExpressions: [{ key: 'zone', operator: 'Exists' }] }, false],
    [{ matchExpressions: [{ key: 'app', operator: 'Near' }] }, false],
    ['app=web', false],
  ])('%j selects %j: %s', (selector, want) => {
    expect(selects(selector, labels)).toBe(want);
  });
});

describe('through injectManifests', () => {
  const deployment = (ports: string): string => `apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata:
      labels: {app: web, mtls-sidecar.io/inject: "true"}
    spec:
      containers: [{name: web, image: web:1${ports}}]
`;

  it('sees Services and policies that come after the workload, and judges already injected ones again', () => {
    const input = `${deployment(', ports: [{containerPort: 8080}]')}---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec: {selector: {app: web}, ports: [{port: 80, targetPort: 8080}]}
`;
    const once = injectManifests(input, { settings: DEFAULT_SETTINGS, policy: 'label' });
    if (!once.ok) throw new Error(once.error);
    expect(once.reports[0]?.warnings).toEqual([expect.stringMatching(/^Service\/web port 80 targets port 8080 of container web/)]);
    expect(once.warnings).toEqual([expect.stringMatching(/^no NetworkPolicy in the input limits the injected pods' ingress/)]);
    const twice = injectManifests(once.output, { settings: DEFAULT_SETTINGS, policy: 'label' });
    if (!twice.ok) throw new Error(twice.error);
    expect(twice.reports[0]).toMatchObject({ outcome: 'skipped', reason: 'already_injected', warnings: once.reports[0]?.warnings });
    expect(twice.warnings).toEqual(once.warnings);
  });

  it('says nothing about policies when nothing was injected', () => {
    const r = injectManifests(deployment('').replace('"true"', '"false"'), { settings: DEFAULT_SETTINGS, policy: 'label' });
    expect(r).toMatchObject({ ok: true, warnings: [] });
  });
});
