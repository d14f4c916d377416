/**
 * `sluice ui`: the report's page served live on 127.0.0.1, with the API it reads (see the view
 * contract): the run's view, its rows paged by offset (RunRows), a row's raw answer, and
 * server-sent events carrying a new view whenever the run directory changes.
 *
 * Read-only, loopback only, and every request must carry the random token printed at start
 * (`?token=` or the `x-sluice-token` header; compared in constant time), so another user of
 * the machine cannot read the run's data; a Host other than the loopback address is refused
 * too (a DNS-rebinding page would not know the token, but it need not get that far).
 *
 * Changes are seen by fs.watch on the run directory and its shards, and by a poll of the
 * files' sizes (fs.watch misses changes on some filesystems). Recomputes are coalesced: one at
 * a time, at most one a second, and changes during one lead to exactly one more.
 */
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import { Effect, Runtime, Schema } from "effect"
import type { Scope } from "effect"
import { createHash, randomBytes, timingSafeEqual } from "node:crypto"
import { statSync, watch } from "node:fs"
import type { FSWatcher } from "node:fs"
import { createServer } from "node:http"
import type { IncomingMessage, ServerResponse } from "node:http"
import type { AddressInfo } from "node:net"
import * as Journal from "./Journal.js"
import * as JournalStore from "./JournalStore.js"
import * as RunDir from "./RunDir.js"
import * as RunRows from "./RunRows.js"
import type { RowQuery, RowStatus } from "./RunRows.js"

export class UiServerError extends Schema.TaggedError<UiServerError>()("UiServerError", {
  description: Schema.String
}) {
  override get message(): string {
    return this.description
  }
}

export interface UiOptions {
  /** 0 (the default): any free port. */
  readonly port?: number
  /** The run's view (RunView.load); recomputed on every change. */
  readonly view: (root: string) => Effect.Effect<unknown, unknown, FileSystem.FileSystem | Path.Path>
  /** The page, given the token and the current view. */
  readonly page: (input: { readonly token: string; readonly view: unknown }) => string
  /** How often the files' sizes are polled (ms; default 1000). */
  readonly pollMs?: number
  /** The least time between two recomputes (ms; default 1000): a busy run writes all the time. */
  readonly minIntervalMs?: number
}

export interface UiServer {
  readonly port: number
  readonly token: string
  /** The page's URL, token included: what the user opens. */
  readonly url: string
}

const HOST = "127.0.0.1"
const MAX_LIMIT = 1000
const statuses: ReadonlyArray<RowStatus> = ["succeeded", "failed", "pending", "invalid"]

const digest = (s: string) => createHash("sha256").update(s).digest()

/** Constant time whatever the lengths: both sides hashed first. */
const sameToken = (given: string | null, token: string): boolean => given !== null && timingSafeEqual(digest(given), digest(token))

class BadRequest extends Error {}

const rowQuery = (params: URLSearchParams): RowQuery => {
  const int = (name: string, fallback: number, max: number) => {
    const text = params.get(name)
    if (text === null || text === "") return fallback
    const n = Number(text)
    if (!Number.isInteger(n) || n < 0 || n > max) throw new BadRequest(`${name} must be an integer from 0 to ${max}, got ${JSON.stringify(text)}`)
    return n
  }
  const status = params.get("status") ?? undefined
  if (status !== undefined && status !== "" && !statuses.includes(status as RowStatus)) {
    throw new BadRequest(`status must be one of ${statuses.join(", ")}, got ${JSON.stringify(status)}`)
  }
  const text = (name: string) => {
    const v = params.get(name)
    return v === null || v === "" ? undefined : v
  }
  return {
    offset: int("offset", 0, Number.MAX_SAFE_INTEGER),
    limit: int("limit", 50, MAX_LIMIT),
    status: status === "" ? undefined : (status as RowStatus | undefined),
    failureClass: text("class"),
    stage: text("stage"),
    q: text("q")
  }
}

/** Serves the run directory at `root` until the scope closes. */
export const serve = (
  root: string,
  options: UiOptions
): Effect.Effect<UiServer, unknown, FileSystem.FileSystem | Path.Path | Scope.Scope> =>
  Effect.gen(function* () {
    const path = yield* Path.Path
    const paths = RunDir.paths(path.resolve(root), path)
    const rows = yield* RunRows.open(paths.root)
    const runtime = yield* Effect.runtime<FileSystem.FileSystem | Path.Path>()
    const run = Runtime.runPromise(runtime)
    const token = randomBytes(24).toString("base64url")

    let view: unknown = yield* options.view(paths.root)
    const clients = new Set<ServerResponse>()
    const send = (res: ServerResponse, json: string) => void res.write(`event: view\ndata: ${json}\n\n`)

    // One recompute at a time; a change during one asks for exactly one more.
    let running = false
    let again = false
    let last = 0
    const recompute = async (): Promise<void> => {
      if (running) {
        again = true
        return
      }
      running = true
      try {
        do {
          again = false
          const wait = last + (options.minIntervalMs ?? 1000) - Date.now()
          if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait))
          last = Date.now()
          await run(rows.refresh)
          view = await run(options.view(paths.root))
          const json = JSON.stringify(view)
          for (const res of clients) send(res, json)
        } while (again)
      } catch (e) {
        // A half-written file read at the wrong moment, say: the next change tries again.
        process.emitWarning(`sluice ui: the view was not updated: ${e instanceof Error ? e.message : String(e)}`)
      } finally {
        running = false
      }
    }

    // Sizes (and times) of the files a run appends to: a change in any is worth a recompute.
    const signature = () => {
      const parts: Array<string> = []
      for (const file of [paths.journal, paths.results, paths.failures]) {
        try {
          const s = statSync(file)
          parts.push(`${s.size}:${s.mtimeMs}`)
        } catch {
          parts.push("-")
        }
      }
      return parts.join("|")
    }
    let seen = signature()
    // A journal in a database (a cluster's run: JournalStore.ts) has no file to watch: each poll
    // asks it for events after the last seen (one query, none usually).
    const inFile = (yield* JournalStore.kindOf(paths).pipe(Effect.orElseSucceed(() => "file" as const))) === "file"
    let journalAt = Journal.start
    const journalMoved = async () => {
      const appended = await run(JournalStore.readAfter(paths, journalAt))
      const moved = appended.restarted || appended.position.at !== journalAt.at
      journalAt = appended.position
      return moved
    }
    if (!inFile) yield* Effect.tryPromise(journalMoved).pipe(Effect.ignore)
    const check = () => {
      if (!inFile) void journalMoved().then((moved) => (moved ? recompute() : undefined), () => undefined)
      const now = signature()
      if (now === seen) return
      seen = now
      void recompute()
    }
    const watchers: Array<FSWatcher> = []
    for (const dir of [paths.root, paths.shards]) {
      try {
        // The journal and outputs are checked by size; online shards' answers grow in shards/
        // without a journal event, so a change there recomputes (coalesced).
        watchers.push(watch(dir, { persistent: false }, () => (dir === paths.shards ? void recompute() : check())))
      } catch {
        // No watching here (a missing shards/ before planning, a filesystem without it): the poll covers it.
      }
    }
    const poll = setInterval(check, options.pollMs ?? 1000)
    poll.unref()

    const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
      res.setHeader("x-content-type-options", "nosniff")
      res.setHeader("referrer-policy", "no-referrer")
      res.setHeader("cache-control", "no-store")
      const url = new URL(req.url ?? "/", `http://${HOST}`)
      const host = req.headers.host ?? ""
      const port = (server.address() as AddressInfo).port
      if (host !== `${HOST}:${port}` && host !== `localhost:${port}`) return reply(res, 403, "text/plain", "forbidden: not a loopback host\n")
      if (!sameToken(url.searchParams.get("token") ?? headerOf(req, "x-sluice-token"), token)) {
        return reply(res, 403, "text/plain", "forbidden: this URL needs the token sluice ui printed at start\n")
      }
      if (req.method !== "GET" && req.method !== "HEAD") return reply(res, 405, "text/plain", "read-only: GET only\n")
      try {
        switch (url.pathname) {
          case "/":
            return reply(res, 200, "text/html; charset=utf-8", options.page({ token, view }))
          case "/api/view":
            return reply(res, 200, "application/json", JSON.stringify(view))
          case "/api/rows":
            return reply(res, 200, "application/json", JSON.stringify(await run(rows.page(rowQuery(url.searchParams)))))
          case "/api/raw": {
            const id = url.searchParams.get("custom_id")
            if (id === null || id === "") throw new BadRequest("custom_id is required")
            const raw = await run(rows.raw(id))
            return raw === null ? reply(res, 404, "application/json", JSON.stringify({ error: `no answer for ${id}` })) : reply(res, 200, "application/json", JSON.stringify(raw))
          }
          case "/api/events": {
            res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-store", connection: "keep-alive" })
            clients.add(res)
            req.on("close", () => clients.delete(res))
            send(res, JSON.stringify(view))
            return
          }
          default:
            return reply(res, 404, "text/plain", "not found\n")
        }
      } catch (e) {
        if (e instanceof BadRequest) return reply(res, 400, "application/json", JSON.stringify({ error: e.message }))
        return reply(res, 500, "application/json", JSON.stringify({ error: e instanceof Error ? e.message : String(e) }))
      }
    }
    const server = createServer((req, res) => void handle(req, res))
    // SSE clients keep the connection open: heartbeats keep proxies and browsers from timing out.
    const heartbeat = setInterval(() => {
      for (const res of clients) res.write(": keep-alive\n\n")
    }, 15_000)
    heartbeat.unref()

    yield* Effect.async<void, UiServerError>((resume) => {
      server.once("error", (e) => resume(Effect.fail(new UiServerError({ description: `cannot listen on ${HOST}:${options.port ?? 0}: ${e.message}` }))))
      server.listen(options.port ?? 0, HOST, () => resume(Effect.void))
    })
    yield* Effect.addFinalizer(() =>
      Effect.promise(
        () =>
          new Promise<void>((resolve) => {
            clearInterval(poll)
            clearInterval(heartbeat)
            for (const w of watchers) w.close()
            for (const res of clients) res.end()
            clients.clear()
            server.close(() => resolve())
            server.closeAllConnections()
          })
      )
    )
    const port = (server.address() as AddressInfo).port
    return { port, token, url: `http://${HOST}:${port}/?token=${token}` } satisfies UiServer
  })

const headerOf = (req: IncomingMessage, name: string): string | null => {
  const v = req.headers[name]
  return typeof v === "string" ? v : null
}

const reply = (res: ServerResponse, status: number, type: string, body: string): void => {
  res.writeHead(status, { "content-type": type, "content-length": Buffer.byteLength(body) })
  res.end(body)
}
