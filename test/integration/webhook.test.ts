/**
 * The admission webhook over real HTTPS: AdmissionReview in, JSONPatch out, applied with a
 * JSON-Patch library and compared with what `inject` makes of the same pod; malformed
 * requests get a clear error and never take the server down; /healthz, /metrics; and the
 * serving certificate is reloaded when its files change.
 */
import { copyFile, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import fastJsonPatch from 'fast-json-patch';
import type { Operation } from 'fast-json-patch';
import { Agent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { parseAllDocuments, parseDocument } from 'yaml';
import { silentLog } from '../../src/log.js';
import { parseWebhookConfigText } from '../../src/webhook/config.js';
import { WebhookServer } from '../../src/webhook/server.js';
import { parseProm, value } from '../helpers/prom.js';
import { validateK8s } from '../unit/inject/k8s-schema.js';
import { runInject } from '../unit/inject/run.js';

const pki = inject('pki');
type Obj = Record<string, unknown>;

let dir = '';
let server: WebhookServer;
let agent: Agent;
let origin = '';
let adminOrigin = '';

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'webhook-'));
  await copyFile(pki.server.cert, path.join(dir, 'tls.crt'));
  await copyFile(pki.server.key, path.join(dir, 'tls.key'));
  const parsed = parseWebhookConfigText(
    `version: 1
listen: {address: 127.0.0.1, port: 0}
admin: {address: 127.0.0.1, port: 0}
tls: {cert: tls.crt, key: tls.key, reloadInterval: 500ms}
limits: {maxRequestSize: 256KiB}
`,
    dir,
  );
  if (!parsed.ok) throw new Error(JSON.stringify(parsed.issues));
  server = await WebhookServer.start(parsed.config, { log: silentLog() });
  origin = `https://localhost:${server.port}`;
  adminOrigin = `http://127.0.0.1:${server.adminPort}`;
  agent = new Agent({ connect: { ca: await readFile(pki.rootCa.cert), servername: 'localhost' } });
});

afterAll(async () => {
  /* eslint-disable @typescript-eslint/no-unnecessary-condition -- undefined when beforeAll failed */
  await agent?.close();
  await server?.close();
  /* eslint-enable @typescript-eslint/no-unnecessary-condition */
  if (dir !== '') await rm(dir, { recursive: true, force: true });
});

let uidCounter = 0;
function admissionReview(object: unknown, over: Obj = {}): Obj {
  return {
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid: `uid-${++uidCounter}-7f3e`,
      kind: { group: '', version: 'v1', kind: 'Pod' },
      resource: { group: '', version: 'v1', resource: 'pods' },
      requestKind: { group: '', version: 'v1', kind: 'Pod' },
      namespace: 'shop',
      operation: 'CREATE',
      userInfo: { username: 'system:serviceaccount:kube-system:replicaset-controller' },
      object,
      dryRun: false,
      options: { apiVersion: 'meta.k8s.io/v1', kind: 'CreateOptions' },
      ...over,
    },
  };
}

async function post(body: string, headers: Record<string, string> = { 'content-type': 'application/json' }, p = '/mutate', method: 'POST' | 'GET' = 'POST'): Promise<{ status: number; json: Obj }> {
  const res = await request(`${origin}${p}`, { dispatcher: agent, method, headers, ...(method === 'POST' ? { body } : {}) });
  const text = await res.body.text();
  return { status: res.statusCode, json: JSON.parse(text) as Obj };
}

async function admit(object: unknown, over: Obj = {}): Promise<{ review: Obj; response: Obj; patch: Operation[] | null }> {
  const review = admissionReview(object, over);
  const res = await post(JSON.stringify(review));
  expect(res.status).toBe(200);
  expect(res.json['apiVersion']).toBe('admission.k8s.io/v1');
  expect(res.json['kind']).toBe('AdmissionReview');
  const response = res.json['response'] as Obj;
  expect(response['uid']).toBe((review['request'] as Obj)['uid']);
  const patch = typeof response['patch'] === 'string' ? (JSON.parse(Buffer.from(response['patch'], 'base64').toString('utf8')) as Operation[]) : null;
  return { review, response, patch };
}

/** What `mtls-sidecar inject --all` makes of the same pod. */
async function cliInjected(pod: Obj): Promise<unknown> {
  const ran = await runInject(['--all'], JSON.stringify(pod));
  expect(ran.code, ran.stderr).toBe(0);
  return parseDocument(ran.stdout, { version: '1.1' }).toJS();
}

/** Every pod template of the inject golden corpus, as the Pod the API server would send. */
async function corpusPods(): Promise<{ name: string; pod: Obj }[]> {
  const root = path.resolve(import.meta.dirname, '../fixtures/inject');
  const out: { name: string; pod: Obj }[] = [];
  for (const c of (await readdir(root, { withFileTypes: true })).filter((e) => e.isDirectory())) {
    const docs = parseAllDocuments(await readFile(path.join(root, c.name, 'input.yaml'), 'utf8'), { version: '1.1' });
    if ('empty' in docs) continue;
    for (const d of docs) {
      const o = d.toJS() as Obj | null;
      const kind = o?.['kind'];
      if (o === null || String(o['apiVersion']).startsWith('example.com')) continue;
      const spec = o['spec'] as Obj | undefined;
      const template = kind === 'Pod' ? o : kind === 'CronJob' ? (((spec?.['jobTemplate'] as Obj)['spec'] as Obj)['template'] as Obj) : (spec?.['template'] as Obj | undefined);
      if (template === undefined || typeof template !== 'object' || !('spec' in template)) continue;
      const meta = (template['metadata'] as Obj | undefined) ?? {};
      out.push({ name: `${c.name} ${String(kind)}`, pod: { apiVersion: 'v1', kind: 'Pod', metadata: { generateName: 'p-', ...meta }, spec: template['spec'] } });
    }
  }
  return out;
}

const simplePod = (labels: Obj = {}, annotations?: Obj): Obj => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { generateName: 'orders-7d9f-', namespace: 'shop', labels: { app: 'orders', 'mtls-sidecar.io/inject': 'true', ...labels }, ...(annotations ? { annotations } : {}) },
  spec: {
    serviceAccountName: 'orders',
    containers: [{ name: 'orders', image: 'orders:1', ports: [{ name: 'http', containerPort: 8080 }], livenessProbe: { httpGet: { path: '/livez', port: 'http' } } }],
  },
});

describe('webhook: injection', () => {
  it('answers with a base64 JSONPatch that, applied, gives exactly what inject gives', async () => {
    const pod = simplePod();
    const { response, patch } = await admit(pod);
    expect(response['allowed']).toBe(true);
    expect(response['patchType']).toBe('JSONPatch');
    expect(patch).not.toBeNull();
    // Keys holding "/" are escaped as ~1.
    expect(patch?.map((o) => o.path)).toContain('/metadata/annotations');
    const flat = JSON.stringify(patch);
    expect(flat).not.toMatch(/"path":"[^"]*mtls-sidecar\.io\/status/);
    expect(fastJsonPatch.validate(patch as Operation[], pod)).toBeUndefined();
    const patched = fastJsonPatch.applyPatch(structuredClone(pod), patch as Operation[], true, false).newDocument;
    expect(patched).toEqual(await cliInjected(pod));
    validateK8s(patched);
    const spec = patched['spec'] as Obj;
    expect(((spec['initContainers'] as Obj[])[0] as Obj)['name']).toBe('mtls-sidecar');
  });

  it('warns in response.warnings about an app port a Service could reach around the sidecar', async () => {
    const { response } = await admit(simplePod());
    expect(response['warnings']).toEqual([
      'mtls-sidecar: container orders declares port 8080 (http): a Service or pod that targets it bypasses the sidecar; the app should listen on 127.0.0.1 only',
    ]);
    // No declared app port: nothing to say (policies and Services are not in a pod's review).
    const quiet = simplePod();
    delete (((quiet['spec'] as Obj)['containers'] as Obj[])[0] as Obj)['ports'];
    (((quiet['spec'] as Obj)['containers'] as Obj[])[0] as Obj)['livenessProbe'] = { httpGet: { path: '/livez', port: 8080 } };
    const answered = await admit(quiet);
    expect(answered.response['patchType']).toBe('JSONPatch');
    expect(answered.response['warnings']).toBeUndefined();
  });

  it('escapes / in keys as ~1 when the pod already has annotations', async () => {
    const { patch } = await admit(simplePod({}, { 'team.example.com/owner': 'shop' }));
    expect(patch?.map((o) => o.path)).toEqual(expect.arrayContaining(['/metadata/annotations/mtls-sidecar.io~1status', '/metadata/annotations/prometheus.io~1port']));
  });

  it('matches inject for every pod template of the golden corpus', async () => {
    const pods = await corpusPods();
    expect(pods.length).toBeGreaterThanOrEqual(20);
    for (const { name, pod } of pods) {
      const { response, patch } = await admit(pod);
      const expected = await cliInjected(pod);
      if (response['allowed'] !== true) {
        // inject refuses the same pods, for the same reason
        expect(await runInject(['--all'], JSON.stringify(pod)), name).toMatchObject({ code: 2 });
        continue;
      }
      const result = patch === null ? pod : fastJsonPatch.applyPatch(structuredClone(pod), patch, true, false).newDocument;
      expect(result, name).toEqual(expected);
      validateK8s(result);
    }
  });

  it('skips pods that opt out or are already injected, and operations and resources it does not handle', async () => {
    const optedOut = await admit(simplePod({ 'mtls-sidecar.io/inject': 'false' }));
    expect(optedOut.response).toEqual({ uid: expect.any(String), allowed: true });
    const once = await admit(simplePod());
    const injected = fastJsonPatch.applyPatch(simplePod(), once.patch as Operation[], true, false).newDocument;
    const again = await admit(injected);
    expect(again.response).toEqual({ uid: expect.any(String), allowed: true });
    // Pods of an enabled namespace carry no label at all: injected (the selectors decided).
    const unlabelled = simplePod();
    delete ((unlabelled['metadata'] as Obj)['labels'] as Obj)['mtls-sidecar.io/inject'];
    expect((await admit(unlabelled)).response['patchType']).toBe('JSONPatch');
    expect((await admit(simplePod(), { operation: 'UPDATE' })).response).toEqual({ uid: expect.any(String), allowed: true });
    const svc = await admit({ apiVersion: 'v1', kind: 'Service' }, { kind: { group: '', version: 'v1', kind: 'Service' }, resource: { group: '', version: 'v1', resource: 'services' } });
    expect(svc.response).toEqual({ uid: expect.any(String), allowed: true });
    const sub = await admit(simplePod(), { subResource: 'status' });
    expect(sub.response).toEqual({ uid: expect.any(String), allowed: true });
    const hostNet = simplePod();
    (hostNet['spec'] as Obj)['hostNetwork'] = true;
    const h = await admit(hostNet);
    expect(h.response['allowed']).toBe(true);
    expect(h.response['patch']).toBeUndefined();
    expect(h.response['warnings']).toEqual(['mtls-sidecar: hostNetwork pods are not injected: the sidecar would bind its ports on the node']);
  });

  it('refuses a pod it cannot inject with a 400 status that says why', async () => {
    const { response } = await admit(simplePod({}, { 'mtls-sidecar.io/port': 'https' }));
    expect(response['allowed']).toBe(false);
    expect(response['status']).toEqual({
      code: 400,
      reason: 'BadRequest',
      message: 'cannot inject the mtls-sidecar into pod shop/orders-7d9f-*: annotation mtls-sidecar.io/port: "https" is not a port (1-65535)',
    });
    const broken = await admit({ apiVersion: 'v1', kind: 'Pod', metadata: {}, spec: { containers: 'nope' } });
    expect(broken.response['allowed']).toBe(false);
    expect((broken.response['status'] as Obj)['message']).toMatch(/spec.containers must be a non-empty list/);
    const notObject = await admit('a string');
    expect(notObject.response['allowed']).toBe(false);
  });
});

describe('webhook: malformed requests', () => {
  it.each([
    ['not JSON', '{"apiVersion":', /the body is not JSON/],
    ['JSON but not a review', '[1,2]', /not an AdmissionReview v1/],
    ['an old API version', JSON.stringify({ ...admissionReview({}), apiVersion: 'admission.k8s.io/v1beta1' }), /apiVersion must be admission.k8s.io\/v1/],
    ['no request', JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview' }), /request must be an object/],
    ['no uid', JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: { ...(admissionReview({})['request'] as Obj), uid: undefined } }), /request.uid must be a string/],
    ['an empty uid', JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: { ...(admissionReview({})['request'] as Obj), uid: '' } }), /request.uid must not be empty/],
    ['no kind', JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: { ...(admissionReview({})['request'] as Obj), kind: 'Pod' } }), /request.kind must be a GroupVersionKind/],
  ])('answers %s with 400 and a clear message', async (_name, body, message) => {
    const res = await post(body);
    expect(res.status).toBe(400);
    expect(res.json['error']).toBe('bad_request');
    expect(String(res.json['message'])).toMatch(message);
  });

  it('refuses wrong methods, content types, sizes and paths', async () => {
    expect((await post('', {}, '/mutate', 'GET')).status).toBe(405);
    const typed = await post(JSON.stringify(admissionReview(simplePod())), { 'content-type': 'text/plain' });
    expect(typed.status).toBe(415);
    expect(typed.json['message']).toBe('content-type must be application/json');
    const big = await post(JSON.stringify(admissionReview({ ...simplePod(), padding: 'x'.repeat(300 * 1024) })));
    expect(big.status).toBe(413);
    expect((await post('{}', { 'content-type': 'application/json' }, '/elsewhere')).status).toBe(404);
  });

  it('survives a request cut off mid-body and garbage on the socket, and stays healthy', async () => {
    await new Promise<void>((resolve) => {
      const s = tls.connect({ host: '127.0.0.1', port: server.port, servername: 'localhost', rejectUnauthorized: false }, () => {
        s.write('POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"apiVersion":');
        setTimeout(() => {
          s.destroy();
          resolve();
        }, 50);
      });
      s.on('error', () => resolve());
    });
    await new Promise<void>((resolve) => {
      const s = tls.connect({ host: '127.0.0.1', port: server.port, servername: 'localhost', rejectUnauthorized: false }, () => s.write('\x00\x01GARBAGE\r\n\r\n'));
      s.on('close', () => resolve());
      s.on('error', () => resolve());
    });
    const health = await request(`${origin}/healthz`, { dispatcher: agent });
    expect(health.statusCode).toBe(200);
    expect(await health.body.json()).toEqual({ status: 'ok' });
  });
});

describe('webhook: health and metrics', () => {
  it('serves /healthz and /metrics on the admin port and counts admissions by result', async () => {
    const scrape = async () => parseProm(await (await request(`${adminOrigin}/metrics`)).body.text());
    const before = await scrape();
    await admit(simplePod());
    await admit(simplePod({ 'mtls-sidecar.io/inject': 'false' }));
    await post('nope');
    const after = await scrape();
    const delta = (result: string) => value(after, 'mtls_sidecar_webhook_admissions_total', { result }) - value(before, 'mtls_sidecar_webhook_admissions_total', { result });
    expect(delta('injected')).toBe(1);
    expect(delta('skipped')).toBe(1);
    expect(delta('bad_request')).toBe(1);
    expect(value(after, 'mtls_sidecar_webhook_cert_expiry_timestamp_seconds')).toBeGreaterThan(Date.now() / 1000);
    expect(after.some((s) => s.name === 'process_cpu_seconds_total')).toBe(true);
    const health = await request(`${adminOrigin}/healthz`);
    expect(health.statusCode).toBe(200);
    await health.body.dump();
    const notHere = await request(`${adminOrigin}/mutate`, { method: 'POST', body: '{}' });
    expect(notHere.statusCode).toBe(404); // admission is HTTPS only
    await notHere.body.dump();
  });
});

describe('webhook: serving certificate rotation', () => {
  const peer = (): Promise<string> =>
    new Promise((resolve, reject) => {
      const s = tls.connect({ host: '127.0.0.1', port: server.port, servername: 'localhost', rejectUnauthorized: false }, () => {
        const fp = s.getPeerX509Certificate()?.fingerprint256 ?? '';
        s.end();
        resolve(fp);
      });
      s.on('error', reject);
    });
  const fingerprint = async (file: string): Promise<string> => new (await import('node:crypto')).X509Certificate(await readFile(file)).fingerprint256;

  it('serves a new pair as soon as its files change, and keeps the old one when the new one is bad', async () => {
    expect(await peer()).toBe(await fingerprint(pki.server.cert));
    // Rotation: cert-manager writes a new pair (any valid pair will do for the test).
    await writeFile(path.join(dir, 'tls.key'), await readFile(pki.clients.orders.key));
    await writeFile(path.join(dir, 'tls.crt'), await readFile(pki.clients.orders.cert));
    const want = await fingerprint(pki.clients.orders.cert);
    const deadline = Date.now() + 5000;
    while ((await peer()) !== want) {
      if (Date.now() > deadline) throw new Error('the new certificate was not served within 5 s');
      await new Promise((r) => setTimeout(r, 50));
    }
    // A key that does not match: refused, counted, and the current pair keeps serving.
    const failures = async () => value(parseProm(await server.metrics.registry.metrics()), 'mtls_sidecar_webhook_cert_reloads_total', { result: 'failure' });
    const failedBefore = await failures();
    await writeFile(path.join(dir, 'tls.key'), await readFile(pki.clients.billing.key));
    expect(await server.reloadCertificate()).toBe(false);
    expect(await failures()).toBeGreaterThan(failedBefore);
    expect(await peer()).toBe(want);
    // Back to the original pair, so the rest of the suite still trusts it.
    await writeFile(path.join(dir, 'tls.key'), await readFile(pki.server.key));
    await writeFile(path.join(dir, 'tls.crt'), await readFile(pki.server.cert));
    await server.reloadCertificate();
    expect(await peer()).toBe(await fingerprint(pki.server.cert));
  });
});
