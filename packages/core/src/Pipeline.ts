/**
 * The pipeline DSL: source → prompt template → batch stage → parse → sink, as one value,
 * typed end to end.
 *
 * ```ts
 * export default Pipeline.make("classify-reviews").pipe(
 *   Pipeline.from(Source.jsonl("data/reviews.jsonl", Review), { key: (r) => r.id }),
 *   Pipeline.batch("label", {
 *     provider: "openai", model: "gpt-4o-mini",
 *     prompt: (r) => Prompt.chat({ system: "You label product reviews.", user: r.text }),
 *     output: Label
 *   }),
 *   Pipeline.to(Sink.jsonl("out/labeled.jsonl"))
 * )
 * ```
 */
import { Effect, Either, Schema } from "effect"
import type { Pipeable } from "effect"
import { pipeArguments } from "effect/Pipeable"
import type { BatchRequest, Endpoint, OutputFormat, Params } from "./BatchRequest.js"
import { hashValue, sha256 } from "./Hash.js"
import { describeValue } from "./Prompt.js"
import type { ChatPrompt } from "./Prompt.js"
import type { Sink, SinkRecord } from "./Sink.js"
import type { Source } from "./Source.js"
import * as StructuredOutput from "./StructuredOutput.js"

/** What to do with a source row that is malformed or breaks the row Schema. */
export type OnInvalid = "fail" | "skip"

/**
 * How a stage's requests are sent: `batch` (the provider's batch API, half price, minutes to
 * hours), `online` (its real-time endpoint, one request at a time under rate limits), or
 * `auto` (batch where the provider has a batch API, online where it has none). The answers,
 * their parsing and where they go are the same whichever mode produced them.
 */
export type Mode = "batch" | "online" | "auto"

export const modes: ReadonlyArray<Mode> = ["batch", "online", "auto"]

export interface BatchStage<A, B> {
  readonly _tag: "BatchStage"
  readonly name: string
  readonly provider: string
  readonly model: string
  /** The API its requests target; one endpoint per shard. */
  readonly endpoint: Endpoint
  /** How its requests are sent (default `batch`); a run may override it (`--mode`). Not part of the fingerprint: the answers are the same. */
  readonly mode: Mode
  /** Renders the neutral request for a row. */
  readonly render: (row: A) => BatchRequest
  /**
   * SHA-256 (hex) of a rendered request (model, params, schema, messages): its first 16
   * characters end the row's custom_id; the whole digest keys the response cache.
   */
  readonly requestHash: (request: BatchRequest) => string
  /** The row's custom_id as given by the caller, instead of the derived one. */
  readonly customId: ((row: A) => string) | undefined
  /** Decodes the model's answer; Left carries a readable reason (a `parse` failure). */
  readonly decode: (text: string) => Either.Either<B, string>
  /** Attempts per row before a retryable failure becomes final. */
  readonly maxAttempts: number
  /**
   * Whether an answer that fails the output Schema is sent back for repair (the original
   * messages, the answer and the decode error) in a later shard, within `maxAttempts`.
   */
  readonly repair: boolean
  /** What identifies this stage's behaviour (model, params, schema, prompt source). */
  readonly fingerprint: string
}

/**
 * A plain transform between stages: each value becomes 0..n values. `input` is the input of
 * the batch stage that produced `value` (the source row before the first stage). A child
 * gets its parent's key, or `<parent key>.<suffix>` when the transform fans out.
 */
export type TransformRows = ReadonlyArray<readonly [suffix: string | undefined, value: unknown]>

export interface Transform {
  readonly _tag: "Transform"
  /** The children of one value: an array, or (when `effectful`) an Effect of one. */
  readonly apply: (value: unknown, input: unknown) => TransformRows | Effect.Effect<TransformRows, unknown>
  readonly effectful: boolean
  /** True when it may yield other than exactly one value (not allowed after the last stage). */
  readonly fansOut: boolean
  readonly fingerprint: string
}

/**
 * `In` is the source row, `Out` what the last step yields, and `Prev` the input of the last
 * batch stage (what `map` and `flatMap` receive next to the value).
 */
export interface Pipeline<In, Out, Prev = unknown> extends Pipeable.Pipeable {
  readonly name: string
  readonly source: Source<In> | undefined
  readonly key: ((row: In) => string) | undefined
  readonly onInvalid: OnInvalid
  readonly stages: ReadonlyArray<BatchStage<any, any>>
  /**
   * The transforms around the stages: `links[k]` runs before `stages[k]`, and the last entry
   * between the last stage and the sink. Always `stages.length + 1` entries.
   */
  readonly links: ReadonlyArray<ReadonlyArray<Transform>>
  readonly sink: Sink<SinkRecord<In, Out>> | undefined
  /** Phantom: never set. */
  readonly _Prev?: Prev
}

/** Marks pipeline values across module copies (a pipeline file and the CLI may load two). */
export const TypeId: unique symbol = Symbol.for("@sluice/core/Pipeline")

const PipelineProto = {
  [TypeId]: TypeId,
  pipe() {
    // eslint-disable-next-line prefer-rest-params
    return pipeArguments(this, arguments)
  }
}

const build = <In, Out, Prev = unknown>(fields: Omit<Pipeline<In, Out, Prev>, "pipe">): Pipeline<In, Out, Prev> =>
  Object.assign(Object.create(PipelineProto), fields)

export const isPipeline = (u: unknown): u is Pipeline<unknown, unknown> =>
  typeof u === "object" && u !== null && (u as { [TypeId]?: unknown })[TypeId] === TypeId

/** Starts a pipeline. The name identifies it in run directories and batch metadata. */
export const make = (name: string): Pipeline<never, never> => {
  if (name.trim() === "") throw new Error("Pipeline.make: a pipeline needs a name")
  return build({ name, source: undefined, key: undefined, onInvalid: "fail", stages: [], links: [[]], sink: undefined })
}

export interface FromOptions<Row> {
  /**
   * A stable key per row (e.g. its id). Without one, rows are keyed by a content hash plus an
   * occurrence counter, which is stable only as long as the source does not change.
   */
  readonly key?: (row: Row) => string
  /** "fail" (default) stops before anything is submitted; "skip" lists the row in failures.jsonl. */
  readonly onInvalid?: OnInvalid
}

/** Sets the source of rows. */
export const from =
  <Row>(source: Source<Row>, options: FromOptions<Row> = {}) =>
  (self: Pipeline<never, never>): Pipeline<Row, Row, Row> =>
    build({
      name: self.name,
      source,
      key: options.key,
      onInvalid: options.onInvalid ?? "fail",
      stages: [],
      links: [[]],
      sink: undefined
    })

/** Appends a batch stage: its input is what the pipeline yields so far. */
const addStage = <In, B, A>(self: Pipeline<In, any, any>, stage: BatchStage<any, any>, fn: string): Pipeline<In, B, A> => {
  if (self.source === undefined) throw new Error(`Pipeline.${fn}("${stage.name}"): add a source with Pipeline.from first`)
  if (/-[ra]\d+$/.test(stage.name)) {
    // Retry and repair shards are named `<stage>-r<n>-…` and `…-a<n>`: a stage named so would share their ids.
    throw new Error(`Pipeline.${fn}("${stage.name}"): a stage name may not end in -r<number> or -a<number>`)
  }
  if (stage.name === "__proto__") {
    // The journal keeps per-stage offsets (a later stage's inbox) in JSON records, which cannot hold this key.
    throw new Error(`Pipeline.${fn}("${stage.name}"): a stage may not be named __proto__`)
  }
  if (self.stages.some((s) => s.name === stage.name)) {
    throw new Error(`Pipeline.${fn}("${stage.name}"): a pipeline's stages need distinct names`)
  }
  return build({ ...self, stages: [...self.stages, stage], links: [...self.links, []], sink: undefined }) as Pipeline<In, B, A>
}

const addTransform = <In, B, P>(self: Pipeline<In, any, any>, t: Transform, fn: string): Pipeline<In, B, P> => {
  if (self.source === undefined) throw new Error(`Pipeline.${fn}: add a source with Pipeline.from first`)
  const links = [...self.links]
  links[links.length - 1] = [...links[links.length - 1]!, t]
  return build({ ...self, links, sink: undefined }) as Pipeline<In, B, P>
}

/**
 * A plain transform of each value (1:1). `input` is the input of the batch stage that
 * produced the value, so a later stage can see both the answer and what was asked.
 */
export const map =
  <A, B, P>(f: (value: A, input: P) => B) =>
  <In>(self: Pipeline<In, A, P>): Pipeline<In, B, P> =>
    addTransform(
      self,
      { _tag: "Transform", apply: (v, i) => [[undefined, f(v as A, i as P)]], effectful: false, fansOut: false, fingerprint: `map:${f.toString()}` },
      "map"
    )

/**
 * `map` with an Effect (a lookup, a call of your own): its failure fails the row
 * (`transform_error`). It must need no services: provide them inside. It runs while a shard
 * is collected, so keep it quick.
 */
export const mapEffect =
  <A, B, E, P>(f: (value: A, input: P) => Effect.Effect<B, E, never>) =>
  <In>(self: Pipeline<In, A, P>): Pipeline<In, B, P> =>
    addTransform(
      self,
      {
        _tag: "Transform",
        apply: (v, i) => Effect.map(f(v as A, i as P), (b): TransformRows => [[undefined, b]]),
        effectful: true,
        fansOut: false,
        fingerprint: `mapEffect:${f.toString()}`
      },
      "mapEffect"
    )

export interface FlatMapOptions<B> {
  /**
   * The part of each child's key after its parent's (`<parent key>.<suffix>`); the child's
   * index when not given. Give one when the children's order may change between runs.
   */
  readonly key?: (value: B, index: number) => string
}

/**
 * Fans out: each value becomes 0..n values, each a row of its own with a key derived from
 * its parent's. Allowed before a batch stage (use `map` after the last one).
 */
export const flatMap =
  <A, B, P>(f: (value: A, input: P) => ReadonlyArray<B>, options: FlatMapOptions<B> = {}) =>
  <In>(self: Pipeline<In, A, P>): Pipeline<In, B, P> => {
    const key = options.key
    return addTransform(
      self,
      {
        _tag: "Transform",
        apply: (v, i) => f(v as A, i as P).map((b, n) => [key === undefined ? String(n) : key(b, n), b] as const),
        effectful: false,
        fansOut: true,
        fingerprint: `flatMap:${f.toString()}:${key?.toString() ?? ""}`
      },
      "flatMap"
    )
  }

/** `flatMap` with an Effect; as for `mapEffect`, its failure fails the row. */
export const flatMapEffect =
  <A, B, E, P>(f: (value: A, input: P) => Effect.Effect<ReadonlyArray<B>, E, never>, options: FlatMapOptions<B> = {}) =>
  <In>(self: Pipeline<In, A, P>): Pipeline<In, B, P> => {
    const key = options.key
    return addTransform(
      self,
      {
        _tag: "Transform",
        apply: (v, i) =>
          Effect.map(f(v as A, i as P), (bs): TransformRows => bs.map((b, n) => [key === undefined ? String(n) : key(b, n), b] as const)),
        effectful: true,
        fansOut: true,
        fingerprint: `flatMapEffect:${f.toString()}:${key?.toString() ?? ""}`
      },
      "flatMapEffect"
    )
  }

interface StageConfigBase<A> {
  readonly provider: string
  readonly model: string
  /** How the requests are sent: `batch` (default), `online` or `auto` (see `Mode`). */
  readonly mode?: Mode
  readonly prompt: (row: A) => ChatPrompt
  /** Passed to the provider as-is: temperature, max_tokens, … */
  readonly params?: Params
  /** Attempts per row for retryable failures (default 3). */
  readonly maxAttempts?: number
}

export interface ChatStageConfig<A> extends StageConfigBase<A> {
  /**
   * OpenAI's API the requests go to: chat completions (default) or `responses`
   * (`/v1/responses`, batch or online; OpenAI-family providers only).
   */
  readonly api?: "chat" | "responses"
}

export interface StructuredStageConfig<A, B, I> extends ChatStageConfig<A> {
  /** The answer's Schema: sent as a strict JSON Schema, and used to decode the answer. */
  readonly output: Schema.Schema<B, I, never>
  /** Send answers that fail the Schema back for repair (default true). */
  readonly repair?: boolean
}

/** A chat batch stage: each row is rendered into a request; answers are decoded with `output`. */
export function batch<A, B, I>(
  name: string,
  config: StructuredStageConfig<A, B, I>
): <In>(self: Pipeline<In, A, any>) => Pipeline<In, B, A>
/** A chat batch stage whose output is the answer's text. */
export function batch<A>(name: string, config: ChatStageConfig<A>): <In>(self: Pipeline<In, A, any>) => Pipeline<In, string, A>
export function batch<A, B, I>(
  name: string,
  config: ChatStageConfig<A> & { readonly output?: Schema.Schema<B, I, never>; readonly repair?: boolean }
) {
  const stage = makeChatStage(name, config)
  return <In>(self: Pipeline<In, A, any>): Pipeline<In, B, A> => addStage(self, stage, "batch")
}

const checkMode = (fn: string, name: string, mode: unknown): Mode => {
  if (mode === undefined) return "batch"
  if (!modes.includes(mode as Mode)) throw new Error(`Pipeline.${fn}: stage "${name}": mode must be "batch", "online" or "auto", got ${describeValue(mode)}`)
  return mode as Mode
}

const makeChatStage = <A, B, I>(
  name: string,
  config: ChatStageConfig<A> & { readonly output?: Schema.Schema<B, I, never>; readonly repair?: boolean }
): BatchStage<A, B> => {
  if (!/^[A-Za-z0-9_-]{1,32}$/.test(name)) {
    throw new Error(`Pipeline.batch: stage name "${name}" must match ^[A-Za-z0-9_-]{1,32}$`)
  }
  const mode = checkMode("batch", name, config.mode)
  const api = config.api ?? "chat"
  if (api !== "chat" && api !== "responses") throw new Error(`Pipeline.batch: stage "${name}": api must be "chat" or "responses", got ${describeValue(api)}`)
  const responses = api === "responses"
  const params = config.params ?? {}
  const structured = config.output === undefined ? undefined : StructuredOutput.toOutputFormat(name, config.output)
  const output: OutputFormat | undefined = structured?.format
  const decode: (text: string) => Either.Either<B, string> =
    structured === undefined ? (text) => Either.right(text as B) : StructuredOutput.decoder(config.output!, structured)
  const constant = hashValue({ endpoint: api, model: config.model, params, output: output ?? null })
  const extra = responses ? { api: "responses" as const } : {}
  return {
    _tag: "BatchStage",
    name,
    provider: config.provider,
    model: config.model,
    endpoint: api,
    mode,
    render: (row) => {
      const prompt: unknown = config.prompt(row)
      if (typeof prompt !== "object" || prompt === null || !Array.isArray((prompt as { messages?: unknown }).messages)) {
        throw new Error(`Pipeline.batch: stage "${name}": the prompt returned ${describeValue(prompt)}; return Prompt.chat(…)`)
      }
      const { messages } = prompt as ChatPrompt
      return output === undefined
        ? { _tag: "chat", model: config.model, messages, params, ...extra }
        : { _tag: "chat", model: config.model, messages, params, output, ...extra }
    },
    // The stage-constant part (model, params, schema) is hashed once; per row only the messages.
    requestHash: (request) =>
      sha256(constant + JSON.stringify(request._tag === "chat" ? request.messages : request.input)),
    customId: undefined,
    decode,
    maxAttempts: config.maxAttempts ?? 3,
    repair: structured !== undefined && config.repair !== false,
    fingerprint: hashValue({
      provider: config.provider,
      model: config.model,
      params,
      output: output ?? null,
      prompt: config.prompt.toString(),
      // Absent for chat completions, so existing fingerprints stay what they were.
      ...(responses ? { api } : {})
    })
  }
}

export interface RawStageConfig<A> {
  readonly provider: string
  /** The model every request uses (one model per batch on OpenAI-style providers). */
  readonly model: string
  /** The ready-made request of a row. */
  readonly request: (row: A) => BatchRequest
  /** The row's custom_id, kept verbatim; must match ^[A-Za-z0-9_-]{1,64}$. */
  readonly customId: (row: A) => string
  /** The endpoint of every request (default chat). */
  readonly endpoint?: Endpoint
  readonly maxAttempts?: number
  /** How the requests are sent: `batch` (default), `online` or `auto` (see `Mode`). */
  readonly mode?: Mode
}

/**
 * A batch stage over ready-made requests with their own custom_ids (for callers that
 * already have batch request lines). The answer's text is the output.
 */
export const batchRaw =
  <A>(name: string, config: RawStageConfig<A>) =>
  <In>(self: Pipeline<In, A, any>): Pipeline<In, string, A> => {
    if (!/^[A-Za-z0-9_-]{1,32}$/.test(name)) {
      throw new Error(`Pipeline.batchRaw: stage name "${name}" must match ^[A-Za-z0-9_-]{1,32}$`)
    }
    const stage: BatchStage<A, string> = {
      _tag: "BatchStage",
      name,
      provider: config.provider,
      model: config.model,
      endpoint: config.endpoint ?? "chat",
      mode: checkMode("batchRaw", name, config.mode),
      render: config.request,
      requestHash: (request) => sha256(JSON.stringify(request)),
      customId: config.customId,
      decode: (text) => Either.right(text),
      maxAttempts: config.maxAttempts ?? 3,
      repair: false,
      fingerprint: hashValue({ raw: true, provider: config.provider, model: config.model, request: config.request.toString() })
    }
    return addStage(self, stage, "batchRaw")
  }

export interface EmbedStageConfig<A> {
  readonly provider: string
  readonly model: string
  /** The text to embed for a row. */
  readonly input: (row: A) => string
  /** Passed to the provider as-is: dimensions, encoding_format … */
  readonly params?: Params
  readonly maxAttempts?: number
  /** How the requests are sent: `batch` (default), `online` or `auto` (see `Mode`). */
  readonly mode?: Mode
}

const Vector = Schema.Array(Schema.Number)
const decodeVector = Schema.decodeUnknownEither(Schema.parseJson(Vector))

/** An embeddings batch stage (`/v1/embeddings`): each row's output is its vector. */
export const embed =
  <A>(name: string, config: EmbedStageConfig<A>) =>
  <In>(self: Pipeline<In, A, any>): Pipeline<In, ReadonlyArray<number>, A> => {
    if (!/^[A-Za-z0-9_-]{1,32}$/.test(name)) throw new Error(`Pipeline.embed: stage name "${name}" must match ^[A-Za-z0-9_-]{1,32}$`)
    const params = config.params ?? {}
    const constant = hashValue({ endpoint: "embeddings", model: config.model, params })
    const stage: BatchStage<A, ReadonlyArray<number>> = {
      _tag: "BatchStage",
      name,
      provider: config.provider,
      model: config.model,
      endpoint: "embeddings",
      mode: checkMode("embed", name, config.mode),
      render: (row) => {
        const input: unknown = config.input(row)
        // An undefined input (a misspelt field) fails the row rather than going out empty.
        if (typeof input !== "string") throw new Error(`Pipeline.embed: stage "${name}": input is ${describeValue(input)}; expected a string`)
        return { _tag: "embeddings", model: config.model, input, params }
      },
      requestHash: (request) =>
        sha256(constant + JSON.stringify(request._tag === "chat" ? request.messages : request.input)),
      customId: undefined,
      decode: (text) => Either.mapLeft(decodeVector(text), (e) => `not an embedding vector: ${e.message.split("\n")[0]}`),
      maxAttempts: config.maxAttempts ?? 3,
      repair: false,
      fingerprint: hashValue({ embed: true, provider: config.provider, model: config.model, params, input: config.input.toString() })
    }
    return addStage(self, stage, "embed")
  }

/**
 * Sets where results go. The sink receives `{ key, customId, input, output }` for every
 * succeeded row (`input` is the source row; with several stages also `lineage`, the
 * custom_ids of the upstream requests that led to it).
 */
export const to =
  <In, Out>(sink: Sink<SinkRecord<In, Out>>) =>
  <P>(self: Pipeline<In, Out, P>): Pipeline<In, Out, P> => {
    if (self.links[self.links.length - 1]!.some((t) => t.fansOut)) {
      throw new Error("Pipeline.to: flatMap after the last batch stage would give one custom_id several sink rows; use map")
    }
    return build({ ...self, sink })
  }

/** What identifies a pipeline's behaviour; a run refuses to resume under a different one. */
export const fingerprint = (p: Pipeline<any, any, any>): string =>
  hashValue({
    name: p.name,
    source: p.source?.name ?? null,
    stages: p.stages.map((s) => [s.name, s.fingerprint]),
    // Absent for a pipeline without transforms, so its fingerprint stays what it was.
    ...(p.links.some((l) => l.length > 0) ? { links: p.links.map((l) => l.map((t) => t.fingerprint)) } : {})
  })

/** The rows a link yields for one value, with their keys. */
export type LinkRows = ReadonlyArray<readonly [key: string, value: unknown]>

/**
 * Runs a link's transforms over one value: the resulting rows with their keys (a fan-out
 * appends `.<suffix>` to the parent's key). Synchronous unless a transform is an Effect
 * (`mapEffect`, `flatMapEffect`): then an Effect. A throwing transform throws; a failing
 * Effect fails.
 */
export const applyLink = (link: ReadonlyArray<Transform>, key: string, value: unknown, input: unknown): LinkRows | Effect.Effect<LinkRows, unknown> =>
  applyFrom(link, 0, [[key, value]], input)

const keyed = (parent: string, children: ReadonlyArray<readonly [string | undefined, unknown]>, into: Array<readonly [string, unknown]>) => {
  for (const [suffix, child] of children) into.push([suffix === undefined ? parent : `${parent}.${suffix}`, child])
}

const applyFrom = (link: ReadonlyArray<Transform>, from: number, rows: LinkRows, input: unknown): LinkRows | Effect.Effect<LinkRows, unknown> => {
  for (let i = from; i < link.length; i++) {
    const t = link[i]!
    if (t.effectful) {
      return Effect.flatMap(
        Effect.forEach(rows, ([k, v]) => Effect.map(t.apply(v, input) as Effect.Effect<TransformRows, unknown>, (children) => [k, children] as const)),
        (results) => {
          const next: Array<readonly [string, unknown]> = []
          for (const [k, children] of results) keyed(k, children, next)
          const rest = applyFrom(link, i + 1, next, input)
          return Effect.isEffect(rest) ? rest : Effect.succeed(rest)
        }
      )
    }
    const next: Array<readonly [string, unknown]> = []
    for (const [k, v] of rows) keyed(k, t.apply(v, input) as TransformRows, next)
    rows = next
  }
  return rows
}
