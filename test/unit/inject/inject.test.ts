/** The shared injection function: placement, lock-down, opt-in rules, overrides, refusals. */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseAppProbes } from '../../../src/inject/app-probes.js';
import { APP_PROBES_ENV, CONTAINER_NAME, SIDECAR_VERSION, STATUS_ANNOTATION } from '../../../src/inject/constants.js';
import { injectTemplate } from '../../../src/inject/inject.js';
import type { InjectOutcome } from '../../../src/inject/inject.js';
import { DEFAULT_SETTINGS, injectSettingsSchema, settingsFromConfig } from '../../../src/inject/settings.js';
import type { InjectSettings } from '../../../src/inject/settings.js';
import { validateK8s } from './k8s-schema.js';

type Obj = Record<string, unknown>;

function pod(extra: { labels?: Obj; annotations?: Obj; spec?: Obj } = {}): Obj {
  return {
    metadata: { name: 'web', labels: { app: 'web', 'mtls-sidecar.io/inject': 'true', ...extra.labels }, ...(extra.annotations ? { annotations: extra.annotations } : {}) },
    spec: {
      containers: [
        {
          name: 'web',
          image: 'registry.example.com/web:1',
          ports: [{ name: 'http', containerPort: 8080 }],
          readinessProbe: { httpGet: { path: '/ready', port: 'http' }, periodSeconds: 3 },
        },
      ],
      ...extra.spec,
    },
  };
}

function injected(outcome: InjectOutcome): Obj {
  if (outcome.kind !== 'injected') throw new Error(`expected injected, got ${JSON.stringify(outcome)}`);
  return outcome.template;
}

function sidecarOf(t: Obj, list: 'initContainers' | 'containers' = 'initContainers'): Obj {
  const spec = t['spec'] as Obj;
  const c = (spec[list] as Obj[]).find((x) => x['name'] === CONTAINER_NAME);
  if (c === undefined) throw new Error('no sidecar');
  return c;
}

const opts = (settings: InjectSettings = DEFAULT_SETTINGS, policy: 'label' | 'all' = 'label') => ({ settings, policy });

describe('injectTemplate', () => {
  it('adds a native sidecar, locked down to the PSS restricted profile, with a startup probe', () => {
    const input = pod();
    const before = structuredClone(input);
    const t = injected(injectTemplate(input, opts()));
    expect(input).toEqual(before); // the input is never modified
    const c = sidecarOf(t);
    expect(c['restartPolicy']).toBe('Always');
    expect(c['securityContext']).toEqual({
      runAsNonRoot: true,
      runAsUser: 65532,
      runAsGroup: 65532,
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      privileged: false,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    });
    expect(c['startupProbe']).toMatchObject({ httpGet: { path: '/healthz', port: 9901 } });
    expect(c['readinessProbe']).toMatchObject({ httpGet: { path: '/readyz', port: 9901 } });
    expect(c['resources']).toEqual({ requests: { cpu: '50m', memory: '64Mi' }, limits: { memory: '256Mi' } });
    expect(c['ports']).toEqual([
      { name: 'mtls', containerPort: 8443, protocol: 'TCP' },
      { name: 'mtls-admin', containerPort: 9901, protocol: 'TCP' },
    ]);
    const annotations = (t['metadata'] as Obj)['annotations'] as Obj;
    expect(annotations).toMatchObject({ 'prometheus.io/scrape': 'true', 'prometheus.io/port': '9901', 'prometheus.io/path': '/metrics' });
    expect(JSON.parse(String(annotations[STATUS_ANNOTATION]))).toMatchObject({ version: SIDECAR_VERSION, mode: 'native' });
    validateK8s({ apiVersion: 'v1', kind: 'Pod', ...t });
  });

  it('records the app probe it rewrites in a form the sidecar accepts', () => {
    const t = injected(injectTemplate(pod(), opts()));
    const app = ((t['spec'] as Obj)['containers'] as Obj[])[0] as Obj;
    expect(app['readinessProbe']).toEqual({ httpGet: { path: '/app-health/web/readyz', port: 9901 }, periodSeconds: 3 });
    const env = (sidecarOf(t)['env'] as { name: string; value: string }[])[0];
    expect(env?.name).toBe(APP_PROBES_ENV);
    const parsed = parseAppProbes(env?.value ?? '');
    expect(parsed).toEqual({
      ok: true,
      probes: { '/app-health/web/readyz': { httpGet: { path: '/ready', port: 8080, scheme: 'HTTP' }, timeoutSeconds: 1 } },
    });
  });

  it('puts the sidecar first among the containers with --legacy and names the default container', () => {
    const t = injected(injectTemplate(pod(), opts({ ...DEFAULT_SETTINGS, mode: 'legacy' })));
    const containers = (t['spec'] as Obj)['containers'] as Obj[];
    expect(containers.map((c) => c['name'])).toEqual([CONTAINER_NAME, 'web']);
    expect(containers[0]?.['restartPolicy']).toBeUndefined();
    expect((t['spec'] as Obj)['initContainers']).toBeUndefined();
    expect(((t['metadata'] as Obj)['annotations'] as Obj)['kubectl.kubernetes.io/default-container']).toBe('web');
  });

  it('appends after existing init containers', () => {
    const t = injected(injectTemplate(pod({ spec: { initContainers: [{ name: 'migrate', image: 'm:1' }] } }), opts()));
    expect(((t['spec'] as Obj)['initContainers'] as Obj[]).map((c) => c['name'])).toEqual(['migrate', CONTAINER_NAME]);
  });

  it('follows the opt-in rules', () => {
    const unlabelled = pod();
    delete ((unlabelled['metadata'] as Obj)['labels'] as Obj)['mtls-sidecar.io/inject'];
    expect(injectTemplate(unlabelled, opts())).toMatchObject({ kind: 'skipped', reason: 'not_opted_in' });
    expect(injectTemplate(unlabelled, opts(DEFAULT_SETTINGS, 'all')).kind).toBe('injected');
    const out = pod({ labels: { 'mtls-sidecar.io/inject': 'false' } });
    expect(injectTemplate(out, opts(DEFAULT_SETTINGS, 'all'))).toMatchObject({ kind: 'skipped', reason: 'opted_out' });
    const boolean = pod({ labels: { 'mtls-sidecar.io/inject': true } });
    const r = injectTemplate(boolean, opts());
    expect(r).toMatchObject({ kind: 'skipped', reason: 'not_opted_in' });
    expect(r.kind === 'skipped' && r.warnings[0]).toMatch(/only the string "true"/);
    expect(injectTemplate(pod({ spec: { hostNetwork: true } }), opts())).toMatchObject({ kind: 'skipped', reason: 'host_network' });
  });

  it('is idempotent: an injected template (native or legacy) is left as it is', () => {
    for (const mode of ['native', 'legacy'] as const) {
      const once = injected(injectTemplate(pod(), opts({ ...DEFAULT_SETTINGS, mode })));
      expect(injectTemplate(once, opts())).toMatchObject({ kind: 'skipped', reason: 'already_injected' });
      expect(injectTemplate(once, opts({ ...DEFAULT_SETTINGS, mode: mode === 'native' ? 'legacy' : 'native' }))).toMatchObject({ kind: 'skipped', reason: 'already_injected' });
    }
  });

  it('applies annotation overrides and refuses bad ones with the annotation named', () => {
    const t = injected(
      injectTemplate(
        pod({
          annotations: {
            'mtls-sidecar.io/image': 'reg.example.com/mtls-sidecar:9',
            'mtls-sidecar.io/port': '9443',
            'mtls-sidecar.io/admin-port': '15021',
            'mtls-sidecar.io/cert-secret': '{serviceAccount}-mtls',
            'mtls-sidecar.io/memory-limit': '1Gi',
          },
          spec: { serviceAccountName: 'orders' },
        }),
        opts(),
      ),
    );
    const c = sidecarOf(t);
    expect(c['image']).toBe('reg.example.com/mtls-sidecar:9');
    expect((c['ports'] as Obj[]).map((p) => p['containerPort'])).toEqual([9443, 15021]);
    expect((c['resources'] as Obj)['limits']).toEqual({ memory: '1Gi' });
    const volumes = (t['spec'] as Obj)['volumes'] as Obj[];
    expect(volumes[0]).toEqual({ name: 'mtls-sidecar-certs', secret: { secretName: 'orders-mtls' } });

    const bad: [Obj, RegExp][] = [
      [{ 'mtls-sidecar.io/port': 'abc' }, /mtls-sidecar.io\/port: "abc" is not a port/],
      [{ 'mtls-sidecar.io/admin-port': '70000' }, /admin-port: "70000" is not a port/],
      [{ 'mtls-sidecar.io/port': '9901' }, /must differ/],
      [{ 'mtls-sidecar.io/image': 'two words' }, /is not an image reference/],
      [{ 'mtls-sidecar.io/cert-source': 'vault' }, /not one of secret, csi/],
      [{ 'mtls-sidecar.io/cpu-limit': 'lots' }, /not a resource quantity/],
      [{ 'mtls-sidecar.io/config': 'Upper_Case' }, /not a valid object name/],
      [{ 'mtls-sidecar.io/rewrite-probes': 'no' }, /not "true" or "false"/],
      [{ 'mtls-sidecar.io/image': 42 }, /must be a string/],
    ];
    for (const [annotations, message] of bad) {
      const r = injectTemplate(pod({ annotations }), opts());
      expect(r.kind, JSON.stringify(annotations)).toBe('invalid');
      expect(r.kind === 'invalid' && r.message).toMatch(message);
    }
  });

  it('refuses a pod whose containers already use the sidecar ports', () => {
    const p = pod();
    (((p['spec'] as Obj)['containers'] as Obj[])[0] as Obj)['ports'] = [{ containerPort: 8443 }];
    const r = injectTemplate(p, opts());
    expect(r.kind === 'invalid' && r.message).toMatch(/already uses port 8443.*mtls-sidecar.io\/port/);
  });

  it('refuses shapes it cannot inject into, with the field named', () => {
    const cases: [unknown, RegExp][] = [
      ['x', /must be a mapping/],
      [{ spec: {} }, /spec.containers must be a non-empty list/],
      [{ spec: { containers: [{ image: 'x' }] } }, /spec.containers\[0\].name/],
      [{ spec: { containers: [{ name: 'a' }], volumes: {} } }, /spec.volumes must be a list/],
      [{ metadata: { labels: 'x' }, spec: { containers: [{ name: 'a' }] } }, /metadata.labels must be a mapping/],
      [{ spec: { containers: [{ name: 'a', ports: 8080 }] } }, /ports must be a list/],
    ];
    for (const [t, message] of cases) {
      const r = injectTemplate(t, opts(DEFAULT_SETTINGS, 'all'));
      expect(r.kind === 'invalid' && r.message, JSON.stringify(t)).toMatch(message);
    }
  });

  it('refuses probe headers the sidecar could not send, rather than a sidecar that will not start', () => {
    const p = pod();
    (((p['spec'] as Obj)['containers'] as Obj[])[0] as Obj)['livenessProbe'] = { httpGet: { path: '/', port: 8080, httpHeaders: [{ name: 'Bad Header', value: 'x' }] } };
    const r = injectTemplate(p, opts());
    expect(r.kind === 'invalid' && r.message).toMatch(/cannot record the app's probes/);
  });

  it('uses cert-manager csi-driver when asked, and leaves UIDs to the runtime when runAsUser is null', () => {
    const s: InjectSettings = { ...DEFAULT_SETTINGS, certSource: 'csi', runAsUser: null };
    const t = injected(injectTemplate(pod(), opts(s)));
    const certs = ((t['spec'] as Obj)['volumes'] as Obj[])[0] as Obj;
    expect(certs['csi']).toMatchObject({ driver: 'csi.cert-manager.io', readOnly: true });
    const attrs = (certs['csi'] as Obj)['volumeAttributes'] as Obj;
    expect(attrs['csi.cert-manager.io/uri-sans']).toBe('spiffe://cluster.local/ns/${POD_NAMESPACE}/sa/${SERVICE_ACCOUNT_NAME}');
    expect(attrs['csi.cert-manager.io/fs-group']).toBeUndefined();
    const sc = sidecarOf(t)['securityContext'] as Obj;
    expect(sc['runAsUser']).toBeUndefined();
    expect(sc['runAsNonRoot']).toBe(true);
    validateK8s({ apiVersion: 'v1', kind: 'Pod', ...t });
  });
});

describe('settings', () => {
  it('the config defaults are DEFAULT_SETTINGS', () => {
    expect(settingsFromConfig(injectSettingsSchema.parse({}))).toEqual(DEFAULT_SETTINGS);
  });

  it('the injected version is the package version', () => {
    const pkg = JSON.parse(readFileSync(path.resolve(import.meta.dirname, '../../../package.json'), 'utf8')) as { version: string };
    expect(SIDECAR_VERSION).toBe(pkg.version);
  });

  it('refuses what the annotations refuse', () => {
    expect(injectSettingsSchema.safeParse({ port: 9901 }).success).toBe(false);
    expect(injectSettingsSchema.safeParse({ resources: { limits: { memory: 'lots' } } }).success).toBe(false);
    expect(injectSettingsSchema.safeParse({ certSecret: '{serviceAccount}-tls' }).success).toBe(true);
    expect(injectSettingsSchema.safeParse({ bogus: 1 }).success).toBe(false);
  });
});
