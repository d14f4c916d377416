/**
 * `sluice estimate`: renders every request of a pipeline without submitting anything and
 * projects what the run will cost — rows, shards, input tokens (the model's real tokenizer
 * for OpenAI models, about four characters a token elsewhere), an output-token estimate, and
 * the cost at batch and at real-time prices.
 */
import { HttpClient } from "@effect/platform"
import type { FileSystem } from "@effect/platform"
import { Tokens } from "@sluice/core"
import type { BatchRequest, Pipeline, Source } from "@sluice/core"
import { OpenAiBatch, Providers } from "@sluice/providers"
import type { BatchProvider } from "@sluice/providers"
import { Chunk, Effect, Option, Redacted, Stream } from "effect"
import * as Pricing from "./Pricing.js"
import { PipelineInvalid } from "./Runner.js"

export interface EstimateOptions {
  /** Output tokens per request; default: the stage's max_tokens if set, else 100. */
  readonly outputTokens?: number
  readonly shardSize?: number
}

export interface Estimate {
  readonly pipeline: string
  readonly model: string
  readonly rows: number
  readonly invalid: number
  readonly shards: number
  readonly inputTokens: number
  /** True when counted with the model's own tokenizer. */
  readonly exactTokens: boolean
  readonly outputTokensPerRequest: number
  readonly outputTokens: number
  readonly cost: Pricing.Cost | null
  readonly prices: string
}

/** Input tokens of one rendered request. */
export const requestTokens = (request: BatchRequest): Tokens.Count =>
  request._tag === "chat" ? Tokens.chat(request.model, request.messages) : Tokens.text(request.model, request.input)

/** What the planner would use to pack shards, even without credentials (nothing is sent). */
const offlineProvider = (name: string): BatchProvider | undefined =>
  name === "openai"
    ? OpenAiBatch.makeWithClient(HttpClient.make(() => Effect.dieMessage("estimate sends nothing")), {
        apiKey: Redacted.make("offline"),
        baseUrl: OpenAiBatch.defaultBaseUrl
      })
    : undefined

export const estimate = (
  pipeline: Pipeline.Pipeline<any, any>,
  options: EstimateOptions = {}
): Effect.Effect<Estimate, PipelineInvalid | Source.SourceError, FileSystem.FileSystem> =>
  Effect.gen(function* () {
    const stage = pipeline.stages[0]
    if (pipeline.source === undefined || stage === undefined) {
      return yield* new PipelineInvalid({ description: `pipeline "${pipeline.name}" needs a source and a batch stage` })
    }
    const registry = yield* Effect.serviceOption(Providers)
    const configured = Option.isSome(registry) ? yield* Effect.option(registry.value.get(stage.provider)) : Option.none()
    const provider = Option.getOrUndefined(configured) ?? offlineProvider(stage.provider)
    const maxRequests = Math.min(options.shardSize ?? Number.MAX_SAFE_INTEGER, provider?.limits.maxRequests ?? 50_000)
    const maxBytes = provider?.limits.maxBytes ?? 190_000_000

    let rows = 0
    let invalid = 0
    let shards = 0
    let inShard = 0
    let shardBytes = 0
    let inputTokens = 0
    let exact = true
    let perRequestOutput = options.outputTokens
    yield* pipeline.source.rows.pipe(
      Stream.runForEachChunk((chunk) =>
        Effect.sync(() => {
          for (const item of Chunk.toReadonlyArray(chunk)) {
            if (item._tag === "Invalid") {
              invalid++
              continue
            }
            const request = stage.render(item.row)
            if (perRequestOutput === undefined) {
              const max = request.params["max_tokens"] ?? request.params["max_completion_tokens"]
              perRequestOutput = typeof max === "number" ? max : 100
            }
            const count = requestTokens(request)
            inputTokens += count.tokens
            exact &&= count.exact
            const bytes = (provider === undefined ? JSON.stringify(request).length + 80 : Buffer.byteLength(provider.encode(request, "x".repeat(58)))) + 1
            if (inShard === 0 || inShard >= maxRequests || shardBytes + bytes > maxBytes) {
              shards++
              inShard = 0
              shardBytes = 0
            }
            inShard++
            shardBytes += bytes
            rows++
          }
        })
      )
    )
    const outputTokensPerRequest = perRequestOutput ?? 100
    const outputTokens = rows * outputTokensPerRequest
    const cost = Pricing.cost(stage.model, { input: inputTokens, output: outputTokens, cached: 0 }) ?? null
    return {
      pipeline: pipeline.name,
      model: stage.model,
      rows,
      invalid,
      shards,
      inputTokens,
      exactTokens: exact,
      outputTokensPerRequest,
      outputTokens,
      cost,
      prices: `${Pricing.table.date} (${Pricing.table.unit}, ${Pricing.table.currency})`
    } satisfies Estimate
  })

export const render = (e: Estimate): string =>
  [
    `${e.pipeline}: ${e.rows} rows${e.invalid > 0 ? ` (+${e.invalid} invalid, not submitted)` : ""} in ${e.shards} shard${e.shards === 1 ? "" : "s"}, model ${e.model}`,
    `input tokens:  ${e.inputTokens}${e.exactTokens ? " (counted with the model's tokenizer)" : " (approximated: about 4 characters a token)"}`,
    `output tokens: ~${e.outputTokens} (an estimate: ${e.outputTokensPerRequest} per request; set --output-tokens)`,
    e.cost === null
      ? `cost: no price for ${e.model} in the price table`
      : `cost: ~$${e.cost.batch.toFixed(4)} at batch prices, ~$${e.cost.realtime.toFixed(4)} at real-time prices (prices of ${e.prices})`
  ].join("\n")
