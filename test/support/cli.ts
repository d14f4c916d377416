/**
 * Helpers for the end-to-end tests: temp projects that can load a `.ts` pipeline file, the
 * real `sluice` CLI as a child process, and the emulator's test API (`/_emulator/...`).
 */
import { type ChildProcess, spawn } from "node:child_process"
import { mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { dirname, join, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { startEmulator } from "@sluice/emulator"
import type { EmulatorHandle, EmulatorOptions } from "@sluice/emulator"

/** The repository root, from this file's location (test/support/cli.ts). */
export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..")

/** The `sluice` executable as installed by the workspace (registers tsx, then runs the CLI). */
export const sluiceBin = join(repoRoot, "packages", "runner", "bin", "sluice.js")

/** Small, fast emulator settings for tests. */
/** The full CLI's entry (dist/bin.js), without bin/sluice.js's quick answers in front. */
export const fullCli = join(repoRoot, "packages", "runner", "dist", "bin.js")

/** What `node <args>` wrote and how it exited. */
export interface NodeResult {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

/** Runs `node <nodeArgs>` in `cwd` with the test's child environment plus `env`. */
export const runNode = (nodeArgs: ReadonlyArray<string>, cwd: string, env: Record<string, string | undefined> = {}): Promise<NodeResult> =>
  new Promise((resolve, reject) => {
    const child = spawn(process.execPath, nodeArgs, { cwd, env: childEnv(env), stdio: ["ignore", "pipe", "pipe"] })
    let stdout = ""
    let stderr = ""
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d))
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d))
    child.on("error", reject)
    child.on("close", (code) => resolve({ code, stdout, stderr }))
  })

export const fastEmulator: EmulatorOptions = { validatingMs: 20, finalizingMs: 20, requestsPerSecond: 2000 }

// ---------------------------------------------------------------------------------------------
// Temp projects
// ---------------------------------------------------------------------------------------------

export interface TempProject {
  readonly dir: string
  /** Absolute path of a file in the project. */
  readonly path: (...parts: Array<string>) => string
  readonly cleanup: () => Promise<void>
}

/**
 * A temp directory that can hold an ESM pipeline file: a package.json with `"type": "module"`
 * and `node_modules` linked to the repository's, so `@sluice/core` and `effect` resolve.
 */
export const makeProject = async (prefix = "sluice-e2e-"): Promise<TempProject> => {
  const dir = await mkdtemp(join(tmpdir(), prefix))
  await writeFile(join(dir, "package.json"), JSON.stringify({ name: "sluice-e2e-project", private: true, type: "module" }, null, 2) + "\n")
  await symlink(join(repoRoot, "node_modules"), join(dir, "node_modules"), "junction")
  return {
    dir,
    path: (...parts) => join(dir, ...parts),
    cleanup: () => rm(dir, { recursive: true, force: true })
  }
}

export interface Row {
  readonly id: string
  readonly text: string
}

const moods = ["I love it, works great", "Terrible, broke after a day", "It is fine, nothing special", "Shipping was slow but the quality is good"]

/** The rows `writeRows` writes: ids `r0001`… and a varied review text. */
export const makeRows = (n: number, prefix = "r"): Array<Row> =>
  Array.from({ length: n }, (_, i) => ({
    id: `${prefix}${String(i + 1).padStart(4, "0")}`,
    text: `${moods[i % moods.length]} (review ${i + 1})`
  }))

/** Writes `rows` (or `n` generated rows) as JSONL at `relPath` in the project; returns the rows. */
export const writeRows = async (project: TempProject, relPath: string, rowsOrCount: number | ReadonlyArray<Row>): Promise<ReadonlyArray<Row>> => {
  const rows = typeof rowsOrCount === "number" ? makeRows(rowsOrCount) : rowsOrCount
  await writeText(project, relPath, rows.map((r) => JSON.stringify(r)).join("\n") + "\n")
  return rows
}

/** Writes raw JSONL lines (for malformed input); line i of the file is lines[i - 1]. */
export const writeLines = (project: TempProject, relPath: string, lines: ReadonlyArray<string>): Promise<void> =>
  writeText(project, relPath, lines.join("\n") + "\n")

export const writeText = async (project: TempProject, relPath: string, text: string): Promise<void> => {
  const file = project.path(relPath)
  await mkdir(dirname(file), { recursive: true })
  await writeFile(file, text)
}

export interface PipelineSpec {
  /** Pipeline name (default "e2e"). */
  readonly name?: string
  /** The JSONL source, relative to the CLI's working directory (default "data/rows.jsonl"). */
  readonly source?: string
  /** The sink, relative to the CLI's working directory (default "out/labeled.jsonl"). */
  readonly sink?: string
  readonly provider?: string
  readonly model?: string
  readonly onInvalid?: "fail" | "skip"
}

/** The sentiments the Label schema of `pipelineSource` allows. */
export const sentiments: ReadonlyArray<string> = ["positive", "negative", "neutral"]

/** A pipeline file: row Schema {id, text}, a Label with a sentiment literal union and topics. */
export const pipelineSource = (spec: PipelineSpec = {}): string => {
  const onInvalid = spec.onInvalid === undefined ? "" : `, onInvalid: ${JSON.stringify(spec.onInvalid)}`
  return `import { Pipeline, Prompt, Sink, Source } from "@sluice/core"
import { Schema } from "effect"

const Review = Schema.Struct({ id: Schema.String, text: Schema.String })
const Label = Schema.Struct({
  sentiment: Schema.Literal(${sentiments.map((s) => JSON.stringify(s)).join(", ")}),
  topics: Schema.Array(Schema.String)
})

export default Pipeline.make(${JSON.stringify(spec.name ?? "e2e")}).pipe(
  Pipeline.from(Source.jsonl(${JSON.stringify(spec.source ?? "data/rows.jsonl")}, Review), { key: (r) => r.id${onInvalid} }),
  Pipeline.batch("label", {
    provider: ${JSON.stringify(spec.provider ?? "openai")},
    model: ${JSON.stringify(spec.model ?? "gpt-4o-mini")},
    prompt: (r) => Prompt.chat({ system: "You label product reviews.", user: r.text }),
    output: Label
  }),
  Pipeline.to(Sink.jsonl(${JSON.stringify(spec.sink ?? "out/labeled.jsonl")}))
)
`
}

/** Writes a pipeline file built by `pipelineSource`; returns its absolute path. */
export const writePipeline = async (project: TempProject, relPath: string, spec: PipelineSpec = {}): Promise<string> => {
  await writeText(project, relPath, pipelineSource(spec))
  return project.path(relPath)
}

// ---------------------------------------------------------------------------------------------
// The CLI
// ---------------------------------------------------------------------------------------------

export interface CliResult {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly stdout: string
  readonly stderr: string
}

export interface RunCliOptions {
  readonly cwd: string
  /** Added to the child's environment; `undefined` removes a variable. */
  readonly env?: Readonly<Record<string, string | undefined>>
  /** Kill the child (SIGKILL) after this long (default 150 s). */
  readonly timeoutMs?: number
}

/**
 * The environment of a child: this process's, without any provider settings of the developer's
 * shell (so a real key can never be used), with type checking off (it costs seconds per run;
 * test/typecheck.e2e.test.ts turns it on with `SLUICE_TYPECHECK: undefined`), plus `extra`.
 */
export const childEnv = (extra: Readonly<Record<string, string | undefined>> = {}): NodeJS.ProcessEnv => {
  const env: NodeJS.ProcessEnv = {}
  for (const [k, v] of Object.entries(process.env)) {
    if (/^(OPENAI|ANTHROPIC|AZURE_OPENAI|GEMINI)_/.test(k)) continue
    env[k] = v
  }
  env["NO_COLOR"] = "1"
  env["FORCE_COLOR"] = "0"
  env["SLUICE_TYPECHECK"] = "off"
  for (const [k, v] of Object.entries(extra)) {
    if (v === undefined) delete env[k]
    else env[k] = v
  }
  return env
}

/** Spawns `node <sluice.js> ...args`. */
export const spawnCli = (args: ReadonlyArray<string>, options: RunCliOptions): ChildProcess =>
  spawn(process.execPath, [sluiceBin, ...args], {
    cwd: options.cwd,
    env: childEnv(options.env),
    stdio: ["ignore", "pipe", "pipe"]
  })

/** `sluice emulator --port 0 …args` as a child process; resolves with its URL once it listens. */
export const startCliEmulator = async (args: ReadonlyArray<string>, cwd: string): Promise<{ url: string; child: ChildProcess }> => {
  const child = spawnCli(["emulator", "--port", "0", ...args], { cwd })
  let output = ""
  child.stderr!.setEncoding("utf8").on("data", (d: string) => (output += d))
  const url = await new Promise<string>((resolve, reject) => {
    // A bound for a hung start, far above a start on a saturated machine.
    const timer = setTimeout(() => reject(new Error(`no URL printed within 120 s: ${output}`)), 120_000)
    child.stdout!.setEncoding("utf8").on("data", (d: string) => {
      output += d
      const m = /http:\/\/127\.0\.0\.1:\d+/.exec(output)
      if (m !== null) {
        clearTimeout(timer)
        resolve(m[0])
      }
    })
    child.on("exit", (code) => {
      clearTimeout(timer)
      reject(new Error(`the emulator exited (code ${code}): ${output}`))
    })
  })
  return { url, child }
}

/** Runs the CLI to completion and captures its output. */
export const runCli = (args: ReadonlyArray<string>, options: RunCliOptions): Promise<CliResult> =>
  new Promise((resolvePromise, reject) => {
    const child = spawnCli(args, options)
    let stdout = ""
    let stderr = ""
    child.stdout!.setEncoding("utf8").on("data", (d: string) => (stdout += d))
    child.stderr!.setEncoding("utf8").on("data", (d: string) => (stderr += d))
    const timer = setTimeout(() => {
      stderr += `\n[test harness] killed after ${options.timeoutMs ?? 150_000} ms\n`
      child.kill("SIGKILL")
    }, options.timeoutMs ?? 150_000)
    child.on("error", (e) => {
      clearTimeout(timer)
      reject(e)
    })
    child.on("close", (code, signal) => {
      clearTimeout(timer)
      resolvePromise({ code, signal, stdout, stderr })
    })
  })

/** The environment that points the CLI's `openai` provider at an emulator. */
export const emulatorEnv = (emulatorUrl: string, apiKey = "sk-test-fake-key"): Record<string, string> => ({
  OPENAI_BASE_URL: `${emulatorUrl}/v1`,
  OPENAI_API_KEY: apiKey
})

/** Fast CLI flags for runs against the test emulator. */
export const fastRunFlags = (shardSize: number): Array<string> => ["--poll-interval", "0.05", "--shard-size", String(shardSize)]

/** Output for an assertion message. */
export const describeResult = (r: CliResult): string =>
  `exit code ${r.code} (signal ${r.signal})\n--- stdout ---\n${r.stdout}\n--- stderr ---\n${r.stderr}`

/** Lines that look like a JavaScript stack trace. */
export const stackTraceLines = (text: string): Array<string> => text.split("\n").filter((l) => /^\s+at\s/.test(l))

// ---------------------------------------------------------------------------------------------
// The emulator
// ---------------------------------------------------------------------------------------------

export interface TestEmulator extends EmulatorHandle {
  /** Access log: one line per HTTP request, e.g. "POST /v1/files -> 200 1.2ms". */
  readonly log: Array<string>
  /** How many requests so far had this method and `/v1/...` path (no query), any status. */
  readonly calls: (method: string, path: string) => number
}

/** Starts the emulator in this process on 127.0.0.1, port 0, recording its access log. */
export const startTestEmulator = async (options: EmulatorOptions = {}): Promise<TestEmulator> => {
  const log: Array<string> = []
  const handle = await startEmulator({ ...fastEmulator, ...options, port: 0, log: (line) => void log.push(line) })
  return {
    url: handle.url,
    port: handle.port,
    close: () => handle.close(),
    log,
    calls: (method, path) => log.filter((l) => l.startsWith(`${method} ${path} `) || l.startsWith(`${method} ${path}?`)).length
  }
}

export interface LedgerBatch {
  readonly id: string
  readonly created_at: number
  readonly status: string
  readonly metadata: Readonly<Record<string, string>> | null
  readonly input_file_id: string
  readonly custom_ids: ReadonlyArray<string>
}

export interface Ledger {
  readonly batches: ReadonlyArray<LedgerBatch>
  /** One entry per custom_id delivered as a success in an output file. */
  readonly deliveries: ReadonlyArray<{ readonly custom_id: string; readonly batch_id: string }>
}

/** The ledger; `apiKey`: the emulator's key, when it has one (the test API takes it too). */
export const getLedger = async (emulatorUrl: string, apiKey?: string): Promise<Ledger> => {
  const response = await fetch(`${emulatorUrl}/_emulator/ledger`, apiKey === undefined ? undefined : { headers: { authorization: `Bearer ${apiKey}` } })
  if (!response.ok) throw new Error(`GET /_emulator/ledger -> ${response.status}: ${await response.text()}`)
  return (await response.json()) as Ledger
}

/** Files the emulator holds with purpose "batch" (uploads), over all pages. */
export const listUploads = async (emulatorUrl: string, apiKey = "sk-test-fake-key"): Promise<Array<{ id: string; filename: string }>> => {
  const response = await fetch(`${emulatorUrl}/v1/files?purpose=batch&limit=10000`, { headers: { authorization: `Bearer ${apiKey}` } })
  if (!response.ok) throw new Error(`GET /v1/files -> ${response.status}: ${await response.text()}`)
  const body = (await response.json()) as { data: Array<{ id: string; filename: string }>; has_more: boolean }
  if (body.has_more) throw new Error("more than 10,000 uploads: paginate")
  return body.data
}

// ---------------------------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------------------------

/** Parses a JSONL file (blank lines ignored). */
export const readJsonl = async <A = any>(file: string): Promise<Array<A>> =>
  (await readFile(file, "utf8"))
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => JSON.parse(l) as A)

/** Every regular file under `dir`, recursively (absolute paths). */
export const listFilesRecursive = async (dir: string): Promise<Array<string>> => {
  const out: Array<string> = []
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const full = join(dir, entry.name)
    if (entry.isDirectory()) out.push(...(await listFilesRecursive(full)))
    else if (entry.isFile()) out.push(full)
  }
  return out
}

/** The files under `dir` whose bytes contain `needle`. */
export const filesContaining = async (dir: string, needle: string): Promise<Array<string>> => {
  const hits: Array<string> = []
  for (const file of await listFilesRecursive(dir)) {
    if ((await readFile(file)).includes(Buffer.from(needle, "utf8"))) hits.push(file)
  }
  return hits
}

/** Removes ANSI escape sequences (help text is styled). */
export const stripAnsi = (text: string): string => text.replace(/\u001b\[[0-9;]*[A-Za-z]/g, "")
