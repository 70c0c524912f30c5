'use strict';
// redis-sentinel:// (issue 9) against real processes started here: a primary, its replica and
// two sentinels (redis-server --sentinel) watching them. tollgate asks a sentinel for the
// primary, checks it with ROLE, and follows a forced failover (SENTINEL FAILOVER): the
// sentinels demote the old primary and close its clients, tollgate asks again and settles on
// the new primary. The counters there must equal the records, nothing lost or counted twice.
// The failover happens between two batches, with the replica caught up: a write the old
// primary acknowledged after the promotion is lost by Redis's asynchronous replication
// whatever the client does, so a test with writes in that window could not be exact.
// `tollgate report` reads through the sentinels too. Also: a sentinel that is down is skipped; a plain redis:// url pointing at a replica
// (READONLY) is a log line, the connection metric and a reconnect.

const assert = require('node:assert/strict');
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { after, before, describe, test } = require('node:test');
const h = require('../lib/harness');
const { Proc } = require('../lib/procs');
const { findBinary } = require('../lib/redis');
const { RedisCtl, waitReady, metric, sumRecords } = require('../lib/redis-ctl');
const { freePort } = require('../lib/util');

const MASTER = 'tgmaster';

async function startSentinel(primaryPort) {
  const port = await freePort();
  const dir = h.tmpDir('tollgate-sentinel-');
  const conf = path.join(dir, 'sentinel.conf');
  fs.writeFileSync(conf, [
    `port ${port}`, 'bind 127.0.0.1', `dir ${dir}`, 'daemonize no', 'loglevel warning',
    `sentinel monitor ${MASTER} 127.0.0.1 ${primaryPort} 1`,
    `sentinel down-after-milliseconds ${MASTER} 2000`,
    `sentinel failover-timeout ${MASTER} 10000`, ''].join('\n'));
  const proc = new Proc('redis-sentinel', findBinary('redis-server'), [conf, '--sentinel']);
  const ctl = new RedisCtl(port);
  ctl.proc = proc;
  await h.waitFor(async () => {
    if (!proc.running) throw new Error(`sentinel exited: ${proc.tail()}`);
    try { return (await ctl.cmd('PING'))[0] === 'PONG'; } catch { return null; }
  }, { timeout: h.ms(10000), what: 'sentinel PING' });
  return ctl;
}

describe('Redis behind Sentinel (redis-sentinel://)', () => {
  const env = h.useStack({ tollgate: false });
  let a; // the first primary
  let b; // its replica, primary after the failover
  const sentinels = [];

  before(async () => {
    a = await RedisCtl.reserve();
    await a.start();
    b = new RedisCtl(await freePort(), { extra: ['--replicaof', '127.0.0.1', String(a.port)] });
    await b.start();
    for (let i = 0; i < 2; i++) sentinels.push(await startSentinel(a.port));
    // the sentinels know the replica (else a failover has nowhere to go)
    await h.waitFor(async () => {
      for (const s of sentinels) {
        const out = await s.cmd('SENTINEL', 'replicas', MASTER);
        if (!out.some((l) => l === String(b.port))) return null;
      }
      return true;
    }, { timeout: h.ms(20000), interval: 200, what: 'sentinels see the replica' });
  }, { timeout: h.ms(60000) });
  after(async () => {
    for (const s of sentinels) await s.proc.stop('SIGTERM', h.ms(5000));
    if (b) await b.stop();
    if (a) await a.stop();
  });

  const chatN = async (tg, tenant, n, from) => {
    const oa = h.openaiClient(tg, tenant);
    for (let i = 0; i < n; i++) {
      await oa.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: `q ${from + i}` }] });
    }
  };

  test('primary found through the sentinels (the first one down); a forced failover is followed; counters equal the records on the new primary', { timeout: h.ms(120000) }, async () => {
    const dead = await freePort(); // a sentinel that is not there: skipped
    const url = `redis-sentinel://127.0.0.1:${dead},127.0.0.1:${sentinels[0].port},127.0.0.1:${sentinels[1].port}/${MASTER}`;
    const tenant = `sentinel-${Date.now()}`;
    const overrides = {
      redis: { url, timeout: '500ms', journal_dir: path.join(h.tmpDir('tollgate-journal-'), 'j') },
      'plan capped': { price: '9', budget_monthly: '10', on_exceed: 'block' },
      [`tenant ${tenant}`]: { plan: 'capped' },
    };
    await env.withTollgate(overrides, async (tg) => {
      await waitReady(tg, 'ready', h.ms(15000));
      assert.match(tg.proc.stderr, new RegExp(`sentinel 127\\.0\\.0\\.1:\\d+ names 127\\.0\\.0\\.1:${a.port} as the primary of ${MASTER}`));
      await chatN(tg, tenant, 5, 0);
      await h.waitFor(async () => ((await a.counters(tenant)).requests === 5 ? true : null),
        { timeout: h.ms(10000), what: 'five settled on the first primary' });
      // the replica has them too before the switch (asynchronous replication)
      await h.waitFor(async () => ((await b.counters(tenant)).requests === 5 ? true : null),
        { timeout: h.ms(10000), what: 'replica caught up' });

      await sentinels[0].cmd('SENTINEL', 'FAILOVER', MASTER);
      await h.waitFor(async () => {
        const where = await sentinels[0].cmd('SENTINEL', 'get-master-addr-by-name', MASTER);
        const role = await a.cmd('ROLE');
        return where[1] === String(b.port) && role[0] === 'slave' ? true : null;
      }, { timeout: h.ms(30000), interval: 200, what: 'failover to the replica' });

      await h.waitFor(() => new RegExp(`names 127\\.0\\.0\\.1:${b.port} as the primary`).test(tg.proc.stderr) || null,
        { timeout: h.ms(15000), what: 'tollgate asks the sentinels again' });
      // each worker heard of it on its subscription (the first sentinel is down: the next one)
      assert.match(tg.proc.stderr, /watching sentinel 127\.0\.0\.1:\d+ for \+switch-master/);
      assert.match(tg.proc.stderr, new RegExp(`\\+switch-master ${MASTER} from 127\\.0\\.0\\.1:${a.port} to 127\\.0\\.0\\.1:${b.port}`));
      await waitReady(tg, 'ready', h.ms(15000));
      await chatN(tg, tenant, 5, 5);
      const recs = await tg.records({ tenant }, 10);
      const want = sumRecords(recs);
      const got = await h.waitFor(async () => {
        const c = await b.counters(tenant);
        return c.requests >= want.requests ? c : null;
      }, { timeout: h.ms(15000), what: 'ten settled on the new primary' });
      assert.equal(got.requests, 10);
      assert.equal(got.cost, want.cost);
      assert.equal(got.input_tokens, want.input_tokens);
      assert.equal(got.output_tokens, want.output_tokens);
      // the report finds the new primary through the sentinels too
      const cli = spawnSync(h.BINARY, ['report', '-c', tg.configFile, '--format', 'json'], { encoding: 'utf8', timeout: h.ms(20000) });
      assert.equal(cli.status, 0, cli.stderr);
      const row = JSON.parse(cli.stdout).tenants.find((t) => t.tenant === tenant);
      assert.ok(row, cli.stdout);
      assert.equal(row.requests, 10);
    });
  });

  test('redis:// at a replica: READONLY is a log line, the connection metric and a reconnect; open serves', { timeout: h.ms(60000) }, async () => {
    // after the failover above, `a` is the replica
    const role = await a.cmd('ROLE');
    assert.equal(role[0], 'slave');
    const overrides = {
      redis: { url: `redis://127.0.0.1:${a.port}/0`, timeout: '500ms', on_failure: 'open',
        journal_dir: path.join(h.tmpDir('tollgate-journal-'), 'j') },
    };
    await env.withTollgate(overrides, async (tg) => {
      await waitReady(tg, 'ready', h.ms(15000));
      const r = await h.post(tg, '/v1/chat/completions', { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] },
        { 'x-tenant-id': 'sentinel-readonly' });
      assert.equal(r.status, 200);
      await h.waitFor(() => /answers READONLY \(a replica now\?\), reconnecting/.test(tg.proc.stderr) || null,
        { timeout: h.ms(10000), what: 'READONLY log line' });
      await h.waitFor(async () => (await metric(tg, 'tollgate_redis_connect_failures_total')) > 0 || null,
        { timeout: h.ms(5000), what: 'connect failures metric' });
    });
  });
});
