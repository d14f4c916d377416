/**
 * The version checks, on real directory trees: fake `node_modules` with the package.json files
 * Node would find, next to a pipeline file.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, describe, expect, it } from "vitest"
import * as EffectVersion from "../src/EffectVersion.js"
import { installSpec, satisfies } from "../src/internal/Installed.js"

const repo = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..", "..")
const root = mkdtempSync(join(tmpdir(), "sluice-effect-version-"))
afterAll(() => rmSync(root, { recursive: true, force: true }))

/** A project directory with a pipeline file; `packages` maps a name to a fake version or a real directory to link. */
const project = (name: string, packages: Record<string, { version: string } | { link: string }>) => {
  const dir = join(root, name)
  for (const [pkg, spec] of Object.entries(packages)) {
    const target = join(dir, "node_modules", pkg)
    mkdirSync(dirname(target), { recursive: true })
    if ("link" in spec) symlinkSync(spec.link, target, "dir")
    else {
      mkdirSync(target)
      writeFileSync(join(target, "package.json"), JSON.stringify({ name: pkg, version: spec.version }))
    }
  }
  mkdirSync(join(dir, "src"), { recursive: true })
  const file = join(dir, "src", "x.pipeline.ts")
  writeFileSync(file, "")
  return { dir, file }
}

describe("satisfies", () => {
  it("reads the ^ and ~ ranges of sluice's package.json like npm", () => {
    expect(satisfies("3.22.4", "^3.22.2")).toBe(true)
    expect(satisfies("3.30.0", "^3.22.2")).toBe(true)
    expect(satisfies("3.22.1", "^3.22.2")).toBe(false)
    expect(satisfies("4.1.5", "^3.22.2")).toBe(false)
    expect(satisfies("4.0.0-beta.3", "^3.22.2")).toBe(false)
    expect(satisfies("0.97.9", "^0.97.2")).toBe(true)
    expect(satisfies("0.98.0", "^0.97.2")).toBe(false)
    expect(satisfies("3.23.0", "~3.22.4")).toBe(false)
    expect(installSpec("effect", "^3.22.2")).toBe("effect@3")
    expect(installSpec("@effect/cli", "^0.77.2")).toBe("@effect/cli@0.77")
  })
})

describe("EffectVersion", () => {
  it("finds this repository's installation in order", () => {
    expect(EffectVersion.installProblem()).toBeUndefined()
    expect(EffectVersion.pipelineProblem(join(repo, "examples", "reviews.pipeline.ts"))).toBeUndefined()
  })

  it("accepts a pipeline that imports the CLI's own copies through links", () => {
    const { file } = project("linked", { "@sluice/core": { link: join(repo, "packages", "core") }, effect: { link: join(repo, "node_modules", "effect") } })
    expect(EffectVersion.pipelineProblem(file)).toBeUndefined()
  })

  it("refuses a pipeline whose effect is Effect 4, naming both copies and the fix", () => {
    const { dir, file } = project("effect4", { "@sluice/core": { link: join(repo, "packages", "core") }, effect: { version: "4.1.5" } })
    const problem = EffectVersion.pipelineProblem(file)
    expect(problem).toContain("the pipeline file would load a second copy of effect:")
    expect(problem).toMatch(/the sluice CLI runs effect 3\.\d+\.\d+ from /)
    expect(problem).toContain(`the pipeline file imports effect 4.1.5 from ${join(dir, "node_modules", "effect")}`)
    expect(problem).toContain(`Fix: npm install effect@3   (in ${dir})`)
  })

  it("refuses a second copy of @sluice/core, even of the same version", () => {
    const { file } = project("core-copy", { "@sluice/core": { version: "0.1.0" } })
    const problem = EffectVersion.pipelineProblem(file)
    expect(problem).toContain("a second copy of @sluice/core")
    expect(problem).toContain("Fix: run the sluice installed with the pipeline")
  })

  it("says how to install sluice where a pipeline file cannot import @sluice/core", () => {
    // Outside any node_modules tree: the temp root has none above it (checked).
    const { file } = project("bare", {})
    expect(existsAbove(file)).toBe(false)
    const problem = EffectVersion.pipelineProblem(file)
    expect(problem).toContain("the pipeline file cannot import @sluice/core")
    expect(problem).toContain("npm install @sluice/core @sluice/runner effect@3")
  })
})

const existsAbove = (file: string): boolean => {
  for (let dir = dirname(file); ; dir = dirname(dir)) {
    if (existsSync(join(dir, "node_modules", "@sluice", "core"))) return true
    if (dirname(dir) === dir) return false
  }
}
