/** `mtls-sidecar inject` as a command: files, stdin, flags, exit codes and one-line errors. */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runInject } from './run.js';

const POD = `apiVersion: v1
kind: Pod
metadata:
  name: p
  labels: {mtls-sidecar.io/inject: "true"}
spec:
  containers:
  - name: app
    image: app:1
`;

let dir = '';
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'inject-cli-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('inject command', () => {
  it('reads -f FILE, and - or nothing as standard input', async () => {
    const file = path.join(dir, 'pod.yaml');
    await writeFile(file, POD);
    const fromFile = await runInject(['-f', file]);
    expect(fromFile.code).toBe(0);
    expect(fromFile.stdout).toContain('name: mtls-sidecar');
    expect(await runInject(['-f', '-'], POD)).toEqual(fromFile);
    expect(await runInject([], POD)).toEqual(fromFile);
    expect(await runInject(['--file', file])).toEqual(fromFile);
  });

  it('passes empty input and non-workloads through', async () => {
    expect(await runInject([], '')).toEqual({ code: 0, stdout: '', stderr: '' });
    const cm = '# just a comment\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n';
    expect(await runInject([], cm)).toEqual({ code: 0, stdout: cm, stderr: '' });
  });

  it('exits 2 with one line for a missing file, bad YAML, duplicate keys and unknown flags', async () => {
    const missing = await runInject(['-f', path.join(dir, 'nope.yaml')]);
    expect(missing).toEqual({ code: 2, stdout: '', stderr: `inject: cannot read ${path.join(dir, 'nope.yaml')}: ENOENT\n` });
    const bad = await runInject([], 'kind: Pod\nmetadata: {name: [\n');
    expect(bad.code).toBe(2);
    expect(bad.stdout).toBe('');
    expect(bad.stderr).toMatch(/^inject: <stdin>:\d+:\d+: .+\n$/);
    const dup = await runInject([], 'kind: Pod\nkind: Pod\n');
    expect(dup.code).toBe(2);
    expect(dup.stderr).toMatch(/^inject: <stdin>:2:1: .*[Uu]nique|^inject: <stdin>:2:1: .*key/);
    const flag = await runInject(['--bogus']);
    expect(flag.code).toBe(2);
    expect(flag.stderr).toMatch(/^inject: Unknown option '--bogus'/);
  });

  it('refuses a workload it cannot inject, naming the document and the reason, and prints nothing', async () => {
    const bad = POD.replace('metadata:\n  name: p\n', 'metadata:\n  name: p\n  annotations: {mtls-sidecar.io/port: "x"}\n');
    const r = await runInject([], `apiVersion: v1\nkind: Service\nmetadata: {name: s}\n---\n${bad}`);
    expect(r).toEqual({ code: 2, stdout: '', stderr: 'inject: <stdin>:5:1: Pod/p: annotation mtls-sidecar.io/port: "x" is not a port (1-65535)\n' });
  });

  it('prints its help', async () => {
    const r = await runInject(['--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^Usage: mtls-sidecar inject/);
  });

  it('takes defaults from a webhook config with --config, and refuses a bad one with line:col', async () => {
    const cfg = path.join(dir, 'webhook.yaml');
    await writeFile(cfg, 'version: 1\ntls: {cert: tls.crt, key: tls.key}\ninject:\n  image: reg.example.com/mtls-sidecar:7\n  mode: legacy\n');
    const r = await runInject(['--config', cfg], POD);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('image: reg.example.com/mtls-sidecar:7');
    expect(r.stdout).not.toContain('initContainers');
    await writeFile(cfg, 'version: 1\ntls: {cert: tls.crt, key: tls.key}\ninject:\n  imag: x\n');
    const bad = await runInject(['--config', cfg], POD);
    expect(bad).toEqual({ code: 2, stdout: '', stderr: `inject: ${cfg}:4:3: inject.imag: unknown key "imag"\n` });
  });
});
