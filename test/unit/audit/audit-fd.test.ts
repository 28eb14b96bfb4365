/**
 * The audit file's descriptor must live as long as the audit stream. A FileHandle from
 * fs/promises closes its fd when garbage-collected; sonic-boom would then write into a closed
 * descriptor, or into whatever socket the kernel gave that number next.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import v8 from 'node:v8';
import vm from 'node:vm';
import { afterAll, describe, expect, it } from 'vitest';
import { AuditConn, openAudit } from '../../../src/audit/audit.js';
import type { RequestRecord } from '../../../src/audit/audit.js';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

const record = (requestId: string): RequestRecord => ({
  requestId,
  conn: new AuditConn('orders', 'ab'.repeat(32), 'spiffe://cluster.local/ns/shop/sa/orders', 'CN=orders', '127.0.0.1', 'TLSv1.3'),
  method: 'GET',
  path: '/orders/1',
  route: 'orders',
  decision: 'allow',
  reason: 'ok',
  status: 200,
  durationMs: 1.5,
  upstreamMs: 1.2,
  bytesIn: 0,
  bytesOut: 12,
  protocol: 'HTTP/1.1',
});

describe('audit file descriptor', () => {
  let dir = '';
  afterAll(async () => {
    if (dir !== '') await rm(dir, { recursive: true, force: true });
  });

  it('keeps writing after garbage collection (no FileHandle closing the fd behind the stream)', async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'audit-fd-'));
    const file = path.join(dir, 'audit.log');
    const audit = await openAudit(file);
    await audit.ready();
    audit.request(record('before-gc'));
    await audit.flush();
    for (let i = 0; i < 5; i++) {
      gc();
      await new Promise((r) => setTimeout(r, 20));
    }
    audit.request(record('after-gc'));
    await audit.flush();
    await audit.close();
    const ids = (await readFile(file, 'utf8'))
      .trim()
      .split('\n')
      .map((l) => (JSON.parse(l) as { requestId: string }).requestId);
    expect(ids).toEqual(['before-gc', 'after-gc']);
  });
});
