/**
 * End to end: a run is bound to its provider identity and to the directory it was started in,
 * and `npm run demo` pays once. The real `sluice` CLI as a child process against emulators
 * over HTTP on 127.0.0.1; the library through its Effect and Promise APIs.
 */
import { spawn } from "node:child_process"
import { existsSync, realpathSync } from "node:fs"
import { cp, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join, relative } from "node:path"
import { Runner } from "@sluice/runner"
import * as Api from "@sluice/runner/promise"
import { Duration, Effect } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { labelPipeline, makeReviews, promiseConnection, registryLayer, startApiEmulator, tempDirs } from "./support/api.js"
import {
  type CliResult,
  childEnv,
  describeResult,
  emulatorEnv,
  getLedger,
  makeProject,
  repoRoot,
  runCli,
  startTestEmulator,
  type TempProject,
  type TestEmulator,
  writePipeline,
  writeRows
} from "./support/cli.js"
import { eventsTagged, readFailures, readJournal, readSink, runFlags, runIdOf } from "./support/runs.js"

/** Each CLI start loads TypeScript through tsx (seconds on a busy machine). */
const SLOW = { timeout: 240_000 }

interface Manifest {
  readonly runId: string
  readonly baseDir?: string
  readonly providers: Record<string, { baseUrl: string }>
  readonly stages: ReadonlyArray<{ name: string; provider: string; binding?: Record<string, unknown> }>
  readonly rebinds?: ReadonlyArray<{ stage: string; from: { origin: string }; to: { origin: string } }>
}

const readManifest = async (runDir: string): Promise<Manifest> => JSON.parse(await readFile(join(runDir, "manifest.json"), "utf8"))
const writeManifest = (runDir: string, manifest: Manifest) => writeFile(join(runDir, "manifest.json"), JSON.stringify(manifest, null, 2))

/** The identity the manifest records for the emulator's `openai` provider. */
const emulatorIdentity = (emulator: { url: string }) => ({ family: "openai", provider: "openai", origin: emulator.url, pathPrefix: "/v1" })

/** Requests the emulator got through its provider APIs (not the test API the test itself reads). */
const providerCalls = (emulator: TestEmulator): Array<string> => emulator.log.filter((l) => !l.includes(" /_emulator/"))

const expectRefused = (r: CliResult, ...named: Array<string>) => {
  expect(r.code, describeResult(r)).toBe(2)
  for (const text of named) expect(r.stderr, describeResult(r)).toContain(text)
  expect(r.stderr).not.toMatch(/^done:/m)
}

describe("a run finished against one provider origin", SLOW, () => {
  let a: TestEmulator
  let b: TestEmulator
  let project: TempProject
  const runDir = () => project.path("runs", "bound")
  const sink = () => project.path("out", "labeled.jsonl")
  let first: CliResult

  beforeAll(async () => {
    a = await startTestEmulator()
    b = await startTestEmulator()
    project = await makeProject()
    await writeRows(project, "data/rows.jsonl", 30)
    await writePipeline(project, "p.pipeline.ts")
    first = await runCli(["run", "p.pipeline.ts", ...runFlags("runs/bound", 10)], { cwd: project.dir, env: emulatorEnv(a.url) })
  }, SLOW.timeout)

  afterAll(async () => {
    await a?.close()
    await b?.close()
    await project?.cleanup()
  })

  it("records the stage's provider identity and the directory it was started in, no key", async () => {
    expect(first.code, describeResult(first)).toBe(0)
    const manifest = await readManifest(runDir())
    expect(manifest.stages).toEqual([{ name: "label", provider: "openai", model: "gpt-4o-mini", binding: emulatorIdentity(a) }])
    expect(manifest.baseDir).toBe(realpathSync(project.dir))
    expect(JSON.stringify(manifest)).not.toContain("sk-test-fake-key")
  })

  it("is refused under another origin by run, resume, retry and cancel: exit 2, both named, nothing asked of it", async () => {
    const sinkBefore = await readFile(sink(), "utf8")
    const env = emulatorEnv(b.url)
    const commands = [
      ["run", "p.pipeline.ts", ...runFlags("runs/bound", 10)],
      ["resume", "runs/bound", "--poll-interval", "0.05"],
      ["retry", "runs/bound", "--poll-interval", "0.05"],
      ["cancel", "runs/bound", "--poll-interval", "0.05"]
    ]
    for (const args of commands) {
      const r = await runCli(args, { cwd: project.dir, env })
      expectRefused(r, 'stage "label"', `openai at ${a.url}/v1`, `openai at ${b.url}/v1`, "--rebind-provider")
    }
    expect(providerCalls(b), "no request reached the other origin").toEqual([])
    expect((await getLedger(b.url)).batches).toEqual([])
    expect(await readFile(sink(), "utf8")).toBe(sinkBefore)
  })

  it("never counts as done against the real API: with OPENAI_BASE_URL unset it is refused, naming api.openai.com", async () => {
    const r = await runCli(["run", "p.pipeline.ts", ...runFlags("runs/bound", 10)], {
      cwd: project.dir,
      env: { OPENAI_API_KEY: "sk-test-fake-key", OPENAI_BASE_URL: undefined }
    })
    expectRefused(r, `openai at ${a.url}/v1`, "openai at https://api.openai.com/v1")
  })

  it("a manifest from before binding: its identity is recorded on first open, with a note; a changed base URL it recorded is refused", async () => {
    const original = await readManifest(runDir())
    const legacy = { ...original, stages: original.stages.map(({ binding: _, ...s }) => s) }
    delete (legacy as { baseDir?: string }).baseDir
    await writeManifest(runDir(), legacy)

    // The base URL recorded before binding differs from the one configured now: refused.
    const moved = await runCli(["resume", "runs/bound", "--poll-interval", "0.05"], { cwd: project.dir, env: emulatorEnv(b.url) })
    expectRefused(moved, `${a.url}/v1`, `${b.url}/v1`)
    expect(providerCalls(b)).toEqual([])

    // Against the origin it is bound to, the run (refused above) goes on as ever.
    const same = await runCli(["resume", "runs/bound", "--poll-interval", "0.05"], { cwd: project.dir, env: emulatorEnv(a.url) })
    expect(same.code, describeResult(same)).toBe(0)
    expect(same.stderr).toContain("was started before runs were bound to their providers")
    const recorded = await readManifest(runDir())
    expect(recorded.stages[0]!.binding).toEqual(emulatorIdentity(a))
    expect(recorded.baseDir).toBe(realpathSync(project.dir))
  })
})

describe("a base URL changed in the middle of a run", SLOW, () => {
  let held: TestEmulator
  let other: TestEmulator
  let project: TempProject
  const runDir = () => project.path("runs", "mid")

  beforeAll(async () => {
    // Batches at `held` stay validating for an hour: in flight for the whole test.
    held = await startTestEmulator({ validatingMs: 3_600_000 })
    other = await startTestEmulator()
    project = await makeProject()
    await writeRows(project, "data/rows.jsonl", 30)
    await writePipeline(project, "p.pipeline.ts")
  }, SLOW.timeout)

  afterAll(async () => {
    await held?.close()
    await other?.close()
    await project?.cleanup()
  })

  it("is refused before any call; --rebind-provider is refused while batches are in flight and moves the run once none are", async () => {
    const submitted = await runCli(["run", "p.pipeline.ts", ...runFlags("runs/mid", 10, ["--detach"])], {
      cwd: project.dir,
      env: emulatorEnv(held.url)
    })
    expect(submitted.code, describeResult(submitted)).toBe(3)
    expect(eventsTagged(await readJournal(runDir()), "Created")).toHaveLength(3)

    const changed = await runCli(["resume", "runs/mid", "--poll-interval", "0.05"], { cwd: project.dir, env: emulatorEnv(other.url) })
    expectRefused(changed, 'stage "label"', `${held.url}/v1`, `${other.url}/v1`)
    // No HTTP 404 from asking the wrong provider (a port such as 40457 in the message is not one).
    expect(changed.stderr).not.toMatch(/(?<!\d)404(?!\d)/)

    const rebindInFlight = await runCli(["resume", "runs/mid", "--poll-interval", "0.05", "--rebind-provider"], {
      cwd: project.dir,
      env: emulatorEnv(other.url)
    })
    expectRefused(rebindInFlight, "3 batches are in flight", "label-00001", `${held.url}/v1`, `${other.url}/v1`)
    expect(providerCalls(other), "nothing was asked of the new origin").toEqual([])
    expect((await readManifest(runDir())).stages[0]!.binding).toEqual(emulatorIdentity(held))
    expect(eventsTagged(await readJournal(runDir()), "ProviderRebound")).toEqual([])

    // Cancelled where they run (`cancel` stops them; `resume` collects them), nothing is in
    // flight: the run may move, and its rows go to the new origin.
    const cancelled = await runCli(["cancel", "runs/mid", "--poll-interval", "0.05"], { cwd: project.dir, env: emulatorEnv(held.url) })
    expect(cancelled.code, describeResult(cancelled)).toBe(3)
    const stillThere = await runCli(["retry", "runs/mid", "--poll-interval", "0.05", "--rebind-provider"], { cwd: project.dir, env: emulatorEnv(other.url) })
    expectRefused(stillThere, "3 batches are in flight")
    const collected = await runCli(["resume", "runs/mid", "--poll-interval", "0.05"], { cwd: project.dir, env: emulatorEnv(held.url) })
    expect(collected.code, describeResult(collected)).toBe(1)
    expect((await readFailures(runDir())).filter((f) => f.class === "cancelled")).toHaveLength(30)

    const moved = await runCli(["retry", "runs/mid", "--poll-interval", "0.05", "--rebind-provider"], {
      cwd: project.dir,
      env: emulatorEnv(other.url)
    })
    expect(moved.code, describeResult(moved)).toBe(0)
    expect(moved.stderr).toContain(`moved from openai at ${held.url}/v1 to openai at ${other.url}/v1`)

    const manifest = await readManifest(runDir())
    expect(manifest.stages[0]!.binding).toEqual(emulatorIdentity(other))
    expect(manifest.rebinds).toMatchObject([{ stage: "label", from: { origin: held.url }, to: { origin: other.url } }])
    expect(eventsTagged(await readJournal(runDir()), "ProviderRebound")).toMatchObject([
      { stage: "label", from: emulatorIdentity(held), to: emulatorIdentity(other) }
    ])

    const runId = await runIdOf(runDir())
    const sink = await readSink(project.path("out", "labeled.jsonl"))
    expect(sink.map((l) => l.key).sort()).toEqual(makeReviews(30).map((r) => r.id))
    expect((await getLedger(held.url)).deliveries, "the held origin delivered nothing").toEqual([])
    const delivered = (await getLedger(other.url)).deliveries.map((d) => d.custom_id).sort()
    expect(delivered).toEqual(sink.map((l) => l.custom_id).sort())
    expect((await getLedger(other.url)).batches.every((batch) => batch.metadata?.["sluice_run"] === runId)).toBe(true)
  })
})

describe("the library refuses a run under another provider identity", SLOW, () => {
  const dirs = tempDirs()
  afterAll(() => dirs.cleanup())

  it("Runner.run fails with ProviderChanged carrying both identities; the Promise API with that tag", async () => {
    const a = await startApiEmulator()
    const b = await startApiEmulator()
    try {
      const runDir = join(await dirs.make(), "run")
      const pipeline = labelPipeline({ name: "lib-bound", source: { rows: makeReviews(12) } })
      const done = await Effect.runPromise(Runner.run(pipeline, { runDir, shardSize: 6, pollInterval: Duration.millis(50) }).pipe(Effect.provide(registryLayer(a))))
      expect(done).toMatchObject({ finished: true, succeeded: 12 })

      const error = await Effect.runPromise(
        Runner.run(pipeline, { runDir, shardSize: 6, pollInterval: Duration.millis(50) }).pipe(Effect.flip, Effect.provide(registryLayer(b)))
      )
      expect(error).toBeInstanceOf(Runner.ProviderChanged)
      expect(error).toMatchObject({ stage: "label", recorded: { origin: a.url, pathPrefix: "/v1" }, current: { origin: b.url, pathPrefix: "/v1" } })

      const rejected = await Api.run(pipeline, { runDir, ...promiseConnection(b), pollInterval: 0.05 }).then(
        () => undefined,
        (e: unknown) => e
      )
      expect(rejected).toBeInstanceOf(Api.SluiceError)
      expect(rejected).toMatchObject({ tag: "ProviderChanged" })
      expect((rejected as Error).message).toContain(`${a.url}/v1`)
      expect((rejected as Error).message).toContain(`${b.url}/v1`)
      expect((await getLedger(b.url)).batches).toEqual([])
    } finally {
      await a.close()
      await b.close()
    }
  })
})

describe("relative paths resolve against the directory the run was started in", SLOW, () => {
  let emulator: TestEmulator
  let project: TempProject
  let elsewhere: string
  // The emulator's clock: batches move only when the test moves it.
  let now = Date.now()
  const runDir = () => project.path("runs", "paths")
  const sink = () => project.path("out", "labeled.jsonl")

  beforeAll(async () => {
    // One request a second: a 20-request batch takes 20 s of emulator time, a 10-request one 10 s.
    emulator = await startTestEmulator({ clock: () => now, validatingMs: 0, finalizingMs: 0, requestsPerSecond: 1 })
    project = await makeProject()
    elsewhere = await mkdtemp(join(tmpdir(), "sluice-elsewhere-"))
    await writeRows(project, "data/rows.jsonl", 30)
    await writePipeline(project, "p.pipeline.ts") // source data/rows.jsonl, sink out/labeled.jsonl
  }, SLOW.timeout)

  afterAll(async () => {
    await emulator?.close()
    await project?.cleanup()
    await rm(elsewhere, { recursive: true, force: true })
  })

  it("run --detach here, resume from another directory and from /: the same sink, nothing 'moved or deleted'", async () => {
    // With the response cache at its default place (the suite turns it off by default).
    const env = { ...emulatorEnv(emulator.url), SLUICE_CACHE: undefined }
    const started = await runCli(["run", "p.pipeline.ts", ...runFlags("runs/paths", 20, ["--detach"])], { cwd: project.dir, env })
    expect(started.code, describeResult(started)).toBe(3)
    expect((await readManifest(runDir())).baseDir).toBe(realpathSync(project.dir))

    // The 10-request batch has finished, the 20-request one has not.
    now += 15_000
    const fromElsewhere = await runCli(["resume", relative(elsewhere, runDir()), "--poll-interval", "0.05", "--detach"], { cwd: elsewhere, env })
    expect(fromElsewhere.code, describeResult(fromElsewhere)).toBe(3)
    expect(await readSink(sink())).toHaveLength(10)
    expect(await readdir(elsewhere), "nothing written where resume was started").toEqual([])

    // `run` on the run directory from elsewhere would resolve the pipeline's paths there: refused.
    const runElsewhere = await runCli(["run", project.path("p.pipeline.ts"), "--run-dir", runDir()], { cwd: elsewhere, env })
    expectRefused(runElsewhere, `was started in ${realpathSync(project.dir)}`, `sluice resume ${runDir()}`)

    now += 60_000
    const fromRoot = await runCli(["resume", runDir(), "--poll-interval", "0.05"], { cwd: "/", env })
    expect(fromRoot.code, describeResult(fromRoot)).toBe(0)
    expect(fromRoot.stderr).not.toContain("moved or deleted")
    const lines = await readSink(sink())
    expect(lines.map((l) => l.key).sort()).toEqual(makeReviews(30).map((r) => r.id))
    expect(existsSync(project.path(".sluice", "cache")), "the default response cache is in the run's directory").toBe(true)
    expect(await readdir(elsewhere)).toEqual([])
  })

  it("a run whose directory no longer exists: a clear error naming it", async () => {
    const copy = join(elsewhere, "copy")
    await cp(runDir(), copy, { recursive: true })
    const manifest = await readManifest(copy)
    await writeManifest(copy, { ...manifest, baseDir: join(elsewhere, "gone") })
    try {
      const r = await runCli(["resume", copy], { cwd: project.dir, env: emulatorEnv(emulator.url) })
      expectRefused(r, `was started in ${join(elsewhere, "gone")}, which no longer exists`)
    } finally {
      await rm(copy, { recursive: true, force: true })
    }
  })
})

/** Runs `scripts/demo.ts --fast` in `cwd` (a project whose node_modules resolve tsx). */
const runDemo = (cwd: string): Promise<CliResult> =>
  new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", join(repoRoot, "scripts", "demo.ts"), "--fast"], {
      cwd,
      // The demo's point is the response cache, which the test suite turns off by default.
      env: childEnv({ SLUICE_CACHE: undefined }),
      stdio: ["ignore", "pipe", "pipe"]
    })
    let stdout = ""
    let stderr = ""
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d))
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d))
    child.on("error", reject)
    child.on("close", (code, signal) => resolve({ code, signal, stdout, stderr }))
  })

describe("npm run demo", SLOW, () => {
  let project: TempProject
  beforeAll(async () => {
    project = await makeProject("sluice-demo-")
  })
  afterAll(() => project?.cleanup())

  it("run twice, pays once: the second run submits no batch and says it spent nothing", async () => {
    const first = await runDemo(project.dir)
    expect(first.code, describeResult(first)).toBe(0)
    expect(first.stderr).toMatch(/demo: 1,000 rows answered by the emulator in \d+ batches/)
    const port = JSON.parse(await readFile(project.path(".sluice", "demo.json"), "utf8")).port

    const second = await runDemo(project.dir)
    expect(second.code, describeResult(second)).toBe(0)
    expect(second.stderr).toContain("demo: paid once: 1,000 rows answered from the response cache, no batch submitted, $0.00 spent")
    expect(second.stderr).toContain(`emulator listening on http://127.0.0.1:${port}`)

    const runs = (await readdir(project.path(".sluice", "runs"))).sort()
    expect(runs).toHaveLength(2)
    const [one, two] = await Promise.all(runs.map((r) => readJournal(project.path(".sluice", "runs", r))))
    expect(eventsTagged(one!, "Created").length).toBeGreaterThan(0)
    expect(eventsTagged(two!, "SubmitIntent"), "the second run submitted nothing").toEqual([])
    expect(eventsTagged(two!, "ShardPlanned").reduce((n, e) => n + e["cachedRows"], 0)).toBe(1000)
    expect(await readSink(project.path("out", "reviews.labeled.jsonl"))).toHaveLength(1000)
  })
})
