/**
 * The sluice emulator: a real HTTP server on 127.0.0.1 speaking the OpenAI
 * Files + Batches API, the Anthropic Message Batches API and Gemini batch mode
 * (`/v1beta` and `/v1`), and their real-time endpoints (chat completions, embeddings,
 * responses; messages; generateContent) with rate limits, rate-limit headers and latency,
 * with deterministic, schema-conforming answers and switchable faults.
 *
 * Users point their pipelines (or the official `openai` client) at
 * `${handle.url}/v1`, `@anthropic-ai/sdk` and `@google/genai` at `${handle.url}`;
 * tests steer it through `${handle.url}/_emulator/...`
 * (ledger, faults, clock, reset — see internal/controlRoutes.ts; guarded as internal/access.ts says). The same OpenAI routes
 * answer under Azure's roots (`/openai/v1/...`, `/openai/...?api-version=`) and under a
 * gateway path prefix (`/azure/v1/...`, `/gateway/v1/...`): see README.md.
 *
 * @example
 *   const emulator = await startEmulator({ validatingMs: 20, requestsPerSecond: 10_000 })
 *   const client = new OpenAI({ apiKey: "test", baseURL: `${emulator.url}/v1` })
 *   ...
 *   await emulator.close()
 */
import { createServer } from "node:http"
import type { AddressInfo } from "node:net"
import { Data, Effect, type Scope } from "effect"
import { HostPolicy } from "./internal/access.js"
import { Batches } from "./internal/batches.js"
import { EmulatorClock, systemClock } from "./internal/clock.js"
import { ApiError } from "./internal/errors.js"
import { defaultFaults, FAULT_KEYS, type FaultSettings, Faults, parseFaultPatch } from "./internal/faults.js"
import { KnownModels } from "./internal/models.js"
import { RealtimeCalls } from "./internal/realtime.js"
import { RequestCounts } from "./internal/requestCounts.js"
import { createHandler } from "./internal/router.js"
import { Store } from "./internal/store.js"
import { Webhooks } from "./internal/webhooks.js"

export { DEFAULT_MODELS, parseModelList } from "./internal/models.js"

export interface EmulatorOptions {
  /** TCP port; 0 picks a free one (default 0). */
  readonly port?: number
  /** Interface to bind (default "127.0.0.1"). */
  readonly host?: string
  /**
   * Host names (without port) the emulator answers to besides loopback (`localhost`, `127.0.0.1`,
   * `[::1]`) and the address it is bound to; `"*"` accepts any. Every other `Host` header gets a
   * 403, on every route: a web page cannot reach the emulator through DNS rebinding. For an
   * emulator bound to another interface on purpose and reached by name (a container's service
   * name, say): `host: "0.0.0.0", allowedHosts: ["emulator"]`. The test API answers to the same
   * names: set `apiKey` too.
   */
  readonly allowedHosts?: ReadonlyArray<string>
  /**
   * If set, every call must carry this key (`Authorization: Bearer K`, `x-api-key: K` or
   * `api-key: K`; Gemini's and Anthropic's styles on their routes), else 401 — the test API
   * (`/_emulator/*`) too. If unset, any key is accepted.
   */
  readonly apiKey?: string
  /**
   * Directory for files, batch records and the ledger. When set, a new
   * emulator started on the same directory serves the same files and batches
   * and continues their lifecycle (time-based, on its clock). When unset, a
   * temp directory is used and removed on close. Reset deletes only the files the
   * emulator wrote there; a directory whose `state.json` is not the emulator's is refused.
   */
  readonly stateDir?: string
  /** Time a batch spends in "validating" (ms, default 200). */
  readonly validatingMs?: number
  /** Processing speed of each batch while in_progress (requests per second, default 1000; Infinity = instant). */
  readonly requestsPerSecond?: number
  /** Time a batch spends in "finalizing" (ms, default 200). */
  readonly finalizingMs?: number
  /** Time a batch spends in "cancelling" before "cancelled" (ms, default 200). */
  readonly cancellingMs?: number
  /** Completion window: a batch not done processing by then becomes "expired" with partial results (ms, default 24 h). */
  readonly expireAfterMs?: number
  /**
   * Fraction of batch requests answered with a 500 `server_error` line in the
   * error file. Chosen deterministically per request (hash of custom_id +
   * body); a request that failed succeeds when resubmitted in a later batch.
   */
  readonly errorRate?: number
  /**
   * Fraction of /v1 calls answered 429 with `Retry-After` (seconds) and
   * `retry-after-ms` headers. Deterministic sequence (rate 0.25 = every 4th
   * call), never on two consecutive calls to the same method + path.
   */
  readonly rateLimitRate?: number
  /** Delay advertised by the 429s of rateLimitRate (ms, default 1000). */
  readonly retryAfterMs?: number
  /** Fraction of /v1 calls answered 500/502/503 before taking effect (same sequencing as rateLimitRate). */
  readonly serverErrorRate?: number
  /** Fraction of /v1 calls whose socket is destroyed without a response, after the call took effect (a lost response). */
  readonly resetRate?: number
  /**
   * Real-time endpoints: requests per minute, per model (OpenAI's rule: per model per
   * organisation). A token bucket on the emulator's clock: a full burst, then `rpmLimit` a
   * minute; over it, 429 with `Retry-After` (and `retry-after-ms` on OpenAI routes). Default: none.
   */
  readonly rpmLimit?: number
  /** Real-time endpoints: tokens (the answer's input + output tokens) per minute, per model. Default: none. */
  readonly tpmLimit?: number
  /**
   * The organisation's enqueued-token limit, per model (OpenAI's rule): a batch whose input
   * tokens, with those of the model's batches not yet ended, exceed it fails validation with
   * `token_limit_exceeded`. `GET /_emulator/enqueued` tells the limit and the most enqueued at
   * once per model. Default: none.
   */
  readonly enqueuedTokenLimit?: number
  /**
   * Azure's fail-fast queueing: a create over `enqueuedTokenLimit` is refused at once with HTTP
   * 400 `token_limit_exceeded` (no batch is made) instead of a batch that fails validation.
   */
  readonly enqueuedLimitOnCreate?: boolean
  /**
   * Send the rate-limit headers (OpenAI `x-ratelimit-*`, Anthropic `anthropic-ratelimit-*`) of
   * the configured limits on real-time answers, and `Retry-After` on their 429s (default true).
   * false: none at all, like a vLLM or llama.cpp server.
   */
  readonly rateLimitHeaders?: boolean
  /** Real-time endpoints: delay of every answer, in ms (default 0). */
  readonly latencyMs?: number
  /** Real-time endpoints: added delay per output token of the answer, in ms (default 0). */
  readonly latencyPerTokenMs?: number
  /** Fraction of lines silently omitted from both result files (the provider "lost" them). */
  readonly dropLines?: number
  /** Completed batches report `output_file_id: null` until this long after completion (ms). */
  readonly lateOutputFileMs?: number
  /** Fraction of first-time structured (JSON) answers that are invalid JSON or do not match the schema. */
  readonly invalidJsonRate?: number
  /** Salt of every deterministic choice (answers, faulted requests, result order). Default "sluice". */
  readonly seed?: string
  /**
   * Count the prompt tokens of `usage` (and of the enqueued-token limit) at about four
   * characters a token, as for models sluice has no tokenizer for, instead of with the OpenAI
   * model's real tokenizer, which takes about a quarter of the emulator's CPU at full speed.
   * For benchmarks; off by default: what `sluice estimate` predicts is checked against real counts.
   */
  readonly approximateTokens?: boolean
  /** Receives an access log line per request and a line per batch transition to a terminal state. */
  readonly log?: (line: string) => void
  /**
   * Time source (ms since epoch); for tests that drive the lifecycle with a fake clock. Default
   * Date.now. Either way `POST /_emulator/clock` can hold, advance and release it. While a test
   * drives the time (this option, or a held clock), a poll waits for validation and result
   * files instead of answering "validating"/"finalizing" meanwhile: what it answers depends
   * on the clock alone, however busy the machine.
   */
  readonly clock?: () => number
  /** Together-style Batch objects: upper-case statuses (`VALIDATING`, `IN_PROGRESS`, `COMPLETED` …). */
  readonly upperCaseStatuses?: boolean
  /**
   * Azure-style Batch objects: capitalised statuses (`Validating`, `InProgress`, `Completed` …)
   * and `""` instead of null for an absent output or error file id.
   */
  readonly azureQuirks?: boolean
  /**
   * The model names requests may use; any other is refused as the real API refuses it (OpenAI:
   * 404 `model_not_found`, an error line in a batch; Anthropic: an `errored` result with
   * `not_found_error`; Gemini: 404 NOT_FOUND on create). Patterns: `*` any characters, `#` a
   * number, `{a,b}` alternatives; a dated snapshot suffix (`-2024-07-18`) is always accepted.
   * `"default"` stands for DEFAULT_MODELS, `"*"` accepts any model. Default: `["default"]`.
   */
  readonly models?: ReadonlyArray<string>
  /**
   * Send OpenAI's signed batch events (`batch.completed`, `batch.failed`, `batch.expired`,
   * `batch.cancelled`; Standard Webhooks headers) to this URL when an OpenAI batch ends, signed
   * with `secret` (`whsec_<base64 key>`). `POST /_emulator/webhooks` sets or clears it at run
   * time, and `POST /_emulator/webhooks/send` delivers forged, stale and replayed events.
   */
  readonly webhooks?: { readonly url: string; readonly secret: string }
}

export interface EmulatorHandle {
  /** Origin of the server, e.g. "http://127.0.0.1:54321" (the OpenAI base URL is `${url}/v1`). */
  readonly url: string
  readonly port: number
  /** Stops listening, drops open connections, waits for background work; removes the temp state dir. */
  close(): Promise<void>
}

export class EmulatorStartError extends Data.TaggedError("EmulatorStartError")<{
  readonly message: string
  readonly cause: unknown
}> {}

const DEFAULTS = {
  port: 0,
  host: "127.0.0.1",
  validatingMs: 200,
  finalizingMs: 200,
  cancellingMs: 200,
  expireAfterMs: 24 * 60 * 60 * 1000,
  seed: "sluice"
} as const

const nonNegative = (name: string, value: number | undefined, fallback: number): number => {
  const resolved = value ?? fallback
  if (!(resolved >= 0) || !Number.isFinite(resolved)) throw new Error(`Emulator option '${name}' must be a finite number >= 0, got ${value}`)
  return resolved
}

const initialFaults = (options: EmulatorOptions): FaultSettings => {
  const given: Record<string, unknown> = {}
  for (const key of FAULT_KEYS) given[key] = (options as Record<string, unknown>)[key]
  try {
    return { ...defaultFaults, ...parseFaultPatch(given, FAULT_KEYS) }
  } catch (error) {
    throw new Error(`Invalid emulator option: ${error instanceof ApiError ? error.message : String(error)}`)
  }
}

const knownModels = (list: ReadonlyArray<string> | undefined): KnownModels => {
  try {
    return KnownModels.of(list)
  } catch (error) {
    throw new Error(`Invalid emulator option 'models': ${error instanceof Error ? error.message : String(error)}`)
  }
}

const hostPolicy = (allowed: ReadonlyArray<string> | undefined): HostPolicy => {
  try {
    return new HostPolicy(allowed ?? [])
  } catch (error) {
    throw new Error(`Invalid emulator option 'allowedHosts': ${error instanceof Error ? error.message : String(error)}`)
  }
}

export const startEmulator = async (options: EmulatorOptions = {}): Promise<EmulatorHandle> => {
  const timings = {
    validatingMs: nonNegative("validatingMs", options.validatingMs, DEFAULTS.validatingMs),
    finalizingMs: nonNegative("finalizingMs", options.finalizingMs, DEFAULTS.finalizingMs),
    cancellingMs: nonNegative("cancellingMs", options.cancellingMs, DEFAULTS.cancellingMs),
    expireAfterMs: nonNegative("expireAfterMs", options.expireAfterMs, DEFAULTS.expireAfterMs)
  }
  const faults = new Faults(initialFaults(options))
  const models = knownModels(options.models)
  const emulatorClock = new EmulatorClock(options.clock ?? systemClock, options.clock !== undefined)
  const clock = emulatorClock.now
  const seed = options.seed ?? DEFAULTS.seed
  const userLog = options.log
  // A throwing log callback must never break a request or a batch transition.
  const log =
    userLog === undefined
      ? undefined
      : (line: string) => {
          try {
            userLog(line)
          } catch {
            // ignored
          }
        }
  const hosts = hostPolicy(options.allowedHosts)
  const webhooks = new Webhooks(clock, log ?? (() => undefined))
  if (options.webhooks !== undefined) {
    try {
      webhooks.configure(options.webhooks)
    } catch (error) {
      throw new Error(`Invalid emulator option 'webhooks': ${error instanceof ApiError ? error.message : String(error)}`)
    }
  }
  const store = await Store.open(options.stateDir)
  const batches = new Batches(store, faults, {
    ended: (id, status) => webhooks.batchEnded(id, status),
    ...timings,
    seed,
    clock,
    clockDriven: () => emulatorClock.driven,
    models,
    enqueuedTokenLimit: options.enqueuedTokenLimit === undefined ? undefined : nonNegative("enqueuedTokenLimit", options.enqueuedTokenLimit, 0),
    enqueuedLimitOnCreate: options.enqueuedLimitOnCreate === true,
    approximateTokens: options.approximateTokens === true,
    log: log ?? (() => undefined)
  })
  const realtime = new RealtimeCalls({ store, faults, seed, clock, models, log, approximateTokens: options.approximateTokens === true })

  const server = createServer({ requestTimeout: 0 }, createHandler({
    store,
    batches,
    realtime,
    requests: new RequestCounts(),
    faults,
    seed,
    clock,
    emulatorClock,
    apiKey: options.apiKey,
    hosts,
    log,
    webhooks,
    wire: { upperCaseStatuses: options.upperCaseStatuses, azureQuirks: options.azureQuirks }
  }))
  // Longer than client keep-alive (undici: 4 s), so the server never closes a socket a client is about to reuse.
  server.keepAliveTimeout = 65_000
  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject)
      const bind = options.host ?? DEFAULTS.host
      server.listen(options.port ?? DEFAULTS.port, bind, () => {
        server.off("error", reject)
        // The name it was bound by and the address it got (what `url` shows) are its own names.
        hosts.allow(bind)
        hosts.allow((server.address() as AddressInfo).address)
        resolve()
      })
    })
  } catch (error) {
    await store.close()
    throw error
  }
  const address = server.address() as AddressInfo
  const host = address.family === "IPv6" ? `[${address.address}]` : address.address
  // Nothing ticks (lifecycle.ts): while webhooks are on, live batches are looked at a few times a
  // second, so one that ended is announced without waiting for a poll.
  let sweeping = false
  const sweeper = setInterval(() => {
    if (!webhooks.enabled || sweeping) return
    sweeping = true
    batches.sweep().finally(() => (sweeping = false))
  }, 200)
  sweeper.unref()
  let closing: Promise<void> | undefined
  return {
    url: `http://${host}:${address.port}`,
    port: address.port,
    close: () => {
      closing ??= (async () => {
        const closed = new Promise<void>((resolve) => server.close(() => resolve()))
        server.closeAllConnections()
        realtime.close()
        clearInterval(sweeper)
        await closed
        await batches.quiesce()
        await webhooks.quiesce()
        await store.close()
      })()
      return closing
    }
  }
}

/** startEmulator as a scoped Effect: the server closes when the scope does. */
export const scoped = (options: EmulatorOptions = {}): Effect.Effect<EmulatorHandle, EmulatorStartError, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.tryPromise({
      try: () => startEmulator(options),
      catch: (cause) =>
        new EmulatorStartError({ message: `Could not start the emulator: ${cause instanceof Error ? cause.message : String(cause)}`, cause })
    }),
    (handle) => Effect.promise(() => handle.close())
  )
