/**
 * Deterministic generator for the demo dataset `examples/data/reviews.jsonl`:
 * 1,000 synthetic product reviews, one JSON object per line:
 *
 *   {"id":"rev-0001","text":"...","product":"...","rating":4}
 *
 * Run:  npx tsx scripts/generate-reviews.ts
 *
 * Every run writes byte-identical output: a seeded PRNG (mulberry32) drives every
 * choice; nothing reads the clock, Math.random or the environment. No dependencies.
 *
 * How a review is put together
 *   1. Pick a category (weighted), a product in it (shuffle bag, so products are
 *      used evenly) and a rating (skewed towards 5 and 1, as real reviews are).
 *   2. The rating sets the tone: 5 = praise, 4 = praise + a minor nitpick,
 *      3 = mixed/neutral, 2 = complaints + maybe one fair word, 1 = complaints.
 *   3. Pick a length (one-liner, a few sentences, short paragraph) and fill it from
 *      phrase banks: openers, context ("bought it for my dad"), product-specific and
 *      category-level praise/complaints, nitpicks, neutral details, logistics
 *      (shipping, support, value) and closings. Banks are drawn from shuffle bags,
 *      so a sentence is not reused until its whole bank has been used.
 *   4. A light "casualization" pass adds typos, slang, lowercase, emoji, "!!!".
 *   5. A text that was already produced is thrown away and composed again.
 *
 * Template syntax inside the banks
 *   {a|b|c}      one alternative, chosen at random ("{very |}" may choose nothing)
 *   {n:3-8}      a random integer in [3, 8]
 *   {p}          the full product name
 *   {noun}       "earbuds";  {short} "the earbuds";  {this} "these earbuds"
 *   {it} {them} {its} {itis}       it/they, it/them, its/their, it's/they're
 *   {is} {was} {has} {does} {isnt} {wasnt} {doesnt} {s} {es}   verb agreement:
 *                "{it} work{s}" -> "it works" / "they work"
 *   {who} {kid} {dur} {pet} {petname}   a relative, a child, a duration, dog/cat, a pet's name
 *   A capitalized key capitalizes the result: {It}, {This}, {Short}, {Kid}.
 *   A line may start with [tag,tag]: kind tags (durable, device, nobook, consumable,
 *   book) restrict it to products of that kind; r1..r5 restrict it to those ratings.
 */
import { mkdirSync, writeFileSync } from "node:fs"
import { dirname, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { seededRandom as mulberry32 } from "../packages/emulator/src/internal/hash.js"

const SEED = 0x5a1ce
const COUNT = 1000
const OUT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "examples", "data", "reviews.jsonl")

// ---------------------------------------------------------------------------
// PRNG and helpers
// ---------------------------------------------------------------------------

const rand = mulberry32(SEED)
const chance = (p: number): boolean => rand() < p
const int = (lo: number, hi: number): number => lo + Math.floor(rand() * (hi - lo + 1))
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]

function shuffle<T>(xs: T[]): T[] {
  for (let i = xs.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1))
    const tmp = xs[i]
    xs[i] = xs[j]
    xs[j] = tmp
  }
  return xs
}

function weighted<T>(entries: ReadonlyArray<readonly [T, number]>): T {
  const total = entries.reduce((s, [, w]) => s + w, 0)
  let r = rand() * total
  for (const [v, w] of entries) {
    r -= w
    if (r < 0) return v
  }
  return entries[entries.length - 1][0]
}

const cap = (s: string): string => (s.length === 0 ? s : s[0].toUpperCase() + s.slice(1))

// Shuffle bags: each bank is drawn without replacement until exhausted, then refilled.
const bags = new Map<string, string[]>()
function draw(key: string, xs: readonly string[], avoid: Set<string>): string {
  for (let attempt = 0; attempt < 6; attempt++) {
    let bag = bags.get(key)
    if (bag === undefined || bag.length === 0) {
      bag = shuffle([...xs])
      bags.set(key, bag)
    }
    if (xs.length === 0) throw new Error(`phrase bank ${key} is empty`)
    const x = bag.pop() as string
    if (!avoid.has(x) || xs.length === 1) {
      avoid.add(x)
      return x
    }
  }
  const x = pick(xs)
  avoid.add(x)
  return x
}

// ---------------------------------------------------------------------------
// Data model
// ---------------------------------------------------------------------------

type Kind = "device" | "durable" | "consumable" | "book"

interface Product {
  readonly name: string
  readonly noun: string
  readonly plural?: boolean
  readonly kind: Kind
  readonly pet?: "dog" | "cat"
  readonly pos: readonly string[]
  readonly neg: readonly string[]
}

interface Category {
  readonly key: string
  readonly weight: number
  readonly products: readonly Product[]
  readonly context: readonly string[]
  readonly pos: readonly string[]
  readonly neg: readonly string[]
  readonly nits: readonly string[]
  readonly neutral: readonly string[]
}

const KIND_TAGS: Record<Kind, readonly string[]> = {
  device: ["durable", "device", "nobook"],
  durable: ["durable", "nobook"],
  consumable: ["consumable", "nobook"],
  book: ["book"]
}

// ---------------------------------------------------------------------------
// Shared vocabulary
// ---------------------------------------------------------------------------

const WHO = [
  "wife", "husband", "son", "daughter", "mom", "dad", "sister", "brother", "partner", "roommate",
  "best friend", "grandma", "girlfriend", "boyfriend", "neighbor", "coworker", "mother-in-law", "uncle"
]
const KIDS = ["my son", "my daughter", "my nephew", "my niece", "my grandson", "my granddaughter", "our youngest"]
const DURATIONS = [
  "two weeks", "a month", "six weeks", "three months", "six months", "almost a year", "a year",
  "a few days", "ten days", "two months", "four months", "a week and a half"
]
const PET_NAMES = [
  "Biscuit", "Luna", "Milo", "Pepper", "Ziggy", "Olive", "Bear", "Mochi", "Rosie", "Gus", "Nala",
  "Waffles", "Chloé", "Tank", "Pickles", "Señor Whiskers", "Juniper", "Dexter"
]

// ---------------------------------------------------------------------------
// Generic banks (all categories, filtered by tags)
// ---------------------------------------------------------------------------

const OPEN_POS = [
  "Honestly impressed.",
  "Wow, did not expect to {like|love} {this} this much.",
  "I was {skeptical|doubtful|on the fence} at first, but {it} won me over.",
  "[durable]This is my {second|third} one, which should tell you something.",
  "[consumable]Already on my {second|third|fourth} order.",
  "{Long-time lurker|Longtime customer}, first review, because {this} earned it.",
  "Bought {this} on a whim during a sale and I'm so glad I did.",
  "[r5]Five stars, and I don't hand those out easily.",
  "Okay, I get the hype now.",
  "Short version: buy {them}.",
  "Did a lot of research before picking {this}, and it paid off.",
  "Exactly what I was looking for.",
  "Pleasantly surprised{!|, honestly.| by this one.}",
  "I {don't usually|rarely|almost never} write reviews, but had to for this one.",
  "[nobook]After {dur} of regular use, here's my take.",
  "Not sponsored, just genuinely happy.",
  "[nobook]Replaced a much pricier brand with {this} and honestly can't tell the difference.",
  "My {who} recommended {this}, and I owe them one.",
  "So far, so good!",
  "[durable,r5]Update after {n:2-8} months: still going strong.",
  "Came back {specifically|just} to leave a review.",
  "[nobook]I've tried {n:3-5} different brands and this is the one I'm sticking with.",
  "Pretty much perfect for what I {need|wanted|use it for}.",
  "Color me impressed.",
  "{Alright|Okay|Well}, this is a good one.",
  "Third time ordering from this seller, and they haven't let me down yet.",
  "I'll keep this short: {itis} great."
]

const OPEN_MID = [
  "Mixed feelings on {this}.",
  "{Itis} fine. Not great, not terrible.",
  "Three stars feels about right.",
  "[nobook]{It} {does} the job, mostly.",
  "Pros and cons here.",
  "Middle of the road.",
  "Decent, with some caveats.",
  "I'm on the fence about {this}.",
  "Honestly, {itis} just okay.",
  "Some good, some bad.",
  "Not bad for the price, but not amazing either.",
  "Meh.",
  "Eh, {itis} alright.",
  "Kind of a mixed bag.",
  "I keep going back and forth on {this}.",
  "Wanted to love {them}, ended up just liking {them}."
]

const OPEN_NEG = [
  "Save your money.",
  "I really wanted to like {this}.",
  "Very disappointed.",
  "Where do I even start.",
  "[r1]DO NOT BUY.",
  "[r1]One star because zero isn't an option.",
  "Ugh.",
  "Bought {this} based on the reviews, and I'm honestly confused by all the five-star ratings.",
  "[r1]Returned.",
  "What a letdown.",
  "I'm usually pretty forgiving, but no.",
  "Not worth it, even on sale.",
  "[device]Update: {it} died after {dur}.",
  "Sadly, this was a miss for me.",
  "I had high hopes.",
  "Buyer beware.",
  "Well, that was a waste of ${n:15-60}.",
  "[durable]Second one I've had to return — the first was defective too.",
  "Let me save you some trouble.",
  "[nobook]Cheaply made, and it shows.",
  "Hard pass.",
  "I'm so annoyed I'm actually writing a review.",
  "Not what I expected at all."
]

const CONTEXT = [
  "[device]Got {this} to replace my old one, which lasted {n:5-12} years.",
  "Picked {this} up during a {Prime Day|Black Friday|Memorial Day|back-to-school} sale.",
  "[nobook]Needed something cheap to hold me over.",
  "[device]Bought {this} after my old one finally gave up.",
  "Ordered {this} as a gift for my {who}.",
  "[nobook]I've been using {this} {daily|every day|most days} for {dur}.",
  "[durable]We've had {them} for {dur} now.",
  "{A friend|A coworker|My neighbor} had one and I was jealous, so here we are.",
  "Bought {this} mostly because of the reviews here.",
  "My {who} talked me into {this}.",
  "Saw {this} on TikTok, of course.",
  "This was an impulse buy{, I'll admit|, not gonna lie| at 2am}.",
  "[nobook]Did a bunch of research and narrowed it down to this and {one other|two others|a much pricier option}.",
  "Bought {this} for my {who}'s birthday.",
  "Been eyeing {this} for months and finally caved.",
  "Bought {this} with a birthday gift card.",
  "Needed {this} in a hurry, and this was the best-reviewed option with fast shipping.",
  "[durable]My {who} has the same one, so I knew what I was getting.",
  "[consumable]Gave {this} a fair shot — used {them} for {dur}."
]

const NITS = [
  "[durable]Wish it came in more colors.",
  "[nobook]Instructions were a little vague.",
  "[nobook]The packaging was overkill — so much plastic.",
  "Price is a bit steep.",
  "[durable]There was a weird smell out of the box, but it faded after a day or two.",
  "[nobook]The color is a shade darker than in the photos.",
  "[durable]The logo is kind of big and tacky.",
  "[nobook]Took a few tries to figure out.",
  "[nobook]The box it came in was comically oversized.",
  "[durable]It's a little heavier than I expected."
]

const ONE_LINERS: Record<number, readonly string[]> = {
  5: [
    "Love {them}!",
    "Perfect, exactly as described.",
    "Best purchase I've made all year.",
    "Absolutely love {this}, no complaints.",
    "[nobook]Works great, would buy again.",
    "Amazing quality, fast shipping!",
    "Ten out of ten.",
    "Five stars, no notes.",
    "{Itis} perfect.",
    "Obsessed with {this}!!",
    "Couldn't be happier with {this}.",
    "Great product, great price.",
    "Exceeded my expectations.",
    "Exactly what I needed. Thank you!",
    "[durable]Super well made. Love it.",
    "[book]Couldn't put it down.",
    "[book]Loved every page of it."
  ],
  4: [
    "Really good, just a couple of small quirks.",
    "Very happy overall.",
    "Great for the price.",
    "Pretty good! Would recommend.",
    "[nobook]Solid, does what it should.",
    "Nice quality, minor issues but nothing major.",
    "Good buy. Not perfect, but close.",
    "Happy with {them}, just not blown away.",
    "[book]Really enjoyed it, a few slow spots."
  ],
  3: [
    "It's okay.",
    "[nobook]Does the job. Nothing special.",
    "Fine for the price.",
    "Average. Not bad, not great.",
    "[nobook]It works, I guess.",
    "Meh. Expected a bit more.",
    "Decent but overpriced.",
    "Exactly average.",
    "[book]It was fine. Forgettable, but fine."
  ],
  2: [
    "Not great. Wouldn't buy again.",
    "Disappointing quality for the price.",
    "Meh — looks nicer in the pictures.",
    "[nobook]Works, barely.",
    "Expected a lot more.",
    "Kind of a letdown.",
    "[book]Struggled to finish it."
  ],
  1: [
    "Junk.",
    "Total waste of money.",
    "[durable]Broke immediately. Returning.",
    "Do not buy!!",
    "Garbage. Don't bother.",
    "Terrible. Just terrible.",
    "Worst purchase I've made in a long time.",
    "Nope.",
    "[device]Dead on arrival. Returned.",
    "[book]Did not finish. Awful."
  ]
}

const CLOSE: Record<number, readonly string[]> = {
  5: [
    "Would buy again{| in a heartbeat| without thinking twice}.",
    "{So|Very|Really} happy with {this}.",
    "Best ${n:20-60} I've spent in a while.",
    "Two thumbs up.",
    "Totally worth it.",
    "Highly recommend!",
    "10/10{ would recommend|, would buy again|, no notes}.",
    "[nobook]Already ordered another one for my {who}.",
    "No regrets{| whatsoever| at all}.",
    "Worth every penny.",
    "Can't recommend {this} enough.",
    "{Five stars|5 stars|5/5}, easily.",
    "If you're on the fence, just get {them}.",
    "Buying a second as a gift.",
    "Love {them}!",
    "Will definitely buy from this brand again.",
    "Couldn't be happier.",
    "Thanks for making a product that actually works as advertised!",
    "Go get {them}, seriously.",
    "Zero complaints.",
    "[book]Already preordered the next one."
  ],
  4: [
    "Four stars only because of the small stuff.",
    "Minus one star for that, but otherwise great.",
    "Still recommend {them}.",
    "Overall {very|really|pretty} happy.",
    "Would {still|definitely} buy again{|, though}.",
    "Solid buy overall.",
    "{Good|Great|Very good}, not perfect.",
    "Pretty happy with {them} overall.",
    "Would recommend with that one caveat.",
    "Easy four stars.",
    "{Almost perfect|So close to perfect|Nearly perfect}."
  ],
  3: [
    "{Itis} fine for the price.",
    "Would I buy {them} again? Maybe.",
    "Wouldn't go out of my way to recommend {them}.",
    "[nobook]Does the job, nothing more.",
    "Keeping {them}, but with reservations.",
    "Good enough for now.",
    "Your mileage may vary.",
    "Decent if you find {them} on sale.",
    "Three stars.",
    "{Itis} okay, I guess.",
    "Not sure I'd buy {them} again.",
    "Average at best."
  ],
  2: [
    "Two stars because {it} technically work{s}.",
    "Might be fine for someone else, but not for me.",
    "Not terrible, but I wouldn't buy {them} again.",
    "Probably returning {them}.",
    "Expected better for the price.",
    "Can't really recommend {them}.",
    "[book]Won't be reading the sequel."
  ],
  1: [
    "Returning {them}.",
    "Already started the return.",
    "Stay away.",
    "Would give zero stars if I could.",
    "Complete waste of money.",
    "Avoid.",
    "Very disappointed in this brand.",
    "Lesson learned — read the 1-star reviews first.",
    "Not recommended.",
    "Can't believe I paid ${n:20-90} for this.",
    "Save yourself the headache.",
    "[nobook]Back in the box {it} go{es}.",
    "What a waste.",
    "[durable]I'll be going back to my old one."
  ]
}

const SHIP_POS = [
  "Arrived {two days early|a day early|right on time|faster than expected}.",
  "Shipping was quick and the box was in {perfect|great|mint} shape.",
  "Packaged really well — no damage at all.",
  "Got here in {n:2-4} days even with the holiday rush.",
  "Came nicely packaged{, almost gift-ready| in a sturdy box| in recyclable paper, no plastic}.",
  "Delivery was {fast|quick|speedy}, no complaints there.",
  "Showed up {the next day|two days later|before the estimated date}, well packed.",
  "Arrived {Saturday|Sunday|Monday} even though I ordered {Thursday|Friday} night.",
  "No issues with delivery at all.",
  "Shipping was free and faster than promised.",
  "The box was a little beat up, but everything inside was fine."
]
const SHIP_NEG = [
  "Took almost {n:2-4} weeks to arrive, and the tracking never updated.",
  "Box showed up crushed on one corner.",
  "Arrived {a week|five days|ten days} late.",
  "The package was left out in the rain and nobody bothered with plastic.",
  "[nobook]It came in a flimsy bag with no padding whatsoever.",
  "Tracking said \"delivered\" two days before it actually showed up.",
  "[nobook]Looked like it had been opened and re-taped, which doesn't inspire confidence.",
  "Was supposed to arrive {Tuesday|Friday|before the weekend} and showed up {a week|five days|ten days} later.",
  "The box looked like it had been kicked across the warehouse.",
  "Delivered to the wrong address first; my neighbor brought it over {two|three} days later."
]
const SERVICE_POS = [
  "Customer service was great — one email and they sent a replacement, no questions asked.",
  "Had a question and support replied within {an hour|a couple of hours|the same day}.",
  "The seller included a handwritten thank-you note, which was a nice touch.",
  "When the first one arrived damaged, they replaced it immediately.",
  "Contacted the company about a missing part and it showed up {n:2-4} days later, free.",
  "The seller answered my question before I even ordered, which was reassuring.",
  "Customer support was {friendly|super responsive|genuinely helpful}, which is rare these days.",
  "[durable]Had to exchange for a different size/color once and it was painless."
]
const SERVICE_NEG = [
  "Customer service was useless — three emails and nothing but canned replies.",
  "Tried contacting the seller and got zero response.",
  "[device]Support kept telling me to \"try restarting it,\" as if I hadn't.",
  "The return process was a nightmare and I had to pay return shipping.",
  "[durable]Their \"lifetime warranty\" requires the receipt, the original box, AND a photo of the serial number.",
  "Chatted with support for {n:40-90} minutes and got nowhere.",
  "Emailed about a refund {two|three} weeks ago and I'm still waiting.",
  "The support chatbot kept looping me back to the FAQ page.",
  "The seller offered me a 15% refund if I'd delete my review. No thanks."
]
const VALUE_POS = [
  "For ${n:15-40} this is a steal.",
  "Great value for the {price|money}.",
  "Honestly worth more than I paid.",
  "Cheaper than the name brand and just as good{, if not better|}.",
  "Got {them} on sale for ${n:12-35} and would happily have paid full price.",
  "Half the price of the {fancy|big-name} brands and does the same thing.",
  "You'd pay twice as much at a {big-box store|department store|specialty shop}.",
  "Worth the money{ — no question|, hands down|}."
]
const VALUE_NEG = [
  "Way overpriced for what you get.",
  "At this price I expected a lot better.",
  "Paid €{n:30-60} for this and it feels like a €5 product.",
  "The price went up ${n:5-15} the week after I bought it, which is wild for something this mediocre.",
  "Not worth ${n:25-80}, not even close.",
  "You can find the same thing unbranded for half the price.",
  "Feels like I paid for the marketing, not the product."
]
const VALUE_MID = [
  "Price is fair, I guess.",
  "It was on sale, which is the only reason I'm not more annoyed.",
  "Worth it on sale, not at full price.",
  "For ${n:15-40} I can't complain too much.",
  "Priced about where it should be.",
  "Not cheap, not expensive — about right for what it is."
]

const NIT_LEADS = [
  "My only complaint: ", "One small gripe: ", "Minor nitpick — ", "The only downside? ", "Only real con: ",
  "Small thing, but ", "Not perfect, though: ", "If I'm being picky: ", "", "", ""
]
const MIXED_LEADS = [
  "But ", "That said, ", "On the other hand, ", "However, ", "Downside: ", "The bad: ", "Unfortunately, ",
  "The catch? ", "", "", ""
]
const FAIR_LEADS = ["To be fair, ", "In fairness, ", "On the plus side, ", "Credit where due: ", "The one good thing: "]
const PLUS_LEADS = ["On the plus side, ", "The good: ", "Still, ", "That said, ", "In its defense, ", ""]

// ---------------------------------------------------------------------------
// Categories and products
// ---------------------------------------------------------------------------

const CATEGORIES: readonly Category[] = [
  {
    key: "electronics",
    weight: 14,
    products: [
      {
        name: "Aurora Buds Pro Wireless Earbuds", noun: "earbuds", plural: true, kind: "device",
        pos: [
          "Battery gets me through a full workday — around {n:6-8} hours with noise cancelling on.",
          "Noise cancelling is legit; I can't hear the {AC unit|train|open office} anymore.",
          "They stay put during runs, which no other earbuds have managed for me.",
          "Pairing with my phone took about ten seconds.",
          "Call quality is clear, people say I sound better than on my old AirPods."
        ],
        neg: [
          "The left earbud keeps disconnecting every {n:5-20} minutes.",
          "Battery life dropped to maybe {n:2-3} hours after a couple of months.",
          "The case hinge snapped after {dur}.",
          "They fall out of my ears if I so much as turn my head.",
          "Touch controls are way too sensitive — I pause my music every time I adjust them."
        ]
      },
      {
        name: "VoltEdge 20,000mAh Power Bank", noun: "power bank", kind: "device",
        pos: [
          "Charges my phone about {n:3-4} times before it needs a recharge.",
          "Took it on a {n:4-6}-day camping trip and never ran out.",
          "USB-C in and out is super convenient.",
          "Charges my laptop too, which I did not expect at this size."
        ],
        neg: [
          "Takes forever to recharge — like {n:9-14} hours.",
          "Gets really hot while charging, which makes me nervous.",
          "[r1,r2]Only charged my phone once before dying, nowhere near the advertised capacity.",
          "The \"fast charge\" port is not fast at all."
        ]
      },
      {
        name: "Lumina 4K Streaming Stick", noun: "streaming stick", kind: "device",
        pos: [
          "Picture quality is crisp and the remote is actually responsive.",
          "Had it streaming in under ten minutes.",
          "Way faster than the built-in apps on my TV.",
          "Finally, a remote with a button I can find in the dark."
        ],
        neg: [
          "The home screen is cluttered with ads.",
          "Buffers constantly even though my internet is fine.",
          "The remote stopped working after {dur}.",
          "Overheats and restarts itself in the middle of movies."
        ]
      },
      {
        name: "Kestrel Smart Plug (4-Pack)", noun: "smart plugs", plural: true, kind: "device",
        pos: [
          "Works with Alexa and Google Home without any fuss.",
          "Got the porch lights on a schedule now and it's great.",
          "The app shows energy usage, which is a neat bonus.",
          "Small enough that two fit on one outlet."
        ],
        neg: [
          "Two of the four wouldn't connect to my 2.4GHz network no matter what.",
          "They randomly go offline and have to be re-paired.",
          "The app wants way too many permissions.",
          "They block the second outlet, so you can only use one at a time."
        ]
      },
      {
        name: "Orbit TKL Mechanical Keyboard", noun: "keyboard", kind: "device",
        pos: [
          "The switches feel fantastic and it's satisfyingly clicky.",
          "RGB lighting is bright but not obnoxious.",
          "Keycaps still look new after months of use.",
          "Typing on it all day hasn't killed my wrists, which is more than I can say for my old one."
        ],
        neg: [
          "The spacebar rattles horribly.",
          "A few keys started double-typing after {dur}.",
          "Way louder than I expected — my roommate hates it.",
          "The software only runs on Windows, so no lighting control on my Mac."
        ]
      },
      {
        name: "Halcyon Portable Bluetooth Speaker", noun: "speaker", kind: "device",
        pos: [
          "Surprisingly full bass for something this small.",
          "Survived a drop into the pool, so the waterproofing is real.",
          "Easily fills our backyard with sound.",
          "Battery went the whole {weekend|party|beach day} without dying."
        ],
        neg: [
          "Sounds tinny at anything above half volume.",
          "There's a half-second audio lag that makes videos unwatchable.",
          "Auto-shutoff kicks in way too fast.",
          "The strap ripped off the first week."
        ]
      }
    ],
    context: [
      "I mostly use {them} at my desk for work.",
      "Use {them} every day on my commute.",
      "Needed {this} for a home office upgrade.",
      "Bought {this} to go with my new phone."
    ],
    pos: [
      "Build quality feels solid, not plasticky at all.",
      "Setup took about five minutes, including the app.",
      "A firmware update went smoothly and fixed the one small bug I had.",
      "{It} look{s} sleek on my desk.",
      "Everything worked right out of the box.",
      "Hasn't crashed or glitched once.",
      "Performs way above {its} price point.",
      "Compact enough to throw in a backpack.",
      "Connection has been rock solid."
    ],
    neg: [
      "[r1,r2]Stopped working completely after {dur}.",
      "The app is buggy and crashes every other time I open it.",
      "Feels like cheap plastic that'll crack if you look at it wrong.",
      "[r1,r2]Arrived dead — wouldn't even power on.",
      "The included cable is about a foot long, which is useless.",
      "Connectivity is spotty at best.",
      "Had to factory reset {them} {n:3-5} times in the first week.",
      "The specs in the listing are, let's say, optimistic.",
      "Randomly disconnects from Bluetooth."
    ],
    nits: [
      "The LED indicator is really bright at night.",
      "Wish it came with a wall adapter, not just a cable.",
      "The app makes you create an account, which is annoying.",
      "It's a fingerprint magnet.",
      "Still charges over micro-USB, for some reason."
    ],
    neutral: [
      "Comes with a cable but no charging brick.",
      "The manual is basically a leaflet of pictograms.",
      "Mine came with an older firmware version but updated itself overnight.",
      "Available in black, white and a sort of sage green."
    ]
  },
  {
    key: "kitchen",
    weight: 12,
    products: [
      {
        name: "Bergström Enameled Cast Iron Dutch Oven", noun: "dutch oven", kind: "durable",
        pos: [
          "Made a pot roast that came out perfect — even heat all the way around.",
          "Bakes a beautiful crusty sourdough at 450°F.",
          "The enamel cleans up with just soap and a soft sponge.",
          "Braised short ribs in it for {n:3-4} hours and nothing stuck."
        ],
        neg: [
          "The enamel chipped on the rim after {n:3-5} uses.",
          "It's incredibly heavy — I can barely lift it when it's full.",
          "The lid knob is only rated to 375°F, which nobody mentions.",
          "The interior stained after one batch of chili."
        ]
      },
      {
        name: "Café Noir Gooseneck Kettle", noun: "kettle", kind: "device",
        pos: [
          "The temperature hold feature is perfect for pour-over.",
          "Pour control is super precise.",
          "Boils a full liter in about {n:3-5} minutes.",
          "Looks gorgeous on the counter — matte black, very café."
        ],
        neg: [
          "The lid gets scalding hot.",
          "Started leaking from the base after {dur}.",
          "It beeps loudly and you can't turn the sound off.",
          "The temperature display is off by about {n:5-10} degrees."
        ]
      },
      {
        name: "QuickPrep 12-Cup Food Processor", noun: "food processor", kind: "device",
        pos: [
          "Shreds a block of cheese in seconds.",
          "Makes pesto and hummus with zero effort.",
          "The slicing disc gives really even cuts.",
          "Handled a double batch of pie dough without breaking a sweat."
        ],
        neg: [
          "The bowl cracked the first time it went through the dishwasher.",
          "It's loud enough to wake the whole house.",
          "[r1,r2]The motor smelled like burning during its first batch of dough.",
          "The safety lock is so finicky it takes three tries to get it to start."
        ]
      },
      {
        name: "Ember Silicone Spatula Set (5 pcs)", noun: "spatulas", plural: true, kind: "durable",
        pos: [
          "Heat resistant — left one resting on a hot pan and it was fine.",
          "Flexible enough to scrape every last bit out of the bowl.",
          "One-piece design, so no gunk gets trapped where the head meets the handle.",
          "The small one is perfect for getting the last of the peanut butter out of the jar."
        ],
        neg: [
          "Stained orange after one batch of tomato sauce.",
          "The heads are way too floppy for anything thicker than batter.",
          "One of them melted slightly at the edge.",
          "They hold onto garlic smell no matter how much I wash them."
        ]
      },
      {
        name: "PrimeSlice 8\" Chef's Knife", noun: "knife", kind: "durable",
        pos: [
          "Sharp enough out of the box to slice tomatoes paper-thin.",
          "Nice balance, doesn't tire my hand during long prep sessions.",
          "Held its edge for months with just a honing steel.",
          "Went through a butternut squash like it was nothing."
        ],
        neg: [
          "Dulled within a couple of weeks.",
          "Rust spots appeared after one dishwasher cycle (I know, I know).",
          "The handle gets slippery when wet.",
          "The \"German steel\" is clearly not German steel."
        ]
      },
      {
        name: "Mistral 5.8-Quart Air Fryer", noun: "air fryer", kind: "device",
        pos: [
          "Wings come out crispy in about {n:18-25} minutes.",
          "Reheating pizza in this is a game changer.",
          "The basket is nonstick and actually cleans up easily.",
          "Frozen fries taste like they came from a restaurant."
        ],
        neg: [
          "The nonstick coating started flaking after {dur}.",
          "Has a strong plastic smell every time it heats up.",
          "The timer dial is flimsy and hard to set precisely.",
          "The basket is way smaller than \"5.8 quarts\" suggests."
        ]
      }
    ],
    context: [
      "We cook at home almost every night, so {this} get{s} a lot of use.",
      "Bought {this} to replace a cheap one from my college days.",
      "Got {this} as a housewarming gift.",
      "I meal prep every Sunday and needed something that could keep up."
    ],
    pos: [
      "Easy to clean, which matters more than anything in my kitchen.",
      "Feels sturdy and well made.",
      "Dishwasher safe, as promised.",
      "{It} look{s} great on the counter.",
      "I reach for {them} pretty much every day now.",
      "My cooking has honestly improved since I got {this}.",
      "Even my {who}, who never cooks, has started using {them}."
    ],
    neg: [
      "The listing said \"dishwasher safe,\" but {it} warped on the first cycle.",
      "Feels flimsy and cheap in the hand.",
      "Much smaller than {it} look{s} in the photos.",
      "[device,r1,r2]Stopped working after {dur} of light use.",
      "The coating is already scratched."
    ],
    nits: [
      "Takes up more counter space than I expected.",
      "A bit heavier than I'd like.",
      "Hand-washing is recommended, which is a small hassle.",
      "[device]The cord is on the short side."
    ],
    neutral: [
      "About the size I expected from the listed dimensions.",
      "Came with a little recipe booklet I haven't looked at yet.",
      "We have a gas stove, if that matters."
    ]
  },
  {
    key: "books",
    weight: 8,
    products: [
      {
        name: "The Salt Road (Hardcover)", noun: "book", kind: "book",
        pos: [
          "The world-building is incredible, and the ending absolutely gutted me.",
          "Finished it in two nights — I kept saying \"one more chapter.\"",
          "The characters feel like real people with real flaws.",
          "That final chapter… I need a minute."
        ],
        neg: [
          "The middle third drags terribly.",
          "The twist was obvious from chapter three.",
          "Way too much description of landscapes, not enough plot.",
          "The romance subplot felt tacked on."
        ]
      },
      {
        name: "Mindful Money: A Beginner's Guide to Budgeting", noun: "book", kind: "book",
        pos: [
          "Actually practical advice, not just \"stop buying lattes.\"",
          "The worksheets at the end helped me build my first real budget.",
          "Clear and jargon-free, even for someone who hates math.",
          "Paid off a credit card in {n:4-9} months using the method in chapter 6."
        ],
        neg: [
          "Mostly common sense stretched across {n:220-300} pages.",
          "Half the book is the author's personal story.",
          "Feels outdated — it recommends apps that don't exist anymore.",
          "Very US-centric; useless advice if you live in Canada or Europe."
        ]
      },
      {
        name: "Sourdough & Beyond: A Home Baker's Handbook", noun: "cookbook", kind: "book",
        pos: [
          "The starter troubleshooting section alone is worth the price.",
          "Every recipe I've tried has worked the first time.",
          "Beautiful photos and clear step-by-step instructions.",
          "Finally understand what \"windowpane test\" means."
        ],
        neg: [
          "Measurements are only in cups, no grams — a real problem for baking.",
          "Several recipes have obvious typos in the quantities.",
          "The binding won't stay open on the counter.",
          "The pain au chocolat recipe flat-out doesn't work."
        ]
      },
      {
        name: "Dinosaurs Don't Do Dishes (Picture Book)", noun: "picture book", kind: "book",
        pos: [
          "My {n:3-5}-year-old asks for it every single night.",
          "The illustrations are bright and genuinely funny.",
          "The rhymes are actually fun to read aloud, even on the 40th time.",
          "Sneaky little lesson about helping out at home, which I appreciate."
        ],
        neg: [
          "Pages are thin and tore within a week.",
          "Way too short — done in three minutes.",
          "The rhymes are forced and awkward to read aloud.",
          "Some of the jokes go way over a preschooler's head."
        ]
      },
      {
        name: "Night Shift at the Lighthouse: A Mystery", noun: "mystery novel", kind: "book",
        pos: [
          "Genuinely did not guess the killer.",
          "Atmospheric and creepy in the best way.",
          "Perfect beach read.",
          "The detective is sharp and funny without being a cliché."
        ],
        neg: [
          "The detective is insufferable.",
          "The ending felt rushed, like the author ran out of pages.",
          "Too many characters to keep track of.",
          "Guessed the culprit by page 50."
        ]
      }
    ],
    context: [
      "Picked this up after seeing it all over BookTok.",
      "Read this for my book club.",
      "Bought this for a long flight.",
      "[book]Finished it last night and I'm still thinking about it.",
      "My {who} lent me their copy and I ended up buying my own.",
      "Listened to half as an audiobook and read the rest in print."
    ],
    pos: [
      "Well written and easy to get into.",
      "Already recommended it to my book club.",
      "The prose is gorgeous.",
      "Print quality is great, nice thick pages.",
      "Read it in one sitting.",
      "The kind of book you want to press into everyone's hands.",
      "Funny, sad, and smart all at once.",
      "I'll be rereading this one.",
      "Exactly the book I needed right now."
    ],
    neg: [
      "[r1,r2]I gave it {n:80-150} pages and just couldn't continue.",
      "Badly in need of an editor.",
      "The Kindle version has formatting issues on every other page.",
      "Arrived with a bent cover and a torn dust jacket.",
      "Felt like it was written by committee.",
      "The hype is not justified.",
      "Couldn't connect with any of the characters."
    ],
    nits: [
      "The font is a little small.",
      "The cover is kind of ugly, not gonna lie.",
      "A few typos slipped through editing.",
      "The ending was a bit too neat for my taste."
    ],
    neutral: [
      "Reads fast, about {n:250-400} pages.",
      "It's the {first|second} in a series, which I didn't realize.",
      "I read the paperback; can't speak to the e-book."
    ]
  },
  {
    key: "clothing",
    weight: 11,
    products: [
      {
        name: "Zürich Merino Wool Beanie", noun: "beanie", kind: "durable",
        pos: [
          "Warm without being itchy, even on my sensitive forehead.",
          "Kept me toasty at -10°C on the ski lift.",
          "Doesn't lose its shape after washing.",
          "Thin enough to fit under a bike helmet."
        ],
        neg: [
          "Itchy as heck despite the \"merino\" label.",
          "Pilled after about three wears.",
          "Way too shallow — doesn't even cover my ears.",
          "\"One size fits most\" my foot."
        ]
      },
      {
        name: "TrailFlex Women's Hiking Pants", noun: "pants", plural: true, kind: "durable",
        pos: [
          "The pockets are deep enough for a phone, which is rare for women's pants!",
          "Stretchy and comfortable on a {n:8-15}-mile hike.",
          "Dried super fast after I got caught in a downpour.",
          "The zip-off legs are actually useful, not gimmicky."
        ],
        neg: [
          "The inseam is about two inches shorter than listed.",
          "The zipper broke on the second wear.",
          "The fabric is so thin you can see through it in sunlight.",
          "The waistband digs in when you sit down."
        ]
      },
      {
        name: "Harbor Classic Oxford Shirt", noun: "shirt", kind: "durable",
        pos: [
          "The collar holds its shape all day.",
          "Barely wrinkles, even after a full day in the office.",
          "The fabric is soft but still looks crisp.",
          "Looks great tucked or untucked."
        ],
        neg: [
          "Shrunk a full size after one wash on cold.",
          "Buttons started falling off within a month.",
          "The sleeves are weirdly long and the body is boxy.",
          "Wrinkles if you so much as look at it."
        ]
      },
      {
        name: "Cloudstep Running Socks (6 Pairs)", noun: "socks", plural: true, kind: "durable",
        pos: [
          "No more blisters on my long runs.",
          "The cushioning in the heel is just right.",
          "Still no holes after months of heavy rotation.",
          "They stay put — no sliding down into my shoes."
        ],
        neg: [
          "Holes in the heel after {n:3-6} washes.",
          "They slide down into my shoes constantly.",
          "Way thinner than the photos suggest.",
          "The elastic at the top cuts off my circulation."
        ]
      },
      {
        name: "Northline Packable Down Jacket", noun: "jacket", kind: "durable",
        pos: [
          "Packs into its own pocket and weighs almost nothing.",
          "Surprisingly warm for how thin it is.",
          "A great layering piece under a rain shell.",
          "Wore it all through a trip to {Iceland|Norway|Patagonia} and was never cold."
        ],
        neg: [
          "Feathers poke out of the seams constantly.",
          "Ripped on a branch the first time I wore it hiking.",
          "Not warm at all below about 40°F.",
          "The zipper snags every single time."
        ]
      }
    ],
    context: [
      "Bought {this} for a trip to {Colorado|Scotland|the Alps|Maine|Montréal}.",
      "Needed something for my daily commute.",
      "Replacing stuff I wore to death over the years.",
      "I'm hard to fit, so I don't have high expectations with online clothes."
    ],
    pos: [
      "Fits true to size.",
      "The color is exactly like the pictures.",
      "Washed {them} several times with no shrinking or fading.",
      "Comfortable enough to wear all day.",
      "Got compliments the first time I wore {them}.",
      "The stitching looks really well done."
    ],
    neg: [
      "Sizing is way off — I ordered my usual {M|L|medium|large} and {it} fit{s} like an XS.",
      "The stitching came apart after {n:2-4} wears.",
      "The material feels cheap and scratchy.",
      "The color faded badly after the first wash.",
      "Looks nothing like the model photos in person."
    ],
    nits: [
      "{It} run{s} a bit small, so size up.",
      "{It} run{s} slightly large.",
      "The tag is scratchy, but I just cut it off.",
      "The color is a touch darker than in the photos."
    ],
    neutral: [
      "For reference, I'm {5'3\"|5'5\"|5'8\"|5'10\"|6'1\"} and ordered a {S|M|L|XL}.",
      "Machine washable, hang dry.",
      "I usually wear a {small|medium|large} in most brands."
    ]
  },
  {
    key: "toys",
    weight: 8,
    products: [
      {
        name: "Galaxy Builder Magnetic Tiles (100 pcs)", noun: "magnetic tiles", plural: true, kind: "durable",
        pos: [
          "Our kids build with these for hours — best screen-free toy we own.",
          "The magnets are strong, so towers don't collapse every two seconds.",
          "Compatible with the more expensive brand we already had.",
          "Even the adults end up playing with these."
        ],
        neg: [
          "[r1,r2]A couple of tiles cracked and the tiny magnets were exposed — scary with a toddler.",
          "The magnets are weak compared to the name brand.",
          "Several pieces arrived broken.",
          "The colors are much duller than the pictures."
        ]
      },
      {
        name: "Roary the Plush Lion", noun: "plush", kind: "durable",
        pos: [
          "So soft — my daughter hasn't put it down since her birthday.",
          "Survived the washing machine with no damage.",
          "The stitching is solid; no loose eyes or threads.",
          "The mane is ridiculously fluffy."
        ],
        neg: [
          "Smaller than expected — the listing photo is very misleading.",
          "The fur started matting after a week.",
          "[r1,r2]One eye came loose within days, which is a choking hazard.",
          "Has a weird chemical smell that won't wash out."
        ]
      },
      {
        name: "TurboTrack RC Stunt Car", noun: "RC car", kind: "device",
        pos: [
          "Flips and spins like crazy, and my son is obsessed.",
          "Survived being driven off the porch steps multiple times.",
          "The rechargeable battery lasts about {n:20-30} minutes per charge.",
          "Goes on grass and gravel, not just smooth floors."
        ],
        neg: [
          "The battery only lasts about {n:5-8} minutes.",
          "Range is terrible — it loses signal past {n:10-20} feet.",
          "One of the wheels snapped off on day two.",
          "The remote eats AA batteries like candy."
        ]
      },
      {
        name: "Mystery Manor Board Game", noun: "board game", kind: "durable",
        pos: [
          "A great family game night pick — even our teenager got into it.",
          "The rules are easy to pick up after one round.",
          "Tons of replay value because the mystery changes every time.",
          "The little cardboard mansion is adorable."
        ],
        neg: [
          "The rulebook is confusing and contradicts itself.",
          "Missing pieces right out of the box.",
          "Gets repetitive after two or three plays.",
          "Games take way longer than the \"30 minutes\" on the box."
        ]
      },
      {
        name: "Little Chef Wooden Play Kitchen", noun: "play kitchen", kind: "durable",
        pos: [
          "Assembly took about an hour and it's really sturdy.",
          "The little knobs click and turn, which my toddler loves.",
          "Looks nice enough that I don't mind it in the living room.",
          "The fake oven door has a magnet so it actually stays shut."
        ],
        neg: [
          "Assembly took {n:3-4} hours and the instructions are terrible.",
          "Some of the pre-drilled holes didn't line up.",
          "The paint chipped within weeks.",
          "It's more MDF than wood, despite the name."
        ]
      }
    ],
    context: [
      "Bought {this} for {kid}'s birthday.",
      "Christmas gift for {kid}.",
      "Got {this} to keep {kid} busy on rainy weekends.",
      "{Kid} picked {this} out, so I had no say in the matter."
    ],
    pos: [
      "Kept {kid} busy for hours.",
      "Good quality for the price.",
      "Sturdy enough to survive a toddler.",
      "Huge hit at the birthday party.",
      "{Kid} has played with {them} every day since.",
      "The grandparents were impressed too.",
      "Honestly one of the best toys we've bought."
    ],
    neg: [
      "[r1,r2]Broke within a week of normal play.",
      "Looks nothing like the picture.",
      "[r1,r2]Small parts in a toy marketed to toddlers — not okay.",
      "{Kid} lost interest after a day.",
      "Way too many tiny pieces to keep track of."
    ],
    nits: [
      "[device]Batteries not included, so have some on hand.",
      "The box is way bigger than it needs to be.",
      "A little pricey for what it is.",
      "So many twist ties on the packaging."
    ],
    neutral: [
      "The box says ages {n:3-8}+.",
      "{Kid} is {n:3-9}, for reference."
    ]
  },
  {
    key: "garden",
    weight: 7,
    products: [
      {
        name: "GreenThumb Expandable Garden Hose 50ft", noun: "hose", kind: "durable",
        pos: [
          "Lightweight and easy to store — my back thanks me.",
          "Expands fully, with good water pressure.",
          "No kinks, which was my biggest gripe with my old hose.",
          "The spray nozzle has {n:7-10} settings and they're all actually useful."
        ],
        neg: [
          "Burst at the connector after {dur}.",
          "The \"brass\" fittings are plastic painted gold.",
          "Leaks at the nozzle no matter how tight I screw it.",
          "Never expands to the full 50 feet."
        ]
      },
      {
        name: "SunHarvest Raised Garden Bed (4x8)", noun: "garden bed", kind: "durable",
        pos: [
          "Assembled in under 30 minutes with no tools.",
          "Our tomatoes and peppers are thriving in it.",
          "The metal panels feel sturdy and haven't rusted.",
          "Tall enough that I don't have to kneel to weed."
        ],
        neg: [
          "Sharp edges — cut my hand during assembly.",
          "The panels bowed outward once it was filled with soil.",
          "Much shallower than I expected.",
          "The screws rusted after the first season."
        ]
      },
      {
        name: "Solar Path Lights (12-Pack)", noun: "solar lights", plural: true, kind: "device",
        pos: [
          "They stay lit until about midnight after a sunny day.",
          "Made our front walkway look so inviting.",
          "The warm white looks great, not that harsh blue.",
          "Turn on automatically at dusk, no fiddling."
        ],
        neg: [
          "[r1,r2]Half of them stopped working after the first rain.",
          "They barely glow — more like a faint suggestion of light.",
          "The stakes snap if the ground is even a little hard.",
          "Only last an hour or two after dark."
        ]
      },
      {
        name: "Hummingbird Feeder with Ant Moat", noun: "feeder", kind: "durable",
        pos: [
          "Had hummingbirds visiting within two days!",
          "Easy to take apart and clean.",
          "The ant moat actually works.",
          "We counted {n:3-6} hummingbirds at once last weekend."
        ],
        neg: [
          "Leaks nectar all over the deck.",
          "The plastic turned cloudy after a few weeks in the sun.",
          "Bees swarm it constantly.",
          "The hanging hook bent within a week."
        ]
      },
      {
        name: "ProCut Bypass Pruning Shears", noun: "pruners", plural: true, kind: "durable",
        pos: [
          "Slice through {one|half|three-quarter}-inch branches like butter.",
          "Comfortable grip, even after an afternoon of pruning roses.",
          "The locking clip is easy to use one-handed.",
          "Clean cuts, no crushed stems."
        ],
        neg: [
          "The spring popped out on day one.",
          "The blades were dull right out of the package.",
          "The lock engages by itself mid-cut, which is infuriating.",
          "Blade started rusting after one damp morning."
        ]
      }
    ],
    context: [
      "Spring project for the backyard.",
      "Bought {this} for my vegetable garden.",
      "My {who} is the real gardener here; I just do the heavy lifting.",
      "We just moved into a house with an actual yard, so I'm learning as I go."
    ],
    pos: [
      "Holding up great through a full season outdoors.",
      "Handles sun and rain without fading.",
      "The garden looks so much better.",
      "Worth it just for the time saved.",
      "The neighbors have asked where we got {them}.",
      "Survived a pretty brutal hailstorm.",
      "Exactly what our yard needed."
    ],
    neg: [
      "[r1,r2]Didn't survive one season outdoors.",
      "Rusted after a few weeks outside.",
      "The plastic went brittle in the sun.",
      "Clearly not designed for actual outdoor use.",
      "Looked worn out after a single summer.",
      "[r1,r2]Blew over in the first windstorm."
    ],
    nits: [
      "The instructions were just pictures, but it was easy enough to figure out.",
      "The green is a bit brighter than I'd like.",
      "Wish it came with a storage bag for winter."
    ],
    neutral: [
      "We're in zone {n:5-8}, for reference.",
      "Our yard gets full sun most of the day."
    ]
  },
  {
    key: "beauty",
    weight: 10,
    products: [
      {
        name: "Crème Douce Hydrating Face Cream", noun: "cream", kind: "consumable",
        pos: [
          "My dry patches were gone within a week.",
          "Absorbs quickly without feeling greasy.",
          "A little goes a long way — one jar lasts me about {n:2-3} months.",
          "Works great under makeup, no pilling."
        ],
        neg: [
          "Broke me out in tiny bumps within days.",
          "Smells strongly of perfume even though it says fragrance-free.",
          "Way too thick; it just sits on top of my skin.",
          "The jar is half empty space — sneaky packaging."
        ]
      },
      {
        name: "Velvet Matte Liquid Lipstick — Shade 'Rosewood'", noun: "lipstick", kind: "consumable",
        pos: [
          "Lasts through coffee and lunch without smudging.",
          "The color is a gorgeous everyday mauve.",
          "Not drying like most matte formulas.",
          "The doe-foot applicator makes it easy to get a clean line."
        ],
        neg: [
          "Flakes off within an hour.",
          "The shade is way more orange than the swatch.",
          "Dries my lips out terribly.",
          "Transfers onto everything, despite the \"transfer-proof\" claim."
        ]
      },
      {
        name: "SilkWave Ionic Hair Dryer", noun: "hair dryer", kind: "device",
        pos: [
          "Cut my drying time in half.",
          "My hair is noticeably less frizzy.",
          "Surprisingly quiet for how powerful it is.",
          "The diffuser attachment is great for my curls."
        ],
        neg: [
          "Smelled like burning plastic the first time I used it.",
          "The cool-shot button stopped working after {dur}.",
          "The cord is way too short for my bathroom.",
          "Gets so hot the handle is uncomfortable to hold."
        ]
      },
      {
        name: "Citrus Bloom Body Wash (3-Pack)", noun: "body wash", kind: "consumable",
        pos: [
          "Smells amazing, like fresh oranges.",
          "Lathers really well, so a bottle lasts a while.",
          "Doesn't leave my skin feeling tight.",
          "The whole bathroom smells like a spa afterwards."
        ],
        neg: [
          "The scent is really artificial.",
          "One bottle leaked all over the box during shipping.",
          "Made my skin itchy.",
          "Watery, and I go through a bottle in a week."
        ]
      },
      {
        name: "Mineral Shield SPF 50 Sunscreen", noun: "sunscreen", kind: "consumable",
        pos: [
          "No white cast on my medium-brown skin, which is rare for a mineral sunscreen.",
          "Doesn't sting my eyes.",
          "Survived a full beach day with one reapplication and no burn.",
          "Sits nicely under makeup."
        ],
        neg: [
          "Leaves a ghostly white cast.",
          "Pilled up under my makeup every time.",
          "Got burned even after reapplying.",
          "Feels greasy for hours."
        ]
      }
    ],
    context: [
      "Saw {this} recommended by a dermatologist on YouTube.",
      "Picked {this} up to replace my usual brand, which got discontinued.",
      "My skincare routine is pretty minimal, so I'm picky about what makes the cut.",
      "My {who} swears by this brand, so I gave it a try."
    ],
    pos: [
      "[consumable]Gentle on my sensitive skin.",
      "[consumable]Will be repurchasing.",
      "The packaging is really pretty too.",
      "[consumable]Noticed a difference after a couple of weeks.",
      "Feels way more luxurious than the price suggests.",
      "My {who} noticed the difference before I said anything.",
      "[consumable]The texture is lovely.",
      "[consumable]No irritation at all, which is a win for me."
    ],
    neg: [
      "[consumable,r1,r2]Caused a reaction — red and itchy for days.",
      "[consumable]The pump broke after a week.",
      "[consumable]Honestly can't tell any difference from the drugstore stuff.",
      "[consumable]The expiration date was only {n:2-4} months away when it arrived.",
      "[device,r1,r2]Died after {dur} of using it a few times a week.",
      "Feels cheaper than the price would suggest."
    ],
    nits: [
      "[consumable]The scent is a little strong for me.",
      "[consumable]The pump dispenses way too much at once.",
      "Pricey for the size.",
      "[device]Heavier than my old one."
    ],
    neutral: [
      "I have {combination|oily|dry|sensitive} skin, for reference.",
      "My hair is thick and wavy, if that helps anyone."
    ]
  },
  {
    key: "tools",
    weight: 8,
    products: [
      {
        name: "IronGrip 20V Cordless Drill", noun: "drill", kind: "device",
        pos: [
          "Drove 3-inch deck screws all afternoon without a problem.",
          "Two batteries included, so I'm never waiting on a charge.",
          "The LED light actually points where you're drilling.",
          "Plenty of torque for a homeowner-grade drill."
        ],
        neg: [
          "The chuck wobbles noticeably.",
          "The battery dies after maybe {n:15-25} minutes of real work.",
          "The clutch settings are basically decorative.",
          "The charger light never turns green, so who knows if it's charged."
        ]
      },
      {
        name: "Precision 64-Piece Screwdriver Bit Set", noun: "bit set", kind: "durable",
        pos: [
          "Has every weird bit I've ever needed, including the tiny ones for electronics.",
          "The magnetic holder is strong.",
          "The case is well organized and everything snaps into place.",
          "Fixed my kid's game controller with the tiny Torx bits."
        ],
        neg: [
          "The bits stripped after just a few screws.",
          "The case fell apart and the bits went everywhere.",
          "Cheap metal — the Phillips tips rounded off immediately.",
          "Half the bits are sizes nobody will ever use."
        ]
      },
      {
        name: "TruLine Self-Leveling Laser Level", noun: "laser level", kind: "device",
        pos: [
          "Hung a gallery wall of {n:8-12} frames perfectly straight.",
          "Self-leveling works fast.",
          "The line is bright enough to see in a lit room.",
          "Saved me from drilling a dozen extra holes in the drywall."
        ],
        neg: [
          "Out of calibration right out of the box.",
          "The line is almost invisible in daylight.",
          "The tripod mount thread is stripped.",
          "Off by about a quarter inch over ten feet — useless for tile."
        ]
      },
      {
        name: "HeavyHaul Steel Tool Chest", noun: "tool chest", kind: "durable",
        pos: [
          "The drawers slide smoothly even when fully loaded.",
          "Solid steel, no flex at all.",
          "The lock and keys are a nice touch.",
          "Finally got my garage organized."
        ],
        neg: [
          "Arrived dented on two corners.",
          "The drawer slides are flimsy and already sticking.",
          "The paint scratches off way too easily.",
          "The casters are cheap and one already cracked."
        ]
      },
      {
        name: "Stud Finder Pro X3", noun: "stud finder", kind: "device",
        pos: [
          "Finds studs accurately on the first pass.",
          "Also picks up live wires, which is reassuring.",
          "Easy to use, and the display is clear.",
          "Works through our old plaster walls, which nothing else has."
        ],
        neg: [
          "Beeps everywhere, even where there's definitely no stud.",
          "Gave me three different readings on the same spot.",
          "Ate through a 9V battery in a week.",
          "Useless on plaster walls."
        ]
      }
    ],
    context: [
      "Bought {this} for a kitchen remodel.",
      "Needed {this} for some weekend projects around the house.",
      "First-time homeowner slowly building up a tool collection.",
      "My {who} kept borrowing mine, so I bought a second."
    ],
    pos: [
      "Feels like a professional-grade tool at a DIY price.",
      "Solid weight in the hand.",
      "Already paid for itself on one project.",
      "Does exactly what a tool should: works every time.",
      "Handled everything I threw at {them}.",
      "Used {them} to {finish our basement|build a shed|redo the deck|hang shelves} and {it} held up fine."
    ],
    neg: [
      "Feels like a toy, not a tool.",
      "[r1,r2]Broke in the middle of a project, which was super frustrating.",
      "Definitely not contractor quality, despite the marketing.",
      "The \"heavy duty\" label is a joke.",
      "[r1,r2]Quit on me halfway through the first job."
    ],
    nits: [
      "The carrying case is flimsy.",
      "A bit heavy for overhead work.",
      "The orange is very… orange.",
      "The manual is a single folded sheet."
    ],
    neutral: [
      "I'm a weekend DIYer, not a pro, so take that into account.",
      "Comes with a case, which is handy."
    ]
  },
  {
    key: "sports",
    weight: 9,
    products: [
      {
        name: "FlexCore 6mm Yoga Mat", noun: "yoga mat", kind: "durable",
        pos: [
          "Grippy even in hot yoga.",
          "Thick enough to protect my knees but still stable for balance poses.",
          "No weird rubber smell.",
          "Rolls up tight and the strap is handy."
        ],
        neg: [
          "Super slippery once I start sweating.",
          "Started flaking and leaving little bits on my hands.",
          "Keeps curling up at the ends.",
          "Shows every single footprint and handprint."
        ]
      },
      {
        name: "AquaPeak Insulated Water Bottle 32oz", noun: "water bottle", kind: "durable",
        pos: [
          "Ice was still in it after {n:20-30} hours in a hot car.",
          "The lid doesn't leak at all, even sideways in my bag.",
          "Fits in my car's cup holder — barely.",
          "The straw lid is great for the gym."
        ],
        neg: [
          "The paint chipped after one drop.",
          "The lid leaks if it isn't perfectly upright.",
          "Makes everything taste slightly metallic.",
          "Impossible to clean the inside of the straw lid."
        ]
      },
      {
        name: "Adjustable Dumbbells (5–52.5 lb)", noun: "dumbbells", plural: true, kind: "durable",
        pos: [
          "Switching weights takes two seconds.",
          "They save so much space compared to a full rack.",
          "They feel balanced and solid.",
          "Replaced {n:15-17} pairs of dumbbells in my garage gym."
        ],
        neg: [
          "The selector mechanism jammed after {dur}.",
          "The plates rattle loudly on every rep.",
          "The handle is too long for some exercises.",
          "One of the plates cracked when I set it down a little hard."
        ]
      },
      {
        name: "Ridgeback Trail Running Shoes", noun: "shoes", plural: true, kind: "durable",
        pos: [
          "Great traction on wet rocks.",
          "Comfortable right out of the box, no break-in needed.",
          "The toe box is roomy without feeling sloppy.",
          "Did a {n:10-25}K trail race in them with zero issues."
        ],
        neg: [
          "The sole started separating after about {n:50-100} miles.",
          "Way narrower than my usual size.",
          "Gave me a blister on my heel on the very first run.",
          "The laces won't stay tied."
        ]
      },
      {
        name: "Spinfire Pickleball Paddle Set", noun: "paddles", plural: true, kind: "durable",
        pos: [
          "Great control and a nice pop off the face.",
          "Perfect for beginners like us.",
          "The carrying bag is a nice bonus.",
          "Our whole neighborhood group uses them now."
        ],
        neg: [
          "The edge guard started peeling off.",
          "The balls included are cheap and cracked quickly.",
          "Feel dead compared to the paddles at my club.",
          "The grip tape unraveled in a week."
        ]
      }
    ],
    context: [
      "Training for my first {half marathon|5K|triathlon|century ride} and needed {this}.",
      "Bought {this} when my gym membership lapsed.",
      "Trying to get back in shape after a long winter.",
      "My {who} and I have been working out together, so we each got one."
    ],
    pos: [
      "Holding up well with {n:3-5} workouts a week.",
      "Great quality for the price.",
      "Has made working out at home so much easier.",
      "Noticeably better than the cheap one I had before.",
      "Sturdy enough for daily use.",
      "Looks and feels premium.",
      "Makes me actually want to work out, which is saying something.",
      "Held up through a whole season of {weekend|weekly} use."
    ],
    neg: [
      "Didn't hold up to regular use.",
      "Cheap materials, and you can feel it.",
      "Not built for anyone who actually trains.",
      "Started falling apart after {dur}.",
      "Feels flimsy compared to what I've used at the gym.",
      "Way lower quality than the photos suggest."
    ],
    nits: [
      "Only comes in a few colors.",
      "Slightly heavier than advertised.",
      "Has a bit of a new-product smell for the first week."
    ],
    neutral: [
      "I work out about {n:3-5} times a week, for context.",
      "Mostly use {them} for {running|yoga|strength training|HIIT}."
    ]
  },
  {
    key: "pets",
    weight: 9,
    products: [
      {
        name: "PawNest Orthopedic Dog Bed (Large)", noun: "dog bed", kind: "durable", pet: "dog",
        pos: [
          "Our {n:9-13}-year-old lab sleeps on it all day and seems much less stiff.",
          "The cover zips off and survived the washing machine.",
          "The memory foam is thick and supportive.",
          "Big enough for a 90-lb shepherd to fully stretch out."
        ],
        neg: [
          "The cover ripped within a week — and my dog isn't a chewer.",
          "The foam went flat after a month.",
          "Smelled like chemicals for days.",
          "The bolster is just stuffing that clumps after one wash."
        ]
      },
      {
        name: "Whisker Tower Cat Tree", noun: "cat tree", kind: "durable", pet: "cat",
        pos: [
          "Both cats fight over the top perch.",
          "Sturdy — doesn't wobble even when my 15-lb cat launches onto it.",
          "The sisal posts saved my couch.",
          "Assembly took about 40 minutes with the included Allen key."
        ],
        neg: [
          "Wobbles badly, and my cats won't go near it.",
          "The carpet is already shredding.",
          "Missing two screws, so I had to run to the hardware store.",
          "The hammock tore the first time my cat jumped in."
        ]
      },
      {
        name: "Munchy Salmon Cat Treats", noun: "treats", plural: true, kind: "consumable", pet: "cat",
        pos: [
          "My picky cat goes absolutely nuts for these.",
          "The only treats that get my cat to take her pill.",
          "The resealable bag actually keeps them fresh.",
          "She comes running from across the house when she hears the bag."
        ],
        neg: [
          "[r1,r2]My cat threw up after eating them.",
          "The bag arrived with most of the treats crushed into powder.",
          "The recipe changed and my cat won't touch them now.",
          "They smell so strongly of fish that the whole pantry stinks."
        ]
      },
      {
        name: "TangleFree Retractable Dog Leash", noun: "leash", kind: "durable", pet: "dog",
        pos: [
          "The lock button is easy to use with one hand.",
          "Handles my {n:50-80}-lb shepherd mix pulling just fine.",
          "Retracts smoothly every time.",
          "The handle is comfortable on long walks."
        ],
        neg: [
          "[r1,r2]The cord snapped when my dog lunged at a squirrel — scary.",
          "The brake button sticks.",
          "Retraction is weak and the cord drags on the ground.",
          "The handle cracked when I dropped it once."
        ]
      },
      {
        name: "ChewChamp Indestructible Rubber Bone", noun: "chew toy", kind: "durable", pet: "dog",
        pos: [
          "My aggressive chewer has had it for weeks and it's barely scratched.",
          "Keeps him busy for ages, especially stuffed with peanut butter.",
          "Finally a toy that lasts longer than a day!",
          "Bounces unpredictably, which my dog finds hilarious."
        ],
        neg: [
          "\"Indestructible\" lasted about 40 minutes with my pit mix.",
          "[r1,r2]Chunks broke off, which is dangerous.",
          "My dog showed zero interest.",
          "Leaves black rubber marks all over the floor."
        ]
      }
    ],
    context: [
      "Bought {this} for our new rescue {pet}, {petname}.",
      "{Petname} is very picky, so I had low expectations.",
      "We have two {pet}s and a small apartment, so I'm picky about pet stuff.",
      "Our vet suggested something like this."
    ],
    pos: [
      "{Petname} approves!",
      "My {pet} took to {them} immediately.",
      "Solid quality for what you pay.",
      "Honestly one of the better pet purchases I've made.",
      "{Petname} is obsessed.",
      "[durable]Easy to clean, which is a must with pets."
    ],
    neg: [
      "[r1,r2]My {pet} wanted nothing to do with {them}.",
      "[durable,r1,r2]Fell apart way too quickly.",
      "[r1,r2]Not safe, in my opinion.",
      "[r1,r2]Poorly made — I'm surprised it passed any kind of safety check.",
      "[durable]The seams were already coming loose out of the box."
    ],
    nits: [
      "[durable]The size chart is a bit off, so measure your {pet}.",
      "[durable]The color was more beige than gray.",
      "A little pricey."
    ],
    neutral: [
      "For reference, my {pet} is {n:2-12} years old.",
      "We have a {n:2-3}-{pet} household."
    ]
  },
  {
    key: "home",
    weight: 9,
    products: [
      {
        name: "Hearth & Loom Chunky Knit Throw", noun: "throw", kind: "durable",
        pos: [
          "So cozy — it's become the most fought-over thing in our living room.",
          "Looks way more expensive than it was.",
          "Heavy in a comforting way.",
          "Goes with everything; I got the oatmeal color."
        ],
        neg: [
          "Sheds everywhere; I'm still finding fibers on everything.",
          "Stretched out of shape within a week.",
          "Much smaller than the listed dimensions.",
          "The knit is so loose that my fingers and toes get stuck in it."
        ]
      },
      {
        name: "Nimbus Blackout Curtains (2 Panels)", noun: "curtains", plural: true, kind: "durable",
        pos: [
          "The room is pitch black at 2pm — perfect for my night shift schedule.",
          "Noticeably cut down on street noise too.",
          "Hung straight, no ironing needed.",
          "Our nursery finally stays dark for naps."
        ],
        neg: [
          "Light leaks through the seams.",
          "Strong chemical smell that took weeks to air out.",
          "They're shorter than the listed length.",
          "The \"blackout\" lining is more like a dim-out."
        ]
      },
      {
        name: "Lumen Arc Floor Lamp", noun: "floor lamp", kind: "device",
        pos: [
          "Assembly took ten minutes and it looks super modern.",
          "The dimmer goes really low, great for movie night.",
          "The base is heavy and sturdy, no tipping.",
          "Lights up our whole reading corner."
        ],
        neg: [
          "Flickers constantly on the lower settings.",
          "The arc sags and won't stay in position.",
          "Missing a part, and the company took two weeks to send it.",
          "The foot switch broke within a month."
        ]
      },
      {
        name: "PureAir HEPA Air Purifier", noun: "air purifier", kind: "device",
        pos: [
          "My allergies have been so much better since we set it up.",
          "Quiet enough on low to sleep next to.",
          "The air quality indicator is a neat touch.",
          "Got rid of the litter box smell in our apartment."
        ],
        neg: [
          "Replacement filters cost nearly as much as the unit.",
          "Sounds like a jet engine on anything above low.",
          "The sensor says the air is \"good\" even when I'm burning toast.",
          "The filter light came on after only {n:3-6} weeks."
        ]
      },
      {
        name: "Stackable Bamboo Storage Bins (Set of 3)", noun: "storage bins", plural: true, kind: "durable",
        pos: [
          "Our pantry looks like a magazine photo now.",
          "Sturdy, and they stack without sliding.",
          "The natural bamboo looks warm and nice.",
          "Perfect for corralling all the random stuff in our entryway."
        ],
        neg: [
          "One arrived cracked.",
          "They're smaller than the dimensions suggest.",
          "Splinters on the edges.",
          "The finish is sticky and smells like varnish."
        ]
      }
    ],
    context: [
      "Bought {this} for our new apartment.",
      "Part of a bedroom makeover.",
      "Trying to make our rental feel less like a rental.",
      "We work from home, so the living room gets a lot of use."
    ],
    pos: [
      "Looks great in our living room.",
      "Exactly matches the photos.",
      "Made the room feel so much cozier.",
      "Guests always ask where we got {them}.",
      "A small upgrade that made a big difference."
    ],
    neg: [
      "Looks cheap in person.",
      "Nothing like the photos.",
      "[durable,r1,r2]Fell apart within a couple of months."
    ],
    nits: [
      "Assembly instructions were just diagrams.",
      "The color is slightly off from the listing.",
      "Took a few days for the packaging creases to relax."
    ],
    neutral: [
      "We have a fairly small apartment, for context.",
      "Our style is sort of Scandinavian-minimal, if that helps."
    ]
  }
]

// ---------------------------------------------------------------------------
// Template rendering
// ---------------------------------------------------------------------------

interface Line {
  readonly text: string
  readonly kinds: readonly string[]
  readonly ratings: readonly number[]
}

function parseLine(raw: string): Line {
  const m = /^\[([a-z0-9,]+)\]/.exec(raw)
  if (m === null) return { text: raw, kinds: [], ratings: [] }
  const tags = m[1].split(",")
  return {
    text: raw.slice(m[0].length),
    kinds: tags.filter((t) => !/^r\d$/.test(t)),
    ratings: tags.filter((t) => /^r\d$/.test(t)).map((t) => Number(t.slice(1)))
  }
}

// Filtered views of a bank for a product kind and rating; cached so shuffle bags stay stable.
const views = new Map<string, string[]>()
function view(name: string, bank: readonly string[], p: Product, rating: number): { key: string; xs: string[] } {
  const key = `${name}|${p.kind}|${rating}`
  let xs = views.get(key)
  if (xs === undefined) {
    const allowed = KIND_TAGS[p.kind]
    xs = bank
      .map(parseLine)
      .filter((l) => l.kinds.every((k) => allowed.includes(k)) && (l.ratings.length === 0 || l.ratings.includes(rating)))
      .map((l) => l.text)
    views.set(key, xs)
  }
  return { key, xs }
}

// Per-review choices: one duration, child and pet name per review, so sentences agree.
const reviewVars = new Map<string, string>()
function once(key: string, make: () => string): string {
  let v = reviewVars.get(key)
  if (v === undefined) {
    v = make()
    reviewVars.set(key, v)
  }
  return v
}

function tokenValue(key: string, p: Product): string {
  const pl = p.plural === true
  switch (key) {
    case "p": return p.name
    case "noun": return p.noun
    case "short": return `the ${p.noun}`
    case "this": return `${pl ? "these" : "this"} ${p.noun}`
    case "it": return pl ? "they" : "it"
    case "them": return pl ? "them" : "it"
    case "its": return pl ? "their" : "its"
    case "itis": return pl ? "they're" : "it's"
    case "is": return pl ? "are" : "is"
    case "was": return pl ? "were" : "was"
    case "has": return pl ? "have" : "has"
    case "does": return pl ? "do" : "does"
    case "isnt": return pl ? "aren't" : "isn't"
    case "wasnt": return pl ? "weren't" : "wasn't"
    case "doesnt": return pl ? "don't" : "doesn't"
    case "s": return pl ? "" : "s"
    case "es": return pl ? "" : "es"
    case "who": return pick(WHO)
    case "kid": return once("kid", () => (chance(0.25) ? `my ${int(3, 9)}-year-old` : pick(KIDS)))
    case "dur": return once("dur", () => pick(DURATIONS))
    case "pet": return p.pet ?? pick(["dog", "cat"])
    case "petname": return once("petname", () => pick(PET_NAMES))
    default: throw new Error(`unknown template token {${key}}`)
  }
}

function render(template: string, p: Product): string {
  return template
    .replace(/\{([^{}]*\|[^{}]*)\}/g, (_m, body: string) => pick(body.split("|")))
    .replace(/\{n:(\d+)-(\d+)\}/g, (_m, a: string, b: string) => String(int(Number(a), Number(b))))
    .replace(/\{([A-Za-z]+)\}/g, (_m, key: string) => {
      const lower = key[0].toLowerCase() + key.slice(1)
      const v = tokenValue(lower, p)
      return key[0] === lower[0] ? v : cap(v)
    })
}

// Lowercase a sentence's first letter so it can follow a connector ("But the lid ...").
const KEEP_CAPS = new Set([
  "I", "I'm", "I've", "I'd", "I'll", "Alexa", "Google", "AirPods", "Kindle", "BookTok", "TikTok", "YouTube",
  "Windows", "Mac", "USB-C", "LED", "RGB", "RC", "DO", "Christmas", "German", "Allen"
])
function decap(s: string, p: Product): string {
  const first = s.split(/[\s,.:;!?—]/)[0]
  if (KEEP_CAPS.has(first) || PET_NAMES.includes(first)) return s
  if (s.startsWith(p.name)) return s
  if (first.length > 1 && first === first.toUpperCase()) return s
  return s[0].toLowerCase() + s.slice(1)
}

const stripEnd = (s: string): string => s.replace(/[.!?…]+$/, "")

// ---------------------------------------------------------------------------
// Composition
// ---------------------------------------------------------------------------

type Length = "short" | "medium" | "long"

function compose(cat: Category, p: Product, rating: number): string {
  reviewVars.clear()
  const used = new Set<string>()
  const from = (name: string, bank: readonly string[]): string => {
    const { key, xs } = view(name, bank, p, rating)
    return render(draw(key, xs, used), p)
  }
  const has = (name: string, bank: readonly string[]): boolean => view(name, bank, p, rating).xs.length > 0
  // Product-specific lines win most of the time; category lines fill in (if any suit this product and rating).
  const praise = (): string =>
    chance(0.58) || !has(`cat:${cat.key}:pos`, cat.pos) ? from(`prod:${p.name}:pos`, p.pos) : from(`cat:${cat.key}:pos`, cat.pos)
  const complaint = (): string =>
    chance(0.58) || !has(`cat:${cat.key}:neg`, cat.neg) ? from(`prod:${p.name}:neg`, p.neg) : from(`cat:${cat.key}:neg`, cat.neg)
  const nit = (): string => {
    const useCategory = has(`cat:${cat.key}:nits`, cat.nits) && (chance(0.6) || !has("nits", NITS))
    return useCategory ? from(`cat:${cat.key}:nits`, cat.nits) : from("nits", NITS)
  }
  const lead = (leads: readonly string[], sentence: string): string => {
    const l = pick(leads)
    if (l === "") return sentence
    // "The only downside? The lid ..." but "My only complaint: the lid ..."
    return l.endsWith("? ") ? l + sentence : l + decap(sentence, p)
  }

  const body = (n: number): string[] => {
    const out: string[] = []
    switch (rating) {
      case 5:
        for (let i = 0; i < n; i++) out.push(praise())
        break
      case 4:
        for (let i = 0; i < Math.max(1, n - 1); i++) out.push(praise())
        if (n >= 2 || chance(0.5)) out.push(lead(NIT_LEADS, nit()))
        break
      case 3:
        if (chance(0.6)) {
          out.push(praise())
          out.push(lead(MIXED_LEADS, chance(0.55) ? complaint() : nit()))
        } else {
          out.push(chance(0.6) ? complaint() : nit())
          out.push(lead(PLUS_LEADS, praise()))
        }
        if (n >= 3) out.push(from(`cat:${cat.key}:neutral`, cat.neutral))
        break
      case 2:
        for (let i = 0; i < Math.max(1, n - 1); i++) out.push(complaint())
        if (chance(0.6)) out.push(lead(FAIR_LEADS, praise()))
        else if (n >= 2) out.push(complaint())
        break
      default:
        for (let i = 0; i < n; i++) out.push(complaint())
    }
    return out
  }

  const prosCons = (): string => {
    const pros = [praise(), praise()].map((s) => decap(stripEnd(s), p))
    const cons = [rating === 3 ? complaint() : nit()].map((s) => decap(stripEnd(s), p))
    return `Pros: ${pros.join("; ")}. Cons: ${cons.join("; ")}.`
  }

  const opener = (): string =>
    from("open", rating >= 4 ? OPEN_POS : rating === 3 ? OPEN_MID : OPEN_NEG)
  const context = (): string =>
    chance(0.45) ? from(`cat:${cat.key}:context`, cat.context) : from("context", CONTEXT)
  const closing = (): string => from(`close${rating}`, CLOSE[rating])
  // At most one remark per topic (shipping, support, price) in a review.
  const topics = new Set<string>()
  const logistics = (): string => {
    const options: ReadonlyArray<readonly [string, string, readonly string[], number]> =
      rating >= 4
        ? [["ship", "shipPos", SHIP_POS, 45], ["value", "valuePos", VALUE_POS, 30], ["service", "servicePos", SERVICE_POS, 25]]
        : rating === 3
          ? [["value", "valueMid", VALUE_MID, 50], ["ship", "shipPos", SHIP_POS, 25], ["ship", "shipNeg", SHIP_NEG, 25]]
          : [["ship", "shipFast", ["At least shipping was fast.", "Shipping was quick, I'll give them that."], 10],
             ["ship", "shipNeg", SHIP_NEG, 30], ["service", "serviceNeg", SERVICE_NEG, 32], ["value", "valueNeg", VALUE_NEG, 28]]
    const open = options.filter(([topic]) => !topics.has(topic))
    if (open.length === 0) return closing()
    const [topic, name, bank] = weighted(open.map((o) => [o, o[3]] as const))
    topics.add(topic)
    return from(name, bank)
  }

  const lr = rand()
  const length: Length = lr < 0.24 ? "short" : lr < 0.68 ? "medium" : "long"
  let parts: string[] = []

  if (length === "short") {
    const r = rand()
    if (r < 0.45) parts = [from(`one${rating}`, ONE_LINERS[rating])]
    else if (r < 0.7) parts = [from(`one${rating}`, ONE_LINERS[rating]), ...body(1)]
    else parts = body(1)
  } else if (length === "medium") {
    if (chance(0.35)) parts.push(opener())
    if (chance(0.3)) parts.push(context())
    if ((rating === 3 || rating === 4) && chance(0.08)) parts.push(prosCons())
    else parts.push(...body(int(1, 2)))
    if (chance(0.2)) parts.push(logistics())
    if (chance(0.45)) parts.push(closing())
    if (parts.length < 2) parts.push(chance(0.5) ? closing() : context())
  } else {
    if (chance(0.6)) parts.push(opener())
    if (chance(0.65)) parts.push(context())
    if ((rating === 3 || rating === 4) && chance(0.1)) parts.push(prosCons())
    else parts.push(...body(int(2, 3)))
    if (chance(0.3)) parts.push(from(`cat:${cat.key}:neutral`, cat.neutral))
    if (chance(0.6)) parts.push(logistics())
    if (chance(0.25)) parts.push(logistics())
    if (chance(0.8)) parts.push(closing())
    if (parts.length < 4) parts.push(chance(0.5) ? from(`cat:${cat.key}:neutral`, cat.neutral) : logistics())
  }

  parts = parts.map((s) => cap(s))
  // Occasionally a long review is written in two paragraphs.
  let text: string
  if (length === "long" && parts.length >= 4 && chance(0.04)) {
    const at = int(2, parts.length - 1)
    text = `${parts.slice(0, at).join(" ")}\n\n${parts.slice(at).join(" ")}`
  } else {
    text = parts.join(" ")
  }
  return casualize(text, rating)
}

// ---------------------------------------------------------------------------
// Casualization: typos, slang, lowercase, emoji
// ---------------------------------------------------------------------------

const MISSPELLINGS: ReadonlyArray<readonly [RegExp, string]> = [
  [/\bdefinitely\b/, "definately"],
  [/\breceived\b/, "recieved"],
  [/\breally\b/, "realy"],
  [/\bbecause\b/, "becuase"],
  [/\bprobably\b/, "probly"],
  [/\bquality\b/, "qaulity"],
  [/\brecommend\b/, "reccomend"],
  [/\bdisappointed\b/, "dissapointed"],
  [/\babsolutely\b/, "absolutly"],
  [/\bweird\b/, "wierd"],
  [/\bliterally\b/, "litterally"],
  [/\bit's\b/, "its"],
  [/\ba lot\b/, "alot"],
  [/\bthe the\b/, "the"],
  [/\buntil\b/, "untill"],
  [/\bthrough\b/, "thru"],
  [/\bsurprisingly\b/, "suprisingly"],
  [/\bexpected\b/, "expcted"],
  [/\bcomfortable\b/, "comfortible"],
  [/\bnoticeably\b/, "noticably"],
  [/\bexactly\b/, "exactley"],
  [/\bthey're\b/, "their"]
]

const SLANG: ReadonlyArray<readonly [RegExp, string]> = [
  [/\bdefinitely\b/, "def"],
  [/\bthough\b/, "tho"],
  [/\bgoing to\b/, "gonna"],
  [/\bkind of\b/, "kinda"],
  [/\bprobably\b/, "prob"],
  [/\bbecause\b/, "bc"],
  [/\bHonestly,?\b/, "Ngl"],
  [/\byou\b/, "u"],
  [/\bsomething\b/, "smth"],
  [/\bpeople\b/, "ppl"],
  [/\bplease\b/, "pls"],
  [/\bwith\b/, "w/"],
  [/\band\b/, "&"]
]

const EMOJI: Record<number, readonly string[]> = {
  5: ["😍", "👍", "🙌", "❤️", "🔥", "💯", "😊", "⭐⭐⭐⭐⭐", "🥰"],
  4: ["👍", "🙂", "😊", "👌"],
  3: ["🤷", "😐", "🤔", "🤷‍♀️"],
  2: ["😕", "👎", "🙄", "😒"],
  1: ["👎", "😡", "🙄", "😤", "🤦‍♂️", "💀"]
}

function typo(text: string): string {
  const options = shuffle(MISSPELLINGS.filter(([re]) => re.test(text)))
  if (options.length > 0 && chance(0.75)) {
    const [re, rep] = options[0]
    return text.replace(re, rep)
  }
  // Swap two adjacent letters inside a longer word.
  const words = [...text.matchAll(/\b[a-z]{6,}\b/g)]
  if (words.length === 0) return text
  const w = pick(words)
  const i = int(1, w[0].length - 3)
  const swapped = w[0].slice(0, i) + w[0][i + 1] + w[0][i] + w[0].slice(i + 2)
  const at = w.index ?? 0
  return text.slice(0, at) + swapped + text.slice(at + w[0].length)
}

function casualize(input: string, rating: number): string {
  let t = input
  if (chance(0.14)) {
    t = typo(t)
    if (chance(0.3)) t = typo(t)
  }
  if (chance(0.11)) {
    const options = shuffle(SLANG.filter(([re]) => re.test(t)))
    for (const [re, rep] of options.slice(0, int(1, 2))) t = t.replace(re, rep)
  }
  if (chance(0.05)) {
    t = chance(0.5)
      ? `${pick(["ok so ", "So ", "Honestly ", "lol ", "Welp. "])}${decapAny(t)}`
      : `${stripEnd(t)}${pick([" lol", " tbh", " imo", " haha", " fwiw", "..."])}`
  }
  if (rating >= 4 && chance(0.06)) t = t.replace(/[.!]$/, "!!!")
  if (rating <= 2 && chance(0.05)) t = t.replace(/\.$/, "!!")
  if (chance(0.035)) t = t.toLowerCase()
  if (chance(0.07)) t = t.replace(/(?<!\.)\.$/, "")
  if (chance(0.07)) {
    const e = pick(EMOJI[rating])
    t = chance(0.7) ? `${t} ${e}` : `${stripEnd(t)} ${e}${chance(0.4) ? ` ${e}` : ""}`
  }
  return t
}

function decapAny(s: string): string {
  if (/^I\b/.test(s)) return s
  return s[0].toLowerCase() + s.slice(1)
}

// ---------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------

interface Review {
  readonly id: string
  readonly text: string
  readonly product: string
  readonly rating: number
}

const RATING_WEIGHTS: ReadonlyArray<readonly [number, number]> = [[5, 39], [4, 23], [3, 13], [2, 9], [1, 16]]

// Texts differing only in case, punctuation or emoji count as the same review.
const normalize = (text: string): string => text.toLowerCase().replace(/[^\p{L}\p{N}]+/gu, " ").trim()

function generate(): Review[] {
  const seen = new Set<string>()
  const reviews: Review[] = []
  const catWeights = CATEGORIES.map((c) => [c, c.weight] as const)
  for (let i = 1; i <= COUNT; i++) {
    const cat = weighted(catWeights)
    const names = cat.products.map((p) => p.name)
    const used = new Set<string>()
    const name = draw(`products:${cat.key}`, names, used)
    const product = cat.products.find((p) => p.name === name) as Product
    const rating = weighted(RATING_WEIGHTS)
    let text = ""
    for (let attempt = 0; ; attempt++) {
      text = compose(cat, product, rating)
      if (!seen.has(normalize(text))) break
      if (attempt > 200) throw new Error(`could not produce a unique review for #${i}`)
    }
    seen.add(normalize(text))
    reviews.push({ id: `rev-${String(i).padStart(4, "0")}`, text, product: product.name, rating })
  }
  return reviews
}

const reviews = generate()
mkdirSync(dirname(OUT), { recursive: true })
writeFileSync(OUT, reviews.map((r) => JSON.stringify(r)).join("\n") + "\n", "utf8")

const byRating = new Map<number, number>()
for (const r of reviews) byRating.set(r.rating, (byRating.get(r.rating) ?? 0) + 1)
const products = new Set(reviews.map((r) => r.product))
console.error(
  `wrote ${reviews.length} reviews (${new Set(reviews.map((r) => r.text)).size} distinct texts, ` +
    `${products.size} products) to ${OUT}; ratings: ` +
    [5, 4, 3, 2, 1].map((k) => `${k}★ ${byRating.get(k) ?? 0}`).join(", ")
)
