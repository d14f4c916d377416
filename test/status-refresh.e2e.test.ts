/**
 * `sluice status` asks the provider about the run's batches in flight several at once
 * (Status.refreshConcurrency), and waits for them at most its budget (Status.refreshBudgetSeconds): a batch
 * the provider has not answered for by then is shown from the journal, marked "(journal)", and
 * the output says how many. The provider here is the emulator behind a small proxy that holds
 * `GET /v1/batches/{id}` as each test says — never a timing: a held request is never answered.
 * Both programs are checked (bin/sluice.js runs the bundled one, dist/bin.js the full CLI).
 */
import { createServer, request, type IncomingMessage, type ServerResponse } from "node:http"
import type { AddressInfo, Socket } from "node:net"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { refreshConcurrency } from "../packages/runner/src/Status.js"
import {
  describeResult,
  emulatorEnv,
  fastRunFlags,
  fullCli,
  makeProject,
  runCli,
  runNode,
  sluiceBin,
  startTestEmulator,
  type TempProject,
  type TestEmulator,
  writePipeline,
  writeRows
} from "./support/cli.js"

const batches = 12

/** The emulator behind a proxy whose `hold` decides, per batch retrieval, when it goes on. */
const startProxy = async (target: string) => {
  const sockets = new Set<Socket>()
  let inFlight = 0
  let maxInFlight = 0
  /** Called for each `GET /v1/batches/{id}`: `go` forwards it; never calling `go` holds it. */
  let hold: (batchId: string, go: () => void) => void = (_, go) => go()
  const forward = (req: IncomingMessage, res: ServerResponse) => {
    const upstream = request(`${target}${req.url}`, { method: req.method, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers)
      answer.pipe(res)
    })
    req.pipe(upstream)
  }
  const server = createServer((req, res) => {
    const retrieval = req.method === "GET" ? /^\/v1\/batches\/([^/?]+)$/.exec(req.url ?? "") : null
    if (retrieval === null) return forward(req, res)
    inFlight++
    maxInFlight = Math.max(maxInFlight, inFlight)
    res.on("close", () => inFlight--)
    hold(retrieval[1]!, () => forward(req, res))
  })
  server.on("connection", (s) => {
    sockets.add(s)
    s.on("close", () => sockets.delete(s))
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    setHold: (h: typeof hold) => {
      hold = h
      maxInFlight = 0
    },
    maxInFlight: () => maxInFlight,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy()
        server.close(() => resolve())
      })
  }
}

let project: TempProject
let emulator: TestEmulator
let proxy: Awaited<ReturnType<typeof startProxy>>
let runDir: string

beforeAll(async () => {
  project = await makeProject("sluice-status-refresh-")
  // Batches stay validating for an hour: all of them are in flight while the tests ask.
  emulator = await startTestEmulator({ validatingMs: 3_600_000 })
  proxy = await startProxy(emulator.url)
  await writeRows(project, "data/rows.jsonl", batches)
  await writePipeline(project, "p.pipeline.ts", { name: "refresh" })
  const detached = await runCli(["run", "p.pipeline.ts", "--detach", "--concurrency", String(batches), ...fastRunFlags(1)], { cwd: project.dir, env: emulatorEnv(proxy.url) })
  expect(detached.stderr, describeResult(detached)).not.toContain("error")
  runDir = project.path(".sluice", "runs", "refresh")
}, 180_000)

afterAll(async () => {
  await proxy?.close()
  await emulator?.close()
  await project?.cleanup()
})

interface Shown {
  readonly notRefreshed: number
  readonly refreshError: string | null
  readonly shards: ReadonlyArray<{ readonly batchId: string; readonly live: boolean; readonly status: string }>
}

/**
 * `sluice status` through bin/sluice.js (the bundled program) and the full CLI, or one of them
 * (`full`): its stdout, after checking both gave the same output and exit 0.
 */
const status = async (args: ReadonlyArray<string>, only?: { readonly full: boolean }, budget?: number) => {
  // The tests' environment gives the refresh minutes (vitest.config.ts): a loaded machine never
  // runs out of it. The test of the budget sets a few seconds.
  const env = { ...emulatorEnv(proxy.url), ...(budget === undefined ? {} : { SLUICE_STATUS_REFRESH_SECONDS: String(budget) }) }
  const results = []
  for (const program of only === undefined ? [sluiceBin, fullCli] : [only.full ? fullCli : sluiceBin]) {
    results.push(await runNode([program, "status", runDir, ...args], project.dir, env))
  }
  expect(results[0]!.code, results[0]!.stderr).toBe(0)
  for (const r of results) expect(r).toEqual(results[0])
  return results[0]!.stdout
}

describe("status refreshes batches in flight several at once, within a budget", () => {
  it(`asks about ${refreshConcurrency} at once, never more: every batch live while the provider answers only when ${refreshConcurrency} wait`, async () => {
    expect(batches).toBeGreaterThan(refreshConcurrency)
    // The first retrievals are held until as many as status may send are waiting: one at a
    // time, status would wait out its budget and show them from the journal.
    const gate = () => {
      let waiting: Array<() => void> = []
      let released = false
      return (_: string, go: () => void) => {
        if (released) return go()
        waiting.push(go)
        if (waiting.length === refreshConcurrency) {
          released = true
          for (const w of waiting) w()
          waiting = []
        }
      }
    }
    for (const args of [["--json"], []]) {
      proxy.setHold(gate())
      const viaBin = await status(args, { full: false })
      expect(proxy.maxInFlight()).toBe(refreshConcurrency)
      proxy.setHold(gate())
      const stdout = await status(args, { full: true })
      expect(stdout).toBe(viaBin)
      expect(proxy.maxInFlight()).toBe(refreshConcurrency)
      if (args.length === 0) {
        expect(stdout).not.toContain("(journal)")
        expect(stdout).not.toContain("not given within")
        continue
      }
      const shown = JSON.parse(stdout) as Shown
      expect(shown.refreshError).toBeNull()
      expect(shown.notRefreshed).toBe(0)
      expect(shown.shards).toHaveLength(batches)
      for (const shard of shown.shards) expect(shard).toMatchObject({ live: true, status: "validating" })
    }
  }, 120_000)

  // Long enough for the others to be answered on a loaded machine; the held one never is.
  const budget = 6
  it(`a batch the provider does not answer for: shown from the journal after the budget (SLUICE_STATUS_REFRESH_SECONDS), marked and counted; the others live`, async () => {
    const shown = JSON.parse(await status(["--json"])) as Shown
    const stuck = shown.shards[3]!.batchId
    proxy.setHold((batchId, go) => {
      if (batchId !== stuck) go()
    })
    const json = JSON.parse(await status(["--json"], undefined, budget)) as Shown
    expect(json.refreshError).toBeNull()
    expect(json.notRefreshed).toBe(1)
    for (const shard of json.shards) expect(shard.live, shard.batchId).toBe(shard.batchId !== stuck)
    const text = await status([], undefined, budget)
    expect(text).toContain(`(provider status of 1 batch not given within ${budget} s: shown from the journal)`)
    const lines = text.split("\n").filter((l) => l.includes(" created batch_"))
    expect(lines).toHaveLength(batches)
    for (const line of lines) expect(line.includes("(journal)"), line).toBe(line.includes(stuck))
  }, 120_000)
})
