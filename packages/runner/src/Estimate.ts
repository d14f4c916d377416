/**
 * `sluice estimate`: renders every request of a pipeline without submitting anything and
 * projects what the run will cost — rows, shards, input tokens (the model's real tokenizer
 * for OpenAI models, about four characters a token elsewhere; an output schema counted on
 * top, approximately), an output-token estimate, and the cost at batch and at real-time
 * prices. Like a run, it finds invalid source rows and duplicate keys (DuplicateKeys.ts) and
 * says when `sluice run` would refuse the pipeline before sending (an unknown provider fails
 * it); it counts the requests over their model's context window, which a run fails unsent.
 * It needs no API key.
 */
import * as FileSystem from "@effect/platform/FileSystem"
import * as HttpClient from "@effect/platform/HttpClient"
import { CustomId, Hash, Pipeline, Prompt, Tokens } from "@sluice/core"
import type { BatchRequest, Source } from "@sluice/core"
import { OpenAiBatch, Providers } from "@sluice/providers"
import type { BatchProvider, UnknownProvider } from "@sluice/providers"
import type { PlatformError } from "@effect/platform/Error"
import { Chunk, Effect, Either, Redacted, Stream } from "effect"
import * as DuplicateKeys from "./DuplicateKeys.js"
import * as ExternalSort from "./internal/ExternalSort.js"
import * as Pricing from "./Pricing.js"
import { requestTokens } from "./RequestTokens.js"
import { PipelineInvalid } from "./Definition.js"
import * as Settings from "./Settings.js"

export { requestTokens } from "./RequestTokens.js"
export type { RequestTokens } from "./RequestTokens.js"

export interface EstimateOptions {
  /** Output tokens per request; default: the stage's max_tokens if set, else 100. */
  readonly outputTokens?: number
  readonly shardSize?: number
  /** Prices and context windows (default: the built-in table). */
  readonly prices?: Pricing.Prices
}

/** How a stage's input tokens are counted: with its model's tokenizer, or about four characters a token. */
export type Tokenizer = "model" | "approximate"

export interface StageEstimate {
  readonly name: string
  readonly provider: string
  readonly model: string
  readonly tokenizer: Tokenizer
  /** Tokens one request may hold, when the price table knows the model. */
  readonly contextWindow: number | null
  /** Only the first stage is estimated: the rows of later ones come from answers. */
  readonly estimated: boolean
}

/**
 * Requests over their model's context window: a run fails them (`context_length`) before
 * sending, so they are not among the estimate's rows, tokens and cost.
 */
export interface OverContextWindow {
  readonly count: number
  readonly model: string
  readonly contextWindow: number
  /** The first few, by source location. */
  readonly first: ReadonlyArray<{ readonly location: string; readonly tokens: number }>
}

export interface Estimate {
  readonly pipeline: string
  readonly model: string
  readonly rows: number
  /** Rows that would not be submitted: invalid source rows, and rows whose prompt throws (render_error in a run). */
  readonly invalid: number
  /** Source rows that do not parse or break the row Schema (among `invalid`). */
  readonly malformed: number
  /** Rows with the same key and request as an earlier row: sent once (not among `rows`). */
  readonly duplicates: number
  /** Rows whose key other rows have with a different request, and how many keys (not among `rows`). */
  readonly conflicts: { readonly rows: number; readonly keys: number }
  /** The first malformed rows and rows with conflicting keys, each named with its location. */
  readonly problems: ReadonlyArray<string>
  /** Why `sluice run` would stop before submitting anything (onInvalid "fail"), or null. */
  readonly refusal: string | null
  readonly shards: number
  readonly inputTokens: number
  /** True when counted with the model's own tokenizer (and no request has an image). */
  readonly exactTokens: boolean
  /** Of the input tokens, those of output schemas (billed as input; always approximate). */
  readonly schemaTokens: number
  /** Images in the prompts, each counted as `Prompt.imageTokens` input tokens. */
  readonly images: number
  readonly outputTokensPerRequest: number
  readonly outputTokens: number
  readonly cost: Pricing.Cost | null
  /** Stages after the first: not estimated, their rows come from answers. */
  readonly laterStages: ReadonlyArray<string>
  readonly stages: ReadonlyArray<StageEstimate>
  readonly overContextWindow: OverContextWindow | null
  /** Which prices `cost` comes from (the built-in table's date, and a prices file if given); USD per 1M tokens. */
  readonly prices: string
  /** Things a run would do differently from what was asked (a shard size over the provider's limit). */
  readonly notes: ReadonlyArray<string>
}

/** Requests over the window named in the output, at most. */
const FIRST_OVER = 5

/** What the planner would use to pack shards, even without credentials (nothing is sent). */
const offlineProvider = (name: string): BatchProvider | undefined =>
  name === "openai"
    ? OpenAiBatch.makeWithClient(HttpClient.make(() => Effect.dieMessage("estimate sends nothing")), {
        apiKey: Redacted.make("offline"),
        baseUrl: OpenAiBatch.defaultBaseUrl
      })
    : undefined

/** Problems of each kind named in an estimate (all are counted). */
const NAMED = 10

export const estimate = (
  pipeline: Pipeline.Pipeline<any, any>,
  options: EstimateOptions = {}
): Effect.Effect<Estimate, PipelineInvalid | UnknownProvider | Source.SourceError | PlatformError, FileSystem.FileSystem> =>
  Effect.scoped(Effect.gen(function* () {
    const stage = pipeline.stages[0]
    if (pipeline.source === undefined || stage === undefined) {
      return yield* new PipelineInvalid({ description: `pipeline "${pipeline.name}" needs a source and a batch stage` })
    }
    const before = pipeline.links[0] ?? []
    const prices = options.prices ?? Pricing.builtin
    // A provider sluice does not know stops a run: so it stops the estimate. One without its
    // key does not: nothing is sent.
    const registry = yield* Effect.serviceOption(Providers)
    const configured: Array<BatchProvider | undefined> = []
    for (const s of pipeline.stages) {
      configured.push(
        registry._tag === "None"
          ? undefined
          : yield* registry.value.get(s.provider).pipe(Effect.catchTag("ProviderConfigError", () => Effect.succeed(undefined)))
      )
    }
    const provider = configured[0] ?? offlineProvider(stage.provider)
    const limit = provider?.limits.maxRequests ?? 50_000
    const maxRequests = Math.min(options.shardSize ?? Number.MAX_SAFE_INTEGER, limit)
    const maxBytes = provider?.limits.maxBytes ?? 190_000_000
    const notes: Array<string> = []
    if (options.shardSize !== undefined && options.shardSize > limit) {
      notes.push(`a shard size of ${options.shardSize} is over ${stage.provider}'s limit of ${limit} requests a batch; shards hold at most ${limit}`)
    }
    const windows = new Map<string, number | undefined>()
    const windowOf = (model: string) => {
      if (!windows.has(model)) windows.set(model, Pricing.contextWindow(model, prices))
      return windows.get(model)
    }
    let over: { count: number; model: string; contextWindow: number; first: Array<{ location: string; tokens: number }> } | undefined

    let rows = 0
    let invalid = 0
    let shards = 0
    let inShard = 0
    let shardBytes = 0
    let inputTokens = 0
    let exact = true
    let schemaTokens = 0
    let perRequestOutput = options.outputTokens
    let images = 0
    let malformed = 0
    const invalidNamed: Array<string> = []
    // Keys that may repeat are checked as a run checks them, on disk past a bound.
    const checkKeys = DuplicateKeys.possible(pipeline, stage, before)
    const fs = yield* FileSystem.FileSystem
    const work = checkKeys ? yield* fs.makeTempDirectoryScoped({ prefix: "sluice-estimate-" }) : undefined
    const keys = work === undefined ? undefined : yield* ExternalSort.make({ dir: `${work}/keys`, order: DuplicateKeys.keyOrder })
    const contentKey = CustomId.contentKeys()
    let item = 0
    yield* pipeline.source.rows.pipe(
      Stream.runForEachChunk((chunk) =>
        Effect.gen(function* () {
          for (const entry of Chunk.toReadonlyArray(chunk)) {
            const at = item++
            if (entry._tag === "Invalid") {
              invalid++
              malformed++
              if (invalidNamed.length < NAMED) invalidNamed.push(`${entry.location}: ${entry.message}`)
              continue
            }
            let requests: Array<{ readonly request: BatchRequest; readonly identity: string }>
            try {
              // The row's key as the planner derives it (only needed when keys may repeat).
              const key = !checkKeys ? "" : pipeline.key !== undefined ? pipeline.key(entry.row) : contentKey(Hash.sha256(JSON.stringify(entry.row)))
              // Transforms before the first stage (a fan-out, say) as the planner runs them.
              const linked = before.length === 0 ? [[key, entry.row] as const] : Pipeline.applyLink(before, key, entry.row, entry.row)
              const rows = Effect.isEffect(linked) ? yield* Effect.either(linked) : Either.right(linked)
              if (Either.isLeft(rows)) throw rows.left
              requests = rows.right.map(([childKey, input]) => ({
                request: stage.render(input),
                identity: checkKeys && stage.customId !== undefined ? stage.customId(input) : childKey
              }))
            } catch {
              // A row whose prompt or transform throws (an image file that is missing …) fails
              // alone in a run (render_error) and is never submitted: not counted here either.
              invalid++
              continue
            }
            for (const [child, { request, identity }] of requests.entries()) {
              const count = requestTokens(request)
              const window = windowOf(request.model)
              if (window !== undefined && count.tokens > window) {
                // Failed unsent by a run (context_length): neither submitted nor paid for.
                over ??= { count: 0, model: request.model, contextWindow: window, first: [] }
                over.count++
                if (over.first.length < FIRST_OVER) over.first.push({ location: entry.location, tokens: count.tokens })
                continue
              }
              if (request._tag === "chat") {
                for (const m of request.messages) images += Prompt.imageCount(m.content)
              }
              if (perRequestOutput === undefined) {
                const max = request.params["max_tokens"] ?? request.params["max_completion_tokens"]
                perRequestOutput = typeof max === "number" ? max : 100
              }
              inputTokens += count.tokens
              schemaTokens += count.schema
              exact &&= count.exact
              if (keys !== undefined) {
                const io = keys.add(DuplicateKeys.keyRecord(identity, stage.requestHash(request), at, child, entry.location, count.tokens))
                if (io !== undefined) yield* io
              }
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
          }
        })
      )
    )
    // Duplicates are sent once, and rows with conflicting keys not at all: neither counts.
    let duplicates = 0
    let conflicts = { rows: 0, keys: 0 }
    const conflictNamed: Array<string> = []
    if (keys !== undefined && work !== undefined) {
      const verdicts = yield* ExternalSort.make({ dir: `${work}/verdicts`, order: DuplicateKeys.verdictOrder })
      const found = yield* DuplicateKeys.find(keys, verdicts, { spoolDir: work })
      duplicates = found.duplicates
      conflicts = { rows: found.conflictRows, keys: found.conflictKeys }
      const what = stage.customId === undefined ? "key" : "custom_id"
      yield* verdicts.forEach<never, never>((r) => {
        const v = DuplicateKeys.decodeVerdict(r)
        rows--
        inputTokens -= v.tokens
        if (v.kind === "conflict" && conflictNamed.length < NAMED) conflictNamed.push(DuplicateKeys.describe(v, what))
        return undefined
      })
    }
    const refused = pipeline.onInvalid === "fail" ? [
      ...(malformed > 0 ? [plural(malformed, "invalid row")] : []),
      ...(conflicts.rows > 0 ? [`${plural(conflicts.rows, "row")} whose keys other rows have with different requests`] : [])
    ] : []
    const outputTokensPerRequest = perRequestOutput ?? Settings.defaultOutputTokens
    const outputTokens = rows * outputTokensPerRequest
    const cost = Pricing.cost(stage.model, { input: inputTokens, output: outputTokens, cached: 0 }, prices) ?? null
    return {
      pipeline: pipeline.name,
      model: stage.model,
      rows,
      invalid,
      malformed,
      duplicates,
      conflicts,
      problems: [...invalidNamed, ...conflictNamed],
      refusal: refused.length === 0 ? null : `sluice run would stop before submitting anything (onInvalid "fail"): ${refused.join(" and ")}`,
      shards,
      inputTokens,
      exactTokens: exact,
      schemaTokens,
      images,
      outputTokensPerRequest,
      outputTokens,
      cost,
      laterStages: pipeline.stages.slice(1).map((s) => s.name),
      stages: pipeline.stages.map((s, i) => ({
        name: s.name,
        provider: s.provider,
        model: s.model,
        tokenizer: Tokens.counterFor(s.model) === undefined ? "approximate" : "model",
        contextWindow: Pricing.contextWindow(s.model, prices) ?? null,
        estimated: i === 0
      })),
      overContextWindow: over ?? null,
      notes,
      prices: prices.label
    } satisfies Estimate
  }))

const plural = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`

export const render = (e: Estimate): string => {
  const tokenizer = Tokens.counterFor(e.model) === undefined ? "approximate: about 4 characters a token" : "counted with the model's tokenizer"
  const how = [
    e.images > 0 ? `text ${tokenizer}` : e.exactTokens ? "counted with the model's tokenizer" : "approximate: about 4 characters a token",
    ...(e.images > 0 ? [`${plural(e.images, "image")} at ${Prompt.imageTokens} tokens each, approximated`] : []),
    ...(e.schemaTokens > 0 ? [`${e.schemaTokens} of them for the output schema, approximate`] : [])
  ]
  const later = e.stages.filter((s) => !s.estimated)
  const over = e.overContextWindow
  return [
    `${e.pipeline}: ${e.rows} rows${e.invalid > 0 ? ` (+${e.invalid} invalid, not submitted)` : ""}` +
      `${over === null ? "" : ` (+${over.count} over the context window, not submitted)`} in ${plural(e.shards, "shard")}, model ${e.model}`,
    `input tokens:  ${e.inputTokens} (${how.join("; ")})`,
    `output tokens: ~${e.outputTokens} (an estimate: ${e.outputTokensPerRequest} per request; set --output-tokens)`,
    e.cost === null
      ? `cost: no price for ${e.model} in the price table (give one with --prices)`
      : `cost: ~$${e.cost.batch.toFixed(4)} at batch prices, ~$${e.cost.realtime.toFixed(4)} at real-time prices (prices of ${e.prices})`,
    ...(e.duplicates > 0 ? [`duplicates: ${plural(e.duplicates, "row")} repeat an earlier row's key and request: sent once (not counted above)`] : []),
    ...(e.conflicts.rows > 0
      ? [`conflicting keys: ${plural(e.conflicts.rows, "row")} share ${plural(e.conflicts.keys, "key")} with different requests: none of them is sent (not counted above)`]
      : []),
    ...e.problems.map((p) => `  ${p}`),
    ...(e.malformed + e.conflicts.rows > e.problems.length ? [`  … and ${e.malformed + e.conflicts.rows - e.problems.length} more`] : []),
    ...(over === null
      ? []
      : [
        `warning: ${plural(over.count, "request")} over ${over.model}'s context window of ${over.contextWindow} tokens; a run fails ` +
          `${over.count === 1 ? "it" : "them"} unsent (context_length): ` +
          over.first.map((f) => `${f.location} (${f.tokens} tokens)`).join(", ") + (over.count > over.first.length ? ", …" : "")
      ]),
    ...e.notes.map((n) => `note: ${n}`),
    ...(later.length === 0
      ? []
      : [
        `not estimated: the later stage${later.length === 1 ? "" : "s"} ` +
          later.map((s) => `${s.name}${s.tokenizer === "approximate" ? ` (${s.model}, whose tokens sluice counts approximately)` : ""}`).join(", ") +
          `: their rows come from the answers of the first`
      ])
  ].join("\n")
}
