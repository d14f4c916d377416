/**
 * Azure OpenAI as a configuration of the OpenAI provider, over real HTTP against the emulator
 * (behind a recording proxy that shows what the server received).
 */
import { HttpClient } from "@effect/platform"
import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Effect, Exit, Redacted } from "effect"
import { Providers } from "../src/BatchProvider.js"
import { azureBaseUrl, azureConfig, azureLimits } from "../src/openai/Compatible.js"
import { decodeBatchInfo } from "../src/openai/OpenAiBatch.js"
import { ProviderError } from "../src/ProviderError.js"
import * as Registry from "../src/Registry.js"
import { emulatorBehindProxy, header, lifecycle, provider, tmpDir, undiciClient, waitFor, writeShard, chat } from "./GatewaySupport.js"

const KEY = "azure-key-0123456789abcdef"

const failureOf = (e: Exit.Exit<unknown, ProviderError>): ProviderError => {
  if (Exit.isSuccess(e) || e.cause._tag !== "Fail") throw new Error(`expected a ProviderError failure, got ${String(e)}`)
  return e.cause.error
}

describe("Azure OpenAI configuration", () => {
  it("azureBaseUrl: v1 paths without an api-version, the older root with one", () => {
    assert.strictEqual(azureBaseUrl("https://r.openai.azure.com"), "https://r.openai.azure.com/openai/v1")
    assert.strictEqual(azureBaseUrl("https://r.openai.azure.com/"), "https://r.openai.azure.com/openai/v1")
    assert.strictEqual(azureBaseUrl("https://r.openai.azure.com/openai/v1/"), "https://r.openai.azure.com/openai/v1")
    assert.strictEqual(azureBaseUrl("https://r.openai.azure.com", "2024-10-21"), "https://r.openai.azure.com/openai")
    assert.strictEqual(azureBaseUrl("https://r.openai.azure.com/openai", "2024-10-21"), "https://r.openai.azure.com/openai")
    assert.strictEqual(azureBaseUrl("https://r.openai.azure.com", "preview"), "https://r.openai.azure.com/openai/v1")
  })

  it("azureConfig: api-key header, name, limits (overridable), api-version as a query", () => {
    const v1 = azureConfig({ apiKey: Redacted.make(KEY), endpoint: "https://r.openai.azure.com" })
    assert.deepStrictEqual(v1.auth, { header: "api-key" })
    assert.strictEqual(v1.name, "azure")
    assert.deepStrictEqual(v1.limits, azureLimits)
    assert.strictEqual(v1.limits?.maxRequests, 100_000)
    assert.isUndefined(v1.query)
    const versioned = azureConfig({
      apiKey: Redacted.make(KEY),
      endpoint: "https://r.openai.azure.com",
      apiVersion: "2025-04-01-preview",
      limits: { maxBytes: 50_000_000 }
    })
    assert.deepStrictEqual(versioned.query, { "api-version": "2025-04-01-preview" })
    assert.deepStrictEqual(versioned.limits, { ...azureLimits, maxBytes: 50_000_000 })
  })

  it("Azure wire quirks are normalised: capitalised statuses, empty-string file ids, ISO created_at", () => {
    const info = decodeBatchInfo({
      id: "batch_1",
      status: "InProgress",
      input_file_id: "file-1",
      output_file_id: "",
      error_file_id: "",
      created_at: "2026-05-01T10:00:00Z",
      request_counts: { total: 3, completed: 1, failed: 0 }
    })
    assert.isTrue(info._tag === "Right")
    if (info._tag !== "Right") return
    assert.strictEqual(info.right.status, "in_progress")
    assert.strictEqual(info.right.rawStatus, "InProgress")
    assert.isNull(info.right.outputFileId)
    assert.isNull(info.right.errorFileId)
    assert.strictEqual(info.right.createdAt, Date.parse("2026-05-01T10:00:00Z") / 1000)
    for (const [raw, status] of [["Completed", "completed"], ["Cancelling", "cancelling"], ["Finalizing", "finalizing"], ["Expired", "expired"]]) {
      const decoded = decodeBatchInfo({ id: "b", status: raw })
      assert.strictEqual(decoded._tag === "Right" ? decoded.right.status : undefined, status)
    }
  })
})

describe("Azure OpenAI against the emulator", () => {
  it.scopedLive("v1 API: /openai/v1 paths, api-key header; errored lines, an expiry and a cancel; Azure-style statuses", () =>
    Effect.gen(function*() {
      const { advance, faults, proxy } = yield* emulatorBehindProxy({ apiKey: KEY, errorRate: 0.3, azureQuirks: true })
      const azure = yield* provider(azureConfig({ apiKey: Redacted.make(KEY), endpoint: proxy.url }))
      assert.strictEqual(azure.name, "azure")
      assert.strictEqual(azure.limits.maxRequests, 100_000)
      const report = yield* lifecycle(azure, { advance, faults }, { model: "my-gpt4o-global-batch" })

      // Capitalised on the wire, normalised in BatchInfo.
      for (const raw of ["Validating", "InProgress", "Finalizing", "Completed", "Expired", "Cancelling", "Cancelled"]) assert.include(report.rawStatuses, raw)
      assert.strictEqual(report.completed.rawStatus, "Completed")
      assert.strictEqual(report.cancelled.status, "cancelled")

      // Every call: resource-level v1 path, the key in `api-key`, no Authorization, no api-version.
      assert.isTrue(proxy.seen.length > 10)
      for (const s of proxy.seen) {
        assert.match(s.path, /^\/openai\/v1\/(files|batches)/, s.url)
        assert.strictEqual(header(s, "api-key"), KEY)
        assert.isUndefined(header(s, "authorization"))
        assert.isNull(s.query.get("api-version"))
      }
      const polls = proxy.seen.filter((s) => s.method === "GET" && s.path === `/openai/v1/batches/${report.completed.id}`)
      assert.isTrue(polls.length >= 1)
      for (const p of polls) assert.strictEqual(header(p, "cache-control"), "no-cache")
      // The deployment name is the `model` of every line.
      const line = JSON.parse(azure.encode(chat(1, "my-gpt4o-global-batch"), "id-1")) as { body: { model: string } }
      assert.strictEqual(line.body.model, "my-gpt4o-global-batch")
    }))

  it.scopedLive("versioned API: /openai/... with ?api-version= on every call; the query never reaches an error", () =>
    Effect.gen(function*() {
      const { advance, faults, proxy } = yield* emulatorBehindProxy({ apiKey: KEY, errorRate: 0.3 })
      const azure = yield* provider(azureConfig({ apiKey: Redacted.make(KEY), endpoint: proxy.url, apiVersion: "2024-10-21" }))
      yield* lifecycle(azure, { advance, faults })
      for (const s of proxy.seen) {
        assert.match(s.path, /^\/openai\/(files|batches)/, s.url)
        assert.notMatch(s.path, /^\/openai\/v1\//)
        assert.strictEqual(s.query.get("api-version"), "2024-10-21", s.url)
        assert.strictEqual(header(s, "api-key"), KEY)
      }
      // The version rides along with the call's own parameters (list: limit/after/purpose).
      const fileList = proxy.seen.find((s) => s.method === "GET" && s.path === "/openai/files")!
      assert.strictEqual(fileList.query.get("purpose"), "batch")
      assert.strictEqual(fileList.query.get("api-version"), "2024-10-21")

      const error = failureOf(yield* Effect.exit(azure.retrieve("batch_missing")))
      assert.strictEqual(error.reason, "NotFound")
      assert.strictEqual(error.operation, "GET /batches/batch_missing")
      for (const text of [error.message, String(error), JSON.stringify(error)]) {
        assert.notInclude(text, "api-version")
        assert.notInclude(text, "2024-10-21")
        assert.notInclude(text, KEY)
      }
    }))

  it.scopedLive("a wrong api-key is Unauthorized, and neither key appears in the error", () =>
    Effect.gen(function*() {
      const wrong = "azure-wrong-key-fedcba9876"
      const { proxy } = yield* emulatorBehindProxy({ apiKey: KEY })
      const azure = yield* provider(azureConfig({ apiKey: Redacted.make(wrong), endpoint: proxy.url }))
      const dir = yield* tmpDir
      const path = writeShard(dir, azure, [["a", chat(1)]])
      for (const exit of [yield* Effect.exit(azure.retrieve("batch_x")), yield* Effect.exit(azure.stage(path, "auth"))]) {
        const error = failureOf(exit)
        assert.instanceOf(error, ProviderError)
        assert.strictEqual(error.reason, "Unauthorized")
        for (const text of [error.message, String(error), JSON.stringify(error), String(exit)]) {
          assert.notInclude(text, wrong)
          assert.notInclude(text, KEY)
        }
      }
      assert.strictEqual(header(proxy.seen[0]!, "api-key"), wrong)
    }))

  it.scopedLive("the emulator: /openai/... needs api-version (400 without), /openai/v1/... does not", () =>
    Effect.gen(function*() {
      const { emulator } = yield* emulatorBehindProxy({ apiKey: KEY })
      const get = (path: string) =>
        Effect.promise(() =>
          fetch(`${emulator.url}${path}`, { headers: { "api-key": KEY } }).then(async (r) => ({
            status: r.status,
            body: (await r.json()) as { error?: { code?: string; param?: string } }
          }))
        )
      const missing = yield* get("/openai/batches")
      assert.strictEqual(missing.status, 400)
      assert.strictEqual(missing.body.error?.param, "api-version")
      assert.strictEqual(missing.body.error?.code, "missing_required_parameter")
      assert.strictEqual((yield* get("/openai/batches?api-version=2024-10-21")).status, 200)
      assert.strictEqual((yield* get("/openai/v1/batches")).status, 200)
      assert.strictEqual((yield* get("/openai/v1/files?purpose=batch")).status, 200)
      assert.strictEqual((yield* get("/openai/deployments")).status, 404)
      // the key is checked on Azure paths too
      const unauthorized = yield* Effect.promise(() => fetch(`${emulator.url}/openai/v1/batches`, { headers: { "api-key": "nope-nope-nope" } }))
      assert.strictEqual(unauthorized.status, 401)
    }))

  it.scopedLive("the registry's `azure` entry reads AZURE_OPENAI_* and runs a batch", () =>
    Effect.gen(function*() {
      const { advance, proxy } = yield* emulatorBehindProxy({ apiKey: KEY })
      const client = yield* undiciClient
      const env = ConfigProvider.fromMap(
        new Map([
          ["AZURE_OPENAI_API_KEY", KEY],
          ["AZURE_OPENAI_ENDPOINT", `${proxy.url}/`],
          ["AZURE_OPENAI_API_VERSION", "2025-04-01-preview"]
        ])
      )
      const azure = yield* Effect.flatMap(Providers, (providers) => providers.get("azure")).pipe(
        Effect.provide(Registry.layerFromEnv()),
        Effect.provideService(HttpClient.HttpClient, client),
        Effect.withConfigProvider(env)
      )
      assert.strictEqual(azure.name, "azure")
      assert.strictEqual(azure.limits.maxRequests, 100_000)
      const dir = yield* tmpDir
      const shard = writeShard(dir, azure, [["r-1", chat(1)], ["r-2", chat(2)]])
      const staged = yield* azure.stage(shard, "registry")
      const created = yield* azure.create({ inputRef: staged.inputRef, path: shard, endpoint: "chat", metadata: { k: "v" } })
      const done = yield* waitFor(azure, created.id, advance)
      assert.strictEqual(done.status, "completed")
      assert.strictEqual(done.counts.succeeded, 2)
      for (const s of proxy.seen) {
        assert.match(s.path, /^\/openai\/(files|batches)/)
        assert.strictEqual(s.query.get("api-version"), "2025-04-01-preview")
      }
    }))
})
