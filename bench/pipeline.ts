/**
 * The benchmark's pipeline: label ~1 KB reviews with a structured (strict JSON Schema) output
 * and write a JSONL sink. Paths come from the environment so one file serves every run:
 *
 *   SLUICE_BENCH_SOURCE      the dataset (JSONL of {id, text})
 *   SLUICE_BENCH_SINK        the sink file
 *   SLUICE_BENCH_ON_INVALID  "skip" (default) or "fail" (used for the isolated plan measurement).
 *                            Rows are keyed by id, so either way nothing is submitted before the
 *                            whole source is planned and its keys are checked for duplicates
 *                            (README, "Duplicate keys")
 */
import { Pipeline, Prompt, Sink, Source } from "@sluice/core"
import { Schema } from "effect"

const source = process.env["SLUICE_BENCH_SOURCE"]
const sink = process.env["SLUICE_BENCH_SINK"]
if (source === undefined || sink === undefined) throw new Error("set SLUICE_BENCH_SOURCE and SLUICE_BENCH_SINK")
const onInvalid = process.env["SLUICE_BENCH_ON_INVALID"] === "fail" ? "fail" : "skip"

const Review = Schema.Struct({ id: Schema.String, text: Schema.String })

const Label = Schema.Struct({
  sentiment: Schema.Literal("positive", "negative", "neutral", "mixed"),
  topics: Schema.Array(Schema.Literal("quality", "price", "shipping", "customer_service", "durability", "usability", "other")),
  summary: Schema.String,
  wouldRecommend: Schema.Boolean
})

export default Pipeline.make("bench").pipe(
  Pipeline.from(Source.jsonl(source, Review), { key: (r) => r.id, onInvalid }),
  Pipeline.batch("label", {
    provider: "openai",
    model: "gpt-4o-mini",
    params: { temperature: 0 },
    prompt: (r) =>
      Prompt.chat({
        system: "You label customer product reviews: overall sentiment, the topics it talks about, a one-sentence summary, and whether the reviewer would recommend the product.",
        user: r.text
      }),
    output: Label
  }),
  Pipeline.to(Sink.jsonl(sink))
)
