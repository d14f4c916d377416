/**
 * What the review-labelling examples share: the row and label Schemas, the data file and the
 * prompt. Each pipeline file only says which provider and model to use.
 */
import { Prompt } from "@sluice/core"
import { Schema } from "effect"

export const Review = Schema.Struct({
  id: Schema.String,
  product: Schema.String,
  rating: Schema.Number,
  text: Schema.String
})

export const Label = Schema.Struct({
  sentiment: Schema.Literal("positive", "negative", "neutral", "mixed"),
  topics: Schema.Array(Schema.Literal("quality", "price", "shipping", "customer_service", "durability", "usability", "sizing", "other")),
  summary: Schema.String,
  wouldRecommend: Schema.Boolean
})

/** examples/data/reviews.jsonl: 1,000 generated product reviews. */
export const reviewsFile = new URL("data/reviews.jsonl", import.meta.url).pathname

export const labelPrompt = (r: typeof Review.Type) =>
  Prompt.chat({
    system:
      "You label customer product reviews. Give the overall sentiment, the topics the review talks about, " +
      "a one-sentence summary, and whether the reviewer would recommend the product.",
    user: `Product: ${r.product}\nRating: ${r.rating}/5\n\n${r.text}`
  })
