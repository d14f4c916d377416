/**
 * Requests per route: every call to the provider APIs (batch and real-time; not the test API),
 * counted by method and path with the ids in it replaced by `{id}` — `GET /v1/batches/{id}`,
 * `POST /v1/files`, `GET /v1/files` (a listing). Tests and the benchmark read it from
 * `GET /_emulator/requests` to count the calls a run made per shard.
 *
 * In memory, like the real-time call ledger: a restarted emulator starts from zero; reset clears it.
 */

/** Resources whose next path segment names one of them (an id, a file or batch name, a model). */
const NAMED: ReadonlySet<string> = new Set(["files", "batches", "models", "deployments"])

/** The route of a request: `METHOD /path` with the segment after a named resource replaced by `{id}` (a `:verb` suffix kept). */
export const routeOf = (method: string, pathname: string): string => {
  const segments = pathname.split("/").filter((s) => s.length > 0)
  const out = segments.map((segment, i) => {
    const previous = i === 0 ? "" : segments[i - 1]!.split(":")[0]!
    if (!NAMED.has(previous)) return segment
    const colon = segment.indexOf(":")
    return colon < 0 ? "{id}" : `{id}${segment.slice(colon)}`
  })
  return `${method.toUpperCase()} /${out.join("/")}`
}

export class RequestCounts {
  private counts = new Map<string, number>()

  add(method: string, pathname: string): void {
    const route = routeOf(method, pathname)
    this.counts.set(route, (this.counts.get(route) ?? 0) + 1)
  }

  reset(): void {
    this.counts.clear()
  }

  /** Counts by route, routes sorted. */
  get json(): Record<string, number> {
    return Object.fromEntries([...this.counts.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
  }
}
