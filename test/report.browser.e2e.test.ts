/**
 * `sluice report` in a real browser: the demo pipeline (examples/reviews.ts: its rows, Schema
 * and prompt, on 120 of its reviews) runs through the real CLI against the emulator with
 * faults, so rows are retried, repaired and some end failed; `sluice report` writes the page,
 * and headless Chromium opens it with every non-file request aborted.
 *
 * The test writes a PNG of the report: to the temp project, or to `SLUICE_SCREENSHOT` when set
 * (`npm run screenshot` sets it to docs/images/report.png).
 */
import { cpSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs"
import { dirname, resolve } from "node:path"
import { NodeContext } from "@effect/platform-node"
import { Effect } from "effect"
import * as ReportPage from "../packages/runner/src/ReportPage.js"
import type { RowView } from "../packages/runner/src/RunRows.js"
import * as RunView from "../packages/runner/src/RunView.js"
import type { Browser, Page } from "playwright-core"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { launchChromium, offlinePage } from "./support/browser.js"
import {
  describeResult,
  emulatorEnv,
  fastRunFlags,
  makeProject,
  readJsonl,
  repoRoot,
  runCli,
  startTestEmulator,
  writeText
} from "./support/cli.js"
import type { TempProject, TestEmulator } from "./support/cli.js"

const ROWS = 120

/** The demo pipeline on the project's copy of its rows; a second attempt at most, so some rows end failed. */
const pipeline = `import { Pipeline, Sink, Source } from "@sluice/core"
import { Label, labelPrompt, Review } from ${JSON.stringify(resolve(repoRoot, "examples/reviews.js"))}

export default Pipeline.make("reviews").pipe(
  Pipeline.from(Source.jsonl("data/reviews.jsonl", Review), { key: (r) => r.id }),
  Pipeline.batch("label", { provider: "openai", model: "gpt-4o-mini", params: { temperature: 0 }, prompt: labelPrompt, output: Label, maxAttempts: 2 }),
  Pipeline.to(Sink.jsonl("out/reviews.labeled.jsonl"))
)
`

/** What the page's functions below use of the browser (this project's TypeScript has no DOM library). */
interface Browserside {
  readonly document: { querySelectorAll(selector: string): ArrayLike<{ getAttribute(name: string): string | null }> }
  readonly SLUICE_DATA: { readonly view: unknown }
  scrollTo(x: number, y: number): void
}

interface FailureLine {
  readonly custom_id: string | null
  readonly key: string | null
  readonly class: string
}

/** Once the row browser shows only rows of `cls`: they are exactly failures.jsonl's rows of that class. */
const expectRowsOfClass = async (page: Page, cls: string, failures: ReadonlyArray<FailureLine>) => {
  await page.waitForFunction((c) => {
    const rows = Array.from((globalThis as unknown as Browserside).document.querySelectorAll("#rows tbody tr"))
    return rows.length > 0 && rows.every((r) => r.getAttribute("data-class") === c)
  }, cls)
  const keys = await page.locator("#rows tbody tr").evaluateAll((rows) => rows.map((r) => r.getAttribute("data-key")))
  expect([...keys].sort(), `rows of class ${cls}`).toEqual(failures.filter((f) => f.class === cls).map((f) => f.key).sort())
}


describe("sluice report, opened in headless Chromium", () => {
  let project: TempProject
  let emulator: TestEmulator
  let browser: Browser
  /** The view embedded in the report of the first test. */
  let reportedView: RunView.RunView | undefined

  beforeAll(async () => {
    project = await makeProject("sluice-report-")
    emulator = await startTestEmulator({ errorRate: 0.1, invalidJsonRate: 0.1 })
    browser = await launchChromium()
  })
  afterAll(async () => {
    await browser?.close()
    await emulator?.close()
    await project?.cleanup()
  })

  it("shows the totals of `sluice status`, filters rows by failure class, finds a row by key, and fetches nothing", async () => {
    const reviews = readFileSync(resolve(repoRoot, "examples/data/reviews.jsonl"), "utf8").split("\n").slice(0, ROWS)
    await writeText(project, "data/reviews.jsonl", reviews.join("\n") + "\n")
    await writeText(project, "reviews.pipeline.ts", pipeline)
    const env = emulatorEnv(emulator.url)
    const run = await runCli(["run", "reviews.pipeline.ts", "--run-dir", "run", ...fastRunFlags(40)], { cwd: project.dir, env })
    expect(run.code, `the run ends with failed rows: ${describeResult(run)}`).toBe(1)

    const status = await runCli(["status", "run", "--json", "--no-refresh"], { cwd: project.dir })
    expect(status.code, describeResult(status)).toBe(0)
    const s = JSON.parse(status.stdout) as {
      rows: number
      succeeded: number
      failed: Record<string, number>
      pending: number
      batches: number
      usage: { input: number; output: number }
    }

    const report = await runCli(["report", "run"], { cwd: project.dir })
    expect(report.code, describeResult(report)).toBe(0)
    const file = project.path("run", "report.html")
    expect(report.stdout).toContain(file)
    expect(statSync(file).mode & 0o777, "the report holds the run's data: private like the run directory").toBe(0o600)

    const { page, blocked, errors, context } = await offlinePage(browser)
    await page.goto(`file://${file}`)
    await page.waitForSelector("body[data-ready=true]")

    // Totals, as `sluice status --json` has them.
    const total = (name: string) => page.locator(`[data-total="${name}"]`).textContent()
    const n = (text: string | null) => Number((text ?? "").replace(/,/g, ""))
    const failedRows = Object.values(s.failed).reduce((a, b) => a + b, 0)
    expect(failedRows, "the faults left some rows failed").toBeGreaterThan(0)
    expect(n(await total("rows"))).toBe(s.rows)
    expect(s.rows).toBe(ROWS)
    expect(n(await total("succeeded"))).toBe(s.succeeded)
    expect(n(await total("failed"))).toBe(failedRows)
    expect(n(await total("pending"))).toBe(s.pending)
    expect(n(await total("batches"))).toBe(s.batches)
    expect(n(await total("tokens-in"))).toBe(s.usage.input)
    expect(n(await total("tokens-out"))).toBe(s.usage.output)

    // The view the page was given agrees with itself and with the run's files.
    const view = (await page.evaluate(() => (globalThis as unknown as Browserside).SLUICE_DATA.view)) as RunView.RunView
    const last = view.timeline[view.timeline.length - 1]!
    expect(last, "rows over time end at the totals").toMatchObject({ succeeded: s.succeeded, failed: failedRows, pending: s.pending })
    const answers = (await readJsonl<{ _tag: string; cached?: boolean }>(project.path("run", "results.jsonl"))).filter((r) => r._tag === "Succeeded" && r.cached !== true)
    expect(view.tokens.map((t) => [t.stage, t.answers, t.input.counts.reduce((a, b) => a + b, 0), t.output.counts.reduce((a, b) => a + b, 0)])).toEqual([
      ["label", answers.length, answers.length, answers.length]
    ])
    expect(view.spend.map((l) => [l.stage, l.model, l.mode, l.usage.input, l.usage.output])).toEqual([["label", "gpt-4o-mini", "batch", s.usage.input, s.usage.output]])

    // Retries and repairs show in the shard timeline.
    expect(await page.locator("#shards tbody tr").count()).toBeGreaterThan(3)
    expect(await page.locator("#shards .badge.retry").count()).toBeGreaterThan(0)

    // Each failure class, clicked, shows exactly the rows failures.jsonl lists for it.
    const failures = await readJsonl<FailureLine>(project.path("run", "failures.jsonl"))
    const classes = [...new Set(failures.map((f) => f.class))].sort()
    expect(classes.length).toBeGreaterThan(0)
    const shownClasses = await page.locator("[data-failure-class]").evaluateAll((els) => els.map((e) => e.getAttribute("data-failure-class")))
    expect([...shownClasses].sort()).toEqual(classes)
    for (const cls of classes) {
      await page.locator(`[data-failure-class="${cls}"]`).click()
      await expectRowsOfClass(page, cls, failures)
    }

    // Search by key: the row, with its input next to its parsed output.
    await page.selectOption("#filter-class", "")
    const labeled = await readJsonl<{ input: { id: string }; output: { summary: string } }>(project.path("out", "reviews.labeled.jsonl"))
    const wanted = labeled[Math.floor(labeled.length / 2)]!
    await page.fill("#search", wanted.input.id)
    await page.waitForFunction((key) => {
      const rows = Array.from((globalThis as unknown as Browserside).document.querySelectorAll("#rows tbody tr"))
      return rows.length === 1 && rows[0]!.getAttribute("data-key") === key
    }, wanted.input.id)
    const row = page.locator("#rows tbody tr").first()
    expect(await row.getAttribute("data-status")).toBe("succeeded")
    expect(await row.locator("td.io").nth(1).textContent()).toContain(wanted.output.summary)
    // The raw answer on demand.
    await row.locator("button", { hasText: "raw answer" }).click()
    expect(await row.locator("pre.raw").textContent()).toContain('"custom_id"')

    // The screenshot of the report, from the top.
    await page.selectOption("#filter-status", "")
    await page.fill("#search", "")
    await page.evaluate(() => (globalThis as unknown as Browserside).scrollTo(0, 0))
    const target = process.env["SLUICE_SCREENSHOT"]
    const png = target === undefined || target === "" ? project.path("report.png") : resolve(repoRoot, target)
    mkdirSync(dirname(png), { recursive: true })
    await page.screenshot({ path: png, clip: { x: 0, y: 0, width: 1280, height: 1800 }, fullPage: true })
    expect(readFileSync(png).subarray(1, 4).toString("latin1")).toBe("PNG")

    expect(blocked, "the report fetched nothing").toEqual([])
    expect(errors, "no script errors").toEqual([])
    await context.close()
    reportedView = view
  })

  it("a sample of the rows says so, and still holds every failed row of each class", async () => {
    expect(reportedView, "the report test ran first").toBeDefined()
    const report = await runCli(["report", "run", "-o", "sample.html", "--rows", "10", "--json"], { cwd: project.dir })
    expect(report.code, describeResult(report)).toBe(0)
    const failures = await readJsonl<FailureLine>(project.path("run", "failures.jsonl"))
    const written = JSON.parse(report.stdout) as { file: string; rows: { shown: number; of: number } }
    expect(written).toEqual({ file: project.path("sample.html"), rows: { shown: 10 + failures.filter((f) => Number(f.key!.slice(4)) > 10).length, of: ROWS } })

    const { page, blocked, errors, context } = await offlinePage(browser)
    await page.goto(`file://${written.file}`)
    await page.waitForSelector("body[data-ready=true]")
    expect(await page.locator("#notice").textContent()).toContain(`Showing ${written.rows.shown} of ${ROWS} rows`)
    for (const cls of new Set(failures.map((f) => f.class))) {
      await page.selectOption("#filter-class", cls)
      await expectRowsOfClass(page, cls, failures)
    }
    expect(blocked).toEqual([])
    expect(errors).toEqual([])
    await context.close()
  })

  it("rows holding markup or script end tags show as text, and run nothing", async () => {
    expect(reportedView, "the report test ran first").toBeDefined()
    const hostile = `</script><script>globalThis.pwned = 1</script><img src=x onerror="globalThis.pwned = 2"> \u2028 <!-- `
    const row: RowView = {
      index: 0,
      customId: "label-x-1",
      key: "</script>",
      stage: "label",
      shard: "label-00001",
      status: "succeeded",
      failure: null,
      input: { text: hostile },
      output: hostile,
      cached: false
    }
    const html = ReportPage.render({ view: reportedView!, data: { mode: "static", view: reportedView!, rows: [row], raws: { [row.customId]: { hostile } }, sampled: { shown: 1, of: 1 } } })
    writeFileSync(project.path("hostile.html"), html)
    const { page, blocked, errors, context } = await offlinePage(browser)
    let dialogs = 0
    page.on("dialog", (d) => void (dialogs++, d.dismiss()))
    await page.goto(`file://${project.path("hostile.html")}`)
    await page.waitForSelector("body[data-ready=true]")
    const shown = page.locator("#rows tbody tr").first()
    expect(await shown.getAttribute("data-key")).toBe("</script>")
    expect(await shown.locator("td.io").first().textContent()).toContain("<img src=x onerror=")
    expect(await shown.locator("td.io").nth(1).textContent()).toContain("</script><script>globalThis.pwned = 1</script>")
    expect(await page.evaluate(() => (globalThis as unknown as { pwned?: number }).pwned)).toBeUndefined()
    expect(dialogs).toBe(0)
    // The image the markup names was never requested: it was never an element.
    expect(blocked).toEqual([])
    expect(errors).toEqual([])
    await context.close()
  })

  it("RunView: a journal from before lines carried their time; the live loader reading on from where it stopped", async () => {
    expect(reportedView, "the report test ran first").toBeDefined()
    const view = reportedView!
    // A journal from before lines carried their time gives the same totals, and no rows over time.
    cpSync(project.path("run"), project.path("old-run"), { recursive: true })
    const journal = readFileSync(project.path("old-run", "journal.jsonl"), "utf8")
    writeFileSync(project.path("old-run", "journal.jsonl"), journal.replace(/,"t":\d+\}\n/g, "}\n"))
    expect(readFileSync(project.path("old-run", "journal.jsonl"), "utf8")).not.toContain('"t":')
    const old = await Effect.runPromise(RunView.load(project.path("old-run")).pipe(Effect.provide(NodeContext.layer)))
    expect({ ...old.totals, runDir: view.totals.runDir }).toEqual(view.totals)
    expect(old.timeline).toEqual([])
    expect(old.failures).toEqual(view.failures)

    // The live page's loader reads on from where it stopped: the run as it was before its last
    // collection (the journal cut there; the output files' later lines are past their committed
    // lengths), then as it is, gives what a fresh load gives.
    const fullJournal = readFileSync(project.path("run", "journal.jsonl"), "utf8")
    const cut = fullJournal.lastIndexOf('{"_tag":"Collected"')
    cpSync(project.path("run"), project.path("mid-run"), { recursive: true })
    writeFileSync(project.path("mid-run", "journal.jsonl"), fullJournal.slice(0, cut))
    const provided = <A, E>(effect: Effect.Effect<A, E, any>) => Effect.runPromise(effect.pipe(Effect.provide(NodeContext.layer)) as Effect.Effect<A, E, never>)
    const loader = RunView.makeLoader(project.path("mid-run"))
    const before = await provided(loader.load)
    expect(before.totals.pending, "mid-run: the last shard's rows are not collected yet").toBeGreaterThan(0)
    writeFileSync(project.path("mid-run", "journal.jsonl"), fullJournal)
    const after = await provided(loader.load)
    const fresh = await provided(RunView.load(project.path("mid-run")))
    expect({ ...after, at: 0 }).toEqual({ ...fresh, at: 0 })
    expect(after.tokens).toEqual(view.tokens)
    expect(after.failures).toEqual(view.failures)
  })
})
