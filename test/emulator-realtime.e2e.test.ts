/**
 * `sluice emulator` serves the real-time endpoints with the limits and headers its flags ask for:
 * `--rpm-limit` / `--tpm-limit` (429 with Retry-After, `x-ratelimit-*` headers), `--latency-ms`,
 * and `--no-rate-limit-headers` (a server like vLLM); the ledger lists the calls by custom_id.
 */
import type { ChildProcess } from "node:child_process"
import { getLedger } from "@sluice/emulator/control"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { makeProject, startCliEmulator, type TempProject } from "./support/cli.js"

const chat = (url: string, customId: string) =>
  fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-sluice-custom-id": customId },
    body: JSON.stringify({ model: "gpt-4o-mini", messages: [{ role: "user", content: `row ${customId}` }] })
  })

const limitHeaders = (response: Response): Record<string, string> =>
  Object.fromEntries([...response.headers].filter(([name]) => /ratelimit|retry-after/.test(name)))

describe("sluice emulator, real time", { timeout: 120_000 }, () => {
  let project: TempProject
  let limited: { url: string; child: ChildProcess }
  let headerless: { url: string; child: ChildProcess }

  beforeAll(async () => {
    project = await makeProject("sluice-emurt-")
    ;[limited, headerless] = await Promise.all([
      startCliEmulator(["--rpm-limit", "1", "--tpm-limit", "100000", "--latency-ms", "1"], project.dir),
      startCliEmulator(["--rpm-limit", "1", "--no-rate-limit-headers"], project.dir)
    ])
  })
  afterAll(async () => {
    for (const emulator of [limited, headerless]) {
      if (emulator === undefined) continue
      const exited = new Promise((resolve) => emulator.child.on("exit", resolve))
      emulator.child.kill("SIGTERM")
      await exited
    }
    await project?.cleanup()
  })

  it("--rpm-limit and --tpm-limit: headers on the answer, then a 429 with Retry-After; the ledger has both calls", async () => {
    const first = await chat(limited.url, "row-1")
    expect(first.status).toBe(200)
    expect(limitHeaders(first)).toMatchObject({
      "x-ratelimit-limit-requests": "1",
      "x-ratelimit-remaining-requests": "0",
      "x-ratelimit-limit-tokens": "100000"
    })
    const second = await chat(limited.url, "row-2")
    expect(second.status).toBe(429)
    expect(((await second.json()) as { error: { code: string } }).error.code).toBe("rate_limit_exceeded")
    // One request a minute: the next is at most 60 s away (the clock is the wall clock here).
    expect(Number(second.headers.get("retry-after"))).toBeGreaterThan(0)
    expect(Number(second.headers.get("retry-after"))).toBeLessThanOrEqual(60)
    const calls = (await getLedger(limited.url)).calls
    expect(calls.map((c) => [c.custom_id, c.status, c.latency_ms > 0])).toEqual([
      ["row-1", 200, true],
      ["row-2", 429, false]
    ])
  })

  it("--no-rate-limit-headers: the limit still holds, with no header saying so", async () => {
    const first = await chat(headerless.url, "row-1")
    expect(first.status).toBe(200)
    expect(limitHeaders(first)).toEqual({})
    const second = await chat(headerless.url, "row-2")
    expect(second.status).toBe(429)
    expect(limitHeaders(second)).toEqual({})
  })
})
