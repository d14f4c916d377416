/**
 * The page of `sluice report` and `sluice ui`: one self-contained HTML document. Its script
 * (assets/report.js), its styles (assets/report.css) and uPlot, the charting library, are
 * inlined, and no font is loaded: the page fetches nothing from the network in static mode.
 * The data comes in `window.SLUICE_DATA`: the view and a sample of rows (static), or the
 * token of the live server's API (live).
 */
import { readFileSync } from "node:fs"
import { createRequire } from "node:module"
import type { RowView } from "./RunRows.js"
import type { RunView } from "./RunView.js"

export type { RowStatus, RowView } from "./RunRows.js"

/** The page's data: everything in the page (`sluice report`), or the live server's token (`sluice ui`). */
export type PageData =
  | {
      readonly mode: "static"
      readonly view: RunView
      readonly rows: ReadonlyArray<RowView>
      /** The raw answer of each sample row that has one, by custom_id ("raw answer" on the page). */
      readonly raws: Readonly<Record<string, unknown>>
      readonly sampled: { readonly shown: number; readonly of: number }
    }
  | {
      readonly mode: "live"
      readonly token: string
      /** The view at the time the page was served, so it shows at once. */
      readonly view?: RunView
    }

/**
 * Rows embedded in a report unless told otherwise; the live page (`sluice ui`) browses all.
 * Here, not in Report.ts, so that the CLI can show it without loading the report.
 */
export const defaultSampleRows = 2000

const require = createRequire(import.meta.url)

/** The files the page inlines, read once. */
const assets = (() => {
  let cached: { readonly uplotJs: string; readonly uplotCss: string; readonly js: string; readonly css: string } | undefined
  return () =>
    (cached ??= {
      uplotJs: readFileSync(require.resolve("uplot/dist/uPlot.iife.min.js"), "utf8"),
      uplotCss: readFileSync(require.resolve("uplot/dist/uPlot.min.css"), "utf8"),
      js: readFileSync(new URL("../assets/report.js", import.meta.url), "utf8"),
      css: readFileSync(new URL("../assets/report.css", import.meta.url), "utf8")
    })
})()

/**
 * JSON safe inside a <script> element: `<` escaped (no `</script>` or `<!--` can end it early),
 * and the two line separators JavaScript once did not allow in strings.
 */
export const scriptJson = (value: unknown): string =>
  JSON.stringify(value).replace(/</g, "\\u003c").replace(/\u2028/g, "\\u2028").replace(/\u2029/g, "\\u2029")

/** Text inside a <script> or <style> element: it must not hold its own end tag. */
const inline = (text: string, tag: "script" | "style"): string => text.replace(new RegExp(`</${tag}`, "gi"), `<\\/${tag}`)

const escapeHtml = (text: string): string =>
  text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!)

export const render = (input: { readonly view?: RunView | null; readonly data: PageData }): string => {
  const a = assets()
  const view = input.view ?? input.data.view ?? null
  const data = input.data.mode === "live" && view !== null ? { ...input.data, view } : input.data
  const title = view === null ? "sluice" : `sluice · ${view.pipeline} · ${view.runId}`
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:;${input.data.mode === "live" ? " connect-src 'self';" : ""}">
<title>${escapeHtml(title)}</title>
<style>${inline(a.uplotCss, "style")}</style>
<style>${inline(a.css, "style")}</style>
</head>
<body>
<header>
  <h1 id="title">sluice</h1>
  <div class="meta" id="meta"></div>
</header>
<main>
  <div class="notice" id="notice" hidden></div>
  <section id="totals-section">
    <h2>Totals</h2>
    <div class="cards" id="totals"></div>
    <p class="muted" id="totals-failed"></p>
  </section>
  <section>
    <h2>Rows over time</h2>
    <div id="rows-chart"></div>
  </section>
  <section>
    <h2>Shards</h2>
    <div class="legend"><span><i class="seg waiting"></i>planned → submitted</span><span><i class="seg queued"></i>submitted → in progress</span><span><i class="seg running"></i>in progress → ended</span><span><i class="seg collecting"></i>ended → collected</span></div>
    <table class="timeline" id="shards"></table>
  </section>
  <div class="grid2">
    <section>
      <h2>Spend</h2>
      <table id="spend"></table>
      <p class="muted" id="prices"></p>
    </section>
    <section>
      <h2>Failures by class</h2>
      <div id="failures"></div>
    </section>
  </div>
  <section>
    <h2>Tokens per answer</h2>
    <div id="tokens"></div>
  </section>
  <section id="rows-section">
    <h2>Rows</h2>
    <div class="filters">
      <label>status <select id="filter-status"><option value="">any</option><option>succeeded</option><option>failed</option><option>pending</option><option>invalid</option></select></label>
      <label>failure class <select id="filter-class"><option value="">any</option></select></label>
      <label>stage <select id="filter-stage"><option value="">any</option></select></label>
      <input type="search" id="search" placeholder="search by key or text">
    </div>
    <table class="rows" id="rows"></table>
    <div class="pager"><button id="prev">previous</button><button id="next">next</button><span class="muted" id="rows-status"></span></div>
  </section>
</main>
<script>window.SLUICE_DATA = ${scriptJson(data)}</script>
<script>${inline(a.uplotJs, "script")}</script>
<script>${inline(a.js, "script")}</script>
</body>
</html>
`
}
