/**
 * Cost from token usage, with the versioned price table in data/prices.json.
 */
import { Schema } from "effect"
import { readFileSync } from "node:fs"

const Rate = Schema.Struct({ input: Schema.Number, cachedInput: Schema.Number, output: Schema.Number })
export const PriceTable = Schema.Struct({
  version: Schema.Number,
  date: Schema.String,
  currency: Schema.String,
  unit: Schema.String,
  source: Schema.String,
  models: Schema.Record({ key: Schema.String, value: Schema.Struct({ realtime: Rate, batch: Rate }) })
})
export type PriceTable = typeof PriceTable.Type

export const table: PriceTable = Schema.decodeUnknownSync(PriceTable)(
  JSON.parse(readFileSync(new URL("../data/prices.json", import.meta.url), "utf8"))
)

export interface Cost {
  readonly batch: number
  readonly realtime: number
}

/** Prices a model's usage; undefined when the table does not know the model. */
export const cost = (
  model: string,
  usage: { readonly input: number; readonly output: number; readonly cached: number }
): Cost | undefined => {
  // Dated snapshots ("gpt-4o-mini-2024-07-18") are priced as their family.
  const entry = table.models[model] ?? table.models[model.replace(/-\d{4}-\d{2}-\d{2}$/, "")]
  if (entry === undefined) return undefined
  const price = (r: typeof Rate.Type) =>
    ((usage.input - usage.cached) * r.input + usage.cached * r.cachedInput + usage.output * r.output) / 1_000_000
  return { batch: price(entry.batch), realtime: price(entry.realtime) }
}

/** Prices usage spread over several models (a pipeline's stages); undefined when a used model has no price. */
export const costByModel = (
  usage: ReadonlyMap<string, { readonly input: number; readonly output: number; readonly cached: number }>
): Cost | undefined => {
  let batch = 0
  let realtime = 0
  for (const [model, u] of usage) {
    const c = cost(model, u)
    if (c === undefined) return undefined
    batch += c.batch
    realtime += c.realtime
  }
  return { batch, realtime }
}
