/** Generated request ids (server/request-id.ts): UUIDv4 text, and not repeating. */
import { describe, expect, it } from 'vitest';
import { newRequestId } from '../../../src/server/request-id.js';

const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

describe('newRequestId', () => {
  it('is RFC 9562 version-4 text, unique across many batches of randomness', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 5000; i++) {
      const id = newRequestId();
      expect(id).toMatch(UUID_V4);
      seen.add(id);
    }
    expect(seen.size).toBe(5000);
  });

  it('uses every hex digit in every random position (no stuck nibble)', () => {
    const positions = Array.from({ length: 36 }, () => new Set<string>());
    // eslint-disable-next-line @typescript-eslint/no-misused-spread -- request ids are ASCII
    for (let i = 0; i < 2000; i++) [...newRequestId()].forEach((c, j) => positions[j]?.add(c));
    for (let j = 0; j < 36; j++) {
      if ([8, 13, 18, 23].includes(j)) expect([...(positions[j] ?? [])]).toEqual(['-']);
      else if (j === 14) expect([...(positions[j] ?? [])]).toEqual(['4']);
      else if (j === 19) expect((positions[j] ?? new Set()).size).toBe(4);
      else expect((positions[j] ?? new Set()).size).toBe(16);
    }
  });
});
