/**
 * Two stages, from a Parquet file into a PostgreSQL table and a Parquet dataset:
 *
 *   documents.parquet ─▶ extract (facts per review) ─▶ group by topic ─▶ summarise ─▶ table + parquet
 *
 * Stage 2 starts on a shard of groups as soon as stage-1 shards finish. Each group's key is
 * `<document id>.<topic>`, and every row the sinks receive names, in `lineage`, the
 * `extract-…` request it came from.
 *
 *   npm run example:facts          # against the emulator, with a throwaway PostgreSQL server
 *   DATABASE_URL=postgres://… npx sluice run examples/facts/facts.pipeline.ts
 */
import { Pipeline, Prompt, Sink, Source } from "@sluice/core"
import { PgSink } from "@sluice/runner"
import { Document, documentsFile, Facts, parquetDir, Summary, tableName, topics } from "./facts.js"

const databaseUrl = process.env["DATABASE_URL"]

export default Pipeline.make("facts").pipe(
  Pipeline.from(Source.parquet(documentsFile, Document), {
    key: (d) => d.id
  }),
  Pipeline.batch("extract", {
    provider: "openai",
    model: "gpt-4o-mini",
    params: { temperature: 0 },
    prompt: (d) =>
      Prompt.chat({
        system:
          "You extract facts from product reviews. List every concrete fact the review states, each as one " +
          `short sentence under one topic: ${topics.join(", ")}. Leave out opinions without substance.`,
        user: `Product: ${d.product}\nRating: ${d.rating}/5\nTitle: ${d.title}\n\n${d.body}`
      }),
    output: Facts
  }),
  // One row per (document, topic): its key is `<document id>.<topic>`.
  Pipeline.flatMap(
    (extracted, doc) =>
      [...new Set(extracted.facts.map((f) => f.topic))].map((topic) => ({
        docId: doc.id,
        product: doc.product,
        topic,
        facts: extracted.facts.filter((f) => f.topic === topic).map((f) => f.fact)
      })),
    { key: (group) => group.topic }
  ),
  Pipeline.batch("summarise", {
    provider: "openai",
    model: "gpt-4o-mini",
    params: { temperature: 0 },
    prompt: (group) =>
      Prompt.chat({
        system:
          `Summarise in one sentence what a review of the ${group.product} says about its ${group.topic}, ` +
          "and whether that is positive, negative or mixed.",
        user: group.facts.map((f) => `- ${f}`).join("\n")
      }),
    output: Summary
  }),
  Pipeline.map((s, group) => ({
    doc_id: group.docId,
    product: group.product,
    topic: group.topic,
    fact_count: group.facts.length,
    summary: s.summary,
    sentiment: s.sentiment
  })),
  Pipeline.to(
    Sink.all(
      PgSink.table({
        ...(databaseUrl === undefined ? {} : { url: databaseUrl }), // else the PG* variables, as for psql
        table: tableName,
        // Next to the sink's own custom_id (primary key), key and written_at.
        columns: (r) => ({ ...r.output, title: r.input.title, lineage: r.lineage ?? [] })
      }),
      Sink.parquet(parquetDir, {
        columns: (r) => ({ key: r.key, custom_id: r.customId, ...r.output, title: r.input.title, lineage: (r.lineage ?? []).join(" ") })
      })
    )
  )
)
