/** The routes the emulator counts requests by: ids in paths become `{id}`, a `:verb` suffix stays. */
import { describe, expect, it } from "vitest"
import { RequestCounts, routeOf } from "../src/internal/requestCounts.js"

describe("routeOf", () => {
  it("names each provider call by its route, whatever the ids", () => {
    expect(routeOf("post", "/v1/files")).toBe("POST /v1/files")
    expect(routeOf("GET", "/v1/files")).toBe("GET /v1/files")
    expect(routeOf("GET", "/v1/files/file-abc/content")).toBe("GET /v1/files/{id}/content")
    expect(routeOf("GET", "/openai/v1/batches/batch_1")).toBe("GET /openai/v1/batches/{id}")
    expect(routeOf("POST", "/v1/batches/batch_1/cancel")).toBe("POST /v1/batches/{id}/cancel")
    expect(routeOf("GET", "/v1/messages/batches/msgbatch_1/results")).toBe("GET /v1/messages/batches/{id}/results")
    expect(routeOf("POST", "/v1beta/models/gemini-2.5-flash:batchGenerateContent")).toBe("POST /v1beta/models/{id}:batchGenerateContent")
    expect(routeOf("GET", "/download/v1beta/files/abc:download")).toBe("GET /download/v1beta/files/{id}:download")
    expect(routeOf("POST", "/upload/v1beta/files")).toBe("POST /upload/v1beta/files")
  })

  it("counts per route until reset", () => {
    const counts = new RequestCounts()
    counts.add("GET", "/v1/batches/a")
    counts.add("GET", "/v1/batches/b")
    counts.add("POST", "/v1/batches")
    expect(counts.json).toEqual({ "GET /v1/batches/{id}": 2, "POST /v1/batches": 1 })
    counts.reset()
    expect(counts.json).toEqual({})
  })
})
