/**
 * File system errors as the CLI prints them: what sluice was doing, the path, and Node's own
 * words for why not.
 */
import { SystemError } from "@effect/platform/Error"
import { Cause } from "effect"
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import * as Failure from "../src/internal/failure.js"
import { describeSystemError, ioProblem } from "../src/internal/ioError.js"

/** The error Node really raises for `fn`. */
const nodeError = (fn: () => void): NodeJS.ErrnoException => {
  try {
    fn()
  } catch (e) {
    return e as NodeJS.ErrnoException
  }
  throw new Error("expected the call to fail")
}

describe("file system errors", () => {
  it("keep Node's words and code, without the syscall and path", () => {
    expect(ioProblem("EACCES: permission denied, mkdir '/data/runs'")).toBe("permission denied (EACCES)")
    expect(ioProblem("ENOSPC: no space left on device, write")).toBe("no space left on device (ENOSPC)")
    expect(ioProblem("something else")).toBe("something else")
  })

  it("name what was being done and where, from a real ENOTDIR", () => {
    const dir = mkdtempSync(join(tmpdir(), "sluice-io-"))
    try {
      const blocker = join(dir, "blocker")
      writeFileSync(blocker, "a file where a directory is expected")
      const target = join(blocker, "runs")
      const e = nodeError(() => mkdirSync(target, { recursive: true }))
      const error = new SystemError({ reason: "BadResource", module: "FileSystem", method: "makeDirectory", pathOrDescriptor: target, description: e.message })
      expect(describeSystemError(error)).toBe(`cannot create directory ${target}: not a directory (ENOTDIR)`)

      // The CLI's report of such a failure: that text, exit code 4, the reason.
      const report = Failure.describe(Cause.fail(error))
      expect(report).toMatchObject({ tag: "SystemError", message: `cannot create directory ${target}: not a directory (ENOTDIR)`, exitCode: 4, reason: "BadResource" })
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it("a failed run names its run directory and the command that continues it, when the run exists", () => {
    const dir = mkdtempSync(join(tmpdir(), "sluice-io-"))
    try {
      const error = new SystemError({ reason: "Unknown", module: "FileSystem", method: "writeAll", pathOrDescriptor: join(dir, "results.jsonl"), description: "ENOSPC: no space left on device, write" })
      // No manifest yet: nothing to resume.
      expect(Failure.describe(Cause.fail(error), dir).resume).toBeUndefined()
      mkdirSync(dir, { recursive: true })
      writeFileSync(join(dir, "manifest.json"), "{}")
      const report = Failure.describe(Cause.fail(error), dir)
      expect(report.message).toBe(`cannot write ${join(dir, "results.jsonl")}: no space left on device (ENOSPC)`)
      expect(report.resume).toBe(`sluice resume ${dir}`)
      expect(Failure.textLines(report)).toEqual([`sluice: error: ${report.message}`, `sluice: run \`sluice resume ${dir}\` to continue`])
      expect(JSON.parse(Failure.jsonText(report))).toEqual({
        error: { tag: "SystemError", message: report.message, exitCode: 4, reason: "Unknown", runDir: dir, resume: `sluice resume ${dir}` }
      })
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
