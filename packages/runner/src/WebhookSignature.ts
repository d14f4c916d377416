/**
 * Verifying a Standard Webhooks delivery (what OpenAI sends): headers `webhook-id`,
 * `webhook-timestamp` (Unix seconds) and `webhook-signature` (space-separated `v1,<base64>`
 * entries, any of which may match: a sender rotating its secret signs with both), the signature
 * being HMAC-SHA256, keyed by the bytes of the base64 after `whsec_`, of
 * `<id>.<timestamp>.<raw body>`. Compared in constant time. A timestamp more than the tolerance
 * (5 minutes) from now is refused, and an id seen before within that window (`Replays`) is not
 * acted on again: together they stop a captured delivery from being played again.
 */
import { createHmac, timingSafeEqual } from "node:crypto"

/** The environment variable that holds the signing secret (`whsec_…`). */
export const secretVariable = "SLUICE_WEBHOOK_SECRET"

export const defaultToleranceSeconds = 5 * 60

/** Why a delivery is refused: 400 for a malformed one, 401 for one that is not authentic or not fresh. */
export interface Rejection {
  readonly status: 400 | 401
  readonly reason: string
}

/** The key of a `whsec_<base64>` secret, or why it is not one. */
export const parseSecret = (secret: string | undefined): { readonly key: Buffer } | { readonly problem: string } => {
  if (secret === undefined || secret === "") return { problem: "is not set" }
  if (!secret.startsWith("whsec_")) return { problem: "must start with whsec_ (then the base64 key)" }
  const b64 = secret.slice("whsec_".length)
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) return { problem: "must be whsec_ followed by a base64 key" }
  const key = Buffer.from(b64, "base64")
  return key.length === 0 ? { problem: "holds an empty key" } : { key }
}

/** The base64 signature of a message, as the spec computes it. */
export const sign = (key: Buffer, id: string, timestamp: string, body: string | Buffer): Buffer =>
  createHmac("sha256", key).update(`${id}.${timestamp}.`).update(body).digest()

const header = (headers: Readonly<Record<string, string | ReadonlyArray<string> | undefined>>, name: string): string | undefined => {
  const v = headers[name]
  return typeof v === "string" ? v : undefined
}

export interface Verified {
  readonly id: string
  readonly timestamp: number
}

/** Checks a delivery's headers and signature against `key` at `nowSeconds`. */
export const verify = (
  key: Buffer,
  headers: Readonly<Record<string, string | ReadonlyArray<string> | undefined>>,
  body: Buffer,
  nowSeconds: number,
  toleranceSeconds = defaultToleranceSeconds
): Verified | Rejection => {
  const id = header(headers, "webhook-id")
  const ts = header(headers, "webhook-timestamp")
  const sig = header(headers, "webhook-signature")
  if (id === undefined || ts === undefined || sig === undefined) return { status: 400, reason: "missing webhook-id, webhook-timestamp or webhook-signature header" }
  if (id === "" || id.length > 256) return { status: 400, reason: "webhook-id is empty or too long" }
  if (!/^\d{1,12}$/.test(ts)) return { status: 400, reason: "webhook-timestamp is not Unix seconds" }
  const expected = sign(key, id, ts, body)
  const matches = sig.split(" ").some((entry) => {
    const comma = entry.indexOf(",")
    if (comma === -1 || entry.slice(0, comma) !== "v1") return false
    const given = Buffer.from(entry.slice(comma + 1), "base64")
    // timingSafeEqual needs equal lengths; a length says nothing about the key.
    return given.length === expected.length && timingSafeEqual(given, expected)
  })
  if (!matches) return { status: 401, reason: "no v1 signature matches" }
  const timestamp = Number(ts)
  if (Math.abs(nowSeconds - timestamp) > toleranceSeconds) return { status: 401, reason: `timestamp ${timestamp} is more than ${toleranceSeconds} s from now` }
  return { id, timestamp }
}

export const isRejection = (r: Verified | Rejection): r is Rejection => "status" in r

/**
 * The ids of authentic deliveries within the tolerance window. An id older than the window
 * needs no memory (its timestamp is refused anyway); beyond `max` ids, the oldest are forgotten.
 */
export class Replays {
  private readonly seen = new Map<string, number>()

  constructor(
    private readonly toleranceSeconds = defaultToleranceSeconds,
    private readonly max = 100_000
  ) {}

  /** Records a verified delivery; false when its id was seen within the window (a replay). */
  admit(delivery: Verified, nowSeconds: number): boolean {
    for (const [id, ts] of this.seen) {
      if (ts + this.toleranceSeconds >= nowSeconds && this.seen.size < this.max) break
      this.seen.delete(id)
    }
    if (this.seen.has(delivery.id)) return false
    this.seen.set(delivery.id, delivery.timestamp)
    return true
  }

  get size(): number {
    return this.seen.size
  }
}
