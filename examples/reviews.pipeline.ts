/**
 * The demo: label 1,000 product reviews with a Schema-typed label through the OpenAI Batch
 * API (or the built-in emulator: `npm run demo` points OPENAI_BASE_URL at it).
 *
 *   npx sluice run examples/reviews.pipeline.ts
 */
import { Pipeline, Prompt, Sink, Source } from "@sluice/core"
import { Schema } from "effect"

const Review = Schema.Struct({
  id: Schema.String,
  product: Schema.String,
  rating: Schema.Number,
  text: Schema.String
})

const Label = Schema.Struct({
  sentiment: Schema.Literal("positive", "negative", "neutral", "mixed"),
  topics: Schema.Array(Schema.Literal("quality", "price", "shipping", "customer_service", "durability", "usability", "sizing", "other")),
  summary: Schema.String,
  wouldRecommend: Schema.Boolean
})

const here = new URL(".", import.meta.url).pathname

export default Pipeline.make("reviews").pipe(
  Pipeline.from(Source.jsonl(`${here}data/reviews.jsonl`, Review), { key: (r) => r.id }),
  Pipeline.batch("label", {
    provider: "openai",
    model: "gpt-4o-mini",
    params: { temperature: 0 },
    prompt: (r) =>
      Prompt.chat({
        system:
          "You label customer product reviews. Give the overall sentiment, the topics the review talks about, " +
          "a one-sentence summary, and whether the reviewer would recommend the product.",
        user: `Product: ${r.product}\nRating: ${r.rating}/5\n\n${r.text}`
      }),
    output: Label
  }),
  Pipeline.to(Sink.jsonl("out/reviews.labeled.jsonl"))
)
