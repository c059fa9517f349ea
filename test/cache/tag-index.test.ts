import { describe, expect, it } from 'vitest'
import { TagIndex } from '../../src/cache/tag-index.js'

describe('TagIndex', () => {
  it('finds every key carrying a tag, and no key for a tag never given', () => {
    const index = new TagIndex()
    index.add('a', ['user', 'org:1'])
    index.add('b', ['user'])
    expect(index.keysOf('user').sort()).toEqual(['a', 'b'])
    expect(index.keysOf('org:1')).toEqual(['a'])
    expect(index.keysOf('nobody')).toEqual([])
  })

  it('records a key once per tag however often it is added', () => {
    const index = new TagIndex()
    index.add('a', ['t', 't'])
    index.add('a', ['t'])
    expect(index.keysOf('t')).toEqual(['a'])
  })

  it('removes a key from the tags named only, and ignores tags or keys it does not hold', () => {
    const index = new TagIndex()
    index.add('a', ['t', 'u'])
    index.add('b', ['t'])
    index.remove('a', ['t', 'never'])
    index.remove('zzz', ['u'])
    expect(index.keysOf('t')).toEqual(['b'])
    expect(index.keysOf('u')).toEqual(['a'])
  })

  it('hands out a copy: the keys may be removed while it is walked', () => {
    const index = new TagIndex()
    for (let i = 0; i < 1_000; i++) index.add(`k${i}`, ['t'])
    const seen: string[] = []
    for (const k of index.keysOf('t')) {
      seen.push(k)
      index.remove(k, ['t'])
    }
    expect(seen).toHaveLength(1_000)
    expect(index.keysOf('t')).toEqual([])
  })

  it('has no key for a tag whose last key went, and takes the tag again later', () => {
    const index = new TagIndex()
    index.add('a', ['once'])
    index.remove('a', ['once'])
    index.add('b', ['other'])
    expect(index.keysOf('once')).toEqual([])
    index.add('c', ['once'])
    expect(index.keysOf('once')).toEqual(['c'])
  })

  it('forgets everything on clear()', () => {
    const index = new TagIndex()
    index.add('a', ['t'])
    index.clear()
    expect(index.keysOf('t')).toEqual([])
  })

  it('takes tags that look like Object.prototype members as plain names', () => {
    const index = new TagIndex()
    index.add('a', ['__proto__', 'constructor', 'toString'])
    expect(index.keysOf('__proto__')).toEqual(['a'])
    expect(index.keysOf('constructor')).toEqual(['a'])
    expect(index.keysOf('hasOwnProperty')).toEqual([])
  })
})
