/**
 * Shards re-cut under an enqueued-token limit learned or lowered after they were planned
 * (Recut.ts), end to end with the real CLI against an emulator that enforces an organisation
 * limit per model the way OpenAI does. Crashes are real: the child process kills itself at a
 * failpoint, and a resume finishes the run. Every test checks that no row is lost and none is
 * run twice (the emulator's ledger: no custom_id in two batches that ran).
 */
import { existsSync } from "node:fs"
import { describe, expect, it } from "vitest"
import { describeResult, getLedger, listUploads, makeRows, runCli, writePipeline, writeRows } from "./support/cli.js"
import type { CliResult, Row, TempProject, TestEmulator } from "./support/cli.js"
import { KEY, MODEL, enqueued, tokenLimitFailures, tokenLimitHarness } from "./support/tokens.js"
import { batchesOfRun, countBy, eventsTagged, holdClock, readFailures, readJournal, readJournalSoFar, readSink, releaseClock, runFlags, runIdOf, waitFor, writeRecoveryPipeline } from "./support/runs.js"

const { emulator: startEmulator, emulatorWith, project, cli, pipelineOf, tokensPerRow } = tokenLimitHarness("sluice-recut-")

/**
 * The rows of `ids` ran once each: no custom_id in two batches the provider ran (a batch failed
 * with token_limit_exceeded never ran), none left out, and each in the sink once.
 */
const expectEachRanOnce = async (p: TempProject, emulator: TestEmulator, runDir: string, name: string, ids: ReadonlyArray<string>) => {
  const ledger = await getLedger(emulator.url)
  const ran = batchesOfRun(ledger, await runIdOf(runDir)).filter((b) => b.status !== "failed")
  const sent = ran.flatMap((b) => b.custom_ids)
  expect([...countBy(sent, (id) => id).values()].every((n) => n === 1), "a custom_id in two batches that ran").toBe(true)
  expect(sent.length).toBe(ids.length)
  const sink = await readSink(p.path(`out/${name}.jsonl`))
  expect(sink.map((l) => l.input.id).sort()).toEqual([...ids].sort())
}

describe("re-cutting shards over the enqueued-token limit", () => {
  it("learned: a shard alone over the limit fails once, is re-cut into shards under it, and every row succeeds", async () => {
    const perRow = await tokensPerRow()
    const limit = perRow * 25
    const emulator = await emulatorWith(limit)
    const p = await project()
    const file = await pipelineOf(p, "learned", 60)
    const runDir = p.path("run-learned")
    // No --shard-size and no limit given: the 60 rows are one shard, over the limit.
    const done = await cli(p, emulator, ["run", file, "--run-dir", runDir, "--poll-interval", "0.05", "--json"])
    expect(done.code, describeResult(done)).toBe(0)
    expect(JSON.parse(done.stdout)).toMatchObject({ finished: true, succeeded: 60, failed: {} })
    // Failed once, alone; never again once re-cut.
    expect(tokenLimitFailures(emulator), emulator.log.join("\n")).toBe(1)
    expect((await enqueued(emulator)).maxSeen[MODEL]!).toBeLessThanOrEqual(limit)
    const events = await readJournal(runDir)
    const [reached] = eventsTagged(events, "TokenLimitReached")
    const [recut, ...more] = eventsTagged(events, "ShardRecut")
    expect(more).toEqual([])
    expect(recut!.shard).toBe(reached!.shard)
    expect(recut!["limit"]).toBe(reached!["limit"])
    expect(recut!["limit"] as number).toBeLessThanOrEqual(limit)
    const children = recut!["children"] as Array<{ shard: string; requests: number; inputTokens: number }>
    expect(children.length).toBeGreaterThanOrEqual(3)
    for (const c of children) expect(c.inputTokens).toBeLessThanOrEqual(recut!["limit"] as number)
    expect(children.reduce((a, c) => a + c.requests, 0)).toBe(60)
    // Rows of the failed batch were never run: each child is a first attempt of its rows.
    expect(eventsTagged(events, "ShardPlanned").filter((e) => (e["attempt"] as number) > 1)).toEqual([])
    await expectEachRanOnce(p, emulator, runDir, "learned", makeRows(60).map((r) => r.id))
  }, 240_000)

  // (A crash after the event is the same for a failed shard as for a planned one: see below.)
  for (const crashAt of ["after:TokenLimitReached", "recut-before-journal"]) {
    it(`learned, a crash at ${crashAt}: the resume re-cuts the failed shard once, runs each row once, and leaves no upload behind`, async () => {
      const perRow = await tokensPerRow()
      const limit = perRow * 25
      const emulator = await emulatorWith(limit)
      const p = await project()
      const file = await pipelineOf(p, "relearned", 60)
      const runDir = p.path("run-relearned")
      const flags = ["--poll-interval", "0.05", "--json", "--cache-dir", p.path("cache")]
      const crashed = await cli(p, emulator, ["run", file, "--run-dir", runDir, ...flags], { SLUICE_FAILPOINT: `${crashAt}:1` })
      expect(crashed.signal, describeResult(crashed)).toBe("SIGKILL")
      const resumed = await cli(p, emulator, ["resume", runDir, ...flags])
      expect(resumed.code, describeResult(resumed)).toBe(0)
      expect(JSON.parse(resumed.stdout)).toMatchObject({ finished: true, succeeded: 60, failed: {} })
      expect(tokenLimitFailures(emulator), emulator.log.join("\n")).toBe(1)
      const events = await readJournal(runDir)
      expect(eventsTagged(events, "TokenLimitReached")).toHaveLength(1)
      expect(eventsTagged(events, "ShardRecut")).toHaveLength(1)
      await expectEachRanOnce(p, emulator, runDir, "relearned", makeRows(60).map((r) => r.id))
      // The failed shard's upload went with the re-cut; the children's after their collection.
      const runId = await runIdOf(runDir)
      expect((await listUploads(emulator.url)).filter((f) => f.filename.includes(runId))).toEqual([])
    }, 240_000)
  }

  /**
   * Forty small rows and one alone over the limit, planned as one shard with no limit; the run
   * killed right after journaling it, before anything is submitted.
   */
  const plannedUnlimited = async () => {
    const perRow = await tokensPerRow()
    const limit = perRow * 15
    const emulator = await emulatorWith(limit)
    const p = await project()
    const rows: Array<Row> = [...makeRows(40), { id: "huge", text: "lorem ipsum dolor sit amet ".repeat(perRow * 8) }]
    const file = await pipelineOf(p, "lowered", rows)
    const runDir = p.path("run-lowered")
    const planned = await cli(p, emulator, ["run", file, "--run-dir", runDir, "--poll-interval", "0.05"], { SLUICE_FAILPOINT: "after:ShardPlanned:1" })
    expect(planned.signal, describeResult(planned)).toBe("SIGKILL")
    expect(emulator.calls("POST", "/v1/batches")).toBe(0)
    return { emulator, p, file, runDir, limit, ids: rows.map((r) => r.id).filter((id) => id !== "huge") }
  }

  /** What a finished re-cut leaves: one ShardRecut, the huge row failed once by name, the rest run once. */
  const expectRecutDone = async (s: Awaited<ReturnType<typeof plannedUnlimited>>, resumed: CliResult) => {
    const summary = JSON.parse(resumed.stdout) as { finished: boolean; succeeded: number; failed: Record<string, number> }
    expect(summary).toMatchObject({ finished: true, succeeded: 40, failed: { permanent: 1 } })
    expect(tokenLimitFailures(s.emulator), s.emulator.log.join("\n")).toBe(0)
    expect((await enqueued(s.emulator)).maxSeen[MODEL]!).toBeLessThanOrEqual(s.limit)
    const events = await readJournal(s.runDir)
    const [recut, ...more] = eventsTagged(events, "ShardRecut")
    expect(more).toEqual([])
    expect(recut!["failed"]).toBe(1)
    const failures = await readFailures(s.runDir)
    expect(failures.map((f) => [f.key, f.code, f.class])).toEqual([["huge", "oversize", "permanent"]])
    expect(failures[0]!.message).toContain(failures[0]!.custom_id!)
    expect(failures[0]!.message).toContain(`enqueued-token limit of ${s.limit}`)
    await expectEachRanOnce(s.p, s.emulator, s.runDir, "lowered", s.ids)
  }

  it("lowered on resume: a planned shard is re-cut before it is submitted; a row alone over the limit fails by its custom_id", async () => {
    const s = await plannedUnlimited()
    const resumed = await cli(s.p, s.emulator, ["resume", s.runDir, "--poll-interval", "0.05", "--json", "--max-enqueued-tokens", String(s.limit)])
    expect(resumed.code, describeResult(resumed)).toBe(1)
    await expectRecutDone(s, resumed)
  }, 240_000)

  for (const crashAt of ["recut-before-journal", "after:ShardRecut"]) {
    it(`a crash at ${crashAt}: the resume finishes the re-cut, no row lost or run twice, the failure listed once`, async () => {
      const s = await plannedUnlimited()
      // By model: gpt-4o's limit (1 token) is not this model's.
      const flags = ["--poll-interval", "0.05", "--json", "--max-enqueued-tokens", `gpt-4o=1,${MODEL}=${s.limit}`]
      const crashed = await cli(s.p, s.emulator, ["resume", s.runDir, ...flags], { SLUICE_FAILPOINT: `${crashAt}:1` })
      expect(crashed.signal, describeResult(crashed)).toBe("SIGKILL")
      expect(s.emulator.calls("POST", "/v1/batches")).toBe(0)
      const before = eventsTagged(await readJournal(s.runDir), "ShardRecut")
      expect(before).toHaveLength(crashAt === "after:ShardRecut" ? 1 : 0)
      // The limits given are kept: this resume names none.
      const resumed = await cli(s.p, s.emulator, ["resume", s.runDir, "--poll-interval", "0.05", "--json"])
      expect(resumed.stderr).toContain(`--max-enqueued-tokens gpt-4o=1,${MODEL}=${s.limit}: as the run recorded it`)
      expect(resumed.code, describeResult(resumed)).toBe(1)
      await expectRecutDone(s, resumed)
    }, 240_000)
  }

  it("a malformed --max-enqueued-tokens is a usage error (exit 2) naming the item, before anything is written", async () => {
    const emulator = await emulatorWith(1_000_000)
    const p = await project()
    const file = await pipelineOf(p, "bad", 3)
    const runDir = p.path("run-bad")
    const done = await cli(p, emulator, ["run", file, "--run-dir", runDir, "--max-enqueued-tokens", `${MODEL}=2000000,gpt-4o=-5`])
    expect(done.code, describeResult(done)).toBe(2)
    expect(done.stderr).toContain(`"gpt-4o=-5": the number of tokens must be a whole number, got "-5"`)
    expect(emulator.log).toEqual([])
    expect(existsSync(runDir)).toBe(false)
  }, 60_000)

  describe("Azure: a create over the limit is refused at once (HTTP 400 token_limit_exceeded)", () => {
    const azure = async (limit: number) => {
      const emulator = await startEmulator({ enqueuedTokenLimit: limit, enqueuedLimitOnCreate: true, azureQuirks: true })
      return emulator
    }
    const azureCli = (p: TempProject, emulator: TestEmulator, args: ReadonlyArray<string>) =>
      runCli(args, { cwd: p.dir, env: { AZURE_OPENAI_API_KEY: KEY, AZURE_OPENAI_ENDPOINT: emulator.url }, timeoutMs: 60_000 })
    const azurePipeline = async (p: TempProject, name: string, rows: number) => {
      await writeRows(p, `data/${name}.jsonl`, rows)
      return writePipeline(p, `${name}.pipeline.ts`, { name, provider: "azure", model: MODEL, source: `data/${name}.jsonl`, sink: `out/${name}.jsonl` })
    }
    const refusals = (emulator: TestEmulator) => emulator.log.filter((l) => /^POST \/openai\/v1\/batches -> 400/.test(l)).length

    it("a shard refused alone is re-cut under the limit the refusal states; never created blindly again", async () => {
      const perRow = await tokensPerRow()
      const limit = perRow * 25
      const emulator = await azure(limit)
      const p = await project()
      const file = await azurePipeline(p, "refused", 60)
      const runDir = p.path("run-refused")
      const done = await azureCli(p, emulator, ["run", file, "--run-dir", runDir, "--poll-interval", "0.05", "--json"])
      expect(done.code, describeResult(done)).toBe(0)
      expect(JSON.parse(done.stdout)).toMatchObject({ finished: true, succeeded: 60, failed: {} })
      expect(refusals(emulator), emulator.log.join("\n")).toBe(1)
      expect((await enqueued(emulator)).maxSeen[MODEL]!).toBeLessThanOrEqual(limit)
      const events = await readJournal(runDir)
      expect(eventsTagged(events, "CreateRejected")).toEqual([])
      const [reached, ...more] = eventsTagged(events, "TokenLimitReached")
      expect(more).toEqual([])
      // No batch was made: none is named, and the learned limit is under the one the refusal states.
      expect(reached!["batchId"]).toBe("")
      expect(reached!["limit"] as number).toBeLessThanOrEqual(limit)
      const [recut] = eventsTagged(events, "ShardRecut")
      expect(recut!.shard).toBe(reached!.shard)
      await expectEachRanOnce(p, emulator, runDir, "refused", makeRows(60).map((r) => r.id))
    }, 240_000)

    it("a shard refused beside others waits for headroom under the learned limit and goes once there is room", async () => {
      const perRow = await tokensPerRow()
      const limit = perRow * 25
      const emulator = await azure(limit)
      const p = await project()
      const file = await azurePipeline(p, "waits", 60)
      const runDir = p.path("run-waits")
      // No batch ends while the clock stands still: two of ten rows fit, the third is refused.
      await holdClock(emulator.url)
      const running = azureCli(p, emulator, ["run", file, ...runFlags(runDir, 10, ["--concurrency", "3", "--json"])])
      await waitFor("a refusal journaled", async () =>
        eventsTagged(await readJournalSoFar(runDir), "TokenLimitReached").length > 0 ? true : undefined, { timeoutMs: 60_000 })
      expect(refusals(emulator)).toBe(1)
      await releaseClock(emulator.url)
      const done = await running
      expect(done.code, describeResult(done)).toBe(0)
      expect(JSON.parse(done.stdout)).toMatchObject({ finished: true, succeeded: 60, failed: {} })
      expect(refusals(emulator), emulator.log.join("\n")).toBe(1)
      expect((await enqueued(emulator)).maxSeen[MODEL]!).toBeLessThanOrEqual(limit)
      const events = await readJournal(runDir)
      expect(eventsTagged(events, "CreateRejected")).toEqual([])
      expect(eventsTagged(events, "ShardRecut")).toEqual([])
      const [reached] = eventsTagged(events, "TokenLimitReached")
      // The refused shard's upload is kept; its next create is a new submission of it.
      expect(eventsTagged(events, "Staged").filter((e) => e.shard === reached!.shard)).toHaveLength(1)
      expect(eventsTagged(events, "Created").filter((e) => e.shard === reached!.shard).map((e) => e["submission"])).toEqual([reached!["submission"]])
      await expectEachRanOnce(p, emulator, runDir, "waits", makeRows(60).map((r) => r.id))
    }, 240_000)
  })

  it("sluice retry cuts its shards by tokens under the limit: none over it, none re-cut", async () => {
    const perRow = await tokensPerRow()
    const limit = perRow * 25
    // Every line fails the first time it is sent (and succeeds when sent again); one attempt each.
    const emulator = await startEmulator({ enqueuedTokenLimit: limit, errorRate: 1 })
    const p = await project()
    await writeRows(p, "data/again.jsonl", 60)
    const file = await writeRecoveryPipeline(p, "again.pipeline.ts", { name: "again", maxAttempts: 1, source: "data/again.jsonl", sink: "out/again.jsonl" })
    const runDir = p.path("run-again")
    // No --shard-size: the shards are cut by the limit alone.
    const first = await cli(p, emulator, ["run", file, "--run-dir", runDir, "--poll-interval", "0.05", "--json", "--max-enqueued-tokens", String(limit)])
    expect(first.code, describeResult(first)).toBe(1)
    expect(JSON.parse(first.stdout)).toMatchObject({ succeeded: 0, failed: { retryable: 60 } })
    expect(eventsTagged(await readJournal(runDir), "ShardPlanned").length).toBeGreaterThanOrEqual(3)
    // The retry keeps the limit the run recorded; by requests alone its 60 rows would be one shard.
    const again = await cli(p, emulator, ["retry", runDir, "--poll-interval", "0.05", "--json"])
    expect(again.code, describeResult(again)).toBe(0)
    expect(JSON.parse(again.stdout)).toMatchObject({ finished: true, succeeded: 60 })
    const events = await readJournal(runDir)
    const [retry] = eventsTagged(events, "RetryPlanned")
    const shards = retry!["shards"] as Array<{ requests: number; inputTokens: number }>
    expect(shards.length).toBeGreaterThanOrEqual(3)
    for (const s of shards) expect(s.inputTokens).toBeLessThanOrEqual(limit)
    expect(shards.reduce((a, s) => a + s.requests, 0)).toBe(60)
    expect(eventsTagged(events, "ShardRecut")).toEqual([])
    expect(tokenLimitFailures(emulator)).toBe(0)
    expect((await enqueued(emulator)).maxSeen[MODEL]!).toBeLessThanOrEqual(limit)
    const sink = await readSink(p.path("out/again.jsonl"))
    expect(sink.map((l) => l.input.id).sort()).toEqual(makeRows(60).map((r) => r.id))
  }, 240_000)
})
