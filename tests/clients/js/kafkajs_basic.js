#!/usr/bin/env node
// kafkajs 2.2.4 against Weir: admin createTopics (3 partitions); 60 keyed
// messages with acks -1, half plain and half gzip; a consumer group reads them
// all (per-key order, one partition per key), commits, and a second member of
// the same group gets nothing re-delivered; admin fetchOffsets equals the high
// watermarks and fetchTopicOffsetsByTimestamp finds the exact split between
// the two produce calls.
//
// Usage: node kafkajs_basic.js --bootstrap host:port --topic T --group G
// Prints one JSON summary line on success; exits 1 with a message otherwise.
'use strict'

const { Kafka, Partitioners, CompressionTypes, logLevel } = require('kafkajs')

const COUNT = 60
const KEYS = 6
const PARTITIONS = 3
// How long the second member must stay quiet after it has joined and fetched.
const QUIET_MS = 3000
// Bound on each wait in this script (the harness also kills it at 90 s).
const WAIT_MS = 30000

function parseArgs(argv) {
  const out = {}
  for (let i = 0; i < argv.length; i += 2) {
    const flag = argv[i]
    const value = argv[i + 1]
    if (!flag.startsWith('--') || value === undefined) {
      throw new Error(`bad arguments near ${JSON.stringify(flag)}`)
    }
    out[flag.slice(2)] = value
  }
  for (const need of ['bootstrap', 'topic', 'group']) {
    if (!out[need]) throw new Error(`--${need} is required`)
  }
  return out
}

function check(cond, msg) {
  if (!cond) throw new Error(`check failed: ${msg}`)
}

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))

// Resolves with `promise`, or rejects after `ms` naming `what`.
function within(ms, what, promise) {
  let timer
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

// kafkajs logs go to stderr so stdout carries only the JSON summary.
const logCreator = () => ({ namespace, level, label, log }) => {
  const { message, ...extra } = log
  process.stderr.write(`[kafkajs ${label} ${namespace}] ${message} ${JSON.stringify(extra)}\n`)
}

async function main() {
  const a = parseArgs(process.argv.slice(2))
  const kafka = new Kafka({
    clientId: 'weir-kafkajs',
    brokers: [a.bootstrap],
    logLevel: logLevel.WARN,
    logCreator,
    retry: { retries: 5 },
  })

  const admin = kafka.admin()
  await admin.connect()
  const created = await admin.createTopics({
    topics: [{ topic: a.topic, numPartitions: PARTITIONS, replicationFactor: 1 }],
    waitForLeaders: true,
  })
  check(created === true, `createTopics returned ${created} (topic already existed?)`)
  const meta = await admin.fetchTopicMetadata({ topics: [a.topic] })
  check(
    meta.topics.length === 1 && meta.topics[0].partitions.length === PARTITIONS,
    `metadata after create: ${JSON.stringify(meta)}`
  )

  // Produce: values `k<i>:<seq>` with per-key sequence numbers; the first half
  // uncompressed, the second half gzip. acks -1 is kafkajs's default.
  const producer = kafka.producer({
    createPartitioner: Partitioners.DefaultPartitioner,
    allowAutoTopicCreation: false,
  })
  await producer.connect()
  const seqs = new Array(KEYS).fill(0)
  const makeMessages = n =>
    Array.from({ length: n }, (_, i) => {
      const k = i % KEYS
      return { key: `k${k}`, value: `k${k}:${seqs[k]++}` }
    })
  const half = COUNT / 2
  const plain = await producer.send({ topic: a.topic, acks: -1, messages: makeMessages(half) })
  // Every record of the first send is stamped before `split`; every record of
  // the second send after it.
  const split = Date.now() + 1
  while (Date.now() <= split) await sleep(2)
  const gzip = await producer.send({
    topic: a.topic,
    acks: -1,
    compression: CompressionTypes.GZIP,
    messages: makeMessages(half),
  })
  await producer.disconnect()
  for (const r of [...plain, ...gzip]) {
    check(r.errorCode === 0, `produce response error: ${JSON.stringify(r)}`)
  }

  const high = await admin.fetchTopicOffsets(a.topic)
  const highByPart = {}
  let total = 0
  for (const p of high) {
    highByPart[p.partition] = Number(p.high)
    check(Number(p.low) === 0, `partition ${p.partition} low watermark ${p.low}`)
    total += Number(p.high)
  }
  check(total === COUNT, `high watermarks sum to ${total}, expected ${COUNT}: ${JSON.stringify(high)}`)

  // Consume everything with a group member, then commit and leave.
  const consumer = kafka.consumer({ groupId: a.group })
  await consumer.connect()
  await consumer.subscribe({ topics: [a.topic], fromBeginning: true })
  const recs = []
  let allArrived
  const arrived = new Promise(resolve => (allArrived = resolve))
  let crashed
  const crash = new Promise((_, reject) => (crashed = reject))
  consumer.on(consumer.events.CRASH, e => crashed(new Error(`consumer crashed: ${e.payload.error}`)))
  await consumer.run({
    autoCommit: false,
    eachMessage: async ({ partition, message }) => {
      recs.push({
        partition,
        offset: Number(message.offset),
        key: message.key && message.key.toString(),
        value: message.value && message.value.toString(),
        timestamp: Number(message.timestamp),
      })
      if (recs.length >= COUNT) allArrived()
    },
  })
  const consumeStart = Date.now()
  await within(WAIT_MS, `${COUNT} messages (got ${recs.length})`, Promise.race([arrived, crash]))
  const consumeMs = Date.now() - consumeStart

  // Per-partition offsets dense from 0; each key on one partition; per-key order.
  check(recs.length === COUNT, `consumed ${recs.length} records, expected ${COUNT}`)
  const sorted = [...recs].sort((x, y) => x.partition - y.partition || x.offset - y.offset)
  const keyPart = {}
  const keyNext = {}
  const perPart = {}
  for (const r of sorted) {
    const want = perPart[r.partition] || 0
    check(r.offset === want, `partition ${r.partition}: offset ${r.offset}, expected ${want}`)
    perPart[r.partition] = want + 1
    const [vk, seq] = r.value.split(':')
    check(vk === r.key, `record ${JSON.stringify(r)}: value names key ${vk}`)
    if (keyPart[r.key] === undefined) keyPart[r.key] = r.partition
    check(keyPart[r.key] === r.partition, `key ${r.key} in partitions ${keyPart[r.key]} and ${r.partition}`)
    const next = keyNext[r.key] || 0
    check(Number(seq) === next, `key ${r.key}: seq ${seq} at ${r.partition}:${r.offset}, expected ${next}`)
    keyNext[r.key] = next + 1
  }
  for (const [p, n] of Object.entries(perPart)) {
    check(n === highByPart[p], `partition ${p}: consumed ${n}, high watermark ${highByPart[p]}`)
  }

  const commits = Array.from({ length: PARTITIONS }, (_, p) => ({
    topic: a.topic,
    partition: p,
    offset: String(perPart[p] || 0),
  }))
  await consumer.commitOffsets(commits)
  const stopStart = Date.now()
  await within(WAIT_MS, 'first consumer disconnect', consumer.disconnect())
  const disconnectMs = Date.now() - stopStart

  // Committed offsets are the high watermarks.
  const fetched = await admin.fetchOffsets({ groupId: a.group, topics: [a.topic] })
  check(fetched.length === 1 && fetched[0].topic === a.topic, `fetchOffsets: ${JSON.stringify(fetched)}`)
  check(fetched[0].partitions.length === PARTITIONS, `fetchOffsets partitions: ${JSON.stringify(fetched)}`)
  for (const p of fetched[0].partitions) {
    check(
      Number(p.offset) === highByPart[p.partition],
      `committed offset of partition ${p.partition} is ${p.offset}, high watermark ${highByPart[p.partition]}`
    )
  }

  // A second member of the same group resumes at the committed offsets: once it
  // has joined and fetched, nothing arrives for QUIET_MS.
  const again = kafka.consumer({ groupId: a.group, maxWaitTimeInMs: 500 })
  await again.connect()
  await again.subscribe({ topics: [a.topic], fromBeginning: true })
  const redelivered = []
  let joined
  const joinedP = new Promise(resolve => (joined = resolve))
  let fetchedOnce
  const fetchedP = new Promise(resolve => (fetchedOnce = resolve))
  let assigned = null
  again.on(again.events.GROUP_JOIN, e => {
    assigned = e.payload.memberAssignment
    joined()
  })
  again.on(again.events.FETCH, () => fetchedOnce())
  let crashed2
  const crash2 = new Promise((_, reject) => (crashed2 = reject))
  again.on(again.events.CRASH, e => crashed2(new Error(`second consumer crashed: ${e.payload.error}`)))
  await again.run({
    autoCommit: false,
    eachMessage: async ({ partition, message }) => {
      redelivered.push(`${partition}:${message.offset}`)
    },
  })
  await within(WAIT_MS, 'second consumer join', Promise.race([joinedP, crash2]))
  await within(WAIT_MS, 'second consumer first fetch', Promise.race([fetchedP, crash2]))
  await Promise.race([sleep(QUIET_MS), crash2])
  await within(WAIT_MS, 'second consumer disconnect', again.disconnect())
  check(redelivered.length === 0, `records re-delivered after commit: ${redelivered.join(', ')}`)
  const assignedParts = (assigned && assigned[a.topic]) || []
  check(assignedParts.length === PARTITIONS, `second consumer assignment: ${JSON.stringify(assigned)}`)

  // ListOffsets by timestamp: before everything -> 0; the split between the two
  // sends -> the first gzip record of each partition; the future -> the high
  // watermark (kafkajs maps the broker's -1 to it).
  const firstHalf = {}
  for (const r of recs) {
    if (r.timestamp < split) firstHalf[r.partition] = (firstHalf[r.partition] || 0) + 1
  }
  const plainCount = Object.values(firstHalf).reduce((x, y) => x + y, 0)
  check(plainCount === half, `${plainCount} records stamped before the split, expected ${half}`)
  const byTs = async ts => {
    const res = await admin.fetchTopicOffsetsByTimestamp(a.topic, ts)
    check(res.length === PARTITIONS, `fetchTopicOffsetsByTimestamp(${ts}): ${JSON.stringify(res)}`)
    return Object.fromEntries(res.map(p => [p.partition, Number(p.offset)]))
  }
  const atZero = await byTs(0)
  const atSplit = await byTs(split)
  const atFuture = await byTs(Date.now() + 3600 * 1000)
  for (let p = 0; p < PARTITIONS; p++) {
    check(atZero[p] === 0, `offset for timestamp 0 of partition ${p}: ${atZero[p]}`)
    const want = firstHalf[p] || 0
    check(atSplit[p] === want, `offset for the split timestamp of partition ${p}: ${atSplit[p]}, expected ${want}`)
    check(atFuture[p] === highByPart[p], `offset for a future timestamp of partition ${p}: ${atFuture[p]}`)
  }
  await admin.disconnect()

  process.stdout.write(
    JSON.stringify({
      ok: true,
      topic: a.topic,
      group: a.group,
      produced: COUNT,
      consumed: recs.length,
      per_partition: perPart,
      committed: Object.fromEntries(fetched[0].partitions.map(p => [p.partition, Number(p.offset)])),
      split_offsets: atSplit,
      consume_ms: consumeMs,
      disconnect_ms: disconnectMs,
    }) + '\n'
  )
}

main().then(
  () => process.exit(0),
  e => {
    process.stderr.write(`kafkajs_basic.js FAILED: ${(e && e.stack) || e}\n`)
    process.exit(1)
  }
)
