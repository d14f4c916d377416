/**
 * Which modules a child process loads: a loader hook (`node --import <register>`) that appends
 * the URL of every ES module loaded to the file named by $SLUICE_TEST_MODULE_LOG.
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { pathToFileURL } from "node:url"

/** Writes the hook into `dir`; returns the file to pass to `node --import`. */
export const moduleLogHooks = (dir: string): string => {
  writeFileSync(
    join(dir, "hooks.mjs"),
    `import { appendFileSync } from "node:fs"\nexport async function load(url, context, next) {\n  appendFileSync(process.env.SLUICE_TEST_MODULE_LOG, url + "\\n")\n  return next(url, context)\n}\n`
  )
  const register = join(dir, "register.mjs")
  writeFileSync(register, `import { register } from "node:module"\nregister(${JSON.stringify(pathToFileURL(join(dir, "hooks.mjs")).href)})\n`)
  return register
}

/** The URLs a log file lists (none when the file is missing). */
export const readModuleLog = (file: string): Array<string> => (existsSync(file) ? readFileSync(file, "utf8").split("\n").filter((l) => l !== "") : [])

/** Whether an installed effect or @effect/* module is among `modules`. */
export const effectLoaded = (modules: ReadonlyArray<string>): boolean => modules.some((m) => /\/node_modules\/(effect|@effect\/[^/]+)\//.test(m))
