import { NodeContext } from "@effect/platform-node"
import * as Path from "@effect/platform/Path"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Stream } from "effect"
import { appendFileSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import * as Journal from "../src/Journal.js"
import type { JournalEvent } from "../src/JournalEvent.js"
import { loadState as loadRunState } from "../src/JournalState.js"
import * as RunDir from "../src/RunDir.js"
import * as RunState from "../src/RunState.js"
import { planned } from "./fixtures/events.js"

/** loadState of the journal at `journal` (a directory without a manifest: the file store). */
const loadState = (journal: string) => Effect.flatMap(Path.Path, (path) => loadRunState({ ...RunDir.paths(dirname(journal), path), journal }))


const tmp = () => join(mkdtempSync(join(tmpdir(), "sluice-journal-")), "journal.jsonl")

const replayAll = (path: string) => Journal.replay(path).pipe(Stream.runCollect, Effect.map((c) => [...c]))

describe("Journal", () => {
  it.scoped("appends events that replay in order", () =>
    Effect.gen(function* () {
      const path = tmp()
      const journal = yield* Journal.open(path)
      yield* journal.append(planned("a"))
      yield* journal.append({ _tag: "SubmitIntent", shard: "a", submission: 1, at: 5 })
      const events = yield* replayAll(path)
      expect(events.map((e) => e._tag)).toEqual(["ShardPlanned", "SubmitIntent"])
      expect(readFileSync(path, "utf8").endsWith("\n")).toBe(true)
    }).pipe(Effect.provide(NodeContext.layer))
  )

  it.scoped("writes the time on every line, and replays journals without it (older runs) to the same events", () =>
    Effect.gen(function* () {
      const path = tmp()
      // A line from before lines carried their time.
      writeFileSync(path, JSON.stringify(planned("a")) + "\n")
      const before = Date.now()
      const journal = yield* Journal.open(path)
      yield* journal.append(planned("b"))
      const after = Date.now()
      const lines = readFileSync(path, "utf8").trim().split("\n").map((l) => JSON.parse(l) as { t?: number })
      expect(lines[0]!.t).toBeUndefined()
      expect(lines[1]!.t).toBeGreaterThanOrEqual(before)
      expect(lines[1]!.t).toBeLessThanOrEqual(after)
      // The time is not part of the event: both replay as the events appended.
      expect(yield* replayAll(path)).toEqual([planned("a"), planned("b")])
      const timed = yield* Journal.replayTimed(path).pipe(Stream.runCollect, Effect.map((c) => [...c]))
      expect(timed.map((l) => l.t)).toEqual([null, lines[1]!.t])
      expect(timed.map((l) => l.event)).toEqual([planned("a"), planned("b")])
    }).pipe(Effect.provide(NodeContext.layer))
  )

  it.scoped("ignores a torn last line, and cuts it off before appending", () =>
    Effect.gen(function* () {
      const path = tmp()
      writeFileSync(path, JSON.stringify(planned("a")) + "\n" + '{"_tag":"SubmitIntent","sha')
      expect((yield* replayAll(path)).length).toBe(1)
      const journal = yield* Journal.open(path)
      yield* journal.append(planned("b"))
      const events = yield* replayAll(path)
      expect(events.map((e) => (e as { shard: string }).shard)).toEqual(["a", "b"])
    }).pipe(Effect.provide(NodeContext.layer))
  )

  it.effect("fails on a corrupt line in the middle, naming it", () =>
    Effect.gen(function* () {
      const path = tmp()
      writeFileSync(path, JSON.stringify(planned("a")) + "\n" + "garbage\n")
      appendFileSync(path, JSON.stringify(planned("b")) + "\n")
      const error = yield* Effect.flip(replayAll(path))
      expect(error._tag).toBe("JournalCorrupt")
      expect(error.message).toContain("line 2")
    }).pipe(Effect.provide(NodeContext.layer))
  )

  it.effect("rejects a well-formed JSON line that is not an event", () =>
    Effect.gen(function* () {
      const path = tmp()
      writeFileSync(path, JSON.stringify({ _tag: "Nope" }) + "\n" + JSON.stringify(planned("a")) + "\n")
      const error = yield* Effect.flip(replayAll(path))
      expect(error.message).toContain("line 1")
    }).pipe(Effect.provide(NodeContext.layer))
  )

  it.effect("a missing journal replays as empty", () =>
    Effect.gen(function* () {
      expect(yield* replayAll(join(tmpdir(), "does-not-exist-sluice.jsonl"))).toEqual([])
    }).pipe(Effect.provide(NodeContext.layer))
  )

  it.effect("a journal of many read pieces: loadState folds them to the state of the events one by one; a corrupt line far in is named, the events before it stream", () =>
    Effect.gen(function* () {
      const path = tmp()
      // ~330 bytes a line: 3,000 lines are ~1 MB, many of the file stream's pieces, lines cut across them.
      const events = Array.from({ length: 3000 }, (_, i) => planned(`s-${i}`))
      writeFileSync(path, events.map((e) => JSON.stringify(e)).join("\n") + "\n")
      expect(yield* loadState(path)).toEqual(events.reduce(RunState.apply, RunState.empty()))
      expect(yield* replayAll(path)).toEqual(events)
      writeFileSync(path, [...events.slice(0, 2500).map((e) => JSON.stringify(e)), "{torn", JSON.stringify(planned("after"))].join("\n") + "\n")
      const before: Array<JournalEvent> = []
      const error = yield* Effect.flip(Journal.replay(path).pipe(Stream.runForEach((e) => Effect.sync(() => before.push(e)))))
      expect(error.message).toContain("line 2501")
      expect(before).toEqual(events.slice(0, 2500))
      expect((yield* Effect.flip(loadState(path))).message).toBe(error.message)
    }).pipe(Effect.provide(NodeContext.layer))
  )
})
