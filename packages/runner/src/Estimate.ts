/**
 * `sluice estimate`: renders every request of a pipeline without submitting anything and
 * projects what the run will cost — rows, shards, input tokens (the model's real tokenizer
 * for OpenAI models, about four characters a token elsewhere), an output-token estimate, and
 * the cost at batch and at real-time prices. Like a run, it finds invalid source rows and
 * duplicate keys (DuplicateKeys.ts), and says when `sluice run` would refuse the pipeline.
 */
import { FileSystem, HttpClient } from "@effect/platform"
import { CustomId, Hash, Pipeline, Prompt, Tokens } from "@sluice/core"
import type { BatchRequest, Source } from "@sluice/core"
import { OpenAiBatch, Providers } from "@sluice/providers"
import type { BatchProvider } from "@sluice/providers"
import type { PlatformError } from "@effect/platform/Error"
import { Chunk, Effect, Either, Option, Redacted, Stream } from "effect"
import * as DuplicateKeys from "./DuplicateKeys.js"
import * as ExternalSort from "./internal/ExternalSort.js"
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
  /** Images in the prompts, each counted as `Prompt.imageTokens` input tokens. */
  readonly images: number
  readonly outputTokensPerRequest: number
  readonly outputTokens: number
  readonly cost: Pricing.Cost | null
  /** Stages after the first: not estimated, their rows come from answers. */
  readonly laterStages: ReadonlyArray<string>
  readonly prices: string
}

/**
 * Input tokens of one rendered request. Content parts: each text part counted like a text
 * message's content, each image as `Prompt.imageTokens` (the emulator counts them the same
 * way); a request with images is never `exact`.
 */
export const requestTokens = (request: BatchRequest): Tokens.Count => {
  if (request._tag !== "chat") return Tokens.text(request.model, request.input)
  const { messages, model } = request
  if (messages.every((m): m is typeof m & { readonly content: string } => typeof m.content === "string")) {
    return Tokens.chat(model, messages)
  }
  // The framing of every message (and its role) as for text; the parts on top.
  const framing = Tokens.chat(model, messages.map((m) => ({ role: m.role, content: typeof m.content === "string" ? m.content : "" })))
  let tokens = framing.tokens
  let images = 0
  for (const m of messages) {
    if (typeof m.content === "string") continue
    for (const part of m.content) {
      if (part.type === "text") tokens += Tokens.text(model, part.text).tokens
      else images++
    }
  }
  // Images are an approximation, whatever the tokenizer.
  return { tokens: tokens + images * Prompt.imageTokens, exact: framing.exact && images === 0 }
}

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
): Effect.Effect<Estimate, PipelineInvalid | Source.SourceError | PlatformError, FileSystem.FileSystem> =>
  Effect.scoped(Effect.gen(function* () {
    const stage = pipeline.stages[0]
    if (pipeline.source === undefined || stage === undefined) {
      return yield* new PipelineInvalid({ description: `pipeline "${pipeline.name}" needs a source and a batch stage` })
    }
    const before = pipeline.links[0] ?? []
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
              if (request._tag === "chat") {
                for (const m of request.messages) images += Prompt.imageCount(m.content)
              }
              if (perRequestOutput === undefined) {
                const max = request.params["max_tokens"] ?? request.params["max_completion_tokens"]
                perRequestOutput = typeof max === "number" ? max : 100
              }
              const count = requestTokens(request)
              inputTokens += count.tokens
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
    const outputTokensPerRequest = perRequestOutput ?? 100
    const outputTokens = rows * outputTokensPerRequest
    const cost = Pricing.cost(stage.model, { input: inputTokens, output: outputTokens, cached: 0 }) ?? null
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
      images,
      outputTokensPerRequest,
      outputTokens,
      cost,
      laterStages: pipeline.stages.slice(1).map((s) => s.name),
      prices: `${Pricing.table.date} (${Pricing.table.unit}, ${Pricing.table.currency})`
    } satisfies Estimate
  }))

const plural = (n: number, what: string) => `${n} ${what}${n === 1 ? "" : "s"}`

export const render = (e: Estimate): string =>
  [
    `${e.pipeline}: ${e.rows} rows${e.invalid > 0 ? ` (+${e.invalid} invalid, not submitted)` : ""} in ${e.shards} shard${e.shards === 1 ? "" : "s"}, model ${e.model}`,
    `input tokens:  ${e.inputTokens}${
      e.images > 0
        ? ` (text ${Tokens.counterFor(e.model) === undefined ? "approximated: about 4 characters a token" : "counted with the model's tokenizer"}; ` +
          `${e.images} image${e.images === 1 ? "" : "s"} at ${Prompt.imageTokens} tokens each, approximated)`
        : e.exactTokens
        ? " (counted with the model's tokenizer)"
        : " (approximated: about 4 characters a token)"
    }`,
    `output tokens: ~${e.outputTokens} (an estimate: ${e.outputTokensPerRequest} per request; set --output-tokens)`,
    e.cost === null
      ? `cost: no price for ${e.model} in the price table`
      : `cost: ~$${e.cost.batch.toFixed(4)} at batch prices, ~$${e.cost.realtime.toFixed(4)} at real-time prices (prices of ${e.prices})`,
    ...(e.duplicates > 0 ? [`duplicates: ${plural(e.duplicates, "row")} repeat an earlier row's key and request: sent once (not counted above)`] : []),
    ...(e.conflicts.rows > 0
      ? [`conflicting keys: ${plural(e.conflicts.rows, "row")} share ${plural(e.conflicts.keys, "key")} with different requests: none of them is sent (not counted above)`]
      : []),
    ...e.problems.map((p) => `  ${p}`),
    ...(e.malformed + e.conflicts.rows > e.problems.length ? [`  … and ${e.malformed + e.conflicts.rows - e.problems.length} more`] : []),
    ...(e.refusal === null ? [] : [e.refusal]),
    ...(e.laterStages.length === 0
      ? []
      : [`not estimated: the later stage${e.laterStages.length === 1 ? "" : "s"} ${e.laterStages.join(", ")} (their rows come from the answers of the first)`])
  ].join("\n")
