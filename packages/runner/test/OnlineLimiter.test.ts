/**
 * The online limiter under TestClock: caps never exceeded (requests in flight, requests and
 * tokens per minute, measured over every 60-second window of the send times), AIMD (a cut per
 * round of throttles, growth by one per window of good answers, never above the cap), the
 * server's wait honoured, and the provider's remaining requests and tokens counted down.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Fiber, Option, TestClock } from "effect"
import * as OnlineLimiter from "../src/OnlineLimiter.js"
import type { Permit } from "../src/OnlineLimiter.js"

/** Lets forked fibers run up to their next wait. */
const settle = Effect.repeatN(Effect.yieldNow(), 10)

/**
 * A request that the limiter must let go at once: acquired in a fiber, so a limiter that holds
 * it back fails the assertion instead of hanging the test.
 */
const acquireNow = (limiter: OnlineLimiter.Limiter, tokens: number, why: string) =>
  Effect.gen(function* () {
    const fiber = yield* Effect.fork(limiter.acquire(tokens))
    yield* settle
    const done = yield* Fiber.poll(fiber)
    if (Option.isNone(done)) {
      yield* Fiber.interrupt(fiber)
      return assert.fail(`held back: ${why}`)
    }
    return yield* done.value
  })

/** The permit of a waiting request that must have gone by now (fails rather than hangs). */
const gone = (fiber: Fiber.RuntimeFiber<Permit>, why: string) =>
  Effect.gen(function* () {
    yield* settle
    const done = yield* Fiber.poll(fiber)
    if (Option.isNone(done)) {
      yield* Fiber.interrupt(fiber)
      return assert.fail(`still held back: ${why}`)
    }
    return yield* done.value
  })

/** The most sends (or tokens) that fall in any half-open window [t, t + 60 s). */
const maxPerMinute = (sends: ReadonlyArray<{ readonly at: number; readonly tokens: number }>, weight: (s: { tokens: number }) => number) => {
  let most = 0
  for (const start of sends) {
    let sum = 0
    for (const s of sends) if (s.at >= start.at && s.at < start.at + 60_000) sum += weight(s)
    most = Math.max(most, sum)
  }
  return most
}

/**
 * A server that answers every request at once: `n` requests by `workers` fibers, each
 * acquiring, answering and releasing. Time moves in `step`s until all are sent (TestClock
 * wakes every sleeper at its own time within a step). Returns the permits in order of sending.
 */
const drive = (limiter: OnlineLimiter.Limiter, n: number, tokensOf: (i: number) => number, workers = 4, step = 5000) =>
  Effect.gen(function* () {
    const sent: Array<Permit> = []
    let next = 0
    const worker = Effect.gen(function* () {
      while (next < n) {
        const i = next++
        const permit = yield* limiter.acquire(tokensOf(i))
        sent.push(permit)
        yield* limiter.answered(permit, {})
        yield* limiter.release(permit)
      }
    })
    const fiber = yield* Effect.fork(Effect.all(Array.from({ length: workers }, () => worker), { concurrency: "unbounded" }))
    while (sent.length < n) {
      yield* settle
      yield* TestClock.adjust(Duration.millis(step))
    }
    yield* Fiber.join(fiber)
    return sent
  })

describe("OnlineLimiter", () => {
  it.effect("never has more requests in flight than the cap; a release lets the next one go", () =>
    Effect.gen(function* () {
      const limiter = yield* OnlineLimiter.make({ concurrency: 3 })
      const permits: Array<Permit> = []
      const fibers = yield* Effect.forEach(Array.from({ length: 5 }), () => Effect.fork(Effect.tap(limiter.acquire(10), (p) => Effect.sync(() => permits.push(p)))))
      yield* settle
      assert.strictEqual(limiter.state().inFlight, 3)
      assert.strictEqual(permits.length, 3)
      yield* limiter.release(permits[0]!)
      yield* settle
      assert.strictEqual(permits.length, 4)
      assert.strictEqual(limiter.state().inFlight, 3)
      for (const p of permits.slice(1)) yield* limiter.release(p)
      yield* settle
      assert.strictEqual(permits.length, 5)
      yield* Effect.forEach(fibers, Fiber.join)
    }))

  it.effect("--rpm: no 60-second window holds more than rpm sends, and the pace keeps to it", () =>
    Effect.gen(function* () {
      const limiter = yield* OnlineLimiter.make({ concurrency: 8, rpm: 30 })
      const sent = yield* drive(limiter, 70, () => 1)
      assert.strictEqual(maxPerMinute(sent, () => 1), 30)
      // Spaced 2 s apart: 70 sends take 138 s (not more: the cap is used, not just respected).
      const span = sent[sent.length - 1]!.at - sent[0]!.at
      assert.strictEqual(span, 138_000)
    }))

  it.effect("--rpm that does not divide a minute: sends spaced by whole milliseconds, rounded up", () =>
    Effect.gen(function* () {
      // 60 s / 7 is 8571.43 ms: a fractional wait finer than the clock's precision would spin.
      const limiter = yield* OnlineLimiter.make({ concurrency: 8, rpm: 7 })
      const sent = yield* drive(limiter, 15, () => 1, 4, 1000)
      assert.strictEqual(maxPerMinute(sent, () => 1), 7)
      for (let i = 1; i < sent.length; i++) assert.strictEqual(sent[i]!.at - sent[i - 1]!.at, 8572, `send ${i}`)
    }))

  it.effect("--tpm: no 60-second window holds more than tpm estimated tokens; a request larger than tpm goes alone", () =>
    Effect.gen(function* () {
      const tpm = 5000
      const limiter = yield* OnlineLimiter.make({ concurrency: 8, tpm })
      const tokens = (i: number) => (i === 25 ? 7000 : 100 + ((i * 373) % 900))
      const sent = yield* drive(limiter, 50, tokens)
      const total = sent.reduce((a, p) => a + p.tokens, 0)
      assert.strictEqual(total, Array.from({ length: 50 }, (_, i) => tokens(i)).reduce((a, b) => a + b, 0))
      const big = sent.find((p) => p.tokens === 7000)!
      for (const p of sent) {
        if (p === big) continue
        // Nothing else in the big request's minute, before or after it.
        assert.isFalse(Math.abs(p.at - big.at) < 60_000 && p.at !== big.at, `a request at ${p.at} shares the big one's minute (${big.at})`)
      }
      assert.isAtMost(maxPerMinute(sent.filter((p) => p !== big), (p) => p.tokens), tpm)
    }))

  it.effect("an answer's real usage, when larger than the estimate, counts instead", () =>
    Effect.gen(function* () {
      const limiter = yield* OnlineLimiter.make({ concurrency: 4, tpm: 1000 })
      const first = yield* limiter.acquire(100)
      yield* limiter.answered(first, {}, 900)
      yield* limiter.release(first)
      const second = yield* Effect.fork(limiter.acquire(200))
      yield* settle
      assert.isTrue(Option.isNone(yield* Fiber.poll(second)), "900 + 200 tokens would exceed 1000 in the minute")
      yield* TestClock.adjust(Duration.seconds(60))
      const permit = yield* Fiber.join(second)
      assert.strictEqual(permit.at, 60_000)
    }))

  it.effect("AIMD: a throttle halves the window once per round; good answers grow it by one per window, never above the cap", () =>
    Effect.gen(function* () {
      const limiter = yield* OnlineLimiter.make({ concurrency: 8 })
      const round1 = yield* Effect.forEach(Array.from({ length: 8 }), () => limiter.acquire(1))
      assert.strictEqual(limiter.state().window, 8)
      yield* limiter.failed(round1[0]!, { throttled: true, waitMs: 0, attempt: 1 })
      assert.strictEqual(limiter.state().window, 4)
      // More throttles of requests sent before the cut say nothing new.
      yield* limiter.failed(round1[1]!, { throttled: true, waitMs: 0, attempt: 1 })
      yield* limiter.failed(round1[2]!, { throttled: false, waitMs: undefined, attempt: 1 })
      assert.strictEqual(limiter.state().window, 4)
      for (const p of round1) yield* limiter.release(p)
      // A request of the new round is throttled too: another cut.
      const round2 = yield* limiter.acquire(1)
      yield* limiter.failed(round2, { throttled: true, waitMs: 0, attempt: 1 })
      yield* limiter.release(round2)
      assert.strictEqual(limiter.state().window, 2)
      // Only `window` requests go at once now.
      const held = yield* Effect.forEach(Array.from({ length: 2 }), () => limiter.acquire(1))
      const third = yield* Effect.fork(limiter.acquire(1))
      yield* settle
      assert.isTrue(Option.isNone(yield* Fiber.poll(third)))
      // Two good answers: the window grows to 3, and the third request goes.
      for (const p of held) yield* limiter.answered(p, {})
      assert.strictEqual(limiter.state().window, 3)
      yield* settle
      const thirdPermit = yield* Fiber.join(third)
      for (const p of held) yield* limiter.release(p)
      yield* limiter.release(thirdPermit)
      // Many good answers later: back at the cap, and no further.
      for (let i = 0; i < 200; i++) {
        const p = yield* limiter.acquire(1)
        yield* limiter.answered(p, {})
        yield* limiter.release(p)
      }
      assert.strictEqual(limiter.state().window, 8)
    }))

  it.effect("retry-after pauses every request until then; the failed request waits at least as long", () =>
    Effect.gen(function* () {
      const limiter = yield* OnlineLimiter.make({ concurrency: 4 })
      const p = yield* limiter.acquire(1)
      const wait = yield* limiter.failed(p, { throttled: true, waitMs: 5000, attempt: 1 })
      yield* limiter.release(p)
      assert.isAtLeast(Duration.toMillis(wait), 5000)
      const next = yield* Effect.fork(limiter.acquire(1))
      yield* TestClock.adjust(Duration.millis(4999))
      yield* settle
      assert.isTrue(Option.isNone(yield* Fiber.poll(next)))
      yield* TestClock.adjust(Duration.millis(1))
      const permit = yield* Fiber.join(next)
      assert.strictEqual(permit.at, 5000)
    }))

  it.effect("a 429 without a hint pauses with a backoff that grows while 429s follow each other; a 5xx only backs off its own request", () =>
    Effect.gen(function* () {
      const limiter = yield* OnlineLimiter.make({ concurrency: 4 })
      const a = yield* limiter.acquire(1)
      const waitA = Duration.toMillis(yield* limiter.failed(a, { throttled: true, waitMs: undefined, attempt: 1 }))
      yield* limiter.release(a)
      const pausedFirst = limiter.state().pausedUntil
      assert.isTrue(pausedFirst >= 400 && pausedFirst <= 600, `paused until ${pausedFirst}`)
      assert.isTrue(waitA >= 400 && waitA <= 600)
      yield* TestClock.adjust(Duration.millis(pausedFirst))
      const b = yield* limiter.acquire(1)
      yield* limiter.failed(b, { throttled: true, waitMs: undefined, attempt: 2 })
      yield* limiter.release(b)
      const pausedSecond = limiter.state().pausedUntil - pausedFirst
      assert.isTrue(pausedSecond >= 800 && pausedSecond <= 1200, `second pause ${pausedSecond}`)
      yield* TestClock.adjust(Duration.seconds(5))
      const c = yield* limiter.acquire(1)
      const before = limiter.state().pausedUntil
      const waitC = Duration.toMillis(yield* limiter.failed(c, { throttled: false, waitMs: undefined, attempt: 3 }))
      yield* limiter.release(c)
      assert.strictEqual(limiter.state().pausedUntil, before)
      assert.isTrue(waitC >= 1600 && waitC <= 2400, `backoff ${waitC}`)
    }))

  it.effect("429s of requests sent together grow the backoff once: the streak counts rounds, not answers", () =>
    Effect.gen(function* () {
      const limiter = yield* OnlineLimiter.make({ concurrency: 8 })
      const pauseOf = (from: number) => limiter.state().pausedUntil - from
      // Seven requests sent at once, all refused without a hint: one round, one 0.5 s backoff
      // (it used to double on each: 7 × 429 paused 14.4 s, 8 hit the 30 s cap).
      const together = yield* Effect.forEach(Array.from({ length: 7 }), () => limiter.acquire(1))
      for (const [i, p] of together.entries()) {
        yield* limiter.failed(p, { throttled: true, waitMs: undefined, attempt: 1 })
        assert.isTrue(pauseOf(0) >= 400 && pauseOf(0) <= 600, `after ${i + 1} 429s: paused ${pauseOf(0)} ms`)
      }
      for (const p of together) yield* limiter.release(p)
      // The next round (sent after that backoff began) is refused too: the backoff doubles,
      // once for the round's three 429s.
      yield* TestClock.adjust(Duration.millis(pauseOf(0)))
      const at = limiter.state().pausedUntil
      const next = yield* Effect.forEach(Array.from({ length: 3 }), () => limiter.acquire(1))
      for (const p of next) yield* limiter.failed(p, { throttled: true, waitMs: undefined, attempt: 2 })
      assert.isTrue(pauseOf(at) >= 800 && pauseOf(at) <= 1200, `second round: paused ${pauseOf(at)} ms`)
      for (const p of next) yield* limiter.release(p)
    }))

  it.effect("the provider's remaining requests are counted down by what was sent since; sending waits for the reset", () =>
    Effect.gen(function* () {
      const limiter = yield* OnlineLimiter.make({ concurrency: 10 })
      const first = yield* acquireNow(limiter, 1, "nothing known yet")
      const second = yield* acquireNow(limiter, 1, "nothing known yet")
      const third = yield* acquireNow(limiter, 1, "nothing known yet")
      // The answer to the second request says 3 are left once it (and the first, sent before
      // it) were counted: the third was sent after it, so 2 remain.
      yield* limiter.answered(second, { requests: { remaining: 3, resetMs: 10_000 } })
      yield* limiter.release(second)
      const fourth = yield* acquireNow(limiter, 1, "2 remain")
      const fifth = yield* acquireNow(limiter, 1, "1 remains")
      const sixth = yield* Effect.fork(limiter.acquire(1))
      yield* settle
      assert.isTrue(Option.isNone(yield* Fiber.poll(sixth)), "none remain")
      // An older answer (the first request's, arriving late) does not replace the newer figure.
      yield* limiter.answered(first, { requests: { remaining: 100, resetMs: 10 } })
      yield* TestClock.adjust(Duration.millis(10))
      yield* settle
      assert.isTrue(Option.isNone(yield* Fiber.poll(sixth)), "the older figure was taken")
      yield* TestClock.adjust(Duration.millis(10_000 - 10))
      const permit = yield* gone(sixth, "the reset passed")
      assert.strictEqual(permit.at, 10_000)
      for (const p of [first, third, fourth, fifth, permit]) yield* limiter.release(p)
    }))

  it.effect("a window of known size refills at its limit a minute: once empty, a request every 60 s / limit, not the whole reset", () =>
    Effect.gen(function* () {
      const limiter = yield* OnlineLimiter.make({ concurrency: 100 })
      const first = yield* acquireNow(limiter, 1, "nothing known yet")
      // 1 left of 30 a minute; full again in 58 s (what OpenAI's reset says: time until full).
      yield* limiter.answered(first, { requests: { limit: 30, remaining: 1, resetMs: 58_000 } })
      yield* limiter.release(first)
      yield* acquireNow(limiter, 1, "1 remains")
      for (const at of [2000, 4000, 6000]) {
        const next = yield* Effect.fork(limiter.acquire(1))
        yield* TestClock.adjust(Duration.millis(1999))
        yield* settle
        assert.isTrue(Option.isNone(yield* Fiber.poll(next)), `before ${at}: the bucket has not refilled a request`)
        yield* TestClock.adjust(Duration.millis(1))
        assert.strictEqual((yield* gone(next, "a request has refilled")).at, at)
      }
    }))

  /**
   * A provider's token bucket on the test's clock (the emulator's rule: `limit` a minute, a
   * full burst then refilled continuously, a refused request takes nothing), answering with
   * its figures as OpenAI does, 10 ms after it admits or refuses a request; `n` rows by `workers` fibers that retry 429s as the runner does.
   * Returns every send (refused ones included) and when the last row was answered.
   */
  const driveBucket = (limiter: OnlineLimiter.Limiter, options: { limit: number; level: number; n: number; workers: number }) =>
    Effect.gen(function* () {
      const { limit } = options
      let level = options.level
      let at = 0
      const sends: Array<{ at: number; tokens: number; ok: boolean }> = []
      let done = 0
      let lastAt = 0
      const worker = (rows: number) =>
        Effect.gen(function* () {
          for (let r = 0; r < rows; r++) {
            for (let attempt = 1; ; attempt++) {
              const permit = yield* limiter.acquire(1)
              const now = permit.at
              level = Math.min(limit, level + ((now - at) * limit) / 60_000)
              at = now
              const ok = level >= 1
              if (ok) level -= 1
              sends.push({ at: now, tokens: 1, ok })
              const figures = { limit, remaining: Math.floor(level), resetMs: Math.ceil(((limit - level) * 60_000) / limit) }
              // The answer takes a moment: requests sent together are all on their way before any answer.
              yield* Effect.sleep(Duration.millis(10))
              if (ok) {
                yield* limiter.answered(permit, { requests: figures })
                yield* limiter.release(permit)
                done++
                lastAt = now
                break
              }
              const retryAfterMs = Math.ceil(((1 - level) * 60_000) / limit)
              const wait = yield* limiter.failed(permit, { throttled: true, waitMs: retryAfterMs, attempt, limits: { requests: figures, retryAfterMs } })
              yield* limiter.release(permit)
              yield* Effect.sleep(wait)
            }
          }
        })
      const per = Math.ceil(options.n / options.workers)
      const fiber = yield* Effect.fork(Effect.all(Array.from({ length: options.workers }, (_, i) => worker(Math.min(per, options.n - i * per))), { concurrency: "unbounded" }))
      while (done < options.n) {
        yield* settle
        yield* TestClock.adjust(Duration.millis(250))
      }
      yield* Fiber.join(fiber)
      return { sends, lastAt }
    })

  it.effect("against a drained provider bucket: no minute holds more sends than its limit (429s included), and the rows go at its refill pace", () =>
    Effect.gen(function* () {
      // 30 a minute, nothing left when the run starts: 8 requests go blind and are refused.
      const limiter = yield* OnlineLimiter.make({ concurrency: 8 })
      const { sends, lastAt } = yield* driveBucket(limiter, { limit: 30, level: 0, n: 40, workers: 8 })
      assert.isAtMost(maxPerMinute(sends, () => 1), 30)
      // The blind round's 8 refusals, and after that at most one refusal in all.
      assert.isAtMost(sends.filter((s) => !s.ok).length, 9)
      // 40 rows at one per 2 s: 80 s, give or take the minute's cap on the blind round
      // (waiting for each whole window instead would take minutes).
      assert.isAtMost(lastAt, 90_000)
    }))

  it.effect("against a full provider bucket: the burst it grants, then no more than its limit in any minute", () =>
    Effect.gen(function* () {
      const limiter = yield* OnlineLimiter.make({ concurrency: 8 })
      const { sends } = yield* driveBucket(limiter, { limit: 20, level: 20, n: 45, workers: 8 })
      assert.isAtMost(maxPerMinute(sends, () => 1), 20)
      // The first 20 went at once (the burst: in flight 8 at a time), none was refused.
      assert.isAtMost(sends[19]!.at, 1000)
      assert.isTrue(sends.every((s) => s.ok))
    }))

  it.effect("at the reset a window of unknown size is forgotten: sending goes on unpaced", () =>
    Effect.gen(function* () {
      const other = yield* OnlineLimiter.make({ concurrency: 100 })
      const a = yield* acquireNow(other, 1, "nothing known yet")
      yield* other.answered(a, { requests: { remaining: 0, resetMs: 1000 } })
      const waiting = yield* Effect.fork(other.acquire(1))
      yield* settle
      assert.isTrue(Option.isNone(yield* Fiber.poll(waiting)), "none remain before the reset")
      yield* TestClock.adjust(Duration.millis(1000))
      assert.strictEqual((yield* gone(waiting, "the figure is forgotten")).at, 1000)
      for (let i = 0; i < 20; i++) yield* acquireNow(other, 1, "the figure is forgotten")
      // A stated limit of 0 would never refill: it counts as unsaid (the reset, then forgotten).
      const zero = yield* OnlineLimiter.make({ concurrency: 100 })
      const b = yield* acquireNow(zero, 1, "nothing known yet")
      yield* zero.answered(b, { requests: { limit: 0, remaining: 0, resetMs: 1000 } })
      const held = yield* Effect.fork(zero.acquire(1))
      yield* TestClock.adjust(Duration.millis(1000))
      assert.strictEqual((yield* gone(held, "the reset passed")).at, b.at + 1000)
    }))

  it.effect("the provider's remaining tokens: a request larger than what is left waits for the reset", () =>
    Effect.gen(function* () {
      const limiter = yield* OnlineLimiter.make({ concurrency: 10 })
      const first = yield* limiter.acquire(100)
      yield* limiter.answered(first, { tokens: { remaining: 500, resetMs: 3000 } })
      yield* limiter.release(first)
      const fits = yield* acquireNow(limiter, 400, "400 of 500 fit")
      const over = yield* Effect.fork(limiter.acquire(200))
      yield* settle
      assert.isTrue(Option.isNone(yield* Fiber.poll(over)))
      yield* TestClock.adjust(Duration.millis(3000))
      assert.strictEqual((yield* Fiber.join(over)).at, 3000)
      yield* limiter.release(fits)
    }))

  it.effect("a waiting request is woken by a release, not by time", () =>
    Effect.gen(function* () {
      const limiter = yield* OnlineLimiter.make({ concurrency: 1 })
      const p = yield* limiter.acquire(1)
      const gate = yield* Deferred.make<Permit>()
      yield* Effect.fork(Effect.flatMap(limiter.acquire(1), (q) => Deferred.succeed(gate, q)))
      yield* settle
      assert.isFalse(yield* Deferred.isDone(gate))
      yield* limiter.release(p)
      const q = yield* Deferred.await(gate)
      assert.strictEqual(q.at, 0)
    }))
})
