/**
 * Notifications out: when a run call ends, a shell command (`--on-finish`) and a URL (`--notify`)
 * hear about it. Neither may change the run's outcome: the command's exit status and the URL's
 * answer are reported on stderr and otherwise ignored, and nothing here fails.
 *
 * Events: `run.finished` (every row has its end), `budget.reached` (the call stopped with shards
 * held back by `--budget` / `--online-budget` and nothing else pending), `run.failed` (the call
 * stopped with an error). A call that leaves the run in progress (`--detach`, a cron tick with
 * batches still in flight) or finds it finished before (nothing to do) announces nothing, so
 * a resume every few minutes does not announce every few minutes.
 *
 * The payload is what `--json` prints: the run summary, or `{"error": {...}}` for `run.failed`.
 * No API key is in it, and the command's environment has the provider keys taken out.
 */
import { Duration, Effect, Schedule } from "effect"
import { spawn } from "node:child_process"
import type { RunSummary } from "./Runner.js"
import * as StderrLines from "./internal/stderrLines.js"

export type Event = "run.finished" | "run.failed" | "budget.reached"

export interface Targets {
  /** A shell command, run with the payload on stdin and key figures in `SLUICE_*` variables. */
  readonly onFinish?: string | undefined
  /** An http(s) URL the payload is POSTed to as `{event, summary}`. */
  readonly notify?: string | undefined
  /** How long the command may run before it is killed (default 60 s). */
  readonly onFinishTimeout?: Duration.Duration
  /** Waits between delivery attempts (default 0.5 s doubling, 5 attempts in all). */
  readonly retry?: { readonly attempts: number; readonly firstDelay: Duration.Duration }
}

/** The variables that carry the defaults of `--on-finish` and `--notify` (a cron line, `sluice webhook`). */
export const envVariables = { onFinish: "SLUICE_ON_FINISH", notify: "SLUICE_NOTIFY_URL" } as const

/** The targets given, else those the environment names. */
export const fromEnv = (given: { readonly onFinish?: string | undefined; readonly notify?: string | undefined }): Targets => {
  const pick = (v: string | undefined, name: string) => (v !== undefined && v !== "" ? v : process.env[name] || undefined)
  return { onFinish: pick(given.onFinish, envVariables.onFinish), notify: pick(given.notify, envVariables.notify) }
}

/** Why a `--notify` value is refused (undefined: it is a usable URL). */
export const invalidUrl = (url: string): string | undefined => {
  if (!URL.canParse(url)) return `--notify takes an http(s) URL; got "${url}"`
  const protocol = new URL(url).protocol
  return protocol === "http:" || protocol === "https:" ? undefined : `--notify takes an http(s) URL; got a ${protocol} URL`
}

const heldRows = (s: RunSummary): number => (s.budget?.heldRows ?? 0) + (s.onlineBudget?.heldRows ?? 0)

/** What a successful call announces, if anything. */
export const eventOf = (s: RunSummary): Event | undefined => {
  if (s.alreadyFinished === true) return undefined
  if (s.finished && s.pending === 0) return "run.finished"
  const held = (s.budget?.heldShards ?? 0) + (s.onlineBudget?.heldShards ?? 0)
  // Only what the budget holds is left: the run cannot go on without a higher one.
  if (held > 0 && s.pending <= heldRows(s)) return "budget.reached"
  return undefined
}

const failedRows = (s: RunSummary): number => Object.values(s.failed).reduce((a, b) => a + b, 0)

/**
 * Credentials never handed to the command: provider keys, the webhook secret, headers that
 * carry auth (a gateway's, the OpenTelemetry collector's), the notify URL (it may hold a
 * token), and anything named like a secret.
 */
const secretVariable =
  /(^|_)(API_KEY|WEBHOOK_SECRET)$|^(OPENAI|ANTHROPIC|AZURE_OPENAI|GEMINI|SLUICE_GATEWAY)_.*KEY|_HEADERS$|^SLUICE_NOTIFY_URL$|SECRET|TOKEN|PASSWORD|CREDENTIAL/i

/** The command's environment: ours without keys, plus the event's figures. */
export const commandEnv = (event: Event, payload: Payload): NodeJS.ProcessEnv => {
  const env: NodeJS.ProcessEnv = {}
  for (const [k, v] of Object.entries(process.env)) if (!secretVariable.test(k)) env[k] = v
  env["SLUICE_EVENT"] = event
  if ("error" in payload) {
    env["SLUICE_RUN_DIR"] = payload.error.runDir ?? ""
    env["SLUICE_ERROR"] = payload.error.message
    return env
  }
  const s = payload
  env["SLUICE_RUN_DIR"] = s.runDir
  env["SLUICE_RUN_ID"] = s.runId
  env["SLUICE_ROWS"] = String(s.rows)
  env["SLUICE_SUCCEEDED"] = String(s.succeeded)
  env["SLUICE_FAILED"] = String(failedRows(s))
  env["SLUICE_PENDING"] = String(s.pending)
  env["SLUICE_SPENT_USD"] = s.spent === null ? "" : s.spent.toFixed(6)
  return env
}

/** The `--json` error object of a failed call. */
export interface ErrorPayload {
  readonly error: { readonly tag: string; readonly message: string; readonly exitCode: number; readonly runDir?: string | undefined }
}
export type Payload = RunSummary | ErrorPayload

const say = (line: string) => Effect.sync(() => StderrLines.say(`sluice: ${line}`))

/** The last `max` characters of a command's output, for the report. */
const tail = (text: string, max = 2000): string => (text.length <= max ? text : `…${text.slice(-max)}`)

export interface CommandResult {
  /** The exit code; null when killed (timeout) or not started. */
  readonly code: number | null
  readonly timedOut: boolean
  readonly output: string
  readonly error?: string
}

/** Runs `command` through the shell with `input` on stdin; never fails. */
export const runCommand = (command: string, input: string, env: NodeJS.ProcessEnv, timeout: Duration.Duration): Effect.Effect<CommandResult> =>
  Effect.async<CommandResult>((resume) => {
    // Its own process group, so a timeout kills what the shell started too.
    const child = spawn(command, { shell: true, env, stdio: ["pipe", "pipe", "pipe"], detached: true })
    let output = ""
    let timedOut = false
    const keep = (d: Buffer) => void (output = tail(output + d.toString("utf8"), 64_000))
    child.stdout.on("data", keep)
    child.stderr.on("data", keep)
    const kill = () => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, "SIGKILL")
      } catch {
        // Gone already.
      }
    }
    const timer = setTimeout(() => {
      timedOut = true
      kill()
    }, Duration.toMillis(timeout))
    child.on("error", (e) => {
      clearTimeout(timer)
      resume(Effect.succeed({ code: null, timedOut, output, error: e.message }))
    })
    child.on("close", (code) => {
      clearTimeout(timer)
      resume(Effect.succeed({ code, timedOut, output }))
    })
    // A command that does not read its stdin closes it early: that is no error.
    child.stdin.on("error", () => {})
    child.stdin.end(input)
    return Effect.sync(() => {
      clearTimeout(timer)
      kill()
    })
  })

export interface Delivery {
  readonly status: number | null
  readonly attempts: number
  readonly error?: string
}

class Retryable {
  constructor(readonly status: number | null, readonly error: string) {}
}

/** POSTs `body` to `url`: 5xx, 429 and network errors are retried with backoff; never fails. */
export const post = (url: string, body: string, retry: Targets["retry"] = { attempts: 5, firstDelay: Duration.millis(500) }): Effect.Effect<Delivery> => {
  let attempts = 0
  const once = Effect.tryPromise({
    try: () => {
      attempts++
      return fetch(url, {
        method: "POST",
        headers: { "content-type": "application/json", "user-agent": "sluice" },
        body,
        redirect: "error",
        signal: AbortSignal.timeout(30_000)
      })
    },
    catch: (e) => new Retryable(null, e instanceof Error ? (e.cause instanceof Error ? e.cause.message : e.message) : String(e))
  }).pipe(
    Effect.tap((r) => Effect.promise(() => r.arrayBuffer().catch(() => undefined))),
    Effect.filterOrFail((r) => r.status < 500 && r.status !== 429, (r) => new Retryable(r.status, `HTTP ${r.status}`))
  )
  return once.pipe(
    Effect.retry(Schedule.exponential(retry.firstDelay).pipe(Schedule.intersect(Schedule.recurs(retry.attempts - 1)))),
    Effect.match({
      onSuccess: (r): Delivery => (r.ok ? { status: r.status, attempts } : { status: r.status, attempts, error: `HTTP ${r.status}` }),
      onFailure: (e): Delivery => ({ status: e.status, attempts, error: e.error })
    })
  )
}

/** The URL as logs show it: no credentials, no path or query (a chat webhook's URL is its secret). */
export const shown = (url: string): string => (URL.canParse(url) ? new URL(url).origin : "<notify url>")

/** Announces `event` to the targets; reports how each went on stderr; never fails. */
export const announce = (targets: Targets, event: Event, payload: Payload): Effect.Effect<void> =>
  Effect.gen(function* () {
    if (targets.onFinish !== undefined) {
      const timeout = targets.onFinishTimeout ?? Duration.seconds(60)
      const r = yield* runCommand(targets.onFinish, JSON.stringify(payload, null, 2) + "\n", commandEnv(event, payload), timeout)
      const how = r.error !== undefined
        ? `could not start: ${r.error}`
        : r.timedOut
          ? `killed after ${Duration.format(timeout)}`
          : `exited ${r.code}`
      yield* say(`--on-finish (${event}): ${how}${r.output.trim() === "" ? "" : `; its output:\n${tail(r.output).trimEnd()}`}`)
    }
    if (targets.notify !== undefined) {
      const d = yield* post(targets.notify, JSON.stringify({ event, summary: payload }), targets.retry)
      const tries = d.attempts === 1 ? "" : ` after ${d.attempts} attempts`
      yield* say(
        d.error === undefined
          ? `--notify (${event}): delivered to ${shown(targets.notify)} (HTTP ${d.status})${tries}`
          : `--notify (${event}): not delivered to ${shown(targets.notify)}${tries}: ${d.error}`
      )
    }
  })
