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
    // `npm test` measures the library's own files in its first run (the reliability files,
    // which run after it, drive children and workers that load dist/ and are not counted).
    coverage: {
      provider: 'v8',
      include: ['src/**/*.ts', 'enrichers/**/*.ts'],
      reporter: ['text-summary'],
      reportOnFailure: true,
    },
  },
})
