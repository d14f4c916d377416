/**
 * `sluice init [dir]`: a project with a first pipeline that runs at once against the built-in
 * emulator, and for real with an API key.
 *
 * It never overwrites a file. An existing package.json gets what it lacks (scripts,
 * dependencies, `"type": "module"` where that is safe), an existing .gitignore the lines it
 * lacks; any other file that exists is kept. The report says what was done to each.
 * The files come from `templates/init/` of this package.
 */
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import type { PlatformError } from "@effect/platform/Error"
import { Effect, Schema } from "effect"
import { fileURLToPath } from "node:url"
import { installSpec, locate, runner, satisfies } from "./internal/Installed.js"

export class InitError extends Schema.TaggedError<InitError>()("InitError", {
  path: Schema.String,
  description: Schema.String
}) {
  override get message(): string {
    return `${this.path}: ${this.description}`
  }
}

export interface InitReport {
  /** The project directory, absolute. */
  readonly dir: string
  /** What was done, a line per file: "created tsconfig.json", "kept …", "added to …". */
  readonly done: ReadonlyArray<string>
  /** The commands to type next, each with what it does. */
  readonly next: ReadonlyArray<readonly [command: string, what: string]>
  /** The pipeline file, relative to `dir`. */
  readonly pipelineFile: string
  /** Whether the project's dependencies are installed, so its pipeline can run now. */
  readonly installed: boolean
}

const templates = fileURLToPath(new URL("../templates/init/", import.meta.url))

const effectRange = runner.peerDependencies?.["effect"] ?? "^3.22.2"

/** What the project depends on directly: its files import @sluice/core and effect, and run the `sluice` bin. */
const dependencies: Readonly<Record<string, string>> = {
  "@sluice/core": `^${runner.version}`,
  "@sluice/runner": `^${runner.version}`,
  effect: effectRange
}

const scriptsFor = (pipelineFile: string): Readonly<Record<string, string>> => ({
  "sluice:emulator": `sluice run ${pipelineFile} --emulator`,
  "sluice:estimate": `sluice estimate ${pipelineFile}`,
  "sluice:run": `sluice run ${pipelineFile}`
})

const gitignoreLines = ["node_modules/", ".sluice/", "out/"]

type Json = Record<string, unknown>

const isRecord = (u: unknown): u is Json => typeof u === "object" && u !== null && !Array.isArray(u)

export const init = (target: string) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const dir = path.resolve(target)
    const done: Array<string> = []
    const failed = (file: string) => (e: PlatformError) =>
      new InitError({ path: file, description: e._tag === "SystemError" && e.reason === "PermissionDenied" ? "permission denied" : e.message })

    const info = yield* fs.stat(dir).pipe(Effect.option)
    if (info._tag === "Some" && info.value.type !== "Directory") {
      return yield* new InitError({ path: dir, description: "is a file; sluice init needs a directory (or a new name for one)" })
    }
    yield* fs.makeDirectory(dir, { recursive: true }).pipe(Effect.mapError(failed(dir)))

    /** Writes `rel` unless it exists; true when written. */
    const createFile = (rel: string, content: string, note = "") =>
      fs.writeFileString(path.join(dir, rel), content, { flag: "wx" }).pipe(
        Effect.as(true),
        Effect.catchIf(
          (e) => e._tag === "SystemError" && e.reason === "AlreadyExists",
          () => Effect.succeed(false)
        ),
        Effect.mapError(failed(path.join(dir, rel))),
        Effect.tap((created) => done.push(created ? `created ${rel}${note}` : `kept ${rel} (already there)`))
      )
    const template = (rel: string) => fs.readFileString(path.join(templates, rel)).pipe(Effect.orDie)

    // package.json: created whole, or completed.
    const pkgFile = path.join(dir, "package.json")
    const existing = yield* fs.readFileString(pkgFile).pipe(
      Effect.map((text) => ({ text })),
      Effect.catchIf(
        (e) => e._tag === "SystemError" && e.reason === "NotFound",
        () => Effect.succeed(undefined)
      ),
      Effect.mapError(failed(pkgFile))
    )
    let pkg: Json
    if (existing === undefined) {
      pkg = { name: path.basename(dir).toLowerCase().replace(/[^a-z0-9._-]+/g, "-").replace(/^[._-]+/, "") || "sluice-project", private: true, type: "module" }
    } else {
      const parsed = yield* Effect.try(() => JSON.parse(existing.text) as unknown).pipe(
        Effect.mapError((e) => new InitError({ path: pkgFile, description: `is not valid JSON (${e.error instanceof Error ? e.error.message : String(e.error)}); fix it, then run sluice init again` }))
      )
      if (!isRecord(parsed)) return yield* new InitError({ path: pkgFile, description: "is not a JSON object; fix it, then run sluice init again" })
      pkg = parsed
    }
    const added: Array<string> = []
    // The pipeline file is an ES module: by the package's "type", or by its own name (.mts).
    let esm = pkg["type"] === "module"
    if (pkg["type"] === undefined && existing !== undefined) {
      // A package without "type" is CommonJS; declaring it a module is safe only if it has no JavaScript of its own.
      const entries = yield* fs.readDirectory(dir).pipe(Effect.mapError(failed(dir)))
      if (pkg["main"] === undefined && !entries.some((e) => /\.(c?js|jsx)$/.test(e))) {
        const entries = Object.entries(pkg)
        const at = entries.findIndex(([key]) => !["name", "version", "private", "description"].includes(key))
        entries.splice(at < 0 ? entries.length : at, 0, ["type", "module"])
        pkg = Object.fromEntries(entries)
        added.push(`"type": "module"`)
        esm = true
      }
    }
    const pipelineFile = esm ? "reviews.pipeline.ts" : "reviews.pipeline.mts"
    const scripts: Json = isRecord(pkg["scripts"]) ? pkg["scripts"] : {}
    const ours = scriptsFor(pipelineFile)
    const newScripts = Object.keys(ours).filter((name) => scripts[name] === undefined)
    for (const name of newScripts) scripts[name] = ours[name]
    if (newScripts.length > 0) added.push(`scripts ${newScripts.join(", ")}`)
    for (const name of Object.keys(ours)) {
      if (!newScripts.includes(name) && scripts[name] !== ours[name]) done.push(`kept scripts.${name} (already there, runs something else)`)
    }
    pkg["scripts"] = scripts
    const deps: Json = isRecord(pkg["dependencies"]) ? pkg["dependencies"] : {}
    const devDeps: Json = isRecord(pkg["devDependencies"]) ? pkg["devDependencies"] : {}
    const newDeps = Object.keys(dependencies).filter((name) => deps[name] === undefined && devDeps[name] === undefined)
    for (const name of newDeps) deps[name] = dependencies[name]
    if (newDeps.length > 0) added.push(`dependencies ${newDeps.map((n) => `${n} ${dependencies[n]}`).join(", ")}`)
    pkg["dependencies"] = deps
    const effectSpec = deps["effect"] ?? devDeps["effect"]
    if (typeof effectSpec === "string" && /^[\^~]?[4-9]|^latest$/.test(effectSpec.trim())) {
      done.push(`kept dependency effect ${effectSpec}: sluice needs effect ${effectRange} (npm install ${installSpec("effect", effectRange)})`)
    }
    if (existing === undefined) {
      yield* fs.writeFileString(pkgFile, JSON.stringify(pkg, null, 2) + "\n", { flag: "wx" }).pipe(Effect.mapError(failed(pkgFile)))
      done.push(`created package.json`)
    } else if (added.length > 0) {
      const indent = /^\{\r?\n([ \t]+)"/.exec(existing.text)?.[1] ?? "  "
      yield* fs.writeFileString(pkgFile, JSON.stringify(pkg, null, indent) + "\n").pipe(Effect.mapError(failed(pkgFile)))
      done.push(`added to package.json: ${added.join("; ")}`)
    } else {
      done.push(`kept package.json (it has what sluice needs)`)
    }

    yield* createFile("tsconfig.json", yield* template("tsconfig.json"))
    const pipelineCreated = yield* createFile(pipelineFile, yield* template("reviews.pipeline.ts"))
    yield* fs.makeDirectory(path.join(dir, "data"), { recursive: true }).pipe(Effect.mapError(failed(path.join(dir, "data"))))
    const data = yield* template("data/reviews.jsonl")
    yield* createFile("data/reviews.jsonl", data, ` (${data.trim().split("\n").length} reviews)`)

    // .gitignore: the run directories and outputs stay out of git.
    const gitignore = path.join(dir, ".gitignore")
    const ignored = yield* fs.readFileString(gitignore).pipe(
      Effect.map((text) => ({ text })),
      Effect.catchIf(
        (e) => e._tag === "SystemError" && e.reason === "NotFound",
        () => Effect.succeed(undefined)
      ),
      Effect.mapError(failed(gitignore))
    )
    if (ignored === undefined) {
      yield* createFile(".gitignore", yield* template("gitignore"))
    } else {
      const have = new Set(ignored.text.split(/\r?\n/).map((l) => l.trim().replace(/^\//, "").replace(/\/$/, "")))
      const missing = gitignoreLines.filter((l) => !have.has(l.replace(/\/$/, "")))
      if (missing.length > 0) {
        const sep = ignored.text === "" || ignored.text.endsWith("\n") ? "" : "\n"
        yield* fs.writeFileString(gitignore, `${ignored.text}${sep}${missing.join("\n")}\n`).pipe(Effect.mapError(failed(gitignore)))
        done.push(`added to .gitignore: ${missing.join(", ")}`)
      } else {
        done.push(`kept .gitignore (it ignores .sluice/ and out/)`)
      }
    }

    // Next: install what is missing, then the two runs.
    const next: Array<readonly [string, string]> = []
    const relative = path.relative(process.cwd(), dir)
    if (relative !== "") next.push([`cd ${relative.includes(" ") ? JSON.stringify(relative) : relative}`, ""])
    const installed = Object.keys(dependencies).every((name) => {
      const found = locate(name, dir)
      return found !== undefined && (name !== "effect" || satisfies(found.version, effectRange))
    })
    if (!installed) next.push(["npm install", "installs sluice and effect 3"])
    const command = (script: string) => (scripts[script] === ours[script] ? `npm run ${script}` : `npx ${ours[script]}`)
    next.push([command("sluice:emulator"), "the pipeline against the built-in emulator: no key, no cost"])
    next.push([`export OPENAI_API_KEY=sk-...`, ""])
    next.push([command("sluice:run"), "the same pipeline through OpenAI's Batch API"])
    if (!esm) done.push(`(this package is CommonJS, so the pipeline file is an ES module by its name: ${pipelineFile})`)
    if (!pipelineCreated) done.push(`(the scripts run the ${pipelineFile} that was already there)`)
    return { dir, done, next, pipelineFile, installed } satisfies InitReport
  })

/** The report as the CLI prints it. */
export const render = (report: InitReport): string => {
  const width = Math.max(...report.next.map(([c]) => c.length))
  return [
    `sluice init: ${report.dir}`,
    ...report.done.map((line) => `  ${line}`),
    "",
    "Next:",
    ...report.next.map(([c, what]) => (what === "" ? `  ${c}` : `  ${c.padEnd(width)}   # ${what}`)),
    "",
    "Outputs go to out/reviews.labeled.jsonl; each run's state to .sluice/ (the emulator's under .sluice/emulator/)."
  ].join("\n")
}
