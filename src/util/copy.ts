import { isRequestStore } from '../context/request-store.js'
import type { Fields } from '../enricher.js'

/**
 * Copies what a deferred line will show, at the call: plain objects (and a
 * request store, its accessors read), arrays and errors (own properties,
 * `cause`, prototype kept, so `instanceof` and
 * pino's `err` serializer see the same thing), to any depth, cycles kept as
 * cycles. Anything else (a `Date`, a `Map`, a class instance such as a request
 * a serializer reads) is kept by reference: copying it would change what a
 * serializer or `toJSON` sees. A value that throws while read (a getter, a
 * Proxy trap) is kept by reference whole, to fail, if at all, where pino
 * would have failed with it.
 *
 * @param budget most objects and array elements copied (default 10 000); past it the rest are kept by reference
 */
export function copyAtCall(value: unknown, budget = 10_000): unknown {
  if (typeof value !== 'object' || value === null) return value
  try {
    return copy(value, new Map(), { left: budget })
  } catch {
    return value
  }
}

function copy(v: unknown, seen: Map<object, unknown>, budget: { left: number }): unknown {
  if (typeof v !== 'object' || v === null) return v
  const known = seen.get(v)
  if (known !== undefined) return known
  if (budget.left <= 0) return v
  if (Array.isArray(v)) {
    // Its elements count: an array longer than what is left (a sparse one of
    // length 2 ** 32 - 1 costs pino 100 elements) is kept by reference.
    if (v.length >= budget.left) return v
    budget.left -= 1 + v.length
    const out: unknown[] = new Array(v.length)
    seen.set(v, out)
    for (let i = 0; i < v.length; i++) out[i] = copy(v[i], seen, budget)
    return out
  }
  const proto: unknown = Object.getPrototypeOf(v)
  // A request store is read through accessors, as the plain object it replaced was: its values at the call.
  const store = proto !== Object.prototype && proto !== null && isRequestStore(v)
  if (proto === Object.prototype || proto === null || store) {
    budget.left--
    const out: Record<string, unknown> = proto === null ? Object.create(null) : {}
    seen.set(v, out)
    for (const k of Object.keys(v)) {
      const value = copy((v as Record<string, unknown>)[k], seen, budget)
      // defineProperty: a key such as __proto__ stays an own key, as in the original.
      if (k === '__proto__')
        Object.defineProperty(out, k, { value, enumerable: true, writable: true, configurable: true })
      else out[k] = value
    }
    return out
  }
  if (v instanceof Error) {
    budget.left--
    const out = Object.create(proto as object) as Record<string, unknown>
    seen.set(v, out)
    for (const k of Object.getOwnPropertyNames(v)) {
      const d = Object.getOwnPropertyDescriptor(v, k) as PropertyDescriptor
      Object.defineProperty(out, k, {
        value: copy('value' in d ? d.value : (v as unknown as Record<string, unknown>)[k], seen, budget),
        enumerable: d.enumerable === true,
        writable: true,
        configurable: true,
      })
    }
    return out
  }
  return v
}

/**
 * `target` with `source`'s own enumerable keys, an own `__proto__` key (what
 * `JSON.parse` makes of untrusted input) kept as an own key, as pino writes it.
 */
export function assignOwn(target: Fields, source: object): Fields {
  return Object.hasOwn(source, '__proto__') ? defineOwn(target, source) : Object.assign(target, source)
}

/** {@link assignOwn} for a source with an own `__proto__` key: kept out of the common path, which pino's write inlines. */
function defineOwn(target: Fields, source: object): Fields {
  for (const k of Object.keys(source)) {
    Object.defineProperty(target, k, {
      value: (source as Fields)[k],
      enumerable: true,
      writable: true,
      configurable: true,
    })
  }
  return target
}
