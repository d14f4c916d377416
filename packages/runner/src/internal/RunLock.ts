/**
 * One process per run directory: two writers would interleave the journal. The lock file
 * holds the owner's pid; a lock whose process is gone (killed, crashed) is taken over.
 */
import { Effect, Schema } from "effect"
import { closeSync, openSync, readFileSync, rmSync, writeSync } from "node:fs"
import { dirname } from "node:path"
import { RunDirError } from "../RunDir.js"
import { ioProblem } from "./ioError.js"

export class RunLocked extends Schema.TaggedError<RunLocked>()("RunLocked", {
  path: Schema.String,
  pid: Schema.Number
}) {
  override get message(): string {
    return `the run directory is in use by process ${this.pid} (lock file ${this.path}); stop it first`
  }
}

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM"
  }
}

const tryTake = (path: string): number | undefined => {
  try {
    const fd = openSync(path, "wx")
    writeSync(fd, String(process.pid))
    closeSync(fd)
    return undefined
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e
    const pid = Number(readFileSync(path, "utf8").trim())
    if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && alive(pid)) return pid
    rmSync(path, { force: true })
    return tryTake(path)
  }
}

/** Holds the lock for the enclosing scope. */
export const acquire = (path: string) =>
  Effect.acquireRelease(
    Effect.suspend((): Effect.Effect<void, RunDirError | RunLocked> => {
      let owner: number | undefined
      try {
        owner = tryTake(path)
      } catch (e) {
        // A run directory sluice may not write to (read-only, full, not a directory).
        const description = `cannot write its lock file ${path}: ${ioProblem(e instanceof Error ? e.message : String(e))}`
        return Effect.fail(new RunDirError({ path: dirname(path), description }))
      }
      return owner === undefined ? Effect.void : Effect.fail(new RunLocked({ path, pid: owner }))
    }),
    () => Effect.sync(() => rmSync(path, { force: true }))
  )
