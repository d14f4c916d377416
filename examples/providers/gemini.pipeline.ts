/**
 * The demo's labelling pipeline on the gemini provider: only the provider and model differ
 * from examples/reviews.pipeline.ts, and the output has the same typed shape.
 *
 *   npm run example -- examples/providers/gemini.pipeline.ts    (against the built-in emulator)
 */
import { Pipeline, Sink, Source } from "@sluice/core"
import { Label, labelPrompt, Review, reviewsFile } from "../reviews.js"

export default Pipeline.make("reviews-gemini").pipe(
  Pipeline.from(Source.jsonl(reviewsFile, Review), { key: (r) => r.id }),
  Pipeline.batch("label", {
    provider: "gemini",
    model: "gemini-2.5-flash",
    params: { temperature: 0, max_tokens: 400 },
    prompt: labelPrompt,
    output: Label
  }),
  Pipeline.to(Sink.jsonl("out/reviews.gemini.jsonl"))
)
