/**
 * Loads a pipeline file (`.ts` works without a build: the CLI runs under tsx) and checks
 * that it exports a pipeline.
 */
import { Pipeline } from "@sluice/core"
import { Effect, Schema } from "effect"
import { existsSync } from "node:fs"
import { dirname, resolve } from "node:path"
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
      catch: (e) =>
        new PipelineLoadError({ file, description: `cannot load: ${e instanceof Error ? e.message.split("\n")[0] : String(e)}` })
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
