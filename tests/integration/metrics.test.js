'use strict';
// GET /metrics after real traffic through the official SDKs (ok, streamed, upstream 500,
// budget-blocked, rate-limited, downgraded, an unpriced model, a model name that needs label
// escaping): the text parses strictly (tests/lib/prom.js), and every counter agrees with the
// records file: requests per (provider, model, outcome), tokens per kind, cost to the
// nano-dollar, histogram counts per provider, budget decisions; the admin token is required.

const assert = require('node:assert/strict');
const { test } = require('node:test');
const h = require('../lib/harness');
const { httpGet } = require('../lib/tollgate');
const prom = require('../lib/prom');

const TOKEN = 'test-admin-token'; // baseConfig's admin_token
const ODD_MODEL = 'acme"ft\\v2'; // a quote and a backslash: must be escaped in the label
const UNPRICED = 'llama-local-7b';

const env = h.useStack({
  overrides: {
    'plan tight': { price: '0', budget_monthly: '0.001', on_exceed: 'block' },
    'plan squeeze': { price: '9', budget_monthly: '0.001', on_exceed: 'downgrade', downgrade: 'gpt-4o > gpt-4o-mini', hard_limit: '5' },
    'plan limited': { price: '0', rpm: '1' },
    'tenant m-block': { plan: 'tight' },
    'tenant m-down': { plan: 'squeeze' },
    'tenant m-rpm': { plan: 'limited' },
  },
});

// What the traffic test saw, for the later tests.
const seen = { downgradedHeader: null, blocked: 0, rateLimited: 0, upstream500: 0 };
let metricsText = null;
let metrics = null;
let records = null;

async function getMetrics(headers = { authorization: `Bearer ${TOKEN}` }) {
  const res = await fetch(`http://127.0.0.1:${env.tg.adminPort}/metrics`, { headers });
  return { status: res.status, type: res.headers.get('content-type'), text: await res.text() };
}

const chat = (model, text, extra = {}) => ({ model, messages: [{ role: 'user', content: text }], ...extra });

async function expectStatus(p, status, what) {
  try {
    await p;
  } catch (e) {
    assert.equal(e.status, status, `${what}: ${e.message}`);
    return e;
  }
  assert.fail(`${what}: expected HTTP ${status}, the call succeeded`);
}

const key = (...parts) => JSON.stringify(parts);
function countBy(list, fn, val = () => 1) {
  const m = new Map();
  for (const x of list) {
    const k = fn(x);
    m.set(k, (m.get(k) || 0) + val(x));
  }
  return m;
}
// The model label of a record (tollgate labels a request without a model "none").
const modelLabel = (r) => (r.model === null || r.model === undefined || r.model === '' ? 'none' : r.model);

test('traffic through the SDKs: ok, streamed, upstream 500, blocked, rate limited, downgraded, unpriced, odd model name', { timeout: h.ms(60000) }, async () => {
  const oa = env.openai('m-free', { headers: { 'X-User-Id': 'u1', 'X-Feature': 'chat' } });
  await oa.chat.completions.create(chat('gpt-4o', 'hello mock:tokens=1200,300'));
  const stream = await oa.chat.completions.create(chat('gpt-4o-mini', 'stream mock:tokens=5000,700 mock:cached=1000 mock:reasoning=200',
    { stream: true, stream_options: { include_usage: true } }));
  for await (const _ of stream) { /* drain */ }
  await expectStatus(oa.chat.completions.create(chat('gpt-4o', 'boom mock:status=500')), 500, 'upstream 500');
  seen.upstream500++;
  await oa.chat.completions.create(chat(UNPRICED, 'local mock:tokens=800,90'));
  await oa.chat.completions.create(chat(ODD_MODEL, 'odd mock:tokens=10,5'));
  await oa.embeddings.create({ model: 'text-embedding-3-small', input: 'embed mock:tokens=64,0' });

  const an = env.anthropic('m-free');
  await an.messages.create({ model: 'claude-haiku-4-5', max_tokens: 256, messages: [{ role: 'user', content: 'hi mock:tokens=2000,100 mock:cached=500' }] });
  await expectStatus(an.messages.create({ model: 'claude-haiku-4-5', max_tokens: 256, messages: [{ role: 'user', content: 'x mock:status=500' }] }), 500, 'anthropic 500');
  seen.upstream500++;

  const ge = env.gemini('m-free');
  await ge.models.generateContent({ model: 'gemini-2.5-flash', contents: 'hi mock:tokens=3000,200' });

  // Budget block: the first call is admitted and spends past the $0.001 cap, the next are not.
  const ob = env.openai('m-block');
  await ob.chat.completions.create(chat('gpt-4o-mini', 'spend mock:tokens=10000,1000'));
  const b = await expectStatus(ob.chat.completions.create(chat('gpt-4o-mini', 'more')), 429, 'budget block (openai)');
  assert.equal(b.code, 'budget_exceeded');
  seen.blocked++;
  const gb = env.gemini('m-block');
  await expectStatus(gb.models.generateContent({ model: 'gemini-2.5-flash', contents: 'more' }), 429, 'budget block (gemini)');
  seen.blocked++;

  // Downgrade: over the cap, gpt-4o is rewritten to gpt-4o-mini.
  const od = env.openai('m-down');
  await od.chat.completions.create(chat('gpt-4o', 'spend mock:tokens=1000,100'));
  const { response } = await od.chat.completions.create(chat('gpt-4o', 'again mock:tokens=100,10')).withResponse();
  seen.downgradedHeader = response.headers.get('x-tollgate-downgraded');
  assert.equal(seen.downgradedHeader, 'gpt-4o -> gpt-4o-mini');

  // rpm = 1: of three quick calls at most one per minute passes (three calls span at most one
  // minute boundary, so at least one is refused).
  const or = env.openai('m-rpm');
  for (let i = 0; i < 3; i++) {
    try {
      await or.chat.completions.create(chat('gpt-4o-mini', `rpm ${i}`));
    } catch (e) {
      assert.equal(e.status, 429, e.message);
      assert.equal(e.code, 'rate_limit_exceeded');
      seen.rateLimited++;
    }
  }
  assert.ok(seen.rateLimited >= 1, 'rpm = 1 refused none of three calls');

  // Every request has its record (6 openai + 2 anthropic + 1 gemini + 3 block + 2 downgrade
  // + 3 rpm); then the counters catch up (bounded).
  const sent = 17;
  records = await env.tg.records(() => true, sent, h.ms(5000));
  assert.equal(records.length, sent, `records: ${records.length}`);
  let last = 'no answer';
  await h.waitFor(async () => {
    const r = await getMetrics();
    if (r.status !== 200) { last = `status ${r.status}`; return false; }
    const m = prom.parse(r.text);
    const total = m.samples('tollgate_requests_total').reduce((s, x) => s + x.value, 0);
    const inflight = m.value('tollgate_inflight_requests');
    last = `requests_total ${total}, inflight ${inflight}`;
    if (total !== records.length || inflight !== 0) return false;
    metricsText = r.text;
    metrics = m;
    return true;
  }, { timeout: h.ms(5000), what: `/metrics counting ${records.length} requests with none in flight` })
    .catch((e) => { throw new Error(`${e.message}; last seen: ${last}`); });
  assert.equal(env.tg.readRecords().length, sent, 'a record appeared after the metrics were read');
});

test('/metrics answers 200 text/plain version=0.0.4, parses strictly and has the contract\'s families', async () => {
  assert.ok(metrics, 'no metrics (traffic test failed)');
  const r = await getMetrics();
  assert.equal(r.status, 200);
  assert.match(r.type || '', /^text\/plain;\s*version=0\.0\.4/);
  prom.parse(r.text); // throws on any malformed line
  const want = {
    tollgate_requests_total: 'counter', tollgate_tokens_total: 'counter', tollgate_cost_usd_total: 'counter',
    tollgate_request_duration_seconds: 'histogram', tollgate_upstream_ttfb_seconds: 'histogram',
    tollgate_budget_decisions_total: 'counter', tollgate_redis_errors_total: 'counter', tollgate_inflight_requests: 'gauge',
  };
  for (const [name, type] of Object.entries(want)) {
    const f = metrics.family(name);
    assert.ok(f, `family ${name} missing`);
    assert.equal(f.type, type, `${name} type`);
    assert.ok(f.help && f.help.length > 0, `${name} has no HELP`);
  }
  for (const f of metrics.families.values()) assert.match(f.name, /^tollgate_/, `family ${f.name} lacks the tollgate_ prefix`);
  assert.deepEqual(metrics.family('tollgate_requests_total').samples.map((s) => Object.keys(s.labels).sort().join(',')).filter((x, i, a) => a.indexOf(x) === i),
    ['model,outcome,provider']);
});

test('tollgate_requests_total{provider,model,outcome} equals the records\' counts per (provider, model, outcome)', () => {
  assert.ok(metrics && records, 'no metrics (traffic test failed)');
  const want = countBy(records, (r) => key(r.provider, modelLabel(r), r.outcome));
  const got = new Map();
  for (const s of metrics.samples('tollgate_requests_total')) {
    if (s.value !== 0) got.set(key(s.labels.provider, s.labels.model, s.labels.outcome), s.value);
  }
  assert.deepEqual(Object.fromEntries([...got].sort()), Object.fromEntries([...want].sort()));
  // The traffic covered every outcome the brief asks about.
  const outcomes = new Set(records.map((r) => r.outcome));
  for (const o of ['ok', 'upstream_error', 'blocked', 'rate_limited']) assert.ok(outcomes.has(o), `no ${o} record`);
  assert.equal(records.filter((r) => r.outcome === 'upstream_error').length, seen.upstream500);
  assert.equal(records.filter((r) => r.outcome === 'blocked').length, seen.blocked);
  assert.equal(records.filter((r) => r.outcome === 'rate_limited').length, seen.rateLimited);
});

test('tollgate_tokens_total per kind equals the records\' token sums per (provider, model)', () => {
  assert.ok(metrics && records, 'no metrics (traffic test failed)');
  const kinds = { input: 'input_tokens', cached: 'cached_tokens', output: 'output_tokens', reasoning: 'reasoning_tokens' };
  const want = new Map();
  for (const r of records) {
    for (const [kind, field] of Object.entries(kinds)) {
      const k = key(r.provider, modelLabel(r), kind);
      want.set(k, (want.get(k) || 0) + (r[field] || 0));
    }
  }
  const got = new Map();
  for (const s of metrics.samples('tollgate_tokens_total')) {
    assert.ok(Object.keys(kinds).includes(s.labels.kind), `unknown kind ${s.labels.kind}`);
    got.set(key(s.labels.provider, s.labels.model, s.labels.kind), s.value);
  }
  const nz = (m) => Object.fromEntries([...m].filter(([, v]) => v !== 0).sort());
  assert.deepEqual(nz(got), nz(want));
  // Non-trivial: cached and reasoning tokens were counted somewhere.
  assert.ok([...got].some(([k, v]) => k.includes('"cached"') && v > 0), 'no cached tokens counted');
  assert.ok([...got].some(([k, v]) => k.includes('"reasoning"') && v > 0), 'no reasoning tokens counted');
});

test('tollgate_cost_usd_total equals the records\' cost sum per (provider, model) to the nano-dollar; unpriced requests are counted', () => {
  assert.ok(metrics && records, 'no metrics (traffic test failed)');
  const want = countBy(records, (r) => key(r.provider, modelLabel(r)), h.recordNano);
  const got = new Map();
  for (const s of metrics.samples('tollgate_cost_usd_total')) got.set(key(s.labels.provider, s.labels.model), prom.decimalNano(s.text));
  const nz = (m) => Object.fromEntries([...m].filter(([, v]) => v !== 0).sort());
  assert.deepEqual(nz(got), nz(want));
  const total = [...got.values()].reduce((a, b) => a + b, 0);
  assert.equal(total, records.reduce((s, r) => s + h.recordNano(r), 0));
  assert.ok(total > 0);
  // The expected price of one call, independently: gpt-4o 1200 in / 300 out.
  const gpt4o = records.find((r) => r.model === 'gpt-4o' && r.input_tokens === 1200);
  assert.equal(h.recordNano(gpt4o), h.expectedNano('gpt-4o', { input: 1200, output: 300 }));

  const unpriced = records.filter((r) => r.model === UNPRICED);
  assert.equal(unpriced.length, 1);
  assert.equal(unpriced[0].priced, false);
  assert.equal(metrics.value('tollgate_unpriced_requests_total', { provider: 'openai', model: UNPRICED }), 1);
  assert.equal(got.get(key('openai', UNPRICED)) || 0, 0, 'an unpriced model costs nothing in the metric');
});

test('histograms: _count per provider equals the request count, buckets cumulative up to +Inf', () => {
  assert.ok(metrics && records, 'no metrics (traffic test failed)');
  // prom.histogram validates each series (ascending le, cumulative, +Inf == _count, _sum).
  const dur = metrics.histogram('tollgate_request_duration_seconds');
  const want = Object.fromEntries([...countBy(records, (r) => r.provider)].sort());
  const got = Object.fromEntries(dur.map((s) => [s.labels.provider, s.count]).sort());
  assert.deepEqual(got, want, 'request_duration _count per provider');
  for (const s of dur) assert.deepEqual(Object.keys(s.labels), ['provider']);

  const ttfb = metrics.histogram('tollgate_upstream_ttfb_seconds');
  const wantT = Object.fromEntries([...countBy(records.filter((r) => r.ttfb_ms !== null && r.ttfb_ms !== undefined), (r) => r.provider)].sort());
  const gotT = Object.fromEntries(ttfb.filter((s) => s.count > 0).map((s) => [s.labels.provider, s.count]).sort());
  assert.deepEqual(gotT, wantT, 'upstream_ttfb _count per provider (requests that got upstream headers)');
  // Three providers, so a parser merging series across label sets would be caught here.
  assert.deepEqual(Object.keys(want).sort(), ['anthropic', 'gemini', 'openai']);
  for (const s of dur) {
    const latency = records.filter((r) => r.provider === s.labels.provider).reduce((a, r) => a + r.latency_ms, 0) / 1000;
    assert.ok(Math.abs(s.sum - latency) <= 0.001 * s.count + 0.01, `${s.labels.provider} duration _sum ${s.sum} vs records' latency ${latency}`);
  }
});

test('tollgate_budget_decisions_total counts block, downgrade and rate_limited as the records show', () => {
  assert.ok(metrics && records, 'no metrics (traffic test failed)');
  const v = (d) => metrics.value('tollgate_budget_decisions_total', { decision: d });
  assert.equal(v('block'), records.filter((r) => r.outcome === 'blocked').length);
  assert.equal(v('rate_limited'), records.filter((r) => r.outcome === 'rate_limited').length);
  assert.equal(v('downgrade'), records.filter((r) => r.downgraded === true).length);
  assert.ok(v('block') >= 2 && v('downgrade') >= 1 && v('rate_limited') >= 1);
  const down = records.find((r) => r.downgraded === true);
  assert.equal(down.model_requested, 'gpt-4o');
  assert.equal(down.model, 'gpt-4o-mini');
  // Admissions of capped tenants: m-block 1, m-down 1 (+1 downgraded), m-rpm the ones let through.
  assert.ok(v('admit') >= 2, `admit ${v('admit')}`);
});

test('label values with a quote and a backslash are escaped (\\" and \\\\) and parse back to the model name', () => {
  assert.ok(metrics && records, 'no metrics (traffic test failed)');
  const rec = records.find((r) => r.model === ODD_MODEL);
  assert.ok(rec, `no record with model ${ODD_MODEL}`);
  assert.equal(rec.outcome, 'ok');
  assert.ok(metricsText.includes('tollgate_requests_total{provider="openai",model="acme\\"ft\\\\v2",outcome="ok"} 1\n'),
    'escaped sample line not found');
  assert.equal(metrics.value('tollgate_requests_total', { provider: 'openai', model: ODD_MODEL, outcome: 'ok' }), 1);
  assert.equal(metrics.value('tollgate_tokens_total', { provider: 'openai', model: ODD_MODEL, kind: 'input' }), 10);
  // No raw (unescaped) quote inside a label value anywhere: every line re-parses, and the
  // odd name never appears unescaped.
  assert.ok(!metricsText.includes(`"${ODD_MODEL}"`));
});

test('/metrics without the admin token, or with a wrong one, is 401', async () => {
  assert.equal((await getMetrics({})).status, 401, 'no Authorization');
  assert.equal((await getMetrics({ authorization: 'Bearer wrong-token' })).status, 401, 'wrong token');
  assert.equal((await getMetrics({ authorization: `Bearer ${TOKEN}x` })).status, 401, 'token with a suffix');
  assert.equal((await getMetrics({ authorization: `Bearer ${TOKEN.slice(0, -1)}` })).status, 401, 'token prefix');
  assert.equal((await getMetrics({ authorization: `Basic ${TOKEN}` })).status, 401, 'Basic scheme');
  assert.equal((await getMetrics({ authorization: `Bearer  ${TOKEN}x` })).status, 401, 'two spaces, wrong token');
  const raw = await httpGet(env.tg.adminPort, '/metrics');
  assert.equal(raw.status, 401, 'plain GET without a token');
  assert.ok(!/tollgate_requests_total/.test(raw.body), '401 body leaks metrics');
  assert.equal((await getMetrics()).status, 200, 'right token');
});

h.cleanRunTest(env);
