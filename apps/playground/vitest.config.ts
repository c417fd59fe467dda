import { defineConfig } from 'vitest/config';

// Browser tests: one real server and one chromium per file, run one file at a time (2-core CI).
export default defineConfig({
  test: { include: ['tests/**/*.test.ts'], testTimeout: 30_000, hookTimeout: 60_000, fileParallelism: false },
});
