/**
 * /config answers loopback callers only unless `admin.exposeConfig: true` (SPEC §6). The caller
 * that is not on loopback lives in a network namespace this test creates (a veth pair with
 * addresses of its own), never on the machine's own network addresses. Without the rights to
 * make one (not root, no `ip`), the test says so and is skipped.
 */
import { execFile, execFileSync, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import { request } from 'undici';
import { startSidecar } from '../helpers/sidecar.js';
import type { RunningSidecar } from '../helpers/sidecar.js';
import { startUpstream } from '../helpers/upstream.js';
import type { Upstream } from '../helpers/upstream.js';
import { baseConfig } from './config.js';

const pki = inject('pki');
const NS = `mtlsc${String(process.pid)}`;
// A /30 of its own per run, from the pid (two runs at once do not collide).
const NET = `10.${String(200 + (process.pid % 50))}.${String((process.pid >> 6) % 250)}`;
const HOST_IP = `${NET}.1`;
const NS_IP = `${NET}.2`;

function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: 'pipe' });
}

function makeNamespace(): string | null {
  if (process.getuid?.() !== 0) return 'not root';
  if (spawnSync('ip', ['-V']).status !== 0) return 'no ip command';
  try {
    ip('netns', 'add', NS);
    ip('link', 'add', `${NS}h`, 'type', 'veth', 'peer', 'name', `${NS}n`);
    ip('link', 'set', `${NS}n`, 'netns', NS);
    ip('addr', 'add', `${HOST_IP}/30`, 'dev', `${NS}h`);
    ip('link', 'set', `${NS}h`, 'up');
    ip('-n', NS, 'addr', 'add', `${NS_IP}/30`, 'dev', `${NS}n`);
    ip('-n', NS, 'link', 'set', `${NS}n`, 'up');
    ip('-n', NS, 'link', 'set', 'lo', 'up');
    return null;
  } catch (err) {
    dropNamespace();
    return `cannot make a network namespace: ${(err as Error).message.split('\n')[0] ?? ''}`;
  }
}

function dropNamespace(): void {
  // Deleting the namespace deletes its end of the veth pair, and with it the host's end.
  spawnSync('ip', ['link', 'del', `${NS}h`]);
  spawnSync('ip', ['netns', 'del', NS]);
}

const run = promisify(execFile);

/**
 * GET from inside the namespace: the admin port sees a caller at NS_IP, not on loopback. Async:
 * the sidecar answering it runs in this process.
 */
async function getFromNamespace(url: string): Promise<number> {
  const script = `fetch(${JSON.stringify(url)}).then((r) => console.log(r.status), (e) => console.log('ERR ' + String(e.cause?.code)))`;
  const { stdout } = await run('ip', ['netns', 'exec', NS, process.execPath, '-e', script], { timeout: 15_000 });
  return Number(stdout.trim());
}

const why = makeNamespace();
// One line, so a run that could not test it says so (and vitest counts it skipped).
if (why !== null) process.stderr.write(`admin-config-exposure: skipped (${why})\n`);

describe.skipIf(why !== null)('/config exposure', () => {
  let app: Upstream;
  let closed: RunningSidecar;
  let open: RunningSidecar;
  beforeAll(async () => {
    app = await startUpstream();
    // The admin port on the veth's host address as well as loopback: 0.0.0.0, as in a pod.
    closed = await startSidecar(baseConfig(pki, app.url, { admin: { address: '0.0.0.0', port: 0 } }));
    open = await startSidecar(baseConfig(pki, app.url, { admin: { address: '0.0.0.0', port: 0, exposeConfig: true } }));
  });
  afterAll(async () => {
    await closed.close();
    await open.close();
    await app.close();
    dropNamespace();
  });

  it('answers /config to a loopback caller, 403 to a caller on another address; health and metrics stay open', async () => {
    const local = await request(`http://127.0.0.1:${closed.adminPort}/config`);
    expect(local.statusCode).toBe(200);
    expect(await local.body.json()).toMatchObject({ admin: { exposeConfig: false } });
    expect(await getFromNamespace(`http://${HOST_IP}:${closed.adminPort}/config`)).toBe(403);
    expect(await getFromNamespace(`http://${HOST_IP}:${closed.adminPort}/healthz`)).toBe(200);
    expect(await getFromNamespace(`http://${HOST_IP}:${closed.adminPort}/metrics`)).toBe(200);
  });

  it('answers everyone with admin.exposeConfig: true', async () => {
    expect(await getFromNamespace(`http://${HOST_IP}:${open.adminPort}/config`)).toBe(200);
  });
});
