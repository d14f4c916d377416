/**
 * `sluice report`: the run as one self-contained HTML file (ReportPage.ts), with the run's
 * aggregates (RunView.ts) and a bounded sample of its rows (RunRows.ts): the first rows of the
 * run, and examples of every failure class wherever they are.
 *
 * The file holds the run's data, so it is written private (0600) like the run directory, and
 * atomically (a temp file renamed over it): an open report is never half written.
 */
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import { Effect, Schema } from "effect"
import * as PrivateFiles from "./internal/PrivateFiles.js"
import type * as Pricing from "./Pricing.js"
import * as ReportPage from "./ReportPage.js"
import * as RunRows from "./RunRows.js"
import type { RowView } from "./RunRows.js"
import * as RunView from "./RunView.js"

/** Rows embedded in a report unless told otherwise (kept in ReportPage.ts, which the CLI loads for its help). */
export const defaultSampleRows = ReportPage.defaultSampleRows
/** Rows of each failure class embedded however far into the run they are. */
export const examplesPerClass = 20

/** The report file cannot be written where it was asked for. */
export class ReportError extends Schema.TaggedError<ReportError>()("ReportError", {
  file: Schema.String,
  description: Schema.String
}) {
  override get message(): string {
    return `cannot write the report to ${this.file}: ${this.description}`
  }
}

export interface ReportResult {
  readonly file: string
  /** Rows embedded, and rows in the run. */
  readonly shown: number
  readonly of: number
  readonly view: RunView.RunView
}

/** The default place of a run's report: `report.html` in its run directory. */
export const defaultFile = (runDir: string, path: Path.Path): string => path.join(path.resolve(runDir), "report.html")

/** The rows the report embeds, in the run's order, with the raw answer of each that has one. */
const sample = (runDir: string, first: number, view: RunView.RunView) =>
  Effect.gen(function* () {
    const index = yield* RunRows.open(runDir)
    const head = yield* index.page({ offset: 0, limit: first })
    const picked = new Map<string, RowView>(head.rows.map((r) => [r.customId, r]))
    for (const f of view.failures) {
      const examples = yield* index.page({ offset: 0, limit: examplesPerClass, failureClass: f.class })
      for (const r of examples.rows) picked.set(r.customId, r)
    }
    const rows = [...picked.values()].sort((a, b) => a.index - b.index)
    const raws: Record<string, unknown> = {}
    for (const r of rows) {
      if (r.status !== "succeeded" && r.status !== "failed") continue
      const raw = yield* index.raw(r.customId)
      if (raw !== null) raws[r.customId] = raw
    }
    return { rows, raws, of: head.total ?? index.size() }
  })

export const write = (runDir: string, options: { readonly file?: string; readonly sampleRows?: number; readonly prices?: Pricing.Prices } = {}) =>
  Effect.gen(function* () {
    const path = yield* Path.Path
    const fs = yield* FileSystem.FileSystem
    const view = yield* RunView.load(runDir, options.prices === undefined ? {} : { prices: options.prices })
    const { rows, raws, of } = yield* Effect.scoped(sample(runDir, options.sampleRows ?? defaultSampleRows, view))
    const shown = rows.length
    const html = ReportPage.render({ view, data: { mode: "static", view, rows, raws, sampled: { shown, of } } })
    const file = path.resolve(options.file ?? defaultFile(runDir, path))
    const tmp = `${file}.tmp-${process.pid}`
    yield* Effect.scoped(
      Effect.gen(function* () {
        const handle = yield* PrivateFiles.open(tmp, "w")
        yield* handle.writeAll(new TextEncoder().encode(html))
        yield* handle.sync
      })
    ).pipe(
      Effect.zipRight(fs.rename(tmp, file)),
      Effect.tapError(() => fs.remove(tmp).pipe(Effect.ignore)),
      Effect.mapError((e) => {
        const reason = e._tag === "SystemError" ? e.reason : undefined
        const why = reason === "NotFound" ? `${path.dirname(file)} does not exist` : reason === "PermissionDenied" ? "permission denied" : e.message
        return new ReportError({ file, description: why })
      })
    )
    return { file, shown, of, view } satisfies ReportResult
  })
