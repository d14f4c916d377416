/**
 * `sluice preview`: the first N rows of a pipeline, run online through every stage by the
 * runner itself — the pipeline with its source cut to N items and its sink withheld, in a
 * private run directory of its own that is removed afterwards — then each input shown next to
 * what every stage made of it (its parsed output, or the failure with its class and message),
 * and what the full run would cost in batch and in online mode.
 *
 * The cost of the full run is Estimate's projection (every request rendered, input tokens
 * counted), with the output tokens per request the preview measured instead of an assumption;
 * the stages after the first, which Estimate cannot count (their rows come from answers), are
 * projected from the preview's own usage, scaled from its rows to the full run's.
 *
 * Preview answers go through the response cache as a run's do: they are paid for, so the run
 * that follows does not pay for the same requests again, and a preview of an unchanged prompt
 * costs nothing the second time. `--no-cache` asks the model afresh (to see other samples).
 */
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import type { Pipeline } from "@sluice/core"
import type { BatchResult, Source } from "@sluice/core"
import { Providers } from "@sluice/providers"
import { Effect, Schema, Stream } from "effect"
import * as Estimate from "./Estimate.js"
import { count, money, number } from "./internal/format.js"
import { lines } from "./internal/lines.js"
import * as Modes from "./Modes.js"
import type { FailureRecord } from "./Outputs.js"
import type { RowLine } from "./Rows.js"
import * as Pricing from "./Pricing.js"
import * as RunDir from "./RunDir.js"
import type { RunObserver, RunSummary } from "./Runner.js"
import { checkDefinition, loadState, run } from "./Runner.js"
import * as Settings from "./Settings.js"

/** Rows a preview runs when not told (`-n`). */
export const defaultRows = 20

export interface PreviewOptions {
  /** How many source rows (the first ones) to run; default 20. */
  readonly rows?: number
  readonly prices?: Pricing.Prices
  /** The response cache's directory, or false for none (default: as a run's, see `Runner.cacheDir`). */
  readonly cache?: string | false
  /** Online requests in flight at most. */
  readonly concurrency?: number
  readonly rpm?: number
  readonly tpm?: number
  /** Output tokens per request for the projection when the preview measured none (every answer from the cache). */
  readonly outputTokens?: number
  /** Keep the preview's run directory (and say where it is) instead of removing it. */
  readonly keep?: boolean
  readonly observer?: RunObserver
}

/** A stage the preview cannot send online: refused before anything is sent. */
export class PreviewUnsupported extends Schema.TaggedError<PreviewUnsupported>()("PreviewUnsupported", {
  stage: Schema.String,
  provider: Schema.String,
  description: Schema.String
}) {
  override get message(): string {
    return `cannot preview: a preview sends every stage online, and stage "${this.stage}" on ${this.provider} cannot run online: ${this.description}`
  }
}

/** What one stage made of a row, at one attempt (a repair is a later attempt). */
export interface PreviewStep {
  readonly stage: string
  /** The row's key at this stage (a fan-out gives `<parent key>.<suffix>`). */
  readonly key: string
  readonly customId: string
  readonly attempt: number
  /** The answer came from the response cache (not sent, not paid). */
  readonly cached: boolean
  /** The parsed output, when the answer decoded. */
  readonly output?: unknown
  /** Why the row failed at this attempt (a parse failure, a provider's refusal …). */
  readonly failure?: { readonly class: string; readonly code: string; readonly message: string }
  /** The model's answer that did not parse. */
  readonly answer?: string
}

/** One source item of the preview and what became of it. */
export interface PreviewRow {
  /** Where the row came from ("data/rows.jsonl:3"). */
  readonly location: string
  /** The source row (absent for a row the source could not decode: see `failures`). */
  readonly input?: unknown
  readonly steps: ReadonlyArray<PreviewStep>
  /** What the sink would have received for it (after the transforms that follow the last stage). */
  readonly outputs: ReadonlyArray<{ readonly key: string; readonly output: unknown }>
  /** How the row ended failed, as failures.jsonl of a run would list it. */
  readonly failures: ReadonlyArray<{
    readonly stage: string | null
    readonly customId: string | null
    readonly class: string
    readonly code: string
    readonly message: string
  }>
}

/** A stage of the full run, projected. */
export interface StageProjection {
  readonly stage: string
  readonly model: string
  /** Requests of the full run (the first stage: counted by Estimate; later ones: scaled). */
  readonly requests: number
  readonly inputTokens: number
  readonly outputTokens: number
  /** "estimate": input tokens counted over the whole source; "scaled": the preview's usage scaled up; "unknown": nothing measured. */
  readonly basis: "estimate" | "scaled" | "unknown"
  /** Answers the preview measured output tokens on (0: the assumption of `--output-tokens`). */
  readonly measuredAnswers: number
  readonly batch: number | null
  readonly online: number | null
}

export interface Projection {
  /** Rows of the full source that a run would send to the first stage. */
  readonly rows: number
  readonly stages: ReadonlyArray<StageProjection>
  /** The full run at batch prices, and at real-time prices; null when a model has no price or a stage could not be projected. */
  readonly batch: number | null
  readonly online: number | null
  /** Models the price table has no price for. */
  readonly unpriced: ReadonlyArray<string>
  readonly prices: string
  /** Where `sluice run` would refuse the full source before sending (Estimate's refusal), else null. */
  readonly refusal: string | null
}

export interface Preview {
  readonly pipeline: string
  /** The rows asked for, and the source items the preview took (fewer when the source is shorter). */
  readonly asked: number
  readonly rows: ReadonlyArray<PreviewRow>
  readonly succeeded: number
  readonly failed: Readonly<Record<string, number>>
  /** Requests sent online, and rows answered from the response cache. */
  readonly requests: number
  readonly fromCache: number
  readonly usage: { readonly input: number; readonly output: number; readonly cached: number }
  /** What the preview itself cost, at real-time prices (null: a model has no price). */
  readonly cost: number | null
  readonly projection: Projection
  /** The sink the pipeline writes to, which the preview did not touch (null: none). */
  readonly sink: string | null
  /** The preview's run directory when kept (`keep`), else null (it was removed). */
  readonly runDir: string | null
}

/** The pipeline as a run sees it, with its source cut to its first `n` items and no sink. */
const firstRows = (pipeline: Pipeline.Pipeline<any, any>, n: number, seen: Map<string, Source.SourceItem<unknown>>): Pipeline.Pipeline<any, any> => {
  const source = pipeline.source!
  const cut: Source.Source<unknown> = {
    name: `${source.name} (first ${n} rows)`,
    rows: source.rows.pipe(
      Stream.take(n),
      Stream.tap((item) => Effect.sync(() => void (seen.has(item.location) || seen.set(item.location, item))))
    )
  }
  // The same prototype (a pipeline value, pipeable); only the source and the sink differ.
  return Object.assign(Object.create(Object.getPrototypeOf(pipeline) as object) as object, pipeline, { source: cut, sink: undefined })
}

/** Every stage must answer online: checked (as the runner checks it) before anything is sent. */
const checkOnline = (pipeline: Pipeline.Pipeline<any, any>) =>
  Effect.gen(function* () {
    const providers = yield* Providers
    for (const stage of pipeline.stages) {
      const provider = yield* providers.get(stage.provider)
      const mode = Modes.resolve(stage, provider, "online")
      if (mode instanceof Modes.ModeUnsupported) {
        return yield* new PreviewUnsupported({
          stage: stage.name,
          provider: provider.name,
          description: provider.online === undefined
            ? `${provider.name} has no real-time endpoint in sluice; \`sluice estimate\` projects the cost without sending anything`
            : mode.description
        })
      }
    }
  })

const problem = (options: PreviewOptions): Array<string> => {
  const rows = options.rows ?? defaultRows
  return Settings.inRange(Settings.ranges.previewRows, rows) ? [] : [`rows must be ${Settings.describeRange(Settings.ranges.previewRows)}, got ${rows}`]
}

/** A line of results.jsonl (as the collector writes it). */
type ResultLine = BatchResult & { readonly shard: string; readonly attempt: number; readonly cached?: boolean }

const readJsonl = <A>(file: string) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    if (!(yield* fs.exists(file))) return [] as Array<A>
    return yield* lines(file).pipe(
      Stream.filter((l) => l.trim() !== ""),
      Stream.map((l) => JSON.parse(l) as A),
      Stream.runCollect,
      Effect.map((c) => [...c])
    )
  })

export const preview = (pipeline: Pipeline.Pipeline<any, any>, options: PreviewOptions = {}) =>
  Effect.gen(function* () {
    yield* checkDefinition(pipeline)
    const invalid = problem(options)
    if (invalid.length > 0) return yield* new Settings.InvalidSettings({ problems: invalid })
    yield* checkOnline(pipeline)
    const n = options.rows ?? defaultRows
    const prices = options.prices ?? Pricing.builtin
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    // A private directory of its own, never among the user's runs; removed unless kept.
    const dir = yield* Effect.acquireRelease(fs.makeTempDirectory({ prefix: "sluice-preview-" }), (dir) =>
      options.keep === true ? Effect.void : fs.remove(dir, { recursive: true }).pipe(Effect.ignore)
    )
    const runDir = path.join(dir, "run")
    const seen = new Map<string, Source.SourceItem<unknown>>()
    const summary: RunSummary = yield* run(firstRows(pipeline, n, seen), {
      runDir,
      mode: "online",
      prices,
      ...(options.cache === undefined ? {} : { cache: options.cache }),
      ...(options.concurrency === undefined ? {} : { concurrency: options.concurrency }),
      ...(options.rpm === undefined ? {} : { rpm: options.rpm }),
      ...(options.tpm === undefined ? {} : { tpm: options.tpm }),
      ...(options.outputTokens === undefined ? {} : { budgetOutputTokens: options.outputTokens }),
      ...(options.observer === undefined ? {} : { observer: options.observer })
    })
    const found = yield* collect(pipeline, runDir, seen)
    const measured = measure(pipeline, found.rows, found.results, found.stageOfShard)
    const estimate = yield* Estimate.estimate(pipeline, {
      prices,
      ...(measured[0]!.answers > 0
        ? { outputTokens: Math.max(1, Math.round(measured[0]!.output / measured[0]!.answers)) }
        : options.outputTokens === undefined ? {} : { outputTokens: options.outputTokens })
    })
    const projection = project(pipeline, estimate, measured, prices)
    const failed = { ...summary.failed }
    return {
      pipeline: pipeline.name,
      asked: n,
      rows: found.rows,
      succeeded: summary.succeeded,
      failed,
      requests: measured.reduce((a, s) => a + s.sent, 0),
      fromCache: summary.fromCache,
      usage: summary.usage,
      cost: summary.costByMode.online.cost,
      projection,
      sink: pipeline.sink?.name ?? null,
      runDir: options.keep === true ? runDir : null
    } satisfies Preview
  }).pipe(Effect.scoped)

/** The rows of the preview's run directory, by source location, in source order. */
const collect = (pipeline: Pipeline.Pipeline<any, any>, runDir: string, seen: ReadonlyMap<string, Source.SourceItem<unknown>>) =>
  Effect.gen(function* () {
    const path = yield* Path.Path
    const paths = RunDir.paths(runDir, path)
    const state = yield* loadState(paths)
    const stageIndex = new Map(pipeline.stages.map((s, i) => [s.name, i]))
    const stageOfShard = new Map([...state.shards.values()].map((s) => [s.id, s.stage]))
    const results = yield* readJsonl<ResultLine>(paths.results)
    // A retry shard sends a row again under the same custom_id: each shard's step shows its own
    // answer (a duplicated line of one shard changes nothing).
    const answerOf = new Map<string, ResultLine>()
    for (const r of results) answerOf.set(`${r.shard}\u0000${r.customId}`, r)
    const failures = yield* readJsonl<FailureRecord>(paths.failures)
    const failureOf = new Map(failures.filter((f) => f.custom_id !== null).map((f) => [f.custom_id!, f]))
    const outputs = yield* readJsonl<{ key: string; custom_id: string; output: unknown }>(paths.outputs)

    const rows = new Map<string, { input?: unknown; steps: Array<PreviewStep & { order: number }>; outputs: Array<{ key: string; output: unknown }>; failures: PreviewRow["failures"][number][] }>()
    const rowAt = (location: string) => {
      let row = rows.get(location)
      if (row === undefined) {
        const item = seen.get(location)
        row = { ...(item?._tag === "Row" ? { input: item.row } : {}), steps: [], outputs: [], failures: [] }
        rows.set(location, row)
      }
      return row
    }
    for (const location of seen.keys()) rowAt(location)
    const locationOf = new Map<string, string>()
    for (const shard of state.shards.values()) {
      const stage = pipeline.stages[stageIndex.get(shard.stage) ?? -1]
      if (stage === undefined) continue
      for (const line of yield* readJsonl<RowLine>(paths.rowsFile(shard.id))) {
        locationOf.set(line.id, line.loc)
        const answer = answerOf.get(`${shard.id}\u0000${line.id}`)
        const base = { stage: shard.stage, key: line.key, customId: line.id, attempt: shard.attempt, cached: line.c === 1, order: stageIndex.get(shard.stage)! }
        let step: PreviewStep & { order: number }
        if (answer?._tag === "Succeeded") {
          const decoded = stage.decode(answer.text)
          step = decoded._tag === "Right"
            ? { ...base, output: decoded.right }
            : {
              ...base,
              failure: { class: "parse", code: answer.finishReason === "length" ? "truncated" : "parse_error", message: decoded.left },
              answer: answer.text
            }
        } else if (answer?._tag === "Failed") {
          step = { ...base, failure: { class: answer.failure, code: answer.code, message: answer.message } }
        } else {
          // Failed before it was sent (a prompt that throws, a request over the context window …).
          const f = failureOf.get(line.id)
          step = f === undefined ? base : { ...base, failure: { class: f.class, code: f.code, message: f.message } }
        }
        rowAt(line.loc).steps.push(step)
      }
    }
    for (const f of failures) {
      const location = f.location ?? (f.custom_id === null ? undefined : locationOf.get(f.custom_id))
      if (location === undefined) continue
      rowAt(location).failures.push({
        stage: f.shard === null ? null : stageOfShard.get(f.shard) ?? null,
        customId: f.custom_id,
        class: f.class,
        code: f.code,
        message: f.message
      })
    }
    for (const o of outputs) {
      const location = locationOf.get(o.custom_id)
      if (location !== undefined) rowAt(location).outputs.push({ key: o.key, output: o.output })
    }
    const ordered: Array<PreviewRow> = [...rows.entries()].map(([location, r]) => ({
      location,
      ...(r.input === undefined ? {} : { input: r.input }),
      steps: r.steps
        .sort((a, b) => a.order - b.order || a.attempt - b.attempt || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
        .map(({ order: _, ...step }) => step),
      outputs: r.outputs,
      failures: r.failures
    }))
    return { rows: ordered, results, stageOfShard }
  })

interface Measured {
  /** Row lines of the stage in the preview (every attempt, answered from the cache or not), and those of a first attempt. */
  readonly rows: number
  readonly firstRows: number
  /** Answers with usage (from the cache too: their tokens are what the run's answers will count), and that usage. */
  readonly answers: number
  readonly input: number
  readonly output: number
  readonly cached: number
  /** Requests the preview sent online for the stage (answered or failed). */
  readonly sent: number
}

/** Per stage: how many requests the preview made of it, and what their answers counted. */
const measure = (
  pipeline: Pipeline.Pipeline<any, any>,
  rows: ReadonlyArray<PreviewRow>,
  results: ReadonlyArray<ResultLine>,
  stageOfShard: ReadonlyMap<string, string>
): Array<Measured> =>
  pipeline.stages.map((stage) => {
    const m = { rows: 0, firstRows: 0, answers: 0, input: 0, output: 0, cached: 0, sent: 0 }
    for (const row of rows) {
      for (const step of row.steps) {
        if (step.stage !== stage.name) continue
        m.rows++
        if (step.attempt === 1) m.firstRows++
      }
    }
    for (const r of results) {
      if (stageOfShard.get(r.shard) !== stage.name) continue
      if (r.cached !== true) m.sent++
      if (r._tag !== "Succeeded" || r.usage === null) continue
      m.answers++
      m.input += r.usage.inputTokens
      m.output += r.usage.outputTokens
      m.cached += r.usage.cachedInputTokens
    }
    return m
  })

/**
 * The full run: the first stage as Estimate counts it (with the output tokens per request the
 * preview measured); each later stage's measured requests and usage scaled by the full run's
 * first-stage rows over the preview's. Repairs of the first stage are not projected.
 */
const project = (pipeline: Pipeline.Pipeline<any, any>, estimate: Estimate.Estimate, measured: ReadonlyArray<Measured>, prices: Pricing.Prices): Projection => {
  const first = measured[0]!
  const scale = first.firstRows === 0 ? undefined : estimate.rows / first.firstRows
  const unpriced = [...new Set(pipeline.stages.map((s) => s.model))].filter((m) => !Pricing.isPriced(m, prices))
  const stages: Array<StageProjection> = pipeline.stages.map((stage, i) => {
    const m = measured[i]!
    if (i === 0) {
      return {
        stage: stage.name,
        model: stage.model,
        requests: estimate.rows,
        inputTokens: estimate.inputTokens,
        outputTokens: estimate.outputTokens,
        basis: "estimate",
        measuredAnswers: m.answers,
        batch: estimate.cost?.batch ?? null,
        online: estimate.cost?.realtime ?? null
      }
    }
    if (scale === undefined || m.answers === 0) {
      return { stage: stage.name, model: stage.model, requests: 0, inputTokens: 0, outputTokens: 0, basis: "unknown", measuredAnswers: 0, batch: null, online: null }
    }
    // Usage per answer, times the stage's requests (rows that failed before an answer count as answered: an upper bound).
    const per = m.rows / m.answers
    const usage = { input: Math.round(m.input * per * scale), output: Math.round(m.output * per * scale), cached: Math.round(m.cached * per * scale) }
    const cost = Pricing.cost(stage.model, usage, prices)
    return {
      stage: stage.name,
      model: stage.model,
      requests: Math.round(m.rows * scale),
      inputTokens: usage.input,
      outputTokens: usage.output,
      basis: "scaled",
      measuredAnswers: m.answers,
      batch: cost?.batch ?? null,
      online: cost?.realtime ?? null
    }
  })
  const total = (pick: (s: StageProjection) => number | null): number | null =>
    stages.reduce<number | null>((a, s) => (a === null || pick(s) === null ? null : a + pick(s)!), 0)
  return { rows: estimate.rows, stages, batch: total((s) => s.batch), online: total((s) => s.online), unpriced, prices: estimate.prices, refusal: estimate.refusal }
}

// ---------------------------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------------------------

/** A value as JSON on one line, cut at `width` characters. */
export const compact = (value: unknown, width: number): string => cut(JSON.stringify(value) ?? String(value), width)

/** Text on one line (a Schema's error tree has several), cut at `width` characters. */
export const oneLine = (text: string, width: number): string => cut(text.replace(/\s*\n[\s│├└─]*/g, " ").trim(), width)

const cut = (text: string, width: number): string => (text.length <= width ? text : `${text.slice(0, Math.max(1, width - 1))}…`)

const failureText = (f: { readonly class: string; readonly code: string; readonly message: string }): string =>
  `${f.class === f.code ? f.class : `${f.class} (${f.code})`}: ${f.message}`

/** How a row ended: "ok", "failed (parse)", or "no answer" (a preview that stopped early). */
export const rowStatus = (row: PreviewRow): string =>
  row.failures.length > 0 ? `failed (${[...new Set(row.failures.map((f) => f.class))].join(", ")})` : row.outputs.length > 0 ? "ok" : "no answer"

/**
 * The preview for people: each row's input and what every stage made of it (attempts after the
 * first are repairs or retries), then what the preview cost and what the full run would.
 */
export const render = (p: Preview, options: { readonly width?: number; readonly emulated?: boolean } = {}): string => {
  const width = Math.max(40, options.width ?? 100)
  const label = Math.max("input".length, "output".length, "failed".length, ...p.rows.flatMap((r) => r.steps.map((s) => s.stage.length)))
  const pad = (s: string) => s.padEnd(label)
  const indent = " ".repeat(label + 4)
  const valueWidth = width - label - 4
  const firstStage = p.projection.stages[0]?.stage
  const lastStage = p.projection.stages[p.projection.stages.length - 1]?.stage
  const out: Array<string> = []
  for (const [i, row] of p.rows.entries()) {
    const keys = [...new Set(row.steps.filter((s) => s.stage === firstStage).map((s) => s.key))]
    out.push(`row ${i + 1} · ${row.location}${keys.length === 1 ? ` · key ${keys[0]}` : ""} · ${rowStatus(row)}`)
    if (row.input !== undefined) out.push(`  ${pad("input")}  ${compact(row.input, valueWidth)}`)
    for (const step of row.steps) {
      const tags = [
        ...(step.attempt > 1 ? [`attempt ${step.attempt}`] : []),
        ...(step.cached ? ["from the response cache"] : []),
        ...(keys.length === 1 && step.key === keys[0] ? [] : [`key ${step.key}`])
      ]
      const tag = tags.length === 0 ? "" : `(${tags.join(", ")}) `
      const room = valueWidth - tag.length
      if (step.failure !== undefined) {
        out.push(`  ${pad(step.stage)}  ${tag}✗ ${oneLine(failureText(step.failure), room - 2)}`)
        if (step.answer !== undefined) out.push(`${indent}answer: ${compact(step.answer, valueWidth - 8)}`)
      } else if ("output" in step) {
        out.push(`  ${pad(step.stage)}  ${tag}${compact(step.output, room)}`)
      } else {
        out.push(`  ${pad(step.stage)}  ${tag}no answer`)
      }
    }
    // What the sink would get, where transforms after the last stage make it other than its output.
    const lastOutputs = new Set(row.steps.filter((s) => s.stage === lastStage && "output" in s).map((s) => JSON.stringify(s.output)))
    for (const o of row.outputs) {
      if (!lastOutputs.has(JSON.stringify(o.output))) out.push(`  ${pad("output")}  ${compact(o.output, valueWidth)}`)
    }
    // Failures a step above does not show already (an invalid source row, a prompt that threw …).
    const shown = new Set(row.steps.filter((s) => s.failure !== undefined).map((s) => s.customId))
    for (const f of row.failures) {
      if (f.customId !== null && shown.has(f.customId)) continue
      out.push(`  ${pad("failed")}  ${oneLine(`${f.stage === null ? "" : `at ${f.stage}: `}${failureText(f)}`, valueWidth)}`)
    }
    out.push("")
  }
  const failed = Object.entries(p.failed).filter(([, n]) => n > 0)
  const failedRows = failed.reduce((a, [, n]) => a + n, 0)
  out.push(
    `preview of ${p.pipeline}: ${count(p.rows.length, "row")}` +
      `${p.rows.length < p.asked ? ` (all the source has; ${number(p.asked)} asked)` : ""}, ` +
      `${number(p.succeeded)} succeeded, ${number(failedRows)} failed` +
      (failed.length === 0 ? "" : ` (${failed.map(([c, n]) => `${c} ${number(n)}`).join(", ")})`) +
      `; ${count(p.requests, "request")} sent online` +
      (p.fromCache > 0 ? `, ${count(p.fromCache, "row")} answered from the response cache (--no-cache asks again)` : "")
  )
  out.push(
    `${options.emulated === true ? "preview cost had it been real (the emulator charged nothing)" : "preview cost"}: ` +
      `${p.cost === null ? "unknown (a model has no price)" : `${money(p.cost)} at real-time prices`} ` +
      `(${number(p.usage.input)} tokens in, ${number(p.usage.output)} out)`
  )
  out.push(`nothing written${p.sink === null ? "" : ` to ${p.sink}`}; ${p.runDir === null ? "the preview's run directory is removed" : `the preview's run directory is kept: ${p.runDir}`}`)
  out.push(...renderProjection(p.projection))
  return out.join("\n")
}

const renderProjection = (j: Projection): Array<string> => {
  const out: Array<string> = []
  const head = `the full run (${count(j.rows, "row")}), projected`
  if (j.batch !== null && j.online !== null) {
    out.push(`${head}: ~${money(j.batch)} in batch mode, ~${money(j.online)} in online mode (prices of ${j.prices})`)
  } else if (j.unpriced.length > 0) {
    out.push(`${head}: cost unknown: no price for ${j.unpriced.join(" or ")} in the price table (give one with --prices)`)
  } else {
    out.push(`${head}: cost unknown for the stages below that the preview could not measure`)
  }
  for (const s of j.stages) {
    const cost = s.batch === null || s.online === null ? (s.basis === "unknown" ? "" : `; no price for ${s.model}`) : `; batch ~${money(s.batch)}, online ~${money(s.online)}`
    if (s.basis === "estimate") {
      const output = s.measuredAnswers > 0 ? `output measured on ${count(s.measuredAnswers, "answer")}` : "output assumed (set --output-tokens)"
      out.push(`  ${s.stage} (${s.model}): ${count(s.requests, "request")}, ${number(s.inputTokens)} tokens in, ~${number(s.outputTokens)} out (${output})${cost}`)
    } else if (s.basis === "scaled") {
      out.push(`  ${s.stage} (${s.model}): ~${count(s.requests, "request")}, ~${number(s.inputTokens)} tokens in, ~${number(s.outputTokens)} out (the preview's ${count(s.measuredAnswers, "answer")} scaled up)${cost}`)
    } else {
      out.push(`  ${s.stage} (${s.model}): not projected: the preview has no paid answer of it to measure`)
    }
  }
  if (j.refusal !== null) out.push(`warning: ${j.refusal}`)
  return out
}

/** The exit status a preview ends with: rows failed → 1, as a run. */
export const failedRows = (p: Preview): number => Object.values(p.failed).reduce((a, b) => a + b, 0)
