/**
 * Prices and context windows by model: the versioned table in data/prices.json, and a table a
 * user gives (`--prices FILE`, or `SLUICE_PRICES`) in the same shape, merged over it model by
 * model. Prices price the summary, `estimate` and `--budget`; context windows let `estimate`
 * warn about, and a run fail, requests too long for their model.
 */
import * as FileSystem from "@effect/platform/FileSystem"
import { Effect, ParseResult, Schema } from "effect"
import { readFileSync } from "node:fs"

const Usd = Schema.Number.pipe(Schema.finite(), Schema.nonNegative())
const Rate = Schema.Struct({ input: Usd, cachedInput: Usd, output: Usd })
type Rate = typeof Rate.Type

/** One model: its prices per 1M tokens (real-time and batch, both or neither) and its context window. */
export const ModelEntry = Schema.Struct({
  realtime: Schema.optionalWith(Rate, { exact: true }),
  batch: Schema.optionalWith(Rate, { exact: true }),
  /** Tokens the model takes in one request (its context window); a request with more input fails before it is sent. */
  contextWindow: Schema.optionalWith(Schema.Int.pipe(Schema.positive()), { exact: true })
}).pipe(
  Schema.filter((m) => (m.realtime === undefined) === (m.batch === undefined) || "give both realtime and batch prices, or neither")
)
export type ModelEntry = typeof ModelEntry.Type

/**
 * A price file: data/prices.json, or a user's. A user's file needs only `models`; the rest
 * says where its figures come from. Currency and unit are fixed: a file in other units is refused.
 */
export const PriceFile = Schema.Struct({
  version: Schema.optionalWith(Schema.Number, { exact: true }),
  date: Schema.optionalWith(Schema.String, { exact: true }),
  currency: Schema.optionalWith(Schema.Literal("USD"), { exact: true }),
  unit: Schema.optionalWith(Schema.Literal("per 1M tokens"), { exact: true }),
  source: Schema.optionalWith(Schema.String, { exact: true }),
  contextWindowSource: Schema.optionalWith(Schema.String, { exact: true }),
  models: Schema.Record({ key: Schema.String, value: ModelEntry })
})
export type PriceFile = typeof PriceFile.Type

/** The built-in table as the file has it. */
export const table = Schema.decodeUnknownSync(PriceFile)(
  JSON.parse(readFileSync(new URL("../data/prices.json", import.meta.url), "utf8"))
)

/** The prices a run or an estimate uses: the built-in table, with a user's file merged over it. */
export interface Prices {
  readonly models: Readonly<Record<string, ModelEntry>>
  /** Where they come from, for summaries: "2026-11-01" or "2026-11-01, and prices.json (2026-12-01)". */
  readonly label: string
  /** The user's file, if one was given (absolute path). */
  readonly file: string | null
}

export const builtin: Prices = { models: table.models, label: table.date ?? "the built-in table", file: null }

export class PricesFileError extends Schema.TaggedError<PricesFileError>()("PricesFileError", {
  file: Schema.String,
  description: Schema.String
}) {
  override get message(): string {
    return `prices file ${this.file}: ${this.description}`
  }
}

const shape =
  `a prices file takes the shape of sluice's data/prices.json: {"models": {"<model>": {"realtime": {"input": …, "cachedInput": …, "output": …}, ` +
  `"batch": {…}, "contextWindow": <tokens>}}}, in USD per 1M tokens`

/** The variable that names a prices file when `--prices` is not given. */
export const envVariable = "SLUICE_PRICES"

/** Merges a user's price file over the built-in table: per model, the file's fields win. */
export const merge = (base: Prices, file: PriceFile, name: string): Prices => {
  const models: Record<string, ModelEntry> = { ...base.models }
  for (const [model, entry] of Object.entries(file.models)) models[model] = { ...models[model], ...entry }
  return { models, label: `${base.label}, and ${name}${file.date === undefined ? "" : ` (${file.date})`}`, file: name }
}

/**
 * The prices of a run: the built-in table, with `file` (else `$SLUICE_PRICES`) merged over it.
 * A file that cannot be read or does not match the shape is an error naming it.
 */
export const load = (file?: string): Effect.Effect<Prices, PricesFileError, FileSystem.FileSystem> =>
  Effect.gen(function* () {
    const name = file ?? (process.env[envVariable]?.trim() || undefined)
    if (name === undefined) return builtin
    const fs = yield* FileSystem.FileSystem
    const text = yield* fs.readFileString(name).pipe(
      Effect.mapError(
        (e) =>
          new PricesFileError({
            file: name,
            description: e._tag === "SystemError" && e.reason === "NotFound" ? "no such file" : `cannot be read: ${e.message}`
          })
      )
    )
    const json = yield* Effect.try({
      try: () => JSON.parse(text) as unknown,
      catch: (e) => new PricesFileError({ file: name, description: `not JSON (${(e instanceof Error ? e.message : String(e)).replace(/\s+/g, " ")}); ${shape}` })
    })
    const decoded = yield* Schema.decodeUnknown(PriceFile)(json, { errors: "all" }).pipe(
      Effect.mapError(
        (e) =>
          new PricesFileError({
            file: name,
            description: ParseResult.ArrayFormatter.formatErrorSync(e)
              .map((i) => `${i.path.length === 0 ? "" : `at ${i.path.join(".")}: `}${i.message}`)
              .join("; ") + `; ${shape}`
          })
      )
    )
    return merge(builtin, decoded, name)
  })

/** A model's entry; dated snapshots ("gpt-4o-mini-2024-07-18") fall back to their family. */
const entryOf = (prices: Prices, model: string): ModelEntry | undefined =>
  prices.models[model] ?? prices.models[model.replace(/-\d{4}-\d{2}-\d{2}$/, "")]

/** True when `model` has prices. */
export const isPriced = (model: string, prices: Prices = builtin): boolean => entryOf(prices, model)?.batch !== undefined

/** The model's context window in tokens, when the table knows it. */
export const contextWindow = (model: string, prices: Prices = builtin): number | undefined => entryOf(prices, model)?.contextWindow

export interface Cost {
  readonly batch: number
  readonly realtime: number
}

/** Prices a model's usage; undefined when the table does not know the model. */
export const cost = (
  model: string,
  usage: { readonly input: number; readonly output: number; readonly cached: number },
  prices: Prices = builtin
): Cost | undefined => {
  const entry = entryOf(prices, model)
  if (entry?.batch === undefined || entry.realtime === undefined) return undefined
  const price = (r: Rate) => ((usage.input - usage.cached) * r.input + usage.cached * r.cachedInput + usage.output * r.output) / 1_000_000
  return { batch: price(entry.batch), realtime: price(entry.realtime) }
}

/** Prices usage spread over several models (a pipeline's stages); undefined when a used model has no price. */
export const costByModel = (
  usage: ReadonlyMap<string, { readonly input: number; readonly output: number; readonly cached: number }>,
  prices: Prices = builtin
): Cost | undefined => {
  let batch = 0
  let realtime = 0
  for (const [model, u] of usage) {
    const c = cost(model, u, prices)
    if (c === undefined) return undefined
    batch += c.batch
    realtime += c.realtime
  }
  return { batch, realtime }
}
