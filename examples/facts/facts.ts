/**
 * What the two-stage facts example (facts.pipeline.ts) shares with its runner script and
 * test: the Schemas, where the data comes from and where the results go.
 *
 * Stage 1 (`extract`) reads a product review and lists the facts it states, each under one
 * topic. The facts of a document are grouped by topic, one row per (document, topic).
 * Stage 2 (`summarise`) turns each group into one sentence and a sentiment.
 */
import { Schema } from "effect"
import { fileURLToPath } from "node:url"

/** A row of examples/data/documents.parquet (scripts/generate-documents.ts). */
export const Document = Schema.Struct({
  id: Schema.String,
  title: Schema.String,
  product: Schema.String,
  category: Schema.String,
  rating: Schema.Number,
  published: Schema.String,
  body: Schema.String
})
export type Document = typeof Document.Type

export const topics = ["price", "quality", "shipping", "support", "durability"] as const
export const Topic = Schema.Literal(...topics)
export type Topic = typeof Topic.Type

/** Stage 1's answer. */
export const Facts = Schema.Struct({
  facts: Schema.Array(Schema.Struct({ topic: Topic, fact: Schema.String }))
})
export type Facts = typeof Facts.Type

/** Stage 2's answer. */
export const Summary = Schema.Struct({
  summary: Schema.String,
  sentiment: Schema.Literal("positive", "negative", "mixed")
})
export type Summary = typeof Summary.Type

export const documentsFile = fileURLToPath(new URL("../data/documents.parquet", import.meta.url))

/** Where the results go; the environment may move them (the e2e test does). */
export const tableName = process.env["FACTS_TABLE"] ?? "fact_summaries"
export const parquetDir = process.env["FACTS_PARQUET_DIR"] ?? "out/fact-summaries"
