/**
 * Loads a pipeline file (`.ts` works without a build: the CLI runs under tsx) and checks
 * that it exports a pipeline.
 */
import { Pipeline } from "@sluice/core"
import { Effect, Schema } from "effect"
import { existsSync } from "node:fs"
import { dirname, relative, resolve } from "node:path"
import { pathToFileURL } from "node:url"
import * as EffectVersion from "./EffectVersion.js"

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

let tsxRegistered = false

/** Lets `import()` load TypeScript (tsx's loader), once per process. */
const registerTsx = async () => {
  if (tsxRegistered) return
  const { register } = await import("tsx/esm/api")
  register()
  tsxRegistered = true
}

export const load = (file: string) =>
  Effect.gen(function* () {
    const absolute = resolve(file)
    if (!existsSync(absolute)) {
      return yield* new PipelineLoadError({ file, description: `no such file in ${dirname(absolute)} (sluice init starts a project with a pipeline file)` })
    }
    const mismatch = EffectVersion.pipelineProblem(absolute)
    if (mismatch !== undefined) return yield* new PipelineLoadError({ file, description: mismatch })
    const module = yield* Effect.tryPromise({
      try: async () => {
        await registerTsx()
        return (await import(pathToFileURL(absolute).href)) as Record<string, unknown>
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
    return { pipeline: candidate as Pipeline.Pipeline<any, any>, file: absolute }
  })
