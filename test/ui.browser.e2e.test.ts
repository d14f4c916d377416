/**
 * The live page of `sluice ui` in headless Chromium, while a run progresses against the
 * emulator (whose clock the test holds, then moves): the page shows the rows pending, then,
 * with no reload, the finished run — its totals and its rows — from the server's events. The
 * page fetches nothing but the server's own origin, and throws no error.
 */
import type { ChildProcess } from "node:child_process"
import { join } from "node:path"
import type { Browser } from "playwright-core"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { launchChromium, offlinePage } from "./support/browser.js"
import { emulatorEnv, makeProject, spawnCli, startTestEmulator, writePipeline, writeRows } from "./support/cli.js"
import type { TempProject, TestEmulator } from "./support/cli.js"
import { advanceClock, holdClock, readJournalSoFar, releaseClock, waitFor } from "./support/runs.js"
import { startUiServer } from "./support/ui.js"

const ROWS = 20

/** What the page's functions below use of the browser (this project's TypeScript has no DOM library). */
interface Browserside {
  readonly document: {
    querySelector(selector: string): { textContent: string | null } | null
    querySelectorAll(selector: string): ArrayLike<{ getAttribute(name: string): string | null }>
  }
}

describe("sluice ui, the live page in headless Chromium", () => {
  let project: TempProject
  let emulator: TestEmulator
  let browser: Browser
  const children: Array<ChildProcess> = []

  beforeAll(async () => {
    emulator = await startTestEmulator()
    project = await makeProject("sluice-ui-browser-")
    await writePipeline(project, "pipeline.ts")
    await writeRows(project, "data/rows.jsonl", ROWS)
    browser = await launchChromium()
  })

  afterAll(async () => {
    for (const c of children) c.kill("SIGKILL")
    await releaseClock(emulator.url).catch(() => undefined)
    await browser?.close()
    await emulator?.close()
    await project?.cleanup()
  })

  it("updates as the run progresses: pending rows, then the finished run, without a reload", async () => {
    const runDir = ".sluice/runs/live"
    await holdClock(emulator.url)
    const run = spawnCli(["run", "pipeline.ts", "--run-dir", runDir, "--shard-size", "5", "--poll-interval", "0.05"], { cwd: project.dir, env: emulatorEnv(emulator.url) })
    children.push(run)
    let code: number | null | undefined
    run.on("exit", (c) => (code = c))
    await waitFor("four batches created", async () => ((await readJournalSoFar(join(project.dir, runDir))).filter((e) => e._tag === "Created").length >= 4 ? true : undefined), { timeoutMs: 120_000 })

    const ui = await startUiServer(runDir, project.dir)
    children.push(ui.child)
    const origin = `http://127.0.0.1:${ui.port}/`
    const { context, page, blocked, errors } = await offlinePage(browser, (url) => url.startsWith(origin))
    await page.goto(ui.url)
    await page.waitForSelector("body[data-ready=true]")

    const total = async (name: string) => Number(((await page.locator(`[data-total="${name}"]`).textContent()) ?? "").replace(/,/g, ""))
    const statuses = () => page.locator("#rows tbody tr").evaluateAll((rows) => rows.map((r) => r.getAttribute("data-status")))
    expect(await total("rows")).toBe(ROWS)
    expect(await total("pending")).toBe(ROWS)
    expect(await total("succeeded")).toBe(0)
    expect(await statuses()).toEqual(Array(ROWS).fill("pending"))

    // The batches finish as the clock moves; the page follows the run by itself.
    await waitFor("the run to finish", async () => {
      if (code !== undefined) return true
      await advanceClock(emulator.url, 60_000)
      return undefined
    }, { timeoutMs: 120_000, intervalMs: 200 })
    expect(code).toBe(0)
    await page.waitForFunction(
      (n) => (globalThis as unknown as Browserside).document.querySelector(`[data-total="succeeded"]`)?.textContent === String(n),
      ROWS,
      { timeout: 60_000 }
    )
    expect(await total("pending")).toBe(0)
    await page.waitForFunction(() => Array.from((globalThis as unknown as Browserside).document.querySelectorAll("#rows tbody tr")).every((r) => r.getAttribute("data-status") === "succeeded"))
    expect(await statuses()).toEqual(Array(ROWS).fill("succeeded"))

    // The row browser asks the server: a search by key finds the row.
    await page.fill("#search", "r0013")
    await page.waitForFunction(() => {
      const rows = Array.from((globalThis as unknown as Browserside).document.querySelectorAll("#rows tbody tr"))
      return rows.length === 1 && rows[0]!.getAttribute("data-key") === "r0013"
    })

    expect(blocked, "the page fetched nothing beyond its server").toEqual([])
    expect(errors, "no script errors").toEqual([])
    await context.close()
  }, 300_000)
})
