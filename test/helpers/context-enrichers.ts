import { setTimeout as sleep } from 'node:timers/promises'
import { defineEnricher, type EnrichContext, type RequestContext } from '../../src/index.js'

/** The request context as plain line fields: the test's own tiny enricher. */
export const requestFields = Object.assign(
  (ctx: EnrichContext<RequestContext>) =>
    ctx.context === undefined
      ? undefined
      : { rid: ctx.context.requestId, uid: ctx.context.userId, route: ctx.context.route, method: ctx.context.method },
  { enricherName: 'req' },
)

/** A user lookup keyed on the context's userId, against an in-process "user service". */
export function userLookup(lookups: string[] = []) {
  return defineEnricher<string>({
    name: 'user',
    key: (ctx) => ctx.context?.userId as string | undefined,
    compute: async (id) => {
      lookups.push(id)
      await sleep(1)
      return { user: { id, name: `name-${id}` } }
    },
  })
}
