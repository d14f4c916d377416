/**
 * `sluice run --emulator`: the built-in emulator, started in this process for the one run, with
 * every provider pointed at it — no key needed, nothing leaves the machine, nothing is paid.
 *
 * Everything an emulator run keeps lives under `.sluice/emulator/`, apart from real runs: its
 * run directories (`runs/<pipeline>`), its response cache, and the emulator's own state and
 * port (`state/<pipeline>`), so a run stopped half-way continues on the next `--emulator` run
 * with the batches it had in flight. The emulator completes a batch at once.
 */
import { startEmulator } from "@sluice/emulator"
import { Effect, Schema } from "effect"
import { readFileSync, writeFileSync } from "node:fs"
import { basename, join } from "node:path"
import { defaultRunDir } from "./Runner.js"
import * as PrivateFiles from "./internal/PrivateFiles.js"

export class LocalEmulatorError extends Schema.TaggedError<LocalEmulatorError>()("LocalEmulatorError", {
  description: Schema.String
}) {
  override get message(): string {
    return `--emulator: ${this.description}`
  }
}

export const root = ".sluice/emulator"

export interface LocalEmulator {
  readonly url: string
  /** The run directory for the pipeline, unless one was given. */
  readonly runDir: string
  /** The response cache of emulator runs, unless one was given. */
  readonly cacheDir: string
}

/** Every provider the registry knows, at the emulator (keys are placeholders: the real ones are never sent). */
const environment = (url: string): Record<string, string | undefined> => ({
  OPENAI_BASE_URL: `${url}/v1`,
  OPENAI_API_KEY: "sluice-emulator",
  ANTHROPIC_BASE_URL: url,
  ANTHROPIC_API_KEY: "sluice-emulator",
  GEMINI_BASE_URL: url,
  GEMINI_API_KEY: "sluice-emulator",
  AZURE_OPENAI_ENDPOINT: url,
  AZURE_OPENAI_API_KEY: "sluice-emulator",
  AZURE_OPENAI_API_VERSION: undefined,
  SLUICE_GATEWAY_BASE_URL: `${url}/gateway/v1`,
  SLUICE_GATEWAY_API_KEY: "sluice-emulator",
  GROQ_BASE_URL: `${url}/openai/v1`,
  GROQ_API_KEY: "sluice-emulator",
  TOGETHER_BASE_URL: `${url}/v1`,
  TOGETHER_API_KEY: "sluice-emulator"
})

const readPort = (file: string): number => {
  try {
    const port = Number(readFileSync(file, "utf8").trim())
    return Number.isInteger(port) && port > 0 && port < 65536 ? port : 0
  } catch {
    return 0
  }
}

/**
 * Starts the emulator for `pipelineName` (stopped when the scope closes) and points the
 * providers' environment at it. The port of the last emulator run is taken again when free, so
 * a run directory keeps talking to the same origin.
 */
export const start = (pipelineName: string) =>
  Effect.gen(function* () {
    // The pipeline's name as its default run directory spells it.
    const name = basename(defaultRunDir(pipelineName))
    const runDir = join(root, "runs", name)
    const stateDir = join(root, "state", name)
    const portFile = `${stateDir}.port`
    const options = { stateDir, validatingMs: 0, finalizingMs: 0, requestsPerSecond: Infinity }
    const handle = yield* Effect.acquireRelease(
      Effect.tryPromise({
        try: async () => {
          // The emulator keeps the requests it was sent there: private, like a run directory.
          PrivateFiles.makeDirectorySync(stateDir)
          const last = readPort(portFile)
          const handle = await startEmulator({ ...options, port: last }).catch((e: unknown) =>
            last !== 0 && (e as { code?: unknown }).code === "EADDRINUSE" ? startEmulator({ ...options, port: 0 }) : Promise.reject(e)
          )
          writeFileSync(portFile, `${handle.port}\n`, { mode: PrivateFiles.fileMode })
          return handle
        },
        catch: (e) => new LocalEmulatorError({ description: `cannot start the emulator: ${e instanceof Error ? e.message : String(e)}` })
      }),
      (h) => Effect.promise(() => h.close())
    )
    for (const [name, value] of Object.entries(environment(handle.url))) {
      if (value === undefined) delete process.env[name]
      else process.env[name] = value
    }
    yield* Effect.logInfo(`running against the built-in emulator at ${handle.url}: answers are made up, nothing leaves this machine, nothing is paid`)
    return { url: handle.url, runDir, cacheDir: join(root, "cache") } satisfies LocalEmulator
  })
