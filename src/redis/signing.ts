// HMAC-SHA256 signatures for what the shared tier reads back from Redis:
// invalidation messages and stored values. A signed text is
// `<43 characters of base64url signature>.<body>`; the signature covers a
// context (channel or key name) and the body, so a text signed for one key or
// channel is refused for another.
import { createHmac, timingSafeEqual } from 'node:crypto'

/** Length of a SHA-256 digest in unpadded base64url: a signed text's first characters. */
export const SIGNATURE_LENGTH = 43

/** Signs and checks texts with one secret. */
export class Signer {
  readonly #secret: Buffer

  /** @throws TypeError when `secret` is not a non-empty string or Buffer */
  constructor(secret: unknown) {
    if (typeof secret === 'string') this.#secret = Buffer.from(secret, 'utf8')
    else if (Buffer.isBuffer(secret)) this.#secret = Buffer.from(secret)
    else throw new TypeError(`secret must be a string or a Buffer, received ${typeof secret}`)
    if (this.#secret.length === 0) throw new TypeError('secret must not be empty')
  }

  /** `body` prefixed with its signature for `context`. */
  sign(context: string, body: string): string {
    return `${this.#mac(context, body).toString('base64url')}.${body}`
  }

  /**
   * The body of a text signed by {@link sign} for `context`, `false` when the
   * signature is wrong, `undefined` when the text carries none.
   */
  open(context: string, text: string): string | false | undefined {
    if (text.length <= SIGNATURE_LENGTH || text.charCodeAt(SIGNATURE_LENGTH) !== 46 /* . */) return undefined
    // Compared as text, not decoded: base64url decoding is lenient (`+` for `-`,
    // `/` for `_`, the spare low bits of the last character, skipped bytes), so
    // several texts decode to one digest and a replay guard keyed on the text
    // would take each for a new message. Only the canonical text is accepted.
    const given = Buffer.from(text.slice(0, SIGNATURE_LENGTH), 'utf8')
    const body = text.slice(SIGNATURE_LENGTH + 1)
    const expected = Buffer.from(this.#mac(context, body).toString('base64url'), 'utf8')
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return false
    return body
  }

  #mac(context: string, body: string): Buffer {
    // The context's length first: no two (context, body) pairs give the same input.
    return createHmac('sha256', this.#secret).update(`${context.length}:${context}\n`).update(body).digest()
  }
}
