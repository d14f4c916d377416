/**
 * `ProviderFilesDeleted` in the journal and the run's state: which collected shards still hold
 * files at the provider, from a journal written by this version or by one before it (which
 * never wrote the event). Deleting the files against the emulator is test/storage.e2e.test.ts.
 */
import { NodeContext } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { ProviderIdentity } from "@sluice/providers"
import { Effect, Stream } from "effect"
import { mkdtempSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as Journal from "../src/Journal.js"
import type { JournalEvent } from "../src/JournalEvent.js"
import * as RunState from "../src/RunState.js"
import { planned as plannedShard } from "./fixtures/events.js"

const planned = (shard: string) => plannedShard(shard, { requests: 2, sourceOffset: 2 })

const counts = { total: 2, succeeded: 2, failed: 0 }
const offsets = { results: 10, failures: 0, sink: 10 }

/** A shard's events from its plan to its collection: by batch, or online. */
const lifecycle = (shard: string, online = false): Array<JournalEvent> => [
  planned(shard),
  ...(online
    ? [
        { _tag: "OnlineStarted", shard, at: 1 } as const,
        { _tag: "OnlineCompleted", shard, counts } as const
      ]
    : [
        { _tag: "SubmitIntent", shard, submission: 1, at: 1 } as const,
        { _tag: "Staged", shard, submission: 1, inputRef: `file-${shard}` } as const,
        { _tag: "Created", shard, submission: 1, batchId: `batch-${shard}`, adopted: false } as const,
        { _tag: "Terminal", shard, batchId: `batch-${shard}`, status: "completed", rawStatus: "completed", counts, errors: [] } as const
      ]),
  { _tag: "Collected", shard, succeeded: 2, failed: {}, rescheduled: 0, retryShard: null, usage: { input: 1, output: 1, cached: 0 }, offsets }
]

const fold = (events: ReadonlyArray<JournalEvent>) => events.reduce(RunState.apply, RunState.empty())

describe("ProviderFilesDeleted", () => {
  it("a collected batch shard holds its files until the event; online shards never hold any", () => {
    const events = [...lifecycle("a"), ...lifecycle("b"), ...lifecycle("c", true)]
    const before = fold(events)
    expect(RunState.holdingFiles(before).map((s) => s.id)).toEqual(["a", "b"])

    const after = fold([
      ...events,
      { _tag: "ProviderFilesDeleted", shard: "a", files: ["file-a"], kept: ["out-a"] }
    ])
    expect(RunState.holdingFiles(after).map((s) => s.id)).toEqual(["b"])
    expect(after.shards.get("a")!.released).toEqual({ files: ["file-a"], kept: ["out-a"] })
    // The event changes nothing else: counts and offsets are the collection's.
    expect(after.succeeded).toBe(before.succeeded)
    expect(after.offsets).toEqual(before.offsets)
  })

  it("after a move to another provider (--rebind-provider), files left at the old one are not the run's to delete", () => {
    const identity = (baseUrl: string) => ProviderIdentity.make({ family: "openai", provider: "openai", baseUrl })
    const state = fold([
      ...lifecycle("a"),
      { _tag: "ProviderRebound", stage: "label", from: identity("https://a.example/v1"), to: identity("https://b.example/v1"), at: "2026-01-01T00:00:00Z" },
      ...lifecycle("b")
    ])
    expect(RunState.holdingFiles(state).map((s) => s.id)).toEqual(["b"])
  })

  it("a shard not collected yet holds nothing to delete (its files are still needed)", () => {
    const state = fold(lifecycle("a").slice(0, -1))
    expect(state.shards.get("a")!.phase).toBe("terminal")
    expect(RunState.holdingFiles(state)).toEqual([])
  })

  it.scoped("replays from the journal; a journal written before the event existed reads as holding files", () =>
    Effect.gen(function* () {
      const dir = mkdtempSync(join(tmpdir(), "sluice-files-"))
      const older = join(dir, "older.jsonl")
      writeFileSync(older, lifecycle("a").map((e) => JSON.stringify(e) + "\n").join(""))
      const olderState = yield* Journal.replay(older).pipe(Stream.runFold(RunState.empty(), RunState.apply))
      expect(RunState.holdingFiles(olderState).map((s) => s.id)).toEqual(["a"])

      const path = join(dir, "journal.jsonl")
      const journal = yield* Journal.open(path)
      for (const e of lifecycle("a")) yield* journal.append(e)
      yield* journal.append({ _tag: "ProviderFilesDeleted", shard: "a", files: [], kept: [] })
      const state = yield* Journal.replay(path).pipe(Stream.runFold(RunState.empty(), RunState.apply))
      expect(RunState.holdingFiles(state)).toEqual([])
      expect(state.shards.get("a")!.released).toEqual({ files: [], kept: [] })
    }).pipe(Effect.provide(NodeContext.layer))
  )
})
