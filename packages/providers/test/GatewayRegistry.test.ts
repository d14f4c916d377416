/**
 * Registry entries of the OpenAI-compatible configurations (`azure`, `openai-compatible`,
 * `groq`, `together`): what a missing or bad environment says, and that it never says a key.
 */
import { HttpClient } from "@effect/platform"
import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Effect, Exit, Redacted } from "effect"
import { afterEach, vi } from "vitest"
import { Providers } from "../src/BatchProvider.js"
import { azureConfigFromEnv, gatewayConfigFromEnv, groqConfigFromEnv, togetherConfigFromEnv } from "../src/openai/Compatible.js"
import * as Registry from "../src/Registry.js"
import { undiciClient } from "./GatewaySupport.js"

const SECRET = "sk-secret-value-0123456789"

/** `Providers.get(name)` under exactly the given environment; the failure's message, or undefined. */
const getWith = (name: string, env: Record<string, string>) =>
  Effect.gen(function*() {
    const client = yield* undiciClient
    const exit = yield* Effect.flatMap(Providers, (providers) => providers.get(name)).pipe(
      Effect.provide(Registry.layerFromEnv()),
      Effect.provideService(HttpClient.HttpClient, client),
      Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env)))),
      Effect.exit
    )
    if (Exit.isSuccess(exit)) return { provider: exit.value, message: undefined, exit }
    const error = exit.cause._tag === "Fail" ? exit.cause.error : undefined
    return { provider: undefined, message: error?.message, error, exit }
  })

const assertNoSecret = (result: { readonly message: string | undefined; readonly exit: Exit.Exit<unknown, unknown> }) => {
  for (const text of [result.message ?? "", String(result.exit), JSON.stringify(result.exit)]) {
    assert.notInclude(text, SECRET)
    assert.notInclude(text, "proxy-secret")
  }
}

describe("registry: OpenAI-compatible entries", () => {
  afterEach(() => {
    vi.unstubAllEnvs()
  })

  it("knows the new names", () => {
    for (const name of ["openai", "azure", "openai-compatible", "groq", "together", "anthropic", "gemini"]) {
      assert.include(Registry.known, name)
    }
  })

  it.scoped("a missing key or endpoint: 'NAME is not set', every missing variable named", () =>
    Effect.gen(function*() {
      const cases: ReadonlyArray<readonly [string, Record<string, string>, string]> = [
        ["azure", {}, "provider azure: AZURE_OPENAI_API_KEY is not set; AZURE_OPENAI_ENDPOINT is not set"],
        ["azure", { AZURE_OPENAI_API_KEY: SECRET }, "provider azure: AZURE_OPENAI_ENDPOINT is not set"],
        ["azure", { AZURE_OPENAI_ENDPOINT: "https://r.openai.azure.com", AZURE_OPENAI_API_KEY: "  " }, "provider azure: AZURE_OPENAI_API_KEY is not set"],
        ["openai-compatible", {}, "provider openai-compatible: SLUICE_GATEWAY_BASE_URL is not set; SLUICE_GATEWAY_API_KEY is not set"],
        ["openai-compatible", { SLUICE_GATEWAY_API_KEY: SECRET }, "provider openai-compatible: SLUICE_GATEWAY_BASE_URL is not set"],
        ["openai-compatible", { SLUICE_GATEWAY_BASE_URL: "https://gw.example.com/v1" }, "provider openai-compatible: SLUICE_GATEWAY_API_KEY is not set"],
        ["groq", { GROQ_BASE_URL: "https://api.groq.com/openai/v1" }, "provider groq: GROQ_API_KEY is not set"],
        ["together", {}, "provider together: TOGETHER_API_KEY is not set"]
      ]
      for (const [name, env, expected] of cases) {
        const result = yield* getWith(name, env)
        assert.strictEqual(result.message, expected, `${name} ${JSON.stringify(Object.keys(env))}`)
        assert.strictEqual(result.error?._tag, "ProviderConfigError")
        assertNoSecret(result)
      }
    }))

  it.scoped("bad values are named without being repeated", () =>
    Effect.gen(function*() {
      const cases: ReadonlyArray<readonly [string, Record<string, string>, string]> = [
        // a key pasted into the endpoint variable
        ["azure", { AZURE_OPENAI_API_KEY: SECRET, AZURE_OPENAI_ENDPOINT: SECRET }, "AZURE_OPENAI_ENDPOINT is not a URL"],
        ["azure", { AZURE_OPENAI_API_KEY: SECRET, AZURE_OPENAI_ENDPOINT: `https://r.openai.azure.com?key=${SECRET}` }, "AZURE_OPENAI_ENDPOINT carries a query string"],
        ["openai-compatible", { SLUICE_GATEWAY_BASE_URL: "ftp://gw", SLUICE_GATEWAY_API_KEY: SECRET }, "SLUICE_GATEWAY_BASE_URL must be an http(s) URL"],
        ["openai-compatible", { SLUICE_GATEWAY_BASE_URL: "https://gw/v1", SLUICE_GATEWAY_API_KEY: SECRET, SLUICE_GATEWAY_AUTH: `basic ${SECRET}` }, `SLUICE_GATEWAY_AUTH must be "bearer" or "header:<name>"`],
        ["openai-compatible", { SLUICE_GATEWAY_BASE_URL: "https://gw/v1", SLUICE_GATEWAY_API_KEY: SECRET, SLUICE_GATEWAY_HEADERS: `{"x-proxy-token": "proxy-secret-1"` }, "SLUICE_GATEWAY_HEADERS is not valid JSON"],
        ["openai-compatible", { SLUICE_GATEWAY_BASE_URL: "https://gw/v1", SLUICE_GATEWAY_API_KEY: SECRET, SLUICE_GATEWAY_HEADERS: `{"x-proxy-token": ["proxy-secret-1"]}` }, "SLUICE_GATEWAY_HEADERS must map every header to a string"],
        ["groq", { GROQ_API_KEY: SECRET, GROQ_BASE_URL: "not a url" }, "GROQ_BASE_URL is not a URL"]
      ]
      for (const [name, env, expected] of cases) {
        const result = yield* getWith(name, env)
        assert.include(result.message ?? "", expected, `${name}: ${result.message}`)
        assert.include(result.message ?? "", "bad configuration")
        assertNoSecret(result)
      }
    }))

  it.scoped("a complete environment builds each provider with its name and limits", () =>
    Effect.gen(function*() {
      const azure = yield* getWith("azure", { AZURE_OPENAI_API_KEY: SECRET, AZURE_OPENAI_ENDPOINT: "https://r.openai.azure.com" })
      assert.strictEqual(azure.provider?.name, "azure")
      assert.strictEqual(azure.provider?.limits.maxRequests, 100_000)
      assert.strictEqual(azure.provider?.limits.maxBytes, 190_000_000)
      const gateway = yield* getWith("openai-compatible", { SLUICE_GATEWAY_BASE_URL: "https://gw/v1", SLUICE_GATEWAY_API_KEY: SECRET })
      assert.strictEqual(gateway.provider?.name, "openai-compatible")
      assert.strictEqual(gateway.provider?.limits.maxRequests, 50_000)
      const groq = yield* getWith("groq", { GROQ_API_KEY: SECRET })
      assert.strictEqual(groq.provider?.limits.maxBytes, 95_000_000)
      const together = yield* getWith("together", { TOGETHER_API_KEY: SECRET })
      assert.strictEqual(together.provider?.name, "together")
      assert.isFalse(together.provider?.capabilities.metadata)
    }))

  it.effect("config readers: Azure query, gateway auth and secret headers, preset base URL overrides", () =>
    Effect.gen(function*() {
      const env = (entries: Record<string, string>) => ConfigProvider.fromMap(new Map(Object.entries(entries)))
      const azure = yield* Effect.withConfigProvider(
        azureConfigFromEnv(),
        env({ AZURE_OPENAI_API_KEY: SECRET, AZURE_OPENAI_ENDPOINT: "https://r.openai.azure.com/", AZURE_OPENAI_API_VERSION: "2024-10-21" })
      )
      assert.strictEqual(azure.baseUrl, "https://r.openai.azure.com/openai")
      assert.deepStrictEqual(azure.query, { "api-version": "2024-10-21" })
      assert.strictEqual(Redacted.value(azure.apiKey), SECRET)

      const gateway = yield* Effect.withConfigProvider(
        gatewayConfigFromEnv(),
        env({
          SLUICE_GATEWAY_BASE_URL: "https://litellm.example.com/azure/v1/",
          SLUICE_GATEWAY_API_KEY: "tok:proj",
          SLUICE_GATEWAY_AUTH: "header:api-key",
          SLUICE_GATEWAY_HEADERS: `{"X-Proxy-Token": "proxy-secret-2"}`
        })
      )
      assert.strictEqual(gateway.baseUrl, "https://litellm.example.com/azure/v1")
      assert.deepStrictEqual(gateway.auth, { header: "api-key" })
      assert.deepStrictEqual(Object.keys(gateway.secretHeaders ?? {}), ["x-proxy-token"])
      assert.strictEqual(Redacted.value(gateway.secretHeaders!["x-proxy-token"]!), "proxy-secret-2")
      assert.notInclude(JSON.stringify(gateway), "proxy-secret-2")

      const groq = yield* Effect.withConfigProvider(groqConfigFromEnv(), env({ GROQ_API_KEY: SECRET, GROQ_BASE_URL: "http://127.0.0.1:9/openai/v1/" }))
      assert.strictEqual(groq.baseUrl, "http://127.0.0.1:9/openai/v1")
      const together = yield* Effect.withConfigProvider(
        togetherConfigFromEnv({ baseUrl: "http://127.0.0.1:9/v1" }),
        env({ TOGETHER_API_KEY: SECRET })
      )
      assert.strictEqual(together.baseUrl, "http://127.0.0.1:9/v1")
      assert.strictEqual(together.purpose, "batch-api")
    }))

  it("endpoints: base URLs for the manifest, never keys", () => {
    vi.stubEnv("AZURE_OPENAI_ENDPOINT", "https://r.openai.azure.com/")
    vi.stubEnv("AZURE_OPENAI_API_VERSION", "")
    vi.stubEnv("AZURE_OPENAI_API_KEY", SECRET)
    vi.stubEnv("SLUICE_GATEWAY_BASE_URL", "https://gw.example.com/gateway/v1/")
    vi.stubEnv("GROQ_BASE_URL", "")
    vi.stubEnv("TOGETHER_BASE_URL", "")
    const endpoints = Registry.endpoints(["azure", "openai-compatible", "groq", "together"])
    assert.deepStrictEqual(endpoints, {
      azure: { baseUrl: "https://r.openai.azure.com/openai/v1" },
      "openai-compatible": { baseUrl: "https://gw.example.com/gateway/v1" },
      groq: { baseUrl: "https://api.groq.com/openai/v1" },
      together: { baseUrl: "https://api.together.xyz/v1" }
    })
    vi.stubEnv("AZURE_OPENAI_API_VERSION", "2024-10-21")
    assert.deepStrictEqual(Registry.endpoints(["azure"]), { azure: { baseUrl: "https://r.openai.azure.com/openai" } })
    assert.notInclude(JSON.stringify(endpoints), SECRET)
  })
})
