/**
 * The packages as a user's application meets them: built JavaScript with type declarations,
 * imported by plain `node` (no tsx) and type-checked by `tsc` from a separate project.
 */
import { execFile } from "node:child_process"
import { mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { promisify } from "node:util"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { startEmulator } from "@sluice/emulator"
import type { EmulatorHandle } from "@sluice/emulator"
import { repoRoot } from "./support/cli.js"

const run = promisify(execFile)

let emulator: EmulatorHandle
let app: string

beforeAll(async () => {
  emulator = await startEmulator({ validatingMs: 20, finalizingMs: 20, requestsPerSecond: 2000 })
  app = mkdtempSync(join(tmpdir(), "sluice-app-"))
  writeFileSync(join(app, "package.json"), JSON.stringify({ name: "app", private: true, type: "module" }))
  // node_modules as npm would lay it out for an app depending on @sluice/core and @sluice/runner.
  mkdirSync(join(app, "node_modules", "@sluice"), { recursive: true })
  for (const pkg of ["core", "providers", "runner"]) {
    symlinkSync(join(repoRoot, "packages", pkg), join(app, "node_modules", "@sluice", pkg), "dir")
  }
  for (const dep of ["effect", "@effect", "@types", "typescript"]) {
    symlinkSync(join(repoRoot, "node_modules", dep), join(app, "node_modules", dep), "dir")
  }
})

afterAll(async () => {
  await emulator?.close()
})

const consumer = `
import { Pipeline, Prompt, Source } from "@sluice/core"
import { Runner } from "@sluice/runner"
import { run, outputs } from "@sluice/runner/promise"
import { Schema } from "effect"

const Label = Schema.Struct({ sentiment: Schema.Literal("positive", "negative") })
const pipeline = Pipeline.make("app").pipe(
  Pipeline.from(Source.array([{ id: "a", text: "great" }, { id: "b", text: "awful" }]), { key: (r) => r.id }),
  Pipeline.batch("label", { provider: "openai", model: "gpt-4o-mini", prompt: (r) => Prompt.chat({ user: r.text }), output: Label })
)
const summary = await run(pipeline, { runDir: "run", pollInterval: 0.05, openai: { baseUrl: process.env.BASE_URL, apiKey: "k" } })
const labels = []
for await (const r of outputs(pipeline, "run")) labels.push(r.input.id + ":" + r.output.sentiment)
console.log(JSON.stringify({ succeeded: summary.succeeded, labels: labels.sort(), runner: typeof Runner.run }))
`

describe("packaging", () => {
  it("plain node imports the built packages and runs a pipeline", async () => {
    writeFileSync(join(app, "main.js"), consumer)
    const { stdout } = await run(process.execPath, ["main.js"], { cwd: app, env: { ...process.env, BASE_URL: `${emulator.url}/v1` } })
    const result = JSON.parse(stdout.trim().split("\n").at(-1)!)
    expect(result.succeeded).toBe(2)
    expect(result.labels).toHaveLength(2)
    expect(result.labels[0]).toMatch(/^a:(positive|negative)$/)
    expect(result.runner).toBe("function")
  })

  it("the type declarations check a TypeScript consumer, and catch its mistakes", async () => {
    writeFileSync(join(app, "main.ts"), consumer.replace("const labels = []", "const labels: Array<string> = []"))
    writeFileSync(
      join(app, "wrong.ts"),
      `import { Pipeline, Prompt, Source } from "@sluice/core"
Pipeline.make("x").pipe(
  Pipeline.from(Source.array([{ id: "a" }])),
  Pipeline.batch("s", { provider: "openai", model: "m", prompt: (r) => Prompt.chat({ user: r.missing }) })
)
`
    )
    const tsc = join(repoRoot, "node_modules", "typescript", "bin", "tsc")
    const flags = ["--noEmit", "--strict", "--module", "nodenext", "--moduleResolution", "nodenext", "--target", "es2022", "--skipLibCheck", "--types", "node"]
    await run(process.execPath, [tsc, ...flags, "main.ts"], { cwd: app })
    const failed = await run(process.execPath, [tsc, ...flags, "wrong.ts"], { cwd: app }).then(
      () => undefined,
      (e: { stdout: string }) => e.stdout
    )
    expect(failed).toContain("missing")
  }, 120_000)
})
