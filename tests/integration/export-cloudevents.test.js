'use strict';
// [export] cloudevents_url: every record leaves as a CloudEvent (spec 1.0, parsed and
// validated by the official `cloudevents` SDK at the receiver), at least once, through a
// spool on disk. The receiver is stopped and restarted mid-run, answers 500, 413, closes
// mid-request and answers late; tollgate is restarted with a non-empty spool; a tiny spool
// fills up. Every event arrives with the record as its data; where no POST can have been
// taken twice, each id arrives exactly once.

const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { describe, test, before, after } = require('node:test');
const h = require('../lib/harness');
const { metric } = require('../lib/redis-ctl');
const { startReceiver } = require('../lib/ce-receiver');
const { makeCerts } = require('../lib/certs');
const { execFile } = require('node:child_process');

function runExport(args) {
  return new Promise((resolve) => {
    execFile(h.BINARY, ['export', ...args], { timeout: h.ms(60000), cwd: h.ROOT }, (err, stdout, stderr) => {
      resolve({ code: err ? err.code : 0, stdout, stderr });
    });
  });
}

async function chat(tg, tenant, content, extra = {}) {
  try {
    const { response } = await h.openaiClient(tg, tenant, extra).chat.completions
      .create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content }] }).withResponse();
    return response.headers.get('x-tollgate-request-id');
  } catch (e) {
    return e.headers && e.headers.get('x-tollgate-request-id');
  }
}

function ceOverrides(rx, spoolDir, extra = {}) {
  return { export: { cloudevents_url: rx.url, cloudevents_token: 'om-secret', source: 'tollgate-test',
    spool_dir: spoolDir, ...extra } };
}

function counts(ids) {
  const m = new Map();
  for (const id of ids) m.set(id, (m.get(id) || 0) + 1);
  return m;
}

describe('CloudEvents export', () => {
  let redis; let mock; let rx;
  before(async () => { redis = await h.startRedis(); mock = await h.startMock(); rx = await startReceiver(); });
  after(async () => { if (rx) await rx.stop(); if (mock) await mock.stop(); if (redis) await redis.stop(); });

  async function withTg(overrides, fn) {
    const tg = await h.startTollgate({ redis, mock, overrides });
    try { await fn(tg); await tg.stopAndCheck(); } finally { await tg.stop(); }
  }

  test('one valid CloudEvent per record: id, source, type, subject, time, data = the record', { timeout: h.ms(30000) }, async () => {
    rx.mode = null;
    const spool = path.join(h.tmpDir('tollgate-spool-'), 's');
    await withTg(ceOverrides(rx, spool), async (tg) => {
      const tenant = h.uniq('ce');
      const ids = [];
      for (let i = 0; i < 8; i++) ids.push(await chat(tg, tenant, `r${i} mock:tokens=30,9`, { headers: { 'X-User-Id': 'u_1', 'X-Feature': 'summary' } }));
      const got = await rx.waitIds(ids);
      const recs = await tg.records((r) => ids.includes(r.id), ids.length);
      for (const r of recs) {
        const e = got.get(r.id);
        assert.equal(e.specversion, '1.0');
        assert.equal(e.source, 'tollgate-test');
        assert.equal(e.type, 'tollgate.usage');
        assert.equal(e.subject, tenant);
        assert.equal(e.time, r.ts);
        assert.equal(e.datacontenttype, 'application/json');
        assert.deepEqual(e.data, r, 'data is the record');
      }
      for (const [id, n] of counts(rx.ids())) if (ids.includes(id)) assert.equal(n, 1, `event ${id} once`);
      const post = rx.posts.find((p) => p.events > 0);
      assert.equal(post.headers['content-type'], 'application/cloudevents-batch+json');
      assert.equal(post.headers.authorization, 'Bearer om-secret');
      assert.equal(post.url, '/api/v1/events');
      assert.deepEqual(rx.invalid, [], 'every POST was valid CloudEvents');
      assert.ok(await metric(tg, 'tollgate_export_events_sent_total') >= ids.length);
      await h.waitFor(async () => (await metric(tg, 'tollgate_export_spool_bytes')) === 0, { what: 'spool empty' });
    });
  });

  test('receiver stopped and restarted mid-run: every event arrives once', { timeout: h.ms(60000) }, async () => {
    rx.mode = null;
    const spool = path.join(h.tmpDir('tollgate-spool-'), 's');
    await withTg(ceOverrides(rx, spool), async (tg) => {
      const tenant = h.uniq('ce-down');
      const ids = [];
      for (let i = 0; i < 5; i++) ids.push(await chat(tg, tenant, `a${i} mock:tokens=10,5`));
      await rx.waitIds(ids);
      await rx.stop();
      for (let i = 0; i < 15; i++) ids.push(await chat(tg, tenant, `b${i} mock:tokens=10,5`));
      await h.waitFor(async () => (await metric(tg, 'tollgate_export_spool_bytes')) > 0, { what: 'events wait in the spool' });
      await h.waitFor(async () => (await metric(tg, 'tollgate_export_post_failures_total')) > 0, { what: 'failed POSTs counted' });
      assert.match(tg.stderr, /CloudEvents POST of \d+ events failed \(127\.0\.0\.1:\d+: connect: Connection refused\)/);
      await rx.start();
      await rx.waitIds(ids, h.ms(30000));
      const c = counts(rx.ids());
      for (const id of ids) assert.equal(c.get(id), 1, `event ${id} exactly once`);
      await h.waitFor(async () => (await metric(tg, 'tollgate_export_spool_bytes')) === 0, { what: 'spool drained' });
    });
  });

  test('500, closed mid-request, 413 and a late answer: retried or split until every event arrives', { timeout: h.ms(90000) }, async () => {
    const spool = path.join(h.tmpDir('tollgate-spool-'), 's');
    await withTg(ceOverrides(rx, spool), async (tg) => {
      const tenant = h.uniq('ce-faults');
      const ids = [];
      rx.mode = { status: 500 };
      for (let i = 0; i < 4; i++) ids.push(await chat(tg, tenant, `f${i} mock:tokens=10,5`));
      await h.waitFor(() => rx.posts.some((p) => p.status === 500), { what: 'a 500' });
      rx.mode = { destroy: true };
      const seen = rx.posts.length;
      await h.waitFor(() => rx.posts.length > seen && rx.posts.at(-1).status === -1, { timeout: h.ms(10000), what: 'a POST closed mid-request' });
      rx.mode = { maxEvents: 1 };
      for (let i = 0; i < 4; i++) ids.push(await chat(tg, tenant, `g${i} mock:tokens=10,5`));
      await rx.waitIds(ids, h.ms(40000));
      assert.ok(rx.posts.some((p) => p.status === 413), 'the receiver answered 413');
      assert.match(tg.stderr, /answered 413 to \d+ events/);
      const c = counts(rx.ids());
      for (const id of ids) assert.equal(c.get(id), 1, `event ${id} exactly once`);
      // slow: the answer comes after tollgate's deadline; tollgate retries, the receiver
      // may hold the event twice and dedupes by id
      rx.mode = { delayMs: 6500 };
      const slow = await chat(tg, tenant, 'slow mock:tokens=10,5');
      await h.waitFor(() => rx.posts.some((p) => p.t > 0 && p.status === 0), { timeout: h.ms(10000), what: 'a slow POST' });
      await h.sleep(h.ms(5500));
      rx.mode = null;
      await rx.waitIds([slow], h.ms(40000));
      assert.match(tg.stderr, /timeout waiting for the response/);
      assert.ok(await metric(tg, 'tollgate_export_post_failures_total') >= 3);
      assert.deepEqual(rx.invalid, []);
    });
  });

  test('an https receiver: refused without its CA, every event delivered with [export] ca_file', { timeout: h.ms(60000) }, async () => {
    const certs = makeCerts(); // the test CA the mock upstream's certificate comes from
    const srx = await startReceiver({ tls: certs });
    try {
      const tenant = h.uniq('ce-tls');
      const ids = [];
      const spool = path.join(h.tmpDir('tollgate-spool-'), 's');
      // the system's CAs do not know the test CA: the POST fails verification, the event waits
      await withTg(ceOverrides(srx, spool), async (tg) => {
        ids.push(await chat(tg, tenant, 'tls0 mock:tokens=10,5'));
        await h.waitFor(async () => (await metric(tg, 'tollgate_export_post_failures_total')) > 0, { what: 'a failed https POST' });
        assert.match(tg.stderr, /CloudEvents POST of \d+ events failed \(.*certificate verify failed/);
        assert.equal(srx.events.length, 0);
        assert.ok(await metric(tg, 'tollgate_export_spool_bytes') > 0, 'the event waits in the spool');
      });
      // with ca_file the same spool drains over https and new events follow
      await withTg(ceOverrides(srx, spool, { ca_file: certs.ca }), async (tg) => {
        for (let i = 1; i < 4; i++) ids.push(await chat(tg, tenant, `tls${i} mock:tokens=10,5`));
        const got = await srx.waitIds(ids);
        const recs = await tg.records((r) => ids.includes(r.id), 3);
        for (const r of recs) assert.deepEqual(got.get(r.id).data, r);
        const c = counts(srx.ids());
        for (const id of ids) assert.equal(c.get(id), 1, `event ${id} once`);
        assert.deepEqual(srx.invalid, []);
      });
    } finally { await srx.stop(); }
  });

  test('tollgate restarted with a non-empty spool sends what waited', { timeout: h.ms(60000) }, async () => {
    const spool = path.join(h.tmpDir('tollgate-spool-'), 's');
    await rx.stop();
    const tenant = h.uniq('ce-restart');
    const ids = [];
    await withTg(ceOverrides(rx, spool), async (tg) => {
      for (let i = 0; i < 6; i++) ids.push(await chat(tg, tenant, `s${i} mock:tokens=10,5`));
      await h.waitFor(async () => (await metric(tg, 'tollgate_export_spool_bytes')) > 0, { what: 'spooled' });
    });
    const segs = fs.readdirSync(spool).filter((f) => f.endsWith('.jsonl'));
    const spooled = segs.map((f) => fs.readFileSync(path.join(spool, f), 'utf8')).join('');
    for (const id of ids) assert.ok(spooled.includes(`"id":"${id}"`), `record ${id} on disk in the spool`);
    await rx.start();
    await withTg(ceOverrides(rx, spool), async (tg) => {
      await rx.waitIds(ids, h.ms(20000));
      assert.match(tg.stderr, /bytes of CloudEvents in the spool from an earlier run/);
      const c = counts(rx.ids());
      for (const id of ids) assert.equal(c.get(id), 1, `event ${id} exactly once`);
    });
  });

  test('a full spool drops new events with a log line and a metric; what was spooled arrives', { timeout: h.ms(90000) }, async () => {
    const spool = path.join(h.tmpDir('tollgate-spool-'), 's');
    await rx.stop();
    await withTg(ceOverrides(rx, spool, { spool_max: '64k' }), async (tg) => {
      const tenant = h.uniq('ce-full');
      const ids = [];
      for (let i = 0; i < 200; i += 10) {
        ids.push(...await Promise.all(Array.from({ length: 10 }, (_, j) => chat(tg, tenant, `x${i + j} mock:tokens=10,5`))));
      }
      await h.waitFor(async () => (await metric(tg, 'tollgate_export_events_dropped_total')) > 0, { what: 'dropped counted' });
      assert.match(tg.stderr, /CloudEvents dropped before the spool: spool full/);
      assert.ok((await metric(tg, 'tollgate_export_spool_bytes')) <= 65536);
      await rx.start();
      await h.waitFor(async () => (await metric(tg, 'tollgate_export_spool_bytes')) === 0, { timeout: h.ms(20000), what: 'spool drained' });
      const dropped = await metric(tg, 'tollgate_export_events_dropped_total');
      const got = new Set(rx.ids());
      const arrived = ids.filter((id) => got.has(id)).length;
      assert.equal(arrived + dropped, ids.length, `arrived ${arrived} + dropped ${dropped} = every record`);
      assert.equal(await tg.records((r) => r.tenant === tenant, ids.length).then((r) => r.length), ids.length, 'the records file has them all');
    });
  });

  test('tollgate export replays a period of the records file (rotated copies included); the receiver dedupes by id', { timeout: h.ms(60000) }, async () => {
    rx.mode = null;
    const tenant = h.uniq('ce-replay');
    const ids = [];
    let tg = await h.startTollgate({ redis, mock }); // no CloudEvents while these are made
    let cfgFile;
    try {
      for (let i = 0; i < 7; i++) ids.push(await chat(tg, tenant, `p${i} mock:tokens=10,5`));
      await tg.records((r) => ids.includes(r.id), ids.length);
      await tg.stopAndCheck();
      // a rotated copy holding an older record of the same month, and another month's line
      const recs = tg.readRecords().filter((r) => ids.includes(r.id));
      const rotated = recs.slice(0, 2);
      const current = recs.slice(2);
      const other = { ...recs[0], id: 'other-period', ts: '2020-01-05T00:00:00.000Z' };
      fs.writeFileSync(`${tg.recordsFile}.1`, rotated.map((r) => JSON.stringify(r)).join('\n') + '\n');
      fs.writeFileSync(tg.recordsFile, [other, ...current].map((r) => JSON.stringify(r)).join('\n') + '\n');
      cfgFile = path.join(tg.dir, 'export.conf');
      fs.writeFileSync(cfgFile, h.renderConfig(tg.cfg, { export: { cloudevents_url: rx.url, source: 'tollgate-test' } }).text);
    } finally { await tg.stop(); }
    const month = recsMonth(ids, tg);
    const before = rx.events.length;
    const r1 = await runExport(['--period', month, '-c', cfgFile]);
    assert.equal(r1.code, 0, r1.stderr);
    assert.match(r1.stdout, new RegExp(`7 events of ${month} sent`));
    const got = await rx.waitIds(ids);
    assert.equal(got.size, 7);
    assert.ok(!rx.events.slice(before).some((e) => e.id === 'other-period'), 'another period is not sent');
    const r2 = await runExport(['--period', month, '-c', cfgFile]);
    assert.equal(r2.code, 0, r2.stderr);
    const mine = rx.events.slice(before).filter((e) => ids.includes(e.id));
    assert.equal(mine.length, 14, 'sent again: at least once');
    assert.equal(new Set(mine.map((e) => e.id)).size, 7, 'deduped by id: every record once');
    const bad = await runExport(['--period', 'nope', '-c', cfgFile]);
    assert.equal(bad.code, 2);
    await rx.stop();
    const down = await runExport(['--period', month, '-c', cfgFile]);
    assert.equal(down.code, 1, 'a receiver that stays away fails the command');
    assert.match(down.stderr, /Connection refused/);
    await rx.start();
  });
});

// The UTC month of the records (the test's clock).
function recsMonth(ids, tg) {
  return tg.readRecords().find((r) => ids.includes(r.id)).ts.slice(0, 7);
}
