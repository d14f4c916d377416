/**
 * sluice as a user installs it. The workspaces are packed into real tarballs (`npm pack`, with
 * their prepack builds). A new project in a temp directory outside the repository installs them
 * with the `npm install` line the README gives. Then `npx sluice init`, the scaffolded pipeline
 * run against `sluice emulator` in a child process, and against `--emulator`. Then the packages
 * as an application meets them (plain `node`, `tsc`), and the stored help (dist/help.json). Last, Effect 4 installed over it, which
 * the CLI refuses at once.
 *
 * npm uses the machine's npm cache, preferring it to the registry (`npm ci` filled it), so only
 * what is not cached is fetched.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process"
import { createHash } from "node:crypto"
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, relative } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { getLedger, readJsonl, repoRoot } from "./support/cli.js"

interface Result {
  readonly code: number
  readonly stdout: string
  readonly stderr: string
}

const show = (r: Result) => `exit ${r.code}\n--- stdout ---\n${r.stdout}\n--- stderr ---\n${r.stderr}`

// A user's shell: no npm settings from the `npm test` that runs this, no sluice test settings,
// no provider keys or URLs.
const userEnv: NodeJS.ProcessEnv = {
  ...Object.fromEntries(
    Object.entries(process.env).filter(
      ([k]) => !/^npm_/i.test(k) && k !== "INIT_CWD" && !/^(OPENAI|ANTHROPIC|GEMINI|AZURE_OPENAI|GROQ|TOGETHER|SLUICE)_/.test(k)
    )
  ),
  npm_config_prefer_offline: "true",
  npm_config_audit: "false",
  npm_config_fund: "false",
  npm_config_update_notifier: "false"
}

const exec = (command: string, args: ReadonlyArray<string>, cwd: string, env: NodeJS.ProcessEnv = {}): Promise<Result> =>
  new Promise((resolve) => {
    execFile(command, args, { cwd, env: { ...userEnv, ...env }, maxBuffer: 32 * 1024 * 1024 }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === "number" ? error.code : 1
      resolve({ code, stdout, stderr })
    })
  })

// The commands the README's "Use sluice in your project" gives, read from it.
const readme = readFileSync(join(repoRoot, "README.md"), "utf8")
const section = readme.slice(readme.indexOf("## Use sluice in your project"), readme.indexOf("\n## ", readme.indexOf("## Use sluice in your project") + 1))
const readmeLine = (start: string): Array<string> => {
  const line = section.split("\n").find((l) => l.startsWith(start))
  if (line === undefined) throw new Error(`the README's "Use sluice in your project" has no line starting with "${start}"`)
  return line.replace(/#.*$/, "").trim().split(/\s+/)
}

let work: string
let app: string
let emulator: ChildProcess | undefined
let emulatorUrl: string
const sink = () => join(app, "out", "reviews.labeled.jsonl")
const scaffold = ["package.json", "tsconfig.json", "reviews.pipeline.ts", "data/reviews.jsonl", ".gitignore"]
const digest = (file: string) => createHash("sha256").update(readFileSync(join(app, file))).digest("hex")

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), "sluice-packaging-"))
  app = join(work, "reviews")
  mkdirSync(app)
  expect(relative(repoRoot, app).startsWith("..")).toBe(true)
  const packed = await exec("npm", ["pack", "--workspaces", "--pack-destination", app], repoRoot)
  expect(packed.code, show(packed)).toBe(0)
  const install = readmeLine("npm install ./sluice-core-")
  // The README names exactly the tarballs npm pack made.
  expect(install.filter((a) => a.endsWith(".tgz")).sort()).toEqual(readdirSync(app).map((f) => `./${f}`).sort())
  const installed = await exec(install[0]!, install.slice(1), app)
  expect(installed.code, show(installed)).toBe(0)
}, 300_000)

afterAll(async () => {
  if (emulator !== undefined && emulator.exitCode === null) {
    const exited = new Promise((resolve) => emulator!.once("exit", resolve))
    emulator.kill("SIGTERM")
    await exited
  }
  if (work !== undefined) rmSync(work, { recursive: true, force: true })
})

/** `sluice emulator` from the installed package, as a child process on 127.0.0.1. */
const startEmulatorProcess = () =>
  new Promise<string>((resolve, reject) => {
    const child = spawn(process.execPath, [join(app, "node_modules", "@sluice", "runner", "bin", "sluice.js"), "emulator", "--port", "0", "--validating-ms", "20", "--finalizing-ms", "20"], {
      cwd: app,
      env: userEnv,
      stdio: ["ignore", "pipe", "pipe"]
    })
    emulator = child
    let out = ""
    child.stdout.on("data", (chunk: Buffer) => {
      out += chunk.toString()
      const url = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(out)?.[1]
      if (url !== undefined) resolve(url)
    })
    child.stderr.on("data", (chunk: Buffer) => void (out += chunk.toString()))
    child.once("exit", (code) => reject(new Error(`sluice emulator exited with ${code}:\n${out}`)))
  })

/** The sink holds each of the 20 reviews once, each with a label its Schema allows. */
const expectLabeledSink = async () => {
  const ids = (await readJsonl<{ id: string }>(join(app, "data", "reviews.jsonl"))).map((r) => r.id)
  const lines = await readJsonl<{ key: string; input: { id: string }; output: { sentiment: string; topics: Array<string> } }>(sink())
  expect(lines.map((l) => l.input.id).sort()).toEqual([...ids].sort())
  expect(ids).toHaveLength(20)
  for (const line of lines) {
    expect(line.key).toBe(line.input.id)
    expect(["positive", "negative", "mixed"]).toContain(line.output.sentiment)
    expect(Array.isArray(line.output.topics)).toBe(true)
  }
}

describe("packaging: the tarballs in a new project", () => {
  it("npx sluice init scaffolds a project, and a second init keeps every file", async () => {
    const init = readmeLine("npx sluice init")
    const first = await exec(init[0]!, init.slice(1), app)
    expect(first.code, show(first)).toBe(0)
    for (const file of scaffold) expect(existsSync(join(app, file)), file).toBe(true)
    const pkg = JSON.parse(readFileSync(join(app, "package.json"), "utf8"))
    expect(pkg.type).toBe("module")
    expect(pkg.scripts["sluice:emulator"]).toBe("sluice run reviews.pipeline.ts --emulator")
    expect(pkg.scripts["sluice:run"]).toBe("sluice run reviews.pipeline.ts")
    // The install line named these; init keeps them as installed (file: specs).
    expect(pkg.dependencies["@sluice/runner"]).toMatch(/^file:/)
    expect(pkg.dependencies["effect"]).toMatch(/^\^3\./)
    expect(first.stdout).toContain(`added to package.json: "type": "module"; scripts sluice:emulator, sluice:estimate, sluice:run`)
    expect(first.stdout).toContain("npm run sluice:emulator")
    expect(first.stdout).not.toContain("npm install")
    expect(readFileSync(join(app, "data", "reviews.jsonl"), "utf8").trim().split("\n")).toHaveLength(20)
    // sluice is installed here: init ends with a first run against the built-in emulator.
    expect(first.stderr).toContain("a first run, against the built-in emulator")
    expect(first.stderr).toContain("done: 20 rows, 20 succeeded, 0 failed")
    expect(first.stderr).toContain("the emulator charged nothing")
    await expectLabeledSink()

    const before = scaffold.map(digest)
    const second = await exec(init[0]!, init.slice(1), app)
    expect(second.code, show(second)).toBe(0)
    expect(second.stdout).toContain("kept reviews.pipeline.ts (already there)")
    expect(second.stdout).toContain("kept package.json")
    expect(second.stderr).toContain("nothing to do")
    expect(scaffold.map(digest)).toEqual(before)
  }, 120_000)

  it("the scaffolded pipeline type-checks under the scaffolded tsconfig, with the installed TypeScript", async () => {
    const checked = await exec("npx", ["tsc", "--noEmit"], app)
    expect(checked.code, show(checked)).toBe(0)
    expect(realpathSync(join(app, "node_modules", ".bin", "tsc"))).toBe(realpathSync(join(app, "node_modules", "typescript", "bin", "tsc")))
  }, 120_000)

  it("npm run sluice:emulator runs it against the in-process emulator, apart from real runs", async () => {
    const run = readmeLine("npm run sluice:emulator")
    // From scratch: init's first run is forgotten (otherwise there is nothing to do).
    rmSync(join(app, ".sluice"), { recursive: true, force: true })
    rmSync(sink())
    const result = await exec(run[0]!, run.slice(1), app)
    expect(result.code, show(result)).toBe(0)
    expect(result.stderr).toContain("done: 20 rows, 20 succeeded, 0 failed")
    expect(result.stderr).toContain(join(app, ".sluice", "emulator", "runs", "reviews"))
    expect(existsSync(join(app, ".sluice", "runs"))).toBe(false)
    await expectLabeledSink()
    // The emulator lives only as long as the run: nothing to detach from.
    const detached = await exec("npx", ["sluice", "run", "reviews.pipeline.ts", "--emulator", "--detach"], app)
    expect(detached.code, show(detached)).toBe(2)
    expect(detached.stderr).toContain("sluice: error: --emulator: cannot --detach: the emulator lives only as long as the run")
  }, 120_000)

  it("npm run sluice:run runs it against `sluice emulator`, each request submitted once", async () => {
    emulatorUrl = await startEmulatorProcess()
    rmSync(sink())
    const result = await exec("npm", ["run", "sluice:run", "--", "--poll-interval", "0.1"], app, {
      OPENAI_BASE_URL: `${emulatorUrl}/v1`,
      OPENAI_API_KEY: "sk-test-key"
    })
    expect(result.code, show(result)).toBe(0)
    expect(existsSync(join(app, ".sluice", "runs", "reviews", "manifest.json"))).toBe(true)
    await expectLabeledSink()
    const ledger = await getLedger(emulatorUrl)
    expect(ledger.batches).toHaveLength(1)
    expect(ledger.deliveries).toHaveLength(20)
    expect(new Set(ledger.deliveries.map((d) => d.custom_id)).size).toBe(20)
  }, 120_000)

  it("plain node imports the installed packages and runs a pipeline from code", async () => {
    writeFileSync(join(app, "main.js"), consumer)
    const result = await exec(process.execPath, ["main.js"], app, { BASE_URL: `${emulatorUrl}/v1` })
    expect(result.code, show(result)).toBe(0)
    const out = JSON.parse(result.stdout.trim().split("\n").at(-1)!)
    expect(out.succeeded).toBe(2)
    expect(out.labels).toHaveLength(2)
    expect(out.labels[0]).toMatch(/^a:(positive|negative)$/)
    expect(out.runner).toBe("function")
  }, 60_000)

  it("the installed type declarations check a TypeScript consumer, and catch its mistakes", async () => {
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
    // The repository's @types/node: the consumer uses process.env.
    const flags = ["--noEmit", "--strict", "--module", "nodenext", "--moduleResolution", "nodenext", "--target", "es2022", "--skipLibCheck", "--types", "node", "--typeRoots", join(repoRoot, "node_modules", "@types")]
    // One tsc for both (it takes seconds): every error is wrong.ts's misspelt field, none main.ts's.
    const checked = await exec(process.execPath, [tsc, ...flags, "main.ts", "wrong.ts"], app)
    expect(checked.code).not.toBe(0)
    const errors = checked.stdout.split("\n").filter((l) => l.includes("error TS"))
    expect(errors.length, checked.stdout).toBeGreaterThan(0)
    for (const error of errors) expect(error).toMatch(/^wrong\.ts\(4,\d+\): error TS2339: Property 'missing' does not exist/)
  }, 120_000)

  it("the installed sluice answers --help and --version from the texts its prepack stored, and status from its bundle, as its full CLI does", async () => {
    const runner = join(app, "node_modules", "@sluice", "runner")
    // Stored for the installed version: otherwise bin/sluice.js would leave them to the full CLI.
    const stored = JSON.parse(readFileSync(join(runner, "dist", "help.json"), "utf8")) as { help: { version: string; commands: Array<{ name: string }> } }
    expect(stored.help.version).toBe(JSON.parse(readFileSync(join(runner, "package.json"), "utf8")).version)
    expect(stored.help.commands.map((c) => c.name)).toContain("status")
    // The installed bin link itself (what `npx sluice` runs; npx is tested above): each npx
    // start costs as much CPU as the answer it waits for.
    const bin = join(app, "node_modules", ".bin", "sluice")
    for (const args of [["--help"], ["status", "--help"], ["--version"]]) {
      const quick = await exec(bin, args, app)
      // dist/bin.js is the full CLI, without bin/sluice.js's stored answers.
      const full = await exec(process.execPath, [join(runner, "dist", "bin.js"), ...args], app)
      expect(quick.code, show(quick)).toBe(0)
      expect(quick).toEqual(full)
    }
    // Plain `status` runs the bundle the prepack built: the same answers as the full CLI, on a
    // directory that is not a run and (after the runs above) on the project's run directory.
    expect(existsSync(join(runner, "dist", "status.bundle.cjs"))).toBe(true)
    const runs = join(app, ".sluice", "runs")
    const statusArgs = [["status", app], ...(existsSync(runs) ? readdirSync(runs).map((r) => ["status", join(runs, r), "--no-refresh"]) : [])]
    for (const args of statusArgs) {
      const quick = await exec(bin, args, app)
      const full = await exec(process.execPath, [join(runner, "dist", "bin.js"), ...args], app)
      expect(quick.stderr + quick.stdout).not.toMatch(/^\s+at\s/m)
      expect(quick).toEqual(full)
    }
  }, 120_000)

  it("under Effect 4, sluice refuses at once: exit 2, both versions, and the fix", async () => {
    // npm itself refuses effect 4 next to sluice's peer range; a user who forces it gets this.
    const forced = await exec("npm", ["install", "effect@4", "--legacy-peer-deps"], app)
    expect(forced.code, show(forced)).toBe(0)
    const version = JSON.parse(readFileSync(join(app, "node_modules", "effect", "package.json"), "utf8")).version as string
    expect(version).toMatch(/^4\./)
    const batches = (await getLedger(emulatorUrl)).batches.length
    rmSync(join(app, ".sluice"), { recursive: true })
    const result = await exec("npx", ["sluice", "run", "reviews.pipeline.ts"], app, { OPENAI_BASE_URL: `${emulatorUrl}/v1`, OPENAI_API_KEY: "sk-test-key" })
    expect(result.code, show(result)).toBe(2)
    expect(result.stderr).toContain(`found effect ${version} in ${join(app, "node_modules", "effect")}; sluice needs effect ^3.22.2`)
    expect(result.stderr).toContain("runs on Effect 3")
    expect(result.stderr).toContain(`Fix: npm install effect@3   (in ${app})`)
    expect(result.stderr).not.toMatch(/^\s+at\s/m)
    // Refused before anything: no run directory, no batch.
    expect(existsSync(join(app, ".sluice"))).toBe(false)
    expect((await getLedger(emulatorUrl)).batches).toHaveLength(batches)
  }, 120_000)
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
