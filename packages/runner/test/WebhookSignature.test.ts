/**
 * Signature verification against vectors computed here with node:crypto, as the Standard
 * Webhooks spec defines them: base64 HMAC-SHA256, keyed by the base64-decoded bytes after
 * `whsec_`, of "<webhook-id>.<webhook-timestamp>.<body>".
 */
import { createHmac } from "node:crypto"
import { describe, expect, it } from "vitest"
import * as WebhookSignature from "../src/WebhookSignature.js"

// The example secret of the Standard Webhooks spec (a published test value).
const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
const key = Buffer.from("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "base64")
const id = "msg_p5jXN8AQM9LWM0D4loKWxJek"
const ts = 1614265330
const body = '{"test": 2432232314}'
const vector = `v1,${createHmac("sha256", key).update(`${id}.${ts}.${body}`).digest("base64")}`

const headers = (signature: string, timestamp = String(ts)) => ({ "webhook-id": id, "webhook-timestamp": timestamp, "webhook-signature": signature })
const parsedKey = () => {
  const p = WebhookSignature.parseSecret(secret)
  if (!("key" in p)) throw new Error(p.problem)
  return p.key
}

describe("WebhookSignature.verify", () => {
  it("accepts the spec's signature, also among several entries, and names the delivery", () => {
    // The spec's published signature of this message, beside the one computed above.
    expect(vector).toBe("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
    expect(WebhookSignature.verify(parsedKey(), headers(vector), Buffer.from(body), ts)).toEqual({ id, timestamp: ts })
    const rotated = `v1,${Buffer.alloc(32, 7).toString("base64")} v2,abc ${vector}`
    expect(WebhookSignature.verify(parsedKey(), headers(rotated), Buffer.from(body), ts + 10)).toEqual({ id, timestamp: ts })
  })

  it("refuses a changed body, another key, a short signature and a missing header", () => {
    const check = (h: Record<string, string>, b = body) => WebhookSignature.verify(parsedKey(), h, Buffer.from(b), ts)
    expect(check(headers(vector), body.replace("2", "3"))).toMatchObject({ status: 401 })
    const other = `v1,${createHmac("sha256", Buffer.from("another key")).update(`${id}.${ts}.${body}`).digest("base64")}`
    expect(check(headers(other))).toMatchObject({ status: 401 })
    expect(check(headers("v1,AAAA"))).toMatchObject({ status: 401 })
    expect(check(headers(vector.replace("v1,", "v2,")))).toMatchObject({ status: 401 })
    const { "webhook-signature": _, ...noSignature } = headers(vector)
    expect(check(noSignature)).toMatchObject({ status: 400 })
    expect(check(headers(vector, "yesterday"))).toMatchObject({ status: 400 })
  })

  it("refuses a timestamp more than 5 minutes from now, either way", () => {
    const at = (now: number) => WebhookSignature.verify(parsedKey(), headers(vector), Buffer.from(body), now)
    expect(at(ts + 300)).toEqual({ id, timestamp: ts })
    expect(at(ts - 300)).toEqual({ id, timestamp: ts })
    expect(at(ts + 301)).toMatchObject({ status: 401, reason: expect.stringContaining("from now") })
    expect(at(ts - 301)).toMatchObject({ status: 401 })
  })

  it("takes only whsec_ secrets with a base64 key", () => {
    expect(WebhookSignature.parseSecret(undefined)).toEqual({ problem: "is not set" })
    expect(WebhookSignature.parseSecret("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")).toHaveProperty("problem")
    expect(WebhookSignature.parseSecret("whsec_not base64!")).toHaveProperty("problem")
  })
})

describe("WebhookSignature.Replays", () => {
  it("admits an id once within the window, forgets it after, and stays bounded", () => {
    const replays = new WebhookSignature.Replays(300, 3)
    expect(replays.admit({ id: "a", timestamp: 1000 }, 1000)).toBe(true)
    expect(replays.admit({ id: "a", timestamp: 1000 }, 1200)).toBe(false)
    // Out of the window: forgotten (its timestamp is refused by verify anyway).
    expect(replays.admit({ id: "b", timestamp: 1301 }, 1301)).toBe(true)
    expect(replays.size).toBe(1)
    for (const i of [1, 2, 3, 4]) replays.admit({ id: `c${i}`, timestamp: 1302 }, 1302)
    expect(replays.size).toBe(3)
  })
})
