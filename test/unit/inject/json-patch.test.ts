/** The JSON diff behind the webhook's JSONPatch and the CLI's in-place YAML edits. */
import fastJsonPatch from 'fast-json-patch';
import type { Operation } from 'fast-json-patch';
import { describe, expect, it } from 'vitest';
import { escapePointer, jsonPatch, pointer, unescapePointer } from '../../../src/inject/json-patch.js';

function roundTrip(from: unknown, to: unknown): ReturnType<typeof jsonPatch> {
  const ops = jsonPatch(from, to);
  const applied = fastJsonPatch.applyPatch(structuredClone(from), ops as Operation[], true, false).newDocument;
  expect(applied).toEqual(to);
  return ops;
}

describe('jsonPatch', () => {
  it('escapes / as ~1 and ~ as ~0 (RFC 6901)', () => {
    expect(escapePointer('mtls-sidecar.io/status')).toBe('mtls-sidecar.io~1status');
    expect(escapePointer('a~b/c')).toBe('a~0b~1c');
    expect(unescapePointer('a~0b~1c')).toBe('a~b/c');
    expect(pointer(['metadata', 'annotations', 'prometheus.io/port'])).toBe('/metadata/annotations/prometheus.io~1port');
    const ops = roundTrip({ metadata: { annotations: { a: '1' } } }, { metadata: { annotations: { a: '1', 'x.io/y~z': '2' } } });
    expect(ops).toEqual([{ op: 'add', path: '/metadata/annotations/x.io~1y~0z', value: '2' }]);
  });

  it('adds a missing object whole', () => {
    expect(roundTrip({ metadata: {} }, { metadata: { annotations: { a: 'b' } } })).toEqual([{ op: 'add', path: '/metadata/annotations', value: { a: 'b' } }]);
  });

  it('inserts list entries by position and changes matched entries in place', () => {
    const from = { containers: [{ name: 'web', probe: { port: 8080 } }] };
    const to = { containers: [{ name: 'sidecar' }, { name: 'web', probe: { port: 9901 } }] };
    expect(roundTrip(from, to)).toEqual([
      { op: 'add', path: '/containers/0', value: { name: 'sidecar' } },
      { op: 'replace', path: '/containers/1/probe/port', value: 9901 },
    ]);
    expect(roundTrip({ l: [1, 2] }, { l: [1, 2, 3] })).toEqual([{ op: 'add', path: '/l/2', value: 3 }]);
  });

  it('removes keys and replaces what it cannot align', () => {
    expect(roundTrip({ p: { tcpSocket: { port: 1 } } }, { p: { httpGet: { port: 2 } } })).toEqual([
      { op: 'remove', path: '/p/tcpSocket' },
      { op: 'add', path: '/p/httpGet', value: { port: 2 } },
    ]);
    expect(roundTrip({ l: [1, 2, 3] }, { l: [3, 1] })).toEqual([{ op: 'replace', path: '/l', value: [3, 1] }]);
    expect(roundTrip({ l: [1, 2] }, { l: [1, 5] })).toEqual([{ op: 'replace', path: '/l/1', value: 5 }]);
    expect(roundTrip({ a: null }, { a: { b: 1 } })).toEqual([{ op: 'replace', path: '/a', value: { b: 1 } }]);
    expect(jsonPatch({ a: [1] }, { a: [1] })).toEqual([]);
  });
});
