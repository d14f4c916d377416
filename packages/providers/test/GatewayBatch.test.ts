/**
 * OpenAI-compatible gateways and the Groq/Together presets, as configurations of the OpenAI
 * provider, over real HTTP against the emulator (behind a recording proxy that shows what
 * the server received).
 */
import { HttpClient } from "@effect/platform"
import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Effect, Either, Option, Redacted } from "effect"
import { Providers } from "../src/BatchProvider.js"
import {
  gatewayConfig,
  groqBaseUrl,
  groqConfig,
  parseAuth,
  parseHeaders,
  togetherBaseUrl,
  togetherConfig
} from "../src/openai/Compatible.js"
import { decodeBatchInfo } from "../src/openai/OpenAiBatch.js"
import * as Registry from "../src/Registry.js"
import { emulatorBehindProxy, header, lifecycle, provider, undiciClient } from "./GatewaySupport.js"

const TOKEN = "gw_tok_0123456789abcdef"
const PROJECT = "proj-analytics"

describe("gateway configuration", () => {
  it("parseAuth: bearer, header:<name>", () => {
    assert.deepStrictEqual(parseAuth("bearer"), Either.right("bearer"))
    assert.deepStrictEqual(parseAuth(" Bearer "), Either.right("bearer"))
    assert.deepStrictEqual(parseAuth("header:api-key"), Either.right({ header: "api-key" }))
    assert.deepStrictEqual(parseAuth("header:X-LiteLLM-Key"), Either.right({ header: "x-litellm-key" }))
    assert.deepStrictEqual(parseAuth("header:Authorization"), Either.right("bearer"))
    assert.isTrue(Either.isLeft(parseAuth("basic")))
    assert.isTrue(Either.isLeft(parseAuth("header:")))
    assert.isTrue(Either.isLeft(parseAuth("header:bad name")))
  })

  it("parseHeaders: a JSON object of strings; reasons never quote values", () => {
    assert.deepStrictEqual(parseHeaders(`{"X-Team": "data", "x-env": "prod"}`), Either.right({ "x-team": "data", "x-env": "prod" }))
    const secret = "super-secret-proxy-token"
    for (const text of [`{"x-token": "${secret}"`, `["${secret}"]`, `{"x-token": 1, "y": "${secret}"}`, `{"bad name": "${secret}"}`]) {
      const parsed = parseHeaders(text)
      assert.isTrue(Either.isLeft(parsed), text)
      if (Either.isLeft(parsed)) assert.notInclude(parsed.left, secret)
    }
  })

  it("presets: base URLs, names, limits, Together's purpose and capabilities", () => {
    const groq = groqConfig({ apiKey: Redacted.make("k") })
    assert.strictEqual(groq.baseUrl, groqBaseUrl)
    assert.strictEqual(groqBaseUrl, "https://api.groq.com/openai/v1")
    assert.strictEqual(groq.name, "groq")
    assert.deepStrictEqual(groq.limits, { maxRequests: 50_000, maxBytes: 95_000_000, oneModelPerShard: true })
    const together = togetherConfig({ apiKey: Redacted.make("k"), baseUrl: "http://127.0.0.1:1/v1/" })
    assert.strictEqual(together.baseUrl, "http://127.0.0.1:1/v1")
    assert.strictEqual(togetherBaseUrl, "https://api.together.xyz/v1")
    assert.strictEqual(together.name, "together")
    assert.strictEqual(together.purpose, "batch-api")
    assert.deepStrictEqual(together.upload, { path: "/files/upload", fileNameField: "file_name", fields: { file_type: "jsonl" } })
    assert.deepStrictEqual(together.limits, { maxRequests: 50_000, maxBytes: 95_000_000, oneModelPerShard: true })
    assert.deepStrictEqual(together.capabilities, { metadata: false })
    assert.strictEqual(gatewayConfig({ apiKey: Redacted.make("k"), baseUrl: "https://gw/v1/" }).name, "openai-compatible")
  })

  it("Together wire shapes: upper-case statuses, a create answer wrapped in {job}, ISO times", () => {
    const created = decodeBatchInfo({
      job: {
        id: "b-1",
        status: "VALIDATING",
        input_file_id: "file-1",
        output_file_id: null,
        created_at: "2026-05-01T10:00:00Z",
        progress: 0
      },
      warning: "something"
    })
    assert.isTrue(Either.isRight(created))
    if (Either.isRight(created)) {
      assert.strictEqual(created.right.id, "b-1")
      assert.strictEqual(created.right.status, "validating")
      assert.strictEqual(created.right.rawStatus, "VALIDATING")
      assert.strictEqual(created.right.createdAt, Date.parse("2026-05-01T10:00:00Z") / 1000)
    }
    for (const [raw, status] of [["IN_PROGRESS", "in_progress"], ["COMPLETED", "completed"], ["FAILED", "failed"], ["EXPIRED", "expired"], ["CANCELLED", "cancelled"]]) {
      const decoded = decodeBatchInfo({ id: "b", status: raw })
      assert.strictEqual(Either.isRight(decoded) ? decoded.right.status : undefined, status)
    }
    // a failed job says why in a plain `error` string
    const failed = decodeBatchInfo({ id: "b", status: "FAILED", error: "input file has invalid lines" })
    assert.deepStrictEqual(Either.isRight(failed) ? failed.right.errors : undefined, [
      { code: "batch_failed", message: "input file has invalid lines", line: null }
    ])
  })
})

describe("gateways and presets against the emulator", () => {
  it.scopedLive("the emulator serves the OpenAI routes under a gateway prefix of 1–3 segments", () =>
    Effect.gen(function*() {
      const { emulator } = yield* emulatorBehindProxy({ apiKey: TOKEN })
      const status = (path: string) =>
        Effect.promise(() => fetch(`${emulator.url}${path}`, { headers: { authorization: `Bearer ${TOKEN}` } }).then((r) => r.status))
      for (const path of ["/gateway/v1/batches", "/azure/v1/batches", "/proxy/openai/v1/files", "/a/b/c/v1/batches?limit=2"]) {
        assert.strictEqual(yield* status(path), 200, path)
      }
      for (const path of ["/a/b/c/d/v1/batches", "/gateway/v1/messages", "/gateway/v2/batches", "/gateway/batches"]) {
        assert.strictEqual(yield* status(path), 404, path)
      }
      // the Anthropic-shaped gateway keeps its own route and answer shape
      const anthropic = yield* Effect.promise(() =>
        fetch(`${emulator.url}/anthropic-gateway/v1/batches`, { headers: { authorization: `Bearer ${TOKEN}` } }).then((r) => r.json())
      )
      assert.property(anthropic, "data")
      assert.notProperty(anthropic, "object")
      // a wrong key is refused under a prefix too
      const wrong = yield* Effect.promise(() =>
        fetch(`${emulator.url}/gateway/v1/batches`, { headers: { authorization: "Bearer wrong-token-123" } }).then((r) => r.status)
      )
      assert.strictEqual(wrong, 401)
    }))

  it.scopedLive("gateway: Bearer <token>:<project>, an extra header and a /gateway/v1 prefix; polls send no-cache", () =>
    Effect.gen(function*() {
      const { advance, faults, proxy } = yield* emulatorBehindProxy({ apiKey: `${TOKEN}:${PROJECT}`, errorRate: 0.3 })
      const gateway = yield* provider(gatewayConfig({
        apiKey: Redacted.make(`${TOKEN}:${PROJECT}`),
        baseUrl: `${proxy.url}/gateway/v1`,
        headers: { "x-gateway-team": "data-eng" }
      }))
      assert.strictEqual(gateway.name, "openai-compatible")
      const report = yield* lifecycle(gateway, { advance, faults })
      assert.strictEqual(report.completed.rawStatus, "completed")

      assert.isTrue(proxy.seen.length > 10)
      for (const s of proxy.seen) {
        assert.match(s.path, /^\/gateway\/v1\/(files|batches)/, s.url)
        assert.strictEqual(header(s, "authorization"), `Bearer ${TOKEN}:${PROJECT}`)
        assert.strictEqual(header(s, "x-gateway-team"), "data-eng")
      }
      // Status polls (and batch listings) through the prefix carry Cache-Control: no-cache.
      const polls = proxy.seen.filter((s) => s.method === "GET" && /^\/gateway\/v1\/batches(\/[^/]+)?$/.test(s.path))
      assert.isTrue(polls.length >= 4)
      for (const p of polls) assert.strictEqual(header(p, "cache-control"), "no-cache", p.url)
    }))

  it.scopedLive("registry `openai-compatible`: a LiteLLM-style /azure/v1 prefix, header auth, SLUICE_GATEWAY_HEADERS", () =>
    Effect.gen(function*() {
      const { advance, faults, proxy } = yield* emulatorBehindProxy({ apiKey: TOKEN, errorRate: 0.3 })
      const client = yield* undiciClient
      const env = ConfigProvider.fromMap(
        new Map([
          ["SLUICE_GATEWAY_BASE_URL", `${proxy.url}/azure/v1`],
          ["SLUICE_GATEWAY_API_KEY", TOKEN],
          ["SLUICE_GATEWAY_AUTH", "header:API-Key"],
          ["SLUICE_GATEWAY_HEADERS", `{"X-Team": "data-eng", "x-proxy-token": "proxy-secret-987654"}`]
        ])
      )
      const gateway = yield* Effect.flatMap(Providers, (providers) => providers.get("openai-compatible")).pipe(
        Effect.provide(Registry.layerFromEnv()),
        Effect.provideService(HttpClient.HttpClient, client),
        Effect.withConfigProvider(env)
      )
      assert.strictEqual(gateway.name, "openai-compatible")
      yield* lifecycle(gateway, { advance, faults })
      for (const s of proxy.seen) {
        assert.match(s.path, /^\/azure\/v1\/(files|batches)/, s.url)
        assert.strictEqual(header(s, "api-key"), TOKEN)
        assert.isUndefined(header(s, "authorization"))
        assert.strictEqual(header(s, "x-team"), "data-eng")
        assert.strictEqual(header(s, "x-proxy-token"), "proxy-secret-987654")
      }
    }))

  it.scopedLive("groq preset with its base URL pointed at the emulator (/openai/v1): Bearer key, lifecycle", () =>
    Effect.gen(function*() {
      const key = "gsk_0123456789abcdefghij"
      const { advance, faults, proxy } = yield* emulatorBehindProxy({ apiKey: key, errorRate: 0.3 })
      const groq = yield* provider(groqConfig({ apiKey: Redacted.make(key), baseUrl: `${proxy.url}/openai/v1` }))
      assert.strictEqual(groq.name, "groq")
      assert.deepStrictEqual(groq.limits, { maxRequests: 50_000, maxBytes: 95_000_000, oneModelPerShard: true })
      yield* lifecycle(groq, { advance, faults }, { model: "llama-3.1-8b-instant" })
      for (const s of proxy.seen) {
        assert.match(s.path, /^\/openai\/v1\/(files|batches)/)
        assert.strictEqual(header(s, "authorization"), `Bearer ${key}`)
      }
    }))

  it.scopedLive("together preset: uploads with purpose batch-api, upper-case statuses normalised, lifecycle", () =>
    Effect.gen(function*() {
      const key = "tgp_v1_0123456789abcdef"
      const { advance, emulator, faults, proxy } = yield* emulatorBehindProxy({ apiKey: key, errorRate: 0.3, upperCaseStatuses: true })
      const together = yield* provider(togetherConfig({ apiKey: Redacted.make(key), baseUrl: `${proxy.url}/v1` }))
      assert.strictEqual(together.name, "together")
      assert.isFalse(together.capabilities.metadata)
      const report = yield* lifecycle(together, { advance, faults }, { model: "meta-llama/Llama-3.3-70B-Instruct-Turbo" })
      for (const raw of ["VALIDATING", "IN_PROGRESS", "FINALIZING", "COMPLETED", "EXPIRED", "CANCELLING", "CANCELLED"]) assert.include(report.rawStatuses, raw)
      assert.strictEqual(report.completed.status, "completed")
      assert.strictEqual(report.expired.rawStatus, "EXPIRED")

      // Every upload carried purpose batch-api (the emulator lists them under it), and
      // findStaged looked for that purpose.
      const files = yield* Effect.promise(() =>
        fetch(`${emulator.url}/v1/files?purpose=batch-api`, { headers: { authorization: `Bearer ${key}` } }).then(
          (r) => r.json() as Promise<{ data: Array<{ filename: string; purpose: string }> }>
        )
      )
      assert.strictEqual(files.data.length, 4)
      for (const f of files.data) {
        assert.strictEqual(f.purpose, "batch-api")
        assert.match(f.filename, /^together-shard-\d\.jsonl$/) // from the file_name field
      }
      // Together's multipart upload path
      const uploads = proxy.seen.filter((s) => s.method === "POST" && s.path.startsWith("/v1/files"))
      assert.deepStrictEqual([...new Set(uploads.map((s) => s.path))], ["/v1/files/upload"])
      assert.match(header(uploads[0]!, "content-type") ?? "", /^multipart\/form-data; boundary=/)
      const lookups = proxy.seen.filter((s) => s.method === "GET" && s.path === "/v1/files")
      assert.isTrue(lookups.length >= 1)
      for (const s of lookups) assert.strictEqual(s.query.get("purpose"), "batch-api")
      assert.isTrue(Option.isSome(yield* together.findStaged("together-shard-2")))
    }))
})
