/**
 * The demo's labelling pipeline on the anthropic provider: only the provider and model differ
 * from examples/reviews.pipeline.ts, and the output has the same typed shape.
 *
 *   npm run example:anthropic    (against the built-in emulator)
 */
import { Pipeline, Prompt, Sink, Source } from "@sluice/core"
import { Schema } from "effect"

const Review = Schema.Struct({ id: Schema.String, product: Schema.String, rating: Schema.Number, text: Schema.String })
const Label = Schema.Struct({
  sentiment: Schema.Literal("positive", "negative", "neutral", "mixed"),
  topics: Schema.Array(Schema.Literal("quality", "price", "shipping", "customer_service", "durability", "usability", "sizing", "other")),
  summary: Schema.String,
  wouldRecommend: Schema.Boolean
})

const here = new URL(".", import.meta.url).pathname

export default Pipeline.make("reviews-anthropic").pipe(
  Pipeline.from(Source.jsonl(`${here}../data/reviews.jsonl`, Review), { key: (r) => r.id }),
  Pipeline.batch("label", {
    provider: "anthropic",
    model: "claude-haiku-4-5",
    params: { temperature: 0, max_tokens: 400 },
    prompt: (r) =>
      Prompt.chat({
        system: "You label customer product reviews: sentiment, topics, a one-sentence summary, and whether the reviewer would recommend it.",
        user: `Product: ${r.product}\nRating: ${r.rating}/5\n\n${r.text}`
      }),
    output: Label
  }),
  Pipeline.to(Sink.jsonl("out/reviews.anthropic.jsonl"))
)
