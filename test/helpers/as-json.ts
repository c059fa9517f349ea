import { tracingChannel } from 'node:diagnostics_channel'

/**
 * Subscribes to pino's `pino_asJson` tracing channel: `onStart` is handed the
 * arguments pino gives asJson for each line (the object, the message, the
 * level and the time string). Returns the unsubscribe, for a `finally`.
 */
export function onAsJson(onStart: (args: unknown[]) => void): () => void {
  const channel = tracingChannel('pino_asJson')
  const handlers = {
    start: (m: unknown) => onStart((m as { arguments: unknown[] }).arguments),
    end: () => {},
    asyncStart: () => {},
    asyncEnd: () => {},
    error: () => {},
  }
  channel.subscribe(handlers)
  return () => channel.unsubscribe(handlers)
}
