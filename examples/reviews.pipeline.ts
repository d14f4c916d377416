/**
 * The demo: label 1,000 product reviews with a Schema-typed label through the OpenAI Batch
 * API (or the built-in emulator: `npm run demo` points OPENAI_BASE_URL at it).
 *
 *   npx sluice run examples/reviews.pipeline.ts
 */
import { Pipeline, Sink, Source } from "@sluice/core"
import { Label, labelPrompt, Review, reviewsFile } from "./reviews.js"

export default Pipeline.make("reviews").pipe(
  Pipeline.from(Source.jsonl(reviewsFile, Review), { key: (r) => r.id }),
  Pipeline.batch("label", {
    provider: "openai",
    model: "gpt-4o-mini",
    params: { temperature: 0 },
    prompt: labelPrompt,
    output: Label
  }),
  Pipeline.to(Sink.jsonl("out/reviews.labeled.jsonl"))
)
