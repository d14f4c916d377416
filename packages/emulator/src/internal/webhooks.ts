/**
 * OpenAI-style webhooks: when an OpenAI batch ends (completed, failed, expired, cancelled) the
 * emulator POSTs an event to the configured URL, signed as the Standard Webhooks spec says
 * (headers `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256 of
 * "<id>.<timestamp>.<body>">`, the key being the base64 after `whsec_`). The body is OpenAI's:
 * `{"object":"event","id":"evt_…","type":"batch.completed","created_at":…,"data":{"id":"batch_…"}}`.
 *
 * Nothing in the emulator ticks (lifecycle.ts): while webhooks are on, a sweep looks at every
 * live batch a few times a second and so notices the ones that ended (after a clock advance,
 * or in real time). For tests, `send` delivers one event on demand, also forged (signed with
 * another key), stale (a timestamp ten minutes old) or replayed (an earlier delivery again,
 * byte for byte). Every delivery is recorded (`GET /_emulator/webhooks`), never the secret.
 */
import { createHmac, randomBytes } from "node:crypto"
import { invalidRequest } from "./errors.js"
import { randomHex } from "./hash.js"

export type Variant = "valid" | "forged" | "stale" | "replay"

export interface Delivery {
  readonly webhook_id: string
  readonly type: string
  readonly batch_id: string
  readonly variant: Variant
  /** The receiver's status on the last attempt; null when it could not be reached. */
  readonly status: number | null
  readonly attempts: number
}

interface Message {
  readonly id: string
  readonly timestamp: number
  readonly body: string
  readonly signature: string
  readonly type: string
  readonly batchId: string
}

/** The signature header value of a message under the key of `secret` (`whsec_<base64>`). */
export const signature = (secret: string, id: string, timestamp: number, body: string): string =>
  `v1,${createHmac("sha256", Buffer.from(secret.slice("whsec_".length), "base64")).update(`${id}.${timestamp}.${body}`).digest("base64")}`

const validSecret = (secret: unknown): secret is string =>
  typeof secret === "string" && /^whsec_[A-Za-z0-9+/]+={0,2}$/.test(secret) && Buffer.from(secret.slice(6), "base64").length >= 16

/** How many deliveries are remembered (for the test API and replays). */
const KEEP = 1000

export class Webhooks {
  private target: { readonly url: string; readonly secret: string } | undefined
  private readonly sent: Array<Message> = []
  private readonly record: Array<Delivery> = []
  private readonly pending = new Set<Promise<unknown>>()

  constructor(
    /** The emulator's clock (ms), for events' created_at. */
    private readonly clock: () => number,
    private readonly log: (line: string) => void
  ) {}

  get enabled(): boolean {
    return this.target !== undefined
  }

  /** `{url, secret}` turns them on, `{url: null}` off. */
  configure(body: unknown): void {
    if (typeof body !== "object" || body === null || Array.isArray(body)) throw invalidRequest("Expected {\"url\": …, \"secret\": \"whsec_…\"} or {\"url\": null}.")
    const { url, secret } = body as Record<string, unknown>
    if (url === null) {
      this.target = undefined
      this.log("webhooks off")
      return
    }
    if (typeof url !== "string" || !URL.canParse(url) || !/^https?:$/.test(new URL(url).protocol)) throw invalidRequest("'url' must be an http(s) URL.", "url")
    if (!validSecret(secret)) throw invalidRequest("'secret' must be whsec_ followed by a base64 key of 16 bytes or more.", "secret")
    this.target = { url, secret }
    this.log(`webhooks to ${new URL(url).origin}`)
  }

  get json(): { readonly url: string | null; readonly deliveries: ReadonlyArray<Delivery> } {
    return { url: this.target?.url ?? null, deliveries: this.record }
  }

  /** A batch ended: its event, signed, to the URL (when webhooks are on). */
  batchEnded(batchId: string, status: string): void {
    if (this.target === undefined) return
    void this.track(this.deliver(this.message(`batch.${status}`, batchId, this.target.secret), "valid"))
  }

  /**
   * Test API: one delivery now. `replay` resends the delivery `webhook_id` names (default the
   * last one) as it was; the others build a new event for `batch_id` of `type`.
   */
  async send(body: unknown): Promise<Delivery> {
    const target = this.target
    if (target === undefined) throw invalidRequest("Webhooks are off: POST /_emulator/webhooks {url, secret} first.")
    const o = (typeof body === "object" && body !== null ? body : {}) as Record<string, unknown>
    const variant = o["variant"] ?? "valid"
    if (variant !== "valid" && variant !== "forged" && variant !== "stale" && variant !== "replay") {
      throw invalidRequest("'variant' must be valid, forged, stale or replay.", "variant")
    }
    if (variant === "replay") {
      const wanted = o["webhook_id"]
      const earlier = wanted === undefined ? this.sent[this.sent.length - 1] : this.sent.find((m) => m.id === wanted)
      if (earlier === undefined) throw invalidRequest("No such earlier delivery to replay.", "webhook_id")
      return this.track(this.deliver(earlier, "replay"))
    }
    const batchId = o["batch_id"]
    const type = o["type"] ?? "batch.completed"
    if (typeof batchId !== "string" || batchId === "") throw invalidRequest("'batch_id' is required.", "batch_id")
    if (typeof type !== "string" || !/^batch\.(completed|failed|expired|cancelled)$/.test(type)) throw invalidRequest("'type' must be batch.completed, batch.failed, batch.expired or batch.cancelled.", "type")
    // Forged: signed with a key that is not the receiver's. Stale: ten minutes old (tolerance is five).
    const secret = variant === "forged" ? `whsec_${randomBytes(24).toString("base64")}` : target.secret
    const ageSeconds = variant === "stale" ? 600 : 0
    return this.track(this.deliver(this.message(type, batchId, secret, ageSeconds), variant))
  }

  /** Forgets the deliveries (reset); the URL and secret stay, like the fault settings given at start. */
  reset(): void {
    this.sent.length = 0
    this.record.length = 0
  }

  /** Waits for deliveries under way (before close). */
  async quiesce(): Promise<void> {
    while (this.pending.size > 0) await Promise.allSettled([...this.pending])
  }

  private message(type: string, batchId: string, secret: string, ageSeconds = 0): Message {
    const id = `wh_${randomHex(16)}`
    const timestamp = Math.floor(Date.now() / 1000) - ageSeconds
    const body = JSON.stringify({ object: "event", id: `evt_${randomHex(16)}`, type, created_at: Math.floor(this.clock() / 1000), data: { id: batchId } })
    return { id, timestamp, body, signature: signature(secret, id, timestamp, body), type, batchId }
  }

  private track<A>(promise: Promise<A>): Promise<A> {
    this.pending.add(promise)
    const done = () => this.pending.delete(promise)
    promise.then(done, done)
    return promise
  }

  /** POSTs the message; a 5xx or an unreachable receiver is tried again (three attempts, as OpenAI retries). */
  private async deliver(m: Message, variant: Variant): Promise<Delivery> {
    const url = this.target?.url
    let status: number | null = null
    let attempts = 0
    if (url !== undefined) {
      for (; attempts < 3; ) {
        attempts++
        try {
          const response = await fetch(url, {
            method: "POST",
            headers: {
              "content-type": "application/json",
              "user-agent": "OpenAI/1.0 (+https://platform.openai.com/docs/webhooks)",
              "webhook-id": m.id,
              "webhook-timestamp": String(m.timestamp),
              "webhook-signature": m.signature
            },
            body: m.body,
            signal: AbortSignal.timeout(10_000)
          })
          await response.arrayBuffer().catch(() => undefined)
          status = response.status
          if (status < 500) break
        } catch {
          status = null
        }
        if (attempts < 3) await new Promise((resolve) => setTimeout(resolve, 100 * attempts))
      }
    }
    if (variant === "valid") {
      this.sent.push(m)
      if (this.sent.length > KEEP) this.sent.shift()
    }
    const delivery: Delivery = { webhook_id: m.id, type: m.type, batch_id: m.batchId, variant, status, attempts }
    this.record.push(delivery)
    if (this.record.length > KEEP) this.record.shift()
    this.log(`webhook ${m.type} ${m.batchId} (${variant}) -> ${status ?? "unreachable"}`)
    return delivery
  }
}
