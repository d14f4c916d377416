/**
 * Settings shared by the property tests (fast-check).
 *
 * Deterministic by default: every run of the suite tries the same cases, so CI never fails on
 * a case it did not try before. To explore, set `SLUICE_PROPERTY_SEED` (a number, or `random`
 * for a fresh seed each run) and `SLUICE_PROPERTY_RUNS` (a multiplier of every property's
 * number of runs). A failure reports the seed, the path and the smallest counterexample;
 * `SLUICE_PROPERTY_SEED=<seed> SLUICE_PROPERTY_PATH=<path>` replays exactly that case.
 */
import fc from "fast-check"

const seedSetting = process.env["SLUICE_PROPERTY_SEED"]
const pathSetting = process.env["SLUICE_PROPERTY_PATH"]
const scale = Number(process.env["SLUICE_PROPERTY_RUNS"] ?? "1")

/** The seed of this run: fixed unless told otherwise. */
export const seed: number = seedSetting === undefined
  ? 20_240_612
  : seedSetting === "random"
  ? Math.floor(Math.random() * 0x7fffffff)
  : Number(seedSetting)

/** fast-check parameters for a property tried `runs` times (times `SLUICE_PROPERTY_RUNS`). */
export const params = (runs: number): fc.Parameters<unknown> => ({
  seed,
  numRuns: Math.max(1, Math.round(runs * (Number.isFinite(scale) && scale > 0 ? scale : 1))),
  ...(pathSetting !== undefined ? { path: pathSetting } : {})
})

/** Checks a synchronous property; a failure throws with the seed, path and counterexample. */
export const check = <Ts extends [unknown, ...Array<unknown>]>(property: fc.IProperty<Ts>, runs: number): void =>
  fc.assert(property, params(runs) as fc.Parameters<Ts>)

/** Checks an asynchronous property (`extra`: e.g. `endOnFailure` where shrinking would cost minutes). */
export const checkAsync = <Ts extends [unknown, ...Array<unknown>]>(
  property: fc.IAsyncProperty<Ts>,
  runs: number,
  extra: fc.Parameters<Ts> = {}
): Promise<void> => fc.assert(property, { ...(params(runs) as fc.Parameters<Ts>), ...extra })

/**
 * Keys an object literal used as a lookup table answers without owning them: a table indexed
 * by wire text must not hand back `Object.prototype` members for them.
 */
export const prototypeKeys = [
  "constructor",
  "__proto__",
  "toString",
  "valueOf",
  "hasOwnProperty",
  "isPrototypeOf",
  "propertyIsEnumerable",
  "toLocaleString",
  "__defineGetter__",
  "__lookupSetter__"
] as const

/** Any string, with lone surrogates and prototype keys mixed in. */
export const anyString: fc.Arbitrary<string> = fc.oneof(
  { weight: 4, arbitrary: fc.string({ unit: "binary" }) },
  { weight: 2, arbitrary: fc.string({ unit: fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c)) }) },
  { weight: 1, arbitrary: fc.constantFrom(...prototypeKeys) }
)

/** Bytes as a decoder of a stream sees them: any, and mostly valid UTF-8 text. */
export const anyBytes: fc.Arbitrary<Uint8Array> = fc.oneof(
  fc.uint8Array({ maxLength: 300 }),
  fc.string({ unit: "binary", maxLength: 200 }).map((s) => new TextEncoder().encode(s))
)
