/**
 * A run's state rebuilt from its journal alone: what `run` and `resume` start from and what
 * `status`, `gc` and the records read. Apart from Runner.ts so that the modules that only read
 * a run directory need not load the module that drives a run.
 */
import { Stream } from "effect"
import * as JournalStore from "./JournalStore.js"
import type { RunPaths } from "./RunDir.js"
import * as RunState from "./RunState.js"

/** Rebuilds a run's state from its journal alone (wherever the run keeps it: JournalStore.ts), a piece at a time. */
export const loadState = (paths: RunPaths) =>
  JournalStore.replayChunks(paths).pipe(
    Stream.runFold(RunState.empty(), (state, events) => {
      for (const { event } of events) state = RunState.apply(state, event)
      return state
    })
  )
