/**
 * Unknown model names, refused the way each real API refuses them, so a typo is caught
 * offline: OpenAI 404 `model_not_found` (an error line per request in a batch), Anthropic an
 * `errored` result with `not_found_error`, Gemini 404 NOT_FOUND on create. The list is an
 * emulator option (`models`): patterns, `default`, `*`.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { DEFAULT_MODELS, type EmulatorHandle, type EmulatorOptions, startEmulator } from "../src/Emulator.js"
import { getLedger } from "../src/EmulatorControl.js"
import { KnownModels } from "../src/internal/models.js"

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

const FAST: EmulatorOptions = { validatingMs: 0, finalizingMs: 0, requestsPerSecond: Infinity }
const ANTHROPIC = { "x-api-key": "k", "anthropic-version": "2023-06-01", "content-type": "application/json" }

const call = async (base: string, method: string, path: string, body?: unknown, headers: Record<string, string> = { "content-type": "application/json" }) => {
  const response = await fetch(`${base}${path}`, { method, headers, ...(body === undefined ? {} : { body: JSON.stringify(body) }) })
  const text = await response.text()
  return { status: response.status, body: text.startsWith("{") ? JSON.parse(text) : text }
}

const chat = (base: string, model: string) =>
  call(base, "POST", "/v1/chat/completions", { model, messages: [{ role: "user", content: "hello" }] })

/** Uploads a batch of chat lines for `model` and polls it to a terminal state. */
const openAiBatch = async (base: string, model: string, count: number) => {
  const form = new FormData()
  form.append("purpose", "batch")
  const lines = Array.from({ length: count }, (_, i) =>
    JSON.stringify({ custom_id: `r${i}`, method: "POST", url: "/v1/chat/completions", body: { model, messages: [{ role: "user", content: `row ${i}` }] } }))
  form.append("file", new Blob([`${lines.join("\n")}\n`]), "input.jsonl")
  const file = (await (await fetch(`${base}/v1/files`, { method: "POST", body: form })).json()) as { id: string }
  const created = await call(base, "POST", "/v1/batches", { input_file_id: file.id, endpoint: "/v1/chat/completions", completion_window: "24h" })
  for (let i = 0; i < 1000; i++) {
    const batch = await call(base, "GET", `/v1/batches/${created.body.id}`)
    if (["completed", "failed", "expired", "cancelled"].includes(batch.body.status)) return batch.body
    await sleep(10)
  }
  throw new Error("batch did not finish")
}

const fileLines = async (base: string, id: string | null): Promise<Array<any>> =>
  id === null ? [] : (await (await fetch(`${base}/v1/files/${id}/content`)).text()).split("\n").filter((l) => l !== "").map((l) => JSON.parse(l))

describe("the default list of known models", () => {
  it("accepts the current families and their snapshots, and refuses near misses", () => {
    const models = KnownModels.of()
    const known = [
      "gpt-4o-mini", "gpt-4o-mini-2024-07-18", "gpt-4o", "gpt-4.1-nano", "gpt-5", "gpt-5.4-mini", "gpt-3.5-turbo-0125", "o3-mini",
      "o4-mini-2025-04-16", "text-embedding-3-small", "claude-haiku-4-5", "claude-sonnet-4-5-20250929", "claude-3-5-haiku-latest",
      "gemini-2.5-flash", "gemini-2.0-flash-001", "gemini-2.5-flash-preview-05-20", "gemini-3-pro-preview", "gemini-flash-latest",
      "gemini-embedding-001", "llama-3.1-8b-instant", "meta-llama/Llama-3.3-70B-Instruct-Turbo"
    ]
    for (const model of known) expect(models.accepts(model), model).toBe(true)
    for (const typo of ["gpt-4o-minni", "gpt4o-mini", "text-embedding-3-smal", "claude-haiku-4.5", "claude-haku-4-5", "gemini-2.5-flsh", "m"]) {
      expect(models.accepts(typo), typo).toBe(false)
    }
  })

  it("takes patterns (* # {a,b}), `default` and `*`, from an array or a comma-separated string", () => {
    const custom = KnownModels.of("gpt-{4o,4.1}-mini,my-deployment-*")
    expect(custom.patterns).toEqual(["gpt-{4o,4.1}-mini", "my-deployment-*"])
    expect([custom.accepts("gpt-4.1-mini"), custom.accepts("my-deployment-eu"), custom.accepts("gpt-4o")]).toEqual([true, true, false])
    expect(KnownModels.of(["default", "my-model"]).patterns).toEqual([...DEFAULT_MODELS, "my-model"])
    expect(KnownModels.of("*").accepts("anything at all")).toBe(true)
    expect(() => KnownModels.of(" , ")).toThrow(/empty/)
    expect(() => KnownModels.of("gpt-{4o")).toThrow(/unbalanced/)
  })
})

describe("emulator: unknown models, as the real APIs refuse them", () => {
  let emulator: EmulatorHandle
  beforeAll(async () => {
    emulator = await startEmulator(FAST)
  })
  afterAll(() => emulator.close())

  it("OpenAI real-time: 404 model_not_found naming the model", async () => {
    const typo = await chat(emulator.url, "gpt-4o-minni")
    expect(typo.status).toBe(404)
    expect(typo.body).toEqual({
      error: {
        message: "The model `gpt-4o-minni` does not exist or you do not have access to it.",
        type: "invalid_request_error",
        param: null,
        code: "model_not_found"
      }
    })
    const embeddings = await call(emulator.url, "POST", "/v1/embeddings", { model: "text-embedding-3-smal", input: ["x"] })
    expect([embeddings.status, embeddings.body.error.code]).toEqual([404, "model_not_found"])
    expect((await chat(emulator.url, "gpt-4o-mini-2024-07-18")).status).toBe(200)
    // no model at all is still the 400 of a missing parameter
    expect((await call(emulator.url, "POST", "/v1/chat/completions", { messages: [] })).status).toBe(400)
  })

  it("OpenAI batch: the batch completes, every request an error line with status 404 model_not_found", async () => {
    const batch = await openAiBatch(emulator.url, "gpt-4o-minni", 5)
    expect(batch.status).toBe("completed")
    expect(batch.request_counts).toEqual({ total: 5, completed: 0, failed: 5 })
    expect(batch.output_file_id).toBeNull()
    const errors = await fileLines(emulator.url, batch.error_file_id)
    expect(errors.map((l) => l.custom_id).sort()).toEqual(["r0", "r1", "r2", "r3", "r4"])
    for (const line of errors) {
      expect(line.error).toBeNull()
      expect(line.response.status_code).toBe(404)
      expect(line.response.body.error).toMatchObject({ code: "model_not_found", message: expect.stringContaining("`gpt-4o-minni`") })
    }
    const ledger = await getLedger(emulator.url)
    expect(ledger.deliveries.filter((d) => d.batch_id === batch.id)).toEqual([])
  })

  it("Anthropic batch: not_found_error results for the unknown model only (models may differ per request)", async () => {
    const requests = [
      { custom_id: "ok", params: { model: "claude-haiku-4-5", max_tokens: 32, messages: [{ role: "user", content: "hi" }] } },
      { custom_id: "typo", params: { model: "claude-haku-4-5", max_tokens: 32, messages: [{ role: "user", content: "hi" }] } }
    ]
    const created = await call(emulator.url, "POST", "/v1/messages/batches", { requests }, ANTHROPIC)
    expect(created.status).toBe(200)
    let batch = created.body
    for (let i = 0; batch.processing_status !== "ended"; i++) {
      if (i > 1000) throw new Error("batch did not end")
      await sleep(10)
      batch = (await call(emulator.url, "GET", `/v1/messages/batches/${created.body.id}`, undefined, ANTHROPIC)).body
    }
    expect(batch.request_counts).toMatchObject({ succeeded: 1, errored: 1 })
    const results = await (await fetch(`${emulator.url}/v1/messages/batches/${batch.id}/results`, { headers: ANTHROPIC })).text()
    const byId = new Map(results.split("\n").filter((l) => l !== "").map((l) => JSON.parse(l)).map((l) => [l.custom_id, l.result]))
    expect(byId.get("ok").type).toBe("succeeded")
    expect(byId.get("typo")).toEqual({
      type: "errored",
      error: { type: "error", error: { type: "not_found_error", message: "model: claude-haku-4-5" }, request_id: expect.stringMatching(/^req_/) }
    })
  })

  it("Gemini: 404 NOT_FOUND on create, under v1beta and v1", async () => {
    for (const version of ["v1beta", "v1"]) {
      const created = await call(emulator.url, "POST", `/${version}/models/gemini-2.5-flsh:batchGenerateContent`, {
        batch: { inputConfig: { requests: { requests: [{ request: { contents: [{ parts: [{ text: "hi" }] }] } }] } } }
      }, { "x-goog-api-key": "k", "content-type": "application/json" })
      expect(created.status).toBe(404)
      expect(created.body.error).toMatchObject({ code: 404, status: "NOT_FOUND" })
      expect(created.body.error.message).toMatch(new RegExp(`^models/gemini-2\\.5-flsh is not found for API version ${version}`))
    }
  })
})

describe("emulator `models` option", () => {
  it("replaces the list; `*` accepts any model; an empty list is refused at start", async () => {
    const own = await startEmulator({ ...FAST, models: ["my-deployment"] })
    try {
      expect((await chat(own.url, "my-deployment")).status).toBe(200)
      expect((await chat(own.url, "gpt-4o-mini")).status).toBe(404)
    } finally {
      await own.close()
    }
    const any = await startEmulator({ ...FAST, models: ["*"] })
    try {
      expect((await chat(any.url, "m")).status).toBe(200)
      const batch = await openAiBatch(any.url, "whatever-model", 2)
      expect(batch.request_counts).toEqual({ total: 2, completed: 2, failed: 0 })
    } finally {
      await any.close()
    }
    await expect(startEmulator({ models: [] })).rejects.toThrow(/Invalid emulator option 'models': the list of known models is empty/)
  })
})
