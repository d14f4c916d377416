import { NodeContext } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Pipeline, Prompt, Source } from "@sluice/core"
import { Effect, Schema } from "effect"
import * as Estimate from "../src/Estimate.js"

const Doc = Schema.Struct({ id: Schema.String, text: Schema.String })
const Summary = Schema.Struct({ summary: Schema.String })

describe("Estimate of a multi-stage pipeline", () => {
  it.effect("counts the first stage's requests after its fan-out, and names the later stages it cannot estimate", () =>
    Effect.gen(function* () {
      const docs = [
        { id: "a", text: "one. two. three" },
        { id: "b", text: "four" }
      ]
      const pipeline = Pipeline.make("chunks").pipe(
        Pipeline.from(Source.array<typeof Doc.Type>(docs), { key: (d) => d.id }),
        // One request per sentence: 3 + 1.
        Pipeline.flatMap((d) => d.text.split(". ")),
        Pipeline.batch("gist", { provider: "openai", model: "gpt-4o-mini", prompt: (s) => Prompt.chat({ user: s }) }),
        Pipeline.batch("summary", { provider: "openai", model: "gpt-4o-mini", prompt: (g) => Prompt.chat({ user: g }), output: Summary })
      )
      const e = yield* Estimate.estimate(pipeline, { outputTokens: 10 })
      expect(e.rows).toBe(4)
      expect(e.outputTokens).toBe(40)
      expect(e.laterStages).toEqual(["summary"])
      expect(e.inputTokens).toBeGreaterThan(0)
      expect(Estimate.render(e)).toContain("not estimated: the later stage summary")
    }).pipe(Effect.provide(NodeContext.layer)))
})
