/**
 * Notifications out (`--on-finish`, `--notify`): the real CLI against the emulator, a shell
 * command that writes what it was given to files, and a receiver on 127.0.0.1 that refuses the
 * first delivery with a 503.
 */
import { createServer, type Server } from "node:http"
import type { AddressInfo } from "node:net"
import { existsSync } from "node:fs"
import { readFile } from "node:fs/promises"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { emulatorEnv, fastRunFlags, makeProject, runCli, startTestEmulator, type TempProject, type TestEmulator, writePipeline, writeRows } from "./support/cli.js"

const KEY = "sk-test-notify-key-0123456789"

interface Received {
  readonly headers: Record<string, string | string[] | undefined>
  readonly body: string
}

/** A receiver answering the first `failFirst` deliveries 503, the rest 204. */
const startReceiver = async (failFirst: number) => {
  const received: Array<Received> = []
  const server: Server = createServer((req, res) => {
    let body = ""
    req.setEncoding("utf8").on("data", (d: string) => (body += d))
    req.on("end", () => {
      received.push({ headers: req.headers, body })
      res.statusCode = received.length <= failFirst ? 503 : 204
      res.end()
    })
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks/sluice-token-in-path`
  return { url, received, close: () => new Promise<void>((resolve) => server.close(() => resolve())) }
}

let project: TempProject
let emulator: TestEmulator

beforeAll(async () => {
  project = await makeProject("sluice-notify-")
  emulator = await startTestEmulator({ apiKey: KEY })
  await writeRows(project, "data/rows.jsonl", 12)
  await writePipeline(project, "notify.pipeline.ts", { name: "notify" })
})

afterAll(async () => {
  await emulator?.close()
  await project?.cleanup()
})

/** Writes its stdin, and the SLUICE_* variables and whether a key reached it, to files under `tag`. */
const recorder = (tag: string) =>
  `cat > ${tag}.stdin.json; env | grep '^SLUICE_' | sort > ${tag}.env; env | grep -c API_KEY > ${tag}.keys; echo "said by the hook"; exit 7`

const envFile = async (file: string): Promise<Record<string, string>> =>
  Object.fromEntries(
    (await readFile(file, "utf8"))
      .split("\n")
      .filter((l) => l !== "")
      .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)])
  )

describe("--on-finish and --notify", { timeout: 180_000 }, () => {
  it("a finished run: the command gets the summary on stdin and in SLUICE_* variables; the URL gets it after a 503", async () => {
    const receiver = await startReceiver(1)
    try {
      const r = await runCli(
        ["run", "notify.pipeline.ts", "--run-dir", "runs/ok", "--json", "--on-finish", recorder("ok"), "--notify", receiver.url, ...fastRunFlags(6)],
        { cwd: project.dir, env: emulatorEnv(emulator.url, KEY) }
      )
      // The command exited 7: reported, and the run's outcome is its own.
      expect(r.code, r.stderr).toBe(0)
      expect(r.stderr).toContain("--on-finish (run.finished): exited 7")
      expect(r.stderr).toContain("said by the hook")
      const summary = JSON.parse(r.stdout)
      expect(summary.finished).toBe(true)

      expect(JSON.parse(await readFile(project.path("ok.stdin.json"), "utf8"))).toEqual(summary)
      const env = await envFile(project.path("ok.env"))
      expect(env).toMatchObject({
        SLUICE_EVENT: "run.finished",
        SLUICE_RUN_DIR: summary.runDir,
        SLUICE_RUN_ID: summary.runId,
        SLUICE_ROWS: "12",
        SLUICE_SUCCEEDED: String(summary.succeeded),
        SLUICE_FAILED: "0",
        SLUICE_PENDING: "0"
      })
      expect(Number(env["SLUICE_SPENT_USD"])).toBeCloseTo(summary.spent, 6)
      expect((await readFile(project.path("ok.keys"), "utf8")).trim()).toBe("0")

      // Refused once (503), delivered on the second attempt, the same body both times.
      expect(receiver.received).toHaveLength(2)
      expect(receiver.received[1]!.body).toBe(receiver.received[0]!.body)
      expect(JSON.parse(receiver.received[1]!.body)).toEqual({ event: "run.finished", summary })
      expect(receiver.received[1]!.headers["content-type"]).toBe("application/json")
      for (const d of receiver.received) {
        expect(d.body).not.toContain(KEY)
        expect(JSON.stringify(d.headers)).not.toContain(KEY)
      }
      expect(r.stderr).toMatch(/--notify \(run\.finished\): delivered to http:\/\/127\.0\.0\.1:\d+ \(HTTP 204\) after 2 attempts/)
      // The URL's path (a chat webhook's token) is not logged.
      expect(r.stderr).not.toContain("sluice-token-in-path")
    } finally {
      await receiver.close()
    }
  })

  it("nothing is announced by a call that finds the run finished before", async () => {
    const receiver = await startReceiver(0)
    try {
      const r = await runCli(["resume", "runs/ok", "--notify", receiver.url, "--poll-interval", "0.05"], { cwd: project.dir, env: emulatorEnv(emulator.url, KEY) })
      expect(r.code, r.stderr).toBe(0)
      expect(r.stderr).toContain("nothing to do")
      expect(receiver.received).toHaveLength(0)
    } finally {
      await receiver.close()
    }
  })

  it("run.failed: a rejected key ends the run with an error; the command and the URL get the error object", async () => {
    const receiver = await startReceiver(0)
    try {
      const r = await runCli(
        ["run", "notify.pipeline.ts", "--run-dir", "runs/bad-key", "--on-finish", recorder("failed"), "--notify", receiver.url, ...fastRunFlags(6)],
        { cwd: project.dir, env: emulatorEnv(emulator.url, "sk-test-wrong-key-000000") }
      )
      expect(r.code, r.stderr).toBe(2)
      expect(r.stderr).toContain("--on-finish (run.failed): exited 7")
      const stdin = JSON.parse(await readFile(project.path("failed.stdin.json"), "utf8"))
      expect(stdin.error.tag).toBe("ProviderError")
      expect(stdin.error.exitCode).toBe(2)
      const env = await envFile(project.path("failed.env"))
      expect(env["SLUICE_EVENT"]).toBe("run.failed")
      expect(env["SLUICE_RUN_DIR"]).toBe(project.path("runs/bad-key"))
      expect(env["SLUICE_ERROR"]).toBe(stdin.error.message)
      expect(receiver.received).toHaveLength(1)
      const delivered = JSON.parse(receiver.received[0]!.body)
      expect(delivered).toEqual({ event: "run.failed", summary: stdin })
      expect(receiver.received[0]!.body).not.toContain("sk-test-wrong-key")
    } finally {
      await receiver.close()
    }
  })

  it("budget.reached: a budget that holds every shard back; a call with a higher budget then announces run.finished", async () => {
    const receiver = await startReceiver(0)
    try {
      const env = { ...emulatorEnv(emulator.url, KEY), SLUICE_NOTIFY_URL: receiver.url }
      const held = await runCli(["run", "notify.pipeline.ts", "--run-dir", "runs/budget", "--budget", "0.0000001", "--json", ...fastRunFlags(6)], { cwd: project.dir, env })
      expect(held.code, held.stderr).toBe(3)
      const summary = JSON.parse(held.stdout)
      expect(summary.budget.heldShards).toBe(2)
      expect(receiver.received.map((d) => JSON.parse(d.body).event)).toEqual(["budget.reached"])
      expect(JSON.parse(receiver.received[0]!.body).summary).toEqual(summary)

      // The run keeps its budget: a resume without one is held again (and announces it again).
      const again = await runCli(["resume", "runs/budget", "--poll-interval", "0.05", "--json"], { cwd: project.dir, env })
      expect(again.code, again.stderr).toBe(3)
      expect(JSON.parse(again.stdout).budget).toMatchObject({ limit: 0.0000001, heldShards: 2 })
      expect(receiver.received.map((d) => JSON.parse(d.body).event)).toEqual(["budget.reached", "budget.reached"])

      // SLUICE_NOTIFY_URL stands for --notify: a cron line's resume announces the end.
      const resumed = await runCli(["resume", "runs/budget", "--budget", "1000", "--poll-interval", "0.05"], { cwd: project.dir, env })
      expect(resumed.code, resumed.stderr).toBe(0)
      expect(receiver.received.map((d) => JSON.parse(d.body).event)).toEqual(["budget.reached", "budget.reached", "run.finished"])
    } finally {
      await receiver.close()
    }
  })

  it("run, resume and retry --help name --on-finish and --notify", async () => {
    for (const command of ["run", "resume", "retry"]) {
      const r = await runCli([command, "--help"], { cwd: project.dir })
      for (const m of ["--on-finish", "--notify", "SLUICE_ON_FINISH", "SLUICE_NOTIFY_URL"]) expect(r.stdout, `${command} --help`).toContain(m)
    }
  })

  it("a --notify value that is not an http(s) URL is refused before anything runs", async () => {
    const r = await runCli(["run", "notify.pipeline.ts", "--run-dir", "runs/bad-url", "--notify", "ftp://example.com/x", ...fastRunFlags(6)], {
      cwd: project.dir,
      env: emulatorEnv(emulator.url, KEY)
    })
    expect(r.code).toBe(2)
    expect(r.stderr).toContain("--notify takes an http(s) URL")
    expect(existsSync(project.path("runs/bad-url")), "no run directory").toBe(false)
  })
})
