/**
 * Which keys carry each tag, for {@link SmartCache.invalidateTags}: kept in
 * step with the entries (a key is added when an entry with tags is stored,
 * removed when the entry goes), so a tag finds its keys without a walk.
 */
export class TagIndex {
  readonly #keys = new Map<string, Set<string>>()

  /** Records that `k` carries every tag of `tags`. */
  add(k: string, tags: readonly string[]): void {
    for (const tag of tags) {
      const keys = this.#keys.get(tag)
      if (keys === undefined) this.#keys.set(tag, new Set([k]))
      else keys.add(k)
    }
  }

  /** Records that `k` carries none of `tags` any more; a tag left with no key is forgotten. */
  remove(k: string, tags: readonly string[]): void {
    for (const tag of tags) {
      const keys = this.#keys.get(tag)
      if (keys === undefined) continue
      keys.delete(k)
      if (keys.size === 0) this.#keys.delete(tag)
    }
  }

  /** The keys carrying `tag`, as a copy: forgetting them while walking it is safe. */
  keysOf(tag: string): string[] {
    const keys = this.#keys.get(tag)
    return keys === undefined ? [] : [...keys]
  }

  /** Forgets every tag. */
  clear(): void {
    this.#keys.clear()
  }
}
