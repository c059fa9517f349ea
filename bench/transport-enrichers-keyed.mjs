// transport-enrichers.mjs plus a keyed user lookup on the request's userId:
// the worker step with one keyed enricher, its value cached after the first line.
import { defineEnricher } from 'pino-enrich'
import base from './transport-enrichers.mjs'

export default [
  ...base,
  defineEnricher({
    name: 'user',
    key: (ctx) => ctx.context?.userId,
    compute: (id) => ({ user: { id, plan: 'pro' } }),
  }),
]
