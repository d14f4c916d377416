/**
 * `sluice ui` over real HTTP, the real CLI serving a run that the real CLI is running against
 * the emulator, whose clock the test holds and moves: the token is required (403 without it,
 * or from a Host that is not loopback), the server listens on 127.0.0.1 only, the events
 * stream delivers a new view as the run progresses, and the rows API pages exactly as RunRows.
 */
import { NodeContext } from "@effect/platform-node"
import { Effect } from "effect"
import type { ChildProcess } from "node:child_process"
import { readFileSync } from "node:fs"
import { request } from "node:http"
import { networkInterfaces } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as RunRows from "../packages/runner/src/RunRows.js"
import { describeResult, emulatorEnv, makeProject, runCli, spawnCli, startTestEmulator, writePipeline, writeRows } from "./support/cli.js"
import type { TempProject, TestEmulator } from "./support/cli.js"
import { advanceClock, holdClock, readJournalSoFar, releaseClock, waitFor } from "./support/runs.js"
import { startUiServer } from "./support/ui.js"

const ROWS = 20
let emulator: TestEmulator
let project: TempProject
const children: Array<ChildProcess> = []
const startUi = async (runDir: string) => {
  const ui = await startUiServer(runDir, project.dir)
  children.push(ui.child)
  return ui
}

beforeAll(async () => {
  emulator = await startTestEmulator()
  project = await makeProject("sluice-ui-")
  await writePipeline(project, "pipeline.ts")
  await writeRows(project, "data/rows.jsonl", ROWS)
})

afterAll(async () => {
  for (const c of children) c.kill("SIGKILL")
  await releaseClock(emulator.url).catch(() => undefined)
  await emulator?.close()
  await project?.cleanup()
})

interface Reply {
  readonly status: number
  readonly type: string
  readonly body: string
}

/** A GET (or another method) with the headers given, Host included. */
const get = (port: number, path: string, headers: Record<string, string> = {}, method = "GET"): Promise<Reply> =>
  new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, path, method, headers }, (res) => {
      let body = ""
      res.setEncoding("utf8").on("data", (d: string) => (body += d))
      res.on("end", () => resolve({ status: res.statusCode ?? 0, type: String(res.headers["content-type"] ?? ""), body }))
    })
    req.on("error", reject)
    req.end()
  })

/** The events of `/api/events`, as they come. */
const events = (port: number, token: string) => {
  const views: Array<any> = []
  let buffer = ""
  const req = request({ host: "127.0.0.1", port, path: `/api/events?token=${token}` }, (res) => {
    res.setEncoding("utf8").on("data", (d: string) => {
      buffer += d
      for (let end = buffer.indexOf("\n\n"); end !== -1; end = buffer.indexOf("\n\n")) {
        const block = buffer.slice(0, end)
        buffer = buffer.slice(end + 2)
        const event = /^event: (.*)$/m.exec(block)?.[1]
        const data = /^data: (.*)$/m.exec(block)?.[1]
        if (event === "view" && data !== undefined) views.push(JSON.parse(data))
      }
    })
  })
  req.end()
  return { views, close: () => req.destroy() }
}

const rowsOf = (dir: string, query: RunRows.RowQuery) =>
  Effect.runPromise(Effect.scoped(Effect.flatMap(RunRows.open(dir), (r) => r.page(query))).pipe(Effect.provide(NodeContext.layer)))

describe("sluice ui", () => {
  const runDir = ".sluice/runs/ui"
  const dir = () => join(project.dir, runDir)

  it("serves a run live: token required, loopback only, a new view as the run progresses, rows as RunRows pages them", async () => {
    await holdClock(emulator.url)
    const run = spawnCli(["run", "pipeline.ts", "--run-dir", runDir, "--shard-size", "5", "--poll-interval", "0.05"], { cwd: project.dir, env: emulatorEnv(emulator.url) })
    children.push(run)
    let runErr = ""
    run.stderr!.setEncoding("utf8").on("data", (d: string) => (runErr += d))
    const exited = new Promise<number | null>((resolve) => run.on("exit", (code) => resolve(code)))
    // The run's four batches are created, and stand still with the emulator's clock.
    await waitFor("four batches created", async () => ((await readJournalSoFar(dir())).filter((e) => e._tag === "Created").length >= 4 ? true : undefined), { timeoutMs: 120_000 })

    const ui = await startUi(runDir)
    expect(ui.url).toBe(`http://127.0.0.1:${ui.port}/?token=${ui.token}`)
    expect(ui.token.length).toBeGreaterThanOrEqual(32)

    // The token on every request; the wrong one, none, or a Host that is not loopback: 403.
    for (const path of ["/", "/api/view", "/api/rows", "/api/events", `/api/raw?custom_id=x`]) {
      expect((await get(ui.port, path)).status, path).toBe(403)
    }
    // A token one character off (never the same character: a random token may end in any of them).
    const offByOne = `${ui.token.slice(0, -1)}${ui.token.endsWith("x") ? "y" : "x"}`
    expect((await get(ui.port, `/api/view?token=${offByOne}`)).status).toBe(403)
    expect((await get(ui.port, "/api/view", { "x-sluice-token": ui.token })).status).toBe(200)
    expect((await get(ui.port, `/api/view?token=${ui.token}`, { host: `evil.example:${ui.port}` })).status).toBe(403)
    expect((await get(ui.port, `/api/view?token=${ui.token}`, {}, "POST")).status).toBe(405)

    // Bound to 127.0.0.1 alone: the kernel's table lists the port on 127.0.0.1 only, and
    // another address of this machine refuses the connection.
    const listening = readFileSync("/proc/net/tcp", "utf8").split("\n").slice(1).map((l) => l.trim().split(/\s+/)).filter((f) => f[3] === "0A" && f[1]?.endsWith(`:${ui.port.toString(16).toUpperCase().padStart(4, "0")}`))
    expect(listening.map((f) => f[1]!.split(":")[0])).toEqual(["0100007F"])
    const other = Object.values(networkInterfaces()).flat().find((i) => i !== undefined && i.family === "IPv4" && !i.internal)
    if (other !== undefined) {
      const refused = await new Promise<string>((resolve) => {
        const req = request({ host: other.address, port: ui.port, path: `/?token=${ui.token}` }, () => resolve("connected"))
        req.on("error", (e: NodeJS.ErrnoException) => resolve(e.code ?? "error"))
        req.end()
      })
      expect(refused).toBe("ECONNREFUSED")
    }

    // The page: live mode, with the token to call the API.
    const page = await get(ui.port, `/?token=${ui.token}`)
    expect(page.status).toBe(200)
    expect(page.type).toContain("text/html")
    expect(page.body).toContain(`"mode":"live"`)
    expect(page.body).toContain(ui.token)

    // While the batches stand still: every row pending, in the view and in the rows.
    const stream = events(ui.port, ui.token)
    try {
      await waitFor("the view at connect", () => (stream.views.length > 0 ? true : undefined))
      expect(stream.views[0].totals.pending).toBe(ROWS)
      expect(stream.views[0].totals.succeeded).toBe(0)
      const pending = JSON.parse((await get(ui.port, `/api/rows?token=${ui.token}&status=pending&limit=100`)).body) as RunRows.RowPage
      expect(pending.total).toBe(ROWS)

      // The clock moves: the batches finish, the run collects them, and the view follows.
      let code: number | null | undefined
      void exited.then((c) => (code = c))
      await waitFor("the run to finish", async () => {
        if (code !== undefined) return true
        await advanceClock(emulator.url, 60_000)
        return undefined
      }, { timeoutMs: 120_000, intervalMs: 200 })
      expect(code, runErr).toBe(0)
      const last = await waitFor("a view of the finished run", () => stream.views.find((v) => v.totals.succeeded === ROWS), { timeoutMs: 60_000 })
      expect(last.totals.pending).toBe(0)
      expect(stream.views.length).toBeGreaterThan(1)
    } finally {
      stream.close()
    }

    // Rows: the API pages exactly as RunRows does, filters included; raw answers by custom_id.
    for (const q of ["offset=0&limit=50", "offset=7&limit=5", "offset=19&limit=50", "status=succeeded&offset=3&limit=4", "q=review%2012"]) {
      const reply = await get(ui.port, `/api/rows?token=${ui.token}&${q}`)
      expect(reply.status, q).toBe(200)
      const params = new URLSearchParams(q)
      const expected = await rowsOf(dir(), {
        offset: Number(params.get("offset") ?? 0),
        limit: Number(params.get("limit") ?? 50),
        ...(params.has("status") ? { status: params.get("status") as RunRows.RowStatus } : {}),
        ...(params.has("q") ? { q: params.get("q")! } : {})
      })
      expect(JSON.parse(reply.body), q).toEqual(expected)
    }
    const all = JSON.parse((await get(ui.port, `/api/rows?token=${ui.token}&limit=100`)).body) as RunRows.RowPage
    expect(all.total).toBe(ROWS)
    expect(all.rows.every((r) => r.status === "succeeded")).toBe(true)
    const raw = await get(ui.port, `/api/raw?token=${ui.token}&custom_id=${encodeURIComponent(all.rows[3]!.customId)}`)
    expect(raw.status).toBe(200)
    const results = readFileSync(join(dir(), "results.jsonl"), "utf8").split("\n").filter((l) => l !== "").map((l) => JSON.parse(l))
    expect(JSON.parse(raw.body)).toEqual(results.find((r) => r.customId === all.rows[3]!.customId))
    expect((await get(ui.port, `/api/raw?token=${ui.token}&custom_id=nope`)).status).toBe(404)
    expect((await get(ui.port, `/api/rows?token=${ui.token}&limit=-1`)).status).toBe(400)
    expect((await get(ui.port, `/api/rows?token=${ui.token}&status=done`)).status).toBe(400)
  }, 300_000)

  it("refuses a port out of range as a usage error (exit 2), and a directory that is not a run", async () => {
    const r = await runCli(["ui", ".", "--port", "70000"], { cwd: project.dir })
    expect(r.code, describeResult(r)).toBe(2)
    expect(r.stderr).toContain("--port must be an integer from 0 to 65535")
    const notRun = await runCli(["ui", "data"], { cwd: project.dir })
    expect(notRun.code, describeResult(notRun)).not.toBe(0)
    expect(notRun.stderr).toContain("data")
  })
})
