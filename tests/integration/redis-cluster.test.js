'use strict';
// redis-cluster:// (issue 9) against a real Redis Cluster started here: 3 primaries and 3
// replicas (redis-server --cluster-enabled yes, joined by redis-cli --cluster create).
// tollgate reads the slot map with CLUSTER SLOTS, sends each tenant's commands to the
// primary of the tenant's hash tag, and follows the cluster as it changes:
//   - traffic over many tenants (all three primaries): counters equal the records, per tenant,
//     and `tollgate report` reads them across the nodes;
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

describe('Redis Cluster (redis-cluster://)', () => {
  const env = h.useStack({ tollgate: false });
  let cl;

  before(async () => { cl = await RedisCluster.start(3); }, { timeout: h.ms(60000) });
  after(async () => { if (cl) await cl.stop(); });

  const overrides = (extra = {}) => ({
    redis: { url: cl.url, timeout: '500ms', on_failure: 'open',
      journal_dir: path.join(h.tmpDir('tollgate-journal-'), 'j'), ...extra },
  });

  test('tenants over all primaries: counters equal the records; the report reads across the nodes', { timeout: h.ms(120000) }, async () => {
    const tenants = await spread(cl, 4, 'cl');
    await env.withTollgate(overrides(), async (tg) => {
      await waitReady(tg, 'ready', h.ms(15000));
      assert.match(tg.proc.stderr, /cluster map from 127\.0\.0\.1:\d+: 3 primaries, 16384 of 16384 slots served/);
      await Promise.all(tenants.map((t, i) => chatN(tg, t, 3, i)));
      await assertExact(cl, tg, tenants, 3);
      const cli = spawnSync(h.BINARY, ['report', '-c', tg.configFile, '--format', 'json'], { encoding: 'utf8', timeout: h.ms(20000) });
      assert.equal(cli.status, 0, cli.stderr);
      const rows = JSON.parse(cli.stdout).tenants;
      for (const t of tenants) {
        const row = rows.find((r) => r.tenant === t);
        assert.ok(row, `${t} in the report`);
        assert.equal(row.requests, 3);
      }
    });
  });
});
