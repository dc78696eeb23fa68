#!/usr/bin/env node
// kafkajs 2.2.4 through a leader failover: an idempotent producer (acks -1)
// sends COUNT keyed messages one at a time while a consumer group reads them;
// the test kills the partition's leader meanwhile. kafkajs retries what is
// retriable by itself: every send must succeed, and the group must read every
// value, each key's values first read in the order they were sent (a
// consumer that restarts reads again from its last commit: values read twice
// are counted, as Kafka's at-least-once delivery allows them).
//
// kafkajs does not refresh its metadata when a fetch fails to connect (its
// issue 1439: against Kafka too, a consumer whose leader died retries the
// dead broker until its retries run out, ~30 s here, then restarts), so
// the client refreshes metadata older than 3 s (`metadataMaxAge`), as a
// user wanting quick failovers configures it. Consumer crashes are logged
// with their root cause; one kafkajs does not restart from fails at once.
// The consumer's progress (values read) and group joins are logged every
// few seconds, so a slow catch-up shows where it stalled. Measured here:
// when the killed node was one the consumer fetched from, it barely
// advances (1 value per 5 s) for ~35 s, until kafkajs gives up on that
// broker (KafkaJSNumberOfRetriesExceeded) and restarts it; fewer retries
// or a 5 s request timeout for the consumer's client did not shorten that.
// Its wait after the last send is therefore 100 s, for a loaded machine.
// A watchdog thread prints where the main thread spins if its event loop
// stops turning (see the end of main for the kafkajs bug it found).
//
// Usage: node kafkajs_failover.js --bootstrap h:p,h:p --topic T --group G --count N
// Prints one JSON summary line on success; exits 1 with a message otherwise.
'use strict'

const { Kafka, Partitioners, logLevel } = require('kafkajs')
const { Worker } = require('worker_threads')

// Watchdog: a thread that, when this (main) thread's event loop has not
// turned for 5 s, profiles it through the inspector and prints where it
// spins (written straight to fd 2: a worker's process.stderr goes through the
// frozen main thread).
function watchEventLoop() {
  const beat = new Int32Array(new SharedArrayBuffer(4))
  setInterval(() => Atomics.add(beat, 0, 1), 250).unref()
  new Worker(`(${watchdog})()`, { eval: true, workerData: beat }).unref()
}

// Runs in the watchdog thread: on a freeze, profiles the main thread for
// 2 s and prints the functions it spent that time in, each with its callers.
function watchdog() {
  const { workerData: beat } = require('worker_threads')
  const inspector = require('inspector')
  const fs = require('fs')
  // Connected only once it froze: a connected session makes the process
  // wait at exit ("Waiting for the debugger to disconnect").
  let s = null
  const name = f => `${f.functionName || '<anon>'} ${f.url.replace(/.*node_modules\//, '')}:${f.lineNumber + 1}`
  const report = profile => {
    const parent = new Map()
    for (const n of profile.nodes) for (const c of n.children || []) parent.set(c, n)
    const hot = profile.nodes.filter(n => n.hitCount > 0).sort((a, b) => b.hitCount - a.hitCount)
    const lines = hot.slice(0, 8).map(n => {
      const chain = []
      for (let p = n; p && chain.length < 8; p = parent.get(p.id)) chain.push(name(p.callFrame))
      return `  ${n.hitCount} samples: ${chain.join(' <- ')}`
    })
    fs.writeSync(2, `event loop frozen for ${still} s; where the main thread spins:\n${lines.join('\n')}\n`)
  }
  let last = -1
  let still = 0
  let reports = 0
  setInterval(() => {
    const now = Atomics.load(beat, 0)
    still = now === last ? still + 1 : 0
    last = now
    if (still < 5 || reports >= 2 || still % 5 !== 0) return
    reports++
    if (!s) {
      s = new inspector.Session()
      s.connectToMainThread()
      s.post('Profiler.enable')
    }
    s.post('Profiler.start', () =>
      setTimeout(() => s.post('Profiler.stop', (err, r) => !err && report(r.profile)), 2000)
    )
  }, 1000)
}

const WAIT_MS = 100000
const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))

function parseArgs(argv) {
  const out = {}
  for (let i = 0; i < argv.length; i += 2) out[argv[i].slice(2)] = argv[i + 1]
  for (const need of ['bootstrap', 'topic', 'group', 'count']) {
    if (!out[need]) throw new Error(`--${need} is required`)
  }
  return out
}

function check(cond, msg) {
  if (!cond) throw new Error(`check failed: ${msg}`)
}

const errors = []
const logCreator = () => ({ level, label, log }) => {
  const { message, ...extra } = log
  if (level <= logLevel.ERROR) errors.push(`${label} ${message}`)
  process.stderr.write(`[kafkajs ${label}] ${message} ${JSON.stringify(extra)}\n`)
}

async function main() {
  const a = parseArgs(process.argv.slice(2))
  watchEventLoop()
  const count = Number(a.count)
  const kafka = new Kafka({
    clientId: 'weir-failover',
    brokers: a.bootstrap.split(','),
    logLevel: process.env.KJS_DEBUG ? logLevel.DEBUG : logLevel.WARN,
    logCreator,
    retry: { retries: 30, initialRetryTime: 100, maxRetryTime: 1000 },
  })
  let stopped = null
  const seen = new Map()
  const consumer = kafka.consumer({
    groupId: a.group,
    sessionTimeout: 10000,
    heartbeatInterval: 1000,
    metadataMaxAge: 3000,
  })
  consumer.on(consumer.events.CRASH, ({ payload: { error, restart } }) => {
    let cause = error
    while (cause.cause) cause = cause.cause
    const crash = { error: error.name, cause: cause.name, type: cause.type, message: cause.message, restart }
    process.stderr.write(`consumer crash: ${JSON.stringify(crash)}\n`)
    if (!restart) stopped = crash
  })
  consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => {
    process.stderr.write(`consumer joined: ${JSON.stringify({ leader: payload.isLeader, assignment: payload.memberAssignment })}\n`)
  })
  const started = Date.now()
  const progress = setInterval(() => {
    process.stderr.write(`consumer read ${seen.size} distinct at ${((Date.now() - started) / 1000).toFixed(1)} s\n`)
  }, 5000)
  await consumer.connect()
  await consumer.subscribe({ topic: a.topic, fromBeginning: true })
  let read = 0
  let duplicates = 0
  const newest = new Map()
  const disorder = []
  await consumer.run({
    eachMessage: async ({ message }) => {
      const v = message.value.toString()
      if (seen.has(v)) {
        duplicates++
      } else {
        // A key's values are first read in the order they were sent.
        const [key, i] = v.split(':')
        const n = Number(i)
        if (n < (newest.get(key) ?? -1)) disorder.push(v)
        else newest.set(key, n)
      }
      seen.set(v, true)
      read++
    },
  })
  const producer = kafka.producer({
    createPartitioner: Partitioners.DefaultPartitioner,
    idempotent: true,
    maxInFlightRequests: 1,
    allowAutoTopicCreation: false,
  })
  await producer.connect()
  for (let i = 0; i < count; i++) {
    const key = `k${i % 8}`
    await producer.send({ topic: a.topic, acks: -1, messages: [{ key, value: `${key}:${i}` }] })
    if (i % 100 === 0) process.stderr.write(`sent ${i}\n`)
  }
  await producer.disconnect()
  const end = Date.now() + WAIT_MS
  while (seen.size < count && Date.now() < end && !stopped) await sleep(100)
  clearInterval(progress)
  check(!stopped, `the consumer stopped for good: ${JSON.stringify(stopped)}`)
  check(seen.size === count, `the group read ${seen.size} distinct values of ${count}`)
  check(disorder.length === 0, `values read before an earlier one of their key: ${disorder.slice(0, 10)}`)
  console.log(JSON.stringify({ sent: count, distinct: seen.size, read, duplicates, errors: errors.length }))
  // No consumer.disconnect(): in kafkajs 2.2.4 it can spin for ever when it
  // races a change of the client's broker list (a dead broker dropped or
  // taken back from metadata). The runner's stop() stops the fetchers of
  // the moment, while the fetch manager, rebalancing them for the new list,
  // creates new ones after it; those fetch from a stopped runner, which
  // answers at once, in a loop of promises that never yields to the event
  // loop (found with the watchdog above: 3 of 8 runs froze here after
  // reading every value). The broker expires the member after its session.
  process.exit(0)
}

main().catch(e => {
  console.error(`FAIL: ${e.stack || e}`)
  process.exit(1)
})
