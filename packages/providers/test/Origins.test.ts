/**
 * Credentials go only to the configured origin, over either HTTP client a library user may
 * run the providers over (undici, the shipped layers; Effect's fetch-based client, which
 * follows redirects by default): a server on 127.0.0.1 that redirects to a second server (on
 * another port: another origin) never gets any family's key there; same-origin redirects are
 * followed a bounded number of times; a client that follows redirects by itself is caught.
 * And a provider gets no tracing headers unless tracing is turned on.
 */
import { HttpClient } from "@effect/platform"
import type { HttpClient as HttpClientType } from "@effect/platform"
import { NodeHttpClient } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Redacted } from "effect"
import type { BatchProvider } from "../src/BatchProvider.js"
import * as AnthropicBatch from "../src/anthropic/AnthropicBatch.js"
import * as GeminiBatch from "../src/gemini/GeminiBatch.js"
import { maxRedirects } from "../src/internal/http.js"
import { azureConfig, gatewayConfig } from "../src/openai/Compatible.js"
import * as OpenAiBatch from "../src/openai/OpenAiBatch.js"
import { ProviderError } from "../src/ProviderError.js"
import type { Received } from "./HttpTestServer.js"
import { clientOf, clients, header, json, providerFromEnv, testServer } from "./HttpTestServer.js"

const KEY = "sk-origin-test-key-0123456789"
const PROXY_TOKEN = "proxy-token-abcdef-0123456789"
const apiKey = Redacted.make(KEY)

/** What every family's config gets in these tests: no retries (each call is one exchange). */
interface Extra {
  readonly tracePropagation?: boolean
}

interface Family {
  readonly name: string
  /** The headers that carry credentials in this configuration. */
  readonly credentials: ReadonlyArray<string>
  readonly make: (client: HttpClientType.HttpClient, origin: string, extra?: Extra) => BatchProvider
}

const noRetry = { retry: { maxRetries: 0 } }

const families: ReadonlyArray<Family> = [
  {
    name: "openai (Authorization: Bearer)",
    credentials: ["authorization"],
    make: (client, origin, extra) => OpenAiBatch.makeWithClient(client, { apiKey, baseUrl: `${origin}/v1`, ...noRetry, ...extra })
  },
  {
    name: "azure (api-key)",
    credentials: ["api-key"],
    make: (client, origin, extra) => OpenAiBatch.makeWithClient(client, azureConfig({ apiKey, endpoint: origin, ...noRetry, ...extra }))
  },
  {
    name: "openai-compatible gateway (its own auth header and secret headers)",
    credentials: ["x-gateway-key", "x-proxy-token"],
    make: (client, origin, extra) =>
      OpenAiBatch.makeWithClient(
        client,
        gatewayConfig({
          apiKey,
          baseUrl: `${origin}/gw/v1`,
          auth: { header: "x-gateway-key" },
          secretHeaders: { "x-proxy-token": Redacted.make(PROXY_TOKEN) },
          ...noRetry,
          ...extra
        })
      )
  },
  {
    name: "anthropic (x-api-key)",
    credentials: ["x-api-key"],
    make: (client, origin, extra) => AnthropicBatch.makeWithClient(client, { apiKey, baseUrl: origin, ...noRetry, ...extra })
  },
  {
    name: "anthropic-shaped gateway (Authorization: Bearer)",
    credentials: ["authorization"],
    make: (client, origin, extra) =>
      AnthropicBatch.makeWithClient(client, AnthropicBatch.gatewayConfig({ apiKey, baseUrl: origin, ...noRetry, ...extra }))
  },
  {
    name: "gemini (x-goog-api-key)",
    credentials: ["x-goog-api-key"],
    make: (client, origin, extra) => GeminiBatch.makeWithClient(client, { apiKey, baseUrl: origin, ...noRetry, ...extra })
  }
]

const failureOf = <A>(exit: Exit.Exit<A, ProviderError>): ProviderError => {
  if (Exit.isSuccess(exit)) throw new Error("expected the call to fail")
  if (exit.cause._tag !== "Fail") throw new Error(`expected a failure, got ${String(exit.cause)}`)
  return exit.cause.error
}

/** No secret in anything the call left behind. */
const assertNoSecret = (exit: Exit.Exit<unknown, unknown>) => {
  for (const text of [String(exit), JSON.stringify(exit), Exit.isFailure(exit) ? String(exit.cause) : ""]) {
    assert.notInclude(text, KEY)
    assert.notInclude(text, PROXY_TOKEN)
  }
}

/** Every credential header the family sends, as received. */
const credentialsIn = (family: Family, request: Received): Array<string> =>
  family.credentials.flatMap((name) => header(request, name) ?? [])

describe("cross-origin redirects: refused, the other origin never gets a credential", () => {
  for (const [clientName, layer] of clients) {
    for (const family of families) {
      it.scopedLive(`${clientName}: ${family.name}`, () =>
        Effect.gen(function*() {
          const elsewhere = yield* testServer((_, res) => json(res, 200, {}))
          const origin = yield* testServer((request, res) => {
            res.writeHead(302, { location: `${elsewhere.url}${request.url}` })
            res.end()
          })
          const provider = family.make(yield* clientOf(layer), origin.url)
          const exit = yield* Effect.exit(provider.retrieve("b1"))
          const error = failureOf(exit)
          assert.strictEqual(error.reason, "Rejected")
          assert.isFalse(error.retryable)
          assert.include(error.message, origin.url)
          assert.include(error.message, elsewhere.url)
          assert.include(error.message, "not followed")
          assertNoSecret(exit)
          // The configured origin got the credentials, once; the other origin got nothing at all.
          assert.strictEqual(origin.received.length, 1)
          assert.lengthOf(credentialsIn(family, origin.received[0]!), family.credentials.length)
          assert.deepStrictEqual(elsewhere.received, [])
        }))
    }

    it.scopedLive(`${clientName}: a 307 on create (a POST with a body) to another origin is refused too`, () =>
      Effect.gen(function*() {
        const elsewhere = yield* testServer((_, res) => json(res, 200, { id: "b1", status: "validating" }))
        const origin = yield* testServer((request, res) => {
          res.writeHead(307, { location: `${elsewhere.url}${request.url}` })
          res.end()
        })
        const provider = families[0]!.make(yield* clientOf(layer), origin.url)
        const exit = yield* Effect.exit(provider.create({ inputRef: "file-1", path: "", endpoint: "chat", metadata: {} }))
        assert.include(failureOf(exit).message, `to another origin, ${elsewhere.url}`)
        assert.strictEqual(origin.received.length, 1)
        assert.deepStrictEqual(elsewhere.received, [])
      }))
  }
})

describe("same-origin redirects", () => {
  const batch = { id: "b1", status: "in_progress" }
  for (const [clientName, layer] of clients) {
    it.scopedLive(`${clientName}: a GET is followed with its credentials, to the Location's path and query`, () =>
      Effect.gen(function*() {
        const origin = yield* testServer((request, res) => {
          if (request.url === "/v1/batches/b1") {
            res.writeHead(302, { location: "/v1/moved/b1?from=redirect" })
            res.end()
          } else json(res, 200, batch)
        })
        const provider = families[0]!.make(yield* clientOf(layer), origin.url)
        const info = yield* provider.retrieve("b1")
        assert.strictEqual(info.id, "b1")
        assert.deepStrictEqual(origin.received.map((r) => r.url), ["/v1/batches/b1", "/v1/moved/b1?from=redirect"])
        assert.strictEqual(header(origin.received[1]!, "authorization"), `Bearer ${KEY}`)
      }))

    it.scopedLive(`${clientName}: a 307 on create sends the same body again`, () =>
      Effect.gen(function*() {
        const origin = yield* testServer((request, res) => {
          if (request.url === "/v1/batches") {
            res.writeHead(307, { location: "/v1/batches-here" })
            res.end()
          } else json(res, 200, { id: "b2", status: "validating" })
        })
        const provider = families[0]!.make(yield* clientOf(layer), origin.url)
        const info = yield* provider.create({ inputRef: "file-1", path: "", endpoint: "chat", metadata: { sluice_run: "r" } })
        assert.strictEqual(info.id, "b2")
        assert.deepStrictEqual(origin.received.map((r) => `${r.method} ${r.url}`), ["POST /v1/batches", "POST /v1/batches-here"])
        assert.strictEqual(origin.received[1]!.body, origin.received[0]!.body)
        assert.include(origin.received[1]!.body, `"input_file_id":"file-1"`)
      }))

    it.scopedLive(`${clientName}: a 302 on a POST is not turned into a GET: refused`, () =>
      Effect.gen(function*() {
        const origin = yield* testServer((_, res) => {
          res.writeHead(302, { location: "/v1/elsewhere" })
          res.end()
        })
        const provider = families[0]!.make(yield* clientOf(layer), origin.url)
        const error = failureOf(yield* Effect.exit(provider.create({ inputRef: "file-1", path: "", endpoint: "chat", metadata: {} })))
        assert.strictEqual(error.reason, "Rejected")
        assert.include(error.message, "only with status 307 or 308")
        assert.strictEqual(origin.received.length, 1)
      }))

    it.scopedLive(`${clientName}: a redirect loop stops after ${maxRedirects} redirects`, () =>
      Effect.gen(function*() {
        const origin = yield* testServer((request, res) => {
          res.writeHead(301, { location: request.url })
          res.end()
        })
        const provider = families[0]!.make(yield* clientOf(layer), origin.url)
        const error = failureOf(yield* Effect.exit(provider.retrieve("b1")))
        assert.include(error.message, `more than ${maxRedirects} redirects`)
        assert.strictEqual(origin.received.length, maxRedirects + 1)
      }))
  }
})

describe("a client that follows redirects by itself", () => {
  it.scopedLive("is caught: the answer from another origin is never accepted", () =>
    Effect.gen(function*() {
      const elsewhere = yield* testServer((_, res) => json(res, 200, { id: "b1", status: "completed" }))
      const origin = yield* testServer((request, res) => {
        res.writeHead(302, { location: `${elsewhere.url}${request.url}` })
        res.end()
      })
      const following = HttpClient.followRedirects(yield* clientOf(NodeHttpClient.layerUndici), 3)
      const provider = families[0]!.make(following, origin.url)
      const error = failureOf(yield* Effect.exit(provider.retrieve("b1")))
      assert.strictEqual(error.reason, "Rejected")
      assert.include(error.message, `followed a redirect from ${origin.url} to ${elsewhere.url} by itself`)
    }))
})

describe("tracing headers", () => {
  for (const [clientName, layer] of clients) {
    for (const family of families) {
      it.scopedLive(`${clientName}: ${family.name}: none by default, traceparent and b3 when turned on`, () =>
        Effect.gen(function*() {
          const server = yield* testServer((_, res) => json(res, 404, { error: { message: "no such batch" } }))
          const client = yield* clientOf(layer)
          // Inside a span of the caller's, as in a program that traces.
          const call = (provider: BatchProvider) => Effect.exit(Effect.withSpan(provider.retrieve("b1"), "caller"))
          yield* call(family.make(client, server.url))
          yield* call(family.make(client, server.url, { tracePropagation: true }))
          assert.strictEqual(server.received.length, 2)
          const [off, on] = server.received as [Received, Received]
          assert.isUndefined(header(off, "traceparent"))
          assert.isUndefined(header(off, "b3"))
          assert.match(header(on, "traceparent") ?? "", /^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/)
          assert.isDefined(header(on, "b3"))
          // Only what the API needs otherwise: the credentials are there either way.
          assert.lengthOf(credentialsIn(family, off), family.credentials.length)
        }))
    }
  }
})

describe("tracing headers, from the environment", () => {
  it.scopedLive("SLUICE_TRACE_PROPAGATION=1 turns them on for providers the registry builds; unset, none", () =>
    Effect.gen(function*() {
      const server = yield* testServer((_, res) => json(res, 404, { error: { message: "no such batch" } }))
      const env = { OPENAI_API_KEY: KEY, OPENAI_BASE_URL: `${server.url}/v1` }
      for (const extra of [{}, { SLUICE_TRACE_PROPAGATION: "1" }]) {
        const { message, provider } = yield* providerFromEnv("openai", { ...env, ...extra })
        assert.isDefined(provider, message)
        yield* Effect.exit(Effect.withSpan(provider!.retrieve("b1"), "caller"))
      }
      assert.deepStrictEqual(server.received.map((r) => header(r, "traceparent") !== undefined), [false, true])
    }))
})
