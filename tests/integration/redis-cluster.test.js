'use strict';
// redis-cluster:// (issue 9) against a real Redis Cluster started here: 3 primaries and 3
// replicas (redis-server --cluster-enabled yes, joined by redis-cli --cluster create).
// tollgate reads the slot map with CLUSTER SLOTS, sends each tenant's commands to the
// primary of the tenant's hash tag, and follows the cluster as it changes:
//   - traffic over many tenants (all three primaries), as an ACL user: counters equal the records,
//     per tenant, and `tollgate report` and the admin API read them across the nodes;
//   - a slot migrated under traffic: -ASK (ASKING) while it migrates, -MOVED after, counted;
//   - a primary killed mid-run, its replica promoted: nothing lost or counted twice;
//   - three tollgate processes race one capped tenant: the cap holds (overspend at most one
//     request's estimate error), as with one tollgate and one Redis;
//   - a node that answers -MOVED forever, -CLUSTERDOWN or -TRYAGAIN (a fake cluster node in
//     this file): a bounded number of hops or retries, a log line, a metric and the
//     [redis] on_failure policy.

const assert = require('node:assert/strict');
const { spawnSync } = require('node:child_process');
const net = require('node:net');
const path = require('node:path');
const { after, before, describe, test } = require('node:test');
const h = require('../lib/harness');
const { RedisCluster } = require('../lib/redis-cluster');
const { waitReady, metric, sumRecords } = require('../lib/redis-ctl');

const chatN = async (tg, tenant, n, tag) => {
  const oa = h.openaiClient(tg, tenant, { maxRetries: 0 });
  for (let i = 0; i < n; i++) {
    await oa.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: `q ${tag} ${i}` }] });
  }
};

// The counters of each tenant on the cluster equal its records.
async function assertExact(cl, tg, tenants, perTenant) {
  for (const tenant of tenants) {
    const recs = await tg.records({ tenant }, perTenant, h.ms(10000));
    const want = sumRecords(recs);
    const got = await h.waitFor(async () => {
      const c = await cl.counters(tenant);
      return (c.requests || 0) >= want.requests && !(c.reserved > 0) ? c : null;
    }, { timeout: h.ms(20000), what: `${tenant} settled` });
    assert.equal(got.requests, want.requests, `${tenant}: requests`);
    assert.equal(got.cost, want.cost, `${tenant}: cost`);
    assert.equal(got.input_tokens, want.input_tokens, `${tenant}: input tokens`);
    assert.equal(got.output_tokens, want.output_tokens, `${tenant}: output tokens`);
  }
}

// perNode tenants on each primary (named until the hash tags land there).
async function spread(cl, perNode, tag) {
  const by = new Map();
  const out = [];
  for (let i = 0; out.length < 3 * perNode && i < 500; i++) {
    const t = h.uniq(`${tag}${i}`);
    const port = (await cl.primaryOf(`tollgate:{${t}}:x`)).port;
    const n = by.get(port) || 0;
    if (n >= perNode) continue;
    by.set(port, n + 1);
    out.push(t);
  }
  assert.equal(out.length, 3 * perNode, 'tenants on all three primaries');
  return out;
}

// A fake cluster node on 127.0.0.1: the handshake and CLUSTER SLOTS (all slots its own) are
// answered as a node would; every other command gets `answer` (a RESP error line), so the
// router's bounds on redirections and retries can be seen. Counts the commands it refused.
function fakeNode(answer) {
  return new Promise((resolve) => {
    const node = { refused: 0, port: 0 };
    const server = net.createServer((sock) => {
      let buf = Buffer.alloc(0);
      sock.on('error', () => {});
      sock.on('data', (d) => {
        buf = Buffer.concat([buf, d]);
        for (;;) {
          const cmd = readCommand(buf);
          if (!cmd) break;
          buf = buf.subarray(cmd.used);
          const name = cmd.args.map((a) => a.toUpperCase()).slice(0, 2).join(' ');
          if (name.startsWith('PING')) sock.write('+PONG\r\n');
          else if (name.startsWith('AUTH') || name.startsWith('ASKING')) sock.write('+OK\r\n');
          else if (name === 'CLUSTER SLOTS') {
            sock.write(`*1\r\n*3\r\n:0\r\n:16383\r\n*2\r\n$9\r\n127.0.0.1\r\n:${node.port}\r\n`);
          } else {
            node.refused++;
            sock.write(`-${answer(node)}\r\n`);
          }
        }
      });
    });
    server.listen(0, '127.0.0.1', () => {
      node.port = server.address().port;
      node.close = () => new Promise((r) => { server.close(() => r()); for (const s of conns) s.destroy(); });
      resolve(node);
    });
    const conns = new Set();
    server.on('connection', (s) => { conns.add(s); s.on('close', () => conns.delete(s)); });
  });
}

// One RESP command (an array of bulk strings) from the front of buf: {args, used}, or null.
function readCommand(buf) {
  const line = (at) => {
    const e = buf.indexOf('\r\n', at);
    return e < 0 ? null : { text: buf.toString('latin1', at, e), next: e + 2 };
  };
  const head = line(0);
  if (!head) return null;
  if (head.text[0] !== '*') throw new Error(`fake node: not an array: ${head.text}`);
  const n = Number(head.text.slice(1));
  const args = [];
  let at = head.next;
  for (let i = 0; i < n; i++) {
    const l = line(at);
    if (!l) return null;
    const len = Number(l.text.slice(1));
    if (buf.length < l.next + len + 2) return null;
    args.push(buf.toString('latin1', l.next, l.next + len));
    at = l.next + len + 2;
  }
  return { args, used: at };
}

describe('Redis Cluster (redis-cluster://)', () => {
  const env = h.useStack({ tollgate: false });
  let cl;

  // an ACL user for tollgate beside the default one the test's redis-cli uses
  before(async () => {
    cl = await RedisCluster.start(3, { extra: ['--user', 'tg', 'on', '>tg-secret', '~*', '&*', '+@all'] });
  }, { timeout: h.ms(60000) });
  after(async () => { if (cl) await cl.stop(); });

  const overrides = (extra = {}) => ({
    redis: { url: cl.url.replace('redis-cluster://', 'redis-cluster://tg:tg-secret@'), timeout: '500ms', on_failure: 'open',
      journal_dir: path.join(h.tmpDir('tollgate-journal-'), 'j'), ...extra },
  });

  test('tenants over all primaries, as an ACL user: counters equal the records; the report and the admin API read across the nodes', { timeout: h.ms(120000) }, async () => {
    const tenants = await spread(cl, 4, 'cl');
    await env.withTollgate(overrides(), async (tg) => {
      await waitReady(tg, 'ready', h.ms(15000));
      assert.match(tg.proc.stderr, /cluster map from 127\.0\.0\.1:\d+: 3 primaries, 16384 of 16384 slots served/);
      await Promise.all(tenants.map((t, i) => chatN(tg, t, 3, i)));
      await assertExact(cl, tg, tenants, 3);
      // every primary served tollgate as the ACL user
      for (const n of cl.nodes) {
        if ((await n.cmd('ROLE'))[0] !== 'master') continue;
        const clients = (await n.cmd('CLIENT', 'LIST')).join('\n');
        assert.match(clients, /user=tg /, `tollgate logged in as tg on ${n.port}`);
      }
      const cli = spawnSync(h.BINARY, ['report', '-c', tg.configFile, '--format', 'json'], { encoding: 'utf8', timeout: h.ms(20000) });
      assert.equal(cli.status, 0, cli.stderr);
      const rows = JSON.parse(cli.stdout).tenants;
      for (const t of tenants) {
        const row = rows.find((r) => r.tenant === t);
        assert.ok(row, `${t} in the report`);
        assert.equal(row.requests, 3);
      }
      // the admin API reads the same through the cluster, from its own thread
      const res = await fetch(`http://127.0.0.1:${tg.adminPort}/admin/api/tenants`, { headers: { authorization: 'Bearer test-admin-token' } });
      assert.equal(res.status, 200);
      const api = await res.json();
      for (const t of tenants) assert.equal(api.tenants.find((r) => r.tenant === t).requests, 3, `${t} in the admin API`);
    });
  });

  test('a slot migrating under traffic: -ASK followed with ASKING, then -MOVED once it moved; counted once, metrics count both', { timeout: h.ms(120000) }, async () => {
    // a fresh tenant whose slot holds no key yet (nothing to MIGRATE)
    let tenant, slot, src;
    for (let i = 0; i < 50; i++) {
      tenant = h.uniq(`mig${i}`);
      src = await cl.primaryOf(`tollgate:{${tenant}}:x`);
      slot = (await src.cmd('CLUSTER', 'KEYSLOT', `tollgate:{${tenant}}:x`))[0];
      if ((await src.cmd('CLUSTER', 'COUNTKEYSINSLOT', slot))[0] === '0') break;
    }
    const primaries = [];
    for (const n of cl.nodes) if (n.running && (await n.cmd('ROLE'))[0] === 'master') primaries.push(n);
    const dst = primaries.find((n) => n !== src);
    const srcId = (await src.cmd('CLUSTER', 'MYID'))[0];
    const dstId = (await dst.cmd('CLUSTER', 'MYID'))[0];
    await env.withTollgate(overrides({ on_failure: 'closed' }), async (tg) => {
      await waitReady(tg, 'ready', h.ms(15000));
      await dst.cmd('CLUSTER', 'SETSLOT', slot, 'IMPORTING', srcId);
      await src.cmd('CLUSTER', 'SETSLOT', slot, 'MIGRATING', dstId);
      // the tenant's keys do not exist on src: each of its commands is sent on with -ASK
      await chatN(tg, tenant, 2, 'ask');
      await h.waitFor(async () => (await metric(tg, 'tollgate_redis_cluster_ask_total')) >= 2 || null,
        { timeout: h.ms(5000), what: 'ASK redirections counted' });
      assert.equal((await src.cmd('CLUSTER', 'COUNTKEYSINSLOT', slot))[0], '0', 'nothing written on the source');
      // the slot is dst's now: tollgate's map still says src, which answers -MOVED
      for (const n of primaries) await n.cmd('CLUSTER', 'SETSLOT', slot, 'NODE', dstId);
      await chatN(tg, tenant, 2, 'moved');
      await h.waitFor(async () => (await metric(tg, 'tollgate_redis_cluster_moved_total')) >= 1 || null,
        { timeout: h.ms(5000), what: 'MOVED counted' });
      await h.waitFor(async () => (await metric(tg, 'tollgate_redis_cluster_slot_refreshes_total')) >= 2 || null,
        { timeout: h.ms(5000), what: 'the map asked again after MOVED' });
      await assertExact(cl, tg, [tenant], 4);
      assert.equal((await cl.primaryOf(`tollgate:{${tenant}}:x`)).port, dst.port);
    });
  });

  test('three tollgates race one capped tenant: the cap holds (at most one request over), Redis cost = sum of the records', { timeout: h.ms(120000) }, async () => {
    const one = h.expectedNano('gpt-4o', { input: 0, output: 1000 });
    const CAP = 5 * one; // about five requests of 1000 output tokens
    const cfg = { ...overrides({ on_failure: 'closed' }),
      'plan racecap': { price: 9, budget_monthly: String(CAP / 1e9), on_exceed: 'block' } };
    const tgs = [];
    try {
      for (let i = 0; i < 3; i++) tgs.push(await env.start(cfg));
      for (const tg of tgs) await waitReady(tg, 'ready', h.ms(15000));
      const tenant = h.uniq('race3');
      const body = { model: 'gpt-4o', max_tokens: 1000, messages: [{ role: 'user', content: 'mock:tokens=20,1000 mock:delay=500' }] };
      const hdr = { 'X-Tenant-Id': tenant, 'X-Tenant-Plan': 'racecap' };
      const results = await Promise.all(tgs.flatMap((tg) => Array.from({ length: 15 },
        () => h.post(tg, '/v1/chat/completions', body, hdr))));
      const ok = results.filter((r) => r.status === 200).length;
      const blocked = results.filter((r) => r.status === 429).length;
      assert.equal(ok + blocked, 45, `admitted or blocked: ${results.map((r) => r.status)}`);
      const recs = [];
      for (let i = 0; i < 3; i++) {
        const mine = results.slice(15 * i, 15 * (i + 1)).filter((r) => r.status === 200).length;
        if (mine) recs.push(...(await tgs[i].records((r) => r.tenant === tenant && r.outcome === 'ok', mine, h.ms(10000))));
      }
      assert.equal(recs.length, ok);
      const sum = recs.reduce((x, r) => x + h.recordNano(r), 0);
      const m = await h.waitFor(async () => {
        const c = await cl.counters(tenant);
        return (c.requests || 0) === ok && !(c.reserved > 0) ? c : null;
      }, { timeout: h.ms(15000), what: 'every admitted request settled' });
      assert.equal(m.cost, sum, 'Redis cost = sum of the records');
      const perReq = h.expectedNano('gpt-4o', { input: 20, output: 1000 });
      process.stderr.write(`race3: ${ok} admitted over 3 tollgates, spend ${m.cost} nano on a ${CAP} nano cap\n`);
      assert.ok(ok >= 4, `the cap fits four or five requests: ${ok} admitted`);
      assert.ok(m.cost <= CAP + perReq, `spend ${m.cost} <= cap ${CAP} + one request ${perReq}`);
    } finally {
      for (const tg of tgs) await tg.stopAndCheck();
    }
  });

  test('a primary killed mid-run, its replica promoted: served throughout (on_failure = open), nothing lost or counted twice', { timeout: h.ms(180000) }, async () => {
    const tenants = await spread(cl, 2, 'fo');
    const victim = await cl.primaryOf(`tollgate:{${tenants[0]}}:x`);
    const PER = 12;
    await env.withTollgate(overrides(), async (tg) => {
      await waitReady(tg, 'ready', h.ms(15000));
      let done = 0;
      let killed = null;
      const run = Promise.all(tenants.map(async (t, i) => {
        const oa = h.openaiClient(tg, t, { maxRetries: 0 });
        for (let k = 0; k < PER; k++) {
          await oa.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: `fo ${i} ${k}` }] });
          if (++done === 12) killed = victim.kill();
          if (killed && k === 6) await h.sleep(1500); // some requests while the cluster fails over
        }
      }));
      await run;
      await killed;
      await cl.waitHealthy(h.ms(30000));
      await h.waitFor(async () => (await metric(tg, 'tollgate_journal_pending')) === 0 || null,
        { timeout: h.ms(30000), what: 'the journal replayed' });
      // settlements the dead primary did not take were journaled and replayed on the new one
      assert.match(tg.proc.stderr, /journaled for replay/);
      assert.match(tg.proc.stderr, /journal: replayed \d+ settlements into Redis/);
      assert.ok((await metric(tg, 'tollgate_redis_connect_failures_total')) > 0, 'the lost primary counted');
      assert.match(tg.proc.stderr, new RegExp(`127\\.0\\.0\\.1:${victim.port}`));
      await assertExact(cl, tg, tenants, PER);
    });
  });

  test('a node that answers -MOVED forever: at most 5 hops, a log line, the metric, on_failure = closed answers 503', { timeout: h.ms(60000) }, async () => {
    const node = await fakeNode((n) => `MOVED 12 127.0.0.1:${n.port}`);
    try {
      await env.withTollgate({ redis: { url: `redis-cluster://127.0.0.1:${node.port}`, timeout: '500ms', on_failure: 'closed',
        journal_dir: path.join(h.tmpDir('tollgate-journal-'), 'j') },
      'plan capped': { price: '9', budget_monthly: '10', on_exceed: 'block' } }, async (tg) => {
        await waitReady(tg, 'ready', h.ms(15000));
        const r = await h.post(tg, '/v1/chat/completions', { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] },
          { 'x-tenant-id': 'loop', 'x-tenant-plan': 'capped' });
        assert.equal(r.status, 503, r.text);
        await h.waitFor(() => /still redirected after 5 hops .*MOVED loop\? failing the command/.test(tg.proc.stderr) || null,
          { timeout: h.ms(5000), what: 'MOVED loop log line' });
        await h.waitFor(async () => (await metric(tg, 'tollgate_redis_cluster_failed_total')) >= 1 || null,
          { timeout: h.ms(5000), what: 'failed metric' });
        await h.waitFor(async () => (await metric(tg, 'tollgate_redis_cluster_moved_total')) >= 5 || null,
          { timeout: h.ms(5000), what: 'moved metric' });
        assert.ok(node.refused <= 6 * 4, `bounded: ${node.refused} commands redirected`);
      });
    } finally { await node.close(); }
  });

  for (const [answer, open] of [['CLUSTERDOWN The cluster is down', false], ['TRYAGAIN Multiple keys request during rehashing of slot', true]]) {
    const word = answer.split(' ')[0];
    test(`-${word}: retried 5 times, a log line, the metric, then on_failure = ${open ? 'open serves' : 'closed answers 503'}`, { timeout: h.ms(60000) }, async () => {
      const node = await fakeNode(() => answer);
      try {
        await env.withTollgate({ redis: { url: `redis-cluster://127.0.0.1:${node.port}`, timeout: '500ms', on_failure: open ? 'open' : 'closed',
          journal_dir: path.join(h.tmpDir('tollgate-journal-'), 'j') },
        'plan capped': { price: '9', budget_monthly: '10', on_exceed: 'block' } }, async (tg) => {
          await waitReady(tg, 'ready', h.ms(15000));
          const r = await h.post(tg, '/v1/chat/completions', { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] },
            { 'x-tenant-id': `down-${word}`, 'x-tenant-plan': 'capped' });
          assert.equal(r.status, open ? 200 : 503, r.text);
          await h.waitFor(() => new RegExp(`cluster answered ${word} .*; retrying`).test(tg.proc.stderr) || null,
            { timeout: h.ms(5000), what: `${word} log line` });
          await h.waitFor(() => new RegExp(`a command failed after 5 retries: ${word}`).test(tg.proc.stderr) || null,
            { timeout: h.ms(5000), what: 'retries spent log line' });
          await h.waitFor(async () => (await metric(tg, 'tollgate_redis_cluster_retries_total')) >= 5 &&
            (await metric(tg, 'tollgate_redis_cluster_failed_total')) >= 1 ? true : null,
          { timeout: h.ms(5000), what: 'retries and failed metrics' });
        });
      } finally { await node.close(); }
    });
  }
});
