/**
 * AdmissionReview v1 in, AdmissionReview v1 out: the webhook's whole decision, as a pure
 * function of the request body (the HTTP server only moves bytes). The webhook configuration's
 * selectors decide which pods are sent; this injects every pod it is sent, unless the pod opts
 * out (`mtls-sidecar.io/inject: "false"`), is already injected, or uses the host network.
 * Warnings (the injector's, and an app port a Service could reach around the sidecar) go in
 * `response.warnings`, which kubectl shows to whoever created the pod.
 */
import { z } from 'zod';
import { bypassWarnings, NO_NEIGHBOURS } from '../inject/bypass.js';
import { injectTemplate } from '../inject/inject.js';
import { jsonPatch } from '../inject/json-patch.js';
import type { PatchOp } from '../inject/json-patch.js';
import { isObj, str } from '../inject/k8s.js';
import type { InjectSettings } from '../inject/settings.js';

export type ReviewResult = 'injected' | 'skipped' | 'ignored' | 'refused' | 'bad_request';

export interface ReviewOutcome {
  /** HTTP status of the reply: 200 whenever an AdmissionReview could be answered. */
  readonly status: number;
  readonly body: unknown;
  readonly result: ReviewResult;
  /** Why (skip reason, refusal or bad-request message), for the log. */
  readonly detail: string;
  readonly uid?: string;
  readonly patch?: readonly PatchOp[];
}

const API_VERSION = 'admission.k8s.io/v1';

const reviewSchema = z.object({
  apiVersion: z.literal(API_VERSION, { error: `apiVersion must be ${API_VERSION}` }),
  kind: z.literal('AdmissionReview', { error: 'kind must be AdmissionReview' }),
  request: z.object(
    {
      uid: z.string({ error: 'request.uid must be a string' }).min(1, 'request.uid must not be empty').max(256),
      kind: z.object({ group: z.string().optional(), version: z.string().optional(), kind: z.string() }, { error: 'request.kind must be a GroupVersionKind' }),
      resource: z.object({ group: z.string().optional(), version: z.string().optional(), resource: z.string() }, { error: 'request.resource must be a GroupVersionResource' }),
      subResource: z.string().optional(),
      namespace: z.string().optional(),
      name: z.string().optional(),
      operation: z.string({ error: 'request.operation must be a string' }),
      object: z.unknown().optional(),
    },
    { error: 'request must be an object' },
  ),
});

export function review(body: string, settings: InjectSettings): ReviewOutcome {
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch {
    return badRequest('the body is not JSON');
  }
  const parsed = reviewSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue?.path.map(String).join('.') ?? '';
    const message = issue?.message ?? 'invalid';
    return badRequest(`not an AdmissionReview v1: ${where === '' || message.startsWith(where) ? message : `${where}: ${message}`}`);
  }
  const req = parsed.data.request;
  const uid = req.uid;
  const isPod = req.kind.kind === 'Pod' && (req.kind.group ?? '') === '' && req.resource.resource === 'pods' && (req.subResource ?? '') === '';
  if (!isPod) return answer(uid, 'ignored', `not a pod: ${req.resource.resource}${req.subResource ? `/${req.subResource}` : ''}`, { allowed: true });
  if (req.operation !== 'CREATE') return answer(uid, 'ignored', `operation ${req.operation}`, { allowed: true });

  const pod = req.object;
  if (!isObj(pod)) return refuse(uid, 'request.object is not a Pod');
  const outcome = injectTemplate(pod, { settings, policy: 'all' });
  const name = podName(pod, req.namespace);
  switch (outcome.kind) {
    case 'invalid':
      return refuse(uid, `cannot inject the mtls-sidecar into pod ${name}: ${outcome.message}`);
    case 'skipped':
      return answer(uid, 'skipped', outcome.reason, { allowed: true, ...warnings(outcome.warnings) });
    case 'injected': {
      const patch = jsonPatch(pod, outcome.template);
      return {
        ...answer(uid, 'injected', name, {
          allowed: true,
          patchType: 'JSONPatch',
          patch: Buffer.from(JSON.stringify(patch)).toString('base64'),
          // The pod alone: its declared app ports are judged; Services and policies are not in view.
          ...warnings([...outcome.warnings, ...bypassWarnings(outcome.template, req.namespace, NO_NEIGHBOURS)]),
        }),
        patch,
      };
    }
    default: {
      const never: never = outcome;
      return never;
    }
  }
}

function answer(uid: string, result: ReviewResult, detail: string, response: Record<string, unknown>): ReviewOutcome {
  return { status: 200, result, detail, uid, body: { apiVersion: API_VERSION, kind: 'AdmissionReview', response: { uid, ...response } } };
}

function refuse(uid: string, message: string): ReviewOutcome {
  return answer(uid, 'refused', message, { allowed: false, status: { code: 400, reason: 'BadRequest', message } });
}

/** A request we cannot answer as an AdmissionReview (no uid to echo): a plain 400. */
export function badRequest(message: string, status = 400): ReviewOutcome {
  return { status, result: 'bad_request', detail: message, body: { error: 'bad_request', message } };
}

function warnings(list: readonly string[]): { warnings?: string[] } {
  return list.length === 0 ? {} : { warnings: list.map((w) => `mtls-sidecar: ${w}`) };
}

function podName(pod: Record<string, unknown>, namespace: string | undefined): string {
  const meta = isObj(pod['metadata']) ? pod['metadata'] : {};
  const name = str(meta['name']) ?? (str(meta['generateName']) !== undefined ? `${str(meta['generateName'])}*` : '?');
  const ns = namespace ?? str(meta['namespace']);
  return ns !== undefined && ns !== '' ? `${ns}/${name}` : name;
}
