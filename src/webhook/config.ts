/**
 * The webhook's own config file (docs/kubernetes.md): where it listens, its serving
 * certificate, and the injection defaults it shares with `inject --config`. Validated like the
 * sidecar's config: strict (unknown keys are errors), every problem reported as
 * `FILE:LINE:COL PATH: MESSAGE`, relative paths resolved against the file's folder.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { isMap, isNode, isPair, isScalar, LineCounter, parseDocument } from 'yaml';
import type { Document } from 'yaml';
import { z } from 'zod';
import { formatIssue, formatPath } from '../config/load.js';
import type { ConfigIssue } from '../config/load.js';
import { parseDuration, parseSize } from '../config/units.js';
import { injectSettingsSchema, settingsFromConfig } from '../inject/settings.js';
import type { InjectSettings } from '../inject/settings.js';

const durationFrom = (min: number) =>
  z.string().transform((text, ctx) => {
    const ms = parseDuration(text);
    if (ms === null || ms < min) {
      ctx.addIssue({ code: 'custom', message: `"${text}" is not a duration (use e.g. 250ms, 30s, 5m)${min > 0 ? ' above zero' : ''}` });
      return z.NEVER;
    }
    return ms;
  });
const duration = durationFrom(1);

const size = z.union([z.number(), z.string()]).transform((value, ctx) => {
  const bytes = parseSize(value);
  if (bytes === null || bytes === 0) {
    ctx.addIssue({ code: 'custom', message: `"${String(value)}" is not a size (use bytes or e.g. 64KiB, 1MiB)` });
    return z.NEVER;
  }
  return bytes;
});

const port = z.number().int().min(0).max(65535);
const file = z.string().min(1, 'a file path is required');

export const webhookConfigSchema = z
  .strictObject({
    version: z.literal(1, { error: 'version must be 1' }),
    listen: z.strictObject({ address: z.string().min(1).default('0.0.0.0'), port: port.default(8443) }).prefault({}),
    tls: z.strictObject({
      cert: file,
      key: file,
      /** Besides watching the files' folder, re-read them this often (a safety net for missed events). */
      reloadInterval: duration.default(60_000),
    }),
    /** Plain HTTP for the kubelet and Prometheus: /healthz and /metrics. */
    admin: z.strictObject({ address: z.string().min(1).default('0.0.0.0'), port: port.default(9902) }).prefault({}),
    limits: z
      .strictObject({
        maxRequestSize: size.default(4 * 1024 * 1024),
        requestTimeout: duration.default(10_000),
      })
      .prefault({}),
    /** On SIGTERM, keep answering this long while the Service stops routing here, then close. */
    shutdown: z.strictObject({ drainDelay: durationFrom(0).default(3_000) }).prefault({}),
    inject: injectSettingsSchema.prefault({}),
  })
  .superRefine((c, ctx) => {
    if (c.listen.port !== 0 && c.listen.port === c.admin.port && c.listen.address === c.admin.address) {
      ctx.addIssue({ code: 'custom', path: ['admin', 'port'], message: 'the admin port must differ from listen.port' });
    }
  });

export interface WebhookConfig {
  readonly listen: { readonly address: string; readonly port: number };
  readonly tls: { readonly cert: string; readonly key: string; readonly reloadIntervalMs: number };
  readonly admin: { readonly address: string; readonly port: number };
  readonly limits: { readonly maxRequestSize: number; readonly requestTimeoutMs: number };
  readonly shutdown: { readonly drainDelayMs: number };
  readonly inject: InjectSettings;
}

export type WebhookConfigResult = { readonly ok: true; readonly config: WebhookConfig } | { readonly ok: false; readonly lines: readonly string[] };

export async function loadWebhookConfig(file: string): Promise<WebhookConfigResult> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    return { ok: false, lines: [`${file}: cannot read config file: ${(err as NodeJS.ErrnoException).code ?? 'EIO'}`] };
  }
  const parsed = parseWebhookConfigText(text, path.dirname(path.resolve(file)));
  if (!parsed.ok) return { ok: false, lines: parsed.issues.map((i) => formatIssue(file, i)) };
  return parsed;
}

export function parseWebhookConfigText(
  text: string,
  baseDir: string,
): { readonly ok: true; readonly config: WebhookConfig } | { readonly ok: false; readonly issues: readonly ConfigIssue[] } {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, uniqueKeys: true, prettyErrors: false });
  if (doc.errors.length > 0) {
    return {
      ok: false,
      issues: doc.errors.map((e) => ({ code: 'yaml' as const, path: '', ...lc.linePos(e.pos[0]), message: e.message.split('\n')[0] ?? e.message })),
    };
  }
  const result = webhookConfigSchema.safeParse(doc.toJS({ maxAliasCount: 100 }) ?? {});
  if (!result.success) return { ok: false, issues: result.error.issues.flatMap((issue) => toIssues(issue, doc, lc)) };
  const c = result.data;
  return {
    ok: true,
    config: {
      listen: c.listen,
      tls: { cert: path.resolve(baseDir, c.tls.cert), key: path.resolve(baseDir, c.tls.key), reloadIntervalMs: c.tls.reloadInterval },
      admin: c.admin,
      limits: { maxRequestSize: c.limits.maxRequestSize, requestTimeoutMs: c.limits.requestTimeout },
      shutdown: { drainDelayMs: c.shutdown.drainDelay },
      inject: settingsFromConfig(c.inject),
    },
  };
}

function toIssues(issue: z.core.$ZodIssue, doc: Document, lc: LineCounter): ConfigIssue[] {
  if (issue.code === 'unrecognized_keys') {
    return issue.keys.map((key) => ({ code: 'schema' as const, path: formatPath([...issue.path, key]), ...locateKey(doc, lc, issue.path, key), message: `unknown key "${key}"` }));
  }
  const exists = issue.path.length === 0 || doc.hasIn(issue.path as unknown[]);
  const message = issue.code === 'invalid_type' ? (exists ? `expected ${issue.expected}` : `is required (${issue.expected})`) : issue.message;
  return [{ code: 'schema', path: formatPath(issue.path), ...locate(doc, lc, issue.path), message }];
}

/** The nearest existing node on the path: a missing key points at the map that lacks it. */
function locate(doc: Document, lc: LineCounter, p: readonly PropertyKey[]): { line: number; col: number } {
  for (let n = p.length; n >= 0; n--) {
    const node = doc.getIn(p.slice(0, n) as unknown[], true);
    if (isNode(node) && node.range) return lc.linePos(node.range[0]);
  }
  return { line: 1, col: 1 };
}

function locateKey(doc: Document, lc: LineCounter, p: readonly PropertyKey[], key: string): { line: number; col: number } {
  const map = p.length === 0 ? doc.contents : doc.getIn(p as unknown[], true);
  if (isMap(map)) {
    for (const pair of map.items) {
      if (isPair(pair) && isScalar(pair.key) && String(pair.key.value) === key && pair.key.range) return lc.linePos(pair.key.range[0]);
    }
  }
  return locate(doc, lc, p);
}
