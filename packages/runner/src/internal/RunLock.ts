/**
 * One process per run directory: two writers would interleave the journal and could each
 * create a shard's batch. And one run per sink output (a file or Parquet directory): two runs
 * in two directories would truncate and interleave each other's output. `run.lock` names its owner (pid, host, start time); a lock whose
 * owner is gone is taken over, one from another host only when the user says so
 * (`--break-lock`). The protocol, and why only one process ever holds it, is in LockFile.ts.
 */
import { Effect, Schema } from "effect"
import { Sink } from "@sluice/core"
import { basename, dirname, join } from "node:path"
import { RunDirError } from "../RunDir.js"
import { ioProblem } from "./ioError.js"
import * as LockFile from "./LockFile.js"

export class RunLocked extends Schema.TaggedError<RunLocked>()("RunLocked", {
  path: Schema.String,
  /** The lock is a sink's (its name), not the run directory's: another run writes that output. */
  sink: Schema.optional(Schema.String),
  /** "running": its owner runs on this host; "other-host": on another, so it may or may not run; "unreadable": no owner named. */
  reason: Schema.Literal("running", "other-host", "unreadable"),
  pid: Schema.NullOr(Schema.Number),
  host: Schema.NullOr(Schema.String),
  /** When the owner took it (ISO time), when known. */
  since: Schema.NullOr(Schema.String)
}) {
  override get message(): string {
    const since = this.since === null ? "" : ` since ${this.since}`
    if (this.sink !== undefined) {
      const owner = this.reason === "unreadable" ? "a sluice that named no owner" : `process ${this.pid} on ${this.host}${since}`
      return (
        `sink ${this.sink} is being written by ${owner} (lock file ${this.path}): two runs must not write one output. ` +
        `Give this run another output path, or wait until that run ends${this.reason === "running" ? "" : "; if no sluice writes it, take the lock over with --break-lock"}`
      )
    }
    switch (this.reason) {
      case "running":
        return `the run directory is in use by process ${this.pid} on ${this.host}${since} (lock file ${this.path}); stop it first, or wait until it ends`
      case "other-host":
        return (
          `the run directory is locked by process ${this.pid} on host ${this.host}${since} (lock file ${this.path}), ` +
          `and this is ${LockFile.me().host}: whether that process still runs cannot be told from here. ` +
          `If it does not, take the lock over with --break-lock`
        )
      case "unreadable":
        return `the run directory's lock file ${this.path} names no owner; if no sluice works on this directory, take the lock over with --break-lock`
    }
  }
}

const refused = (path: string, refusal: LockFile.Refusal, sink: string | undefined): RunLocked => {
  const of = sink === undefined ? {} : { sink }
  return refusal.reason === "unreadable"
    ? new RunLocked({ path, ...of, reason: "unreadable", pid: null, host: null, since: null })
    : new RunLocked({ path, ...of, reason: refusal.reason, pid: refusal.owner.pid, host: refusal.owner.host, since: refusal.owner.at })
}

/** Where a sink's lock file lives: hidden, beside the file or directory it writes. */
export const sinkLockPath = (target: string): string => join(dirname(target), `.${basename(target)}.sluice-lock`)

/** Holds the run directory's lock for the enclosing scope; released (if it still names us) when the scope closes. */
export const acquire = (path: string, options: LockFile.Options = {}) =>
  hold(path, options, undefined, (description) => new RunDirError({ path: dirname(path), description }))

/** Holds the lock of a sink's output `target` (a file or directory) for the enclosing scope. */
export const acquireSink = (sink: string, target: string, options: LockFile.Options = {}) =>
  hold(sinkLockPath(target), options, sink, (description) => new Sink.SinkError({ sink, description }))

const hold = <E>(path: string, options: LockFile.Options, sink: string | undefined, unwritable: (description: string) => E) =>
  Effect.acquireRelease(
    Effect.suspend((): Effect.Effect<LockFile.Held, E | RunLocked> => {
      let outcome: LockFile.Outcome
      try {
        outcome = LockFile.acquire(path, options)
      } catch (e) {
        // A run directory (or a sink's directory) sluice may not write to (read-only, full, not a directory).
        const description = `cannot write its lock file ${path}: ${ioProblem(e instanceof Error ? e.message : String(e))}`
        return Effect.fail(unwritable(description))
      }
      if (outcome._tag === "Refused") return Effect.fail(refused(path, outcome.refusal, sink))
      if (outcome.broke !== undefined) {
        const broken = refused(path, outcome.broke, sink)
        const owner = broken.pid === null ? "that named no owner" : `of process ${broken.pid} on host ${broken.host}`
        const why = outcome.via === "cluster" ? "a step of this distributed run whose database session has ended" : "--break-lock"
        return Effect.as(Effect.logWarning(`took over the lock ${path} ${owner} (${why})`), outcome.held)
      }
      return Effect.succeed(outcome.held)
    }),
    (held) =>
      Effect.suspend(() => {
        let released: boolean
        try {
          released = LockFile.release(held)
        } catch (e) {
          return Effect.logWarning(`cannot remove the lock file ${path}: ${ioProblem(e instanceof Error ? e.message : String(e))}`)
        }
        return released ? Effect.void : Effect.logWarning(`the lock file ${path} was taken over by another process while this one held it; left as it is`)
      })
  )
