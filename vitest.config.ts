import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/support/globalSetup.ts'],
    pool: 'forks',
    // 2 cores: more parallel files only fight over them.
    maxWorkers: 2,
    // Generous: a timeout only guards against hangs; real work on 2 shared cores can take minutes.
    testTimeout: 420_000,
    hookTimeout: 300_000,
  },
});
