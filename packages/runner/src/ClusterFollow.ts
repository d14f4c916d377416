/**
 * What `sluice run --cluster` shows while the workers drive the run: the run directory's
 * journal, followed as the workers append to it, fed to the same observer a one-machine run
 * feeds (Progress.ts) — on a terminal the live view, in a log a line per batch created, ended or
 * collected and the status line when it changes. Only complete lines are read (a torn tail is
 * a step that died mid-write: the next one cuts it off and goes on after the last newline).
 */
import * as FileSystem from "@effect/platform/FileSystem"
import { Effect, Either, Option, Schedule } from "effect"
import * as Journal from "./Journal.js"
import type { RunObserver } from "./Runner.js"
import * as RunState from "./RunState.js"

export interface Follower {
  /** Reads what was appended since the last read and tells the observer. */
  readonly catchUp: Effect.Effect<void>
  /** `catchUp` every `every` until interrupted. */
  readonly run: Effect.Effect<void>
}

export const make = (journalPath: string, observer: RunObserver, every: Schedule.Schedule<unknown> = Schedule.spaced("1 second")) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    let offset = 0
    let state: RunState.RunState | undefined
    const read = Effect.gen(function* () {
      const size = Number((yield* fs.stat(journalPath)).size)
      // Shorter than what was read: rewritten (a new generation of the run); read it all again.
      if (size < offset) {
        offset = 0
        state = undefined
      }
      if (size === offset && state !== undefined) return
      const bytes = yield* Effect.scoped(
        Effect.gen(function* () {
          const file = yield* fs.open(journalPath, { flag: "r" })
          yield* file.seek(offset, "start")
          return yield* file.readAlloc(size - offset)
        })
      )
      const text = Option.match(bytes, { onNone: () => "", onSome: (b) => new TextDecoder().decode(b) })
      const end = text.lastIndexOf("\n")
      const events = end < 0 ? [] : text.slice(0, end).split("\n").flatMap((line) => {
        const parsed = line.trim() === "" ? undefined : Journal.parseLine(line)
        return parsed !== undefined && Either.isRight(parsed) ? [parsed.right] : []
      })
      offset += end < 0 ? 0 : Buffer.byteLength(text.slice(0, end + 1))
      if (state === undefined) {
        // What the workers did before we looked, as a continued run starts from its journal.
        state = events.reduce(RunState.apply, RunState.empty())
        observer.started?.(state)
        return
      }
      for (const event of events) {
        state = RunState.apply(state, event)
        observer.event?.(event, state)
      }
    })
    // No journal yet (the planning step has not run), or a read that failed: the next tick tries again.
    const catchUp = Effect.ignore(read)
    return { catchUp, run: Effect.repeat(catchUp, every).pipe(Effect.asVoid) } satisfies Follower
  })
