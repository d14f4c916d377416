/**
 * The demo's labelling pipeline on the anthropic provider: only the provider and model differ
 * from examples/reviews.pipeline.ts, and the output has the same typed shape.
 *
 *   npm run example -- examples/providers/anthropic.pipeline.ts    (against the built-in emulator)
 */
import { Pipeline, Sink, Source } from "@sluice/core"
import { Label, labelPrompt, Review, reviewsFile } from "../reviews.js"

export default Pipeline.make("reviews-anthropic").pipe(
  Pipeline.from(Source.jsonl(reviewsFile, Review), { key: (r) => r.id }),
  Pipeline.batch("label", {
    provider: "anthropic",
    model: "claude-haiku-4-5",
    params: { temperature: 0, max_tokens: 400 },
    prompt: labelPrompt,
    output: Label
  }),
  Pipeline.to(Sink.jsonl("out/reviews.anthropic.jsonl"))
)
