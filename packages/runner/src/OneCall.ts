/**
 * One-call helpers for the simple cases provider SDK users reach for: a model and a list of
 * prompts, or ready-made batch request lines with their own custom_ids. Each builds a
 * pipeline and runs it with every guarantee of a full one (shards, journal, resume, retries);
 * calling again with the same run directory continues instead of paying twice.
 */
import { Hash, Pipeline, Prompt, Source } from "@sluice/core"
import type { BatchRequest, Message, Params } from "@sluice/core"
import { Effect, Schema, Stream } from "effect"
import * as Records from "./Records.js"
import * as Runner from "./Runner.js"
import type { RunOptions, RunSummary } from "./Runner.js"

export type ItemResult =
  | { readonly customId: string; readonly ok: true; readonly text: string; readonly index?: number }
  | {
      readonly customId: string
      readonly ok: false
      readonly failure: string
      readonly code: string
      readonly message: string
      readonly index?: number
    }

export interface BatchResults {
  readonly summary: RunSummary
  /** Every row's result, keyed by custom_id. */
  readonly results: ReadonlyMap<string, ItemResult>
}

export class InvalidRequestLine extends Schema.TaggedError<InvalidRequestLine>()("InvalidRequestLine", {
  line: Schema.Number,
  description: Schema.String
}) {
  override get message(): string {
    return `request line ${this.line}: ${this.description}`
  }
}

/** Runs a pipeline without a sink and gathers its outputs and failures by custom_id. */
const gather = (pipeline: Pipeline.Pipeline<any, any>, options: RunOptions & { readonly runDir: string }) =>
  Effect.gen(function* () {
    const summary = yield* Runner.run(pipeline, options)
    const results = new Map<string, ItemResult>()
    const index = (input: unknown) => (input as { index?: unknown })?.index
    yield* Records.outputs(pipeline, options.runDir).pipe(
      Stream.runForEach((r) =>
        Effect.sync(() => {
          const i = index(r.input)
          results.set(r.customId, { customId: r.customId, ok: true, text: String(r.output), ...(typeof i === "number" ? { index: i } : {}) })
        })
      )
    )
    yield* Records.failures(options.runDir).pipe(
      Stream.runForEach((f) =>
        Effect.sync(() => {
          // A duplicate row shares its custom_id with the row whose answer stands for both.
          if (f.custom_id === null || f.class === "duplicate") return
          results.set(f.custom_id, { customId: f.custom_id, ok: false, failure: f.class, code: f.code, message: f.message })
        })
      )
    )
    return { summary, results } satisfies BatchResults
  })

export interface PromptsOptions {
  readonly model: string
  readonly provider?: string
  /** Plain prompts (sent as the user turn) or whole message lists. */
  readonly prompts: ReadonlyArray<string | ReadonlyArray<Message>>
  readonly system?: string
  readonly params?: Params
}

/** The pipeline `batchPrompts` runs: one row per prompt, keyed by its position. */
export const promptsPipeline = (options: PromptsOptions) => {
  const rows = options.prompts.map((p, index) => ({
    index,
    messages: typeof p === "string" ? [{ role: "user" as const, content: p }] : p
  }))
  return Pipeline.make("prompts").pipe(
    // The source's name carries a hash of its content: other prompts on the same run
    // directory are a changed pipeline, not the finished run of the first ones.
    Pipeline.from(Source.array(rows, `prompts-${Hash.hashValue(rows)}`), { key: (r) => `p${r.index}` }),
    Pipeline.batch("prompt", {
      provider: options.provider ?? "openai",
      model: options.model,
      ...(options.params === undefined ? {} : { params: options.params }),
      prompt: (r) => Prompt.chat({ ...(options.system === undefined ? {} : { system: options.system }), messages: r.messages })
    })
  )
}

/** Sends prompts as a batch; results are keyed by custom_id and carry the prompt's index. */
export const batchPrompts = (options: PromptsOptions & RunOptions & { readonly runDir: string }) =>
  gather(promptsPipeline(options), options)

/** An OpenAI batch input line: `{custom_id, method, url, body}`. */
export interface OpenAiRequestLine {
  readonly custom_id: string
  readonly method?: string
  readonly url: string
  readonly body: { readonly model: string } & Record<string, unknown>
}

/** Turns an OpenAI batch line into a neutral request, keeping every body field. */
const fromOpenAiLine = (line: OpenAiRequestLine, n: number): Effect.Effect<BatchRequest, InvalidRequestLine> => {
  const { model, ...rest } = line.body
  if (typeof model !== "string") return Effect.fail(new InvalidRequestLine({ line: n, description: "body.model is missing" }))
  if (line.url.endsWith("/embeddings")) {
    const { input, ...params } = rest
    if (typeof input !== "string") {
      return Effect.fail(new InvalidRequestLine({ line: n, description: "embeddings input must be one string per line" }))
    }
    return Effect.succeed({ _tag: "embeddings", model, input, params })
  }
  if (!line.url.endsWith("/chat/completions")) {
    return Effect.fail(new InvalidRequestLine({ line: n, description: `url ${line.url} is not /v1/chat/completions or /v1/embeddings` }))
  }
  const { messages, ...params } = rest
  const valid =
    Array.isArray(messages) &&
    messages.every(
      (m) => typeof m === "object" && m !== null && ["system", "user", "assistant"].includes(m.role) && typeof m.content === "string"
    )
  if (!valid) {
    return Effect.fail(
      new InvalidRequestLine({ line: n, description: "messages must be system/user/assistant turns with text content" })
    )
  }
  return Effect.succeed({ _tag: "chat", model, messages: messages as ReadonlyArray<Message>, params })
}

/**
 * The pipeline `batchRequests` runs. All lines must name one model (OpenAI takes one model
 * per batch) and one endpoint.
 */
export const requestsPipeline = (lines: ReadonlyArray<OpenAiRequestLine>, provider = "openai") =>
  Effect.gen(function* () {
    const requests = yield* Effect.forEach(lines, (line, i) => fromOpenAiLine(line, i + 1))
    const models = new Set(requests.map((r) => r.model))
    if (models.size > 1) {
      return yield* new InvalidRequestLine({ line: 0, description: `lines name ${models.size} models (${[...models].join(", ")}); give one model per call` })
    }
    const endpoints = new Set(requests.map((r) => r._tag))
    if (endpoints.size > 1) return yield* new InvalidRequestLine({ line: 0, description: "lines mix chat and embeddings; give one endpoint per call" })
    const rows = lines.map((line, i) => ({ customId: line.custom_id, request: requests[i]! }))
    return Pipeline.make("requests").pipe(
      Pipeline.from(Source.array(rows, `requests-${Hash.hashValue(rows)}`), { key: (r) => r.customId }),
      Pipeline.batchRaw("requests", {
        provider,
        model: requests[0]?.model ?? "none",
        endpoint: requests[0]?._tag ?? "chat",
        request: (r) => r.request,
        customId: (r) => r.customId
      })
    )
  })

/** Sends ready-made OpenAI batch lines, keeping their custom_ids; results are keyed by them. */
export const batchRequests = (
  options: { readonly lines: ReadonlyArray<OpenAiRequestLine>; readonly provider?: string } & RunOptions & { readonly runDir: string }
) => Effect.flatMap(requestsPipeline(options.lines, options.provider), (pipeline) => gather(pipeline, options))
