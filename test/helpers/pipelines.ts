import { vi } from 'vitest'
import { createPipeline, type Pipeline } from '../../src/index.js'

/**
 * createPipeline for tests: `closePipelines()` (in an afterEach) closes every
 * pipeline made since, running fake timers meanwhile when they are on, so a
 * close bounded by closeTimeoutMs completes.
 */
export function trackPipelines(): {
  pipeline: (...args: Parameters<typeof createPipeline>) => Pipeline
  closePipelines: () => Promise<void>
} {
  let made: Pipeline[] = []
  return {
    pipeline: (...args) => {
      const p = createPipeline(...args)
      made.push(p)
      return p
    },
    closePipelines: async () => {
      const closing = Promise.all(made.map((p) => p.close()))
      made = []
      if (vi.isFakeTimers()) await vi.runAllTimersAsync()
      await closing
    },
  }
}
