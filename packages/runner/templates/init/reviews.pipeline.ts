/**
 * A sluice pipeline: label each product review in data/reviews.jsonl with its sentiment and
 * the topics it mentions, through a provider's Batch API (half the price of real-time calls).
 *
 *   npm run sluice:emulator   against the built-in emulator: no key, no cost, made-up answers
 *   npm run sluice:estimate   what a real run would cost
 *   npm run sluice:run        for real (OPENAI_API_KEY); run it again to continue after a crash
 *
 * Each run writes out/reviews.labeled.jsonl: one line per review,
 * {"key", "custom_id", "input": <the review>, "output": <its label>}.
 */
import { Pipeline, Prompt, Sink, Source } from "@sluice/core"
import { Schema } from "effect"

/** A line of data/reviews.jsonl; a line that does not match stops the run before anything is sent. */
const Review = Schema.Struct({
  id: Schema.String,
  product: Schema.String,
  text: Schema.String
})

/** The answer: sent to the model as a strict JSON schema, and decoded with this Schema. */
const Label = Schema.Struct({
  sentiment: Schema.Literal("positive", "negative", "mixed"),
  topics: Schema.Array(Schema.String)
})

export default Pipeline.make("reviews").pipe(
  // The key names a row for good: the same review is never paid for twice.
  Pipeline.from(Source.jsonl("data/reviews.jsonl", Review), { key: (r) => r.id }),
  Pipeline.batch("label", {
    provider: "openai",
    model: "gpt-4o-mini",
    params: { temperature: 0 },
    prompt: (r) =>
      Prompt.chat({
        system: "You label product reviews: the sentiment, and the topics the review mentions as short lower-case nouns.",
        user: `Product: ${r.product}\nReview: ${r.text}`
      }),
    output: Label
  }),
  Pipeline.to(Sink.jsonl("out/reviews.labeled.jsonl"))
)
