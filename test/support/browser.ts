/**
 * Headless Chromium for the browser tests: Debian's `chromium` package (browser downloads are
 * not available here), driven by playwright-core. `SLUICE_CHROMIUM` names another executable.
 * A missing browser fails the test with how to install it: browser tests are never skipped.
 */
import { existsSync } from "node:fs"
import { chromium } from "playwright-core"
import type { Browser, BrowserContext, Page } from "playwright-core"

/** The Chromium the tests drive. */
export const chromiumPath = (): string => process.env["SLUICE_CHROMIUM"] ?? "/usr/bin/chromium"

export const launchChromium = async (): Promise<Browser> => {
  const executablePath = chromiumPath()
  if (!existsSync(executablePath)) {
    throw new Error(
      `the browser tests need Chromium, and there is none at ${executablePath}: install it with ` +
        "`sudo apt-get install -y chromium` (as .ci/run does), or set SLUICE_CHROMIUM to a Chromium or Chrome executable"
    )
  }
  // Chromium refuses to start its sandbox as root (containers, CI).
  const asRoot = typeof process.getuid === "function" && process.getuid() === 0
  return chromium.launch({ executablePath, headless: true, args: asRoot ? ["--no-sandbox"] : [] })
}

export interface OfflinePage {
  readonly context: BrowserContext
  readonly page: Page
  /** Every request the page attempted beyond `allowed` (each was aborted). */
  readonly blocked: Array<string>
  /** Errors the page's scripts threw, and console errors. */
  readonly errors: Array<string>
}

/**
 * A page whose requests other than `allowed` (file: URLs by default) are aborted and recorded:
 * what a self-contained page would fetch shows up in `blocked`.
 */
export const offlinePage = async (
  browser: Browser,
  allowed: (url: string) => boolean = (url) => url.startsWith("file:")
): Promise<OfflinePage> => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } })
  const blocked: Array<string> = []
  const errors: Array<string> = []
  await context.route("**/*", (route) => {
    const url = route.request().url()
    if (allowed(url)) return route.continue()
    blocked.push(url)
    return route.abort()
  })
  const page = await context.newPage()
  page.on("pageerror", (e) => void errors.push(e.message))
  page.on("console", (m) => void (m.type() === "error" && errors.push(m.text())))
  return { context, page, blocked, errors }
}
