/**
 * The audit buffer under faults (audit/sink.ts), in-process on real descriptors:
 *  - a FIFO nobody reads: memory stays within AUDIT_BUFFER_BYTES, the rest is dropped and
 *    counted, one log line; read later, it recovers by itself (one log line), whole lines only;
 *  - /dev/full (ENOSPC on every write): the error is handled (no throw, no freeze), retried,
 *    logged once, and close() gives up on time, counting what was lost;
 *  - a destination that fails and then takes writes again (a scripted writer: no real device
 *    fails on demand and then heals): available again once its backlog is written.
 * The same faults on the real binary are in test/cli/cli.test.ts.
 */
import { execFileSync } from 'node:child_process';
import { constants, openSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import v8 from 'node:v8';
import vm from 'node:vm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { AUDIT_BUFFER_BYTES, AuditConn, FLUSH_MS, openAudit } from '../../../src/audit/audit.js';
import type { RequestRecord } from '../../../src/audit/audit.js';
import { AuditBuffer } from '../../../src/audit/sink.js';
import type { SinkWriter, WriterEvents } from '../../../src/audit/sink.js';
import type { Log } from '../../../src/log.js';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

const conn = new AuditConn('orders', 'ab'.repeat(32), 'spiffe://cluster.local/ns/shop/sa/orders', 'CN=orders', '127.0.0.1', 'TLSv1.3');
/** A request line of about `pathBytes` + 400 bytes. */
function rec(requestId: string, pathBytes = 100): RequestRecord {
  return {
    requestId,
    conn,
    method: 'GET',
    path: `/orders/${'a'.repeat(pathBytes)}`,
    route: 'read',
    decision: 'allow',
    reason: 'ok',
    status: 200,
    durationMs: 1.5,
    upstreamMs: 1,
    bytesIn: 0,
    bytesOut: 10,
    protocol: 'HTTP/1.1',
  };
}

/** The operational log, captured: the sink's state changes are asserted on. */
function capturedLog(): { log: Log; lines: Array<Record<string, unknown>>; msgs: (msg: string) => Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const log = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) });
  return { log, lines, msgs: (msg) => lines.filter((l) => l['msg'] === msg) };
}

async function until(cond: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

let dir = '';
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'audit-sink-'));
});
afterAll(async () => {
  if (dir !== '') await rm(dir, { recursive: true, force: true });
});

describe('a FIFO nobody reads, then read', () => {
  it('holds at most AUDIT_BUFFER_BYTES, drops and counts the rest, and recovers once read', async () => {
    const fifo = path.join(dir, 'stalled.fifo');
    execFileSync('mkfifo', [fifo]);
    // A reader that reads nothing yet (non-blocking open, so neither side waits for the other).
    const readFd = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
    const { log, msgs } = capturedLog();
    const audit = await openAudit(fifo, { onFull: 'refuse', log });

    gc();
    const before = process.memoryUsage().arrayBuffers;
    // ~40 MiB of lines, ten times the bound: without one, all of it stays in memory.
    const n = 5000;
    for (let i = 0; i < n; i++) {
      audit.request(rec(`r${i}`, 8000));
      // Let the writer run now and then, as a server's event loop would.
      if (i % 100 === 99) await new Promise((r) => setImmediate(r));
    }
    gc();
    const grown = process.memoryUsage().arrayBuffers - before;
    expect(audit.bufferedBytes).toBeLessThanOrEqual(AUDIT_BUFFER_BYTES);
    expect(grown).toBeLessThan(2 * AUDIT_BUFFER_BYTES);
    expect(audit.linesDropped).toBeGreaterThan(n / 2);
    expect(audit.refusing).toBe(true);
    expect(msgs('audit sink unavailable')).toEqual([expect.objectContaining({ cause: 'full', onFull: 'refuse', limitBytes: AUDIT_BUFFER_BYTES })]);

    // The reader comes back.
    const reader = new net.Socket({ fd: readFd, readable: true, writable: false });
    let text = '';
    reader.on('data', (c: Buffer) => (text += c.toString('utf8')));
    const ended = new Promise((resolve) => reader.on('end', resolve));
    await until(() => !audit.refusing, 'the sink to drain');
    expect(msgs('audit sink recovered')).toEqual([expect.objectContaining({ onFull: 'refuse', linesDropped: audit.linesDropped })]);
    audit.request(rec('after'));
    await audit.close(5000);
    await ended;

    const lines = text.split('\n');
    expect(lines.pop()).toBe('');
    const ids = lines.map((l) => (JSON.parse(l) as { requestId: string }).requestId);
    // Whole lines, in order, and each one either written or counted.
    expect(ids.length + audit.linesDropped).toBe(n + 1);
    expect(ids.at(-1)).toBe('after');
    const order = ids.slice(0, -1).map((id) => Number(id.slice(1)));
    expect(order.every((v, i) => i === 0 || v > (order[i - 1] as number))).toBe(true);
    expect(msgs('audit lines not written at shutdown')).toHaveLength(0);
  }, 60_000);

  it('small batches waiting on a stalled reader cost their size, not a batch buffer each', async () => {
    const fifo = path.join(dir, 'trickle.fifo');
    execFileSync('mkfifo', [fifo]);
    const readFd = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
    const audit = await openAudit(fifo, { onFull: 'drop', log: capturedLog().log });
    // Light traffic: one line per hand-over (as one request per FLUSH_MS would make).
    for (let i = 0; i < 100; i++) {
      audit.request(rec(`warm${i}`, 1000));
      await audit.flush(0);
    }
    gc();
    const before = process.memoryUsage().arrayBuffers;
    const bufferedBefore = audit.bufferedBytes;
    for (let i = 0; i < 200; i++) {
      audit.request(rec(`r${i}`, 1000));
      await audit.flush(0);
    }
    gc();
    const held = audit.bufferedBytes - bufferedBefore;
    expect(held).toBeGreaterThan(200 * 1000);
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(4 * held);
    const reader = new net.Socket({ fd: readFd, readable: true, writable: false });
    reader.resume();
    await audit.close(5000);
    reader.destroy();
    expect(audit.linesDropped).toBe(0);
  });
});

describe('/dev/full', () => {
  it('handles ENOSPC: logs once, retries every FLUSH_MS, refuses, and close() gives up on time counting the lost lines', async () => {
    const { log, msgs } = capturedLog();
    const audit = await openAudit('/dev/full', { onFull: 'refuse', log });
    for (let i = 0; i < 10; i++) audit.request(rec(`r${i}`));
    expect(await audit.flush(FLUSH_MS)).toBe(false);
    await until(() => audit.writeErrors >= 3, 'the failed write to be retried');
    expect(audit.refusing).toBe(true);
    expect(audit.bufferedBytes).toBeGreaterThan(0);
    expect(msgs('audit sink unavailable')).toEqual([expect.objectContaining({ cause: 'write_error', code: 'ENOSPC', onFull: 'refuse' })]);
    audit.handshake({ reason: 'untrusted', remote: '127.0.0.1' });
    const t0 = Date.now();
    await audit.close(200);
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(audit.linesDropped).toBe(11);
    expect(msgs('audit lines not written at shutdown')).toEqual([expect.objectContaining({ lines: 11 })]);
    // After close nothing is written (nor thrown); lines are counted.
    audit.request(rec('late'));
    expect(audit.linesDropped).toBe(12);
  });

  it('with onFull drop, does not refuse', async () => {
    const { log } = capturedLog();
    const audit = await openAudit('/dev/full', { onFull: 'drop', log });
    audit.request(rec('r'));
    await until(() => audit.writeErrors >= 1, 'the write to fail');
    expect(audit.refusing).toBe(false);
    await audit.close(100);
  });
});

/** A writer whose outcome the test decides, write by write. */
class ScriptedWriter implements SinkWriter {
  readonly writes: Buffer[] = [];
  retries = 0;
  constructor(readonly ev: WriterEvents) {}
  write(buf: Buffer): void {
    this.writes.push(buf);
  }
  retry(): void {
    this.retries++;
  }
  close(): void {}
}

describe('a destination that fails, then heals', () => {
  it('is available again only once everything handed over is written', async () => {
    const { log, msgs } = capturedLog();
    let w: ScriptedWriter | null = null;
    const buf = new AuditBuffer(
      (ev) => (w = new ScriptedWriter(ev)),
      { onFull: 'refuse', log, eager: false },
    );
    const writer = w as unknown as ScriptedWriter;
    const line = (s: string): void => buf.line(`${JSON.stringify({ msg: s })}\n`);
    line('a');
    buf.handOver();
    line('b');
    buf.handOver();
    const [first, second] = writer.writes as [Buffer, Buffer];
    writer.ev.failed(Object.assign(new Error('no space'), { code: 'ENOSPC' }));
    expect(buf.refusing).toBe(true);
    expect(buf.writeErrors).toBe(1);
    await until(() => writer.retries > 0, 'a retry');
    // The first batch goes through: the second is still pending, so still refusing.
    writer.ev.written(first.length);
    expect(buf.refusing).toBe(true);
    writer.ev.written(second.length);
    expect(buf.refusing).toBe(false);
    expect(buf.bufferedBytes).toBe(0);
    expect(msgs('audit sink unavailable')).toHaveLength(1);
    expect(msgs('audit sink recovered')).toEqual([expect.objectContaining({ writeErrors: 1, linesDropped: 0 })]);
    await buf.close(10);
  });

  it('a destination gone for good (EPIPE) counts what it held as dropped and refuses from then on', async () => {
    const { log, msgs } = capturedLog();
    let w: ScriptedWriter | null = null;
    const buf = new AuditBuffer((ev) => (w = new ScriptedWriter(ev)), { onFull: 'refuse', log, eager: false });
    const writer = w as unknown as ScriptedWriter;
    buf.line('{"msg":"a"}\n');
    buf.line('{"msg":"b"}\n');
    buf.handOver();
    writer.ev.lost(Object.assign(new Error('broken pipe'), { code: 'EPIPE' }));
    expect(buf.linesDropped).toBe(2);
    expect(buf.bufferedBytes).toBe(0);
    expect(buf.refusing).toBe(true);
    buf.line('{"msg":"c"}\n');
    expect(buf.linesDropped).toBe(3);
    expect(writer.writes).toHaveLength(1);
    expect(msgs('audit sink unavailable')).toEqual([expect.objectContaining({ cause: 'closed', code: 'EPIPE', linesLost: 2 })]);
    await buf.close(10);
  });
});

describe('audit.onFull in the config', () => {
  const base = 'version: 1\ntls: { cert: a.crt, key: a.key, clientCAs: [ca.crt] }\n';
  it('defaults to refuse, accepts drop, and names anything else where it is written', async () => {
    const { parseConfigText } = await import('../../../src/config/load.js');
    const dflt = parseConfigText(base);
    expect(dflt.ok && dflt.raw.audit).toEqual({ file: 'stdout', onFull: 'refuse' });
    const drop = parseConfigText(`${base}audit: { file: stdout, onFull: drop }\n`);
    expect(drop.ok && drop.raw.audit.onFull).toBe('drop');
    const bad = parseConfigText(`${base}audit:\n  onFull: block\n`);
    expect(bad.ok).toBe(false);
    if (!bad.ok) expect(bad.issues).toEqual([expect.objectContaining({ path: 'audit.onFull', line: 4, col: 11 })]);
  });
});
