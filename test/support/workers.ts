/**
 * `sluice worker` child processes for the distributed-run tests, on loopback against a
 * PostgreSQL server (scripts/lib/tempPostgres.ts), and a bounded wait that prints their logs
 * when it gives up.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { PgClient } from "@effect/sql-pg"
import { Context, Effect, Layer, Redacted } from "effect"
import * as TempPostgres from "../../scripts/lib/tempPostgres.js"
import { childEnv, spawnCli } from "./cli.js"

export interface Worker {
  readonly child: ChildProcess
  readonly port: number
  /** Everything it wrote on stderr so far. */
  log: string
  exited: boolean
}

export interface Workers {
  readonly all: ReadonlyArray<Worker>
  /** Starts a worker in `cwd` and resolves once it has joined the cluster. */
  readonly start: (options: {
    readonly cwd: string
    readonly env: Record<string, string>
    readonly lockExpiration?: number
    /** The bin/sluice.js of another copy of sluice (default: this build's). */
    readonly bin?: string
    /** Where it keeps its copies of runs' files (`--state-dir`; default: the worker's own default). */
    readonly stateDir?: string
  }) => Promise<Worker>
  /** Resolves once `check` holds, asking every 100 ms; a bound far above a saturated machine's pace ends a hang. */
  readonly until: (what: string, check: () => boolean | Promise<boolean>, boundMs?: number) => Promise<void>
  /** SIGKILLs the workers still running. */
  readonly killAll: () => void
}

export const workers = (): Workers => {
  const all: Array<Worker> = []
  const until = async (what: string, check: () => boolean | Promise<boolean>, boundMs = 120_000) => {
    const start = Date.now()
    while (!(await check())) {
      if (Date.now() - start > boundMs) throw new Error(`still waiting for ${what}\n${all.map((w) => `--- worker ${w.port} ---\n${w.log}`).join("\n")}`)
      await new Promise((r) => setTimeout(r, 100))
    }
  }
  const start: Workers["start"] = async ({ bin, cwd, env, lockExpiration = 6, stateDir }) => {
    const port = await TempPostgres.freePort()
    const args = [
      "worker", "--host", "127.0.0.1", "--port", String(port), "--lock-expiration", String(lockExpiration),
      ...(stateDir === undefined ? [] : ["--state-dir", stateDir])
    ]
    const child = bin === undefined
      ? spawnCli(args, { cwd, env })
      : spawn(process.execPath, [bin, ...args], { cwd, env: childEnv(env), stdio: ["ignore", "pipe", "pipe"] })
    const worker: Worker = { child, port, log: "", exited: false }
    child.stderr!.setEncoding("utf8").on("data", (d: string) => (worker.log += d))
    child.stdout!.resume()
    child.on("exit", () => (worker.exited = true))
    all.push(worker)
    await until(`worker ${port} to join`, () => {
      if (worker.exited) throw new Error(`worker ${port} exited:\n${worker.log}`)
      return worker.log.includes("joined the cluster")
    })
    return worker
  }
  return { all, start, until, killAll: () => all.filter((w) => !w.exited).forEach((w) => w.child.kill("SIGKILL")) }
}

/** Runs one query on the database at `url` (a pool of its own, closed after). */
export const query = <A extends object>(url: string, text: string) =>
  Effect.runPromise(
    Effect.scoped(Effect.flatMap(Layer.build(PgClient.layer({ url: Redacted.make(url) })), (ctx) => Context.get(ctx, PgClient.PgClient).unsafe<A>(text)))
  )
