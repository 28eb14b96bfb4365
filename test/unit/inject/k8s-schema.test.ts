/** The schema helper itself: it must catch what it is there to catch. */
import { describe, expect, it } from 'vitest';
import { validateK8s } from './k8s-schema.js';

const pod = (container: Record<string, unknown>, spec: Record<string, unknown> = {}) => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name: 'p' },
  spec: { containers: [{ name: 'a', image: 'a:1', ...container }], ...spec },
});

describe('validateK8s', () => {
  it('accepts a valid pod, native sidecar fields included', () => {
    expect(() => validateK8s(pod({ restartPolicy: 'Always', securityContext: { runAsNonRoot: true, capabilities: { drop: ['ALL'] } } }))).not.toThrow();
  });

  it('refuses wrong types (the models’ JSON schema)', () => {
    expect(() => validateK8s(pod({ ports: [{ containerPort: '80' }] }))).toThrow(/containerPort must be integer/);
  });

  it('refuses misspelt fields anywhere in a pod spec', () => {
    expect(() => validateK8s(pod({ securityContext: { runAsNonroot: true } }))).toThrow(/spec.containers\[0\].securityContext.runAsNonroot/);
    expect(() => validateK8s(pod({ livenessProbe: { httpGet: { port: 1, pth: '/' } } }))).toThrow(/livenessProbe.httpGet.pth/);
    expect(() => validateK8s(pod({}, { volumes: [{ name: 'v', secret: { secretname: 'x' } }] }))).toThrow(/volumes\[0\].secret.secretname/);
    expect(() => validateK8s({ apiVersion: 'batch/v1', kind: 'CronJob', metadata: { name: 'c' }, spec: { schedule: '* * * * *', jobTemplate: { spec: { template: { spec: { containers: [{ name: 'a', bogus: 1 }] } } } } } })).toThrow(/bogus/);
  });

  it('refuses kinds it has no model for', () => {
    expect(() => validateK8s({ apiVersion: 'v9', kind: 'Thing' })).toThrow(/no schema model/);
  });
});
