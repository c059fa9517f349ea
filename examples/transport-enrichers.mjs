// The enrichers the transport worker loads. Plain JavaScript, named by path in
// the transport options: options are structured-cloned, functions cannot cross.
import { defineEnricher } from 'pino-enrich'

export default [
  defineEnricher({ name: 'service', compute: () => ({ service: { name: 'checkout', version: '1.4.2' } }) }),
  defineEnricher({
    name: 'user',
    key: (ctx) => ctx.context?.userId,
    // Stands in for a user-service lookup: cached, with its own timeout and breaker.
    compute: async (id) => ({ user: { id, plan: id.endsWith('7') ? 'pro' : 'free' } }),
    timeoutMs: 50,
    cache: { ttlMs: 60_000, max: 10_000 },
  }),
  Object.assign((ctx) => (ctx.context ? { requestId: ctx.context.requestId } : undefined), { enricherName: 'request' }),
]
