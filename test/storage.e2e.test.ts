/**
 * Provider storage, end to end with the real CLI against the emulator over HTTP: a run deletes
 * each collected shard's input file (and, unless --keep-provider-files, its output and error
 * files) after committing its results; a crash between the commit and the deletion leaves
 * them to the next resume; `sluice gc` removes exactly the files and ended batches sluice
 * created that no run needs, and nothing another tool created.
 */
import { afterEach, describe, expect, it } from "vitest"
import {
  describeResult,
  emulatorEnv,
  makeProject,
  runCli,
  startTestEmulator,
  writePipeline,
  writeRows
} from "./support/cli.js"
import type { CliResult, TestEmulator, TempProject } from "./support/cli.js"
import {
  advanceClock,
  countBy,
  eventsTagged,
  holdClock,
  readJournal,
  readSink,
  retrieveBatch,
  runFlags,
  runIdOf,
  setFaults,
  waitFor
} from "./support/runs.js"

const cleanups: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
})

const KEY = "sk-test-fake-key"

interface Setup {
  readonly emulator: TestEmulator
  readonly project: TempProject
  readonly sluice: (args: ReadonlyArray<string>, env?: Record<string, string>) => Promise<CliResult>
}

const setup = async (): Promise<Setup> => {
  const emulator = await startTestEmulator()
  cleanups.push(() => emulator.close())
  const project = await makeProject("sluice-storage-")
  cleanups.push(() => project.cleanup())
  const env = {
    ...emulatorEnv(emulator.url, KEY),
    ANTHROPIC_BASE_URL: emulator.url,
    ANTHROPIC_API_KEY: KEY,
    GEMINI_BASE_URL: emulator.url,
    GEMINI_API_KEY: KEY
  }
  return {
    emulator,
    project,
    sluice: (args, extra = {}) => runCli(args, { cwd: project.dir, env: { ...env, ...extra }, timeoutMs: 150_000 })
  }
}

/** A pipeline of `rows` rows on `provider`, in its own files. */
const pipeline = async (t: Setup, name: string, rows: number, provider = "openai", model = "gpt-4o-mini") => {
  await writeRows(t.project, `data/${name}.jsonl`, rows)
  return writePipeline(t.project, `${name}.pipeline.ts`, { name, provider, model, source: `data/${name}.jsonl`, sink: `out/${name}.jsonl` })
}

const auth = { authorization: `Bearer ${KEY}` }

interface WireFile {
  readonly id: string
  readonly filename: string
  readonly purpose: string
  readonly bytes: number
}

/** Every OpenAI file the emulator holds, of any purpose. */
const openAiFiles = async (url: string): Promise<Array<WireFile>> => {
  const response = await fetch(`${url}/v1/files?limit=10000`, { headers: auth })
  expect(response.status).toBe(200)
  return ((await response.json()) as { data: Array<WireFile> }).data
}

const fileIds = async (url: string): Promise<Array<string>> => (await openAiFiles(url)).map((f) => f.id).sort()

/** Input, output and error files of a run's shards, from its journal and the batches it names. */
const filesOfRun = async (url: string, runDir: string) => {
  const events = await readJournal(runDir)
  const inputs = new Map(eventsTagged(events, "Staged").map((e) => [e.shard!, e["inputRef"] as string]))
  const outputs = new Map<string, Array<string>>()
  for (const created of eventsTagged(events, "Created")) {
    const batch = await retrieveBatch(url, created["batchId"] as string, KEY)
    outputs.set(created.shard!, [batch.output_file_id, batch.error_file_id].filter((id): id is string => id !== null && id !== ""))
  }
  return { events, inputs, outputs }
}

const sorted = (values: Iterable<string>) => [...values].sort()

describe("a run deletes its files at the provider", () => {
  it("after a run the emulator holds none of its input, output or error files; with --keep-provider-files the outputs stay", async () => {
    const t = await setup()
    const file = await pipeline(t, "clean", 30)
    const done = await t.sluice(["run", file, ...runFlags(t.project.path("run-clean"), 10)])
    expect(done.code, describeResult(done)).toBe(0)
    const clean = await filesOfRun(t.emulator.url, t.project.path("run-clean"))
    expect(clean.inputs.size).toBe(3)
    const cleanOutputs = [...clean.outputs.values()].flat()
    expect(cleanOutputs.length, "each batch wrote an output file").toBeGreaterThanOrEqual(3)
    const held = await fileIds(t.emulator.url)
    for (const id of [...clean.inputs.values(), ...cleanOutputs]) expect(held, `file ${id}`).not.toContain(id)
    const deletedEvents = eventsTagged(clean.events, "ProviderFilesDeleted")
    expect(sorted(deletedEvents.map((e) => e.shard!))).toEqual(sorted(clean.inputs.keys()))
    for (const e of deletedEvents) {
      expect(sorted(e["files"] as Array<string>)).toEqual(sorted([clean.inputs.get(e.shard!)!, ...clean.outputs.get(e.shard!)!]))
      expect(e["kept"]).toEqual([])
    }

    const keepFile = await pipeline(t, "keep", 20)
    const kept = await t.sluice(["run", keepFile, ...runFlags(t.project.path("run-keep"), 10), "--keep-provider-files"])
    expect(kept.code, describeResult(kept)).toBe(0)
    const keep = await filesOfRun(t.emulator.url, t.project.path("run-keep"))
    const keptOutputs = [...keep.outputs.values()].flat()
    const heldAfter = await fileIds(t.emulator.url)
    for (const id of keep.inputs.values()) expect(heldAfter, `input file ${id}`).not.toContain(id)
    expect(keptOutputs.length).toBeGreaterThanOrEqual(2)
    for (const id of keptOutputs) expect(heldAfter, `output file ${id}`).toContain(id)
    for (const e of eventsTagged(keep.events, "ProviderFilesDeleted")) {
      expect(e["files"]).toEqual([keep.inputs.get(e.shard!)])
      expect(sorted(e["kept"] as Array<string>)).toEqual(sorted(keep.outputs.get(e.shard!)!))
    }
    const status = await t.sluice(["status", t.project.path("run-keep"), "--json", "--no-refresh"])
    expect(status.code, describeResult(status)).toBe(0)
    expect(JSON.parse(status.stdout).providerFiles).toEqual({ holding: 0, kept: keptOutputs.length })
  })

  it("--keep-provider-files is kept by the run: a resume without it (cron, `sluice webhook`) still keeps the output files", async () => {
    const t = await setup()
    const file = await pipeline(t, "kept", 20)
    const runDir = t.project.path("run-kept")
    await holdClock(t.emulator.url) // the batches stay in flight until the resume
    const detached = await t.sluice(["run", file, ...runFlags(runDir, 10), "--keep-provider-files", "--detach"])
    expect(detached.code, describeResult(detached)).toBe(3)
    expect(eventsTagged(await readJournal(runDir), "Collected"), "nothing collected before the resume").toEqual([])

    await advanceClock(t.emulator.url, 600_000)
    // What `sluice webhook` runs: the run directory, --detach --json, nothing else.
    const resumed = await t.sluice(["resume", runDir, "--poll-interval", "0.05", "--detach", "--json"])
    expect(resumed.code, describeResult(resumed)).toBe(0)
    expect(resumed.stderr).toContain("--keep-provider-files: as the run recorded it")
    const after = await filesOfRun(t.emulator.url, runDir)
    expect(eventsTagged(after.events, "Collected")).toHaveLength(2)
    const outputs = [...after.outputs.values()].flat()
    expect(outputs.length, "each batch wrote an output file").toBeGreaterThanOrEqual(2)
    const held = await fileIds(t.emulator.url)
    for (const id of after.inputs.values()) expect(held, `input file ${id}`).not.toContain(id)
    for (const id of outputs) expect(held, `output file ${id}`).toContain(id)
    for (const e of eventsTagged(after.events, "ProviderFilesDeleted")) {
      expect(e["files"]).toEqual([after.inputs.get(e.shard!)])
      expect(sorted(e["kept"] as Array<string>)).toEqual(sorted(after.outputs.get(e.shard!)!))
    }
    const status = await t.sluice(["status", runDir, "--json", "--no-refresh"])
    expect(status.code, describeResult(status)).toBe(0)
    expect(JSON.parse(status.stdout)).toMatchObject({ settings: { keepProviderFiles: true }, providerFiles: { holding: 0, kept: outputs.length } })
  })

  it("a crash after the commit and before the deletion: resume deletes the files, nothing lost or counted twice", async () => {
    const t = await setup()
    const file = await pipeline(t, "crash", 30)
    const runDir = t.project.path("run-crash")
    const crashed = await t.sluice(["run", file, ...runFlags(runDir, 10)], { SLUICE_FAILPOINT: "after:Collected:1" })
    expect(crashed.signal, describeResult(crashed)).toBe("SIGKILL")

    const before = await filesOfRun(t.emulator.url, runDir)
    const collected = eventsTagged(before.events, "Collected")
    expect(collected).toHaveLength(1)
    expect(eventsTagged(before.events, "ProviderFilesDeleted"), "the crash came before the deletion").toEqual([])
    const first = collected[0]!.shard!
    const held = await fileIds(t.emulator.url)
    for (const id of [before.inputs.get(first)!, ...before.outputs.get(first)!]) expect(held, `file ${id} of ${first}`).toContain(id)
    const status = await t.sluice(["status", runDir, "--json", "--no-refresh"])
    expect(JSON.parse(status.stdout).providerFiles.holding, describeResult(status)).toBe(1)
    const statusText = await t.sluice(["status", runDir, "--no-refresh"])
    expect(statusText.stdout).toContain("1 collected shard still holds files at the provider")

    const resumed = await t.sluice(["resume", runDir, "--poll-interval", "0.05"])
    expect(resumed.code, describeResult(resumed)).toBe(0)
    const after = await filesOfRun(t.emulator.url, runDir)
    const heldAfter = await fileIds(t.emulator.url)
    for (const id of [...after.inputs.values(), ...[...after.outputs.values()].flat()]) expect(heldAfter, `file ${id}`).not.toContain(id)
    const deletions = countBy(eventsTagged(after.events, "ProviderFilesDeleted"), (e) => e.shard!)
    expect(sorted(deletions.keys())).toEqual(sorted(after.inputs.keys()))
    expect([...deletions.values()].every((n) => n === 1), "one deletion event per shard").toBe(true)

    // Nothing lost, nothing counted twice: every row once in the sink, each shard collected once.
    const sink = await readSink(t.project.path("out", "crash.jsonl"))
    expect(sorted(sink.map((l) => l.input.id))).toEqual(Array.from({ length: 30 }, (_, i) => `r${String(i + 1).padStart(4, "0")}`))
    const collections = countBy(eventsTagged(after.events, "Collected"), (e) => e.shard!)
    expect([...collections.values()].every((n) => n === 1), "each shard collected once").toBe(true)
    expect(eventsTagged(after.events, "Collected").reduce((a, e) => a + (e["succeeded"] as number), 0)).toBe(30)
    const final = await t.sluice(["status", runDir, "--json", "--no-refresh"])
    expect(JSON.parse(final.stdout).providerFiles).toEqual({ holding: 0, kept: 0 })
  })
})

describe("a deletion that fails", () => {
  it("never fails the run: status reports the files still held, and a later resume deletes them", async () => {
    const t = await setup()
    const file = await pipeline(t, "refused", 20)
    const runDir = t.project.path("run-refused")
    await setFaults(t.emulator.url, { refuseDeletes: true })
    const done = await t.sluice(["run", file, ...runFlags(runDir, 10)])
    expect(done.code, describeResult(done)).toBe(0)
    expect(done.stderr).toContain("could not delete its files at openai")
    expect(await readSink(t.project.path("out", "refused.jsonl"))).toHaveLength(20)
    const held = await filesOfRun(t.emulator.url, runDir)
    expect(eventsTagged(held.events, "ProviderFilesDeleted")).toEqual([])
    const files = await fileIds(t.emulator.url)
    for (const id of [...held.inputs.values(), ...[...held.outputs.values()].flat()]) expect(files, `file ${id}`).toContain(id)
    const status = await t.sluice(["status", runDir, "--json", "--no-refresh"])
    expect(JSON.parse(status.stdout).providerFiles, describeResult(status)).toEqual({ holding: 2, kept: 0 })

    await setFaults(t.emulator.url, { refuseDeletes: false })
    const resumed = await t.sluice(["resume", runDir, "--poll-interval", "0.05"])
    expect(resumed.code, describeResult(resumed)).toBe(0)
    expect(resumed.stderr).toContain("nothing to do")
    const after = await fileIds(t.emulator.url)
    for (const id of [...held.inputs.values(), ...[...held.outputs.values()].flat()]) expect(after, `file ${id}`).not.toContain(id)
    const final = await t.sluice(["status", runDir, "--json", "--no-refresh"])
    expect(JSON.parse(final.stdout).providerFiles).toEqual({ holding: 0, kept: 0 })
    expect(await readSink(t.project.path("out", "refused.jsonl")), "the sink is not written again").toHaveLength(20)
  })
})

// ---------------------------------------------------------------------------------------------
// sluice gc
// ---------------------------------------------------------------------------------------------

/** Uploads a file as another tool would (no sluice name). */
const uploadForeign = async (url: string, filename: string, line: string): Promise<string> => {
  const form = new FormData()
  form.append("purpose", "batch")
  form.append("file", new Blob([`${line}\n`], { type: "application/jsonl" }), filename)
  const response = await fetch(`${url}/v1/files`, { method: "POST", body: form, headers: auth })
  expect(response.status).toBe(200)
  return ((await response.json()) as { id: string }).id
}

const openAiLine = JSON.stringify({
  custom_id: "other-1",
  method: "POST",
  url: "/v1/chat/completions",
  body: { model: "gpt-4o-mini", messages: [{ role: "user", content: "hello" }] }
})

const postJson = async (url: string, body: unknown, headers: Record<string, string>) => {
  const response = await fetch(url, { method: "POST", body: JSON.stringify(body), headers: { "content-type": "application/json", ...headers } })
  expect(response.status, await response.clone().text()).toBe(200)
  return (await response.json()) as Record<string, any>
}

const anthropicHeaders = { "x-api-key": KEY, "anthropic-version": "2023-06-01" }
const geminiHeaders = { "x-goog-api-key": KEY }

const anthropicBatchIds = async (url: string): Promise<Array<string>> => {
  const response = await fetch(`${url}/v1/messages/batches?limit=1000`, { headers: anthropicHeaders })
  return ((await response.json()) as { data: Array<{ id: string }> }).data.map((b) => b.id).sort()
}

const geminiBatches = async (url: string): Promise<Array<{ name: string; displayName: string | undefined }>> => {
  const response = await fetch(`${url}/v1beta/batches?pageSize=1000`, { headers: geminiHeaders })
  const body = (await response.json()) as { operations?: Array<{ name: string; metadata?: { displayName?: string } }> }
  return (body.operations ?? []).map((o) => ({ name: o.name, displayName: o.metadata?.displayName }))
}

const gcJson = async (t: Setup, args: ReadonlyArray<string>) => {
  const r = await t.sluice(["gc", ...args, "--json"])
  expect(r.code, describeResult(r)).toBe(0)
  return JSON.parse(r.stdout) as {
    dryRun: boolean
    unneeded: Record<"input" | "output" | "batch", { count: number; bytes: number }>
    deleted: Record<"input" | "output" | "batch", number>
    items: Array<{ id: string; kind: string; bytes: number | null }>
    failed: Array<unknown>
    recent: { files: number; batches: number }
    olderThanSeconds: number
  }
}

describe("sluice gc", () => {
  it("removes exactly the files sluice created that no run needs, after a dry run that deletes nothing", async () => {
    const t = await setup()
    const url = t.emulator.url

    // A finished run that kept its outputs.
    const doneDir = t.project.path("run-done")
    const done = await t.sluice(["run", await pipeline(t, "done", 20), ...runFlags(doneDir, 10), "--keep-provider-files"])
    expect(done.code, describeResult(done)).toBe(0)
    const doneRun = await filesOfRun(url, doneDir)
    const doneId = await runIdOf(doneDir)
    // An upload of the finished run its journal does not know (a crash before `Staged`, long ago).
    const doneOrphan = await uploadForeign(url, `sluice-${doneId}-label-00099-s1.jsonl`, openAiLine)

    // An unfinished run: its first shard collected (its files not yet deleted), the rest not.
    const openDir = t.project.path("run-open")
    const crashed = await t.sluice(["run", await pipeline(t, "open", 30), ...runFlags(openDir, 10)], { SLUICE_FAILPOINT: "after:Collected:1" })
    expect(crashed.signal, describeResult(crashed)).toBe("SIGKILL")
    const openRun = await filesOfRun(url, openDir)
    const openId = await runIdOf(openDir)
    const collectedShard = eventsTagged(openRun.events, "Collected")[0]!.shard!
    // An upload of the unfinished run for a shard it has not journaled yet: it may be submitting it.
    const openOrphan = await uploadForeign(url, `sluice-${openId}-label-00099-s1.jsonl`, openAiLine)

    // Another tool's file and batch (no sluice name, no sluice metadata), ended.
    const foreignInput = await uploadForeign(url, "other-tool.jsonl", openAiLine)
    const foreignBatch = await postJson(`${url}/v1/batches`, { input_file_id: foreignInput, endpoint: "/v1/chat/completions", completion_window: "24h" }, auth)
    const foreignEnded = await waitFor("the other tool's batch to end", async () => {
      const b = await retrieveBatch(url, foreignBatch["id"], KEY)
      return b.status === "completed" ? b : undefined
    })
    expect(foreignEnded.output_file_id).not.toBeNull()

    const expected = sorted([
      ...[...doneRun.outputs.values()].flat(),
      doneOrphan,
      openRun.inputs.get(collectedShard)!,
      ...openRun.outputs.get(collectedShard)!
    ])
    const before = await fileIds(url)
    for (const id of expected) expect(before, `planted file ${id}`).toContain(id)

    const dry = await gcJson(t, [doneDir, openDir])
    expect(dry.dryRun).toBe(true)
    expect(sorted(dry.items.map((i) => i.id))).toEqual(expected)
    expect(dry.deleted).toEqual({ input: 0, output: 0, batch: 0 })
    expect(await fileIds(url), "a dry run deletes nothing").toEqual(before)
    const sizes = new Map((await openAiFiles(url)).map((f) => [f.id, f.bytes]))
    const bytesOf = (kind: string) => dry.items.filter((i) => i.kind === kind).reduce((a, i) => a + sizes.get(i.id)!, 0)
    expect(dry.unneeded.input).toEqual({ count: 2, bytes: bytesOf("input") })
    expect(dry.unneeded.output.count).toBe(expected.length - 2)
    expect(dry.unneeded.output.bytes).toBe(bytesOf("output"))
    const text = await t.sluice(["gc", doneDir, openDir])
    expect(text.stdout).toContain("dry run: nothing deleted; run again with --yes")

    const wet = await gcJson(t, [doneDir, openDir, "--yes"])
    expect(wet.failed).toEqual([])
    expect(wet.deleted).toEqual({ input: 2, output: expected.length - 2, batch: 0 })
    const after = await fileIds(url)
    expect(after).toEqual(before.filter((id) => !expected.includes(id)))
    // Left: the unfinished run's uncollected shards' files, its unknown upload, the other tool's files.
    for (const id of [openOrphan, foreignInput, foreignEnded.output_file_id!]) expect(after, `file ${id}`).toContain(id)
    for (const [shard, input] of openRun.inputs) if (shard !== collectedShard) expect(after, `input of ${shard}`).toContain(input)

    // The unfinished run goes on: nothing it needed is gone.
    const resumed = await t.sluice(["resume", openDir, "--poll-interval", "0.05"])
    expect(resumed.code, describeResult(resumed)).toBe(0)
    expect(await readSink(t.project.path("out", "open.jsonl"))).toHaveLength(30)
  })

  it("deletes ended batches sluice created (Anthropic: named by a run directory; Gemini: by name), never another tool's", async () => {
    const t = await setup()
    const url = t.emulator.url
    const anthropicDir = t.project.path("run-anthropic")
    const a = await t.sluice(["run", await pipeline(t, "claude", 20, "anthropic", "claude-haiku-4-5"), ...runFlags(anthropicDir, 10)])
    expect(a.code, describeResult(a)).toBe(0)
    const geminiDir = t.project.path("run-gemini")
    const g = await t.sluice(["run", await pipeline(t, "flash", 20, "gemini", "gemini-2.5-flash"), ...runFlags(geminiDir, 10)])
    expect(g.code, describeResult(g)).toBe(0)
    const ours = eventsTagged(await readJournal(anthropicDir), "Created").map((e) => e["batchId"] as string).sort()
    expect(ours).toHaveLength(2)

    const otherAnthropic = await postJson(`${url}/v1/messages/batches`, {
      requests: [{ custom_id: "other-1", params: { model: "claude-haiku-4-5", max_tokens: 16, messages: [{ role: "user", content: "hello" }] } }]
    }, anthropicHeaders)
    const otherGemini = await postJson(`${url}/v1beta/models/gemini-2.5-flash:batchGenerateContent`, {
      batch: { displayName: "other-tool", inputConfig: { requests: { requests: [{ request: { contents: [{ parts: [{ text: "hello" }] }] }, metadata: { key: "k1" } }] } } }
    }, geminiHeaders)
    const geminiOurs = (await geminiBatches(url)).filter((b) => b.displayName?.startsWith("sluice.")).map((b) => b.name).sort()
    expect(geminiOurs).toHaveLength(2)

    // Anthropic: without the run directory its batches cannot be told from another tool's.
    const blind = await gcJson(t, ["--provider", "anthropic"])
    expect(blind.items).toEqual([])
    const dry = await gcJson(t, ["--provider", "anthropic", anthropicDir])
    expect(sorted(dry.items.map((i) => i.id))).toEqual(ours)
    expect(dry.unneeded.batch.count).toBe(2)
    expect(await anthropicBatchIds(url)).toEqual(sorted([...ours, otherAnthropic["id"]]))
    const wet = await gcJson(t, ["--provider", "anthropic", anthropicDir, "--yes"])
    expect(wet.deleted.batch).toBe(2)
    expect(await anthropicBatchIds(url)).toEqual([otherAnthropic["id"]])

    // Gemini: its batches carry sluice's display name. Their run is not seen (neither given nor
    // under .sluice/runs) and ended minutes ago: another machine may still collect them — kept.
    const young = await gcJson(t, ["--provider", "gemini", "--yes"])
    expect(young.deleted.batch).toBe(0)
    expect(young.recent.batches).toBe(2)
    expect(young.olderThanSeconds).toBe(7 * 86_400)
    expect(sorted((await geminiBatches(url)).filter((b) => b.displayName?.startsWith("sluice.")).map((b) => b.name))).toEqual(geminiOurs)
    const said = await t.sluice(["gc", "--provider", "gemini"])
    expect(said.stdout).toContain("kept too: 0 files and 2 ended batches of runs gc does not see, made in the last 7 days")
    const badAge = await t.sluice(["gc", "--provider", "gemini", "--older-than", "soon"])
    expect(badAge.code, describeResult(badAge)).toBe(2)
    expect(badAge.stderr).toContain('--older-than must be a duration like 90s, 45m, 2h, 1h30m or 1d, got "soon"')
    // --older-than 0: whatever a run not seen made is taken as done; the other tool's batch is left alone.
    const gem = await gcJson(t, ["--provider", "gemini", "--older-than", "0", "--yes"])
    expect(gem.deleted.batch).toBe(2)
    const left = (await geminiBatches(url)).map((b) => b.name)
    for (const name of geminiOurs) expect(left).not.toContain(name)
    expect(left).toContain(otherGemini["name"])
  })

  it("without run directories, keeps what the runs under .sluice/runs still need (a run not named is not taken as done)", async () => {
    const t = await setup()
    const url = t.emulator.url
    // An unfinished run in the default place: its first shard collected, the others not.
    const openDir = t.project.path(".sluice", "runs", "open")
    const crashed = await t.sluice(["run", await pipeline(t, "open", 30), ...runFlags(openDir, 10)], { SLUICE_FAILPOINT: "after:Collected:1" })
    expect(crashed.signal, describeResult(crashed)).toBe("SIGKILL")
    const openRun = await filesOfRun(url, openDir)
    const collectedShard = eventsTagged(openRun.events, "Collected")[0]!.shard!
    const needed = [...openRun.inputs].filter(([shard]) => shard !== collectedShard).map(([, id]) => id)
    expect(needed.length).toBeGreaterThan(0)

    const wet = await gcJson(t, ["--provider", "openai", "--yes"])
    expect(wet.failed).toEqual([])
    const after = await fileIds(url)
    for (const id of needed) expect(after, `input ${id} of an uncollected shard`).toContain(id)
    // What the collected shard held went; the run goes on and every row arrives.
    expect(after).not.toContain(openRun.inputs.get(collectedShard)!)
    const resumed = await t.sluice(["resume", openDir, "--poll-interval", "0.05"])
    expect(resumed.code, describeResult(resumed)).toBe(0)
    expect(await readSink(t.project.path("out", "open.jsonl"))).toHaveLength(30)
  })

  it("refuses a call with neither a provider nor a run directory (exit 2)", async () => {
    const t = await setup()
    const r = await t.sluice(["gc"])
    expect(r.code, describeResult(r)).toBe(2)
    expect(r.stderr).toContain("gc needs a provider")
    const unknown = await t.sluice(["gc", "--provider", "nope"])
    expect(unknown.code, describeResult(unknown)).toBe(2)
  })
})
