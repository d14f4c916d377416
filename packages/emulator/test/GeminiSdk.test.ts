/**
 * The emulator's Gemini batch mode checked with Google's official `@google/genai` client,
 * unchanged (only `apiKey` and `httpOptions.baseUrl`), in both major versions side by side:
 * 2.x (installed as `google-genai-2`), which calls `/v1beta`, and 3.x, which calls `/v1` — the
 * root OpenAI's routes share at this origin. Inline and file-based lifecycles, list, cancel,
 * expiry, delete, files, errors; every call the SDK made is checked against the access log, and
 * what the emulator delivered against its ledger.
 *
 * The lifecycle runs on the emulator's clock, which the tests advance while polling: every
 * state is reached by polling until terminal, never by waiting for wall-clock time.
 */
import { createRequire } from "node:module"
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { existsSync, readFileSync } from "node:fs"
import { dirname, join } from "node:path"
import { ApiError as ApiError3, type BatchJob, GoogleGenAI as GoogleGenAI3, type InlinedRequest } from "@google/genai"
import { Ajv } from "ajv"
import { ApiError as ApiError2, GoogleGenAI as GoogleGenAI2 } from "google-genai-2"
import OpenAI, { toFile } from "openai"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type EmulatorHandle, startEmulator } from "../src/Emulator.js"
import { getLedger, setFaults } from "../src/EmulatorControl.js"

const KEY = "gemini-sdk-test-key"
/** The test API takes the same key. */
const control = { apiKey: KEY }
const MODEL = "gemini-2.5-flash"

const LabelSchema = {
  type: "object",
  properties: {
    sentiment: { type: "string", enum: ["positive", "negative", "neutral"] },
    topics: { type: "array", items: { type: "string" }, maxItems: 3 },
    stars: { type: "integer", minimum: 1, maximum: 5 }
  },
  required: ["sentiment", "topics", "stars"],
  additionalProperties: false
} as const
const validateLabel = new Ajv({ strict: false }).compile(LabelSchema)

const review = (i: number, prefix: string) => `Review ${i} of ${prefix}: the product is ${["great", "awful", "okay"][i % 3]}.`
const structuredConfig = { responseMimeType: "application/json", responseJsonSchema: LabelSchema }
/** A part the API refuses (inline data without bytes): its request fails with INVALID_ARGUMENT. */
const badPart = { inlineData: { mimeType: "image/png", data: "" } }

/** Both SDK majors behind one interface: the calls used here exist in both with the same shape. */
type Client = InstanceType<typeof GoogleGenAI3>

/** The installed version of a package (its `exports` hide package.json: found from its entry point). */
const installedVersion = (name: string): string => {
  let dir = dirname(createRequire(import.meta.url).resolve(name))
  while (!existsSync(join(dir, "package.json")) || !dir.endsWith(join("node_modules", ...name.split("/")))) dir = dirname(dir)
  return (JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as { version: string }).version
}
const SDKS = [
  {
    label: "2.x",
    version: "v1beta",
    installed: installedVersion("google-genai-2"),
    make: (baseUrl: string, apiKey = KEY) => new GoogleGenAI2({ apiKey, httpOptions: { baseUrl } }) as unknown as Client,
    ApiError: ApiError2 as unknown as typeof ApiError3
  },
  {
    label: "3.x",
    version: "v1",
    installed: installedVersion("@google/genai"),
    make: (baseUrl: string, apiKey = KEY) => new GoogleGenAI3({ apiKey, httpOptions: { baseUrl } }),
    ApiError: ApiError3
  }
] as const

const TERMINAL = ["JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED"]

/** The batch's id in the ledger and in `expireBatch`: its name without `batches/`. */
const ledgerId = (name: string | undefined) => (name ?? "").replace(/^batches\//, "")

/** The error a promise rejects with (fails the test if it resolves). */
const rejection = async (promise: Promise<unknown>): Promise<unknown> =>
  promise.then((value) => {
    throw new Error(`expected a rejection, got ${JSON.stringify(value)?.slice(0, 200)}`)
  }, (error: unknown) => error)

describe.each(SDKS)("emulator with the official @google/genai $label client", (sdk) => {
  let emulator: EmulatorHandle
  let ai: Client
  let dir: string
  /** The emulator's clock: advanced by `poll` only. */
  let now = Date.now()
  /** `METHOD /path?query -> status` of every call, from the emulator's access log. */
  const calls: Array<string> = []

  beforeAll(async () => {
    emulator = await startEmulator({
      apiKey: KEY,
      clock: () => now,
      validatingMs: 1000,
      finalizingMs: 1000,
      cancellingMs: 1000,
      requestsPerSecond: 10,
      log: (line) => {
        if (/^[A-Z]+ \//.test(line)) calls.push(line)
      }
    })
    ai = sdk.make(emulator.url)
    dir = await mkdtemp(join(tmpdir(), "sluice-genai-"))
  })
  afterAll(async () => {
    await emulator.close()
    await rm(dir, { recursive: true, force: true })
    // The SDK called only Gemini routes of its own API version.
    const prefixes = [`/${sdk.version}/`, `/upload/${sdk.version}/`, "/_emulator/"]
    expect(calls.filter((line) => !prefixes.some((p) => line.split(" ")[1]!.startsWith(p)))).toEqual([])
    expect(calls.filter((line) => !line.startsWith("GET /_emulator/") && !line.startsWith("POST /_emulator/")).length).toBeGreaterThan(40)
  })

  /** Gets the batch until it is terminal, moving the emulator's clock half a second per poll. */
  const poll = async (name: string | undefined): Promise<BatchJob> => {
    for (let i = 0; i < 2000; i++) {
      const job = await ai.batches.get({ name: name! })
      if (TERMINAL.includes(job.state ?? "")) return job
      now += 500
    }
    throw new Error(`batch ${name} never finished`)
  }

  it(`is the ${sdk.label} SDK, calling /${sdk.version}`, () => {
    expect(sdk.installed.split(".")[0]).toBe(sdk.label[0])
  })

  it("runs a file-based batch: upload, create from the file, get until done, download the results, delete the files", async () => {
    const keys = Array.from({ length: 12 }, (_, i) => `f-${i}`)
    const lines = [
      ...keys.map((key, i) => ({
        key,
        request: {
          contents: [{ role: "user", parts: [{ text: review(i, "file") }] }],
          ...(i % 2 === 0 ? { generationConfig: structuredConfig } : {})
        }
      })),
      { key: "f-bad", request: { contents: [{ role: "user", parts: [badPart] }] } }
    ]
    const path = join(dir, `input-${sdk.label}.jsonl`)
    await writeFile(path, lines.map((l) => JSON.stringify(l)).join("\n") + "\n")

    const uploaded = await ai.files.upload({ file: path, config: { mimeType: "jsonl", displayName: "reviews.jsonl" } })
    expect(uploaded.name).toMatch(/^files\/[a-z0-9-]+$/)
    expect(uploaded).toMatchObject({ displayName: "reviews.jsonl", mimeType: "jsonl", state: "ACTIVE", source: "UPLOADED" })
    expect(Number(uploaded.sizeBytes)).toBe((await stat(path)).size)
    expect(await ai.files.get({ name: uploaded.name! })).toMatchObject({ name: uploaded.name, displayName: "reviews.jsonl" })

    const created = await ai.batches.create({ model: MODEL, src: uploaded.name!, config: { displayName: `file-${sdk.label}` } })
    expect(created.name).toMatch(/^batches\/[0-9a-f]+$/)
    expect(created).toMatchObject({ state: "JOB_STATE_PENDING", displayName: `file-${sdk.label}`, model: `models/${MODEL}` })
    expect(created.dest).toBeUndefined()

    const done = await poll(created.name)
    expect(done.state).toBe("JOB_STATE_SUCCEEDED")
    expect(Date.parse(done.endTime!)).toBeGreaterThan(Date.parse(done.createTime!))
    const resultFile = done.dest?.fileName
    expect(resultFile).toMatch(/^files\//)
    expect(await ai.files.get({ name: resultFile! })).toMatchObject({ source: "GENERATED", state: "ACTIVE" })

    const downloaded = join(dir, `results-${sdk.label}.jsonl`)
    await ai.files.download({ file: resultFile!, downloadPath: downloaded })
    const results = (await readFile(downloaded, "utf8")).split("\n").filter((l) => l !== "").map((l) => JSON.parse(l))
    expect(results.map((r) => r.key).sort()).toEqual([...keys, "f-bad"].sort())
    for (const result of results) {
      if (result.key === "f-bad") {
        // a google.rpc.Status: the gRPC code (3), not an HTTP status
        expect(result.error).toEqual({ code: 3, message: expect.any(String) })
        expect(result.response).toBeUndefined()
        continue
      }
      const text = result.response.candidates[0].content.parts[0].text as string
      expect(result.response.usageMetadata.promptTokenCount).toBeGreaterThan(0)
      expect(result.response.modelVersion).toBe(MODEL)
      if (Number(result.key.split("-")[1]) % 2 === 0) expect(validateLabel(JSON.parse(text)), text).toBe(true)
      else expect(text.length).toBeGreaterThan(0)
    }

    const ledger = await getLedger(emulator.url, control)
    const entry = ledger.batches.find((b) => b.id === ledgerId(done.name))!
    expect(entry).toMatchObject({ api: "gemini", status: "completed", deleted: false })
    expect([...entry.custom_ids].sort()).toEqual([...keys, "f-bad"].sort())
    expect(ledger.deliveries.filter((d) => d.batch_id === entry.id).map((d) => d.custom_id).sort()).toEqual([...keys].sort())

    for (const name of [uploaded.name!, resultFile!]) {
      await ai.files.delete({ name })
      const gone = await rejection(ai.files.get({ name }))
      expect(gone).toBeInstanceOf(sdk.ApiError)
      expect((gone as InstanceType<typeof ApiError3>).status).toBe(404)
    }
    expect(calls).toContainEqual(expect.stringMatching(new RegExp(`^GET /${sdk.version}/files/[^/]+:download\\?alt=media -> 200`)))
  })

  it("runs an inline batch: responses in input order, with their keys, typed by the SDK", async () => {
    const src: Array<InlinedRequest> = Array.from({ length: 6 }, (_, i) => ({
      contents: [{ role: "user", parts: [{ text: review(i, "inline") }] }],
      metadata: { key: `i-${i}` },
      ...(i % 2 === 0 ? { config: structuredConfig } : {})
    }))
    src.push({ contents: [{ role: "user", parts: [badPart] }], metadata: { key: "i-bad" } })
    const created = await ai.batches.create({ model: MODEL, src, config: { displayName: `inline-${sdk.label}` } })
    expect(created.state).toBe("JOB_STATE_PENDING")

    const done = await poll(created.name)
    expect(done.state).toBe("JOB_STATE_SUCCEEDED")
    const responses = done.dest?.inlinedResponses ?? []
    expect(responses.map((r) => r.metadata?.["key"])).toEqual([...src.map((r) => r.metadata?.["key"])])
    for (const [i, entry] of responses.slice(0, 6).entries()) {
      expect(entry.error).toBeUndefined()
      const text = entry.response?.candidates?.[0]?.content?.parts?.[0]?.text ?? ""
      // 3.x hands out GenerateContentResponse objects (with the `text` getter); 2.x plain objects.
      if (sdk.label === "3.x") expect(entry.response?.text).toBe(text)
      if (i % 2 === 0) expect(validateLabel(JSON.parse(text)), text).toBe(true)
      else expect(text).toContain(`Review ${i} of inline`)
      expect(entry.response?.usageMetadata?.totalTokenCount).toBeGreaterThan(0)
    }
    expect(responses[6]).toMatchObject({ error: { code: 3 } })
    expect(responses[6]!.response).toBeUndefined()

    const ledger = await getLedger(emulator.url, control)
    expect(ledger.deliveries.filter((d) => d.batch_id === ledgerId(done.name))).toHaveLength(6)
  })

  it("errorRate: failed requests carry UNAVAILABLE (gRPC 14) and succeed when resubmitted", async () => {
    const src: Array<InlinedRequest> = [0, 1, 2].map((i) => ({ contents: [{ role: "user", parts: [{ text: review(i, "retry") }] }], metadata: { key: `e-${i}` } }))
    await setFaults(emulator.url, { errorRate: 1 }, control)
    let first: BatchJob
    try {
      first = await poll((await ai.batches.create({ model: MODEL, src })).name)
    } finally {
      await setFaults(emulator.url, { errorRate: 0 }, control)
    }
    expect(first.state).toBe("JOB_STATE_SUCCEEDED")
    for (const entry of first.dest?.inlinedResponses ?? []) expect(entry.error).toEqual({ code: 14, message: expect.any(String) })
    const second = await poll((await ai.batches.create({ model: MODEL, src })).name)
    expect((second.dest?.inlinedResponses ?? []).map((r) => r.error)).toEqual([undefined, undefined, undefined])
  })

  it("lists newest first across pages, cancels, expires and deletes", async () => {
    const slow = (tag: string): Array<InlinedRequest> =>
      Array.from({ length: 50 }, (_, i) => ({ contents: [{ role: "user", parts: [{ text: review(i, tag) }] }], metadata: { key: `${tag}-${i}` } }))
    // 50 requests at 10 a second: none of these finishes before the clock has moved 5 s.
    const names: Array<string> = []
    for (const tag of ["cancel", "expire", "delete"]) names.push((await ai.batches.create({ model: MODEL, src: slow(tag) })).name!)

    const listed: Array<string> = []
    const pager = await ai.batches.list({ config: { pageSize: 2 } })
    for await (const job of pager) listed.push(job.name!)
    expect(listed.slice(0, 3)).toEqual([...names].reverse())
    expect(new Set(listed).size).toBe(listed.length)
    expect(calls.some((line) => line.startsWith(`GET /${sdk.version}/batches?pageSize=2&pageToken=`))).toBe(true)

    const [cancelName, expireName, deleteName] = names as [string, string, string]
    await ai.batches.cancel({ name: cancelName })
    const cancelled = await poll(cancelName)
    expect(cancelled.state).toBe("JOB_STATE_CANCELLED")
    expect(cancelled.dest).toBeUndefined()
    const late = await rejection(ai.batches.cancel({ name: cancelName }))
    expect((late as InstanceType<typeof ApiError3>).status).toBe(400)
    expect((late as Error).message).toMatch(/FAILED_PRECONDITION/)

    now += 1500 // running
    await setFaults(emulator.url, { expireBatch: ledgerId(expireName) }, control)
    const expired = await poll(expireName)
    expect(expired.state).toBe("JOB_STATE_EXPIRED")
    expect(expired.dest).toBeUndefined() // an expired batch returns nothing

    // Delete forgets the operation (it is not cancelled): gone from get and list, kept in the ledger.
    await ai.batches.delete({ name: deleteName })
    const gone = await rejection(ai.batches.get({ name: deleteName }))
    expect(gone).toBeInstanceOf(sdk.ApiError)
    expect((gone as InstanceType<typeof ApiError3>).status).toBe(404)
    const after: Array<string> = []
    for await (const job of await ai.batches.list({ config: { pageSize: 50 } })) after.push(job.name!)
    expect(after).not.toContain(deleteName)
    expect(after).toContain(cancelName)
    const ledger = await getLedger(emulator.url, control)
    expect(ledger.batches.find((b) => b.id === ledgerId(deleteName))).toMatchObject({ api: "gemini", deleted: true })
    expect(ledger.deliveries.filter((d) => [cancelName, expireName].map(ledgerId).includes(d.batch_id))).toEqual([])
  })

  it("answers errors as the API does: a wrong key, an unknown model, an unknown batch", async () => {
    const wrong = await rejection(sdk.make(emulator.url, "not-the-key").batches.list())
    expect(wrong).toBeInstanceOf(sdk.ApiError)
    expect((wrong as InstanceType<typeof ApiError3>).status).toBe(400)
    expect((wrong as Error).message).toMatch(/API key not valid/)

    const typo = await rejection(ai.batches.create({ model: "gemini-2.5-flsh", src: [{ contents: [{ role: "user", parts: [{ text: "hi" }] }] }] }))
    expect((typo as InstanceType<typeof ApiError3>).status).toBe(404)
    expect((typo as Error).message).toMatch(new RegExp(`models/gemini-2\\.5-flsh is not found for API version ${sdk.version}`))

    const missing = await rejection(ai.batches.get({ name: "batches/0123456789abcdef" }))
    expect((missing as InstanceType<typeof ApiError3>).status).toBe(404)
    expect((missing as Error).message).toMatch(/NOT_FOUND/)
  })
})

describe("Gemini's /v1 beside OpenAI's /v1 at one origin", () => {
  let emulator: EmulatorHandle
  beforeAll(async () => {
    emulator = await startEmulator({ validatingMs: 0, finalizingMs: 0, requestsPerSecond: Infinity })
  })
  afterAll(() => emulator.close())

  it("serves the @google/genai 3.x client and the openai client side by side, each in its own shape", async () => {
    const ai = new GoogleGenAI3({ apiKey: KEY, httpOptions: { baseUrl: emulator.url } })
    const openai = new OpenAI({ apiKey: "sk-test", baseURL: `${emulator.url}/v1` })

    const geminiJob = await ai.batches.create({ model: MODEL, src: [{ contents: [{ role: "user", parts: [{ text: "hi" }] }], metadata: { key: "g" } }] })
    const file = await openai.files.create({
      file: await toFile(Buffer.from(`${JSON.stringify({ custom_id: "o", method: "POST", url: "/v1/chat/completions", body: { model: "gpt-4o-mini", messages: [{ role: "user", content: "hi" }] } })}\n`), "in.jsonl"),
      purpose: "batch"
    })
    const openaiBatch = await openai.batches.create({ input_file_id: file.id, endpoint: "/v1/chat/completions", completion_window: "24h" })
    expect(openaiBatch.id).toMatch(/^batch_/)

    let job = geminiJob
    for (let i = 0; !TERMINAL.includes(job.state ?? ""); i++) {
      if (i > 1000) throw new Error("the Gemini batch never finished")
      job = await ai.batches.get({ name: geminiJob.name! })
    }
    expect(job.dest?.inlinedResponses?.[0]?.response?.text).toContain("hi")
    let batch = openaiBatch
    for (let i = 0; !["completed", "failed"].includes(batch.status); i++) {
      if (i > 1000) throw new Error("the OpenAI batch never finished")
      batch = await openai.batches.retrieve(openaiBatch.id)
    }
    expect(batch.status).toBe("completed")
    expect((await openai.files.content(batch.output_file_id!)).ok).toBe(true)

    // The same path, /v1/batches, lists in each API's shape.
    const openaiPage = await openai.batches.list({ limit: 100 })
    expect(openaiPage.data.map((b) => b.id)).toContain(openaiBatch.id)
    const geminiNames: Array<string> = []
    for await (const j of await ai.batches.list()) geminiNames.push(j.name!)
    expect(geminiNames).toEqual([geminiJob.name])
  })
})
