// Loaded with `--import` into every process of a compat run (see compat.mjs):
// a `require()` of pino from the suite's own files gets a wrapper that builds
// the logger through `pipeline.pinoOptions()`. Plain runs load nothing.
import { createRequire } from 'node:module'
import { pathToFileURL } from 'node:url'
import { isMainThread } from 'node:worker_threads'

const mode = process.env.COMPAT_MODE
const pinoPath = process.env.COMPAT_PINO
// Worker threads (pino's transports) build their loggers in pino itself: nothing to wrap there.
if (isMainThread && mode !== undefined && mode !== 'plain' && pinoPath !== undefined) {
  const require = createRequire(import.meta.url)
  const Module = require('node:module')
  const SonicBoom = createRequire(pinoPath)('sonic-boom')
  const enrich = await import(pathToFileURL(process.env.COMPAT_ENRICH).href)
  const field = process.env.COMPAT_FIELD
  const enrichers =
    field === undefined ? [] : [enrich.defineEnricher({ name: 'compat', compute: () => ({ [field]: 'x' }) })]
  const pipeline = enrich.createPipeline({ enrichers })
  if (field !== undefined) await pipeline.ready()
  // Importing pino-enrich loaded pino.js, which reads process.pid and
  // os.hostname() when it loads: a test that mocks them before its first
  // require('pino') gets a pino.js of its own, as it would without us.
  delete require.cache[pinoPath]
  const blind = field !== undefined && process.env.COMPAT_BLIND === '1'
  const inner = `"${field}":"x"`
  // The field is written whole, so cutting its text leaves the line as plain pino writes it.
  const strip = (s) =>
    typeof s !== 'string' ? s : s.replace(`,${inner}`, '').replace(`{${inner},`, '{').replace(`{${inner}}`, '{}')

  if (blind) {
    // pino's asJson tracing events, as a subscriber sees them: without the field.
    const dc = require('node:diagnostics_channel')
    const views = new WeakMap()
    const seen = (args) => {
      let v = views.get(args)
      if (v === undefined) {
        const first = args[0]
        const rest = Array.from(args).slice(1)
        if (typeof first === 'object' && first !== null && field in first) {
          const { [field]: _, ...kept } = first
          v = [kept, ...rest]
        } else v = [first, ...rest]
        views.set(args, v)
      }
      return v
    }
    const wrapped = new WeakMap()
    const wrapHandler = (handler) => {
      let w = wrapped.get(handler)
      if (w === undefined) {
        w = (event, name) =>
          handler(
            event && typeof event === 'object' && event.arguments
              ? { ...event, arguments: seen(event.arguments), result: strip(event.result) }
              : event,
            name,
          )
        wrapped.set(handler, w)
      }
      return w
    }
    const isAsJson = (name) => typeof name === 'string' && name.startsWith('tracing:pino_asJson:')
    const { subscribe, unsubscribe } = dc
    dc.subscribe = (name, handler) => subscribe(name, isAsJson(name) ? wrapHandler(handler) : handler)
    dc.unsubscribe = (name, handler) => unsubscribe(name, isAsJson(name) ? wrapHandler(handler) : handler)
  }

  const isStream = (o) => typeof o === 'string' || o instanceof SonicBoom || o?.writable || o?._writableState

  function build(opts) {
    const input = { ...opts, mode }
    if (blind) {
      const user = opts?.hooks?.streamWrite
      input.hooks = { ...opts?.hooks, streamWrite: (s) => strip(typeof user === 'function' ? user(s) : s) }
    }
    return pipeline.pinoOptions(input)
  }

  /** The wrapper of one loaded pino.js: its statics, its `pino(opts, stream)` through pinoOptions(). */
  const wrappers = new WeakMap()
  const wrap = (real) => {
    let wrapped = wrappers.get(real)
    if (wrapped !== undefined) return wrapped
    wrapped = function pino(...args) {
      const [opts, stream] = args
      if (opts !== undefined && opts !== null && isStream(opts)) return real(build({}), opts)
      const built = build(opts ?? {})
      return args.length < 2 ? real(built) : real(built, stream)
    }
    Object.assign(wrapped, real)
    wrapped.default = wrapped
    wrapped.pino = wrapped
    wrappers.set(real, wrapped)
    return wrapped
  }

  const from = (process.env.COMPAT_WRAP_FROM ?? '').split('\n').filter(Boolean)
  const wraps = (file) =>
    typeof file === 'string' &&
    !file.includes('/node_modules/') &&
    from.some((f) => file === f || file.startsWith(`${f}/`))
  const load = Module._load
  Module._load = function (request, parent, isMain) {
    const exported = load.call(this, request, parent, isMain)
    if (typeof exported !== 'function' || !wraps(parent?.filename)) return exported
    let file
    try {
      file = Module._resolveFilename(request, parent, isMain)
    } catch {
      return exported
    }
    return file === pinoPath ? wrap(exported) : exported
  }
}
