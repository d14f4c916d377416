/**
 * Property tests of the journal: any valid journal (shards going through their lifecycle,
 * interleaved, with any text in their fields), cut by a crash at any byte with any bytes after
 * the cut, replays as the events of its complete lines; writing on from there (what a resumed
 * run does) gives the journal, and the state, of a run that never crashed. A corrupt line
 * that is not the torn tail is an error naming it. An event the journal could not read back
 * is refused, never written.
 */
import { NodeContext } from "@effect/platform-node"
import * as Path from "@effect/platform/Path"
import { Effect, Either, Exit, Schema, Stream } from "effect"
import fc from "fast-check"
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { anyString, checkAsync } from "../../../test/support/properties.js"
import * as Journal from "../src/Journal.js"
import { JournalEvent } from "../src/JournalEvent.js"
import { loadState as loadRunState } from "../src/JournalState.js"
import * as RunDir from "../src/RunDir.js"
import * as RunState from "../src/RunState.js"

/** loadState of the journal at `journal` (a directory without a manifest: the file store). */
const loadState = (journal: string) => Effect.flatMap(Path.Path, (path) => loadRunState({ ...RunDir.paths(dirname(journal), path), journal }))

// -----------------------------------------------------------------------------------------
// Arbitraries: shards going through their lifecycle
// -----------------------------------------------------------------------------------------

/** A finite number (JSON has no other); -0 is written as 0, so it is generated as 0. */
const num = fc.oneof(fc.nat({ max: 1_000_000 }), fc.double({ noNaN: true, noDefaultInfinity: true }).map((n) => n === 0 ? 0 : n))
const text = fc.oneof(fc.string({ maxLength: 12 }), anyString.filter((s) => s.length <= 24))
const counts = fc.record({ total: num, succeeded: num, failed: num })
const status = fc.constantFrom("validating", "in_progress", "finalizing", "completed", "failed", "expired", "cancelling", "cancelled", "unknown")
const failureClass = fc.constantFrom("retryable", "permanent", "expired", "cancelled", "missing", "parse")
const offsets = fc.record(
  {
    results: num,
    failures: num,
    sink: fc.oneof(fc.constant(null), num, fc.record({ offset: num }, { requiredKeys: [] }).map((c) => ({ offset: c.offset ?? 0 }))),
    // Keyed by stage name; a stage may not be named "__proto__" (a Schema.Record drops that key).
    inbox: fc.dictionary(text.filter((k) => k !== "__proto__"), num, { maxKeys: 2, noNullPrototype: true })
  },
  { requiredKeys: ["results", "failures", "sink"] }
)

type Event = JournalEvent

/** One shard's events, in lifecycle order, stopping at any phase (a run still under way). */
const shardLife = (shard: string, stage: string): fc.Arbitrary<Array<Event>> =>
  fc.record({
    planned: fc.record({
      provider: text,
      model: text,
      requests: num,
      bytes: num,
      sha256: fc.stringMatching(/^[0-9a-f]{64}$/),
      sourceOffset: fc.oneof(fc.constant(null), num),
      invalid: num,
      offsets: fc.oneof(fc.constant(null), offsets),
      inputTokens: fc.option(num, { nil: undefined })
    }),
    at: num,
    inputRef: text,
    batchId: text,
    adopted: fc.boolean(),
    rejected: fc.option(fc.record({ failure: failureClass, message: text }), { nil: undefined }),
    statuses: fc.array(fc.record({ status, rawStatus: text, counts, at: fc.option(num, { nil: undefined }) }), { maxLength: 3 }),
    terminal: fc.record({ status, rawStatus: text, counts, errors: fc.array(text, { maxLength: 2 }) }),
    collected: fc.record({
      succeeded: num,
      failed: fc.dictionary(failureClass, num, { maxKeys: 2, noNullPrototype: true }),
      rescheduled: num,
      retryShard: fc.oneof(fc.constant(null), text),
      usage: fc.record({ input: num, output: num, cached: num }),
      offsets
    }),
    /** How many of its events happened before the run ended (or crashed). */
    reached: fc.integer({ min: 1, max: 12 })
  }).map((s) => {
    const events: Array<Event> = [{
      _tag: "ShardPlanned",
      shard,
      stage,
      endpoint: "chat",
      attempt: 1,
      parent: null,
      ...s.planned,
      ...(s.planned.inputTokens === undefined ? {} : { inputTokens: s.planned.inputTokens })
    } as Event]
    events.push({ _tag: "SubmitIntent", shard, submission: 1, at: s.at })
    if (s.rejected !== undefined) {
      events.push({ _tag: "CreateRejected", shard, submission: 1, ...s.rejected })
      return events.slice(0, s.reached)
    }
    events.push({ _tag: "Staged", shard, submission: 1, inputRef: s.inputRef })
    events.push({ _tag: "Created", shard, submission: 1, batchId: s.batchId, adopted: s.adopted })
    for (const st of s.statuses) {
      events.push({ _tag: "StatusChanged", shard, batchId: s.batchId, ...st, ...(st.at === undefined ? {} : { at: st.at }) } as Event)
    }
    events.push({ _tag: "Terminal", shard, batchId: s.batchId, ...s.terminal })
    events.push({ _tag: "Collected", shard, ...s.collected })
    return events.slice(0, s.reached)
  })

/** Merges per-shard event lists in an order chosen by `picks`, keeping each list's order. */
const interleave = (lists: ReadonlyArray<ReadonlyArray<Event>>, picks: ReadonlyArray<number>): Array<Event> => {
  const queues = lists.map((l) => [...l])
  const out: Array<Event> = []
  let i = 0
  for (;;) {
    const open = queues.filter((q) => q.length > 0)
    if (open.length === 0) return out
    out.push(open[(picks[i++ % Math.max(1, picks.length)] ?? 0) % open.length]!.shift()!)
  }
}

/** A valid journal: a few shards (of one or two stages) interleaved, the plan completed at some point. */
const journal: fc.Arbitrary<Array<Event>> = fc
  .tuple(
    fc.array(fc.tuple(text, fc.constantFrom("label", "summarise")), { minLength: 1, maxLength: 4 }),
    fc.array(fc.nat(), { minLength: 1, maxLength: 40 }),
    fc.option(fc.record({ sourceOffset: num, invalid: num, offsets: fc.oneof(fc.constant(null), offsets) }), { nil: undefined })
  )
  .chain(([names, picks, complete]) =>
    fc.tuple(...names.map(([name, stage], i) => shardLife(`${stage}-${i}-${name}`, stage))).map((lists) => {
      const events = interleave(lists, picks)
      if (complete !== undefined) events.push({ _tag: "PlanComplete", ...complete })
      return events
    })
  )

// -----------------------------------------------------------------------------------------
// Files
// -----------------------------------------------------------------------------------------

// Real files; in memory where the OS has a tmpfs, so that hundreds of fsyncs cost nothing.
const root = mkdtempSync(join(existsSync("/dev/shm") ? "/dev/shm" : tmpdir(), "sluice-journal-props-"))
afterAll(() => rmSync(root, { recursive: true, force: true }))
let files = 0
const freshPath = () => join(root, `journal-${++files}.jsonl`)

const run = <A, E>(effect: Effect.Effect<A, E, any>) =>
  Effect.runPromiseExit(effect.pipe(Effect.scoped, Effect.provide(NodeContext.layer)) as Effect.Effect<A, E, never>)

const replay = (path: string) => Journal.replay(path).pipe(Stream.runCollect, Effect.map((c) => [...c]))

const append = (path: string, events: ReadonlyArray<Event>) =>
  Effect.gen(function*() {
    const writer = yield* Journal.open(path)
    for (const e of events) yield* writer.append(e)
  })

const fold = (events: ReadonlyArray<Event>) => events.reduce(RunState.apply, RunState.empty())

/** The journal's bytes for these events, written by the journal itself. */
const written = async (events: ReadonlyArray<Event>): Promise<{ path: string; bytes: Buffer }> => {
  const path = freshPath()
  const exit = await run(append(path, events))
  expect(Exit.isSuccess(exit), String(exit)).toBe(true)
  return { path, bytes: readFileSync(path) }
}

const decodeEvent = Schema.decodeUnknownEither(JournalEvent)

/** The journal's text with each line's time taken out (every line written by the journal ends with it). */
const withoutTimes = (bytes: Buffer): string => {
  const text = bytes.toString("utf8")
  const lines = text.split("\n").slice(0, -1)
  expect(lines.every((l) => /,"t":\d+\}$/.test(l)), "every line carries its time").toBe(true)
  return text.replace(/,"t":\d+\}\n/g, "}\n")
}

/** The event a line holds, if it holds one. */
const eventOf = (line: string): Event | undefined => {
  try {
    const decoded = decodeEvent(JSON.parse(line))
    return Either.isRight(decoded) ? decoded.right : undefined
  } catch {
    return undefined
  }
}

/** Bytes that end a crash: any, except a newline (a torn write never holds its own: it is the last byte written). */
const tornBytes = fc.uint8Array({ maxLength: 24 }).map((b) => b.filter((x) => x !== 10))

const newlines = (bytes: Uint8Array): number => bytes.reduce((n, b) => (b === 10 ? n + 1 : n), 0)

/** Where a crash cuts the file: any byte, or (as often) a byte or two around the end of a line. */
const cutPoint = fc.oneof(
  fc.record({ byte: fc.nat() }),
  fc.record({ line: fc.nat(), delta: fc.integer({ min: -2, max: 1 }) })
)

const cutAt = (bytes: Buffer, at: typeof cutPoint extends fc.Arbitrary<infer T> ? T : never): number => {
  if ("byte" in at) return at.byte % (bytes.length + 1)
  const ends = [...bytes.entries()].filter(([, b]) => b === 10).map(([i]) => i)
  const end = ends[at.line % ends.length] ?? 0
  return Math.min(bytes.length, Math.max(0, end + at.delta))
}

// -----------------------------------------------------------------------------------------
// Properties
// -----------------------------------------------------------------------------------------

describe("journal properties", () => {
  it("any valid journal replays as the events written, and folds to the same state", async () => {
    await checkAsync(
      fc.asyncProperty(journal, async (events) => {
        const { path } = await written(events)
        const replayed = await run(replay(path))
        expect(Exit.isSuccess(replayed) && replayed.value).toEqual(events)
        expect(fold(Exit.isSuccess(replayed) ? replayed.value : [])).toEqual(fold(events))
        // loadState folds the pieces of the file (Journal.replayChunks): the same state.
        const loaded = await run(loadState(path))
        expect(Exit.isSuccess(loaded) && loaded.value).toEqual(fold(events))
      }),
      25
    )
  })

  it("a crash at any byte, with any bytes after it: replay gives the complete lines; resuming gives the uncrashed journal", async () => {
    await checkAsync(
      fc.asyncProperty(journal, cutPoint, tornBytes, async (events, at, garbage) => {
        const { bytes } = await written(events)
        const cut = cutAt(bytes, at)
        const complete = newlines(bytes.subarray(0, cut))
        const path = freshPath()
        writeFileSync(path, Buffer.concat([bytes.subarray(0, cut), garbage]))

        const replayed = await run(replay(path))
        expect(Exit.isSuccess(replayed), String(replayed)).toBe(true)
        const before = Exit.isSuccess(replayed) ? replayed.value : []
        expect(before).toEqual(events.slice(0, complete))
        expect(fold(before)).toEqual(fold(events.slice(0, complete)))

        // A resumed run opens the journal and writes what the crash cut off.
        expect(Exit.isSuccess(await run(append(path, events.slice(complete))))).toBe(true)
        const resumed = await run(replay(path))
        expect(Exit.isSuccess(resumed) && resumed.value).toEqual(events)
        // The same bytes but for each line's time (`t`, when it was written: the resumed lines later).
        expect(withoutTimes(readFileSync(path))).toEqual(withoutTimes(bytes))
      }),
      80
    )
  })

  it("garbage that ends its line: an error naming the line, or a replay that a resumed run can write after", async () => {
    await checkAsync(
      fc.asyncProperty(journal, cutPoint, tornBytes, tornBytes, async (events, at, garbage, after) => {
        const { bytes } = await written(events)
        const cut = cutAt(bytes, at)
        const complete = newlines(bytes.subarray(0, cut))
        const lineStart = bytes.subarray(0, cut).lastIndexOf(10) + 1
        const line = new TextDecoder().decode(Buffer.concat([bytes.subarray(lineStart, cut), garbage]))
        const path = freshPath()
        writeFileSync(path, Buffer.concat([bytes.subarray(0, cut), garbage, Buffer.from("\n"), after]))

        const replayed = await run(replay(path))
        const event = eventOf(line)
        if (Exit.isFailure(replayed)) {
          // Only for a line that is neither blank nor an event, named by its number.
          expect(line.trim() === "" || event !== undefined).toBe(false)
          const error = JSON.stringify(replayed.cause)
          expect(error).toContain("JournalCorrupt")
          expect(error).toContain(`"line":${complete + 1}`)
          return
        }
        const before = [...events.slice(0, complete), ...(event === undefined ? [] : [event])]
        expect(replayed.value).toEqual(before)
        // What replay accepted, a resumed run can write after, and read back.
        const rest = events.slice(before.length)
        expect(Exit.isSuccess(await run(append(path, rest)))).toBe(true)
        const resumed = await run(replay(path))
        expect(Exit.isSuccess(resumed) && resumed.value, String(resumed)).toEqual([...before, ...rest])
      }),
      50
    )
  })

  it("a corrupt line before the last is an error naming it, whatever follows", async () => {
    await checkAsync(
      fc.asyncProperty(journal.filter((e) => e.length >= 2), fc.nat(), tornBytes, async (events, which, garbage) => {
        const { bytes } = await written(events)
        const lines = bytes.toString("utf8").split("\n").slice(0, -1)
        const bad = which % (lines.length - 1)
        const junk = `#${Buffer.from(garbage).toString("latin1").replace(/\r/g, "")}`
        lines[bad] = junk
        const path = freshPath()
        writeFileSync(path, lines.join("\n") + "\n")
        const replayed = await run(replay(path))
        expect(Exit.isFailure(replayed)).toBe(true)
        const error = Exit.isFailure(replayed) ? JSON.stringify(replayed.cause) : ""
        expect(error).toContain("JournalCorrupt")
        expect(error).toContain(`"line":${bad + 1}`)
        const loaded = await run(loadState(path))
        expect(Exit.isFailure(loaded) ? JSON.stringify(loaded.cause) : "loaded").toBe(error)
      }),
      25
    )
  })

  it("an event the journal could not read back (a number JSON cannot hold) is refused, never written", async () => {
    const wild = fc.constantFrom(Infinity, -Infinity, Number.NaN)
    await checkAsync(
      fc.asyncProperty(journal, fc.nat(), wild, async (events, which, value) => {
        // One number of one event becomes one JSON cannot write.
        const i = which % events.length
        const spoiled = JSON.parse(JSON.stringify(events[i])) as Record<string, unknown>
        const numeric = Object.keys(spoiled).filter((k) => typeof spoiled[k] === "number")
        if (numeric.length === 0) return
        spoiled[numeric[which % numeric.length]!] = value
        const path = freshPath()
        const first = await run(append(path, events.slice(0, i)))
        expect(Exit.isSuccess(first)).toBe(true)
        const size = readFileSync(path).length
        const refused = await run(append(path, [spoiled as unknown as Event]))
        expect(Exit.isFailure(refused)).toBe(true)
        // A typed failure naming the journal, not a defect; nothing was written.
        expect(Exit.isFailure(refused) && JSON.stringify(refused.cause)).toContain("JournalIOError")
        expect(readFileSync(path).length).toBe(size)
        const replayed = await run(replay(path))
        expect(Exit.isSuccess(replayed) && replayed.value).toEqual(events.slice(0, i))
      }),
      25
    )
  })
})
