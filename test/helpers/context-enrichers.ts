import { setTimeout as sleep } from 'node:timers/promises'
import { expect } from 'vitest'
import { defineEnricher, type EnrichContext, type RequestContext } from '../../src/index.js'
import type { HttpResult } from './http.js'

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

/**
 * The check both integrations make after 1,000 concurrent `POST
 * /orders/:orderId` requests with `x-request-id: id-<n>` and user `u<n % 37>`:
 * every response echoes its own id, and every line logged with `n` carries
 * its own request's id, user, route and method (and whatever `also` adds).
 */
export function expectRequestsKeptApart(
  responses: HttpResult[],
  lines: Array<Record<string, unknown>>,
  count: number,
  also: (line: Record<string, unknown>, n: number) => boolean = () => true,
): void {
  responses.forEach((r, n) => {
    expect(r.status).toBe(200)
    expect(r.headers['x-request-id']).toBe(`id-${n}`)
    expect(JSON.parse(r.body)).toEqual({ rid: `id-${n}` })
  })
  const inRequest = lines.filter((l) => typeof l.n === 'number')
  expect(inRequest).toHaveLength(3 * count)
  const wrong = inRequest.filter((l) => {
    const n = l.n as number
    const user = `u${n % 37}`
    return (
      l.rid !== `id-${n}` ||
      l.uid !== user ||
      l.route !== '/orders/:orderId' ||
      l.method !== 'POST' ||
      (l.user as { id?: string } | undefined)?.id !== user ||
      !also(l, n)
    )
  })
  expect(wrong).toEqual([])
}
