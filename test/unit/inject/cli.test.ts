/** `mtls-sidecar inject` as a command: files, stdin, flags, exit codes and one-line errors. */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
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
    // Warnings name the input: the file, or <stdin>.
    expect(fromFile.stderr).toContain(`inject: warning: ${file}: `);
    const fromStdin = await runInject(['-f', '-'], POD);
    expect(fromStdin).toEqual({ code: 0, stdout: fromFile.stdout, stderr: fromFile.stderr.replaceAll(file, '<stdin>') });
    expect(await runInject([], POD)).toEqual(fromStdin);
    expect(await runInject(['--file', file])).toEqual(fromFile);
  });

  it('passes empty input and non-workloads through, and says so', async () => {
    expect(await runInject([], '')).toEqual({ code: 0, stdout: '', stderr: 'inject: no workloads to inject; the input is empty\n' });
    const cm = '# just a comment\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n';
    expect(await runInject([], cm)).toEqual({ code: 0, stdout: cm, stderr: 'inject: no workloads to inject; passed through: 1 ConfigMap\n' });
  });

  it('ends standard error with what it did: injected of found, each skip and why, the other kinds', async () => {
    const doc = (name: string, label: string | null, extra = ''): string =>
      `apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: ${name}}\nspec:\n  selector: {matchLabels: {app: ${name}}}\n  template:\n    metadata:\n      labels: {app: ${name}${label === null ? '' : `, mtls-sidecar.io/inject: "${label}"`}}\n    spec:\n${extra}      containers: [{name: app, image: app:1}]\n`;
    const input = [
      doc('a', 'true'),
      doc('b', null),
      doc('c', 'false'),
      doc('d', 'true', '      hostNetwork: true\n'),
      'apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {selector: {app: a}, ports: [{port: 443, targetPort: 8443}]}\n',
      'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n',
      'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n',
      'apiVersion: example.com/v1\nkind: Deployment\nmetadata: {name: crd}\n',
      '---\n', // an empty document counts as nothing
    ].join('---\n');
    const labelled = await runInject([], input);
    expect(labelled.code).toBe(0);
    const last = (stderr: string): string => stderr.trimEnd().split('\n').at(-1) ?? '';
    expect(last(labelled.stderr)).toBe(
      'inject: injected 1 of 4 workloads; skipped: Deployment/b (not opted in), Deployment/c (opted out), Deployment/d (hostNetwork); passed through: 1 Service, 2 ConfigMap, 1 Deployment (example.com/v1)',
    );
    // Standard output is the YAML alone.
    expect(labelled.stdout).not.toMatch(/^inject: /m);
    expect(parseAllDocuments(labelled.stdout).length).toBe(parseAllDocuments(input).length);

    // --all: the unlabelled one too; the label "false" still wins.
    const all = await runInject(['--all'], input);
    expect(last(all.stderr)).toMatch(/^inject: injected 2 of 4 workloads; skipped: Deployment\/c \(opted out\), Deployment\/d \(hostNetwork\);/);

    // A re-run: nothing injected, everything already so.
    const again = await runInject(['--all'], all.stdout);
    expect(last(again.stderr)).toMatch(/^inject: injected 0 of 4 workloads; skipped: Deployment\/a \(already injected\), Deployment\/b \(already injected\), Deployment\/c \(opted out\), Deployment\/d \(hostNetwork\);/);
    expect(again.stdout).toBe(all.stdout);
  });

  it('prints warnings before the summary and keeps exit code 0', async () => {
    const r = await runInject([], POD.replace('    image: app:1\n', '    image: app:1\n    ports: [{name: http, containerPort: 8080}]\n'));
    expect(r.code).toBe(0);
    expect(r.stderr.split('\n')).toEqual([
      'inject: warning: <stdin>:1 Pod/p: container app declares port 8080 (http): a Service or pod that targets it bypasses the sidecar; the app should listen on 127.0.0.1 only',
      "inject: warning: <stdin>: no NetworkPolicy in the input limits the injected pods' ingress to their sidecar's ports: pods can reach an app around its sidecar if it listens on the pod IP (policies applied separately are fine)",
      'inject: injected 1 of 1 workload',
      '',
    ]);
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
