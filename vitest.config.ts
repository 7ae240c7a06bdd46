import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/unit/**/*.test.ts', 'test/integration/**/*.test.ts', 'test/e2e/**/*.e2e.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 600_000,
    pool: 'forks',
    fileParallelism: false,
    // tests run several daemons on CPU 0 at once; test/integration/startup.test.ts checks the locks
    env: { VHOSTD_DISABLE_CPUMASK_LOCKS: '1' },
  },
});
