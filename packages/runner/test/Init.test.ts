/**
 * `sluice init` on real directories: a new project, and existing ones it must only add to.
 * (The scaffolded project installed and run end to end: test/packaging.e2e.test.ts.)
 */
import { NodeContext } from "@effect/platform-node"
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Effect, Either } from "effect"
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as Init from "../src/Init.js"

const root = mkdtempSync(join(tmpdir(), "sluice-init-"))
afterAll(() => rmSync(root, { recursive: true, force: true }))
const temp = () => mkdtempSync(join(root, "p-"))
const read = (dir: string, file: string) => readFileSync(join(dir, file), "utf8")
const json = (dir: string, file: string) => JSON.parse(read(dir, file))

describe("sluice init", () => {
  it.effect("creates a whole project in a new directory, and says to install it first", () =>
    Effect.gen(function* () {
      const dir = join(temp(), "My Reviews")
      const report = yield* Init.init(dir)
      expect(report.dir).toBe(dir)
      const pkg = json(dir, "package.json")
      expect(pkg).toMatchObject({ name: "my-reviews", private: true, type: "module" })
      expect(Object.keys(pkg.dependencies).sort()).toEqual(["@sluice/core", "@sluice/runner", "effect"])
      expect(pkg.dependencies.effect).toBe("^3.22.2")
      expect(pkg.scripts).toEqual({
        "sluice:emulator": "sluice run reviews.pipeline.ts --emulator",
        "sluice:estimate": "sluice estimate reviews.pipeline.ts",
        "sluice:run": "sluice run reviews.pipeline.ts"
      })
      expect(read(dir, "reviews.pipeline.ts")).toContain(`Source.jsonl("data/reviews.jsonl", Review)`)
      expect(read(dir, "data/reviews.jsonl").trim().split("\n")).toHaveLength(20)
      expect(read(dir, ".gitignore").split("\n")).toEqual(expect.arrayContaining([".sluice/", "out/"]))
      expect(JSON.parse(read(dir, "tsconfig.json")).compilerOptions.strict).toBe(true)
      expect(report.next.map(([c]) => c)).toContain("npm install")
      const text = Init.render(report)
      expect(text).toContain("created package.json")
      expect(text).toContain("created data/reviews.jsonl (20 reviews)")
      expect(text).toContain("npm run sluice:emulator")
    }).pipe(Effect.provide(NodeContext.layer)))

  it.effect("adds to an existing package.json and .gitignore, keeps every other file and script", () =>
    Effect.gen(function* () {
      const dir = temp()
      const original = { name: "app", version: "1.0.0", scripts: { "sluice:run": "echo mine" }, dependencies: { effect: "~3.22.4" } }
      writeFileSync(join(dir, "package.json"), JSON.stringify(original, null, 4))
      writeFileSync(join(dir, ".gitignore"), "dist\nout")
      writeFileSync(join(dir, "tsconfig.json"), "{ mine }")
      const report = yield* Init.init(dir)
      const pkg = json(dir, "package.json")
      expect(Object.keys(pkg).slice(0, 3)).toEqual(["name", "version", "type"])
      expect(pkg.type).toBe("module")
      expect(pkg.scripts["sluice:run"]).toBe("echo mine")
      expect(pkg.scripts["sluice:emulator"]).toBe("sluice run reviews.pipeline.ts --emulator")
      expect(pkg.dependencies).toEqual({ effect: "~3.22.4", "@sluice/core": "^0.1.0", "@sluice/runner": "^0.1.0" })
      expect(read(dir, "package.json")).toMatch(/^\{\n {4}"name"/)
      expect(read(dir, "tsconfig.json")).toBe("{ mine }")
      expect(read(dir, ".gitignore")).toBe("dist\nout\nnode_modules/\n.sluice/\n")
      const text = Init.render(report)
      expect(text).toContain(`added to package.json: "type": "module"; scripts sluice:emulator, sluice:estimate; dependencies @sluice/core ^0.1.0, @sluice/runner ^0.1.0`)
      expect(text).toContain("kept scripts.sluice:run (already there, runs something else)")
      expect(text).toContain("kept tsconfig.json (already there)")
      expect(text).toContain("added to .gitignore: node_modules/, .sluice/")
      // The kept script is not the pipeline's: the next steps spell the command out.
      expect(text).toContain("npx sluice run reviews.pipeline.ts ")
    }).pipe(Effect.provide(NodeContext.layer)))

  it.effect("writes the pipeline as .mts in a CommonJS package, leaving its type alone", () =>
    Effect.gen(function* () {
      const dir = temp()
      writeFileSync(join(dir, "package.json"), JSON.stringify({ name: "legacy", main: "index.js" }))
      writeFileSync(join(dir, "index.js"), "module.exports = 1\n")
      yield* Init.init(dir)
      const pkg = json(dir, "package.json")
      expect(pkg.type).toBeUndefined()
      expect(existsSync(join(dir, "reviews.pipeline.mts"))).toBe(true)
      expect(existsSync(join(dir, "reviews.pipeline.ts"))).toBe(false)
      expect(pkg.scripts["sluice:emulator"]).toBe("sluice run reviews.pipeline.mts --emulator")
    }).pipe(Effect.provide(NodeContext.layer)))

  it.effect("refuses a package.json that is not JSON, and a target that is a file, naming the path", () =>
    Effect.gen(function* () {
      const dir = temp()
      writeFileSync(join(dir, "package.json"), "{ oops")
      const bad = yield* Effect.either(Init.init(dir))
      expect(Either.isLeft(bad) && bad.left.message).toMatch(new RegExp(`^${join(dir, "package.json")}: is not valid JSON .*; fix it, then run sluice init again$`))
      expect(read(dir, "package.json")).toBe("{ oops")
      expect(existsSync(join(dir, "reviews.pipeline.ts"))).toBe(false)
      mkdirSync(join(dir, "sub"))
      writeFileSync(join(dir, "sub", "file"), "x")
      const file = yield* Effect.either(Init.init(join(dir, "sub", "file")))
      expect(Either.isLeft(file) && file.left.message).toBe(`${join(dir, "sub", "file")}: is a file; sluice init needs a directory (or a new name for one)`)
    }).pipe(Effect.provide(NodeContext.layer)))
})
