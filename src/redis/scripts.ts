// The store's Lua scripts: each runs atomically on one slot, and is sent by
// its SHA-1 (EVALSHA), its source only when Redis does not know it yet.
import { createHash } from 'node:crypto'
import type { RedisClient } from './options.js'

/** A Lua script and its SHA-1. */
export interface Script {
  readonly source: string
  readonly sha: string
}

function script(source: string): Script {
  return { source, sha: createHash('sha1').update(source).digest('hex') }
}

// GET and PTTL in one round trip, atomically: the remaining lifetime is Redis's, not a clock's.
export const GET = script(`local v = redis.call('GET', KEYS[1])
if not v then return false end
return {v, redis.call('PTTL', KEYS[1])}`)

// KEYS: value key, then tag sets. ARGV: payload, ttl ms, channel ('' for none), message.
export const SET = script(`redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local ttl = tonumber(ARGV[2])
for i = 2, #KEYS do
  redis.call('SADD', KEYS[i], KEYS[1])
  if redis.call('PTTL', KEYS[i]) < ttl then redis.call('PEXPIRE', KEYS[i], ttl) end
end
if ARGV[3] ~= '' then redis.call('PUBLISH', ARGV[3], ARGV[4]) end
return 1`)

// KEYS: value keys. ARGV: channel ('' for none), message. Deleted before published, so a reader told to drop finds nothing old.
export const DEL = script(`if #KEYS > 0 then redis.call('DEL', unpack(KEYS)) end
if ARGV[1] ~= '' then redis.call('PUBLISH', ARGV[1], ARGV[2]) end
return 1`)

// KEYS: tag sets. ARGV: channel ('' for none), message. Deletes every member of each set, then the set.
export const DEL_TAGS = script(`local n = 0
for i = 1, #KEYS do
  local members = redis.call('SMEMBERS', KEYS[i])
  for j = 1, #members, 500 do
    redis.call('DEL', unpack(members, j, math.min(j + 499, #members)))
  end
  n = n + #members
  redis.call('DEL', KEYS[i])
end
if ARGV[1] ~= '' then redis.call('PUBLISH', ARGV[1], ARGV[2]) end
return n`)

export const UNLOCK = script(`if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`)

/** EVALSHA, falling back to EVAL when Redis does not know the script yet (first use, or after a restart). */
export function evalScript(
  client: RedisClient,
  s: Script,
  keys: readonly string[],
  args: readonly string[],
): Promise<unknown> {
  return client.evalsha(s.sha, keys.length, ...keys, ...args).catch((e: unknown) => {
    if (e instanceof Error && e.message.startsWith('NOSCRIPT'))
      return client.eval(s.source, keys.length, ...keys, ...args)
    throw e
  })
}
