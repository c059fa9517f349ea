import { createRequire } from 'node:module'

type CreateHash = typeof import('node:crypto').createHash

/**
 * Keys that could reach an object's prototype through `Object.assign` or a
 * merge: dropped from enricher output and from values read back from a store.
 */
export const UNSAFE_KEYS: ReadonlySet<string> = new Set(['__proto__', 'constructor', 'prototype'])

// node:crypto is loaded at the first key long enough to hash, not at import:
// loading it is a large part of this package's import time, and most keys are short.
let createHash: CreateHash | undefined

/** The SHA-256 digest of `key`, as `sha256:<base64url>` (50 characters). */
export function digest(key: string): string {
  createHash ??= (createRequire(import.meta.url)('node:crypto') as { createHash: CreateHash }).createHash
  return `sha256:${createHash('sha256').update(key).digest('base64url')}`
}

/**
 * A key as a cache or a store holds it: itself, or its {@link digest} when
 * longer than `maxKeyLength` characters.
 */
export function storedKey(key: string, maxKeyLength: number): string {
  return key.length > maxKeyLength ? digest(key) : key
}
