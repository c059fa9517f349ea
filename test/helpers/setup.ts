import { afterEach } from 'vitest'

// Warnings that mean a leak or a misuse fail the test that caused them.
const seen: Error[] = []
const onWarning = (w: Error): void => {
  if (w.name === 'MaxListenersExceededWarning' || w.name === 'PromiseRejectionHandledWarning') seen.push(w)
}
process.on('warning', onWarning)

afterEach(() => {
  if (seen.length > 0) {
    const w = seen.splice(0)
    throw new Error(`process warning during test: ${w.map((e) => `${e.name}: ${e.message}`).join('; ')}`)
  }
})
