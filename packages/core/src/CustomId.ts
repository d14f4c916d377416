/**
 * Row identity. A row's `custom_id` is derived from the stage name, the row key and a hash
 * of the rendered request: same row + same request ⇒ same id ⇒ never paid for twice; a
 * changed prompt ⇒ a new id. Ids match `^[A-Za-z0-9_-]{1,64}$`, the strictest provider rule
 * (Anthropic), so they are portable everywhere.
 */
import { sha256 } from "./Hash.js"

export const pattern = /^[A-Za-z0-9_-]{1,64}$/

const clean = /^[A-Za-z0-9_-]+$/

/**
 * What hashed parts look like. A name or key of that very form is hashed as well: kept, it
 * could equal the hash of another (the empty key hashes to `ke3b0c44298fc1c14`, which is also
 * a clean key), and two rows would share an id.
 */
const hashedStage = /^s[0-9a-f]{10}$/
const hashedKey = /^k[0-9a-f]{16}$/

/**
 * What a name or key is hashed from: its UTF-8, lossless for well-formed text. UTF-8 cannot
 * hold a lone surrogate (it becomes U+FFFD, so "\udf48" and "\udebe" would hash alike): text
 * with one is hashed as the byte 0xFF, which no UTF-8 holds, followed by its UTF-16 code units.
 */
const hashed = (text: string): string =>
  sha256(/\p{Cs}/u.test(text) ? Buffer.concat([Buffer.of(0xff), Buffer.from(text, "utf16le")]) : text)

/** The stage part of an id: the stage name if it is already clean and short, else a hash. */
const stagePart = (stage: string): string =>
  clean.test(stage) && stage.length <= 16 && !hashedStage.test(stage) ? stage : `s${hashed(stage).slice(0, 10)}`

/**
 * The key part of an id. A clean, short key is kept readable (so a user can grep for it);
 * anything else is hashed rather than sanitised, because sanitising can map two keys onto one.
 */
const keyPart = (key: string): string =>
  clean.test(key) && key.length <= 24 && !hashedKey.test(key) ? key : `k${hashed(key).slice(0, 16)}`

/**
 * `<stage>-<key>-<request hash>`. "-" may occur inside a clean key, so the request hash is
 * always the last 16 characters: the id stays unambiguous when read from the right.
 */
export const make = (stage: string, key: string, requestHash: string): string => {
  // at most 16 + 1 + 24 + 1 + 16 = 58 characters
  return `${stagePart(stage)}-${keyPart(key)}-${requestHash.slice(0, 16)}`
}

/**
 * Stable keys for rows without a user key: a content hash plus an occurrence counter, so
 * identical rows stay distinct. Memory grows only with the number of distinct duplicated rows.
 */
export const contentKeys = () => {
  // 52-bit numbers instead of strings keep a million keys in a few MB; a (very rare) false
  // "seen" only turns a key into `<hash>_1`, which is still unique and deterministic.
  const seen = new Set<number>()
  const repeats = new Map<string, number>()
  return (contentHash: string): string => {
    const h = contentHash.slice(0, 20)
    const n52 = parseInt(h.slice(0, 13), 16)
    if (!seen.has(n52)) {
      seen.add(n52)
      return h
    }
    const n = (repeats.get(h) ?? 0) + 1
    repeats.set(h, n)
    return `${h}_${n}`
  }
}
