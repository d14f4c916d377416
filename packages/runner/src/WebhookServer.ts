/**
 * `sluice webhook`: an HTTP server for the provider's batch events (OpenAI's webhooks). A
 * delivery is verified (WebhookSignature.ts), answered at once, and then the run whose journal
 * holds the batch the event names is resumed in detached mode (`sluice resume <dir> --detach`,
 * a child process, as a cron line would): it polls its batches once, collects what ended, submits
 * what remains, and exits. It gives no other flag: the run's recorded settings (KeptSettings.ts:
 * mode, budgets, --keep-provider-files) hold, and the rest comes from this server's environment
 * (SLUICE_CACHE_DIR, SLUICE_PRICES, SLUICE_NOTIFY_URL …). Polling (cron, or a run in the
 * foreground) stays the fallback: a missed event costs only time.
 *
 * One resume at a time per run: events for a run being resumed are coalesced into one more
 * resume after it. The run lock (internal/RunLock.ts) is respected, never broken: a run held by
 * another process (a cron resume at the same moment) is tried again a little later, a few times,
 * and otherwise left to that process.
 *
 * Logs name deliveries by webhook-id, event type and batch id; never the secret or a signature.
 */
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import { Duration, Effect, Option, Runtime, Schema, Stream } from "effect"
import { spawn } from "node:child_process"
import { createServer, type IncomingMessage, type ServerResponse } from "node:http"
import type { AddressInfo } from "node:net"
import * as JournalStore from "./JournalStore.js"
import * as RunDir from "./RunDir.js"
import * as WebhookSignature from "./WebhookSignature.js"

export const secretVariable = WebhookSignature.secretVariable

/** The secret missing or malformed, or the address not to be had. */
export class WebhookServerError extends Schema.TaggedError<WebhookServerError>()("WebhookServerError", {
  description: Schema.String
}) {
  override get message(): string {
    return this.description
  }
}

/** The key of the secret in the environment, or the error that says what is wrong with it (never its value). */
export const keyFromEnv = (): Effect.Effect<Buffer, WebhookServerError> => {
  const parsed = WebhookSignature.parseSecret(process.env[secretVariable])
  return "key" in parsed
    ? Effect.succeed(parsed.key)
    : Effect.fail(new WebhookServerError({ description: `${secretVariable} ${parsed.problem}: set it to the webhook's signing secret (whsec_…)` }))
}

export interface Options {
  readonly port: number
  readonly host: string
  readonly key: Buffer
  /** Run directories named one by one. */
  readonly runDirs: ReadonlyArray<string>
  /** A directory whose subdirectories are run directories (looked at again for a batch not known yet). */
  readonly runsDir: string | undefined
  /** The command that resumes a run: argv before `resume <dir> --detach --json`. */
  readonly sluice: ReadonlyArray<string>
  /** Waits before trying a locked run again, and how many tries in all. */
  readonly lockedRetry?: { readonly wait: Duration.Duration; readonly tries: number }
  readonly log?: (line: string) => void
}

const MAX_BODY = 1024 * 1024

const say = (line: string) => process.stderr.write(`sluice webhook: ${line}\n`)

/** Batch ids of a run directory's journal (those it created or adopted). */
const batchesOf = (dir: string) =>
  Effect.gen(function* () {
    const path = yield* Path.Path
    const paths = RunDir.paths(dir, path)
    return yield* JournalStore.replay(paths).pipe(
      Stream.filterMap((e) => (e._tag === "Created" ? Option.some(e.batchId) : Option.none())),
      Stream.runCollect
    )
  })

/** The run directories given: those named, and the subdirectories of `runsDir` with a journal. */
const runDirectories = (options: Options) =>
  Effect.gen(function* () {
    const path = yield* Path.Path
    const dirs = options.runDirs.map((d) => path.resolve(d))
    if (options.runsDir !== undefined) dirs.push(...(yield* RunDir.under(options.runsDir)))
    return dirs
  })

/**
 * Which run holds which batch: built from the journals, brought up to date when a batch is not
 * found. A journal only grows: one whose size has not changed is not read again.
 */
const makeIndex = (options: Options) => {
  let byBatch = new Map<string, string>()
  const read = new Map<string, { readonly size: bigint; readonly ids: ReadonlyArray<string> }>()
  const rebuild = Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const next = new Map<string, string>()
    for (const dir of yield* runDirectories(options)) {
      const size = yield* fs.stat(path.join(dir, "journal.jsonl")).pipe(
        Effect.map((info) => BigInt(info.size)),
        Effect.orElseSucceed(() => -1n)
      )
      let known = read.get(dir)
      if (known === undefined || known.size !== size) {
        const ids = yield* batchesOf(dir).pipe(
          Effect.map((chunk) => [...chunk]),
          Effect.catchAll((e) => Effect.sync(() => (say(`cannot read the journal of ${dir}: ${e.message}`), [] as Array<string>)))
        )
        known = { size, ids }
        read.set(dir, known)
      }
      for (const id of known.ids) next.set(id, dir)
    }
    byBatch = next
    return next.size
  })
  const find = (batchId: string) =>
    Effect.gen(function* () {
      const known = byBatch.get(batchId)
      if (known !== undefined) return known
      // A run started after the index was built, or a batch submitted since.
      yield* rebuild
      return byBatch.get(batchId)
    })
  return { rebuild, find }
}

interface Outcome {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

/** `sluice resume <dir> --detach --json` as a child process, without the webhook secret in its environment. */
const resumeOnce = (options: Options, runDir: string) =>
  Effect.async<Outcome>((resume) => {
    const [command, ...args] = options.sluice
    const env = { ...process.env }
    delete env[secretVariable]
    const child = spawn(command!, [...args, "resume", runDir, "--detach", "--json"], { env, stdio: ["ignore", "pipe", "pipe"] })
    let stdout = ""
    let stderr = ""
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d))
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr = (stderr + d).slice(-8000)))
    child.on("error", (e) => resume(Effect.succeed({ code: null, stdout, stderr: e.message })))
    child.on("close", (code) => resume(Effect.succeed({ code, stdout, stderr })))
  })

const parsed = (stdout: string): { readonly finished?: boolean; readonly pending?: number; readonly error?: { readonly tag?: string; readonly message?: string } } => {
  try {
    return JSON.parse(stdout)
  } catch {
    return {}
  }
}

/** Resumes a run until it is not locked by another process, a few times at most; logs how it went. */
const resumeRun = (options: Options, runDir: string) =>
  Effect.gen(function* () {
    const retry = options.lockedRetry ?? { wait: Duration.seconds(5), tries: 12 }
    for (let attempt = 1; ; attempt++) {
      say(`resuming ${runDir}`)
      const r = yield* resumeOnce(options, runDir)
      const out = parsed(r.stdout)
      if (out.error?.tag === "RunLocked") {
        if (attempt >= retry.tries) return say(`${runDir} is held by another process; left to it (${out.error.message ?? ""})`)
        say(`${runDir} is held by another process; trying again in ${Duration.format(retry.wait)}`)
        yield* Effect.sleep(retry.wait)
        continue
      }
      if (out.error !== undefined) return say(`resume of ${runDir} failed (exit ${r.code}): ${out.error.message ?? ""}`)
      if (out.finished === true) return say(`resumed ${runDir}: finished`)
      if (typeof out.pending === "number") return say(`resumed ${runDir}: ${out.pending} rows pending`)
      return say(`resume of ${runDir} ended with exit ${r.code}: ${r.stderr.trim().split("\n").slice(-3).join(" | ")}`)
    }
  })

const readBody = (req: IncomingMessage): Promise<Buffer | undefined> =>
  new Promise((resolve, reject) => {
    const chunks: Array<Buffer> = []
    let size = 0
    req.on("data", (c: Buffer) => {
      size += c.length
      if (size > MAX_BODY) {
        resolve(undefined)
        req.destroy()
        return
      }
      chunks.push(c)
    })
    req.on("end", () => resolve(Buffer.concat(chunks)))
    req.on("error", reject)
  })

/** The batch id a verified event names, for the event types that end a batch. */
const batchEvent = (body: Buffer): { readonly type: string; readonly batchId: string | undefined } | undefined => {
  try {
    const e = JSON.parse(body.toString("utf8")) as { type?: unknown; data?: { id?: unknown } }
    if (typeof e.type !== "string") return undefined
    const batchId = /^batch\.(completed|failed|expired|cancelled)$/.test(e.type) && typeof e.data?.id === "string" ? e.data.id : undefined
    return { type: e.type, batchId }
  } catch {
    return undefined
  }
}

/**
 * Serves until interrupted. Resolves the address it listens on through `listening` (port 0
 * picks one) once bound.
 */
export const serve = (options: Options, listening: (url: string) => Effect.Effect<void>) =>
  Effect.gen(function* () {
    const runtime = yield* Effect.runtime<FileSystem.FileSystem | Path.Path>()
    const run = Runtime.runFork(runtime)
    const index = makeIndex(options)
    const known = yield* index.rebuild
    const path = yield* Path.Path
    const watched = options.runsDir === undefined ? "" : `; new runs are looked for under ${path.resolve(options.runsDir)}`
    say(`${known} batches known in ${(yield* runDirectories(options)).length} run directories${watched}`)
    const replays = new WebhookSignature.Replays()
    // Per run: a resume under way, and whether another event came meanwhile.
    const busy = new Map<string, { again: boolean }>()
    const wake = (runDir: string) => {
      const state = busy.get(runDir)
      if (state !== undefined) {
        state.again = true
        return
      }
      const mine = { again: false }
      busy.set(runDir, mine)
      // Whether another event came is checked, and the run let go, in one step: an event in
      // between would otherwise set `again` on a state no one reads any more.
      const letGo = Effect.sync(() => {
        if (mine.again) return false
        busy.delete(runDir)
        say(`${runDir}: nothing more to resume`)
        return true
      })
      run(
        Effect.gen(function* () {
          do {
            mine.again = false
            yield* resumeRun(options, runDir)
          } while (!(yield* letGo))
        }).pipe(Effect.onInterrupt(() => Effect.sync(() => busy.delete(runDir))))
      )
    }

    const answer = (res: ServerResponse, status: number, text: string) => {
      res.writeHead(status, { "content-type": "text/plain; charset=utf-8" })
      res.end(`${text}\n`)
    }

    const handle = async (req: IncomingMessage, res: ServerResponse) => {
      if (req.method !== "POST") return answer(res, 405, "POST only")
      const body = await readBody(req)
      if (body === undefined) return say("rejected 413: body over 1 MiB"), answer(res, 413, "body too large")
      const now = Math.floor(Date.now() / 1000)
      const verified = WebhookSignature.verify(options.key, req.headers, body, now)
      const id = typeof req.headers["webhook-id"] === "string" ? req.headers["webhook-id"].slice(0, 80) : "-"
      if (WebhookSignature.isRejection(verified)) {
        say(`rejected ${verified.status} (${id}): ${verified.reason}`)
        return answer(res, verified.status, verified.reason)
      }
      // Authentic, and received before: a sender that missed our 200 delivers again until it
      // gets one (refused, it would retry for days and may disable the endpoint). Nothing is
      // done twice, so a replay by someone who captured it wakes nothing either.
      if (!replays.admit(verified, now)) {
        say(`${id}: received before (a redelivery or a replay): answered 200, nothing done`)
        return answer(res, 200, "received before")
      }
      const event = batchEvent(body)
      if (event === undefined) {
        say(`rejected 400 (${id}): the body is not an event`)
        return answer(res, 400, "not an event")
      }
      // Answered before any work: the sender waits for nothing.
      answer(res, 200, "ok")
      if (event.batchId === undefined) return say(`${id}: ${event.type} ignored`)
      const batchId = event.batchId
      run(
        index.find(batchId).pipe(
          Effect.map((dir) => {
            if (dir === undefined) return say(`${id}: ${event.type} ${batchId}: no run given holds this batch`)
            say(`${id}: ${event.type} ${batchId} (run ${dir})`)
            wake(dir)
          }),
          Effect.catchAllCause(() => Effect.sync(() => say(`${id}: could not look up ${batchId}`)))
        )
      )
    }

    const server = createServer((req, res) => {
      handle(req, res).catch(() => {
        if (!res.headersSent) answer(res, 400, "bad request")
        else res.destroy()
      })
    })
    yield* Effect.acquireRelease(
      Effect.async<void, WebhookServerError>((resume) => {
        server.once("error", (e) => resume(Effect.fail(new WebhookServerError({ description: `cannot listen on ${options.host}:${options.port}: ${e.message}` }))))
        server.listen(options.port, options.host, () => resume(Effect.void))
      }),
      () => Effect.async<void>((resume) => {
        server.close(() => resume(Effect.void))
        server.closeAllConnections()
      })
    )
    const address = server.address() as AddressInfo
    const host = address.family === "IPv6" ? `[${address.address}]` : address.address
    yield* listening(`http://${host}:${address.port}`)
    return yield* Effect.never
  }).pipe(Effect.scoped)
