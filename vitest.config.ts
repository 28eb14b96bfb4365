import { configDefaults, defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // The image smoke test builds and runs containers: `make test-image`, with its own config.
    exclude: [...configDefaults.exclude, 'test/image/**'],
    globalSetup: ['test/global-setup.ts'],
    testTimeout: 20_000,
    hookTimeout: 30_000,
    // Real sockets and real servers: keep parallelism modest on a 2-core machine.
    maxWorkers: 2,
  },
});
