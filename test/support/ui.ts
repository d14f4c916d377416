/**
 * `sluice ui` as a child process for the tests (test/ui.e2e.test.ts, test/ui.browser.e2e.test.ts).
 */
import type { ChildProcess } from "node:child_process"
import { spawnCli } from "./cli.js"

export interface UiChild {
  readonly port: number
  readonly token: string
  /** The page's URL, token included. */
  readonly url: string
  readonly child: ChildProcess
}

/** `sluice ui <run-dir> --json [extra]` in `cwd`: its URL, port and token once it listens. Kill `child` when done. */
export const startUiServer = (runDir: string, cwd: string, extra: ReadonlyArray<string> = [], env?: Record<string, string | undefined>): Promise<UiChild> => {
  const child = spawnCli(["ui", runDir, "--json", ...extra], { cwd, ...(env === undefined ? {} : { env }) })
  let out = ""
  let err = ""
  child.stderr!.setEncoding("utf8").on("data", (d: string) => (err += d))
  return new Promise((resolve, reject) => {
    child.stdout!.setEncoding("utf8").on("data", (d: string) => {
      out += d
      // The line with its URL (an error's JSON, over several lines, comes before an exit: rejected there).
      for (const line of out.split("\n").filter((l) => l.startsWith("{"))) {
        try {
          const started = JSON.parse(line) as { port: number; token: string; url?: string }
          if (typeof started.url === "string") return resolve({ ...(started as { port: number; token: string; url: string }), child })
        } catch {
          // not that line, or not whole yet
        }
      }
    })
    child.on("exit", (code) => reject(new Error(`sluice ui exited (${code}): ${out}${err}`)))
  })
}
