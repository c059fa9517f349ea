import pino from 'pino'
import { describe, expect, it } from 'vitest'
import {
  type ContextSlot,
  ContextWriters,
  compileContextWriter,
  loopWriter,
  MAX_CONTEXT_VALUE_LENGTH,
} from '../../src/context/writer.js'
import { bindingKeys } from '../../src/util/bindings.js'
import { runChild } from '../helpers/child.js'

// Keys that would break naive code generation: quotes, backslashes, line
// separators, template and comment syntax, numeric-like names.
const AWKWARD = ['a"b', "c'd", 'e\\f', 'g\nh', 'i\u2028j', '$' + '{k}', '*/l', '0', '1e3', 'µ']

function slots(): ContextSlot[] {
  return [
    { from: AWKWARD, to: AWKWARD.map((k) => `out:${k}`), minLevel: Number.NEGATIVE_INFINITY, errors: 0 },
    { from: ['warnOnly'], to: ['warnOnly'], minLevel: 40, errors: 0 },
    { from: ['boom', 'after'], to: ['boom', 'after'], minLevel: Number.NEGATIVE_INFINITY, errors: 0 },
    { from: ['last'], to: ['last'], minLevel: Number.NEGATIVE_INFINITY, errors: 0 },
  ]
}

function context(): Record<string, unknown> {
  const c: Record<string, unknown> = Object.fromEntries(AWKWARD.map((k, i) => [k, `v${i}`]))
  c['1e3'] = 3
  c.µ = false
  c['0'] = { nested: true } // not a primitive: left out
  c.warnOnly = 'w'
  Object.defineProperty(c, 'boom', {
    enumerable: true,
    get() {
      throw new Error('getter')
    },
  })
  c.after = 'a'
  c.last = 'l'
  return c
}

/** Records which slots refused a value, in order, as the pipeline records problems. */
const refused = (slot: ContextSlot, so: string[] | undefined): string[] => [...(so ?? []), slot.to?.[0] ?? '']

describe.each([
  ['compiled', compileContextWriter],
  ['loop', loopWriter],
])('context writer (%s)', (_name, make) => {
  it('copies string, number and boolean values under awkward keys, renamed', () => {
    const s = slots()
    const out: Record<string, unknown> = {}
    make(s, refused)(context(), 30, out)
    const expected: Record<string, unknown> = Object.fromEntries(AWKWARD.map((k, i) => [`out:${k}`, `v${i}`]))
    expected['out:1e3'] = 3
    expected['out:µ'] = false
    delete expected['out:0']
    expected.last = 'l'
    expect(out).toEqual(expected)
  })

  it("honours a slot's minLevel and counts a throwing getter against its own slot only", () => {
    const s = slots()
    const write = make(s, refused)
    const info: Record<string, unknown> = {}
    const warn: Record<string, unknown> = {}
    write(context(), 30, info)
    write(context(), 40, warn)
    expect(info).not.toHaveProperty('warnOnly')
    expect(warn.warnOnly).toBe('w')
    expect(info).not.toHaveProperty('boom')
    expect(info).not.toHaveProperty('after')
    expect(s.map((x) => x.errors)).toEqual([0, 0, 2, 0])
  })

  it('is the generated function, not the fallback, when code generation is allowed', () => {
    expect(compileContextWriter(slots(), refused).name).toBe('writeContexts')
    expect(loopWriter(slots(), refused).name).not.toBe('writeContexts')
  })

  it(`refuses a string longer than ${MAX_CONTEXT_VALUE_LENGTH} characters, not cut, and reports each slot that did`, () => {
    const s: ContextSlot[] = [
      { from: ['userId', 'requestId'], to: ['uid', 'rid'], minLevel: Number.NEGATIVE_INFINITY, errors: 0 },
      { from: ['route'], to: ['route'], minLevel: Number.NEGATIVE_INFINITY, errors: 0 },
      { from: ['method'], to: ['method'], minLevel: Number.NEGATIVE_INFINITY, errors: 0 },
    ]
    const write = make(s, refused)
    const edge = 'e'.repeat(MAX_CONTEXT_VALUE_LENGTH)
    const out: Record<string, unknown> = {}
    const c = { userId: 'u'.repeat(15 * 1024), requestId: 'r1', route: `/${'p'.repeat(8 * 1024)}`, method: 'GET' }
    expect(write(c, 30, out)).toEqual(['uid', 'route'])
    expect(out).toEqual({ rid: 'r1', method: 'GET' })
    const ok: Record<string, unknown> = {}
    expect(write({ userId: edge, route: '/a' }, 30, ok)).toBeUndefined()
    expect(ok).toEqual({ uid: edge, route: '/a' })
  })

  it('leaves out the output keys it is told to skip', () => {
    const out: Record<string, unknown> = {}
    make(slots(), refused, new Set(['last', 'out:a"b']))(context(), 30, out)
    expect(out).not.toHaveProperty('last')
    expect(out).not.toHaveProperty('out:a"b')
    expect(out["out:c'd"]).toBe('v1')
  })

  it('writes nothing for no slots', () => {
    const out = {}
    make([], refused)({ a: 1 }, 30, out)
    expect(out).toEqual({})
  })
})

describe('ContextWriters', () => {
  const request: ContextSlot[] = [
    { from: ['requestId', 'method'], to: ['reqId', 'reqMethod'], minLevel: Number.NEGATIVE_INFINITY, errors: 0 },
  ]
  const c = { requestId: 'r1', method: 'GET' }
  const written = (w: ContextWriters<string[]>, logger: unknown): Record<string, unknown> => {
    const out: Record<string, unknown> = {}
    w.for(bindingKeys(logger))(c, 30, out)
    return out
  }

  it("skips an output key the logger's bindings carry at their top level, and only that", () => {
    const w = new ContextWriters(request, refused)
    const root = pino({ enabled: false })
    expect(written(w, root)).toEqual({ reqId: 'r1', reqMethod: 'GET' })
    expect(written(w, root.child({ reqId: 'bound' }))).toEqual({ reqMethod: 'GET' })
    // Nested, or only inside a value: not a top-level binding.
    expect(written(w, root.child({ req: { reqId: 'x' }, note: '"reqId":1' }))).toEqual({
      reqId: 'r1',
      reqMethod: 'GET',
    })
    expect(written(w, root)).toEqual({ reqId: 'r1', reqMethod: 'GET' })
  })

  it('sees setBindings() and gives a non-logger the full writer', () => {
    const w = new ContextWriters(request, refused)
    const child = pino({ enabled: false }).child({ a: 1 })
    expect(written(w, child)).toEqual({ reqId: 'r1', reqMethod: 'GET' })
    child.setBindings({ reqMethod: 'POST' })
    expect(written(w, child)).toEqual({ reqId: 'r1' })
    expect(w.for(bindingKeys(undefined))).toBe(w.all)
    expect(w.for(bindingKeys({}))).toBe(w.all)
  })

  it('gives each set of bound keys its own writer, whichever was asked for last', () => {
    const w = new ContextWriters(request, refused)
    const run = (bound: readonly string[]): Record<string, unknown> => {
      const out: Record<string, unknown> = {}
      w.for(bound)(c, 30, out)
      return out
    }
    const reqId = ['pid', 'reqId']
    const method = ['reqMethod']
    expect(run(reqId)).toEqual({ reqMethod: 'GET' })
    expect(run(method)).toEqual({ reqId: 'r1' })
    expect(run(['reqId'])).toEqual({ reqMethod: 'GET' })
    expect(run(['other'])).toEqual({ reqId: 'r1', reqMethod: 'GET' })
    expect(run(method)).toEqual({ reqId: 'r1' })
    expect(w.fragmentFor(reqId, new Set(), new Set())?.text(c)).toBe(',"reqMethod":"GET"')
    expect(w.fragmentFor(method, new Set(), new Set())?.text(c)).toBe(',"reqId":"r1"')
  })
})

describe('context writer without code generation', () => {
  it('falls back to the loop under --disallow-code-generation-from-strings, with the same lines', async () => {
    const runs = await Promise.all([
      runChild('context-fields.ts'),
      runChild('context-fields.ts', [], { env: { NODE_OPTIONS: '--disallow-code-generation-from-strings' } }),
    ])
    const [withCodegen, without] = runs.map((r) => {
      expect(r.code).toBe(0)
      expect(r.stderr.trim()).toBe('1')
      return r.stdout
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as Record<string, unknown>)
    })
    expect(withCodegen?.[0]).toMatchObject({ codegen: true, reqId: 'r1', 'user\\id': 7, msg: 'inside' })
    expect(without?.[0]).toMatchObject({ codegen: false, reqId: 'r1', 'user\\id': 7, msg: 'inside' })
    expect(without?.[0]).not.toHaveProperty('route')
    const strip = (l: Record<string, unknown> | undefined) => ({ ...l, time: 0, pid: 0, codegen: 0 })
    expect(without?.map(strip)).toEqual(withCodegen?.map(strip))
  })
})
