/**
 * What `sluice run --cluster` shows while the workers drive the run: the run's journal (in the
 * cluster's database, or the run directory's file for a run started before journals moved
 * there: JournalStore.ts), followed as the workers append to it, fed to the same observer a
 * one-machine run feeds (Progress.ts) — on a terminal the live view, in a log a line per batch
 * created, ended or collected and the status line when it changes. Only complete lines are read
 * (a torn tail is a step that died mid-write: the next one cuts it off and goes on after the
 * last newline).
 */
import * as FileSystem from "@effect/platform/FileSystem"
import { Effect, Schedule } from "effect"
import * as Journal from "./Journal.js"
import type { JournalEvent } from "./JournalEvent.js"
import * as JournalStore from "./JournalStore.js"
import type { RunPaths } from "./RunDir.js"
import type { RunObserver } from "./Runner.js"
import * as RunState from "./RunState.js"

export interface Follower {
  /** Reads what was appended since the last read and tells the observer. */
  readonly catchUp: Effect.Effect<void>
  /** `catchUp` every `every` until interrupted. */
  readonly run: Effect.Effect<void>
}

export const make = (paths: RunPaths, observer: RunObserver, every: Schedule.Schedule<unknown> = Schedule.spaced("1 second")) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const stores = yield* JournalStore.JournalStore
    let position = Journal.start
    let state: RunState.RunState | undefined
    const read = Effect.gen(function* () {
      const events: Array<JournalEvent> = []
      for (let more = true; more; ) {
        const appended = yield* JournalStore.readAfter(paths, position)
        // Replaced (a new generation of the run): read from its start again.
        if (appended.restarted) {
          state = undefined
          events.length = 0
        }
        position = appended.position
        for (const e of appended.events) events.push(e.event)
        more = appended.more
      }
      if (state === undefined) {
        // Nothing journaled yet (the planning step has not run): the next tick looks again.
        if (events.length === 0) return
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
    const catchUp = Effect.ignore(read).pipe(Effect.provideService(FileSystem.FileSystem, fs), Effect.provideService(JournalStore.JournalStore, stores))
    return { catchUp, run: Effect.repeat(catchUp, every).pipe(Effect.asVoid) } satisfies Follower
  })
