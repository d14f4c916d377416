import { Effect, Either, Schema } from "effect"
import { describe, expect, it } from "vitest"
import { Pipeline, Prompt, Sink, Source } from "../src/index.js"
import type { SinkRecord } from "../src/index.js"

const Doc = Schema.Struct({ id: Schema.String, text: Schema.String })
const Facts = Schema.Struct({ facts: Schema.Array(Schema.Struct({ topic: Schema.Literal("price", "quality"), fact: Schema.String })) })
const Summary = Schema.Struct({ summary: Schema.String })

const twoStage = Pipeline.make("facts").pipe(
  Pipeline.from(Source.array<typeof Doc.Type>([{ id: "d1", text: "cheap and sturdy" }]), { key: (d) => d.id }),
  Pipeline.batch("extract", { provider: "openai", model: "m", prompt: (d) => Prompt.chat({ user: d.text }), output: Facts }),
  Pipeline.flatMap(
    (r, doc) => [...new Set(r.facts.map((f) => f.topic))].map((topic) => ({ doc: doc.id, topic, facts: r.facts.filter((f) => f.topic === topic) })),
    { key: (g) => g.topic }
  ),
  Pipeline.batch("summarise", { provider: "openai", model: "m", prompt: (g) => Prompt.chat({ user: `${g.topic}: ${g.facts.map((f) => f.fact).join(", ")}` }), output: Summary }),
  Pipeline.map((s, g) => ({ doc: g.doc, topic: g.topic, summary: s.summary })),
  Pipeline.to(Sink.jsonl("out/facts.jsonl"))
)

/** The rows of a link without Effect transforms. */
const sync = (rows: Pipeline.LinkRows | Effect.Effect<Pipeline.LinkRows, unknown>): Pipeline.LinkRows => {
  if (Effect.isEffect(rows)) throw new Error("expected a synchronous link")
  return rows
}

describe("multi-stage pipelines", () => {
  it("are typed across stages: a transform sees the answer and the stage's input; the sink gets the source row", () => {
    const sink: Sink.Sink<SinkRecord<typeof Doc.Type, { doc: string; topic: "price" | "quality"; summary: string }>> = twoStage.sink!
    expect(sink.name).toContain("facts.jsonl")
    expect(twoStage.stages.map((s) => s.name)).toEqual(["extract", "summarise"])
    expect(twoStage.links.map((l) => l.length)).toEqual([0, 1, 1])

    Pipeline.make("wrong").pipe(
      Pipeline.from(Source.array<typeof Doc.Type>([])),
      Pipeline.batch("extract", { provider: "openai", model: "m", prompt: (d) => Prompt.chat({ user: d.text }), output: Facts }),
      // @ts-expect-error the answer has no field `text`
      Pipeline.map((r) => r.text)
    )
  })

  it("applies a link's transforms with derived keys: a fan-out appends `.<suffix>`, a map keeps the key", () => {
    const stage = twoStage.stages[0]!
    expect(stage.name).toBe("extract")
    const rows = sync(Pipeline.applyLink(twoStage.links[1]!, "d1", { facts: [{ topic: "price", fact: "cheap" }, { topic: "quality", fact: "sturdy" }, { topic: "price", fact: "on sale" }] }, { id: "d1", text: "…" }))
    expect(rows.map(([k]) => k)).toEqual(["d1.price", "d1.quality"])
    expect(rows[0]![1]).toEqual({ doc: "d1", topic: "price", facts: [{ topic: "price", fact: "cheap" }, { topic: "price", fact: "on sale" }] })
    const last = Pipeline.applyLink(twoStage.links[2]!, "d1.price", { summary: "cheap" }, { doc: "d1", topic: "price", facts: [] })
    expect(last).toEqual([["d1.price", { doc: "d1", topic: "price", summary: "cheap" }]])
    // Without a key function the index is the suffix; zero children drop the row.
    const byIndex = Pipeline.make("i").pipe(Pipeline.from(Source.array([1])), Pipeline.flatMap((n: number) => [n, n + 1]))
    expect(Pipeline.applyLink(byIndex.links[0]!, "k", 5, 5)).toEqual([["k.0", 5], ["k.1", 6]])
    const none = Pipeline.make("n").pipe(Pipeline.from(Source.array([1])), Pipeline.flatMap((_: number) => [] as Array<number>))
    expect(Pipeline.applyLink(none.links[0]!, "k", 5, 5)).toEqual([])
  })

  it("refuses a fan-out before the sink, and two stages of one name", () => {
    const p = Pipeline.make("f").pipe(
      Pipeline.from(Source.array([{ id: "a", text: "t" }])),
      Pipeline.batch("one", { provider: "openai", model: "m", prompt: (r) => Prompt.chat({ user: r.text }) }),
      Pipeline.flatMap((s: string) => s.split(" "))
    )
    expect(() => p.pipe(Pipeline.to(Sink.jsonl("x.jsonl")))).toThrow(/flatMap after the last batch stage/)
    expect(() =>
      Pipeline.make("dup").pipe(
        Pipeline.from(Source.array([{ id: "a", text: "t" }])),
        Pipeline.batch("one", { provider: "openai", model: "m", prompt: (r) => Prompt.chat({ user: r.text }) }),
        Pipeline.batch("one", { provider: "openai", model: "m", prompt: (s) => Prompt.chat({ user: s }) })
      )
    ).toThrow(/distinct names/)
  })

  it("fingerprints the transforms, and only pipelines that have some", () => {
    const base = Pipeline.make("fp").pipe(
      Pipeline.from(Source.array([{ id: "a", text: "t" }])),
      Pipeline.batch("one", { provider: "openai", model: "m", prompt: (r) => Prompt.chat({ user: r.text }) })
    )
    const mapped = base.pipe(Pipeline.map((s) => s.toUpperCase()))
    const mappedOther = base.pipe(Pipeline.map((s) => s.toLowerCase()))
    expect(Pipeline.fingerprint(mapped)).not.toBe(Pipeline.fingerprint(base))
    expect(Pipeline.fingerprint(mapped)).not.toBe(Pipeline.fingerprint(mappedOther))
    // The decode of a stage is unaffected by transforms after it.
    expect(Either.isRight(mapped.stages[0]!.decode("x"))).toBe(true)
  })

  it("runs Effect transforms: their rows, and their failures", async () => {
    const p = Pipeline.make("fx").pipe(
      Pipeline.from(Source.array([{ id: "a", text: "x y" }])),
      Pipeline.batch("one", { provider: "openai", model: "m", prompt: (r) => Prompt.chat({ user: r.text }) }),
      Pipeline.mapEffect((answer, row) => Effect.succeed(`${row.id}:${answer}`)),
      Pipeline.flatMapEffect((s: string) => (s.length > 3 ? Effect.succeed(s.split(":")) : Effect.fail("too short")), { key: (part) => part })
    )
    const ok = Pipeline.applyLink(p.links[1]!, "k", "hello", { id: "a", text: "x y" })
    expect(Effect.isEffect(ok)).toBe(true)
    expect(await Effect.runPromise(ok as Effect.Effect<Pipeline.LinkRows, unknown>)).toEqual([["k.a", "a"], ["k.hello", "hello"]])
    const failed = Pipeline.applyLink(p.links[1]!, "k", "", { id: "", text: "" }) as Effect.Effect<Pipeline.LinkRows, unknown>
    expect(await Effect.runPromise(Effect.flip(failed))).toBe("too short")
  })
})
