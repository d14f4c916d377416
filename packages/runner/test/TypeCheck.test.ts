/**
 * The type check on small projects of their own (no effect types to load, so each check takes
 * a fraction of a second): what is reported and how, which tsconfig.json counts, and when a
 * passed check is remembered.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Either } from "effect"
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join, relative } from "node:path"
import { afterAll } from "vitest"
import * as TypeCheck from "../src/TypeCheck.js"

const root = mkdtempSync(join(tmpdir(), "sluice-typecheck-"))
afterAll(() => rmSync(root, { recursive: true, force: true }))

/**
 * Strict NodeNext like the defaults, without the DOM library and @types (which a check would
 * otherwise spend a second parsing), unless a test is about the defaults.
 */
const lightConfig = (extra: Record<string, unknown> = {}): string =>
  JSON.stringify({
    compilerOptions: { module: "NodeNext", moduleResolution: "NodeNext", target: "ES2022", strict: true, lib: ["ES2022"], types: [], ...extra }
  })

let n = 0
/**
 * A fresh directory holding `files` (path → text), with a package.json of type module and,
 * unless `files` says otherwise (null: none), the light tsconfig.json.
 */
const project = (files: Record<string, string | null>): ((...parts: Array<string>) => string) => {
  const dir = join(root, `p${++n}`)
  const all: Record<string, string | null> = { "package.json": JSON.stringify({ type: "module" }), "tsconfig.json": lightConfig(), ...files }
  for (const [path, text] of Object.entries(all)) if (text !== null) write(join(dir, path), text)
  return (...parts) => join(dir, ...parts)
}

const write = (file: string, text: string) => {
  mkdirSync(dirname(file), { recursive: true })
  writeFileSync(file, text)
}

/** The file as diagnostics name it: relative to the current directory. */
const shown = (file: string) => relative(process.cwd(), file)

const check = (file: string, cacheDir: string | false = false) => TypeCheck.check(file, { cacheDir })

/** The diagnostics of a check that must fail. */
const failing = (file: string, cacheDir: string | false = false) =>
  Effect.gen(function* () {
    const result = yield* Effect.either(check(file, cacheDir))
    if (Either.isRight(result)) throw new Error(`expected ${file} to fail its type check`)
    expect(result.left._tag).toBe("PipelineTypeError")
    return result.left as TypeCheck.PipelineTypeError
  })

describe("TypeCheck.check", () => {
  it.effect("reports the type errors of the file and of what it imports as file:line:col message, relative to the current directory", () =>
    Effect.gen(function* () {
      const at = project({
        "lib.ts": "export const shout = (s: string): string => s.toUpperCase()\nexport const wrong: number = 'one'\n",
        "main.ts": "import { shout } from './lib.js'\n\nconst row = { id: 'a', text: 'hi' }\nexport default shout(row.txt)\n"
      })
      const error = yield* failing(at("main.ts"))
      expect([...error.diagnostics].sort()).toEqual(
        [
          `${shown(at("lib.ts"))}:2:14 Type 'string' is not assignable to type 'number'. (TS2322)`,
          `${shown(at("main.ts"))}:4:26 Property 'txt' does not exist on type '{ id: string; text: string; }'. Did you mean 'text'? (TS2551)`
        ].sort()
      )
      expect(error.message).toContain("does not compile (2 errors; --no-typecheck skips the check)")
    }))

  it.effect("reports only the syntax errors of a file that does not parse", () =>
    Effect.gen(function* () {
      const at = project({ "main.ts": "const n: number = 'x'\nexport default { provider: 'openai' model: 'gpt' }\n" })
      const error = yield* failing(at("main.ts"))
      expect(error.diagnostics).toEqual([`${shown(at("main.ts"))}:2:37 ',' expected. (TS1005)`])
    }))

  it.effect("does not report errors inside packages under node_modules, only the user's own sources", () =>
    Effect.gen(function* () {
      const at = project({
        // A package shipping TypeScript sources with an error of its own.
        "node_modules/sloppy/package.json": JSON.stringify({ name: "sloppy", type: "module", exports: { ".": { types: "./index.ts" } } }),
        "node_modules/sloppy/index.ts": "const broken: number = 'x'\nexport const value: string = 'v'\n",
        "main.ts": "import { value } from 'sloppy'\nexport default value.length\n"
      })
      const result = yield* check(at("main.ts"))
      expect(result.sources).toBe(1)
      // The same mistake in the user's own file is reported.
      write(at("main.ts"), "import { value } from 'sloppy'\nexport default value.lenght\n")
      const error = yield* failing(at("main.ts"))
      expect(error.diagnostics).toHaveLength(1)
      expect(error.diagnostics[0]).toMatch(/^.*main\.ts:2:22 Property 'lenght' does not exist on type 'string'/)
    }))

  it.effect("uses the compiler options of the nearest tsconfig.json above the file, through extends", () =>
    Effect.gen(function* () {
      const source = "export const shout = (s) => String(s).toUpperCase()\n"
      const light = { lib: ["ES2022"], types: [] }
      const at = project({
        "main.ts": source,
        "loose/main.ts": source,
        "loose/tsconfig.json": JSON.stringify({ extends: "../base.json", compilerOptions: { strict: false } }),
        "base.json": JSON.stringify({ compilerOptions: { module: "NodeNext", moduleResolution: "NodeNext", strict: true, ...light } })
      })
      // The project's tsconfig.json is strict: the untyped parameter is an error.
      const strict = yield* failing(at("main.ts"))
      expect(strict.diagnostics).toEqual([`${shown(at("main.ts"))}:1:23 Parameter 's' implicitly has an 'any' type. (TS7006)`])
      // loose/tsconfig.json, nearer, turns strict off: the same source passes.
      expect((yield* check(at("loose/main.ts"))).config).toBe(at("loose/tsconfig.json"))
      // Options of the config it extends count too.
      write(at("base.json"), JSON.stringify({ compilerOptions: { module: "NodeNext", moduleResolution: "NodeNext", noImplicitAny: true, ...light } }))
      const fromBase = yield* failing(at("loose/main.ts"))
      expect(fromBase.diagnostics).toEqual([`${shown(at("loose/main.ts"))}:1:23 Parameter 's' implicitly has an 'any' type. (TS7006)`])
    }))

  it.effect("a tsconfig.json that is not valid JSON, or extends a file that is not there, is reported, never ignored", () =>
    Effect.gen(function* () {
      const at = project({ "tsconfig.json": '{ "compilerOptions": { "strict": true,, } }\n', "main.ts": "export default 1\n" })
      const error = yield* failing(at("main.ts"))
      expect(error.diagnostics).toEqual([`${shown(at("tsconfig.json"))}:1:39 Property assignment expected. (TS1136)`])
      write(at("tsconfig.json"), JSON.stringify({ extends: "./missing.json" }))
      const missing = yield* failing(at("main.ts"))
      expect(missing.diagnostics).toEqual([`${shown(at("tsconfig.json"))}: Cannot read file '${at("missing.json")}'. (TS5083)`])
    }))

  it.effect("a solution-style tsconfig.json lends the options of the referenced project that includes the file", () =>
    Effect.gen(function* () {
      const at = project({
        "tsconfig.json": JSON.stringify({ files: [], references: [{ path: "./tsconfig.app.json" }] }),
        "tsconfig.app.json": JSON.stringify({
          compilerOptions: { module: "NodeNext", moduleResolution: "NodeNext", composite: true, noUnusedLocals: true, lib: ["ES2022"], types: [] },
          include: ["src"]
        }),
        "src/main.ts": "const unused = 1\nexport const used = 2\n"
      })
      const error = yield* failing(at("src/main.ts"))
      expect(error.diagnostics).toEqual([`${shown(at("src/main.ts"))}:1:7 'unused' is declared but its value is never read. (TS6133)`])
    }))

  it.effect("remembers a passed check while no file it read changed: an edited import, or tsconfig.json, is checked again", () =>
    Effect.gen(function* () {
      const cacheDir = join(root, "cache")
      const at = project({
        "lib.ts": "export const shout = (s: string): string => s.toUpperCase()\n",
        "main.ts": "import { shout } from './lib.js'\nexport default shout('hi')\n"
      })
      expect(yield* check(at("main.ts"), cacheDir)).toEqual({ cached: false, sources: 2, config: at("tsconfig.json") })
      expect(yield* check(at("main.ts"), cacheDir)).toEqual({ cached: true, sources: 2, config: at("tsconfig.json") })
      // An imported file changes: checked again, and its error found.
      write(at("lib.ts"), "export const shout = (s: string): number => s.toUpperCase()\n")
      const error = yield* failing(at("main.ts"), cacheDir)
      expect(error.diagnostics[0]).toMatch(/lib\.ts:1:45 Type 'string' is not assignable to type 'number'/)
      // A failed check is not remembered: still failing, until fixed.
      yield* failing(at("main.ts"), cacheDir)
      write(at("lib.ts"), "export const shout = (s: string): string => s.toUpperCase() + '!'\n")
      expect((yield* check(at("main.ts"), cacheDir)).cached).toBe(false)
      expect((yield* check(at("main.ts"), cacheDir)).cached).toBe(true)
      // The compiler options change: checked again.
      write(at("tsconfig.json"), lightConfig({ noUnusedLocals: true }))
      expect((yield* check(at("main.ts"), cacheDir)).cached).toBe(false)
    }))

  it.effect("remembers in a directory of its own (0700, files 0600); one other users can write is neither read nor written", () =>
    Effect.gen(function* () {
      const at = project({ "main.ts": "export default 1\n" })
      const own = join(root, "cache-own", "nested")
      expect((yield* check(at("main.ts"), own)).cached).toBe(false)
      expect((yield* check(at("main.ts"), own)).cached).toBe(true)
      expect((statSync(own).mode & 0o777).toString(8)).toBe("700")
      for (const name of readdirSync(own)) expect((statSync(join(own, name)).mode & 0o777).toString(8)).toBe("600")
      // Someone else's directory in /tmp would be writable by them: it is not trusted.
      const shared = join(root, "cache-shared")
      mkdirSync(shared)
      chmodSync(shared, 0o777)
      expect((yield* check(at("main.ts"), shared)).cached).toBe(false)
      expect((yield* check(at("main.ts"), shared)).cached).toBe(false)
      expect(readdirSync(shared)).toEqual([])
    }))

  it.effect("a tsconfig.json appearing nearer the file than the one a passed check used is honoured", () =>
    Effect.gen(function* () {
      const cacheDir = join(root, "cache")
      const at = project({
        "sub/main.ts": "const unused = 1\nexport default 2\n"
      })
      expect((yield* check(at("sub/main.ts"), cacheDir)).cached).toBe(false)
      expect((yield* check(at("sub/main.ts"), cacheDir)).cached).toBe(true)
      write(at("sub/tsconfig.json"), lightConfig({ noUnusedLocals: true }))
      const error = yield* failing(at("sub/main.ts"), cacheDir)
      expect(error.diagnostics[0]).toContain("'unused' is declared but its value is never read. (TS6133)")
    }))

  it.effect("a JavaScript pipeline file is checked for syntax, and for types only when it asks (// @ts-check)", () =>
    Effect.gen(function* () {
      const at = project({ "main.mjs": "const row = { text: 'hi' }\nexport default row.txt\n" })
      expect((yield* check(at("main.mjs"))).sources).toBe(1)
      write(at("main.mjs"), "// @ts-check\nconst row = { text: 'hi' }\nexport default row.txt\n")
      expect((yield* failing(at("main.mjs"))).diagnostics[0]).toMatch(/main\.mjs:3:20 Property 'txt' does not exist/)
      write(at("main.mjs"), "export default { a: 1 b: 2 }\n")
      expect((yield* failing(at("main.mjs"))).diagnostics).toEqual([`${shown(at("main.mjs"))}:1:23 ',' expected. (TS1005)`])
    }))

  it.effect("a missing file is named", () =>
    Effect.gen(function* () {
      const result = yield* Effect.either(check(join(root, "nowhere.ts")))
      expect(Either.isLeft(result) && result.left.message).toMatch(/nowhere\.ts: no such file$/)
    }))
})
