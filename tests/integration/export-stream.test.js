'use strict';
// [records] redis_stream: every record is XADDed (field "record", the JSON line of the
// records file) with MAXLEN ~ redis_stream_maxlen, so a consumer group reads usage as it
// happens. Checked: a consumer group sees every record of the file exactly once (ok and
// blocked alike); records made while Redis is down reach the stream when it is back; the
// stream name is reloadable with SIGHUP; MAXLEN trims.

const assert = require('node:assert/strict');
const fs = require('node:fs');
const { describe, test } = require('node:test');
const h = require('../lib/harness');
const { RedisCtl, metric } = require('../lib/redis-ctl');

async function chat(tg, tenant, content, model = 'gpt-4o-mini') {
  try {
    const { response } = await h.openaiClient(tg, tenant).chat.completions
      .create({ model, messages: [{ role: 'user', content }] }).withResponse();
    return { status: response.status, id: response.headers.get('x-tollgate-request-id') };
  } catch (e) {
    return { status: e.status, id: e.headers && e.headers.get('x-tollgate-request-id') };
  }
}

// XREADGROUP's raw redis-cli output: the record lines are the JSON objects.
async function readGroup(redis, key, group, consumer) {
  const lines = await redis.cmd('XREADGROUP', 'GROUP', group, consumer, 'COUNT', '100000', 'STREAMS', key, '>');
  return lines.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
}

async function streamRecords(redis, key) {
  const lines = await redis.cmd('XRANGE', key, '-', '+');
  return lines.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
}

describe('redis_stream', () => {
  const key = 'tollgate:usage';
  const env = h.useStack({
    overrides: {
      records: { redis_stream: key },
      'plan tiny': { price: '1', budget_monthly: '0.000001', on_exceed: 'block' },
      'tenant st-poor': { plan: 'tiny' },
    },
  });

  test('a consumer group reads every record exactly once, ok and blocked alike', { timeout: h.ms(30000) }, async () => {
    await env.redis.cmd('XGROUP', 'CREATE', key, 'billing', '$', 'MKSTREAM');
    const tenant = h.uniq('st');
    const poor = 'st-poor';
    const ids = [];
    for (let i = 0; i < 12; i++) ids.push((await chat(env.tg, tenant, `r${i} mock:tokens=20,7`)).id);
    const first = await chat(env.tg, poor, 'mock:tokens=2000,2000', 'gpt-4o');
    await env.redis.waitRequests(poor, 1);
    const blocked = await chat(env.tg, poor, 'mock:tokens=20,7', 'gpt-4o');
    assert.equal(blocked.status, 429);
    ids.push(first.id, blocked.id);

    const got = [];
    await h.waitFor(async () => {
      got.push(...await readGroup(env.redis, key, 'billing', 'c1'));
      return ids.every((id) => got.some((r) => r.id === id));
    }, { timeout: h.ms(10000), what: 'every record in the stream' });
    const mine = got.filter((r) => ids.includes(r.id));
    assert.equal(mine.length, ids.length, 'each record once');
    const file = await env.tg.records((r) => ids.includes(r.id), ids.length);
    for (const r of file) {
      const s = mine.find((x) => x.id === r.id);
      assert.deepEqual(s, r, 'the stream entry is the record of the file');
      h.assertRecordShape(s);
    }
    assert.equal(mine.find((r) => r.id === blocked.id).outcome, 'blocked');
    assert.deepEqual(await readGroup(env.redis, key, 'billing', 'c2'), [], 'nothing left for the group');
    assert.ok(await metric(env.tg, 'tollgate_redis_stream_added_total') >= ids.length);
  });

  test('the stream name is reloaded with SIGHUP', { timeout: h.ms(20000) }, async () => {
    const tg = env.tg;
    const next = 'tollgate:usage2';
    fs.writeFileSync(tg.configFile, h.renderConfig(tg.cfg, { records: { redis_stream: next } }).text);
    const loaded = () => (tg.stderr.match(/worker \d+: new requests use the reloaded config/g) || []).length;
    const before = loaded();
    tg.proc.child.kill('SIGHUP');
    await h.waitFor(() => loaded() >= before + 2, { timeout: h.ms(5000), what: 'both workers reloaded' });
    const r = await chat(tg, h.uniq('st-hup'), 'mock:tokens=5,5');
    await h.waitFor(async () => (await streamRecords(env.redis, next)).some((x) => x.id === r.id),
      { timeout: h.ms(5000), what: 'the record in the reloaded stream' });
    assert.ok(!(await streamRecords(env.redis, key)).some((x) => x.id === r.id), 'not in the old stream');
  });

  h.cleanRunTest(env);
});

describe('redis_stream while Redis is away, and MAXLEN', () => {
  test('records made while Redis is down reach the stream when it is back', { timeout: h.ms(40000) }, async () => {
    const rc = await RedisCtl.reserve();
    const mock = await h.startMock();
    let tg = null;
    try {
      await rc.start();
      tg = await h.startTollgate({ redis: rc, mock, overrides: {
        redis: { url: rc.url, on_failure: 'open', timeout: '250ms' },
        records: { redis_stream: 'usage' } } });
      const tenant = h.uniq('st-down');
      const a = await chat(tg, tenant, 'mock:tokens=10,5');
      await h.waitFor(async () => (await streamRecords(rc, 'usage')).some((x) => x.id === a.id), { what: 'first record' });
      await rc.stop();
      const down = [];
      for (let i = 0; i < 5; i++) {
        const r = await chat(tg, tenant, `d${i} mock:tokens=10,5`);
        assert.equal(r.status, 200, 'on_failure = open serves');
        down.push(r.id);
      }
      await h.waitFor(async () => (await metric(tg, 'tollgate_redis_stream_backlog')) >= 5, { what: 'backlog gauge' });
      await rc.start(); // empty: the stream holds only what came after
      await h.waitFor(async () => {
        const s = await streamRecords(rc, 'usage');
        return down.every((id) => s.some((x) => x.id === id));
      }, { timeout: h.ms(15000), what: 'the records made while Redis was down' });
      const s = await streamRecords(rc, 'usage');
      for (const id of down) assert.equal(s.filter((x) => x.id === id).length, 1, `record ${id} once`);
      await h.waitFor(async () => (await metric(tg, 'tollgate_redis_stream_backlog')) === 0, { what: 'backlog empty' });
      await tg.stopAndCheck();
      tg = null;
    } finally {
      if (tg) await tg.stop();
      await mock.stop();
      await rc.stop();
    }
  });

  test('MAXLEN ~ trims the stream', { timeout: h.ms(60000) }, async () => {
    const redis = await h.startRedis();
    const mock = await h.startMock();
    let tg = null;
    try {
      tg = await h.startTollgate({ redis, mock, overrides: { records: { redis_stream: 'short', redis_stream_maxlen: '10' } } });
      const tenant = h.uniq('st-max');
      const n = 400;
      for (let i = 0; i < n; i += 20) {
        await Promise.all(Array.from({ length: 20 }, (_, j) => chat(tg, tenant, `m${i + j} mock:tokens=1,1`)));
      }
      await h.waitFor(async () => Number((await metric(tg, 'tollgate_redis_stream_added_total'))) >= n, { what: 'all added' });
      const len = Number((await redis.cmd('XLEN', 'short'))[0]);
      assert.ok(len >= 10 && len < n, `XLEN ${len}: trimmed towards 10 (approximately, by whole nodes)`);
      await tg.stopAndCheck();
      tg = null;
    } finally {
      if (tg) await tg.stop();
      await mock.stop();
      await redis.stop();
    }
  });
});
