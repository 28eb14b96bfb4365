/**
 * The config's JSON Schema, generated from the zod schema the loader uses (schema.ts), so an
 * editor completes and checks the same keys `check` does. Shipped as docs/sidecar.schema.json
 * (`make schema`); test/unit/config/json-schema.test.ts fails when the two disagree. Rules zod
 * checks in code (units, cross-references, files) are not in it: `check` stays the judge.
 */
import { z } from 'zod';
import { configSchema } from './schema.js';

export function configJsonSchema(): Record<string, unknown> {
  // `input`: what a user writes (durations and sizes as strings, defaults optional).
  const generated = z.toJSONSchema(configSchema, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>;
  return { ...generated, title: 'mtls-sidecar configuration (version: 1)' };
}
