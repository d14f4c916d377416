/**
 * Which effect (and @effect/*, and @sluice/core) the CLI and a pipeline file run with.
 *
 * sluice is built on Effect 3. Under Effect 4, or with one copy of effect for the CLI and
 * another for the pipeline file, things break far from the cause ("Cannot convert undefined or
 * null to object"), so the CLI checks first and says what to install.
 *
 * Plain Node only: `bin/sluice.js` calls `installProblem` before any Effect code is loaded,
 * because with the wrong effect installed the CLI could not even start.
 */
import { dirname, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import type { Installed } from "./internal/Installed.js"
import { installSpec, locate, projectOf, runner, satisfies } from "./internal/Installed.js"

/** Where the CLI resolves its packages from (dist/ or src/ of @sluice/runner). */
const cliDir = dirname(fileURLToPath(import.meta.url))

const effectRange = runner.peerDependencies?.["effect"] ?? "^3.0.0"

const fixLine = (specs: ReadonlyArray<string>, project: string | undefined): string =>
  `Fix: npm install ${specs.join(" ")}${project === undefined ? "" : `   (in ${project})`}`

/**
 * Whether the CLI's own effect and @effect/* packages are installed in the ranges the runner's
 * package.json names: the message to exit 2 with, or undefined.
 */
export const installProblem = (): string | undefined => {
  const problems: Array<{ name: string; range: string; found: Installed | undefined }> = []
  for (const [name, range] of Object.entries(runner.peerDependencies ?? {})) {
    const found = locate(name, cliDir)
    if (found === undefined || !satisfies(found.version, range)) problems.push({ name, range, found })
  }
  if (problems.length === 0) return undefined
  const lines = problems.map(({ found, name, range }) =>
    found === undefined
      ? `  ${name} is not installed; sluice needs ${name} ${range}`
      : `  found ${name} ${found.version} in ${found.dir}; sluice needs ${name} ${range}`
  )
  // With effect itself wrong, installing effect 3 brings the @effect/* packages back as its peers.
  const effect = problems.find((p) => p.name === "effect")
  const toInstall = effect !== undefined ? [effect] : problems
  const project = problems.flatMap((p) => (p.found === undefined ? [] : [projectOf(p.found.dir)]))[0] ?? projectOf(cliDir)
  return [
    `sluice ${runner.version} runs on Effect 3 (effect ${effectRange}), and the installed packages do not match:`,
    ...lines,
    fixLine(toInstall.map((p) => installSpec(p.name, p.range)), project)
  ].join("\n")
}

/**
 * Whether the pipeline file at `file` imports the same @sluice/core and effect as the CLI: a
 * message naming both copies and the fix, or undefined.
 */
export const pipelineProblem = (file: string): string | undefined => {
  const fromDir = dirname(resolve(file))
  for (const name of ["@sluice/core", "effect"]) {
    const cli = locate(name, cliDir)
    const pipeline = locate(name, fromDir)
    if (cli === undefined || pipeline?.dir === cli.dir) continue
    if (pipeline === undefined) {
      // Every pipeline file imports @sluice/core; effect it may not.
      if (name !== "@sluice/core") continue
      return [
        `the pipeline file cannot import @sluice/core: it is not installed in ${fromDir} or a directory above it.`,
        `Fix: npm install @sluice/core @sluice/runner ${installSpec("effect", effectRange)}   (in the pipeline's project), or start a project with npx sluice init`
      ].join("\n")
    }
    const project = projectOf(pipeline.dir) ?? fromDir
    return [
      `the pipeline file would load a second copy of ${name}:`,
      `  the sluice CLI runs ${name} ${cli.version} from ${cli.dir}`,
      `  the pipeline file imports ${name} ${pipeline.version} from ${pipeline.dir}`,
      name === "effect" && !satisfies(pipeline.version, effectRange)
        ? fixLine([installSpec("effect", effectRange)], project)
        : `Fix: run the sluice installed with the pipeline (npx sluice … in ${project}), or install it there: npm install @sluice/core @sluice/runner`
    ].join("\n")
  }
  return undefined
}
