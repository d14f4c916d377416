/**
 * Every numeric flag of every command, through the CLI's own parser (the same command tree
 * `sluice` runs; test/guards.e2e.test.ts runs a few through the executable): a value out of
 * range is a usage error naming the flag, its range and the value; the bounds themselves are
 * accepted. And the library's options are held to the same ranges.
 */
import { CliConfig, CommandDescriptor, HelpDoc, ValidationError } from "@effect/cli"
import { NodeContext } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Pipeline, Prompt, Source } from "@sluice/core"
import { Providers } from "@sluice/providers"
import { Duration, Effect, Exit, Layer } from "effect"
import { existsSync, mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { root } from "../src/Cli.js"
import * as Runner from "../src/Runner.js"
import * as Settings from "../src/Settings.js"

/** An existing file and directory for the commands' arguments (only their existence is checked). */
const file = fileURLToPath(import.meta.url)
const dir = tmpdir()

const parse = (args: ReadonlyArray<string>) =>
  CommandDescriptor.parse(root.descriptor, ["sluice", ...args], CliConfig.defaultConfig).pipe(Effect.provide(NodeContext.layer))

/** The message of a rejected command line, as the CLI prints it. */
const rejection = (args: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    const exit = yield* Effect.exit(parse(args))
    if (Exit.isSuccess(exit)) return "accepted"
    const error = exit.cause._tag === "Fail" ? exit.cause.error : undefined
    if (error === undefined || !ValidationError.isInvalidValue(error)) return `unexpected: ${String(exit.cause)}`
    return HelpDoc.toAnsiText(error.error).trim()
  })

const run = ["run", file]
const commands: Record<string, ReadonlyArray<string>> = {
  run,
  resume: ["resume", dir],
  retry: ["retry", dir],
  cancel: ["cancel", dir],
  estimate: ["estimate", file],
  preview: ["preview", file],
  emulator: ["emulator"]
}

/** flag, a bad value, the message, a value at the edge of the range, and the commands that take it. */
const flags: ReadonlyArray<readonly [string, string, string, string, ReadonlyArray<string>]> = [
  ["--concurrency", "0", "an integer from 1 to 10000, got 0", "10000", ["run", "resume", "retry", "preview"]],
  ["--rows", "0", "an integer from 1 to 1000, got 0", "1000", ["preview", "run"]],
  ["--rows", "1001", "an integer from 1 to 1000, got 1001", "1", ["preview"]],
  ["--shard-size", "0", "an integer from 1 to 1000000, got 0", "1", ["run", "estimate"]],
  ["--poll-interval", "0", "a number of seconds from 0.01 to 3600, got 0", "0.01", ["run", "resume", "retry", "cancel"]],
  ["--poll-interval", "3601", "a number of seconds from 0.01 to 3600, got 3601", "3600", ["run"]],
  ["--max-poll-interval", "0", "a number of seconds from 0.01 to 3600, got 0", "3600", ["run", "resume", "retry", "cancel"]],
  ["--budget", "-1", "a number of USD above 0, got -1", "0.01", ["run", "resume"]],
  ["--budget", "0", "a number of USD above 0, got 0", "1000000", ["run"]],
  ["--output-tokens", "0", "an integer from 1 to 1000000, got 0", "1000000", ["run", "resume", "estimate", "preview"]],
  ["--online-budget", "0", "a number of USD above 0, got 0", "0.01", ["run", "resume", "retry"]],
  ["--online-below", "-1", "an integer from 0 to 1000000, got -1", "0", ["run", "resume", "retry"]],
  ["--output-file-wait", "-1", "a number of seconds from 0 to 86400, got -1", "0", ["run", "resume", "retry", "cancel"]],
  ["--output-file-wait", "86401", "a number of seconds from 0 to 86400, got 86401", "86400", ["run"]],
  ["--port", "65536", "an integer from 0 to 65535, got 65536", "65535", ["emulator"]],
  ["--port", "-1", "an integer from 0 to 65535, got -1", "0", ["emulator"]],
  ["--requests-per-second", "0", "a number above 0 and at most 1000000000, got 0", "0.5", ["emulator"]],
  ["--validating-ms", "-1", "an integer of ms from 0 to 604800000, got -1", "0", ["emulator"]],
  ["--finalizing-ms", "-1", "an integer of ms from 0 to 604800000, got -1", "0", ["emulator"]],
  ["--expire-after-ms", "0", "an integer of ms from 1 to 604800000, got 0", "1", ["emulator"]],
  ["--late-output-file-ms", "-1", "an integer of ms from 0 to 604800000, got -1", "604800000", ["emulator"]],
  ["--error-rate", "1.5", "a number from 0 to 1, got 1.5", "1", ["emulator"]],
  ["--rate-limit-rate", "-0.1", "a number from 0 to 1, got -0.1", "0", ["emulator"]],
  ["--server-error-rate", "2", "a number from 0 to 1, got 2", "1", ["emulator"]],
  ["--reset-rate", "1.01", "a number from 0 to 1, got 1.01", "1", ["emulator"]],
  ["--drop-lines", "-1", "a number from 0 to 1, got -1", "0.5", ["emulator"]],
  ["--invalid-json-rate", "9", "a number from 0 to 1, got 9", "1", ["emulator"]]
]

describe("numeric flags", () => {
  for (const [flag, bad, message, edge, takers] of flags) {
    for (const command of takers) {
      it.effect(`${command} ${flag} ${bad} is refused; ${edge} is accepted`, () =>
        Effect.gen(function* () {
          expect(yield* rejection([...commands[command]!, flag, bad])).toContain(`${flag} must be ${message}`)
          expect(yield* rejection([...commands[command]!, flag, edge])).toBe("accepted")
        }))
    }
  }

  it.effect("-n is --rows (the message names --rows, which the help shows next to -n)", () =>
    Effect.gen(function* () {
      for (const command of ["preview", "run"]) {
        expect(yield* rejection([...commands[command]!, "-n", "-2"])).toContain("--rows must be an integer from 1 to 1000, got -2")
        expect(yield* rejection([...commands[command]!, "-n", "20"])).toBe("accepted")
      }
      expect(yield* rejection(["preview", file, "-n", "2.5"])).not.toBe("accepted")
    }))

  it.effect("a value that is not a number is refused too", () =>
    Effect.gen(function* () {
      expect(yield* rejection([...run, "--budget", "lots"])).not.toBe("accepted")
      expect(yield* rejection([...run, "--concurrency", "2.5"])).not.toBe("accepted")
      expect(yield* rejection([...run, "--budget", "Infinity"])).toContain("--budget must be a number of USD above 0, got Infinity")
    }))

  it.effect("--max-enqueued-tokens takes a number or model=tokens by model, and refuses anything else naming the item", () =>
    Effect.gen(function* () {
      for (const command of ["run", "resume", "retry"]) {
        for (const good of ["90000", "gpt-4o-mini=2000000,gpt-4o=90000", "gpt-4o-mini=2000000,gpt-4o=90000,500000"]) {
          expect(yield* rejection([...commands[command]!, "--max-enqueued-tokens", good]), `${command} ${good}`).toBe("accepted")
        }
      }
      expect(yield* rejection([...run, "--max-enqueued-tokens", "gpt-4o=0"])).toContain(`--max-enqueued-tokens "gpt-4o=0": the number of tokens must be an integer from 1 to 1000000000000`)
      expect(yield* rejection([...run, "--max-enqueued-tokens", "gpt-4o:9"])).toContain(`the number of tokens must be a whole number, got "gpt-4o:9"`)
      expect(yield* rejection([...run, "--max-enqueued-tokens", "5,6"])).toContain("two limits for every model")
    }))

  it.effect("--deadline takes a duration as people write it, and refuses anything else", () =>
    Effect.gen(function* () {
      for (const good of ["90s", "1h30m", "2h", "1d"]) expect(yield* rejection([...run, "--deadline", good]), good).toBe("accepted")
      expect(yield* rejection([...run, "--deadline", "soon"])).toContain(`--deadline must be a duration like 90s, 45m, 2h, 1h30m or 1d, got "soon"`)
      expect(yield* rejection([...commands["resume"]!, "--deadline", "0s"])).toContain(`--deadline must be a duration above 0, got "0s"`)
    }))
})

describe("the library's run options", () => {
  it("are held to the same ranges", () => {
    expect(Settings.problems({ concurrency: 4, shardSize: 10, pollInterval: Duration.millis(50), budget: 1, outputFileWait: Duration.zero })).toEqual([])
    expect(
      Settings.problems({
        concurrency: 0,
        shardSize: 0,
        pollInterval: Duration.zero,
        budget: -1,
        budgetOutputTokens: 0,
        outputFileWait: Duration.days(2),
        onlineBudget: 0,
        onlineBelow: 1.5,
        deadline: Duration.zero
      })
    ).toEqual([
      "concurrency must be an integer from 1 to 10000, got 0",
      "shardSize must be an integer from 1 to 1000000, got 0",
      "pollInterval must be a number of seconds from 0.01 to 3600, got 0",
      "budget must be a number of USD above 0, got -1",
      "budgetOutputTokens must be an integer from 1 to 1000000, got 0",
      "onlineBudget must be a number of USD above 0, got 0",
      "onlineBelow must be an integer from 0 to 1000000, got 1.5",
      "deadline must be a duration above 0, got 0",
      "outputFileWait must be a number of seconds from 0 to 86400, got 172800"
    ])
  })

  it.effect("Runner.run refuses a concurrency of 0 before it touches the run directory", () =>
    Effect.gen(function* () {
      const runDir = join(mkdtempSync(join(tmpdir(), "sluice-settings-")), "run")
      const pipeline = Pipeline.make("settings").pipe(
        Pipeline.from(Source.array([{ id: "a" }]), { key: (r) => r.id }),
        Pipeline.batch("b", { provider: "openai", model: "gpt-4o-mini", prompt: (r) => Prompt.chat({ user: r.id }) })
      )
      const error = yield* Effect.flip(Runner.run(pipeline, { runDir, concurrency: 0 }))
      expect(error).toBeInstanceOf(Settings.InvalidSettings)
      expect((error as Settings.InvalidSettings).message).toBe("invalid run settings: concurrency must be an integer from 1 to 10000, got 0")
      expect(existsSync(runDir)).toBe(false)
    }).pipe(
      Effect.provide(Layer.merge(NodeContext.layer, Layer.succeed(Providers, { get: () => Effect.dieMessage("no provider is asked") })))
    ))
})

describe("polling a remote provider", () => {
  const settings = { ...Runner.defaultSettings, pollInterval: Duration.millis(50) }
  const at = (origin: string | undefined) => [{ provider: { name: "openai", ...(origin === undefined ? {} : { origin }) } }] as unknown as Parameters<typeof Runner.remotePollFloor>[1]

  it.effect("is never faster than once a second; a local emulator may be polled faster", () =>
    Effect.gen(function* () {
      expect(Duration.toMillis((yield* Runner.remotePollFloor(settings, at("https://api.openai.com"))).pollInterval!)).toBe(1000)
      expect(Duration.toMillis((yield* Runner.remotePollFloor(settings, at("http://127.0.0.1:4010"))).pollInterval!)).toBe(50)
      expect(Duration.toMillis((yield* Runner.remotePollFloor(settings, at("http://localhost:4010"))).pollInterval!)).toBe(50)
      // A provider that does not say where it sends (an in-process fake) is not slowed down.
      expect(Duration.toMillis((yield* Runner.remotePollFloor(settings, at(undefined))).pollInterval!)).toBe(50)
      const slow = { ...settings, pollInterval: Duration.seconds(30) }
      expect((yield* Runner.remotePollFloor(slow, at("https://api.openai.com"))).pollInterval).toBe(slow.pollInterval)
    }))
})
