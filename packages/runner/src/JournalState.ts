/**
 * A run's state rebuilt from its journal alone: what `run` and `resume` start from and what
 * `status`, `gc` and the records read. Apart from Runner.ts so that the modules that only read
 * a run directory need not load the module that drives a run.
 */
import { Stream } from "effect"
import * as Journal from "./Journal.js"
import * as RunState from "./RunState.js"

/** Rebuilds a run's state from its journal alone (a piece of the file at a time: Journal.replayChunks). */
export const loadState = (journalPath: string) =>
  Journal.replayChunks(journalPath).pipe(
    Stream.runFold(RunState.empty(), (state, events) => {
      for (const { event } of events) state = RunState.apply(state, event)
      return state
    })
  )
