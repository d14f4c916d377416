/**
 * Keys and base URLs are checked at configuration, before anything is sent or recorded: a key
 * is trimmed (a trailing newline from `$(cat key.txt)` once failed only after a minute of
 * retries) and refused with whitespace or control characters inside; a base URL with
 * credentials or a query string is refused with the URL masked; `http://` to a host other
 * than this machine is refused unless allowed. From the environment (every variable, through
 * the registry) and for configurations built in code (each call fails, nothing is sent).
 */
import { HttpClient, HttpClientResponse } from "@effect/platform"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Redacted } from "effect"
import { afterEach, vi } from "vitest"
import type { BatchProvider } from "../src/BatchProvider.js"
import * as AnthropicBatch from "../src/anthropic/AnthropicBatch.js"
import * as GeminiBatch from "../src/gemini/GeminiBatch.js"
import { baseUrlProblem, isLoopbackHost, maskUrl } from "../src/internal/origin.js"
import * as OpenAiBatch from "../src/openai/OpenAiBatch.js"
import type { ProviderError } from "../src/ProviderError.js"
import * as ProviderIdentity from "../src/ProviderIdentity.js"
import * as Registry from "../src/Registry.js"
import { header, json, providerFromEnv, testServer } from "./HttpTestServer.js"

const KEY = "sk-credentials-test-0123456789"
const PASSWORD = "hunter2-password-0123"

const getWith = providerFromEnv

const assertNotIn = (exit: Exit.Exit<unknown, unknown>, ...secrets: ReadonlyArray<string>) => {
  for (const text of [String(exit), JSON.stringify(exit), Exit.isFailure(exit) ? String(exit.cause) : ""]) {
    for (const secret of secrets) assert.notInclude(text, secret)
  }
}

/** Each provider's key variable, with what else it needs to build. */
const keyVariables: ReadonlyArray<readonly [string, string, Record<string, string>]> = [
  ["openai", "OPENAI_API_KEY", {}],
  ["azure", "AZURE_OPENAI_API_KEY", { AZURE_OPENAI_ENDPOINT: "https://r.openai.azure.com" }],
  ["openai-compatible", "SLUICE_GATEWAY_API_KEY", { SLUICE_GATEWAY_BASE_URL: "https://gw.example.com/v1" }],
  ["groq", "GROQ_API_KEY", {}],
  ["together", "TOGETHER_API_KEY", {}],
  ["anthropic", "ANTHROPIC_API_KEY", {}],
  ["gemini", "GEMINI_API_KEY", {}]
]

/** Each provider's base URL variable, with what else it needs to build. */
const urlVariables: ReadonlyArray<readonly [string, string, Record<string, string>]> = [
  ["openai", "OPENAI_BASE_URL", { OPENAI_API_KEY: KEY }],
  ["azure", "AZURE_OPENAI_ENDPOINT", { AZURE_OPENAI_API_KEY: KEY }],
  ["openai-compatible", "SLUICE_GATEWAY_BASE_URL", { SLUICE_GATEWAY_API_KEY: KEY }],
  ["groq", "GROQ_BASE_URL", { GROQ_API_KEY: KEY }],
  ["together", "TOGETHER_BASE_URL", { TOGETHER_API_KEY: KEY }],
  ["anthropic", "ANTHROPIC_BASE_URL", { ANTHROPIC_API_KEY: KEY }],
  ["gemini", "GEMINI_BASE_URL", { GEMINI_API_KEY: KEY }]
]

describe("keys from the environment", () => {
  it.scopedLive("are trimmed: a key read with a trailing newline is sent without it, at once (it used to fail after a minute of retries)", () =>
    Effect.gen(function*() {
      const server = yield* testServer((_, res) => json(res, 404, { error: { message: "no such batch" } }))
      // provider, key variable, base URL variable and its value, the header that carries the key
      const cases: ReadonlyArray<readonly [string, string, string, string, string, string]> = [
        ["openai", "OPENAI_API_KEY", "OPENAI_BASE_URL", `${server.url}/v1`, "authorization", `Bearer ${KEY}`],
        ["azure", "AZURE_OPENAI_API_KEY", "AZURE_OPENAI_ENDPOINT", server.url, "api-key", KEY],
        ["openai-compatible", "SLUICE_GATEWAY_API_KEY", "SLUICE_GATEWAY_BASE_URL", `${server.url}/v1`, "authorization", `Bearer ${KEY}`],
        ["groq", "GROQ_API_KEY", "GROQ_BASE_URL", `${server.url}/v1`, "authorization", `Bearer ${KEY}`],
        ["together", "TOGETHER_API_KEY", "TOGETHER_BASE_URL", `${server.url}/v1`, "authorization", `Bearer ${KEY}`],
        ["anthropic", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", server.url, "x-api-key", KEY],
        ["gemini", "GEMINI_API_KEY", "GEMINI_BASE_URL", server.url, "x-goog-api-key", KEY]
      ]
      for (const [name, keyVariable, urlVariable, url, headerName, expected] of cases) {
        const { message, provider } = yield* getWith(name, { [keyVariable]: `  ${KEY}\n`, [urlVariable]: url })
        assert.isDefined(provider, message)
        const error = yield* Effect.flip(provider!.retrieve("b1"))
        assert.strictEqual(error.reason, "NotFound", `${name}: ${error.message}`)
        assert.strictEqual(header(server.received[server.received.length - 1]!, headerName), expected, name)
      }
      assert.strictEqual(server.received.length, cases.length)
    }))

  it.scoped("with whitespace, a control character or a non-ASCII character inside: refused, naming the variable, never the key", () =>
    Effect.gen(function*() {
      const bad: ReadonlyArray<readonly [string, string]> = [
        [`${KEY}\n${KEY}`, "has whitespace inside"],
        [`${KEY} extra`, "has whitespace inside"],
        [`${KEY}\u00a0x`, "has whitespace inside"],
        [`${KEY}\u0000x`, "has a control character inside"],
        [`\u201c${KEY}\u201d`, "has a character that is not printable ASCII"]
      ]
      for (const [name, variable, rest] of keyVariables) {
        for (const [key, reason] of bad) {
          const result = yield* getWith(name, { ...rest, [variable]: key })
          assert.include(result.message ?? "", `${variable} ${reason}`, name)
          assert.include(result.message ?? "", `provider ${name}`)
          assertNotIn(result.exit, KEY)
        }
      }
    }))
})

describe("base URLs from the environment", () => {
  afterEach(() => {
    vi.unstubAllEnvs()
  })

  it.scoped("with credentials or a query string: refused, the URL shown masked", () =>
    Effect.gen(function*() {
      for (const [name, variable, rest] of urlVariables) {
        const withUser = yield* getWith(name, { ...rest, [variable]: `https://admin:${PASSWORD}@api.example.com/v1` })
        assert.include(withUser.message ?? "", `${variable} carries credentials (https://***:***@api.example.com/v1)`, name)
        const withQuery = yield* getWith(name, { ...rest, [variable]: `https://api.example.com/v1?key=${PASSWORD}&team=a` })
        assert.include(withQuery.message ?? "", `${variable} carries a query string or fragment (https://api.example.com/v1?key=***&team=***)`, name)
        for (const result of [withUser, withQuery]) assertNotIn(result.exit, PASSWORD, "admin", KEY)
      }
    }))

  it.scoped("http:// to another machine: refused unless SLUICE_ALLOW_INSECURE_HTTP; loopback is fine", () =>
    Effect.gen(function*() {
      for (const [name, variable, rest] of urlVariables) {
        const refused = yield* getWith(name, { ...rest, [variable]: "http://api.example.com/v1" })
        assert.include(refused.message ?? "", `${variable} is http:// to api.example.com, which is not this machine`, name)
        assert.include(refused.message ?? "", "SLUICE_ALLOW_INSECURE_HTTP=1")
        const allowed = yield* getWith(name, { ...rest, [variable]: "http://api.example.com/v1", SLUICE_ALLOW_INSECURE_HTTP: "1" })
        assert.isTrue(Exit.isSuccess(allowed.exit), `${name}: ${allowed.message}`)
        for (const local of ["http://127.0.0.1:8080/v1", "http://127.9.8.7/v1", "http://localhost:4010/v1", "http://[::1]:4010/v1"]) {
          const result = yield* getWith(name, { ...rest, [variable]: local })
          assert.isTrue(Exit.isSuccess(result.exit), `${name} ${local}: ${result.message}`)
        }
      }
    }))

  it("the endpoints recorded in a run's manifest never carry credentials or a query", () => {
    vi.stubEnv("OPENAI_BASE_URL", `https://admin:${PASSWORD}@gw.example.com/v1?key=${PASSWORD}`)
    vi.stubEnv("ANTHROPIC_BASE_URL", `https://gw.example.com/anthropic`)
    const recorded = Registry.endpoints(["openai", "anthropic"])
    assert.deepStrictEqual(recorded, {
      openai: { baseUrl: "https://gw.example.com/v1" },
      anthropic: { baseUrl: "https://gw.example.com/anthropic" }
    })
  })
})

describe("configurations built in code", () => {
  /** A client that records the URLs it is asked for and answers a batch. */
  const recording = () => {
    const urls: Array<string> = []
    const client = HttpClient.make((request) =>
      Effect.sync(() => {
        urls.push(request.url)
        return HttpClientResponse.fromWeb(request, new Response(JSON.stringify({ id: "b1", status: "in_progress" })))
      })
    )
    return { urls, client }
  }

  const families = (baseUrl: string, apiKey: string, options: { readonly allowInsecureHttp?: boolean } = {}) => {
    const { client, urls } = recording()
    const key = Redacted.make(apiKey)
    const providers: ReadonlyArray<BatchProvider> = [
      OpenAiBatch.makeWithClient(client, { apiKey: key, baseUrl, retry: { maxRetries: 0 }, ...options }),
      AnthropicBatch.makeWithClient(client, { apiKey: key, baseUrl, retry: { maxRetries: 0 }, ...options }),
      GeminiBatch.makeWithClient(client, { apiKey: key, baseUrl, retry: { maxRetries: 0 }, ...options })
    ]
    return { providers, urls }
  }

  const rejection = (exit: Exit.Exit<unknown, ProviderError>): ProviderError | undefined =>
    Exit.isFailure(exit) && exit.cause._tag === "Fail" ? exit.cause.error : undefined

  it.effect("a key with a trailing newline is sent trimmed", () =>
    Effect.gen(function*() {
      let sent: string | undefined
      const provider = OpenAiBatch.makeWithClient(
        HttpClient.make((request) =>
          Effect.sync(() => {
            sent = request.headers["authorization"]
            return HttpClientResponse.fromWeb(request, new Response(JSON.stringify({ id: "b1" })))
          })
        ),
        { apiKey: Redacted.make(`${KEY}\r\n`), baseUrl: "https://api.example.com/v1" }
      )
      assert.strictEqual((yield* provider.retrieve("b1")).id, "b1")
      assert.strictEqual(sent, `Bearer ${KEY}`)
    }))

  it.effect("a key with whitespace inside: every call fails at once, nothing is sent", () =>
    Effect.gen(function*() {
      const { providers, urls } = families("https://api.example.com", `${KEY}\nsecond-line`)
      for (const provider of providers) {
        const exit = yield* Effect.exit(provider.retrieve("b1"))
        const error = rejection(exit)
        assert.strictEqual(error?.reason, "Rejected", provider.name)
        assert.include(error?.message ?? "", "the API key has whitespace inside")
        assertNotIn(exit, KEY)
      }
      assert.deepStrictEqual(urls, [])
    }))

  it.effect("a base URL with credentials: refused at every call, never in the provider's origin or identity", () =>
    Effect.gen(function*() {
      const { providers, urls } = families(`https://admin:${PASSWORD}@api.example.com/v1`, KEY)
      for (const provider of providers) {
        const exit = yield* Effect.exit(provider.retrieve("b1"))
        assert.include(rejection(exit)?.message ?? "", "the base URL carries credentials (https://***:***@api.example.com/v1)")
        assertNotIn(exit, PASSWORD, KEY)
        const identity = ProviderIdentity.of(provider)
        assert.strictEqual(identity.origin, "https://api.example.com")
        assert.notInclude(JSON.stringify(identity), PASSWORD)
        assert.notInclude(provider.origin ?? "", PASSWORD)
      }
      assert.deepStrictEqual(urls, [])
    }))

  it.effect("a base URL with a key in its query string: refused, masked", () =>
    Effect.gen(function*() {
      const { providers, urls } = families(`https://api.example.com/v1?key=${PASSWORD}`, KEY)
      for (const provider of providers) {
        const exit = yield* Effect.exit(provider.retrieve("b1"))
        assert.include(rejection(exit)?.message ?? "", "(https://api.example.com/v1?key=***)")
        assertNotIn(exit, PASSWORD)
        assert.notInclude(provider.origin ?? "", PASSWORD)
      }
      assert.deepStrictEqual(urls, [])
    }))

  it.effect("http:// to another machine: refused unless allowInsecureHttp", () =>
    Effect.gen(function*() {
      const refused = families("http://10.0.0.7:8080", KEY)
      for (const provider of refused.providers) {
        const error = rejection(yield* Effect.exit(provider.retrieve("b1")))
        assert.include(error?.message ?? "", "is http:// to 10.0.0.7:8080, which is not this machine")
      }
      assert.deepStrictEqual(refused.urls, [])
      const allowed = families("http://10.0.0.7:8080", KEY, { allowInsecureHttp: true })
      for (const provider of allowed.providers) yield* Effect.exit(provider.retrieve("b1"))
      assert.strictEqual(allowed.urls.length, 3)
      for (const url of allowed.urls) assert.match(url, /^http:\/\/10\.0\.0\.7:8080\//)
    }))
})

describe("origin rules", () => {
  it("loopback is 127.0.0.0/8, ::1 and localhost; nothing else", () => {
    for (const url of ["http://127.0.0.1/", "http://127.255.0.9/", "http://127.1/", "http://localhost/", "http://LOCALHOST./", "http://[::1]/", "http://[0:0:0:0:0:0:0:1]/"]) {
      assert.isTrue(isLoopbackHost(new URL(url).hostname), url)
    }
    for (const url of ["http://128.0.0.1/", "http://10.0.0.1/", "http://localhost.example.com/", "http://127.0.0.1.example.com/", "http://[::2]/", "http://0.0.0.0/"]) {
      assert.isFalse(isLoopbackHost(new URL(url).hostname), url)
    }
  })

  it("masks credentials and query values, shows nothing of a non-URL", () => {
    assert.strictEqual(maskUrl(`https://u:${PASSWORD}@h.example/v1?key=${PASSWORD}#frag`), "https://***:***@h.example/v1?key=***#***")
    assert.strictEqual(maskUrl(`https://${PASSWORD}@h.example/`), "https://***@h.example/")
    assert.strictEqual(maskUrl(PASSWORD), "(not a URL)")
    assert.notInclude(baseUrlProblem(PASSWORD) ?? "", PASSWORD)
    assert.isUndefined(baseUrlProblem("https://api.openai.com/v1"))
  })
})
