// `npm run bench:guest`: the guest-side benchmark (bench/guest/*.guest.ts) is not part of `npm test`.
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    root: '.',
    include: ['bench/guest/**/*.guest.ts'],
    testTimeout: 3_600_000,
    hookTimeout: 600_000,
    pool: 'forks',
    fileParallelism: false,
    env: { VHOSTD_DISABLE_CPUMASK_LOCKS: '1' },   // benches of several checkouts may share a CPU
  },
});
