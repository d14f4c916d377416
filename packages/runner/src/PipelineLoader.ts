/**
 * Loads a pipeline file (`.ts` works without a build: the CLI runs under tsx) and checks
 * that it exports a pipeline. Loading runs the file's code: `resume` and `retry` load only the
 * file a run recorded, with the SHA-256 it recorded (`expect`), checked on the bytes read just
 * before the import. The hash covers the pipeline file itself, not the modules it imports.
 */
import { Pipeline } from "@sluice/core"
import { Effect, Schema } from "effect"
import { existsSync } from "node:fs"
import { dirname, relative, resolve } from "node:path"
import { pathToFileURL } from "node:url"
import * as EffectVersion from "./EffectVersion.js"
import { sha256Of } from "./internal/fileHash.js"

export class PipelineLoadError extends Schema.TaggedError<PipelineLoadError>()("PipelineLoadError", {
  file: Schema.String,
  description: Schema.String
}) {
  override get message(): string {
    return `${this.file}: ${this.description}`
  }
}

/**
 * What a failed import says. tsx passes on esbuild's "Transform failed with 1 error:" with
 * each error on a later line as `file:line:col: ERROR: text` (the column 0-based): those
 * become `file:line:col text` like the type checker's, the file relative to the current
 * directory. Anything else: its first line.
 */
export const loadErrorText = (e: unknown, cwd = process.cwd()): string => {
  const text = e instanceof Error ? e.message : String(e)
  const [first = "", ...rest] = text.split("\n")
  if (!/^Transform failed with \d+ errors?:/.test(first) || rest.length === 0) return `cannot load: ${first}`
  const errors = rest.map((line) => {
    const located = /^(.+?):(\d+):(\d+): ERROR: (.*)$/.exec(line)
    if (located === null) return line.replace(/^error: /, "")
    const [, path, row, column, message] = located
    return `${relative(cwd, path!) || path}:${row}:${Number(column) + 1} ${message}`
  })
  return `does not compile:\n${errors.join("\n")}`
}

/** A run's pipeline file is not the one the run recorded: it is not loaded. */
export class PipelineFileChanged extends Schema.TaggedError<PipelineFileChanged>()("PipelineFileChanged", {
  file: Schema.String,
  runDir: Schema.String,
  /** The SHA-256 the run recorded. */
  recorded: Schema.String,
  /** The SHA-256 of the file now. */
  current: Schema.String
}) {
  override get message(): string {
    return (
      `${this.file} changed since run ${this.runDir} recorded it (sha256 ${this.recorded} when recorded, ${this.current} now): ` +
      `resume and retry run only the pipeline file the run recorded, and --allow-changed does not change that. ` +
      `To continue the run with the file as it is now, name it yourself: sluice run ${this.file} --run-dir ${this.runDir} ` +
      `(with --allow-changed if its requests changed)`
    )
  }
}

/** The SHA-256 (hex) of a file's bytes. */
export { sha256Of } from "./internal/fileHash.js"

let tsxRegistered = false

/** Lets `import()` load TypeScript (tsx's loader), once per process. */
const registerTsx = async () => {
  if (tsxRegistered) return
  const { register } = await import("tsx/esm/api")
  register()
  tsxRegistered = true
}

/** Checks that `file` exists and, with `expect`, has the SHA-256 a run recorded; returns its SHA-256. */
export const verify = (file: string, expect?: { readonly sha256: string; readonly runDir: string }) =>
  Effect.gen(function* () {
    const absolute = resolve(file)
    if (!existsSync(absolute)) {
      return yield* new PipelineLoadError({ file, description: `no such file in ${dirname(absolute)} (sluice init starts a project with a pipeline file)` })
    }
    const sha256 = yield* Effect.try({
      try: () => sha256Of(absolute),
      catch: (e) => new PipelineLoadError({ file, description: `cannot read it: ${e instanceof Error ? e.message : String(e)}` })
    })
    if (expect !== undefined && expect.sha256 !== sha256) {
      return yield* new PipelineFileChanged({ file: absolute, runDir: expect.runDir, recorded: expect.sha256, current: sha256 })
    }
    return sha256
  })

/**
 * Loads a pipeline file. `byVersion` (a long-lived worker, Cluster.ts): each version of the file
 * (by SHA-256) is imported as a module of its own, where a process otherwise keeps the first one
 * it imported from a path. (Modules the file imports are still imported once.)
 */
export const load = (file: string, expect?: { readonly sha256: string; readonly runDir: string }, options?: { readonly byVersion?: boolean }) =>
  Effect.gen(function* () {
    const absolute = resolve(file)
    if (!existsSync(absolute)) {
      return yield* new PipelineLoadError({ file, description: `no such file in ${dirname(absolute)} (sluice init starts a project with a pipeline file)` })
    }
    const mismatch = EffectVersion.pipelineProblem(absolute)
    if (mismatch !== undefined) return yield* new PipelineLoadError({ file, description: mismatch })
    // What is imported is what was hashed, as near as can be: the hash is taken just before.
    const sha256 = yield* verify(file, expect)
    const module = yield* Effect.tryPromise({
      try: async () => {
        await registerTsx()
        const url = pathToFileURL(absolute).href + (options?.byVersion === true ? `?sha256=${sha256}` : "")
        return (await import(url)) as Record<string, unknown>
      },
      catch: (e) => new PipelineLoadError({ file, description: loadErrorText(e) })
    })
    const candidate = module["default"] ?? module["pipeline"]
    if (!Pipeline.isPipeline(candidate)) {
      return yield* new PipelineLoadError({
        file,
        description: "does not export a pipeline (export default Pipeline.make(...).pipe(...))"
      })
    }
    return { pipeline: candidate as Pipeline.Pipeline<any, any>, file: absolute, sha256 }
  })
