/**
 * The test API under `/_emulator/`: ledger, runtime faults, the clock, reset.
 * Never subject to call faults, so a test can always inspect and steer the emulator. Guarded
 * for every route at once by the router (access.ts): loopback Host, the API key when one is set,
 * no Origin header, JSON bodies.
 *
 *   GET  /_emulator/health   -> { ok: true }
 *   GET  /_emulator/ledger   -> { batches: [{id, created_at, status, metadata, input_file_id, custom_ids}],
 *                                 deliveries: [{custom_id, batch_id}],   (successes found in output files)
 *                                 calls: [...], calls_dropped: n }      (real-time calls, callLedger.ts)
 *                               Anthropic batches are listed too (metadata {}, input_file_id null,
 *                               api "anthropic" | "anthropic-gateway", deleted), in creation order.
 *   GET  /_emulator/requests -> { "GET /v1/batches/{id}": n, "POST /v1/files": n, … }: provider-API requests
 *                               by method and route, ids replaced by {id} (requestCounts.ts)
 *   GET  /_emulator/inflight -> { in_flight, held }: real-time requests being handled, and held
 *   GET  /_emulator/faults   -> current fault settings
 *   POST /_emulator/faults   -> patch them; `expireBatch: id` expires that batch (OpenAI or Anthropic) now
 *   GET  /_emulator/clock    -> { now, held }: the emulator's time (ms since epoch) and whether it stands still
 *   POST /_emulator/clock    -> {hold: true} stops it, {advanceMs: N} moves it forward, {release: true}
 *                               lets it run on from where it stood; answers { now, held }
 *   GET  /_emulator/webhooks -> { url, deliveries: [{webhook_id, type, batch_id, variant, status, attempts}] }
 *   POST /_emulator/webhooks -> {url, secret: "whsec_…"} sends signed events when OpenAI batches end; {url: null} stops
 *   POST /_emulator/webhooks/send -> {batch_id, type?, variant?: "valid" | "forged" | "stale"} or
 *                               {variant: "replay", webhook_id?}: one delivery now; answers it (see webhooks.ts)
 *   POST /_emulator/reset    -> forget all files and batches (deleting only the files the emulator
 *                               wrote, see store.ts), the real-time calls, request counts, webhook deliveries and rate-limit buckets;
 *                               restore the start-up fault settings
 *                               (the clock is left as it is)
 */
import type { Batches } from "./batches.js"
import type { EmulatorClock } from "./clock.js"
import { invalidRequest } from "./errors.js"
import { FAULT_KEYS, type Faults, faultsJson, parseFaultPatch } from "./faults.js"
import { readJson, type Reply } from "./http.js"
import type { RealtimeCalls } from "./realtime.js"
import type { RequestCounts } from "./requestCounts.js"
import type { Store } from "./store.js"
import type { Webhooks } from "./webhooks.js"

export interface ControlContext {
  readonly store: Store
  readonly batches: Batches
  readonly realtime: RealtimeCalls
  readonly requests: RequestCounts
  readonly faults: Faults
  readonly emulatorClock: EmulatorClock
  readonly webhooks: Webhooks
  readonly log: (line: string) => void
}

const PATCH_KEYS: ReadonlySet<string> = new Set([...FAULT_KEYS, "expireBatch"])

export const handleControl = async (
  ctx: ControlContext,
  method: string,
  segments: ReadonlyArray<string>,
  reply: Reply
): Promise<boolean> => {
  const route = `${method} ${segments.join("/")}`
  switch (route) {
    case "GET health":
      reply.json(200, { ok: true })
      return true
    case "GET ledger":
      await reply.chunks(200, "application/json", ledger(ctx))
      return true
    case "GET requests":
      reply.json(200, ctx.requests.json)
      return true
    case "GET enqueued":
      reply.json(200, ctx.batches.enqueued.json)
      return true
    case "GET inflight":
      reply.json(200, ctx.realtime.inFlight)
      return true
    case "GET faults":
      reply.json(200, faultsJson(ctx.faults.settings))
      return true
    case "POST faults": {
      const body = (await readJson(reply.req)) ?? {}
      if (typeof body !== "object" || body === null || Array.isArray(body)) throw invalidRequest("Expected a JSON object of fault settings.")
      const { expireBatch, ...settings } = body as Record<string, unknown>
      if (expireBatch !== undefined && typeof expireBatch !== "string") throw invalidRequest("'expireBatch' must be a batch id.", "expireBatch")
      const patch = parseFaultPatch(settings, PATCH_KEYS)
      ctx.faults.update(patch)
      if (Object.keys(patch).length > 0) ctx.log(`faults set: ${JSON.stringify(faultsJson(ctx.faults.settings))}`)
      const expired = expireBatch === undefined ? undefined : await ctx.batches.expireNow(expireBatch)
      reply.json(200, { ...faultsJson(ctx.faults.settings), ...(expired === undefined ? {} : { expiredBatch: expired }) })
      return true
    }
    case "GET clock":
      reply.json(200, ctx.emulatorClock.state)
      return true
    case "POST clock": {
      ctx.emulatorClock.apply((await readJson(reply.req)) ?? {})
      const state = ctx.emulatorClock.state
      ctx.log(`clock ${state.held ? "held" : "running"} at ${new Date(state.now).toISOString()}`)
      reply.json(200, state)
      return true
    }
    case "GET webhooks":
      reply.json(200, ctx.webhooks.json)
      return true
    case "POST webhooks":
      ctx.webhooks.configure((await readJson(reply.req)) ?? {})
      reply.json(200, ctx.webhooks.json)
      return true
    case "POST webhooks/send":
      reply.json(200, await ctx.webhooks.send((await readJson(reply.req)) ?? {}))
      return true
    case "POST reset":
      await ctx.batches.reset()
      await ctx.store.reset()
      ctx.realtime.reset()
      ctx.requests.reset()
      ctx.webhooks.reset()
      ctx.faults.reset()
      ctx.log("state reset")
      reply.json(200, { ok: true })
      return true
    default:
      return false
  }
}

async function* ledger(ctx: ControlContext): AsyncGenerator<string> {
  yield "{"
  yield* ctx.batches.ledgerMembers()
  yield ',"calls":['
  yield* ctx.realtime.ledger.json()
  yield `],"calls_dropped":${ctx.realtime.ledger.dropped}}`
}
