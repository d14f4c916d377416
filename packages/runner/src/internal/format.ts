/**
 * How the CLI writes numbers for people: counts with their noun in the right number, and
 * money rounded to what matters (a small run costs fractions of a cent).
 */

/** Digits with a comma every three from the right ("1234567" → "1,234,567"). */
const grouped = (digits: string): string => digits.replace(/\B(?=(\d{3})+$)/g, ",")

/**
 * "1,234,567": thousands grouped, whatever the machine's locale. Integers are grouped by hand,
 * as toLocaleString("en-US") groups them: its first call loads ICU's locale data, ~25 ms of a
 * `sluice status` that should start in a fraction of a second.
 */
export const number = (n: number): string =>
  Number.isSafeInteger(n) ? (n < 0 || Object.is(n, -0) ? `-${grouped(String(-n))}` : grouped(String(n))) : n.toLocaleString("en-US")

/** "1 row", "2 rows", "1,000 rows"; `plural` for nouns that do not just take an "s" ("batches"). */
export const count = (n: number, singular: string, plural = `${singular}s`): string =>
  `${number(n)} ${n === 1 ? singular : plural}`

/** Below this, an amount shows as "<$0.000001" rather than as a string of zeros. */
const smallest = 0.000001

/**
 * US dollars: two decimals from $1 up ("$12.35", "$1,204.00"); below $1 two significant
 * digits, at least two decimals and at most six ("$0.50", "$0.012", "$0.0042"); "$0.00" for
 * nothing, "<$0.000001" for less than a millionth.
 */
export const money = (usd: number): string => {
  if (!Number.isFinite(usd)) return `$${usd}`
  if (usd < 0) return `-${money(-usd)}`
  if (usd === 0) return "$0.00"
  if (usd >= 1) return `$${usd.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 })}`
  if (usd < smallest) return "<$0.000001"
  const decimals = Math.min(6, Math.max(2, 1 - Math.floor(Math.log10(usd))))
  // Trailing zeros past the cents say nothing: $0.0100 is $0.01.
  const text = usd.toFixed(decimals).replace(/(\.\d\d\d*?)0+$/, "$1")
  return `$${text}`
}
