/**
 * What a run tells OpenTelemetry: spans (the run, each shard's submit, poll, collect and
 * online work; the provider calls are HttpClient's own spans) and `sluice.*` metrics, counted
 * from the journal events this process records. Spans and metrics are plain Effect ones: they
 * cost next to nothing when nothing exports them.
 *
 * They are exported over OTLP/HTTP when the standard environment asks for it
 * (`OTEL_EXPORTER_OTLP_ENDPOINT`, or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` /
 * `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`). The OpenTelemetry SDK is imported only then
 * (internal/otlp.ts): without those variables a command loads none of it.
 */
import { Cause, Effect, Layer, Metric } from "effect"
import type { Tracer } from "effect"
import type { JournalEvent } from "./JournalEvent.js"
import * as Pricing from "./Pricing.js"
import type { RunState, ShardState } from "./RunState.js"

// ---------------------------------------------------------------------------------------------
// Metrics (README "OpenTelemetry" lists them)
// ---------------------------------------------------------------------------------------------

/** Rows that reached an outcome, by `stage` and `outcome` (succeeded, failed with its `failure_class`, invalid). */
export const rows = Metric.counter("sluice.rows", { description: "rows that reached an outcome in this process", incremental: true })

/** Tokens the provider counted for collected answers, by `stage`, `model` and `token_type` (input, output, cached). */
export const tokens = Metric.counter("sluice.tokens", { description: "tokens of collected answers", incremental: true })

/** USD of collected answers, by `stage`, `model` and `mode`: batch answers at batch prices, online ones at real-time prices. */
export const spend = Metric.counter("sluice.spend", { description: "USD of collected answers, at the prices of the mode that answered", incremental: true })

/** Batches created and not yet ended, by `stage`. */
export const batchesInFlight = Metric.gauge("sluice.batches.in_flight", { description: "batches created and not yet ended" })

/** Requests sent to a real-time endpoint (retries included), by `stage`, `provider` and `model`. */
export const onlineRequests = Metric.counter("sluice.online.requests", { description: "requests sent to a real-time endpoint", incremental: true })

const add = (metric: Metric.Metric.Counter<number>, amount: number, tags: Record<string, string>): Effect.Effect<void> =>
  amount > 0 ? Metric.incrementBy(Object.entries(tags).reduce((m, [key, value]) => Metric.tagged(m, key, value), metric), amount) : Effect.void

/** Counts what one journaled event says (after it was applied to `state`); `firstStage`: the stage the source feeds. */
export const count = (event: JournalEvent, state: RunState, prices: Pricing.Prices, firstStage: string): Effect.Effect<void> =>
  Effect.suspend(() => counted(event, state, prices, firstStage))

const counted = (event: JournalEvent, state: RunState, prices: Pricing.Prices, firstStage: string): Effect.Effect<void> => {
  const shardOf = (id: string) => state.shards.get(id)
  switch (event._tag) {
    case "ShardPlanned":
    case "StagePlanned":
      return add(rows, event.invalid, { stage: event.stage, outcome: "invalid" })
    case "PlanComplete":
      return add(rows, event.invalid, { stage: firstStage, outcome: "invalid" })
    case "ShardRewritten": {
      const shard = shardOf(event.shard)
      return shard === undefined ? Effect.void : add(rows, event.conflicts, { stage: shard.stage, outcome: "invalid" })
    }
    case "Created":
    case "Terminal":
    case "CreateRejected":
      return inFlight(state)
    case "Collected": {
      const shard = shardOf(event.shard)
      if (shard === undefined) return Effect.void
      const stage = shard.stage
      const model = shard.model
      const mode = shard.online ? "online" : "batch"
      const cost = Pricing.cost(model, event.usage, prices)
      return Effect.all([
        add(rows, event.succeeded, { stage, outcome: "succeeded" }),
        ...Object.entries(event.failed).map(([failureClass, n]) => add(rows, n, { stage, outcome: "failed", failure_class: failureClass })),
        add(tokens, event.usage.input, { stage, model, token_type: "input" }),
        add(tokens, event.usage.output, { stage, model, token_type: "output" }),
        add(tokens, event.usage.cached, { stage, model, token_type: "cached" }),
        cost === undefined ? Effect.void : add(spend, shard.online ? cost.realtime : cost.batch, { stage, model, mode })
      ], { discard: true })
    }
    default:
      return Effect.void
  }
}

/** Sets the in-flight gauge of every stage from the run's state. */
export const inFlight = (state: RunState): Effect.Effect<void> =>
  Effect.forEach(
    [...state.stages.keys()],
    (stage) => {
      let n = 0
      for (const s of state.shards.values()) if (s.stage === stage && s.phase === "created") n++
      return Metric.set(Metric.tagged(batchesInFlight, "stage", stage), n)
    },
    { discard: true }
  )

/** Counts a request about to be sent online for `shard`. */
export const onlineRequest = (shard: ShardState): Effect.Effect<void> =>
  add(onlineRequests, 1, { stage: shard.stage, provider: shard.provider, model: shard.model })

// ---------------------------------------------------------------------------------------------
// Spans
// ---------------------------------------------------------------------------------------------

/** A shard's attributes as it stands: what it is, its batch, and its rows once collected. */
export const shardAttributes = (shard: ShardState): Record<string, string | number | boolean> => ({
  "sluice.shard": shard.id,
  "sluice.stage": shard.stage,
  "sluice.attempt": shard.attempt,
  "sluice.provider": shard.provider,
  "sluice.model": shard.model,
  "sluice.mode": shard.online ? "online" : "batch",
  "sluice.phase": shard.phase,
  "sluice.rows.requests": shard.requests,
  "sluice.rows.cached": shard.cachedRows,
  ...(shard.batchId === null ? {} : { "sluice.batch_id": shard.batchId }),
  ...(shard.status === null ? {} : { "sluice.batch.status": shard.status }),
  ...(shard.counts === null ? {} : { "sluice.batch.succeeded": shard.counts.succeeded, "sluice.batch.failed": shard.counts.failed }),
  ...(shard.collected === null ? {} : {
    "sluice.rows.succeeded": shard.collected.succeeded,
    "sluice.rows.failed": Object.values(shard.collected.failed).reduce((a, b) => a + b, 0),
    "sluice.rows.rescheduled": shard.collected.rescheduled
  })
})

/**
 * Runs `self` in a span named `name` for `shard`, its attributes set at the start and again
 * at the end (the shard state changes in place: batch id, status, counts). `parent`: the span
 * to hang it under, when the current one is not (a retry shard is launched from its parent's
 * collection, but belongs to the run). `when`: whether the shard, as it is when `self` starts,
 * has work for it (no span for a step that has nothing to do, as a resume finds many).
 */
export const shardSpan = (
  name: string,
  shard: ShardState,
  options: { readonly parent?: Tracer.AnySpan | undefined; readonly when?: (shard: ShardState) => boolean } = {}
) =>
<A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.suspend(() =>
    options.when !== undefined && !options.when(shard) ? self : self.pipe(
      Effect.ensuring(Effect.suspend(() => Effect.annotateCurrentSpan(shardAttributes(shard)))),
      Effect.withSpan(name, { attributes: shardAttributes(shard), ...(options.parent === undefined ? {} : { parent: options.parent }) })
    )
  )

// ---------------------------------------------------------------------------------------------
// Export
// ---------------------------------------------------------------------------------------------

// Declared beside the exporter (loaded only when asked for), which must not import this module back.
export type { ExportConfig } from "./internal/otlp.js"
import type { ExportConfig } from "./internal/otlp.js"

/**
 * As the OpenTelemetry SDK reads the environment: a signal is exported when its endpoint is
 * set (the signal's own, or the generic one), unless `OTEL_SDK_DISABLED=true` or its
 * exporter is `none` (`OTEL_TRACES_EXPORTER`, `OTEL_METRICS_EXPORTER`).
 */
export const configFromEnv = (env: Readonly<Record<string, string | undefined>> = process.env): ExportConfig | undefined => {
  const set = (name: string) => (env[name] ?? "").trim() !== ""
  if ((env["OTEL_SDK_DISABLED"] ?? "").trim().toLowerCase() === "true") return undefined
  const wanted = (signal: "TRACES" | "METRICS") =>
    (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set(`OTEL_EXPORTER_OTLP_${signal}_ENDPOINT`)) &&
    (env[`OTEL_${signal}_EXPORTER`] ?? "").trim().toLowerCase() !== "none"
  const config = { traces: wanted("TRACES"), metrics: wanted("METRICS") }
  return config.traces || config.metrics ? config : undefined
}

/**
 * Why the environment's OTLP protocol cannot be served, if it cannot: sluice exports OTLP/HTTP
 * (JSON), which a collector takes on its HTTP port whether `http/json` or `http/protobuf` (the
 * SDK's default) is named; `grpc` names another port and wire, where every export would fail.
 */
export const protocolProblem = (env: Readonly<Record<string, string | undefined>> = process.env): string | undefined => {
  for (const name of ["OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"]) {
    const value = (env[name] ?? "").trim().toLowerCase()
    if (value !== "" && value !== "http/json" && value !== "http/protobuf") {
      return `${name}=${value} is not supported: sluice exports OTLP over HTTP (JSON) only; set ${name}=http/json and the endpoint to the collector's HTTP port (usually 4318)`
    }
  }
  return undefined
}

/**
 * The OTLP/HTTP export the environment asks for, flushed when the layer's scope closes; an
 * empty layer (nothing imported) when it asks for none. For your own Effect programs:
 * `Runner.run(...).pipe(Effect.provide(Telemetry.layerFromEnv))`.
 */
export const layerFromEnv: Layer.Layer<never> = Layer.unwrapEffect(
  Effect.suspend(() => {
    const config = configFromEnv()
    if (config === undefined) return Effect.succeed(Layer.empty)
    const problem = protocolProblem()
    if (problem !== undefined) return Effect.die(new Error(problem))
    return Effect.promise(() => import("./internal/otlp.js")).pipe(Effect.map((otlp) => otlp.layer(config)))
  })
).pipe(
  // Telemetry that cannot start (a broken install, a setting the SDK refuses) costs the run nothing either.
  Layer.catchAllCause((cause) => {
    const problem = Cause.squash(cause)
    return Layer.effectDiscard(
      Effect.logWarning(`OpenTelemetry: nothing is exported: ${problem instanceof Error ? problem.message : String(problem)}`)
    )
  })
)

/** Runs `effect` with the export the environment asks for (`layerFromEnv`): what `sluice run`, `resume`, `retry` and the Promise API's run do. */
export const exported = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  configFromEnv() === undefined ? effect : Effect.provide(effect, layerFromEnv)
