/**
 * The audit stage (audit/audit.ts):
 *  - the request line is built by hand for speed; it must be byte for byte the line pino wrote
 *    before (same key order, same escaping), apart from the timestamp;
 *  - the audit file's descriptor must live as long as the audit stream (a FileHandle from
 *    fs/promises closes its fd when garbage-collected; sonic-boom would then write into a closed
 *    descriptor, or into whatever socket the kernel gave that number next);
 *  - durations are formatted by hand, exactly as String() would;
 *  - lines are written in batches, yet reach the file within FLUSH_MS without anyone flushing.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import v8 from 'node:v8';
import vm from 'node:vm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { AuditConn, AuditOutboundConn, FLUSH_MS, ms, openAudit, outboundLine, requestLine, writeOutboundLine, writeRequestLine } from '../../../src/audit/audit.js';
import type { OutboundRecord, RequestRecord } from '../../../src/audit/audit.js';
import { until } from '../../helpers/wait.js';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

/** The record as one flat object, in SPEC §5 order: what pino was given before. */
interface Flat {
  requestId: string;
  identity: string | null;
  certSha256: string | null;
  uri: string | null;
  subject: string | null;
  method: string;
  path: string;
  route: string | null;
  decision: 'allow' | 'deny';
  reason: RequestRecord['reason'];
  status: number;
  durationMs: number;
  upstreamMs: number | null;
  bytesIn: number;
  bytesOut: number;
  remote: string;
  tlsVersion: string | null;
  protocol: string;
}

function record(f: Flat): RequestRecord {
  const { identity, certSha256, uri, subject, remote, tlsVersion, ...rest } = f;
  return { ...rest, conn: new AuditConn(identity, certSha256, uri, subject, remote, tlsVersion) };
}

function viaPino(rec: Flat): string {
  let out = '';
  const logger = pino(
    { base: null, messageKey: 'msg', timestamp: () => '"time":"T"', formatters: { level: () => ({}) } },
    { write: (s: string) => void (out += s) },
  );
  logger.info({ ...rec, direction: 'inbound' }, 'request');
  return out;
}

const base: Flat = {
  requestId: '5b0c3c1e-8a4f-4c55-9c7e-0d2a7e0c9f11',
  identity: 'orders',
  certSha256: 'ab'.repeat(32),
  uri: 'spiffe://cluster.local/ns/shop/sa/orders',
  subject: 'CN=orders,O=shop',
  method: 'GET',
  path: '/orders/1',
  route: 'orders',
  decision: 'allow',
  reason: 'ok',
  status: 200,
  durationMs: 1.234,
  upstreamMs: 0.987,
  bytesIn: 0,
  bytesOut: 12,
  remote: '127.0.0.1',
  tlsVersion: 'TLSv1.3',
  protocol: 'HTTP/1.1',
};

const cases: Array<[string, Flat]> = [
  ['an allowed request', base],
  ['a refusal with nulls', { ...base, identity: null, route: null, uri: null, upstreamMs: null, decision: 'deny', reason: 'no_route', status: 403 }],
  ['quotes, backslashes and RFC 4514 escapes', { ...base, subject: 'CN=a\\"b\\,c,O=x\\\\y', path: '/a"b\\c', method: 'M"X' }],
  ['control characters and non-ASCII', { ...base, path: '/\u0001\u001f\u007f/é/😀', requestId: 'id\u2028x' }],
  ['non-finite numbers', { ...base, durationMs: Number.NaN, upstreamMs: Number.POSITIVE_INFINITY }],
  ['a handshake-less HTTP/2 request', { ...base, tlsVersion: null, protocol: 'HTTP/2', certSha256: null }],
];

describe('requestLine', () => {
  it.each(cases)('%s: same line as pino wrote', (_name, rec) => {
    const ours = requestLine(record(rec)).replace(/^\{"time":"[^"]+"/, '{"time":"T"');
    expect(ours).toBe(viaPino(rec));
    expect(JSON.parse(ours)).toMatchObject({ msg: 'request', requestId: rec.requestId });
  });

  it.each(cases)('%s: written into a batch buffer, the same bytes as the line', (_name, rec) => {
    const r = record(rec);
    const buf = Buffer.alloc(8192, 0x2a);
    const end = writeRequestLine(buf, 10, r);
    const line = requestLine(r);
    // Same millisecond for both unless the clock ticked in between: compare without the time.
    const strip = (t: string): string => t.replace(/^\{"time":"[^"]+"/, '');
    expect(strip(buf.subarray(10, end).toString('utf8'))).toBe(strip(line));
    expect(end - 10).toBe(Buffer.byteLength(line));
    expect(buf[9]).toBe(0x2a);
    expect(buf[end]).toBe(0x2a);
  });

  it('writes nothing and says so when the line might not fit', () => {
    const buf = Buffer.alloc(600, 0x2a);
    expect(writeRequestLine(buf, 0, record(base))).toBe(-1);
    expect(buf.every((b) => b === 0x2a)).toBe(true);
  });

  it('starts with an ISO-8601 UTC time and ends with one newline', () => {
    const line = requestLine(record(base));
    expect(line).toMatch(/^\{"time":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z",/);
    expect(line.endsWith('}\n')).toBe(true);
    expect(line.indexOf('\n')).toBe(line.length - 1);
  });
});

const outbound: OutboundRecord = {
  requestId: '5b0c3c1e-8a4f-4c55-9c7e-0d2a7e0c9f11',
  destination: 'billing',
  peerUri: 'spiffe://cluster.local/ns/pay/sa/billing',
  peerSha256: 'cd'.repeat(32),
  method: 'POST',
  path: '/invoices/"1"\\é',
  status: 201,
  reason: 'ok',
  durationMs: 2.5,
  bytesIn: 10,
  bytesOut: 20,
  protocol: 'HTTP/1.1',
};

describe('outboundLine', () => {
  const strip = (t: string): string => t.replace(/^\{"time":"[^"]+"/, '');
  const withConn = (r: OutboundRecord): OutboundRecord => ({ ...r, conn: new AuditOutboundConn(r.destination ?? '', r.peerUri, r.peerSha256 ?? '', r.protocol ?? '') });

  it.each([
    ['a verified server', outbound],
    ['a server without a URI SAN', { ...outbound, peerUri: null }],
  ])('%s: the connection serialized once gives the same line as the record alone', (_name, rec) => {
    const line = outboundLine(rec);
    expect(strip(outboundLine(withConn(rec)))).toBe(strip(line));
    expect(JSON.parse(line)).toMatchObject({ direction: 'outbound', destination: rec.destination, peerUri: rec.peerUri, path: rec.path, protocol: 'HTTP/1.1', msg: 'request' });
  });

  it('written into a batch buffer: the same bytes as the line', () => {
    const conn = new AuditOutboundConn('billing', outbound.peerUri, 'cd'.repeat(32), 'HTTP/1.1');
    const r = { ...outbound, conn };
    const buf = Buffer.alloc(4096, 0x2a);
    const end = writeOutboundLine(buf, 10, r, conn);
    const line = outboundLine(outbound);
    expect(strip(buf.subarray(10, end).toString('utf8'))).toBe(strip(line));
    expect(end - 10).toBe(Buffer.byteLength(line));
    expect(buf[9]).toBe(0x2a);
    expect(buf[end]).toBe(0x2a);
    expect(writeOutboundLine(Buffer.alloc(300, 0x2a), 0, r, conn)).toBe(-1);
  });
});

describe('ms (durations in the audit line)', () => {
  const round3 = (n: number): number => Math.round(n * 1000) / 1000;
  it('writes every 3-decimal duration exactly as String() does', () => {
    // Every thousandth up to 20 s, then a spread of larger and odd values.
    for (let k = 0; k <= 20_000; k++) expect(ms(k / 1000)).toBe(String(k / 1000));
    const others = [0.0005, 0.0004999, 1e6 + 0.001, 123456.789, 2 ** 40 / 1000, 86_400_000.5, 0.1 + 0.2, 1 / 3, Number.MAX_SAFE_INTEGER, 1e21, -1.5];
    for (const n of others) expect(ms(round3(n))).toBe(String(round3(n)));
  });
  it('falls back to String() for values that are not thousandths, and null for non-finite', () => {
    for (const n of [1 / 3, Math.PI, 1e-7, -0.25]) expect(ms(n)).toBe(String(n));
    expect(ms(Number.NaN)).toBe('null');
    expect(ms(Number.POSITIVE_INFINITY)).toBe('null');
  });
});

const withId = (requestId: string): RequestRecord => record({ ...base, requestId });

/** One scratch directory for the tests below that write audit files. */
let dir = '';
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'audit-'));
});
afterAll(async () => {
  if (dir !== '') await rm(dir, { recursive: true, force: true });
});

async function readIds(file: string): Promise<string[]> {
  const text = await readFile(file, 'utf8').catch(() => '');
  return text
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => (JSON.parse(l) as { requestId: string }).requestId);
}

describe('audit file descriptor', () => {
  it('keeps writing after garbage collection (no FileHandle closing the fd behind the stream)', async () => {
    const file = path.join(dir, 'audit.log');
    const audit = await openAudit(file);
    await audit.ready();
    audit.request(withId('before-gc'));
    await audit.flush();
    for (let i = 0; i < 5; i++) {
      gc();
      await new Promise((r) => setTimeout(r, 20));
    }
    audit.request(withId('after-gc'));
    await audit.flush();
    await audit.close();
    expect(await readIds(file)).toEqual(['before-gc', 'after-gc']);
  });
});

describe('audit batching', () => {
  it('a lone line reaches the file within the flush interval, with nobody calling flush()', async () => {
    const file = path.join(dir, 'lone.log');
    const audit = await openAudit(file);
    await audit.ready();
    try {
      audit.request(withId('lone'));
      let ids: string[] = [];
      await until(async () => (ids = await readIds(file)).length > 0, FLUSH_MS * 8, 25);
      expect(ids).toEqual(['lone']);
    } finally {
      await audit.close();
    }
  });

  it('a burst larger than one batch loses nothing and keeps its order', async () => {
    const file = path.join(dir, 'burst.log');
    const audit = await openAudit(file);
    await audit.ready();
    const n = 2000; // ~1 MiB: many batches
    for (let i = 0; i < n; i++) audit.request(withId(`r${i}`));
    await audit.close();
    const ids = await readIds(file);
    expect(ids).toHaveLength(n);
    expect(ids.every((id, i) => id === `r${i}`)).toBe(true);
  });
});
