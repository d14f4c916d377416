/**
 * `sluice report`: the run as one self-contained HTML file (ReportPage.ts), with the run's
 * aggregates (RunView.ts) and a bounded sample of its rows (ReportSample.ts).
 *
 * The file holds the run's data, so it is written private (0600) like the run directory, and
 * atomically (a temp file renamed over it): an open report is never half written.
 */
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import { Effect } from "effect"
import * as PrivateFiles from "./internal/PrivateFiles.js"
import type * as Pricing from "./Pricing.js"
import * as ReportPage from "./ReportPage.js"
import * as ReportSample from "./ReportSample.js"
import * as RunView from "./RunView.js"

/** Rows embedded in a report unless told otherwise; the live page (`sluice ui`) browses all. */
export const defaultSampleRows = 2000
/** Rows of each failure class embedded however far into the run they are. */
export const examplesPerClass = 20

export interface ReportResult {
  readonly file: string
  /** Rows embedded, and rows in the run. */
  readonly shown: number
  readonly of: number
  readonly view: RunView.RunView
}

/** The default place of a run's report: `report.html` in its run directory. */
export const defaultFile = (runDir: string, path: Path.Path): string => path.join(path.resolve(runDir), "report.html")

export const write = (runDir: string, options: { readonly file?: string; readonly sampleRows?: number; readonly prices?: Pricing.Prices } = {}) =>
  Effect.gen(function* () {
    const path = yield* Path.Path
    const fs = yield* FileSystem.FileSystem
    const view = yield* RunView.load(runDir, options.prices === undefined ? {} : { prices: options.prices })
    const sample = yield* ReportSample.sample(runDir, { rows: options.sampleRows ?? defaultSampleRows, perClass: examplesPerClass })
    const of = view.totals.rows
    const shown = sample.rows.length
    const html = ReportPage.render({ view, data: { mode: "static", view, rows: sample.rows, raws: sample.raws, sampled: { shown, of: Math.max(of, shown) } } })
    const file = path.resolve(options.file ?? defaultFile(runDir, path))
    const tmp = `${file}.tmp-${process.pid}`
    yield* Effect.scoped(
      Effect.gen(function* () {
        const handle = yield* PrivateFiles.open(tmp, "w")
        yield* handle.writeAll(new TextEncoder().encode(html))
        yield* handle.sync
      })
    )
    yield* fs.rename(tmp, file)
    return { file, shown, of, view } satisfies ReportResult
  })
