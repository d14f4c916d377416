/**
 * A run is bound to its providers: each stage's batches live at one endpoint and its answers
 * came from there, so a run directory opened under another provider identity (another base
 * URL, Azure resource or api-version, gateway path …) is refused before any provider call.
 * A run finished against the emulator never counts as done against a real API.
 *
 * Moving a run between identities is explicit (`rebind`) and allowed only while nothing is in
 * flight: a batch between its submit intent and its collection can only be asked about, and
 * downloaded from, where it was created. The move is journaled (`ProviderRebound`) before the
 * manifest takes the new identity, and kept in the manifest's `rebinds`.
 */
import { ProviderIdentity } from "@sluice/providers"
import { Effect, Option, Schema, Stream } from "effect"
import * as JournalStore from "./JournalStore.js"
import * as RunDir from "./RunDir.js"
import * as RunState from "./RunState.js"

const Identity = ProviderIdentity.ProviderIdentity

export class ProviderChanged extends Schema.TaggedError<ProviderChanged>()("ProviderChanged", {
  runDir: Schema.String,
  stage: Schema.String,
  /** The identity the run is bound to. */
  recorded: Identity,
  /** The identity the provider has now. */
  current: Identity
}) {
  override get message(): string {
    return (
      `run ${this.runDir}: stage "${this.stage}" is bound to ${ProviderIdentity.render(this.recorded)}, ` +
      `but ${this.current.provider} is now configured as ${ProviderIdentity.render(this.current)}. ` +
      `Its batches and answers belong to the first: run it with the provider configured as it was, ` +
      `start a new run directory, or move the run with --rebind-provider (only while no batch is in flight)`
    )
  }
}

export class RebindRefused extends Schema.TaggedError<RebindRefused>()("RebindRefused", {
  runDir: Schema.String,
  stage: Schema.String,
  recorded: Identity,
  current: Identity,
  /** Shards between their submit intent and their collection. */
  inFlight: Schema.Array(Schema.String)
}) {
  override get message(): string {
    const n = this.inFlight.length
    const shards = this.inFlight.slice(0, 5).join(", ") + (n > 5 ? ", …" : "")
    return (
      `run ${this.runDir}: cannot move stage "${this.stage}" from ${ProviderIdentity.render(this.recorded)} ` +
      `to ${ProviderIdentity.render(this.current)}: ${n} ${n === 1 ? "batch is" : "batches are"} in flight there (${shards}). ` +
      `Resume the run with the provider configured as it was until nothing is in flight (\`sluice cancel\` stops its batches, ` +
      `the resume after it collects them), then rebind`
    )
  }
}

/** Shard phases whose batch exists, or may, at the provider and is not yet collected. */
const inFlightPhases: ReadonlySet<RunState.ShardPhase> = new Set(["intent", "staged", "created", "terminal"])

type Stage = RunDir.Manifest["stages"][number]

/**
 * What the stage is bound to: its recorded identity, or in a manifest written before binding,
 * the base URL it recorded for the provider (taken with the rest of the current identity).
 */
const recordedOf = (
  manifest: RunDir.Manifest,
  stage: Stage,
  current: ProviderIdentity.ProviderIdentity
): ProviderIdentity.ProviderIdentity | undefined => {
  if (stage.binding !== undefined) return stage.binding
  const baseUrl = manifest.providers[stage.provider]?.baseUrl ?? ""
  if (baseUrl === "") return undefined
  const { family, provider, apiVersion, batchesPath } = current
  return ProviderIdentity.make({ family, provider, baseUrl, apiVersion, batchesPath })
}

/**
 * Checks an existing run's bindings against the providers as configured now; `currentOf`
 * gives a provider's identity by name (none when it is not configured: nothing can be asked
 * of it either). Returns the manifest, with bindings recorded where it had none.
 */
export const check = (options: {
  readonly paths: RunDir.RunPaths
  readonly manifest: RunDir.Manifest
  readonly currentOf: (provider: string) => Effect.Effect<Option.Option<ProviderIdentity.ProviderIdentity>>
  readonly rebind: boolean
}) =>
  Effect.gen(function* () {
    const { paths, manifest } = options
    const changed: Array<{ stage: string; recorded: ProviderIdentity.ProviderIdentity; current: ProviderIdentity.ProviderIdentity }> = []
    const stages: Array<Stage> = []
    const notes: Array<string> = []
    for (const stage of manifest.stages) {
      const current = yield* options.currentOf(stage.provider)
      if (Option.isNone(current)) {
        stages.push(stage)
        continue
      }
      const recorded = recordedOf(manifest, stage, current.value)
      if (recorded !== undefined && !ProviderIdentity.equals(recorded, current.value)) {
        changed.push({ stage: stage.name, recorded, current: current.value })
      } else if (stage.binding === undefined) {
        notes.push(`stage "${stage.name}" → ${ProviderIdentity.render(current.value)}`)
      }
      stages.push({ ...stage, binding: current.value })
    }
    if (changed.length > 0 && !options.rebind) {
      const first = changed[0]!
      return yield* new ProviderChanged({ runDir: paths.root, ...first })
    }
    let rebinds: ReadonlyArray<RunDir.Rebind> = []
    if (changed.length > 0) {
      const state = yield* JournalStore.replay(paths).pipe(Stream.runFold(RunState.empty(), RunState.apply))
      for (const c of changed) {
        const inFlight = [...state.shards.values()].filter((s) => s.stage === c.stage && inFlightPhases.has(s.phase)).map((s) => s.id)
        if (inFlight.length > 0) return yield* new RebindRefused({ runDir: paths.root, ...c, inFlight })
      }
      const at = new Date().toISOString()
      rebinds = changed.map((c) => ({ at, stage: c.stage, from: c.recorded, to: c.current }))
      // Journaled first: a crash before the manifest is written leaves a run that is refused
      // (and rebound) again, never one that moved without a trace.
      yield* Effect.scoped(
        Effect.gen(function* () {
          const journal = yield* JournalStore.open(paths)
          for (const r of rebinds) yield* journal.append({ _tag: "ProviderRebound", ...r })
        })
      )
      for (const r of rebinds) {
        yield* Effect.logWarning(
          `run ${paths.root}: stage "${r.stage}" moved from ${ProviderIdentity.render(r.from)} to ${ProviderIdentity.render(r.to)}; ` +
            `answers collected so far are kept`
        )
      }
    }
    if (changed.length === 0 && notes.length === 0) return manifest
    const next: RunDir.Manifest = {
      ...manifest,
      stages,
      ...(rebinds.length === 0 ? {} : { rebinds: [...(manifest.rebinds ?? []), ...rebinds] })
    }
    yield* RunDir.writeManifest(paths, next)
    if (notes.length > 0) {
      yield* Effect.logInfo(
        `run ${paths.root} was started before runs were bound to their providers; recorded ${notes.join(", ")}. ` +
          `From now on it runs only against these`
      )
    }
    return next
  })

/** Records the current identity of stages that have none yet (a stage added by an accepted change). */
export const complete = (options: {
  readonly paths: RunDir.RunPaths
  readonly manifest: RunDir.Manifest
  readonly currentOf: (provider: string) => Effect.Effect<Option.Option<ProviderIdentity.ProviderIdentity>>
}) =>
  Effect.gen(function* () {
    const { manifest } = options
    if (manifest.stages.every((s) => s.binding !== undefined)) return manifest
    const stages: Array<Stage> = []
    for (const stage of manifest.stages) {
      const current = stage.binding === undefined ? yield* options.currentOf(stage.provider) : Option.none()
      stages.push(Option.isSome(current) ? { ...stage, binding: current.value } : stage)
    }
    const next = { ...manifest, stages }
    yield* RunDir.writeManifest(options.paths, next)
    return next
  })
