/** Reading results.jsonl lines cheaply: their head, without parsing the raw answer they hold. */

const usagePattern = /,"usage":\{"inputTokens":(\d+),"outputTokens":(\d+),"cachedInputTokens":(\d+)\}/

/**
 * The head of a results.jsonl line, read without parsing the line (it holds the raw answer,
 * often far longer than the rest): the Collector writes `{"shard":…,"attempt":…,["cached":true,]"_tag":…,"customId":…`.
 * A `,"usage":{` can only be the field itself: a JSON string holds no unescaped quote.
 */
export const resultHead = (line: string) => {
  const shardEnd = line.indexOf(`","attempt":`)
  if (!line.startsWith(`{"shard":"`) || shardEnd < 0) return undefined
  const shard = JSON.parse(line.slice(9, shardEnd + 1)) as string
  const tagAt = line.indexOf(`"_tag":"`, shardEnd)
  const cached = line.slice(shardEnd, tagAt).includes(`"cached":true`)
  const succeeded = line.startsWith(`"_tag":"Succeeded","customId":"`, tagAt)
  const idStart = line.indexOf(`"customId":"`, tagAt) + 12
  let customId = line.slice(idStart, line.indexOf(`"`, idStart))
  // An id with an escape in it (sluice writes none, but a key may hold anything): read it properly.
  if (customId.includes("\\")) customId = (JSON.parse(line) as { customId: string }).customId
  // The usage field comes before the raw answer: the first match is it.
  const usage = succeeded ? usagePattern.exec(line) : null
  return { shard, cached, succeeded, customId, usage: usage === null ? null : { input: Number(usage[1]), output: Number(usage[2]) } }
}

