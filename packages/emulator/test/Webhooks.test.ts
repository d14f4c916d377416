/**
 * The emulator's webhooks: a receiver on 127.0.0.1 records what arrives; the signature is
 * checked here with node:crypto as the Standard Webhooks spec defines it, independently of the
 * emulator's code. The emulator's clock is held and advanced: the batch ends when the test says.
 */
import { createHmac, randomBytes } from "node:crypto"
import { createServer, type IncomingHttpHeaders } from "node:http"
import type { AddressInfo } from "node:net"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as Emulator from "../src/Emulator.js"
import { advanceClock, getWebhooks, holdClock, sendWebhook, setWebhooks } from "../src/EmulatorControl.js"

const key = randomBytes(32)
const secret = `whsec_${key.toString("base64")}`
const received: Array<{ headers: IncomingHttpHeaders; body: string }> = []
const receiver = createServer((req, res) => {
  let body = ""
  req.setEncoding("utf8").on("data", (d: string) => (body += d))
  req.on("end", () => {
    received.push({ headers: req.headers, body })
    res.statusCode = 200
    res.end()
  })
})
let receiverUrl = ""
let emulator: Emulator.EmulatorHandle

/** The spec's signature: base64 HMAC-SHA256, keyed by the bytes after whsec_, of "<id>.<timestamp>.<body>". */
const expected = (k: Buffer, h: IncomingHttpHeaders, body: string) =>
  `v1,${createHmac("sha256", k).update(`${h["webhook-id"]}.${h["webhook-timestamp"]}.${body}`).digest("base64")}`

const until = async <A>(what: () => A | undefined | Promise<A | undefined>): Promise<A> => {
  for (let i = 0; i < 2000; i++) {
    const a = await what()
    if (a !== undefined) return a
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
  throw new Error("never happened")
}

beforeAll(async () => {
  await new Promise<void>((resolve) => receiver.listen(0, "127.0.0.1", resolve))
  receiverUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/webhook`
  emulator = await Emulator.startEmulator({ validatingMs: 50, finalizingMs: 50, requestsPerSecond: 1000, webhooks: { url: receiverUrl, secret } })
})

afterAll(async () => {
  await emulator?.close()
  await new Promise<void>((resolve) => receiver.close(() => resolve()))
})

const submit = async (): Promise<string> => {
  const form = new FormData()
  form.append("purpose", "batch")
  const line = { custom_id: "a", method: "POST", url: "/v1/chat/completions", body: { model: "gpt-4o-mini", messages: [{ role: "user", content: "hi" }] } }
  form.append("file", new Blob([JSON.stringify(line) + "\n"]), "in.jsonl")
  const file = (await (await fetch(`${emulator.url}/v1/files`, { method: "POST", body: form })).json()) as { id: string }
  const batch = await fetch(`${emulator.url}/v1/batches`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ input_file_id: file.id, endpoint: "/v1/chat/completions", completion_window: "24h" })
  })
  return ((await batch.json()) as { id: string }).id
}

describe("emulator webhooks", () => {
  it("sends a signed batch.completed event when a batch ends, without a poll", async () => {
    await holdClock(emulator.url)
    const id = await submit()
    await advanceClock(emulator.url, 60_000)
    const delivery = await until(() => received.find((r) => r.body.includes(id)))
    const event = JSON.parse(delivery.body)
    expect(event).toMatchObject({ object: "event", type: "batch.completed", data: { id } })
    expect(event.id).toMatch(/^evt_/)
    expect(typeof event.created_at).toBe("number")
    expect(delivery.headers["webhook-signature"]).toBe(expected(key, delivery.headers, delivery.body))
    expect(Math.abs(Number(delivery.headers["webhook-timestamp"]) - Date.now() / 1000)).toBeLessThan(300)
    // The emulator records a delivery once the receiver's answer is in.
    const state = await until(async () => {
      const w = await getWebhooks(emulator.url)
      return w.deliveries.some((d) => d.batch_id === id) ? w : undefined
    })
    expect(state.deliveries.filter((d) => d.batch_id === id)).toEqual([expect.objectContaining({ type: "batch.completed", variant: "valid", status: 200, attempts: 1 })])
    expect(JSON.stringify(state)).not.toContain(secret.slice(6))
  })

  it("sends forged, stale and replayed deliveries on demand", async () => {
    const forged = await sendWebhook(emulator.url, { variant: "forged", batch_id: "batch_x" })
    const f = received.find((r) => r.headers["webhook-id"] === forged.webhook_id)!
    expect(f.headers["webhook-signature"]).not.toBe(expected(key, f.headers, f.body))

    const stale = await sendWebhook(emulator.url, { variant: "stale", batch_id: "batch_x", type: "batch.failed" })
    const s = received.find((r) => r.headers["webhook-id"] === stale.webhook_id)!
    expect(s.headers["webhook-signature"]).toBe(expected(key, s.headers, s.body))
    expect(Date.now() / 1000 - Number(s.headers["webhook-timestamp"])).toBeGreaterThan(300)
    expect(JSON.parse(s.body).type).toBe("batch.failed")

    const valid = await sendWebhook(emulator.url, { batch_id: "batch_y" })
    const replay = await sendWebhook(emulator.url, { variant: "replay", webhook_id: valid.webhook_id })
    expect(replay.webhook_id).toBe(valid.webhook_id)
    const both = received.filter((r) => r.headers["webhook-id"] === valid.webhook_id)
    expect(both).toHaveLength(2)
    expect(both[1]).toEqual(both[0])
  })

  it("refuses a secret that is not whsec_<base64>", async () => {
    await expect(setWebhooks(emulator.url, { url: receiverUrl, secret: "hunter2" })).rejects.toThrow(/400/)
  })
})
