/**
 * A small client for the emulator's test API (`/_emulator/...`), for tests
 * and CI scripts that steer an emulator running in this or another process.
 * Plain fetch: no dependency on the rest of sluice.
 *
 * The test API takes the emulator's API key when it has one (pass `{ apiKey }`) and JSON bodies
 * only; every call here sends both as needed.
 */
import type { CallEntry } from "./internal/callLedger.js"

export interface LedgerBatch {
  /** The batch id (a Gemini batch's name without `batches/`). */
  readonly id: string
  /** Unix seconds (Anthropic batches too). */
  readonly created_at: number
  /** OpenAI `status` (Gemini batches too), or Anthropic `processing_status`. */
  readonly status: string
  /** `{}` for Anthropic batches, which carry no metadata. */
  readonly metadata: Readonly<Record<string, string>> | null
  /** null for Anthropic batches (their requests are inline). */
  readonly input_file_id: string | null
  readonly custom_ids: ReadonlyArray<string>
  /** Set on Anthropic batches, "anthropic" (Message Batches API) or "anthropic-gateway", and on Gemini batches, "gemini". */
  readonly api?: "anthropic" | "anthropic-gateway" | "gemini"
  /** Anthropic and Gemini batches deleted through their API stay in the ledger with this flag. */
  readonly deleted?: boolean
}

export interface LedgerDelivery {
  readonly custom_id: string
  readonly batch_id: string
}

/**
 * One call to a real-time endpoint: answered, refused (4xx, 429), faulted or lost. A client names
 * the row of a call with the `x-sluice-custom-id` header (the real APIs ignore it).
 */
export type LedgerCall = CallEntry

export interface Ledger {
  readonly batches: ReadonlyArray<LedgerBatch>
  /** One entry per custom_id delivered as a success in an output file (or Anthropic results). */
  readonly deliveries: ReadonlyArray<LedgerDelivery>
  /** Real-time calls (in memory, the last 100,000; not kept across an emulator restart). */
  readonly calls: ReadonlyArray<LedgerCall>
  /** Real-time calls forgotten to keep `calls` bounded. */
  readonly calls_dropped: number
}

/** Real-time requests being handled right now, and how many of them wait on `holdRequests`. */
export interface InFlight {
  readonly in_flight: number
  readonly held: number
}

/** Runtime fault settings (all optional in a patch). Rates are fractions in [0, 1]. */
export interface FaultPatch {
  readonly errorRate?: number
  readonly rateLimitRate?: number
  readonly retryAfterMs?: number
  readonly serverErrorRate?: number
  readonly resetRate?: number
  readonly dropLines?: number
  readonly lateOutputFileMs?: number
  readonly invalidJsonRate?: number
  /** A number, or "Infinity" for instant processing. Applies to batches created afterwards. */
  readonly requestsPerSecond?: number | "Infinity"
  /** Real-time requests per minute per model; "Infinity" (or null) for none. */
  readonly rpmLimit?: number | "Infinity" | null
  /** Real-time tokens per minute per model; "Infinity" (or null) for none. */
  readonly tpmLimit?: number | "Infinity" | null
  /** false: no rate-limit headers and no Retry-After on the limits' 429s (a self-hosted server). */
  readonly rateLimitHeaders?: boolean
  readonly latencyMs?: number
  readonly latencyPerTokenMs?: number
  /** true: admitted real-time requests wait, in flight, until it is set back to false (or reset). */
  readonly holdRequests?: boolean
  /** true: every DELETE (files, batches) is refused 403, as for a key without delete permission. */
  readonly refuseDeletes?: boolean
  /** Expire this batch now (OpenAI, Anthropic, or Gemini by its name without `batches/`), keeping the results finished so far. */
  readonly expireBatch?: string
}

/** The emulator's clock: its time (ms since epoch) and whether it stands still. */
export interface ClockState {
  readonly now: number
  readonly held: boolean
}

/** A change of the emulator's clock, applied in this order: hold, advance, release. */
export interface ClockPatch {
  /** Stop the clock: batches stay in their state until it is advanced or released. */
  readonly hold?: true
  /** Move it forward this many ms (held or running). */
  readonly advanceMs?: number
  /** Let it run again from where it stood. */
  readonly release?: true
}

export interface ControlOptions {
  /** The emulator's API key (`apiKey` / `--api-key`), when it has one: sent as a Bearer token. */
  readonly apiKey?: string
}

/**
 * One call to `/_emulator/<route>`: a GET, or a POST of `body` as JSON. The error names the
 * route and the status, never the key.
 */
const call = async <A>(emulatorUrl: string, route: string, options: ControlOptions, body?: unknown): Promise<A> => {
  const url = `${origin(emulatorUrl)}/_emulator/${route}`
  const method = body === undefined ? "GET" : "POST"
  const headers: Record<string, string> = options.apiKey === undefined ? {} : { authorization: `Bearer ${options.apiKey}` }
  const response = await fetch(url, body === undefined ? { headers } : {
    method,
    headers: { ...headers, "content-type": "application/json" },
    body: JSON.stringify(body)
  })
  const text = await response.text()
  if (!response.ok) throw new Error(`${method} ${url} -> ${response.status}: ${text}`)
  return JSON.parse(text) as A
}

const origin = (emulatorUrl: string): string => emulatorUrl.replace(/\/+$/, "").replace(/\/v1$/, "")

export const getLedger = (emulatorUrl: string, options: ControlOptions = {}): Promise<Ledger> => call(emulatorUrl, "ledger", options)

/**
 * Provider-API requests received (since start or the last reset) by method and route, the ids in
 * a path replaced by `{id}`: `{ "POST /v1/files": 3, "GET /v1/batches/{id}": 12, … }`.
 */
export type RequestCounts = Readonly<Record<string, number>>

export const getRequestCounts = (emulatorUrl: string, options: ControlOptions = {}): Promise<RequestCounts> =>
  call(emulatorUrl, "requests", options)

export const getInFlight = (emulatorUrl: string, options: ControlOptions = {}): Promise<InFlight> => call(emulatorUrl, "inflight", options)

export const getFaults = (emulatorUrl: string, options: ControlOptions = {}): Promise<Record<string, unknown>> =>
  call(emulatorUrl, "faults", options)

export const setFaults = (emulatorUrl: string, patch: FaultPatch, options: ControlOptions = {}): Promise<Record<string, unknown>> =>
  call(emulatorUrl, "faults", options, patch)

export const resetEmulator = (emulatorUrl: string, options: ControlOptions = {}): Promise<{ readonly ok: true }> =>
  call(emulatorUrl, "reset", options, {})

export const getClock = (emulatorUrl: string, options: ControlOptions = {}): Promise<ClockState> => call(emulatorUrl, "clock", options)

export const setClock = (emulatorUrl: string, patch: ClockPatch, options: ControlOptions = {}): Promise<ClockState> =>
  call(emulatorUrl, "clock", options, patch)

/** Stops the emulator's clock: a test then moves batches from state to state with advanceClock. */
export const holdClock = (emulatorUrl: string, options: ControlOptions = {}): Promise<ClockState> =>
  setClock(emulatorUrl, { hold: true }, options)

/** Moves the emulator's clock forward by `ms`. */
export const advanceClock = (emulatorUrl: string, ms: number, options: ControlOptions = {}): Promise<ClockState> =>
  setClock(emulatorUrl, { advanceMs: ms }, options)

/** Lets the emulator's clock run again, from where it stood. */
export const releaseClock = (emulatorUrl: string, options: ControlOptions = {}): Promise<ClockState> =>
  setClock(emulatorUrl, { release: true }, options)

/** One webhook delivery the emulator made (`GET /_emulator/webhooks`). */
export interface WebhookDelivery {
  readonly webhook_id: string
  readonly type: string
  readonly batch_id: string
  readonly variant: "valid" | "forged" | "stale" | "replay"
  /** The receiver's status on the last attempt; null when it could not be reached. */
  readonly status: number | null
  readonly attempts: number
}

export interface WebhookState {
  readonly url: string | null
  readonly deliveries: ReadonlyArray<WebhookDelivery>
}

/** Sends signed batch events to `url` when OpenAI batches end (`secret`: `whsec_<base64>`); `null` stops them. */
export const setWebhooks = (emulatorUrl: string, target: { readonly url: string; readonly secret: string } | null, options: ControlOptions = {}): Promise<WebhookState> =>
  call(emulatorUrl, "webhooks", options, target ?? { url: null })

export const getWebhooks = (emulatorUrl: string, options: ControlOptions = {}): Promise<WebhookState> => call(emulatorUrl, "webhooks", options)

/**
 * One delivery now: a signed event for `batch_id` (`valid`), one signed with another key
 * (`forged`), one ten minutes old (`stale`), or an earlier delivery again (`replay`, by its
 * `webhook_id`, default the last). Resolves once the receiver has answered.
 */
export const sendWebhook = (
  emulatorUrl: string,
  request:
    | { readonly variant?: "valid" | "forged" | "stale"; readonly batch_id: string; readonly type?: string }
    | { readonly variant: "replay"; readonly webhook_id?: string },
  options: ControlOptions = {}
): Promise<WebhookDelivery> => call(emulatorUrl, "webhooks/send", options, request)
