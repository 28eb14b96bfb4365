/** The webhook's config file: defaults, strictness, units and FILE:LINE:COL errors. */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { DEFAULT_SETTINGS } from '../../../src/inject/settings.js';
import { loadWebhookConfig, parseWebhookConfigText } from '../../../src/webhook/config.js';

describe('webhook config', () => {
  it('fills every default and resolves paths against the file', () => {
    const r = parseWebhookConfigText('version: 1\ntls: {cert: certs/tls.crt, key: /abs/tls.key}\n', '/etc/webhook');
    expect(r).toEqual({
      ok: true,
      config: {
        listen: { address: '0.0.0.0', port: 8443 },
        tls: { cert: '/etc/webhook/certs/tls.crt', key: '/abs/tls.key', reloadIntervalMs: 60_000 },
        admin: { address: '0.0.0.0', port: 9902 },
        limits: { maxRequestSize: 4 * 1024 * 1024, requestTimeoutMs: 10_000 },
        shutdown: { drainDelayMs: 3000 },
        inject: DEFAULT_SETTINGS,
      },
    });
  });

  it('reads units and the inject section', () => {
    const r = parseWebhookConfigText(
      'version: 1\ntls: {cert: a, key: b, reloadInterval: 5m}\nlimits: {maxRequestSize: 1MiB, requestTimeout: 2s}\nshutdown: {drainDelay: 0s}\ninject: {mode: legacy, certSource: csi, csi: {trustDomain: prod.example}, runAsUser: null}\n',
      '/x',
    );
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.config.tls.reloadIntervalMs).toBe(300_000);
    expect(r.config.limits).toEqual({ maxRequestSize: 1024 * 1024, requestTimeoutMs: 2000 });
    expect(r.config.shutdown.drainDelayMs).toBe(0);
    expect(r.config.inject).toMatchObject({ mode: 'legacy', certSource: 'csi', runAsUser: null, csi: { trustDomain: 'prod.example', issuerName: 'mtls-ca' } });
  });

  it('reports every problem with its path and line:col', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'webhook-config-'));
    try {
      const file = path.join(dir, 'webhook.yaml');
      await writeFile(
        file,
        ['version: 1', 'listen: {port: 8443, tls: true}', 'tls:', '  cert: a', 'limits:', '  requestTimeout: soon', 'inject:', '  port: 9901', '  resources: {limits: {memory: lots}}', ''].join('\n'),
      );
      const r = await loadWebhookConfig(file);
      expect(r.ok).toBe(false);
      if (r.ok) return;
      expect(r.lines).toEqual([
        `${file}:2:22: listen.tls: unknown key "tls"`,
        `${file}:4:3: tls.key: is required (string)`,
        `${file}:6:19: limits.requestTimeout: "soon" is not a duration (use e.g. 250ms, 30s, 5m) above zero`,
        `${file}:9:32: inject.resources.limits.memory: "lots" is not a resource quantity (e.g. 50m, 64Mi)`,
        `${file}:8:3: inject.adminPort: the admin port must differ from the mTLS port`,
      ]);
      expect((await loadWebhookConfig(path.join(dir, 'missing.yaml'))).ok).toBe(false);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('refuses the same port for the sidecar and its admin port', () => {
    const r = parseWebhookConfigText('version: 1\ntls: {cert: a, key: b}\ninject: {port: 9901}\n', '/x');
    expect(r.ok).toBe(false);
    expect(!r.ok && r.issues.map((i) => i.message)).toEqual(['the admin port must differ from the mTLS port']);
  });
});
