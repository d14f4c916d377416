/**
 * The request the baselines send for each row: the one sluice renders for bench/pipeline.ts —
 * system + user message, temperature 0, strict structured output with the same JSON Schema.
 */
export const SYSTEM =
  "You label customer product reviews: overall sentiment, the topics it talks about, a one-sentence summary, and whether the reviewer would recommend the product."
export const responseFormat = {
  type: "json_schema",
  json_schema: {
    name: "label",
    strict: true,
    schema: {
      type: "object",
      properties: {
        sentiment: { type: "string", enum: ["positive", "negative", "neutral", "mixed"] },
        topics: {
          type: "array",
          items: { type: "string", enum: ["quality", "price", "shipping", "customer_service", "durability", "usability", "other"] }
        },
        summary: { type: "string" },
        wouldRecommend: { type: "boolean" }
      },
      required: ["sentiment", "topics", "summary", "wouldRecommend"],
      additionalProperties: false
    }
  }
}
