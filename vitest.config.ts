import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    setupFiles: ['test/helpers/setup.ts'],
    globalSetup: ['test/helpers/global-setup.ts'],
    // Unhandled errors and rejections fail the run (vitest's default, stated here on purpose).
    dangerouslyIgnoreUnhandledErrors: false,
    typecheck: { enabled: true, include: ['test/types/**/*.test-d.ts'] },
    testTimeout: 30_000,
    pool: 'forks',
  },
})
