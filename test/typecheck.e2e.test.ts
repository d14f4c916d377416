/**
 * End to end: the `sluice` CLI type-checks a pipeline file before it plans or sends anything
 * (`run`, `resume`, `check`), shows syntax errors with their location with and without the
 * check, and fails a row whose prompt renders `undefined` instead of sending it without it.
 *
 * The harness turns type checking off for every other test (it costs seconds per call); these
 * turn it on (`SLUICE_TYPECHECK: undefined`) and remember passed checks in the temp project.
 */
import { existsSync } from "node:fs"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import {
  type CliResult,
  describeResult,
  emulatorEnv,
  fastRunFlags,
  getLedger,
  makeProject,
  pipelineSource,
  readJsonl,
  runCli,
  stackTraceLines,
  startTestEmulator,
  type TempProject,
  type TestEmulator,
  writeRows,
  writeText
} from "./support/cli.js"

/** Each fresh type check builds a program over effect's types: seconds on a busy machine. */
const SLOW = { timeout: 180_000 }

/** `file:line:col` (1-based) of the first occurrence of `needle` in `text`, offset by `at` characters into it. */
const locate = (file: string, text: string, needle: string, at = 0): string => {
  const index = text.indexOf(needle)
  if (index < 0) throw new Error(`${needle} is not in ${file}`)
  const before = text.slice(0, index + at).split("\n")
  return `${file}:${before.length}:${before[before.length - 1]!.length + 1}`
}

const expectNoStackTrace = (r: CliResult) => {
  expect(stackTraceLines(r.stderr), describeResult(r)).toEqual([])
}

describe("type-checked runs", SLOW, () => {
  let emulator: TestEmulator
  let project: TempProject
  /** Type checking on, passed checks remembered inside the temp project. */
  const env = (extra: Record<string, string | undefined> = {}) => ({
    ...emulatorEnv(emulator.url),
    SLUICE_TYPECHECK: undefined,
    SLUICE_TYPECHECK_CACHE_DIR: project.path(".typecheck-cache"),
    ...extra
  })
  const batchesCreated = () => emulator.calls("POST", "/v1/batches")

  beforeAll(async () => {
    emulator = await startTestEmulator()
    project = await makeProject("sluice-typecheck-e2e-")
    await writeRows(project, "data/rows.jsonl", 6)
  })

  afterAll(async () => {
    await emulator?.close()
    await project?.cleanup()
  })

  it("a misspelt field: `run` exits 2 with file:line:col and TypeScript's message, and plans nothing", async () => {
    const source = pipelineSource({ name: "misspelt" }).replace("user: r.text", "user: r.txt")
    await writeText(project, "pipelines/misspelt.pipeline.ts", source)
    const before = batchesCreated()

    const r = await runCli(["run", "pipelines/misspelt.pipeline.ts", ...fastRunFlags(10)], { cwd: project.dir, env: env() })

    expect(r.code, describeResult(r)).toBe(2)
    // The file relative to the current directory, at the property that does not exist.
    expect(r.stderr).toContain(
      `${locate("pipelines/misspelt.pipeline.ts", source, "r.txt", 2)} Property 'txt' does not exist on type ` +
        `'{ readonly id: string; readonly text: string; }'. Did you mean 'text'? (TS2551)`
    )
    expect(r.stderr).toContain("pipelines/misspelt.pipeline.ts does not compile (1 error; --no-typecheck skips the check)")
    expectNoStackTrace(r)
    // Nothing planned, nothing sent.
    expect(existsSync(project.path(".sluice", "runs", "misspelt"))).toBe(false)
    expect(batchesCreated()).toBe(before)
  })

  it("a syntax error: exit 2 with file:line:col and the message, with and without --no-typecheck", async () => {
    const source = pipelineSource({ name: "syntax" }).replace('provider: "openai",', 'provider: "openai"')
    await writeText(project, "syntax.pipeline.ts", source)
    // The comma is missing before `model`, on the next line.
    const where = locate("syntax.pipeline.ts", source, "model:")

    const checked = await runCli(["run", "syntax.pipeline.ts", ...fastRunFlags(10)], { cwd: project.dir, env: env() })
    expect(checked.code, describeResult(checked)).toBe(2)
    expect(checked.stderr).toContain(`${where} ',' expected. (TS1005)`)
    expectNoStackTrace(checked)

    // Without the check, from tsx's loader: the location esbuild reports, which was cut off.
    const unchecked = await runCli(["run", "syntax.pipeline.ts", "--no-typecheck", ...fastRunFlags(10)], { cwd: project.dir, env: env() })
    expect(unchecked.code, describeResult(unchecked)).toBe(2)
    expect(unchecked.stderr).toContain("syntax.pipeline.ts: does not compile:")
    expect(unchecked.stderr).toContain(`${where} Expected "}" but found "model"`)
    expectNoStackTrace(unchecked)
    // SLUICE_TYPECHECK=off does what --no-typecheck does.
    const off = await runCli(["check", "syntax.pipeline.ts"], { cwd: project.dir, env: env({ SLUICE_TYPECHECK: "off" }) })
    expect(off.code, describeResult(off)).toBe(2)
    expect(off.stderr).toContain(`${where} Expected "}" but found "model"`)

    expect(existsSync(project.path(".sluice", "runs", "syntax"))).toBe(false)
  })

  /** A valid pipeline with a local it never reads: fine by the defaults, not under noUnusedLocals. */
  const withUnusedLocal = pipelineSource({ name: "checked" }).replace(
    "const Label",
    'const unusedNote = "not read anywhere"\nconst Label'
  )

  it("`sluice check`: one OK line naming the pipeline, its stages, providers and models; an unchanged file is not checked again", async () => {
    await writeText(project, "checked.pipeline.ts", withUnusedLocal)
    const first = await runCli(["check", "checked.pipeline.ts"], { cwd: project.dir, env: env() })
    expect(first.code, describeResult(first)).toBe(0)
    expect(first.stdout.trim()).toBe('ok: checked.pipeline.ts: pipeline "checked", 1 stage: label (openai, gpt-4o-mini); type-checked')

    const second = await runCli(["check", "checked.pipeline.ts"], { cwd: project.dir, env: env() })
    expect(second.code, describeResult(second)).toBe(0)
    expect(second.stdout.trim()).toBe(
      'ok: checked.pipeline.ts: pipeline "checked", 1 stage: label (openai, gpt-4o-mini); type-checked (unchanged since the last check)'
    )
    // Without credentials, check still passes and says what run will need.
    const keyless = await runCli(["check", "checked.pipeline.ts", "--no-typecheck"], { cwd: project.dir, env: env({ OPENAI_API_KEY: undefined }) })
    expect(keyless.code, describeResult(keyless)).toBe(0)
    expect(keyless.stdout).toContain("type check skipped")
    expect(keyless.stderr).toContain("sluice: note: provider openai: OPENAI_API_KEY is not set (run needs it)")
  })

  it("the nearest tsconfig.json counts: a directory whose tsconfig.json turns on noUnusedLocals fails the file the defaults pass", async () => {
    await writeText(project, "checked.pipeline.ts", withUnusedLocal)
    const loose = await runCli(["check", "checked.pipeline.ts"], { cwd: project.dir, env: env() })
    expect(loose.code, describeResult(loose)).toBe(0)

    await writeText(project, "strict/checked.pipeline.ts", withUnusedLocal)
    await writeText(
      project,
      "strict/tsconfig.json",
      JSON.stringify({
        compilerOptions: { target: "ES2022", module: "NodeNext", moduleResolution: "NodeNext", strict: true, skipLibCheck: true, noUnusedLocals: true }
      })
    )
    const strict = await runCli(["check", "strict/checked.pipeline.ts"], { cwd: project.dir, env: env() })
    expect(strict.code, describeResult(strict)).toBe(2)
    expect(strict.stderr).toContain(
      `${locate("strict/checked.pipeline.ts", withUnusedLocal, "unusedNote")} 'unusedNote' is declared but its value is never read. (TS6133)`
    )
    expect(strict.stdout).toBe("")
  })

  it("`sluice check` refuses what `run` would refuse about the definition: an unknown provider, no batch stage", async () => {
    await writeText(project, "typo.pipeline.ts", pipelineSource({ name: "typo", provider: "opneai" }))
    const typo = await runCli(["check", "typo.pipeline.ts", "--no-typecheck"], { cwd: project.dir, env: env() })
    expect(typo.code, describeResult(typo)).toBe(2)
    expect(typo.stderr).toContain('unknown provider "opneai" (known: openai,')
    expect(typo.stdout).toBe("")

    await writeText(
      project,
      "stageless.pipeline.ts",
      `import { Pipeline, Sink, Source } from "@sluice/core"
export default Pipeline.make("stageless").pipe(Pipeline.from(Source.array([{ id: "a" }]), { key: (r) => r.id }), Pipeline.to(Sink.jsonl("out/x.jsonl")))
`
    )
    const stageless = await runCli(["check", "stageless.pipeline.ts", "--no-typecheck"], { cwd: project.dir, env: env() })
    expect(stageless.code, describeResult(stageless)).toBe(2)
    expect(stageless.stderr).toContain('pipeline "stageless" has no batch stage (use Pipeline.batch)')
  })

  it("`resume` type-checks the pipeline the run names, with the modules it imports: broken since, it exits 2 and submits nothing", async () => {
    // The run records the pipeline file's hash, so an edit of the file itself is refused as a
    // changed pipeline; a module it imports is not hashed, and the type check is what catches it.
    const good = pipelineSource({ name: "resumed", sink: "out/resumed.jsonl" })
      .replace('import { Schema } from "effect"', 'import { Schema } from "effect"\nimport { userText } from "./resumed.prompt.js"')
      .replace("user: r.text", "user: userText(r)")
    const prompt = "export const userText = (r: { readonly id: string; readonly text: string }): string => r.text\n"
    await writeText(project, "resumed.prompt.ts", prompt)
    await writeText(project, "resumed.pipeline.ts", good)
    const runDir = project.path(".sluice", "runs", "resumed")
    const started = await runCli(["run", "resumed.pipeline.ts", "--detach", "--no-typecheck", ...fastRunFlags(10)], { cwd: project.dir, env: env() })
    // Detached: exit 3 while the batch runs, 0 if the emulator finished it meanwhile.
    expect([0, 3], describeResult(started)).toContain(started.code)
    const created = batchesCreated()

    const broken = prompt.replace("=> r.text", "=> r.txt")
    await writeText(project, "resumed.prompt.ts", broken)
    const r = await runCli(["resume", runDir, ...fastRunFlags(10).slice(0, 2)], { cwd: project.dir, env: env() })
    expect(r.code, describeResult(r)).toBe(2)
    expect(r.stderr).toContain(`${locate("resumed.prompt.ts", broken, "r.txt", 2)} Property 'txt' does not exist`)
    expect(batchesCreated()).toBe(created)
  })

  it("a prompt part that renders undefined fails its row as render_error, naming the part; the other rows succeed", async () => {
    // `note` is optional: rows without one render `user: undefined`. That type-checks (the
    // field may be undefined), so it is caught when the row renders.
    await writeText(
      project,
      "data/notes.jsonl",
      ["n1", "n2", "n3", "n4", "n5"].map((id, i) => JSON.stringify(i % 2 === 0 ? { id, note: `note ${id}` } : { id })).join("\n") + "\n"
    )
    await writeText(
      project,
      "notes.pipeline.ts",
      `import { Pipeline, Prompt, Sink, Source } from "@sluice/core"
import { Schema } from "effect"

const Row = Schema.Struct({ id: Schema.String, note: Schema.optional(Schema.String) })

export default Pipeline.make("notes").pipe(
  Pipeline.from(Source.jsonl("data/notes.jsonl", Row), { key: (r) => r.id }),
  Pipeline.batch("echo", { provider: "openai", model: "gpt-4o-mini", prompt: (r) => Prompt.chat({ system: "Repeat the note.", user: r.note }) }),
  Pipeline.to(Sink.jsonl("out/notes.jsonl"))
)
`
    )
    const r = await runCli(["run", "notes.pipeline.ts", ...fastRunFlags(10)], { cwd: project.dir, env: env({ SLUICE_TYPECHECK: "off" }) })

    expect(r.code, describeResult(r)).toBe(1)
    const sink = await readJsonl<{ key: string }>(project.path("out", "notes.jsonl"))
    expect(sink.map((l) => l.key).sort()).toEqual(["n1", "n3", "n5"])
    const failures = await readJsonl<{ key: string; code: string; message: string }>(project.path(".sluice", "runs", "notes", "failures.jsonl"))
    expect(failures.map((f) => f.key).sort()).toEqual(["n2", "n4"])
    for (const f of failures) {
      expect(f.code).toBe("render_error")
      expect(f.message).toBe("the prompt failed: Prompt.chat: user is undefined; expected a string")
    }
    // Only the rows with a note reached the provider.
    const ledger = await getLedger(emulator.url)
    const sent = ledger.batches.flatMap((b) => b.custom_ids).filter((id) => id.startsWith("echo-"))
    expect(sent).toHaveLength(3)
  })
})
