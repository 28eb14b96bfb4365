/** The recorded-probe format the injector writes and the admin port reads. */
import { describe, expect, it } from 'vitest';
import { appHealthFromEnv } from '../../../src/admin/app-health.js';
import { parseAppProbes } from '../../../src/inject/app-probes.js';

describe('parseAppProbes', () => {
  it('accepts HTTP and TCP probes keyed by their exact path, with defaults', () => {
    const r = parseAppProbes('{"/app-health/web/livez":{"httpGet":{"path":"/h","port":8080}},"/app-health/web/readyz":{"tcpSocket":{"port":8080},"timeoutSeconds":3}}');
    expect(r).toEqual({
      ok: true,
      probes: {
        '/app-health/web/livez': { httpGet: { path: '/h', port: 8080, scheme: 'HTTP' }, timeoutSeconds: 1 },
        '/app-health/web/readyz': { tcpSocket: { port: 8080 }, timeoutSeconds: 3 },
      },
    });
  });

  it.each([
    ['not json', /is not JSON/],
    ['[]', /expected record|Invalid input/],
    ['{"/metrics":{"tcpSocket":{"port":1}}}', /keys are \/app-health/],
    ['{"/app-health/web/livez/x":{"tcpSocket":{"port":1}}}', /keys are \/app-health/],
    ['{"/app-health/web/livez":{"tcpSocket":{"port":0}}}', /livez/],
    ['{"/app-health/web/livez":{"httpGet":{"path":"x","port":1}}}', /absolute path/],
    ['{"/app-health/web/livez":{"httpGet":{"path":"/","port":1,"host":"evil"}}}', /livez/],
    ['{"/app-health/web/livez":{"exec":{"command":["sh"]}}}', /livez/],
  ])('refuses %s', (text, message) => {
    const r = parseAppProbes(text);
    expect(r.ok).toBe(false);
    expect(!r.ok && r.error).toMatch(/^MTLS_SIDECAR_APP_PROBES/);
    expect(!r.ok && r.error).toMatch(message);
  });

  it('appHealthFromEnv: none is fine, a bad one is an error to refuse start-up with', () => {
    expect(appHealthFromEnv({})).toEqual({ ok: true, handler: null, paths: [] });
    const bad = appHealthFromEnv({ MTLS_SIDECAR_APP_PROBES: '{' });
    expect(bad).toEqual({ ok: false, error: 'MTLS_SIDECAR_APP_PROBES is not JSON' });
    const good = appHealthFromEnv({ MTLS_SIDECAR_APP_PROBES: '{"/app-health/a/livez":{"tcpSocket":{"port":1}}}' });
    expect(good.ok && good.paths).toEqual(['/app-health/a/livez']);
  });
});
