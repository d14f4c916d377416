/**
 * Journals the property tests (Journal.property.test.ts) found mishandled, kept as plain
 * cases: replay and open disagreed on what a torn tail is, an event JSON cannot hold was
 * written anyway, and a stage name a journal record cannot hold as a key was allowed.
 */
import { NodeContext } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Pipeline, Prompt, Source } from "@sluice/core"
import { Effect, Schema, Stream } from "effect"
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as Journal from "../src/Journal.js"
import type { JournalEvent } from "../src/JournalEvent.js"
import { Offsets } from "../src/JournalEvent.js"
import { planned } from "./fixtures/events.js"


const tmp = () => join(mkdtempSync(join(tmpdir(), "sluice-journal-")), "journal.jsonl")

const shards = (path: string) =>
  Journal.replay(path).pipe(Stream.runCollect, Effect.map((c) => [...c].map((e) => (e as { shard: string }).shard)))

describe("Journal: torn tails", () => {
  it.scoped("a last line complete but for its newline is torn: replay leaves it out, as open cuts it off", () =>
    Effect.gen(function*() {
      const path = tmp()
      // The crash took only the newline: replay used to keep this event, and open to cut it,
      // so the resumed run's state held an event its journal did not.
      writeFileSync(path, JSON.stringify(planned("a")) + "\n" + JSON.stringify(planned("b")))
      expect(yield* shards(path)).toEqual(["a"])
      const journal = yield* Journal.open(path)
      yield* journal.append(planned("c"))
      expect(yield* shards(path)).toEqual(["a", "c"])
    }).pipe(Effect.provide(NodeContext.layer))
  )

  it.scoped("a complete last line that is not an event is an error naming it, not a line the next append buries", () =>
    Effect.gen(function*() {
      const path = tmp()
      // Used to replay as ["a"], stay in the file, and make every replay after the next
      // append fail: the run resumed once, then never again.
      writeFileSync(path, JSON.stringify(planned("a")) + "\n\u0000\n")
      const error = yield* Effect.flip(shards(path))
      expect(error._tag).toBe("JournalCorrupt")
      expect(error.message).toContain("line 2")
    }).pipe(Effect.provide(NodeContext.layer))
  )
})

describe("Journal: events JSON cannot hold", () => {
  it.scoped("an event with Infinity is refused, and nothing is written", () =>
    Effect.gen(function*() {
      const path = tmp()
      const journal = yield* Journal.open(path)
      yield* journal.append(planned("a"))
      const size = readFileSync(path).length
      // JSON writes Infinity as null: this line would have made the journal corrupt.
      const refused = yield* Effect.flip(journal.append({ _tag: "SubmitIntent", shard: "a", submission: 1, at: Infinity }))
      expect(refused._tag).toBe("JournalIOError")
      expect(refused.message).toContain("at is Infinity")
      // …and this one would have replayed as another event (sourceOffset null).
      const other = yield* Effect.flip(journal.append({ ...planned("b"), sourceOffset: Infinity } as JournalEvent))
      expect(other.message).toContain("sourceOffset is Infinity")
      expect(readFileSync(path).length).toBe(size)
      yield* journal.append({ _tag: "SubmitIntent", shard: "a", submission: 1, at: 5 })
      expect(yield* shards(path)).toEqual(["a", "a"])
    }).pipe(Effect.provide(NodeContext.layer))
  )
})

describe("Journal: per-stage records", () => {
  it("a stage named __proto__ is refused when the pipeline is defined: its inbox offset would not replay", () => {
    // Offsets.inbox is a Schema.Record keyed by stage name, and a Schema.Record drops an own
    // "__proto__" key: the journal would have forgotten how much of that stage's inbox was written.
    const inbox = Schema.decodeUnknownSync(Offsets)(JSON.parse('{"results":0,"failures":0,"sink":null,"inbox":{"__proto__":5}}')).inbox
    expect(Object.keys(inbox ?? {})).toEqual([])
    const first = Pipeline.make("p").pipe(
      Pipeline.from(Source.array([{ id: "a" }]), { key: (r) => r.id }),
      Pipeline.batch("first", { provider: "openai", model: "m", prompt: (r) => Prompt.chat({ user: r.id }) })
    )
    expect(() =>
      first.pipe(Pipeline.batch("__proto__", { provider: "openai", model: "m", prompt: (text) => Prompt.chat({ user: text }) }))
    ).toThrow(/may not be named __proto__/)
  })
})
