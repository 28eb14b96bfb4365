/**
 * docs/reference.md is the repo's own reference: it must name everything the code exposes, and
 * nothing the code does not. Each list here is read from the code itself (the zod schema, the
 * reason tuples, the metrics a fresh registry renders, the fields an audit line carries, the CLI
 * usage, the environment variables read), so adding one in the code without its line in the
 * reference fails, and so does a line left behind for something removed.
 */
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { Metrics } from '../../../src/admin/metrics.js';
import { AuditConn, createAudit, requestLine } from '../../../src/audit/audit.js';
import type { HandshakeRecord, RequestRecord } from '../../../src/audit/audit.js';
import { configSchema } from '../../../src/config/schema.js';
import { parseDuration, parseSize } from '../../../src/config/units.js';
import type { CertSummary } from '../../../src/config/snapshot.js';
import { APP_HEALTH_PREFIX } from '../../../src/inject/constants.js';
import { SECURITY_HEADERS } from '../../../src/http/security-headers.js';
import { HANDSHAKE_REASONS, REFUSALS, REQUEST_REASONS } from '../../../src/reasons.js';
import { WebhookMetrics } from '../../../src/webhook/metrics.js';
import { codeSpans, referenceMetricNames, referenceText, section, subsection, tableRows } from '../../helpers/reference.js';

const ROOT = path.resolve(import.meta.dirname, '../../..');
const DOC = referenceText();

function sorted(xs: Iterable<string>): string[] {
  return [...new Set(xs)].sort();
}

function srcFiles(dir: string = path.join(ROOT, 'src')): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? srcFiles(path.join(dir, e.name)) : e.name.endsWith('.ts') ? [path.join(dir, e.name)] : [],
  );
}

// ---- configuration ----

/**
 * Every key path of the schema: `a.b` for object keys, `a[].b` inside arrays, `a.<name>` for a
 * record's keys. Wrappers (optional, default, prefault, pipe) and unions are looked through.
 */
function schemaPaths(schema: z.ZodType, at: string, out: Set<string>): Set<string> {
  if (schema instanceof z.ZodObject) {
    for (const [key, value] of Object.entries<z.ZodType>(schema.shape)) {
      const p = at === '' ? key : `${at}.${key}`;
      out.add(p);
      schemaPaths(value, p, out);
    }
  } else if (schema instanceof z.ZodArray) {
    schemaPaths(schema.element as z.ZodType, `${at}[]`, out);
  } else if (schema instanceof z.ZodRecord) {
    const p = `${at}.<name>`;
    out.add(p);
    schemaPaths(schema.valueType as z.ZodType, p, out);
  } else if (schema instanceof z.ZodUnion) {
    for (const option of schema.options as readonly z.ZodType[]) schemaPaths(option, at, out);
  } else if (schema instanceof z.ZodPipe) {
    schemaPaths(schema.in as z.ZodType, at, out);
  } else if (schema instanceof z.ZodOptional || schema instanceof z.ZodDefault || schema instanceof z.ZodPrefault || schema instanceof z.ZodNullable) {
    schemaPaths(schema.unwrap() as z.ZodType, at, out);
  }
  return out;
}

/** The value at a schema path in a config object: `[]` takes the first element, `<name>` the first key. */
function valueAt(obj: unknown, p: string): unknown {
  let cur = obj;
  for (const seg of p.replaceAll('[]', '.[]').split('.')) {
    if (cur === null || typeof cur !== 'object') return undefined;
    if (seg === '[]') cur = Array.isArray(cur) ? cur[0] : undefined;
    else if (seg === '<name>') cur = Object.values(cur)[0];
    else cur = (cur as Record<string, unknown>)[seg];
  }
  return cur;
}

/** Does one of the cell's code spans spell `value` (durations and sizes in any unit)? */
function spellsDefault(cell: string, value: unknown): boolean {
  return codeSpans(cell).some((t) => {
    if (Array.isArray(value)) return t === `[${value.map(String).join(', ')}]`;
    if (typeof value === 'number') return Number(t) === value || parseDuration(t) === value || parseSize(t) === value;
    return t === String(value);
  });
}

const SERVER = { cert: 'server.crt', key: 'server.key' };
/** Two configs with only what is required, between them leaving every defaulted key unset once. */
const PROBES: readonly Record<string, unknown>[] = [
  { version: 1, tls: { ...SERVER, pins: [`sha256:${'AB'.repeat(32)}`] } },
  {
    version: 1,
    tls: { ...SERVER, clientCAs: ['ca.crt'] },
    identities: [{ name: 'orders', match: { uri: 'spiffe://cluster.local/ns/shop/sa/orders' } }],
    routes: [{ name: 'read', prefix: '/orders' }],
    rateLimit: { identities: { orders: { rps: 1, burst: 1 } }, redis: { url: 'redis://127.0.0.1:6379' } },
    jwt: { issuer: 'https://issuer.example', audience: 'api://orders', jwks: { url: 'https://issuer.example/jwks.json' } },
  },
];

describe('docs/reference.md §3: configuration', () => {
  const rows = tableRows(section(DOC, 3), ['key', 'default', 'meaning']);
  const documented = new Map<string, string>();
  for (const [keys = '', dflt = ''] of rows) for (const k of codeSpans(keys)) documented.set(k, dflt);
  const inSchema = schemaPaths(configSchema, '', new Set());

  it('the key table is there', () => {
    expect(rows.length).toBeGreaterThan(40);
  });

  it('every key of the schema is in the key table', () => {
    expect(sorted(inSchema).filter((k) => !documented.has(k))).toEqual([]);
  });

  it('every key in the key table is a key of the schema', () => {
    expect(sorted(documented.keys()).filter((k) => !inSchema.has(k))).toEqual([]);
  });

  it('every default the schema fills in is the one the table gives', () => {
    const wrong: string[] = [];
    let checked = 0;
    for (const probe of PROBES) {
      const parsed: unknown = configSchema.parse(probe);
      for (const key of inSchema) {
        if (valueAt(probe, key) !== undefined) continue;
        const value = valueAt(parsed, key);
        // Objects are sections; their keys carry the defaults.
        if (value === undefined || (typeof value === 'object' && value !== null && !Array.isArray(value))) continue;
        checked++;
        const cell = documented.get(key) ?? '';
        if (!spellsDefault(cell, value)) wrong.push(`${key}: the schema's default is ${JSON.stringify(value)}, the table says "${cell}"`);
      }
    }
    expect(wrong).toEqual([]);
    expect(checked).toBeGreaterThan(30);
  });
});

// ---- reasons and refusals ----

describe('docs/reference.md §4 and §5: reasons and refusals', () => {
  const reasonRows = tableRows(subsection(section(DOC, 5), 'Reasons'), ['reason', 'line', 'meaning']);

  it('the reasons table lists exactly the closed set of src/reasons.ts, each on its kind of line', () => {
    const doc = reasonRows.map(([r = '', line = '']) => `${codeSpans(r).join(',')} ${line}`);
    const code = [...REQUEST_REASONS.map((r) => `${r} request`), ...HANDSHAKE_REASONS.map((r) => `${r} handshake`)];
    expect(sorted(doc)).toEqual(sorted(code));
  });

  const refusalRows = tableRows(subsection(section(DOC, 4), 'Refusals'), ['status', 'error', 'audit reasons']);
  const reasons = new Set<string>(REQUEST_REASONS);

  it('every refusal of REFUSALS is in the refusals table with its status and error code, once', () => {
    const wrong: string[] = [];
    for (const [reason, { status, code }] of Object.entries(REFUSALS)) {
      const at = refusalRows.filter(([, , why = '']) => codeSpans(why).includes(reason));
      const row = at[0];
      if (at.length !== 1 || row === undefined) wrong.push(`${reason}: in ${at.length} rows`);
      else if (row[0] !== String(status) || !codeSpans(row[1] ?? '').includes(code)) wrong.push(`${reason}: ${row[0] ?? ''} ${row[1] ?? ''}, the code says ${status} ${code}`);
    }
    expect(wrong).toEqual([]);
  });

  it('every reason in the refusals table is a refusal of REFUSALS, and every row has one (but the certificate refusal)', () => {
    const wrong: string[] = [];
    for (const [status = '', error = '', why = ''] of refusalRows) {
      const named = codeSpans(why).filter((t) => reasons.has(t));
      if (codeSpans(error).includes('certificate_refused')) {
        if (status !== '400' || named.length > 0) wrong.push(`certificate_refused row: ${status} ${why}`);
        continue;
      }
      if (named.length === 0) wrong.push(`no reason in the ${status} ${error} row`);
      for (const r of named) if (!Object.hasOwn(REFUSALS, r)) wrong.push(`${r} is not a refusal`);
    }
    expect(wrong).toEqual([]);
  });
});

// ---- audit fields ----

describe('docs/reference.md §5: audit line fields', () => {
  const fields = (title: string): string[] =>
    tableRows(subsection(section(DOC, 5), title), ['field', 'meaning']).flatMap(([f = '']) => codeSpans(f));

  it('the request line table lists the fields of a real request line, in their order', () => {
    const conn = new AuditConn('orders', 'ab'.repeat(32), 'spiffe://cluster.local/ns/shop/sa/orders', 'CN=orders', '127.0.0.1', 'TLSv1.3');
    const rec: RequestRecord = {
      requestId: 'r-1',
      conn,
      method: 'GET',
      path: '/orders/1',
      route: 'read',
      decision: 'allow',
      reason: 'ok',
      status: 200,
      durationMs: 1.5,
      upstreamMs: 1,
      bytesIn: 0,
      bytesOut: 12,
      protocol: 'HTTP/1.1',
    };
    const line = JSON.parse(requestLine(rec)) as Record<string, unknown>;
    expect(fields('Request line')).toEqual(Object.keys(line));
  });

  it('the handshake line table lists the fields of a real handshake line', async () => {
    const lines: string[] = [];
    const audit = createAudit('stdout', { write: (s: string) => void lines.push(s) });
    // Required<>: a field added to HandshakeRecord fails the type-check here until it is given.
    const rec: Required<HandshakeRecord> = {
      reason: 'expired',
      remote: '127.0.0.1',
      requestId: 'r-2',
      certSha256: 'ab'.repeat(32),
      subject: 'CN=expired',
      detail: 'ERR_SSL_X',
    };
    audit.handshake(rec);
    expect(await audit.flush()).toBe(true);
    await audit.close();
    const keys = lines
      .join('')
      .split('\n')
      .filter((l) => l !== '')
      .flatMap((l) => Object.keys(JSON.parse(l) as Record<string, unknown>));
    expect(keys).toContain('msg');
    expect(sorted(fields('Handshake line'))).toEqual(sorted(keys));
  });
});

// ---- metrics ----

/** `# TYPE name type` and the label names of each series, from a rendered exposition. */
async function exposition(registry: Registry): Promise<Map<string, { type: string; labels: Set<string> }>> {
  const text = await registry.metrics();
  const out = new Map<string, { type: string; labels: Set<string> }>();
  for (const m of text.matchAll(/^# TYPE (mtls_sidecar_\w+) (\w+)$/gm)) out.set(m[1] ?? '', { type: m[2] ?? '', labels: new Set() });
  for (const m of text.matchAll(/^(mtls_sidecar_\w+?)(?:_bucket|_sum|_count)?\{([^}]*)\}/gm)) {
    const entry = out.get(m[1] ?? '');
    if (entry === undefined) continue;
    for (const l of (m[2] ?? '').matchAll(/(\w+)="/g)) if (l[1] !== 'le') entry.labels.add(l[1] ?? '');
  }
  return out;
}

/** Metrics with every kind of series created once, so each metric shows its labels. */
function exercisedMetrics(): Registry {
  const m = new Metrics(() => 0, new Registry());
  m.auditSink({ bufferedBytes: 0, writeErrors: 0, linesDropped: 0 });
  m.request('orders', 'read', 'GET', 200, 'allow', 0.001, 0.0005);
  m.handshake('rejected', 'expired');
  m.rateLimited('orders');
  m.rateLimitBackendError('allow');
  m.reload('success');
  m.jwksFetchFailure();
  m.internalError('h1');
  m.policyWouldDeny('orders', 'read', 'scope_missing');
  m.outboundRequest('billing', 'GET', 200, 0.002);
  m.outboundHandshake('billing', 'rejected', 'identity_mismatch');
  const cert: CertSummary = {
    role: 'server',
    file: 'server.crt',
    subject: 'CN=localhost',
    issuer: 'CN=ca',
    sans: [],
    sha256: 'AB',
    notBefore: '',
    notAfter: '',
    notAfterMs: 0,
  };
  m.certificates([cert]);
  m.crls([{ file: '/certs/crl.pem', nextUpdateMs: 0 }]);
  return m.registry;
}

function exercisedWebhookMetrics(): Registry {
  const m = new WebhookMetrics(new Registry());
  m.admission('injected', 0.001);
  m.certificate(0);
  m.reload('success');
  return m.registry;
}

describe('docs/reference.md §6: metrics', () => {
  const rows = tableRows(section(DOC, 6), ['metric', 'type', 'labels', 'meaning']);
  const documented = new Map(rows.map(([name = '', type = '', labels = '']) => [codeSpans(name).join(','), { type, labels: sorted(codeSpans(labels)) }]));

  it('every metric the sidecar and the webhook register is in the metrics tables with its type and labels, and nothing else is', async () => {
    const code = new Map([...(await exposition(exercisedMetrics())), ...(await exposition(exercisedWebhookMetrics()))]);
    expect(code.size).toBeGreaterThan(15);
    const shown = (m: Map<string, { type: string; labels: Iterable<string> }>): string[] =>
      sorted([...m].map(([name, { type, labels }]) => `${name} ${type} ${sorted(labels).join(',')}`));
    expect(shown(documented)).toEqual(shown(code));
  });

  it('every metric name written in src/ is in the metrics tables (one registered later than start-up too)', () => {
    const names = srcFiles().flatMap((f) => [...readFileSync(f, 'utf8').matchAll(/['"`](mtls_sidecar_[a-z0-9_]+)/g)].map((m) => m[1] ?? ''));
    expect(names.length).toBeGreaterThan(15);
    const inDoc = new Set(referenceMetricNames(DOC));
    expect(sorted(names).filter((n) => !inDoc.has(n))).toEqual([]);
  });
});

// ---- admin endpoints, commands, environment, headers ----

describe('docs/reference.md: admin endpoints, commands, environment variables, headers', () => {
  it('every path the admin server answers is in the endpoints table', () => {
    const server = readFileSync(path.join(ROOT, 'src/admin/server.ts'), 'utf8');
    const paths = [...server.matchAll(/case '(\/[^']*)'/g)].map((m) => m[1] ?? '');
    expect(paths.length).toBeGreaterThan(3);
    const rows = tableRows(section(DOC, 6), ['endpoint', 'answers']).flatMap(([e = '']) => codeSpans(e));
    expect(sorted(rows)).toEqual(sorted([...paths, `${APP_HEALTH_PREFIX}<container>/<probe>`]));
  });

  it('every command of the CLI usage is in §2, and no other', () => {
    const main = readFileSync(path.join(ROOT, 'src/main.ts'), 'utf8');
    const block = /Commands:\n([\s\S]*?)\n\n/.exec(main)?.[1] ?? '';
    const commands = [...block.matchAll(/^ {2}([a-z-]+) /gm)].map((m) => m[1] ?? '');
    expect(commands.length).toBeGreaterThan(5);
    const rows = tableRows(section(DOC, 2), ['command', 'does']).flatMap(([c = '']) => codeSpans(c));
    expect(sorted(rows)).toEqual(sorted(commands));
  });

  it('every environment variable src/ reads is in the table of §2, and no other', () => {
    const vars = srcFiles().flatMap((f) => [...readFileSync(f, 'utf8').matchAll(/\b(MTLS_SIDECAR_[A-Z0-9_]+)/g)].map((m) => m[1] ?? ''));
    const rows = tableRows(section(DOC, 2), ['variable', 'meaning']).flatMap(([v = '']) => codeSpans(v));
    expect(sorted(rows)).toEqual(sorted(vars));
  });

  it('the security headers are named in §4', () => {
    const text = section(DOC, 4).toLowerCase();
    for (const [name, value] of SECURITY_HEADERS) expect(text).toContain(`${name}: ${value.toLowerCase()}`);
  });
});
