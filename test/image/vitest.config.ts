// `make test-image`: the image smoke test alone (it builds the image and runs containers, so the
// main suite's config leaves test/image out).
import path from 'node:path';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  root: path.resolve(import.meta.dirname, '../..'),
  test: {
    include: ['test/image/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 1_200_000,
    fileParallelism: false,
  },
});
