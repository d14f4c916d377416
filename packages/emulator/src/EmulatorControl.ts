/**
 * A small client for the emulator's test API (`/_emulator/...`), for tests
 * and CI scripts that steer an emulator running in this or another process.
 * Plain fetch: no dependency on the rest of sluice.
 */

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

export interface Ledger {
  readonly batches: ReadonlyArray<LedgerBatch>
  /** One entry per custom_id delivered as a success in an output file (or Anthropic results). */
  readonly deliveries: ReadonlyArray<LedgerDelivery>
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

const call = async <A>(url: string, init?: RequestInit): Promise<A> => {
  const response = await fetch(url, init)
  const text = await response.text()
  if (!response.ok) throw new Error(`${init?.method ?? "GET"} ${url} -> ${response.status}: ${text}`)
  return JSON.parse(text) as A
}

const origin = (emulatorUrl: string): string => emulatorUrl.replace(/\/+$/, "").replace(/\/v1$/, "")

export const getLedger = (emulatorUrl: string): Promise<Ledger> => call(`${origin(emulatorUrl)}/_emulator/ledger`)

export const getFaults = (emulatorUrl: string): Promise<Record<string, unknown>> => call(`${origin(emulatorUrl)}/_emulator/faults`)

export const setFaults = (emulatorUrl: string, patch: FaultPatch): Promise<Record<string, unknown>> =>
  call(`${origin(emulatorUrl)}/_emulator/faults`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(patch)
  })

export const resetEmulator = (emulatorUrl: string): Promise<{ readonly ok: true }> =>
  call(`${origin(emulatorUrl)}/_emulator/reset`, { method: "POST" })

export const getClock = (emulatorUrl: string): Promise<ClockState> => call(`${origin(emulatorUrl)}/_emulator/clock`)

export const setClock = (emulatorUrl: string, patch: ClockPatch): Promise<ClockState> =>
  call(`${origin(emulatorUrl)}/_emulator/clock`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(patch)
  })

/** Stops the emulator's clock: a test then moves batches from state to state with advanceClock. */
export const holdClock = (emulatorUrl: string): Promise<ClockState> => setClock(emulatorUrl, { hold: true })

/** Moves the emulator's clock forward by `ms`. */
export const advanceClock = (emulatorUrl: string, ms: number): Promise<ClockState> => setClock(emulatorUrl, { advanceMs: ms })

/** Lets the emulator's clock run again, from where it stood. */
export const releaseClock = (emulatorUrl: string): Promise<ClockState> => setClock(emulatorUrl, { release: true })
