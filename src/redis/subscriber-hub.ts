import type { RedisClient } from './options.js'

/** What one store listens for on a subscriber. */
export interface SubscriberHooks {
  readonly channel: string
  readonly sharded: boolean
  readonly onMessage: (channel: string, message: string) => void
  readonly onReady: () => void
  readonly onClose: () => void
}

/**
 * The stores listening on one subscriber client, behind one listener per
 * event: any number of stores can share a subscriber without adding a
 * listener each (which past ten warns, and would run every store's handler
 * for every message of every channel).
 */
export class SubscriberHub {
  readonly #sub: RedisClient
  /** Per event (`message` or `smessage`), per channel, the stores listening. */
  readonly #byChannel = {
    message: new Map<string, Set<SubscriberHooks>>(),
    smessage: new Map<string, Set<SubscriberHooks>>(),
  }
  readonly #all = new Set<SubscriberHooks>()
  readonly #onMessage = (channel: string, message: string): void => this.#dispatch('message', channel, message)
  readonly #onSMessage = (channel: string, message: string): void => this.#dispatch('smessage', channel, message)
  readonly #onReady = (): void => {
    for (const h of [...this.#all]) h.onReady()
  }
  readonly #onClose = (): void => {
    for (const h of [...this.#all]) h.onClose()
  }

  constructor(sub: RedisClient) {
    this.#sub = sub
  }

  add(hooks: SubscriberHooks): void {
    if (this.#all.size === 0) {
      this.#sub.on('message', this.#onMessage)
      this.#sub.on('smessage', this.#onSMessage)
      this.#sub.on('ready', this.#onReady)
      this.#sub.on('close', this.#onClose)
    }
    this.#all.add(hooks)
    const byChannel = this.#byChannel[hooks.sharded ? 'smessage' : 'message']
    const set = byChannel.get(hooks.channel)
    if (set === undefined) byChannel.set(hooks.channel, new Set([hooks]))
    else set.add(hooks)
  }

  /** Removes `hooks`; true when no other store listens on its channel. */
  remove(hooks: SubscriberHooks): boolean {
    if (!this.#all.delete(hooks)) return false
    const byChannel = this.#byChannel[hooks.sharded ? 'smessage' : 'message']
    const set = byChannel.get(hooks.channel)
    set?.delete(hooks)
    const last = set === undefined || set.size === 0
    if (last) byChannel.delete(hooks.channel)
    if (this.#all.size === 0) {
      this.#sub.off('message', this.#onMessage)
      this.#sub.off('smessage', this.#onSMessage)
      this.#sub.off('ready', this.#onReady)
      this.#sub.off('close', this.#onClose)
      hubs.delete(this.#sub)
    }
    return last
  }

  #dispatch(event: 'message' | 'smessage', channel: string, message: string): void {
    const set = this.#byChannel[event].get(channel)
    if (set === undefined) return
    for (const h of [...set]) h.onMessage(channel, message)
  }
}

/** One hub per subscriber client, dropped with the client. */
const hubs = new WeakMap<RedisClient, SubscriberHub>()

/** The hub of `sub`, made on first use. */
export function hubOf(sub: RedisClient): SubscriberHub {
  const found = hubs.get(sub)
  if (found !== undefined) return found
  const hub = new SubscriberHub(sub)
  hubs.set(sub, hub)
  return hub
}
