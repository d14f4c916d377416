/**
 * The response cache's in-memory index: for each stored answer, only the first 32 bits of its
 * key (a fingerprint) and where its index line is on disk (a 40-bit position in the cache's
 * index files taken end to end) — 9 bytes in an open-addressing table kept at most 75% full,
 * about 12–13 bytes per entry. The full key and the answer's place are read back from the
 * index line when a fingerprint matches, so a lookup is exact: the table never answers a key
 * it does not hold, and for a key it does not hold it reads from disk only when some stored key
 * starts with the same 32 bits (about one lookup in 4,000 at 1,000,000 entries).
 *
 * The keys are SHA-256 digests, so their first 32 bits are uniformly distributed: the home slot
 * is that word scaled to the table's size, which lets the table grow to any size from the
 * fingerprints alone.
 */

/** The highest position a slot can hold (exclusive): 1 TiB of index lines. */
export const MAX_POSITION = 2 ** 40

const MAX_LOAD = 0.75

export class CacheIndex {
  /** Entries held. */
  count = 0
  private size = 0
  private fingerprint = new Uint32Array(0)
  /** Position + 1 (0: empty slot), low 32 bits and high 8 bits. */
  private positionLow = new Uint32Array(0)
  private positionHigh = new Uint8Array(0)

  constructor(expected = 1024) {
    this.resize(Math.max(16, Math.ceil(expected / 0.7)))
  }

  /** Makes room for `n` entries in all without growing again. */
  reserve(n: number): void {
    if (n > this.size * MAX_LOAD) this.resize(Math.ceil(n / 0.7))
  }

  /** Bytes the table holds. */
  bytes(): number {
    return this.size * 9
  }

  /**
   * The position of the first entry with this fingerprint for which `matches(position)` is
   * true (the caller compares the full key there), or -1.
   */
  find(fingerprint: number, matches: (position: number) => boolean): number {
    const size = this.size
    let s = this.home(fingerprint)
    for (;;) {
      const low = this.positionLow[s]!
      const high = this.positionHigh[s]!
      if (low === 0 && high === 0) return -1
      if (this.fingerprint[s] === fingerprint) {
        const position = high * 4294967296 + low - 1
        if (matches(position)) return position
      }
      s = s + 1 === size ? 0 : s + 1
    }
  }

  /** Adds an entry (the caller has checked that its key is not held). */
  add(fingerprint: number, position: number): void {
    if (position < 0 || position + 1 >= MAX_POSITION) return // past what a slot holds: not indexed, a miss
    if (this.count + 1 > this.size * MAX_LOAD) this.resize(Math.ceil(this.size * 1.5))
    this.place(fingerprint, position + 1)
    this.count++
  }

  private home(fingerprint: number): number {
    return Math.floor((fingerprint / 4294967296) * this.size)
  }

  private place(fingerprint: number, stored: number): void {
    const size = this.size
    let s = this.home(fingerprint)
    while (this.positionLow[s] !== 0 || this.positionHigh[s] !== 0) s = s + 1 === size ? 0 : s + 1
    this.fingerprint[s] = fingerprint
    this.positionLow[s] = stored % 4294967296
    this.positionHigh[s] = Math.floor(stored / 4294967296)
  }

  private resize(size: number): void {
    const fingerprint = this.fingerprint
    const low = this.positionLow
    const high = this.positionHigh
    const old = this.size
    this.size = size
    this.fingerprint = new Uint32Array(size)
    this.positionLow = new Uint32Array(size)
    this.positionHigh = new Uint8Array(size)
    for (let s = 0; s < old; s++) {
      if (low[s] !== 0 || high[s] !== 0) this.place(fingerprint[s]!, high[s]! * 4294967296 + low[s]!)
    }
  }
}
