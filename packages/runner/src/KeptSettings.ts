/**
 * The settings a run keeps: `--mode`, `--online-budget`, `--online-below`, `--budget`,
 * `--max-enqueued-tokens`, `--max-batches` and `--keep-provider-files`. They decide where rows go (by batch or online), what the run may
 * cost, how much it may have enqueued, and what it leaves at the provider, so a resume that forgot them — a cron line, a CI
 * step, `sluice webhook` — would silently batch rows a hybrid run sends online, drop a cap the
 * user set, or delete output files the user asked to keep. Recorded in the manifest
 * (`settings`) when first given to `run`, `resume` or `retry`; a later call that does not give
 * one uses the recorded value; one that gives another value applies it, says so, and records
 * it for the calls after. (A budget is raised by giving a higher one; `--keep-provider-files`,
 * a switch, once recorded stays: `sluice gc` removes the files kept.)
 *
 * Not kept: what only paces this call or this machine (`--concurrency`, `--rpm`, `--tpm`,
 * `--poll-interval`, `--detach`), nor `--on-finish` and `--notify`: a command to run and a URL
 * that may hold a token do not belong in the run directory (SLUICE_ON_FINISH and
 * SLUICE_NOTIFY_URL carry them to cron and `sluice webhook`). The deadline is journaled on its
 * own (`DeadlineSet`, an absolute time). A manifest without `settings`, or without one of them
 * (runs from before it), resumes as it did: each stage's own mode, the defaults.
 */
import type { Pipeline } from "@sluice/core"
import { Schema } from "effect"
import * as EnqueuedTokens from "./EnqueuedTokens.js"

export const Kept = Schema.Struct({
  mode: Schema.optionalWith(Schema.Literal("batch", "online", "auto"), { exact: true }),
  onlineBudget: Schema.optionalWith(Schema.Number, { exact: true }),
  onlineBelow: Schema.optionalWith(Schema.Number, { exact: true }),
  budget: Schema.optionalWith(Schema.Number, { exact: true }),
  keepProviderFiles: Schema.optionalWith(Schema.Boolean, { exact: true }),
  /** One number for every model, or by model (`*`: the models not named). */
  maxEnqueuedTokens: Schema.optionalWith(Schema.Union(Schema.Number, Schema.Record({ key: Schema.String, value: Schema.Number })), { exact: true }),
  /** Batches in flight at once, in the same form. */
  maxBatches: Schema.optionalWith(Schema.Union(Schema.Number, Schema.Record({ key: Schema.String, value: Schema.Number })), { exact: true })
})
export type Kept = typeof Kept.Type

/** What a call gave (options not given are absent or undefined). */
export interface Given {
  readonly mode?: Pipeline.Mode | undefined
  readonly onlineBudget?: number | undefined
  readonly onlineBelow?: number | undefined
  readonly budget?: number | undefined
  /** A switch: only `true` (given) counts; absent or false is "not given". */
  readonly keepProviderFiles?: boolean | undefined
  readonly maxEnqueuedTokens?: EnqueuedTokens.Limits | undefined
  readonly maxBatches?: EnqueuedTokens.Limits | undefined
}

const names = ["mode", "onlineBudget", "onlineBelow", "budget", "keepProviderFiles", "maxEnqueuedTokens", "maxBatches"] as const
type Name = (typeof names)[number]

/** The CLI flag of each kept setting, as messages say it. */
export const flags: Readonly<Record<Name, string>> = {
  mode: "--mode",
  onlineBudget: "--online-budget",
  onlineBelow: "--online-below",
  budget: "--budget",
  keepProviderFiles: "--keep-provider-files",
  maxEnqueuedTokens: "--max-enqueued-tokens",
  maxBatches: "--max-batches"
}

export interface Change {
  readonly name: Name
  /** The recorded value it replaces (undefined: none was recorded). */
  readonly from: Value | undefined
  readonly to: Value
}

type Value = string | number | boolean | EnqueuedTokens.Limits

export interface Merged {
  /** The settings this call runs with, and the run records. */
  readonly settings: Kept
  /** Given now and different from (or absent in) the record: the manifest is rewritten. */
  readonly changes: ReadonlyArray<Change>
  /** Recorded and not given now: taken from the record. */
  readonly fromRecord: ReadonlyArray<Name>
}

/** A call's settings over the recorded ones: what is given wins, what is not comes from the record. */
export const merge = (recorded: Kept | undefined, given: Given): Merged => {
  const settings: { -readonly [N in Name]?: Kept[N] } = {}
  const changes: Array<Change> = []
  const fromRecord: Array<Name> = []
  for (const name of names) {
    // A switch not given reads as false: only `true` is a value, given or recorded.
    const before = recorded?.[name] === false ? undefined : recorded?.[name]
    const now = given[name] === false ? undefined : given[name]
    if (now !== undefined) {
      ;(settings as Record<Name, unknown>)[name] = now
      if (!same(now, before)) changes.push({ name, from: before, to: now })
    } else if (before !== undefined) {
      ;(settings as Record<Name, unknown>)[name] = before
      fromRecord.push(name)
    }
  }
  return { settings, changes, fromRecord }
}

/** Limits by model are equal by what they say, not by identity. */
const same = (a: Value | undefined, b: Value | undefined): boolean =>
  typeof a === "object" || typeof b === "object"
    ? EnqueuedTokens.sameLimits(a as EnqueuedTokens.Limits | undefined, b as EnqueuedTokens.Limits | undefined)
    : a === b

/** `--mode auto`, `--online-budget 25`, `--keep-provider-files`, `--max-enqueued-tokens gpt-4o=90000,500000`. */
export const said = (name: Name, value: Value): string =>
  typeof value === "boolean" ? flags[name] : `${flags[name]} ${typeof value === "object" ? EnqueuedTokens.formatLimits(value) : value}`

/** Whether anything is recorded. */
export const isEmpty = (kept: Kept | undefined): boolean => kept === undefined || names.every((n) => kept[n] === undefined)

/** The recorded settings as flags: `--mode auto --online-budget 25` (empty when none). */
export const describe = (kept: Kept | undefined): string =>
  kept === undefined ? "" : names.flatMap((n) => (kept[n] === undefined || kept[n] === false ? [] : [said(n, kept[n])])).join(" ")
