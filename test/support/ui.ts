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
      const line = out.split("\n").find((l) => l.startsWith("{"))
      if (line !== undefined) resolve({ ...(JSON.parse(line) as { port: number; token: string; url: string }), child })
    })
    child.on("exit", (code) => reject(new Error(`sluice ui exited (${code}): ${out}${err}`)))
  })
}
