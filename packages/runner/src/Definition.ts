/**
 * What `run` (and `sluice check`, `estimate`) refuse about a pipeline's definition before
 * anything is opened. Apart from Runner.ts so that those who check need not import the runner.
 */
import type { Pipeline } from "@sluice/core"
import { Effect, Schema } from "effect"

export class PipelineInvalid extends Schema.TaggedError<PipelineInvalid>()("PipelineInvalid", {
  description: Schema.String
}) {
  override get message(): string {
    return this.description
  }
}

/** What `run` refuses about a pipeline's definition before it opens anything (`sluice check` too). */
export const checkDefinition = (pipeline: Pipeline.Pipeline<any, any>): Effect.Effect<void, PipelineInvalid> =>
  Effect.gen(function* () {
    if (pipeline.source === undefined) return yield* new PipelineInvalid({ description: `pipeline "${pipeline.name}" has no source (use Pipeline.from)` })
    if (pipeline.stages.length === 0) {
      return yield* new PipelineInvalid({ description: `pipeline "${pipeline.name}" has no batch stage (use Pipeline.batch)` })
    }
    if (pipeline.links[pipeline.links.length - 1]!.some((t) => t.fansOut)) {
      return yield* new PipelineInvalid({
        description: `pipeline "${pipeline.name}": flatMap after the last batch stage would give one custom_id several outputs; use map`
      })
    }
  })
