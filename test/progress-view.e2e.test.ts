/**
 * The terminal view (ProgressView.ts, ProgressMeter.ts), drawn from the run state of a real
 * CLI run against the emulator: 1,000 rows in 200 batches of 5, submitted with `--detach`
 * while the emulator's clock stands still (every batch stays in flight), its journal replayed
 * whole or in part. The batches' polled counts and the clock are the test's: each snapshot's
 * time is passed in, so rates and ETAs are exact. The same run, resumed to its end in a pipe,
 * shows the plain output: whole lines, no escape codes.
 */
import type { BatchInfo } from "@sluice/providers"
import { Duration, Effect, Fiber, Schema, TestContext } from "effect"
import { readFile } from "node:fs/promises"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { JournalEvent } from "../packages/runner/src/JournalEvent.js"
import * as Pricing from "../packages/runner/src/Pricing.js"
import * as Progress from "../packages/runner/src/Progress.js"
import * as ProgressMeter from "../packages/runner/src/ProgressMeter.js"
import * as ProgressView from "../packages/runner/src/ProgressView.js"
import * as Runner from "../packages/runner/src/Runner.js"
import type { RunWaits } from "../packages/runner/src/Runner.js"
import * as RunState from "../packages/runner/src/RunState.js"
import { money } from "../packages/runner/src/internal/format.js"
import * as StderrLines from "../packages/runner/src/internal/stderrLines.js"
import {
  describeResult,
  emulatorEnv,
  fastRunFlags,
  makeProject,
  runCli,
  startTestEmulator,
  stripAnsi,
  writePipeline,
  writeRows
} from "./support/cli.js"
import type { CliResult, TempProject, TestEmulator } from "./support/cli.js"
import { labelPipeline, liveLayer, makeReviews, startApiEmulator, tempDirs } from "./support/api.js"
import { waitFor } from "./support/runs.js"

const SLOW = { timeout: 240_000 }
const decode = Schema.decodeUnknownSync(JournalEvent)

let project: TempProject
let emulator: TestEmulator
let clock = Date.now()
let events: Array<JournalEvent>
let detached: CliResult
const runDir = () => project.path("runs/view")

const replay = (upTo = events.length): RunState.RunState => events.slice(0, upTo).reduce(RunState.apply, RunState.empty())
const readEvents = async (): Promise<Array<JournalEvent>> =>
  (await readFile(project.path("runs/view/journal.jsonl"), "utf8")).split("\n").filter((l) => l !== "").map((l) => decode(JSON.parse(l)))

/** Polled statuses: each batch `in_progress` with `done(i)` of its rows, created at `createdAt(i)` (unix ms). */
const polls = (state: RunState.RunState, done: (i: number) => number, createdAt: (i: number) => number): Map<string, BatchInfo> => {
  const out = new Map<string, BatchInfo>()
  ;[...state.shards.values()].forEach((s, i) => {
    out.set(s.id, {
      id: s.batchId!,
      status: "in_progress",
      rawStatus: "in_progress",
      counts: { total: s.requests, succeeded: done(i), failed: 0 },
      inputRef: s.inputRef,
      outputFileId: null,
      errorFileId: null,
      metadata: {},
      createdAt: createdAt(i) / 1000,
      errors: []
    })
  })
  return out
}

const snapshot = (state: RunState.RunState, polled: ReadonlyMap<string, BatchInfo>, now: number, waits?: RunWaits): ProgressMeter.Snapshot => ({
  state,
  polled,
  answered: new Map(),
  waits,
  now
})

const plain = { rows: 24, columns: 100, color: false }

beforeAll(async () => {
  // The emulator's clock stands still until the test moves it: every batch stays validating.
  emulator = await startTestEmulator({ clock: () => clock })
  project = await makeProject("sluice-view-")
  await writeRows(project, "data/rows.jsonl", 1000)
  await writePipeline(project, "p.pipeline.ts", { name: "view" })
  detached = await runCli(["run", "p.pipeline.ts", "--run-dir", "runs/view", "--detach", "--concurrency", "200", ...fastRunFlags(5)], {
    cwd: project.dir,
    env: emulatorEnv(emulator.url)
  })
  events = await readEvents()
}, 240_000)

afterAll(async () => {
  await emulator?.close()
  await project?.cleanup()
})

describe("the terminal view", SLOW, () => {
  it("the detached run left 200 batches in flight", () => {
    expect(detached.stderr.includes("error"), describeResult(detached)).toBe(false)
    const state = replay()
    expect(state.shards.size).toBe(200)
    expect([...state.shards.values()].filter((s) => s.phase === "created" && s.batchId !== null)).toHaveLength(200)
  })

  it("fits 200 batches in the rows given: the slowest five, then +N more by status", () => {
    const state = replay()
    const t = Date.now()
    // Batch i has done i % 5 of its 5 rows; the earlier its index, the longer it has run.
    const polled = polls(state, (i) => i % 5, (i) => t - 600_000 + i * 1000)
    const meter = ProgressMeter.emptyMeter()
    const snap = snapshot(state, polled, t)
    ProgressMeter.observe(meter, snap)
    const lines = ProgressView.render(snap, meter, Pricing.builtin, plain)
    expect(lines.length).toBeLessThanOrEqual(23)
    expect(lines[0]).toBe("sluice  rows 0 ok · 0 failed · 1,000 pending  │  200 shards: 200 in flight, 0 collected")
    expect(lines[1]).toMatch(/^label /)
    // Least complete first (0 of 5 done: batches 0, 5, 10, …), the longest running among them first.
    const ids = [...state.shards.keys()]
    expect(lines.slice(2, 7).map((l) => l.trim().split(" ")[0])).toEqual([0, 5, 10, 15, 20].map((i) => ids[i]))
    expect(lines[2]).toMatch(/^ {2}label-00001 in_progress 0\/5 · 10m00s batch_\w+$/)
    expect(lines[7]).toBe("  +195 more (195 in_progress)")
    expect(lines).toHaveLength(8)

    for (const rows of [10, 4, 2]) {
      const small = ProgressView.render(snap, meter, Pricing.builtin, { ...plain, rows })
      expect(small.length).toBeLessThanOrEqual(rows - 1)
      expect(small[0]).toMatch(/^sluice {2}rows/)
      if (rows === 10) expect(small.at(-1)).toBe("  +195 more (195 in_progress)")
    }
  })

  it("the bar, rows per second over the last minute and the ETA from the batches' own pace, from snapshots at known times", () => {
    const state = replay()
    const meter = ProgressMeter.emptyMeter()
    const t0 = 1_800_000_000_000
    const at = (seconds: number, done: (i: number) => number) => {
      const snap = snapshot(state, polls(state, done, () => t0), t0 + seconds * 1000)
      ProgressMeter.observe(meter, snap)
      return { snap, lines: ProgressView.render(snap, meter, Pricing.builtin, plain) }
    }
    // Width 99 leaves a bar of 19 cells.
    const barOf = (full: number) => "█".repeat(full) + "░".repeat(19 - full)
    const first = at(0, () => 0)
    expect(first.lines[1]).toBe(`label ${barOf(0)}   0% 0/1,000 rows · — rows/s · ETA — · $0.00`)

    // A minute in, every batch has 2 of its 5 rows: 400 rows in 60 s; each batch needs 90 s more.
    const minute = at(60, () => 2)
    // Nothing collected yet: answers estimated from the input tokens counted at planning and 100 output tokens each.
    const estimate = (done: number, rows: number) =>
      Pricing.cost("gpt-4o-mini", {
        input: [...state.shards.values()].reduce((a, s) => a + Math.round(((s.inputTokens ?? 0) * done) / s.requests), 0),
        output: rows * 100,
        cached: 0
      })!.batch
    expect(minute.lines[1]).toBe(`label ${barOf(7)}  40% 400/1,000 rows · 6.7 rows/s · ETA 1m30s · ~${money(estimate(2, 400))} (est.)`)

    // Two minutes of nothing: the last minute saw no rows (since the start it would be 2.2/s);
    // the batches' own pace over ten minutes is now 2 rows in 180 s, 270 s for the other 3.
    expect(at(180, () => 2).lines[1]).toMatch(/ 400\/1,000 rows · 0 rows\/s · ETA 4m30s · /)

    // Then half the batches finish: 300 rows in the last minute; the others need 3 × 120 s.
    const later = at(240, (i) => (i % 2 === 0 ? 5 : 2))
    expect(later.lines[1]).toMatch(new RegExp(`^label ${barOf(13)}  70% 700/1,000 rows · 5\\.0 rows/s · ETA 6m00s · ~\\$`))
    // The finished ones are no longer the slowest: the list starts with the unfinished.
    expect(later.lines[2]).toMatch(/^ {2}label-00002 in_progress 2\/5 · 4m00s · ETA 6m00s batch_\w+$/)
  })

  it("says so while planning goes on: rows so far, no ETA", () => {
    const planComplete = events.findIndex((e) => e._tag === "PlanComplete")
    const tenth = events.findIndex((e, i) => e._tag === "ShardPlanned" && events.slice(0, i).filter((x) => x._tag === "ShardPlanned").length === 9)
    expect(tenth).toBeGreaterThan(0)
    expect(tenth).toBeLessThan(planComplete)
    const state = replay(tenth + 1)
    const meter = ProgressMeter.emptyMeter()
    const snap = snapshot(state, new Map(), 1_800_000_000_000)
    ProgressMeter.observe(meter, snap)
    const stage = ProgressView.render(snap, meter, Pricing.builtin, plain)[1]!
    expect(stage).toMatch(/^label ░+ {6}0\/50\+ rows · — rows\/s · planning… · \$0\.00$/)
  })

  it("says in one line what the run waits on: batch slots, an output file, an online limiter's pause", () => {
    // The journal up to its first batch created, without the other shards' submit intents:
    // one batch in flight, the other 199 queued (as with --concurrency 1).
    const firstCreated = events.findIndex((e) => e._tag === "Created")
    const creator = (events[firstCreated] as { shard: string }).shard
    const state = events
      .slice(0, firstCreated + 1)
      .filter((e) => !((e._tag === "SubmitIntent" || e._tag === "Staged") && e.shard !== creator))
      .reduce(RunState.apply, RunState.empty())
    const flying = [...state.shards.values()].filter((s) => s.phase === "intent" || s.phase === "staged" || s.phase === "created")
    const queued = [...state.shards.values()].filter((s) => s.phase === "planned").length
    expect(flying).toHaveLength(1)
    expect(queued).toBe(199)
    const created = flying.find((s) => s.batchId !== null)!
    RunState.apply(state, {
      _tag: "StatusChanged",
      shard: created.id,
      batchId: created.batchId!,
      status: "completed",
      rawStatus: "completed",
      counts: { total: 5, succeeded: 5, failed: 0 },
      awaitingOutput: true
    })
    const now = 1_800_000_000_000
    const waits: RunWaits = {
      concurrency: 1,
      onlineQueued: 0,
      heldForPlanning: 0,
      overBudget: 0,
      overOnlineBudget: 0,
      limiters: [{ provider: "openai", pausedUntil: now + 12_000, window: 8, cap: 8, inFlight: 8 }]
    }
    const snap = snapshot(state, new Map(), now, waits)
    expect(ProgressView.waitLine(snap)).toBe(
      `waiting: 199 shards for a batch slot (concurrency 1) · openai paused 12s (rate limited) · 1 batch for its output file`
    )
    const lines = ProgressView.render(snap, ProgressMeter.emptyMeter(), Pricing.builtin, { ...plain, columns: 200 })
    expect(lines).toContain(ProgressView.waitLine(snap))
    // Narrower, it is cut like any line, never wrapped.
    const narrow = ProgressView.render(snap, ProgressMeter.emptyMeter(), Pricing.builtin, plain)
    expect(narrow).toContain(`${ProgressView.waitLine(snap)!.slice(0, 98)}…`)
    expect(lines.some((l) => /^ {2}label-\d+ +waiting for its output file 5\/5/.test(l))).toBe(true)
  })

  it("shards waiting for enqueued-token headroom are said so, not counted as waiting for a slot", () => {
    // The journal up to its first batch created, the other shards not yet submitted (as with --concurrency 1).
    const firstCreated = events.findIndex((e) => e._tag === "Created")
    const creator = (events[firstCreated] as { shard: string }).shard
    const state = events
      .slice(0, firstCreated + 1)
      .filter((e) => !((e._tag === "SubmitIntent" || e._tag === "Staged") && e.shard !== creator))
      .reduce(RunState.apply, RunState.empty())
    const now = 1_800_000_000_000
    const queued = [...state.shards.values()].filter((s) => s.phase === "planned").length
    expect(queued).toBe(199)
    const waits: RunWaits = { concurrency: 1, onlineQueued: 0, heldForPlanning: 0, overBudget: 0, overOnlineBudget: 0, enqueuedTokens: 3, limiters: [] }
    expect(ProgressView.waitLine(snapshot(state, new Map(), now, waits))).toBe(
      `waiting: ${queued - 3} shards for a batch slot (concurrency 1) · 3 shards for enqueued-token headroom`
    )
  })

  it("a deadline: batches have until it, then those recalled are being cancelled", () => {
    const state = replay()
    const now = 1_800_000_000_000
    RunState.apply(state, { _tag: "DeadlineSet", deadline: now + 12 * 60_000, given: "12m" })
    expect(ProgressView.waitLine(snapshot(state, new Map(), now))).toBe("waiting: batches have until the deadline, in 12m00s; then their unanswered rows go online")
    const [a, b] = [...state.shards.values()]
    for (const s of [a!, b!]) RunState.apply(state, { _tag: "BatchRecalled", shard: s.id, batchId: s.batchId!, at: now + 12 * 60_000 })
    expect(ProgressView.waitLine(snapshot(state, new Map(), now + 12 * 60_000))).toBe("waiting: 2 batches being cancelled at the deadline")
  })

  it("cuts every line to the terminal's width, colours or not, and colours only where asked", () => {
    const state = replay()
    const t = Date.now()
    const snap = snapshot(state, polls(state, (i) => i % 5, (i) => t - 600_000 + i * 1000), t)
    const meter = ProgressMeter.emptyMeter()
    ProgressMeter.observe(meter, snap)
    for (const color of [false, true]) {
      const lines = ProgressView.render(snap, meter, Pricing.builtin, { rows: 24, columns: 40, color })
      for (const line of lines) expect([...stripAnsi(line)].length).toBeLessThanOrEqual(39)
      expect(lines.filter((l) => stripAnsi(l).endsWith("…")).length).toBeGreaterThan(3)
      expect(lines.some((l) => l.includes("\x1b["))).toBe(color)
    }
    expect(ProgressView.fit(["abc", ["defgh", "red"]], 5, false)).toBe("abcd…")
    expect(ProgressView.fit(["abc", ["defgh", "red"]], 5, true)).toBe("abc\x1b[31md\x1b[39m…")
    expect(ProgressView.fit(["abc", ["de", "red"]], 5, false)).toBe("abcde")
  })

  it("NO_COLOR: colour on a terminal only, and never with NO_COLOR set (nor TERM=dumb, FORCE_COLOR=0)", () => {
    expect(ProgressView.useColor(true, {})).toBe(true)
    expect(ProgressView.useColor(true, { NO_COLOR: "1" })).toBe(false)
    expect(ProgressView.useColor(true, { NO_COLOR: "" })).toBe(true) // no-color.org: set and not empty
    expect(ProgressView.useColor(true, { TERM: "dumb" })).toBe(false)
    expect(ProgressView.useColor(true, { FORCE_COLOR: "0" })).toBe(false)
    // A pipe never: its lines are for logs.
    expect(ProgressView.useColor(false, {})).toBe(false)
    expect(ProgressView.useColor(false, { FORCE_COLOR: "1" })).toBe(false)
  })

  it("on a terminal, Progress draws the view with colour, and without it under NO_COLOR", async () => {
    const state = replay()
    const drawn = async (env: NodeJS.ProcessEnv) => {
      let out = ""
      const stream = { isTTY: true, rows: 24, columns: 100, write: (chunk: string) => ((out += chunk), true) } as unknown as NodeJS.WriteStream
      const progress = Progress.make({ stream, env, now: () => 1_800_000_000_000 })
      progress.observer.started?.(state)
      // The first frame is drawn at once; the next waits on the (test) clock, which stands still.
      await Effect.runPromise(
        Effect.gen(function* () {
          const fiber = yield* Effect.fork(progress.render)
          yield* Effect.yieldNow()
          yield* Fiber.interrupt(fiber)
        }).pipe(Effect.provide(TestContext.TestContext))
      )
      return out
    }
    const coloured = await drawn({})
    expect(coloured).toMatch(/\x1b\[1msluice\x1b\[22m/)
    const bare = await drawn({ NO_COLOR: "1" })
    expect(bare).not.toMatch(/\x1b\[[\d;]*m/)
    expect(bare.split("\n")[0]).toBe("sluice  rows 0 ok · 0 failed · 1,000 pending  │  200 shards: 200 in flight, 0 collected")
    expect(stripAnsi(coloured)).toBe(bare)
  })

  it("on a terminal, a warning said while the view is on screen lands above it and stays; the view is drawn whole under it", async () => {
    const state = replay()
    let out = ""
    const stream = { isTTY: true, rows: 24, columns: 100, write: (chunk: string) => ((out += chunk), true) } as unknown as NodeJS.WriteStream
    const progress = Progress.make({ stream, env: { NO_COLOR: "1" }, now: () => 1_800_000_000_000 })
    progress.observer.started?.(state)
    const viewLines = ProgressView.render(
      { state, polled: new Map(), answered: new Map(), waits: undefined, now: 1_800_000_000_000 },
      ProgressMeter.emptyMeter(),
      Pricing.builtin,
      { rows: 24, columns: 100, color: false }
    )
    await Effect.runPromise(
      Effect.gen(function* () {
        const fiber = yield* Effect.fork(progress.render)
        yield* Effect.yieldNow()
        StderrLines.say("sluice: warn: the first")
        StderrLines.say("sluice: warn: the second")
        yield* Fiber.interrupt(fiber)
      }).pipe(Effect.provide(TestContext.TestContext))
    )
    // What a terminal shows after these writes: text, newlines, "n lines up" (ESC[nF), "erase below" (ESC[J).
    const screen: Array<string> = []
    let row = 0
    for (const part of out.split(/(\x1b\[\d*F|\x1b\[J|\n)/)) {
      const up = /^\x1b\[(\d*)F$/.exec(part)
      if (up !== null) row = Math.max(0, row - Number(up[1] || 1))
      else if (part === "\x1b[J") screen.length = row
      else if (part === "\n") row++
      else if (part !== "") screen[row] = (screen[row] ?? "") + part
    }
    expect(screen.slice(0, row)).toEqual(["sluice: warn: the first", "sluice: warn: the second", ...viewLines])
    // The view gone, lines go to stderr again, not into the view's stream.
    const before = out
    const written: Array<string> = []
    const original = process.stderr.write.bind(process.stderr)
    process.stderr.write = ((chunk: string) => (written.push(chunk), true)) as typeof process.stderr.write
    try {
      StderrLines.say("sluice: warn: after")
    } finally {
      process.stderr.write = original
    }
    expect(written).toEqual(["sluice: warn: after\n"])
    expect(out).toBe(before)
  })

  it("in a pipe: whole lines without escape codes, rows/s and spend on the status line; at the end, the spend as the run priced it", async () => {
    for (const r of [detached]) expect(r.stderr).not.toContain("\x1b")
    clock += 3600_000 // the batches run and complete
    const resumed = await runCli(["resume", "runs/view", "--poll-interval", "0.05"], { cwd: project.dir, env: emulatorEnv(emulator.url) })
    expect(resumed.code, describeResult(resumed)).toBe(0)
    expect(resumed.stderr).not.toContain("\x1b")
    const lines = resumed.stderr.split("\n").filter((l) => l !== "")
    // (A heartbeat, a minute without change on a slow machine, is the same line marked so.)
    const status = lines.filter((l) => / · rows \d/.test(l)).map((l) => l.replace(/ · unchanged for \d+ min$/, ""))
    expect(status.length).toBeGreaterThan(0)
    for (const l of status) expect(l).toMatch(/^sluice: 1,000 rows planned · 200 shards, .* · rows [\d,]+ ok, \d+ failed, [\d,]+ pending · label ([\d.,]+ rows\/s, )?~?\$[\d.]+( \(est\.\))?$/)
    // One status line per change at most: none for polls that changed nothing.
    expect(status.length).toBeLessThanOrEqual(lines.filter((l) => / collected: | completed /.test(l)).length * 2 + 2)
    expect(new Set(lines.filter((l) => / · rows \d/.test(l))).size).toBe(status.length)

    // Every batch collected: the spend is what the run recorded, priced at batch prices, not estimated.
    const state = RunState.empty()
    for (const e of await readEvents()) RunState.apply(state, e)
    const meter = ProgressMeter.emptyMeter()
    const snap = snapshot(state, new Map(), Date.now())
    ProgressMeter.observe(meter, snap)
    const status2 = await runCli(["status", "runs/view", "--json", "--no-refresh"], { cwd: project.dir })
    const cost = JSON.parse(status2.stdout).cost.batch as number
    const stage = ProgressView.render(snap, meter, Pricing.builtin, plain)[1]!
    expect(stage).toBe(`label ${"█".repeat(19)} 100% 1,000/1,000 rows · — rows/s · done · ${money(cost)}`)
    expect(status.at(-1)).toMatch(/ · label [\d.,]+ rows\/s, \$[\d.]+$/)
    expect(status.at(-1)!.endsWith(`, ${money(cost)}`)).toBe(true)

    // Half-way through collection, answers in flight are estimated at the usage per answer of the collected ones.
    const all = await readEvents()
    const half = all.findIndex((e, i) => e._tag === "Collected" && all.slice(0, i).filter((x) => x._tag === "Collected").length === 99)
    const mid = all.slice(0, half + 1).reduce(RunState.apply, RunState.empty())
    const open = [...mid.shards.values()].filter((s) => s.phase !== "collected")
    const collected = [...mid.shards.values()].filter((s) => s.collected !== null)
    expect(collected).toHaveLength(100)
    const sum = (f: (s: RunState.ShardState) => number) => collected.reduce((a, s) => a + f(s), 0)
    const answers = sum((s) => s.collected!.succeeded + Object.values(s.collected!.failed).reduce((a, b) => a + b, 0))
    const perAnswer = { input: sum((s) => s.collected!.usage.input) / answers, output: sum((s) => s.collected!.usage.output) / answers }
    const known = Pricing.cost("gpt-4o-mini", { input: sum((s) => s.collected!.usage.input), output: sum((s) => s.collected!.usage.output), cached: sum((s) => s.collected!.usage.cached) })!.batch
    // Every open batch has all of its rows answered (as its last poll said).
    const midPolls = polls(mid, () => 5, () => Date.now())
    for (const s of open) midPolls.set(s.id, { ...midPolls.get(s.id)!, counts: { total: s.requests, succeeded: s.requests, failed: 0 } })
    const inFlightCost = open.reduce(
      (a, s) => a + Pricing.cost("gpt-4o-mini", { input: Math.round(perAnswer.input * s.requests), output: Math.round(perAnswer.output * s.requests), cached: 0 })!.batch,
      0
    )
    const midSnap = snapshot(mid, midPolls, Date.now())
    const midLine = ProgressView.render(midSnap, ProgressMeter.emptyMeter(), Pricing.builtin, plain)[1]!
    expect(midLine.endsWith(` · ~${money(known + inFlightCost)} (est.)`), midLine).toBe(true)
    expect(runDir()).toContain("runs/view")
  })
})

describe("what the run says it waits on (RunObserver.waits)", SLOW, () => {
  it("a run at --concurrency 1 with its batch held: the other shards wait for a batch slot", async () => {
    const frozen = Date.now()
    const held = await startApiEmulator({ clock: () => frozen })
    const dirs = tempDirs()
    try {
      const pipeline = labelPipeline({ name: "waits", source: { rows: makeReviews(10, "w") } })
      let probe: (() => RunWaits) | undefined
      let state: RunState.RunState | undefined
      const fiber = Effect.runFork(
        Runner.run(pipeline, {
          runDir: join(await dirs.make(), "run"),
          shardSize: 2,
          concurrency: 1,
          pollInterval: Duration.millis(50),
          observer: { waits: (p) => void (probe = p), started: (s) => void (state = s), event: (_, s) => void (state = s) }
        }).pipe(Effect.provide(liveLayer(held)))
      )
      // The emulator's clock stands still: the first batch stays validating, holding the one slot.
      await waitFor("a batch in flight", () => ([...(state?.shards.values() ?? [])].some((s) => s.phase === "created") ? true : undefined), { timeoutMs: 60_000 })
      const waits = probe!()
      expect(waits).toEqual({ concurrency: 1, onlineQueued: 0, heldForPlanning: 0, overBudget: 0, overOnlineBudget: 0, enqueuedTokens: 0, limiters: [] })
      expect(ProgressView.waitLine(snapshot(state!, new Map(), Date.now(), waits))).toBe("waiting: 4 shards for a batch slot (concurrency 1)")
      await Effect.runPromise(Fiber.interrupt(fiber))
    } finally {
      await held.close()
      await dirs.cleanup()
    }
  })
})
