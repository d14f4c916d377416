/**
 * The real-time endpoints' common path (OpenAI chat completions, embeddings and responses;
 * Anthropic messages; Gemini generateContent). Each family supplies its wire (errors, headers)
 * and each endpoint its answer; this module does the rest, in the order a real API does it:
 *
 *   read the body -> unknown model: 404 -> call faults (429 / 5xx / reset, the sequence of
 *   faults.ts) -> check and answer the request: 400 -> rate limits (rateLimits.ts): 429 ->
 *   latency and hold -> the answer, with the family's rate-limit headers -> the ledger entry.
 *
 * Answers are the batch answers for the same request (answers.ts and the wire translations).
 */
import type { IncomingMessage, ServerResponse } from "node:http"
import type { Clock } from "./clock.js"
import { type CallEntry, CallLedger, MAX_CUSTOM_ID, type RealtimeApi } from "./callLedger.js"
import type { Faults, FaultSettings } from "./faults.js"
import { DigestOffset, fractionAt, requestDigest } from "./hash.js"
import { readJson, Reply } from "./http.js"
import type { KnownModels } from "./models.js"
import { type Admission, type LimitState, RateLimiter } from "./rateLimits.js"
import type { Store } from "./store.js"

/** The header sluice (or any client) names a request's custom_id with; the real APIs ignore it. */
export const CUSTOM_ID_HEADER = "x-sluice-custom-id"

export type OverLimit = Extract<Admission, { readonly _tag: "OverLimit" }>

/** How one API family answers errors and reports its limits. */
export interface RealtimeWire {
  readonly api: RealtimeApi
  /** The rate-limit headers of an answer ({} for Gemini, which sends none). */
  readonly rateLimitHeaders: (state: LimitState, now: number) => Record<string, string>
  /** The 429 of the rateLimitRate fault. */
  readonly rateLimitFault: (retryAfterMs: number) => Error
  /** The 5xx of the serverErrorRate fault. */
  readonly serverFault: (status: 500 | 502 | 503) => Error
  /** The limiter's 429; `headers` false under `rateLimitHeaders: false` (no Retry-After either). */
  readonly overLimit: (over: OverLimit, model: string, headers: boolean) => Error
  /**
   * Writes `error` (the family's, or an ApiError of the shared helpers) with `headers` added;
   * false when it is neither (a bug: the caller answers a 500).
   */
  readonly render: (reply: Reply, error: unknown, headers: Readonly<Record<string, string>>) => boolean
  /** Headers of every answer (Anthropic's `request-id`). */
  readonly answerHeaders: (reply: Reply) => Record<string, string>
}

export interface RealtimeAnswer {
  readonly body: unknown
  readonly inputTokens: number
  readonly outputTokens: number
}

export interface AnswerTools {
  readonly seed: string
  readonly clock: Clock
  /** See AnswerContext.approximateTokens. */
  readonly approximateTokens: boolean
  /**
   * The invalidJsonRate fault of real-time calls: true for a structured request picked by the
   * rate, the first time its (chat-equivalent) body is seen; an identical retry gets a valid answer.
   */
  readonly invalidJson: (structured: boolean, bodyJson: string) => Promise<boolean>
}

/** One real-time endpoint: its family, its name in the ledger, its model and its answer. */
export interface RealtimeEndpoint {
  readonly wire: RealtimeWire
  /** The endpoint as the ledger names it. */
  readonly endpoint: string
  /** The model named (by the body, or Gemini's path), for the limiter and the ledger. */
  readonly modelOf: (body: unknown) => string | undefined
  /** Throws the family's 404 when the model is one the emulator does not know. */
  readonly checkModel: (body: unknown, models: KnownModels) => void
  /** Checks the request (throwing the family's 400) and answers it. */
  readonly answer: (body: unknown, tools: AnswerTools) => Promise<RealtimeAnswer>
}

export interface RealtimeContext {
  readonly store: Store
  readonly faults: Faults
  readonly seed: string
  readonly clock: Clock
  readonly models: KnownModels
  readonly log: ((line: string) => void) | undefined
  readonly approximateTokens?: boolean | undefined
}

export class RealtimeCalls {
  readonly ledger = new CallLedger()
  private readonly limiter = new RateLimiter()
  private inFlightCount = 0
  private heldCount = 0
  /** Resolves the current hold (undefined when requests are not held). */
  private release: (() => void) | undefined
  private holding: Promise<void> | undefined
  private readonly timers = new Set<{ readonly timer: NodeJS.Timeout; readonly done: () => void }>()
  private readonly tools: AnswerTools

  constructor(private readonly ctx: RealtimeContext) {
    this.tools = { seed: ctx.seed, clock: ctx.clock, approximateTokens: ctx.approximateTokens === true, invalidJson: (structured, bodyJson) => this.firstTimeInvalidJson(structured, bodyJson) }
    this.followHold(ctx.faults.settings)
    ctx.faults.onChange((settings) => this.followHold(settings))
  }

  /** Requests being handled now, and how many of them wait on the hold. */
  get inFlight(): { readonly in_flight: number; readonly held: number } {
    return { in_flight: this.inFlightCount, held: this.heldCount }
  }

  /** Forgets the ledger and the limits' buckets (the emulator's reset). */
  reset(): void {
    this.ledger.reset()
    this.limiter.reset()
  }

  /** Lets every waiting request go (close): they find their connection gone and are recorded as lost. */
  close(): void {
    this.release?.()
    for (const entry of this.timers) {
      clearTimeout(entry.timer)
      entry.done()
    }
    this.timers.clear()
  }

  /**
   * Serves one call. Never throws: errors are rendered the family's way. Returns the reply used
   * (a reset fault swaps it) and a note for the access log.
   */
  async serve(
    endpoint: RealtimeEndpoint,
    path: string,
    req: IncomingMessage,
    res: ServerResponse
  ): Promise<{ readonly reply: Reply; readonly note: string }> {
    const { wire } = endpoint
    const seq = this.ledger.nextSeq()
    const customIdHeader = req.headers[CUSTOM_ID_HEADER]
    const customId = typeof customIdHeader === "string" && customIdHeader.length > 0 ? customIdHeader.slice(0, MAX_CUSTOM_ID) : null
    let reply = new Reply(req, res, false)
    let receivedAt = this.ctx.clock()
    let model: string | undefined
    let fault: string | null = null
    let headers: Record<string, string> = {}
    let usage = { input: 0, output: 0 }
    let latency = 0
    let clientGone = false
    // Settles when the connection closes; while a request waits, that means the client gave up.
    const gone = new Promise<void>((resolve) => res.once("close", resolve))
    this.inFlightCount++
    try {
      const body = await readJson(req)
      receivedAt = this.ctx.clock()
      model = endpoint.modelOf(body)
      endpoint.checkModel(body, this.ctx.models)
      const decided = this.ctx.faults.decide(`POST ${path}`)
      fault = decided?._tag ?? null
      if (decided?._tag === "RateLimited") throw wire.rateLimitFault(decided.retryAfterMs)
      if (decided?._tag === "ServerError") throw wire.serverFault(decided.status)
      if (decided?._tag === "Reset") reply = new Reply(req, res, true)
      const answer = await endpoint.answer(body, this.tools)
      const settings = this.ctx.faults.settings
      const admission = this.limiter.admit(
        `${wire.api}\u0000${model ?? ""}`,
        answer.inputTokens + answer.outputTokens,
        { rpm: settings.rpmLimit, tpm: settings.tpmLimit },
        receivedAt
      )
      if (settings.rateLimitHeaders) headers = wire.rateLimitHeaders(admission.state, receivedAt)
      if (admission._tag === "OverLimit") throw wire.overLimit(admission, model ?? "", settings.rateLimitHeaders)
      latency = settings.latencyMs + settings.latencyPerTokenMs * answer.outputTokens
      usage = { input: answer.inputTokens, output: answer.outputTokens }
      // A client that gives up while its request waits does not stop it: it was produced (and billed) all the same.
      await this.wait(latency, gone)
      await this.held(gone)
      if (res.destroyed || req.socket.destroyed) {
        reply.status = 200
        clientGone = true
        return { reply, note: " [client gone]" }
      }
      reply.json(200, answer.body, { ...headers, ...wire.answerHeaders(reply) })
    } catch (error) {
      if (res.headersSent || res.destroyed) res.destroy()
      else if (!wire.render(reply, error, headers)) {
        this.ctx.log?.(`internal error on POST ${path}: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`)
        wire.render(reply, wire.serverFault(500), {})
      }
    } finally {
      this.inFlightCount--
      this.record({
        seq,
        api: wire.api,
        endpoint: endpoint.endpoint,
        custom_id: customId,
        model: model ?? null,
        status: reply.status,
        input_tokens: reply.status === 200 ? usage.input : 0,
        output_tokens: reply.status === 200 ? usage.output : 0,
        received_at: receivedAt,
        answered_at: this.ctx.clock(),
        latency_ms: latency,
        fault,
        lost: reply.lost || clientGone
      })
    }
    return { reply, note: fault === null ? "" : ` [fault ${fault}]` }
  }

  private record(entry: CallEntry): void {
    this.ledger.add(entry)
  }

  /** Waits `ms` on a real timer (unref'd: a pending answer never keeps the process alive), or until `gone`. */
  private async wait(ms: number, gone: Promise<void>): Promise<void> {
    if (!(ms > 0)) return
    let entry: { readonly timer: NodeJS.Timeout; readonly done: () => void } | undefined
    const timer = new Promise<void>((resolve) => {
      entry = { timer: setTimeout(resolve, ms).unref(), done: resolve }
      this.timers.add(entry)
    })
    try {
      await Promise.race([timer, gone])
    } finally {
      clearTimeout(entry!.timer)
      this.timers.delete(entry!)
    }
  }

  /** Waits while requests are held, or until `gone`. */
  private async held(gone: Promise<void>): Promise<void> {
    if (this.holding === undefined) return
    this.heldCount++
    try {
      await Promise.race([this.holding, gone])
    } finally {
      this.heldCount--
    }
  }

  private followHold(settings: FaultSettings): void {
    if (settings.holdRequests && this.holding === undefined) {
      this.holding = new Promise((resolve) => {
        this.release = resolve
      })
    } else if (!settings.holdRequests && this.holding !== undefined) {
      this.release?.()
      this.holding = undefined
      this.release = undefined
    }
  }

  private async firstTimeInvalidJson(structured: boolean, bodyJson: string): Promise<boolean> {
    const rate = this.ctx.faults.settings.invalidJsonRate
    if (rate === 0 || !structured) return false
    const digest = requestDigest(this.ctx.seed, "", bodyJson)
    if (fractionAt(digest, DigestOffset.invalidJson) >= rate) return false
    const key = `invalidJson:sync:${digest.toString("hex")}`
    if (this.ctx.store.seen.has(key)) return false
    this.ctx.store.seen.set(key, "sync")
    await this.ctx.store.persist()
    return true
  }
}
