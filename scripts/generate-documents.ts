/**
 * Deterministic generator for `examples/data/documents.parquet`, the source of the two-stage
 * example (examples/facts/): 200 short product reviews, each touching a few of the topics
 * the example extracts facts about (price, quality, shipping, support, durability).
 *
 *   npx tsx scripts/generate-documents.ts
 *
 * Every run writes a byte-identical file: a seeded PRNG (mulberry32) drives every choice;
 * nothing reads the clock, Math.random or the environment. Written with hyparquet-writer
 * (a dependency of @sluice/core) in row groups of 50, so `Source.parquet` streams it one
 * group at a time.
 *
 * Columns: id (`doc-001`…), title, product, category, rating (INT32, 1–5), published
 * (`YYYY-MM-DD`), body.
 */
import { mkdirSync, writeFileSync } from "node:fs"
import { dirname, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { seededRandom as mulberry32 } from "../packages/emulator/src/internal/hash.js"
import { parquetWriteBuffer } from "hyparquet-writer"

const SEED = 0xfac75
const COUNT = 200
const ROW_GROUP = 50
const OUT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "examples", "data", "documents.parquet")

const rand = mulberry32(SEED)
const int = (lo: number, hi: number): number => lo + Math.floor(rand() * (hi - lo + 1))
const pick = <T>(xs: ReadonlyArray<T>): T => xs[Math.floor(rand() * xs.length)]!
const shuffle = <T>(xs: Array<T>): Array<T> => {
  for (let i = xs.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1))
    ;[xs[i], xs[j]] = [xs[j]!, xs[i]!]
  }
  return xs
}
/** Fills `{a|b|c}` alternatives, `{n:lo-hi}` numbers and `{p}` (the product's name). */
const fill = (template: string, product: string): string =>
  template.replace(/\{([^}]*)\}/g, (_, body: string) => {
    if (body === "p") return product
    const range = /^n:(\d+)-(\d+)$/.exec(body)
    if (range !== null) return String(int(Number(range[1]), Number(range[2])))
    return pick(body.split("|"))
  })

const PRODUCTS: ReadonlyArray<readonly [category: string, names: ReadonlyArray<string>]> = [
  ["kitchen", ["Brewline drip coffee maker", "Kettlo electric kettle", "ChefEdge 8-inch knife", "Crispa air fryer", "Blendr personal blender"]],
  ["audio", ["Quietum noise-cancelling headphones", "Pebble wireless earbuds", "Boomcube Bluetooth speaker", "Studio One USB microphone"]],
  ["home", ["Lumo desk lamp", "Aerio air purifier", "Snugg weighted blanket", "Tidy robot vacuum", "Hush white-noise machine"]],
  ["outdoor", ["Trailpack 30L backpack", "Summit insulated bottle", "Ember camping stove", "Drift hammock"]],
  ["office", ["Glide ergonomic mouse", "Clack mechanical keyboard", "Perch monitor arm", "Fold laptop stand"]]
]

type Topic = "price" | "quality" | "shipping" | "support" | "durability"
const TOPICS: ReadonlyArray<Topic> = ["price", "quality", "shipping", "support", "durability"]

const GOOD: Record<Topic, ReadonlyArray<string>> = {
  price: [
    "At ${n:19-89} it costs less than the brand I used before.",
    "I paid ${n:25-120} on sale, which felt like a bargain.",
    "For the money it is {hard to beat|a steal|excellent value}.",
    "It was cheaper than every comparable option I looked at."
  ],
  quality: [
    "The build feels {solid|premium|sturdy}, with no rattles or loose parts.",
    "The finish is {clean|flawless|neat} and the buttons have a firm click.",
    "It does exactly what it promises, {quietly|reliably|every single time}.",
    "Materials are better than I expected at this price."
  ],
  shipping: [
    "It arrived in {two|three} days, well packed.",
    "Delivery was a day earlier than promised.",
    "The box came intact with tracking updates all the way.",
    "Shipping was free and fast."
  ],
  support: [
    "Support answered my setup question within {an hour|a day|minutes}.",
    "When a part was missing, customer service sent it without any fuss.",
    "The help line was friendly and actually knew the product.",
    "They replaced a scratched unit with no questions asked."
  ],
  durability: [
    "After {n:3-14} months of daily use it still works like new.",
    "It survived a fall from the counter without a dent.",
    "{n:2-5} years in and nothing has worn out.",
    "It has held up through {a winter of camping|heavy daily use|two house moves}."
  ]
}

const BAD: Record<Topic, ReadonlyArray<string>> = {
  price: [
    "At ${n:60-180} it is overpriced for what you get.",
    "The price went up ${n:10-40} a week after I bought it.",
    "Cheaper models do the same job.",
    "Replacement parts cost almost as much as a new unit."
  ],
  quality: [
    "The plastic feels {flimsy|cheap|thin} and creaks when you press it.",
    "One of the seams was {misaligned|glued badly|already splitting} out of the box.",
    "It stopped working properly after the first {week|few uses|update}.",
    "The {lid|switch|cable} is poorly made."
  ],
  shipping: [
    "Delivery took {n:9-21} days instead of the promised three.",
    "The box arrived crushed and the item was scratched.",
    "Tracking showed delivered, but it turned up {n:2-5} days later.",
    "It was shipped to the wrong address first."
  ],
  support: [
    "Support took {n:5-12} days to reply to a simple question.",
    "Customer service kept sending me the same canned answer.",
    "Nobody picks up the phone, and the chat bot goes in circles.",
    "They refused a return because the box had been opened."
  ],
  durability: [
    "It broke after {n:3-9} weeks.",
    "The {lid|seal|switch} failed just after the warranty ended.",
    "The coating started peeling within a month.",
    "It was falling apart after {n:2-6} months."
  ]
}

const TITLES_GOOD = ["Does the job well", "Better than expected", "Great value", "Would buy again", "Solid pick", "Very happy with it"]
const TITLES_MIXED = ["Good, with caveats", "Mixed feelings", "Fine for the price", "Almost there", "Decent but flawed"]
const TITLES_BAD = ["Disappointed", "Not worth it", "Returned it", "Avoid", "Expected much more"]

const OPENERS = [
  "I bought the {p} {to replace an old one|as a gift|after reading a few reviews|on a whim}.",
  "Been using the {p} for a while now.",
  "Here is my honest take on the {p}.",
  "My {partner|sister|roommate|dad} recommended the {p}.",
  ""
]

interface Document {
  readonly id: string
  readonly title: string
  readonly product: string
  readonly category: string
  readonly rating: number
  readonly published: string
  readonly body: string
}

const generate = (): Array<Document> => {
  const docs: Array<Document> = []
  const start = Date.UTC(2024, 0, 1)
  for (let i = 1; i <= COUNT; i++) {
    const [category, names] = pick(PRODUCTS)
    const product = pick(names)
    const rating = pick([5, 5, 5, 4, 4, 4, 3, 3, 2, 1, 1])
    const topics = shuffle([...TOPICS]).slice(0, int(2, 4))
    // The rating sets how many of the topics are praised.
    const praised = rating >= 4 ? topics.length - (rating === 4 ? 1 : 0) : rating === 3 ? Math.ceil(topics.length / 2) : rating === 2 ? 1 : 0
    const sentences = topics.map((t, k) => fill(pick(k < praised ? GOOD[t] : BAD[t]), product))
    const opener = fill(pick(OPENERS), product)
    const body = [opener, ...shuffle(sentences)].filter((s) => s !== "").join(" ")
    const title = `${product.split(" ")[0]}: ${pick(rating >= 4 ? TITLES_GOOD : rating === 3 ? TITLES_MIXED : TITLES_BAD)}`
    const published = new Date(start + int(0, 364) * 86_400_000).toISOString().slice(0, 10)
    docs.push({ id: `doc-${String(i).padStart(3, "0")}`, title, product, category, rating, published, body })
  }
  return docs
}

const docs = generate()
const column = <K extends keyof Document>(name: K) => docs.map((d) => d[name])
const bytes = parquetWriteBuffer({
  columnData: [
    { name: "id", data: column("id"), type: "STRING", nullable: false },
    { name: "title", data: column("title"), type: "STRING", nullable: false },
    { name: "product", data: column("product"), type: "STRING", nullable: false },
    { name: "category", data: column("category"), type: "STRING", nullable: false },
    { name: "rating", data: column("rating"), type: "INT32", nullable: false },
    { name: "published", data: column("published"), type: "STRING", nullable: false },
    { name: "body", data: column("body"), type: "STRING", nullable: false }
  ],
  rowGroupSize: ROW_GROUP,
  createdBy: "sluice scripts/generate-documents.ts"
})
mkdirSync(dirname(OUT), { recursive: true })
writeFileSync(OUT, new Uint8Array(bytes))
console.error(
  `wrote ${docs.length} documents (${new Set(docs.map((d) => d.product)).size} products, row groups of ${ROW_GROUP}, ` +
    `${bytes.byteLength} bytes) to ${OUT}`
)
