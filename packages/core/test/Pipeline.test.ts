import { Either, Schema } from "effect"
import { describe, expect, it } from "vitest"
import { Pipeline, Prompt, Sink, Source } from "../src/index.js"
import type { SinkRecord } from "../src/index.js"

const Review = Schema.Struct({ id: Schema.String, text: Schema.String })
const Label = Schema.Struct({ sentiment: Schema.Literal("positive", "negative"), score: Schema.Number })

const pipeline = Pipeline.make("typed").pipe(
  Pipeline.from(Source.array([{ id: "a", text: "great" }]), { key: (r) => r.id }),
  Pipeline.batch("label", {
    provider: "openai",
    model: "gpt-4o-mini",
    params: { temperature: 0 },
    prompt: (r) => Prompt.chat({ system: "Label it.", user: r.text }),
    output: Label
  }),
  Pipeline.to(Sink.jsonl("out/typed.jsonl"))
)

describe("Pipeline", () => {
  it("is typed end to end: the template sees the row, the sink receives { input, output }", () => {
    // Type-level checks: these lines do not compile if the types are wrong.
    const sink: Sink.Sink<SinkRecord<typeof Review.Type, typeof Label.Type>> = pipeline.sink!
    expect(sink.name).toContain("typed.jsonl")

    Pipeline.make("wrong-field").pipe(
      Pipeline.from(Source.array([{ id: "a", text: "t" }]), { key: (r) => r.id }),
      Pipeline.batch("label", {
        provider: "openai",
        model: "m",
        // @ts-expect-error `body` is not a field of the row
        prompt: (r) => Prompt.chat({ user: r.body }),
        output: Label
      })
    )

    Pipeline.make("wrong-key").pipe(
      // @ts-expect-error the key function must return a string
      Pipeline.from(Source.array([{ id: 1 }]), { key: (r) => r.id })
    )

    const wrongSink = Sink.jsonl<{ other: number }, typeof Label.Type>("x.jsonl")
    const labelled = Pipeline.make("wrong-sink").pipe(
      Pipeline.from(Source.array([{ id: "a", text: "t" }])),
      Pipeline.batch("label", { provider: "openai", model: "m", prompt: (r) => Prompt.chat({ user: r.text }), output: Label })
    )
    // @ts-expect-error the sink's input type does not match the source row
    labelled.pipe(Pipeline.to(wrongSink))
  })

  it("renders a strict structured-output request and decodes answers with the Schema", () => {
    const stage = pipeline.stages[0]!
    const request = stage.render({ id: "a", text: "great" })
    expect(request._tag).toBe("chat")
    if (request._tag !== "chat") return
    expect(request.messages).toEqual([
      { role: "system", content: "Label it." },
      { role: "user", content: "great" }
    ])
    expect(request.params).toEqual({ temperature: 0 })
    expect(request.output?.schema).toMatchObject({ type: "object", additionalProperties: false, required: ["sentiment", "score"] })
    expect(stage.decode(JSON.stringify({ sentiment: "positive", score: 0.5 }))).toEqual(Either.right({ sentiment: "positive", score: 0.5 }))
    const bad = stage.decode(JSON.stringify({ sentiment: "meh", score: 1 }))
    expect(Either.isLeft(bad) && bad.left).toContain("sentiment")
  })

  it("hashes the rendered request: same request, same hash; a changed prompt, a new one", () => {
    const stage = pipeline.stages[0]!
    const a = stage.requestHash(stage.render({ id: "a", text: "great" }))
    expect(stage.requestHash(stage.render({ id: "a", text: "great" }))).toBe(a)
    expect(stage.requestHash(stage.render({ id: "a", text: "awful" }))).not.toBe(a)
    const other = Pipeline.make("typed").pipe(
      Pipeline.from(Source.array([{ id: "a", text: "great" }]), { key: (r) => r.id }),
      Pipeline.batch("label", {
        provider: "openai",
        model: "gpt-4o-mini",
        params: { temperature: 1 },
        prompt: (r) => Prompt.chat({ system: "Label it.", user: r.text }),
        output: Label
      })
    )
    const changed = other.stages[0]!
    expect(changed.requestHash(changed.render({ id: "a", text: "great" }))).not.toBe(a)
    expect(Pipeline.fingerprint(other)).not.toBe(Pipeline.fingerprint(pipeline))
  })

  it("a stage without an output Schema yields the answer's text", () => {
    const p = Pipeline.make("text").pipe(
      Pipeline.from(Source.array(["x"])),
      Pipeline.batch("echo", { provider: "openai", model: "m", prompt: (s) => Prompt.chat({ user: s }) })
    )
    const stage = p.stages[0]!
    expect(stage.decode("hello")).toEqual(Either.right("hello"))
    expect(Pipeline.isPipeline(p)).toBe(true)
    expect(Pipeline.isPipeline({ name: "fake" })).toBe(false)
  })

  it("rejects stage names that cannot be part of a custom_id", () => {
    expect(() =>
      Pipeline.make("x").pipe(
        Pipeline.from(Source.array(["x"])),
        Pipeline.batch("has space", { provider: "openai", model: "m", prompt: (s) => Prompt.chat({ user: s }) })
      )
    ).toThrow(/stage name/)
  })
})
