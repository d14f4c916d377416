/**
 * The emulator's organisation enqueued-token limit, over HTTP: a batch whose input tokens, with
 * those of the model's batches not yet ended, exceed the limit fails validation with
 * `token_limit_exceeded`, as OpenAI's does; an ended batch frees its tokens. The clock is held
 * and moved by the test.
 */
import { afterEach, describe, expect, it } from "vitest"
import * as Emulator from "../src/Emulator.js"
import { advanceClock, holdClock } from "../src/EmulatorControl.js"

const handles: Array<Emulator.EmulatorHandle> = []
afterEach(async () => {
  for (const h of handles.splice(0)) await h.close()
})

const line = (id: string, text: string, model = "gpt-4o-mini") =>
  JSON.stringify({ custom_id: id, method: "POST", url: "/v1/chat/completions", body: { model, messages: [{ role: "user", content: text }] } })

const api = (base: string) => {
  const json = async (method: string, path: string, body?: unknown): Promise<any> => {
    const response = await fetch(`${base}${path}`, { method, headers: { "content-type": "application/json" }, ...(body === undefined ? {} : { body: JSON.stringify(body) }) })
    expect(response.status).toBe(200)
    return response.json()
  }
  const create = async (lines: ReadonlyArray<string>): Promise<any> => {
    const form = new FormData()
    form.append("purpose", "batch")
    form.append("file", new Blob([lines.join("\n") + "\n"]), "input.jsonl")
    const file = (await (await fetch(`${base}/v1/files`, { method: "POST", body: form })).json()) as { id: string }
    return json("POST", "/v1/batches", { input_file_id: file.id, endpoint: "/v1/chat/completions", completion_window: "24h" })
  }
  return { json, create }
}

describe("enqueued-token limit", () => {
  it("fails a batch over the limit in validation with token_limit_exceeded; an ended batch frees its tokens", async () => {
    const rows = Array.from({ length: 10 }, (_, i) => line(`r${i}`, `a review of some length, number ${i}, to count`))
    // One batch's tokens, measured under no limit that matters.
    const probe = await Emulator.startEmulator({ enqueuedTokenLimit: 1e12, validatingMs: 1000, finalizingMs: 1000 })
    handles.push(probe)
    await api(probe.url).create(rows)
    const one = ((await api(probe.url).json("GET", "/_emulator/enqueued")) as { maxSeen: Record<string, number> }).maxSeen["gpt-4o-mini"]!
    expect(one).toBeGreaterThan(0)

    const emulator = await Emulator.startEmulator({ enqueuedTokenLimit: one * 2, validatingMs: 1000, finalizingMs: 1000, requestsPerSecond: 1000 })
    handles.push(emulator)
    await holdClock(emulator.url)
    const { json, create } = api(emulator.url)
    const a = await create(rows)
    const b = await create(rows)
    const c = await create(rows)
    // Another model has its own limit.
    const other = await create(rows.map((_, i) => line(`o${i}`, `another model's row ${i}`, "gpt-4o")))
    await advanceClock(emulator.url, 1001)
    expect((await json("GET", `/v1/batches/${a.id}`)).status).toBe("in_progress")
    expect((await json("GET", `/v1/batches/${b.id}`)).status).toBe("in_progress")
    expect((await json("GET", `/v1/batches/${other.id}`)).status).toBe("in_progress")
    const failed = await json("GET", `/v1/batches/${c.id}`)
    expect(failed.status).toBe("failed")
    expect(failed.errors.data).toHaveLength(1)
    expect(failed.errors.data[0]).toMatchObject({ code: "token_limit_exceeded", line: null })
    expect(failed.errors.data[0].message).toMatch(new RegExp(`Limit: ${(one * 2).toLocaleString("en-US")} enqueued tokens`))
    expect(failed.request_counts.completed).toBe(0)
    // Once a and b have ended, the same file fits again: a new batch of it runs.
    await advanceClock(emulator.url, 60_000)
    expect((await json("GET", `/v1/batches/${a.id}`)).status).toBe("completed")
    const again = await json("POST", "/v1/batches", { input_file_id: failed.input_file_id, endpoint: "/v1/chat/completions", completion_window: "24h" })
    await advanceClock(emulator.url, 60_000)
    expect((await json("GET", `/v1/batches/${again.id}`)).status).toBe("completed")
    const record = (await json("GET", "/_emulator/enqueued")) as { limit: number; maxSeen: Record<string, number> }
    expect(record.limit).toBe(one * 2)
    expect(record.maxSeen["gpt-4o-mini"]).toBe(one * 2)
    expect(record.maxSeen["gpt-4o"]).toBeGreaterThan(0)
  })
})
