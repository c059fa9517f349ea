// node --test reporter for compat.mjs: one line per leaf test, `outcome<TAB>file<TAB>name > path`.
// A test with subtests is represented by its leaves; one failing without a
// failing leaf (a hook, a plan) counts itself.
export default async function* compatReporter(source) {
  const files = new Map()
  const state = (file) => {
    let s = files.get(file)
    if (s === undefined) {
      s = { names: [], childSeen: [], childFailed: [] }
      files.set(file, s)
    }
    return s
  }
  for await (const event of source) {
    if (event.type === 'test:start') {
      const s = state(event.data.file)
      s.names[event.data.nesting] = event.data.name
      s.names.length = event.data.nesting + 1
      continue
    }
    if (event.type !== 'test:pass' && event.type !== 'test:fail') continue
    const { file, nesting, name, skip, todo } = event.data
    const s = state(file)
    const leaf = s.childSeen[nesting + 1] !== true
    const childFailed = s.childFailed[nesting + 1] === true
    s.childSeen[nesting + 1] = false
    s.childFailed[nesting + 1] = false
    s.childSeen[nesting] = true
    const failed = event.type === 'test:fail' && !todo
    if (failed) s.childFailed[nesting] = true
    if (!leaf && (!failed || childFailed)) continue
    const path = [...s.names.slice(0, nesting), name].join(' > ')
    const outcome = skip || todo ? 'skip' : failed ? 'fail' : 'pass'
    yield `${outcome}\t${file ?? ''}\t${path}\n`
  }
}
