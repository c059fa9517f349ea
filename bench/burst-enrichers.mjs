// The burst's keyed enricher in the worker: a user lookup keyed on the line's
// `uid`, answering at the next turn of the loop (a backend on loopback).
import { defineEnricher } from 'pino-enrich'

export default [
  defineEnricher({
    name: 'user',
    key: (ctx) => ctx.record.uid,
    compute: (id) => new Promise((resolve) => setImmediate(() => resolve({ user: { id, plan: 'pro' } }))),
  }),
]
