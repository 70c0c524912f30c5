'use strict';
// Budgets through the official SDKs with a real redis-server: budget blocks the SDKs do not
// retry (F79), downgrades that touch only the top-level model (F80), the 200-way race (E65),
// daily caps and the month boundary with an injected clock (D62), soft-limit alerts to a
// webhook, and rpm / tpm limits.

const assert = require('node:assert/strict');
const { after, before, describe, test } = require('node:test');
const h = require('../lib/harness');
const { startWebhookSink } = require('../lib/webhook');

const PREFIX = 'tollgate:';
const BLOCK_MSG = 'You have used this month\'s included AI budget. Upgrade for more. (budgets test)';
const DOWN_MAP = 'gpt-4o > gpt-4o-mini, claude-sonnet-4-5 > claude-haiku-4-5, gemini-2.5-pro > gemini-2.5-flash';

// The plans every tollgate of this file knows; a request picks one with X-Tenant-Plan.
const PLANS = {
  'plan blockp': { price: 9, budget_monthly: '0.001', on_exceed: 'block', block_message: BLOCK_MSG },
  'plan down': { price: 9, budget_monthly: '0.001', on_exceed: 'downgrade', downgrade: DOWN_MAP, hard_limit: '0.01' },
  'plan daily': { price: 9, budget_daily: '0.001', on_exceed: 'block' },
  'plan big': { price: 9, budget_monthly: '100', on_exceed: 'block' },
  'plan secretname': { price: 9, budget_monthly: '1', budget_daily: '0.001', on_exceed: 'block' },
  'plan rpm3': { price: 9, rpm: 3 },
  'plan rpm60': { price: 9, rpm: 60 },
  'plan tpm3k': { price: 9, tpm: 3000 },
};
const CAP_NANO = 1000000; // budget_monthly / budget_daily of blockp, down and daily ($0.001)
const HARD_NANO = 10000000; // hard_limit of down ($0.01)

// ---- helpers -----------------------------------------------------------------------------

// nano-USD as a decimal USD string with 9 decimals (what the config takes exactly).
function usd(nano) {
  return `${Math.floor(nano / 1e9)}.${String(nano % 1e9).padStart(9, '0')}`;
}

function monthOf(msEpoch) { return new Date(msEpoch).toISOString().slice(0, 7); }
function dayOf(msEpoch) { return new Date(msEpoch).toISOString().slice(0, 10); }
const mKey = (tenant, msEpoch = Date.now()) => `${PREFIX}{${tenant}}:m:${monthOf(msEpoch)}`;
const dKey = (tenant, msEpoch = Date.now()) => `${PREFIX}{${tenant}}:d:${dayOf(msEpoch)}`;

// Seconds from msEpoch to the next UTC month start / day start.
function toNextMonth(msEpoch) {
  const d = new Date(msEpoch);
  return (Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1) - msEpoch) / 1000;
}
function toNextDay(msEpoch) {
  const d = new Date(msEpoch);
  return (Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate() + 1) - msEpoch) / 1000;
}

function assertNear(got, want, tol, what) {
  assert.ok(Number.isFinite(got) && Math.abs(got - want) <= tol, `${what}: got ${got}, want ${want} ± ${tol}`);
}

// A fetch that logs every HTTP attempt an SDK makes (status, headers, and the body of errors).
function capturingFetch() {
  const calls = [];
  const f = async (url, init) => {
    const res = await fetch(url, init);
    const entry = { url: String(url && url.url ? url.url : url), status: res.status, headers: res.headers, text: null };
    calls.push(entry);
    if (res.status >= 400) entry.text = await res.clone().text();
    return res;
  };
  return { fetch: f, calls };
}

// SDK clients with their DEFAULT retry settings (maxRetries not set), unless extra.maxRetries.
function sdkOpenAI(tg, tenant, plan, extra = {}) {
  const { OpenAI } = require('openai');
  return new OpenAI({
    baseURL: `${tg.base}/v1`, apiKey: 'sk-test-key', timeout: h.ms(20000),
    defaultHeaders: { 'X-Tenant-Id': tenant, ...(plan ? { 'X-Tenant-Plan': plan } : {}) },
    ...(extra.fetch ? { fetch: extra.fetch } : {}),
    ...(extra.maxRetries !== undefined ? { maxRetries: extra.maxRetries } : {}),
  });
}
function sdkAnthropic(tg, tenant, plan, extra = {}) {
  const { Anthropic } = require('@anthropic-ai/sdk');
  return new Anthropic({
    baseURL: tg.base, apiKey: 'sk-ant-test-key', timeout: h.ms(20000),
    defaultHeaders: { 'X-Tenant-Id': tenant, ...(plan ? { 'X-Tenant-Plan': plan } : {}) },
    ...(extra.fetch ? { fetch: extra.fetch } : {}),
    ...(extra.maxRetries !== undefined ? { maxRetries: extra.maxRetries } : {}),
  });
}
function sdkGemini(tg, tenant, plan, extra = {}) {
  const { GoogleGenAI } = require('@google/genai');
  return new GoogleGenAI({
    apiKey: 'g-test-key',
    httpOptions: {
      baseUrl: tg.base, timeout: h.ms(20000),
      headers: { 'X-Tenant-Id': tenant, ...(plan ? { 'X-Tenant-Plan': plan } : {}) },
      ...(extra.fetch ? { fetch: extra.fetch } : {}),
    },
  });
}

// Every Redis key of a tenant with its value, for "nothing changed" comparisons.
async function snapshot(redis, tenant) {
  const keys = (await redis.cmd('KEYS', `${PREFIX}{${tenant}}:*`)).filter(Boolean).sort();
  const out = {};
  for (const k of keys) {
    const [type] = await redis.cmd('TYPE', k);
    if (type === 'hash') out[k] = await redis.hgetall(k);
    else if (type === 'string') out[k] = (await redis.cmd('GET', k))[0];
    else if (type === 'zset') out[k] = await redis.cmd('ZRANGE', k, 0, -1, 'WITHSCORES');
    else out[k] = `<${type}>`;
  }
  return out;
}

async function hnum(redis, key) {
  const hh = await redis.hgetall(key);
  const o = {};
  for (const [k, v] of Object.entries(hh)) o[k] = Number(v);
  return o;
}

// Waits until the tenant's month hash has nothing reserved and no leases are left.
async function waitNoReservations(redis, tenant, msEpoch = Date.now()) {
  try {
    return await waitNoReservationsOnce(redis, tenant, msEpoch);
  } catch (e) {
    e.message += `; keys now: ${JSON.stringify(await snapshot(redis, tenant))}`;
    throw e;
  }
}
async function waitNoReservationsOnce(redis, tenant, msEpoch) {
  return h.waitFor(async () => {
    const m = await hnum(redis, mKey(tenant, msEpoch));
    const d = await hnum(redis, dKey(tenant, msEpoch));
    // the lease store's keep-alive "~" (zset member at +inf, hash field) is not a lease
    const leases = Number((await redis.cmd('ZCOUNT', `${PREFIX}{${tenant}}:leases`, '-inf', '(+inf'))[0]);
    const held = Object.keys(await redis.hgetall(`${PREFIX}{${tenant}}:lease`)).filter((f) => f !== '~');
    return (m.reserved || 0) === 0 && (d.reserved || 0) === 0 && leases === 0 && held.length === 0
      ? { m, d } : null;
  }, { timeout: h.ms(5000), what: `no reservation or lease left for ${tenant}` });
}

const chatMsgs = (content) => [{ role: 'user', content }];

describe('budgets', () => {
  const env = h.useStack({ overrides: { ...PLANS } });

  // Seeded month and day hashes are named by the test's clock: keep the file away from a UTC
  // day (and so month) boundary, which would move tollgate's requests into the next period.
  before(async () => {
    const left = toNextDay(Date.now());
    if (left < 45) await h.sleep(left * 1000 + 1000);
  }, { timeout: 60000 });

  // ---- F79: budget blocks the SDKs do not retry -----------------------------------------

  async function seedSpent(tenant, nano = CAP_NANO) {
    await env.redis.cmd('HSET', mKey(tenant), 'cost', String(nano));
  }

  // The common checks of a budget block: one HTTP attempt answered within a second, the
  // headers, nothing forwarded, one blocked record, Redis unchanged.
  async function checkBlocked({ tenant, nonce, cap, elapsed, before, model, bodyCheck }) {
    assert.ok(elapsed < h.ms(1000), `the SDK (default retries) got its error in ${elapsed} ms (want < ${h.ms(1000)} ms)`);
    assert.equal(cap.calls.length, 1, `exactly one HTTP attempt (no retry): ${JSON.stringify(cap.calls.map((c) => c.status))}`);
    const call = cap.calls[0];
    assert.equal(call.status, 429);
    assert.equal(call.headers.get('x-should-retry'), 'false');
    const ra = Number(call.headers.get('retry-after'));
    assertNear(ra, toNextMonth(Date.now()), 2, 'Retry-After = seconds to the next UTC month start');
    assert.match(call.headers.get('content-type') || '', /application\/json/);
    bodyCheck(JSON.parse(call.text));
    assert.equal((await h.newRequests(env.mock, 0, h.ms(200))).filter((r) => r.body && r.body.includes(nonce)).length, 0,
      'nothing forwarded upstream');
    const recs = await env.tg.records({ tenant }, 1);
    await h.sleep(h.ms(100));
    const all = env.tg.readRecords().filter((r) => r.tenant === tenant);
    assert.equal(all.length, 1, `exactly one record: ${JSON.stringify(all)}`);
    const rec = recs[0];
    h.assertRecordShape(rec);
    assert.equal(rec.outcome, 'blocked');
    assert.equal(rec.status, 429);
    assert.equal(rec.cost_usd, 0);
    assert.equal(rec.model_requested || rec.model, model);
    assert.deepEqual(await snapshot(env.redis, tenant), before, 'Redis counters unchanged by a blocked request');
  }

  test('F79 openai SDK (default retries): 429 budget_exceeded insufficient_quota with block_message within 1 s, x-should-retry false, Retry-After to month end, nothing forwarded', async () => {
    const tenant = h.uniq('blk-oai');
    const nonce = h.uniq('n');
    await seedSpent(tenant);
    const before = await snapshot(env.redis, tenant);
    const cap = capturingFetch();
    const c = sdkOpenAI(env.tg, tenant, 'blockp', { fetch: cap.fetch });
    assert.equal(c.maxRetries, 2, 'the client keeps the SDK default retries');
    const t0 = Date.now();
    const err = await c.chat.completions.create({ model: 'gpt-4o', max_tokens: 20, messages: chatMsgs(`${nonce} mock:tokens=10,5`) })
      .then(() => null, (e) => e);
    const elapsed = Date.now() - t0;
    assert.ok(err, 'the SDK raised');
    const { OpenAI } = require('openai');
    assert.ok(err instanceof OpenAI.RateLimitError, `RateLimitError, got ${err && err.constructor.name}: ${err && err.message}`);
    assert.equal(err.status, 429);
    assert.equal(err.code, 'budget_exceeded');
    assert.equal(err.error.cap, 'budget_monthly', 'the SDK keeps the cap that refused');
    assert.equal(err.type, 'insufficient_quota');
    assert.ok(err.message.includes(BLOCK_MSG), `message carries the plan's block_message: ${err.message}`);
    await checkBlocked({ tenant, nonce, cap, elapsed, before, model: 'gpt-4o',
      bodyCheck: (b) => assert.deepEqual(b, { error: { message: BLOCK_MSG, type: 'insufficient_quota', param: null, code: 'budget_exceeded', cap: 'budget_monthly' } }) });
  });

  test('F79 anthropic SDK (default retries): 429 rate_limit_error with block_message within 1 s, x-should-retry false, nothing forwarded', async () => {
    const tenant = h.uniq('blk-ant');
    const nonce = h.uniq('n');
    await seedSpent(tenant);
    const before = await snapshot(env.redis, tenant);
    const cap = capturingFetch();
    const c = sdkAnthropic(env.tg, tenant, 'blockp', { fetch: cap.fetch });
    assert.equal(c.maxRetries, 2, 'the client keeps the SDK default retries');
    const t0 = Date.now();
    const err = await c.messages.create({ model: 'claude-haiku-4-5', max_tokens: 20, messages: chatMsgs(`${nonce} mock:tokens=10,5`) })
      .then(() => null, (e) => e);
    const elapsed = Date.now() - t0;
    assert.ok(err, 'the SDK raised');
    const { Anthropic } = require('@anthropic-ai/sdk');
    assert.ok(err instanceof Anthropic.RateLimitError, `RateLimitError, got ${err && err.constructor.name}: ${err && err.message}`);
    assert.equal(err.status, 429);
    assert.equal(err.error && err.error.error && err.error.error.type, 'rate_limit_error');
    assert.equal(err.error.error.code, 'budget_exceeded', 'the SDK keeps tollgate\'s code');
    assert.equal(err.error.error.cap, 'budget_monthly');
    await checkBlocked({ tenant, nonce, cap, elapsed, before, model: 'claude-haiku-4-5',
      bodyCheck: (b) => {
        assert.equal(b.type, 'error');
        assert.deepEqual(b.error, { type: 'rate_limit_error', message: BLOCK_MSG, code: 'budget_exceeded', cap: 'budget_monthly' });
      } });
  });

  test('F79 gemini SDK (default retries): 429 RESOURCE_EXHAUSTED with block_message within 1 s, x-should-retry false, nothing forwarded', async () => {
    const tenant = h.uniq('blk-gem');
    const nonce = h.uniq('n');
    await seedSpent(tenant);
    const before = await snapshot(env.redis, tenant);
    const cap = capturingFetch();
    const c = sdkGemini(env.tg, tenant, 'blockp', { fetch: cap.fetch });
    const t0 = Date.now();
    const err = await c.models.generateContent({ model: 'gemini-2.5-flash', contents: `${nonce} mock:tokens=10,5`, config: { maxOutputTokens: 20 } })
      .then(() => null, (e) => e);
    const elapsed = Date.now() - t0;
    assert.ok(err, 'the SDK raised');
    assert.equal(err.status, 429, `ApiError 429, got ${err && err.message}`);
    assert.match(err.message, /RESOURCE_EXHAUSTED/);
    const info = { '@type': 'type.googleapis.com/google.rpc.ErrorInfo', reason: 'BUDGET_EXCEEDED', domain: 'tollgate',
      metadata: { code: 'budget_exceeded', cap: 'budget_monthly' } };
    assert.deepEqual(JSON.parse(err.message).error.details, [info], 'the SDK\'s ApiError carries the ErrorInfo');
    await checkBlocked({ tenant, nonce, cap, elapsed, before, model: 'gemini-2.5-flash',
      bodyCheck: (b) => assert.deepEqual(b, { error: { code: 429, message: BLOCK_MSG, status: 'RESOURCE_EXHAUSTED', details: [info] } }) });
  });

  test('F79 under budget: forwarded with X-Tollgate-Budget-Remaining; the request that reaches the cap is the last one admitted', async () => {
    const tenant = h.uniq('blk-under');
    const c = sdkOpenAI(env.tg, tenant, 'blockp', { maxRetries: 0 });
    // 200 in + 50 out of gpt-4o = 0.5M + 0.5M nano = the whole $0.001.
    const { response } = await c.chat.completions.create({ model: 'gpt-4o', max_tokens: 50, messages: chatMsgs('mock:tokens=200,50') }).withResponse();
    assert.equal(response.status, 200);
    const remaining = response.headers.get('x-tollgate-budget-remaining');
    assert.ok(remaining !== null, 'X-Tollgate-Budget-Remaining on a forwarded answer of a plan with a monthly budget');
    assert.ok(Number(remaining) >= 0 && Number(remaining) <= 0.001, `remaining ${remaining} is within the $0.001 budget`);
    const m = await env.redis.waitRequests(tenant, 1);
    assert.equal(m.cost, h.expectedNano('gpt-4o', { input: 200, output: 50 }));
    assert.equal(m.cost, CAP_NANO);
    const err = await c.chat.completions.create({ model: 'gpt-4o', max_tokens: 50, messages: chatMsgs('mock:tokens=1,1') }).then(() => null, (e) => e);
    assert.ok(err && err.status === 429 && err.code === 'budget_exceeded', `then blocked: ${err && err.message}`);
  });

  test('X-Tollgate-Budget-Remaining is the tightest cap that still applies; the default block message names no plan', async () => {
    // $1 a month but $0.001 a day: the day binds
    const tenant = h.uniq('rem-daily');
    const c = sdkOpenAI(env.tg, tenant, 'secretname', { maxRetries: 0 });
    const { response } = await c.chat.completions.create({ model: 'gpt-4o', max_tokens: 20, messages: chatMsgs('mock:tokens=100,20') }).withResponse();
    assert.equal(response.headers.get('x-tollgate-budget-remaining'), '0.001', 'the daily cap binds, not the monthly $1');
    await env.redis.waitRequests(tenant, 1);
    await env.redis.cmd('HSET', dKey(tenant), 'cost', String(CAP_NANO));
    const err = await c.chat.completions.create({ model: 'gpt-4o', max_tokens: 20, messages: chatMsgs('mock:tokens=1,1') }).then(() => null, (e) => e);
    assert.ok(err && err.status === 429 && err.code === 'budget_exceeded', `blocked: ${err && err.message}`);
    assert.match(err.message, /daily AI budget of \$0\.001; it resets at the start of the next day \(UTC\)/);
    assert.doesNotMatch(err.message, /secretname/, 'the internal plan name is not shown to the app');
    // downgraded past the monthly cap: what is left is under the hard limit ($0.01 - $0.001)
    const dn = h.uniq('rem-down');
    await seedSpent(dn, CAP_NANO);
    const d = sdkOpenAI(env.tg, dn, 'down', { maxRetries: 0 });
    const r2 = await d.chat.completions.create({ model: 'gpt-4o', max_tokens: 20, messages: chatMsgs('mock:tokens=10,2') }).withResponse();
    assert.equal(r2.response.headers.get('x-tollgate-downgraded'), 'gpt-4o -> gpt-4o-mini');
    assert.equal(r2.response.headers.get('x-tollgate-budget-remaining'), '0.009');
  });

  // ---- F80: downgrade -------------------------------------------------------------------

  test('F80 openai downgrade gpt-4o > gpt-4o-mini over budget: only the top-level model changes, header, record, cost at the cheaper model', async () => {
    const tenant = h.uniq('dn-oai');
    const nonce = h.uniq('n');
    await seedSpent(tenant, CAP_NANO);
    const c = sdkOpenAI(env.tg, tenant, 'down', { maxRetries: 0 });
    const content = `${nonce} keep this: {"model":"gpt-4o"} mock:tokens=300,40`;
    const body = {
      model: 'gpt-4o', max_tokens: 60, temperature: 0.5,
      metadata: { model: 'gpt-4o' },
      messages: [{ role: 'system', content: 'model: gpt-4o' }, { role: 'user', content, name: 'gpt-4o' }],
    };
    const { response } = await c.chat.completions.create(body).withResponse();
    assert.equal(response.status, 200);
    assert.equal(response.headers.get('x-tollgate-downgraded'), 'gpt-4o -> gpt-4o-mini');
    const up = env.mock.requestsWith(nonce);
    assert.equal(up.length, 1, 'forwarded once');
    assert.equal(up[0].json.model, 'gpt-4o-mini', 'the upstream got the cheaper model');
    assert.deepEqual({ ...up[0].json, model: 'gpt-4o' }, body, 'nothing but the top-level model changed (nested "model" strings untouched)');
    assert.ok(up[0].body.includes('{\\"model\\":\\"gpt-4o\\"}'), 'the "model" text inside the message is byte-identical');
    const rec = await env.tg.record(response.headers.get('x-tollgate-request-id'));
    assert.equal(rec.model_requested, 'gpt-4o');
    assert.equal(rec.model, 'gpt-4o-mini');
    assert.equal(rec.downgraded, true);
    assert.equal(rec.outcome, 'ok');
    const nano = h.expectedNano('gpt-4o-mini', { input: 300, output: 40 });
    assert.notEqual(nano, h.expectedNano('gpt-4o', { input: 300, output: 40 }));
    assert.equal(h.recordNano(rec), nano, 'priced at gpt-4o-mini');
    const m = await env.redis.waitRequests(tenant, 1);
    assert.equal(m.cost, CAP_NANO + nano, 'Redis month cost = seed + the cheaper price');
    await waitNoReservations(env.redis, tenant);
  });

  test('F80 downgrade only when over budget: under the cap gpt-4o is forwarded as asked, no X-Tollgate-Downgraded', async () => {
    const tenant = h.uniq('dn-under');
    const nonce = h.uniq('n');
    const c = sdkOpenAI(env.tg, tenant, 'down', { maxRetries: 0 });
    const { response } = await c.chat.completions.create({ model: 'gpt-4o', max_tokens: 10, messages: chatMsgs(`${nonce} mock:tokens=20,5`) }).withResponse();
    assert.equal(response.status, 200);
    assert.equal(response.headers.get('x-tollgate-downgraded'), null);
    assert.equal(env.mock.requestsWith(nonce)[0].json.model, 'gpt-4o');
    const rec = await env.tg.record(response.headers.get('x-tollgate-request-id'));
    assert.equal(rec.model, 'gpt-4o');
    assert.notEqual(rec.downgraded, true);
  });

  test('F80 anthropic downgrade claude-sonnet-4-5 > claude-haiku-4-5 over budget: header, record, cost at haiku', async () => {
    const tenant = h.uniq('dn-ant');
    const nonce = h.uniq('n');
    await seedSpent(tenant, CAP_NANO);
    const c = sdkAnthropic(env.tg, tenant, 'down', { maxRetries: 0 });
    const body = {
      model: 'claude-sonnet-4-5', max_tokens: 60, metadata: { user_id: 'claude-sonnet-4-5' },
      messages: [{ role: 'user', content: [{ type: 'text', text: `${nonce} "model":"claude-sonnet-4-5" mock:tokens=200,30` }] }],
    };
    const { response } = await c.messages.create(body).withResponse();
    assert.equal(response.status, 200);
    assert.equal(response.headers.get('x-tollgate-downgraded'), 'claude-sonnet-4-5 -> claude-haiku-4-5');
    const up = env.mock.requestsWith(nonce);
    assert.equal(up.length, 1);
    assert.equal(up[0].path, '/v1/messages');
    assert.equal(up[0].json.model, 'claude-haiku-4-5');
    assert.deepEqual({ ...up[0].json, model: 'claude-sonnet-4-5' }, body, 'only the top-level model changed');
    const rec = await env.tg.record(response.headers.get('x-tollgate-request-id'));
    assert.equal(rec.model_requested, 'claude-sonnet-4-5');
    assert.equal(rec.model, 'claude-haiku-4-5');
    assert.equal(rec.downgraded, true);
    const nano = h.expectedNano('claude-haiku-4-5', { input: 200, output: 30 });
    assert.equal(h.recordNano(rec), nano);
    const m = await env.redis.waitRequests(tenant, 1);
    assert.equal(m.cost, CAP_NANO + nano);
  });

  test('F80 gemini downgrade gemini-2.5-pro > gemini-2.5-flash over budget: the model in the URL path is rewritten, header, record, cost at flash', async () => {
    const tenant = h.uniq('dn-gem');
    const nonce = h.uniq('n');
    await seedSpent(tenant, CAP_NANO);
    const cap = capturingFetch();
    const c = sdkGemini(env.tg, tenant, 'down', { fetch: cap.fetch });
    const r = await c.models.generateContent({ model: 'gemini-2.5-pro', contents: `${nonce} models/gemini-2.5-pro mock:tokens=400,50`, config: { maxOutputTokens: 80 } });
    assert.equal(r.text, 'tok0 tok1 tok2 ');
    assert.equal(cap.calls.length, 1);
    assert.equal(cap.calls[0].headers.get('x-tollgate-downgraded'), 'gemini-2.5-pro -> gemini-2.5-flash');
    const up = env.mock.requestsWith(nonce);
    assert.equal(up.length, 1);
    assert.equal(up[0].path, '/v1beta/models/gemini-2.5-flash:generateContent');
    assert.ok(up[0].body.includes('models/gemini-2.5-pro'), 'the body text is untouched');
    const rec = await env.tg.record(cap.calls[0].headers.get('x-tollgate-request-id'));
    assert.equal(rec.model_requested, 'gemini-2.5-pro');
    assert.equal(rec.model, 'gemini-2.5-flash');
    assert.equal(rec.downgraded, true);
    const nano = h.expectedNano('gemini-2.5-flash', { input: 400, output: 50 });
    assert.equal(h.recordNano(rec), nano);
    const m = await env.redis.waitRequests(tenant, 1);
    assert.equal(m.cost, CAP_NANO + nano);
  });

  test('F80 past hard_limit even a downgradable model is blocked (429 budget_exceeded, nothing forwarded, Redis unchanged)', async () => {
    const tenant = h.uniq('dn-hard');
    const nonce = h.uniq('n');
    await seedSpent(tenant, HARD_NANO);
    const before = await snapshot(env.redis, tenant);
    const r = await h.post(env.tg, '/v1/chat/completions', { model: 'gpt-4o', max_tokens: 10, messages: chatMsgs(`${nonce} mock:tokens=5,5`) },
      { 'X-Tenant-Id': tenant, 'X-Tenant-Plan': 'down' });
    assert.equal(r.status, 429, r.text);
    assert.equal(r.json.error.code, 'budget_exceeded');
    assert.equal(r.json.error.type, 'insufficient_quota');
    assert.equal(r.headers.get('x-should-retry'), 'false');
    assert.equal(r.headers.get('x-tollgate-downgraded'), null);
    assertNear(Number(r.headers.get('retry-after')), toNextMonth(Date.now()), 2, 'Retry-After to the month end');
    assert.equal((await h.newRequests(env.mock, 0, h.ms(200))).filter((q) => q.body && q.body.includes(nonce)).length, 0);
    const rec = await env.tg.record(r.headers.get('x-tollgate-request-id'));
    assert.equal(rec.outcome, 'blocked');
    assert.equal(rec.status, 429);
    assert.notEqual(rec.downgraded, true);
    assert.deepEqual(await snapshot(env.redis, tenant), before);
  });

  test('F80 over budget with a model that has no downgrade mapping: blocked', async () => {
    const tenant = h.uniq('dn-nomap');
    const nonce = h.uniq('n');
    await seedSpent(tenant, CAP_NANO);
    const before = await snapshot(env.redis, tenant);
    const c = sdkOpenAI(env.tg, tenant, 'down', { maxRetries: 0 });
    const err = await c.chat.completions.create({ model: 'gpt-4.1', max_tokens: 10, messages: chatMsgs(`${nonce} mock:tokens=5,5`) }).then(() => null, (e) => e);
    assert.ok(err && err.status === 429 && err.code === 'budget_exceeded', `blocked: ${err && err.message}`);
    assert.equal(err.headers.get('x-should-retry'), 'false');
    assert.equal((await h.newRequests(env.mock, 0, h.ms(200))).filter((q) => q.body && q.body.includes(nonce)).length, 0);
    const [rec] = await env.tg.records({ tenant }, 1);
    assert.equal(rec.outcome, 'blocked');
    assert.deepEqual(await snapshot(env.redis, tenant), before);
  });

  test('F80 a body with a duplicated "model" key: 400 in the dialect, never forwarded (over budget with downgrade and under budget)', async () => {
    for (const [over, path, dialect] of [[true, '/v1/chat/completions', 'openai'], [false, '/v1/chat/completions', 'openai'], [true, '/v1/messages', 'anthropic']]) {
      const tenant = h.uniq('dup');
      const nonce = h.uniq('n');
      if (over) await seedSpent(tenant, CAP_NANO);
      const before = await snapshot(env.redis, tenant);
      const first = dialect === 'anthropic' ? 'claude-sonnet-4-5' : 'gpt-4o';
      const second = dialect === 'anthropic' ? 'claude-haiku-4-5' : 'gpt-4o-mini';
      const raw = `{"model":"${first}","max_tokens":10,"messages":[{"role":"user","content":"${nonce} mock:tokens=5,5"}],"model":"${second}"}`;
      const r = await h.post(env.tg, path, raw, { 'X-Tenant-Id': tenant, 'X-Tenant-Plan': 'down', 'anthropic-version': '2023-06-01' });
      assert.equal(r.status, 400, `${path} over=${over}: ${r.text}`);
      assert.ok(r.json, `JSON error body: ${r.text}`);
      if (dialect === 'openai') assert.ok(r.json.error && typeof r.json.error.message === 'string', r.text);
      else assert.ok(r.json.type === 'error' && r.json.error && r.json.error.type === 'invalid_request_error', r.text);
      assert.match(r.text, /model/i, 'the message names the duplicated key');
      assert.equal((await h.newRequests(env.mock, 0, h.ms(200))).filter((q) => q.body && q.body.includes(nonce)).length, 0, 'never forwarded');
      const rec = await env.tg.record(r.headers.get('x-tollgate-request-id'));
      assert.equal(rec.outcome, 'bad_request');
      assert.equal(rec.status, 400);
      assert.deepEqual(await snapshot(env.redis, tenant), before, 'no counters or reservation');
    }
  });

  // ---- E65: the 200-way race --------------------------------------------------------------

  test('E65 200 parallel SDK requests against a budget that fits exactly 10: at most 10+1 admitted, overspend <= one estimate, Redis cost = sum of records, no reservation left', { timeout: h.ms(90000) }, async () => {
    const OUT = 50;
    const LEN = 400;
    // Fixed-length content so the estimate does not depend on the digits of IN.
    const contentFor = (inTok) => {
      const head = `mock:tokens=${inTok},${OUT} mock:delay=300 `;
      return head + 'p'.repeat(LEN - head.length);
    };
    // 1. The estimate of exactly this body, read from the reservation while it is in flight.
    const probe = h.uniq('race-probe');
    const pc = sdkOpenAI(env.tg, probe, 'big', { maxRetries: 0 });
    const probeBody = (inTok) => ({ model: 'gpt-4o', max_tokens: OUT, messages: chatMsgs(contentFor(inTok)) });
    const p = pc.chat.completions.create({ ...probeBody(1), messages: chatMsgs(contentFor(1).replace('mock:delay=300', 'mock:delay=900')) });
    const est = await h.waitFor(async () => (await hnum(env.redis, mKey(probe))).reserved || 0,
      { timeout: h.ms(3000), what: 'the probe request holding a reservation' });
    await p;
    const outNano = h.expectedNano('gpt-4o', { input: 0, output: OUT });
    const inNano = h.expectedNano('gpt-4o', { input: 1, output: 0 });
    const IN = (est - outNano) / inNano;
    assert.ok(Number.isInteger(IN) && IN > 0 && IN < LEN, `estimate ${est} nano = IN*${inNano} + ${OUT}*${outNano / OUT} for an integer IN (got ${IN})`);
    const E = h.expectedNano('gpt-4o', { input: IN, output: OUT });
    assert.equal(E, est);
    const CAP = 10 * E;

    // 2. A tollgate where the race tenant's plan has exactly 10 estimates of budget.
    await env.withTollgate({ ...PLANS, 'plan race': { price: 1, budget_monthly: usd(CAP), on_exceed: 'block' } }, async (tg) => {
      const tenant = h.uniq('race');
      const c = sdkOpenAI(tg, tenant, 'race', { maxRetries: 0 });
      const body = { model: 'gpt-4o', max_tokens: OUT, messages: chatMsgs(contentFor(IN)) };
      assert.equal(JSON.stringify(body).length, JSON.stringify(probeBody(1)).length, 'same body size as the probe');
      const results = await Promise.allSettled(Array.from({ length: 200 }, () => c.chat.completions.create(body)));
      const ok = results.filter((r) => r.status === 'fulfilled').length;
      const blocked = results.filter((r) => r.status === 'rejected' && r.reason.status === 429 && r.reason.code === 'budget_exceeded').length;
      const other = results.filter((r) => r.status === 'rejected' && !(r.reason.status === 429 && r.reason.code === 'budget_exceeded'));
      assert.deepEqual(other.map((r) => `${r.reason.status} ${r.reason.message}`), [], 'every request is either admitted or budget-blocked');
      assert.equal(ok + blocked, 200);
      assert.ok(ok <= 11, `at most 10 + 1 admitted, got ${ok}`);
      assert.ok(ok >= 10, `the budget fits 10 requests, all 10 are admitted (got ${ok})`);

      const recs = await tg.records({ tenant }, 200, h.ms(15000));
      assert.equal(recs.length, 200, 'one record per request');
      assert.equal(recs.filter((r) => r.outcome === 'ok' && r.status === 200).length, ok);
      assert.equal(recs.filter((r) => r.outcome === 'blocked' && r.status === 429).length, blocked);
      for (const r of recs.filter((x) => x.outcome === 'ok')) {
        h.assertTokens(r, { input: IN, output: OUT });
        assert.equal(h.recordNano(r), E, 'actual cost = estimate');
      }
      const m = await env.redis.waitRequests(tenant, ok, h.ms(10000));
      const sum = recs.reduce((s, r) => s + h.recordNano(r), 0);
      const { m: mm, d: dd } = await waitNoReservations(env.redis, tenant);
      assert.equal(mm.requests, ok, 'blocked requests are not counted');
      assert.equal(mm.cost, sum, 'Redis month cost = sum of the records\' cost_usd to the nano-dollar');
      assert.equal(dd.cost, sum, 'day counter too');
      assert.ok(mm.cost - CAP <= E, `overspend ${mm.cost - CAP} nano is at most one estimate (${E})`);
      assert.equal(mm.capped || 0, 0, 'no short reservation left');
      assert.equal(m.requests, ok);
    });
  });

  // ---- D62: periods ----------------------------------------------------------------------

  test('daily cap (budget_daily): 429 budget_exceeded with Retry-After to the next UTC midnight, x-should-retry false, nothing forwarded', async () => {
    const tenant = h.uniq('daily');
    const nonce = h.uniq('n');
    await env.redis.cmd('HSET', dKey(tenant), 'cost', String(CAP_NANO));
    const before = await snapshot(env.redis, tenant);
    const cap = capturingFetch();
    const c = sdkOpenAI(env.tg, tenant, 'daily', { fetch: cap.fetch });
    const t0 = Date.now();
    const err = await c.chat.completions.create({ model: 'gpt-4o-mini', max_tokens: 10, messages: chatMsgs(`${nonce} mock:tokens=5,5`) }).then(() => null, (e) => e);
    assert.ok(Date.now() - t0 < h.ms(1000), 'no retry');
    assert.ok(err && err.status === 429 && err.code === 'budget_exceeded', `blocked: ${err && err.message}`);
    assert.equal(cap.calls.length, 1);
    assert.equal(cap.calls[0].headers.get('x-should-retry'), 'false');
    assertNear(Number(cap.calls[0].headers.get('retry-after')), toNextDay(Date.now()), 2, 'Retry-After = seconds to the next UTC midnight');
    assert.equal((await h.newRequests(env.mock, 0, h.ms(200))).filter((q) => q.body && q.body.includes(nonce)).length, 0);
    const [rec] = await env.tg.records({ tenant }, 1);
    assert.equal(rec.outcome, 'blocked');
    assert.deepEqual(await snapshot(env.redis, tenant), before);
    // A day with spend under the cap passes: yesterday's spend does not count today.
    const other = h.uniq('daily-y');
    await env.redis.cmd('HSET', dKey(other, Date.now() - 86400000), 'cost', String(CAP_NANO * 5));
    const ok = await sdkOpenAI(env.tg, other, 'daily', { maxRetries: 0 }).chat.completions.create({ model: 'gpt-4o-mini', max_tokens: 10, messages: chatMsgs('mock:tokens=5,5') });
    assert.equal(ok.usage.prompt_tokens, 5);
  });

  test('D62 month rollover with TOLLGATE_CLOCK_OFFSET: spent up to the cap now, admitted again next month, counters in the new month hash, the old month unchanged', { timeout: h.ms(60000) }, async () => {
    const tenant = h.uniq('roll');
    const c = sdkOpenAI(env.tg, tenant, 'blockp', { maxRetries: 0 });
    // Spend it all this month: 200 in + 60 out of gpt-4o = 0.5M + 0.6M nano > the $0.001 cap.
    await c.chat.completions.create({ model: 'gpt-4o', max_tokens: 60, messages: chatMsgs('mock:tokens=200,60') });
    await env.redis.waitRequests(tenant, 1);
    const err = await c.chat.completions.create({ model: 'gpt-4o', max_tokens: 10, messages: chatMsgs('mock:tokens=5,5') }).then(() => null, (e) => e);
    assert.ok(err && err.status === 429 && err.code === 'budget_exceeded', 'blocked this month');
    const now = Date.now();
    const oldMonth = await env.redis.hgetall(mKey(tenant, now));
    assert.ok(Number(oldMonth.cost) >= CAP_NANO, `this month spent: ${JSON.stringify(oldMonth)}`);

    // Tollgate's clock three days and an hour into the next month.
    const offset = Math.ceil(toNextMonth(now)) + 3 * 86400 + 3600;
    const future = now + offset * 1000;
    assert.notEqual(monthOf(future), monthOf(now));
    const tg2 = await h.startTollgate({ redis: env.redis, mock: env.mock, overrides: { ...PLANS }, env: { TOLLGATE_CLOCK_OFFSET: String(offset) } });
    let failed = false;
    try {
      const c2 = sdkOpenAI(tg2, tenant, 'blockp', { maxRetries: 0 });
      const { response } = await c2.chat.completions.create({ model: 'gpt-4o', max_tokens: 60, messages: chatMsgs('mock:tokens=200,60') }).withResponse();
      assert.equal(response.status, 200, 'admitted again in the new month');
      const rec = await tg2.record(response.headers.get('x-tollgate-request-id'));
      assert.equal(rec.ts.slice(0, 7), monthOf(future), `the record is dated by tollgate's clock: ${rec.ts}`);
      const nano = h.expectedNano('gpt-4o', { input: 200, output: 60 });
      const newMonth = await h.waitFor(async () => {
        const m = await hnum(env.redis, mKey(tenant, future));
        return m.requests === 1 ? m : null;
      }, { what: 'the new month hash counted the request' });
      assert.equal(newMonth.cost, nano);
      assert.equal(newMonth.reserved || 0, 0);
      const newDay = await hnum(env.redis, dKey(tenant, future));
      assert.equal(newDay.cost, nano, 'and the new day hash');
      assert.deepEqual(await env.redis.hgetall(mKey(tenant, now)), oldMonth, 'the old month is unchanged');
      // Over the cap again in the new month: the block points at the month after (tollgate's clock).
      const r = await h.post(tg2, '/v1/chat/completions', { model: 'gpt-4o', max_tokens: 10, messages: chatMsgs('mock:tokens=5,5') },
        { 'X-Tenant-Id': tenant, 'X-Tenant-Plan': 'blockp' });
      assert.equal(r.status, 429);
      assertNear(Number(r.headers.get('retry-after')), toNextMonth(Date.now() + offset * 1000), 2, 'Retry-After from tollgate\'s (offset) clock');
      // And the old tollgate (real clock) still blocks in the old month.
      const err2 = await c.chat.completions.create({ model: 'gpt-4o', max_tokens: 10, messages: chatMsgs('mock:tokens=5,5') }).then(() => null, (e) => e);
      assert.ok(err2 && err2.status === 429, 'still blocked in the current month');
    } catch (e) {
      failed = true;
      throw e;
    } finally {
      if (failed) await tg2.stop();
      else await tg2.stopAndCheck();
    }
  });

  // ---- soft-limit alerts -----------------------------------------------------------------

  describe('soft-limit alerts', () => {
    let sink = null;
    before(async () => { sink = await startWebhookSink({ delayMs: h.ms(2000) }); });
    after(async () => { if (sink) await sink.close(); });

    test('soft-limit alerts at 50% and 100%: one POST each with the JSON fields, deduplicated across requests and a restart, the request path never waits for the slow webhook', { timeout: h.ms(90000) }, async () => {
      const tenant = h.uniq('alert');
      const overrides = {
        ...PLANS,
        server: { workers: 1 },
        alerts: { webhook: sink.url, thresholds: '50%, 100%' },
        'plan alerted': { price: 5, budget_monthly: '0.01', on_exceed: 'block' },
      };
      const mine = (p) => p.json && p.json.tenant === tenant;
      const month = monthOf(Date.now());
      const send = async (tg, tokens) => {
        const c = sdkOpenAI(tg, tenant, 'alerted', { maxRetries: 0 });
        const t0 = Date.now();
        const { response } = await c.chat.completions.create({ model: 'gpt-4o', max_tokens: 100, messages: chatMsgs(`mock:tokens=${tokens}`) }).withResponse();
        const elapsed = Date.now() - t0;
        assert.equal(response.status, 200);
        await tg.record(response.headers.get('x-tollgate-request-id'));
        return elapsed;
      };
      const quiet = async (n, what) => {
        await h.sleep(h.ms(1000));
        assert.equal(sink.matching(mine).length, n, `${what}: ${JSON.stringify(sink.matching(mine).map((p) => p.json))}`);
      };

      let tg = await env.start(overrides);
      let failed = false;
      try {
        // 800 in + 100 out of gpt-4o = 3M nano = 30% of $0.01: no alert.
        await send(tg, '800,100');
        await quiet(0, 'no alert below 50%');
        // +3M = 60%: crosses 50%.
        const elapsed = await send(tg, '800,100');
        assert.ok(elapsed < h.ms(1000), `the crossing request took ${elapsed} ms (the webhook answers after ${h.ms(2000)} ms)`);
        const [post] = await sink.waitFor(mine, 1);
        assert.equal(post.method, 'POST');
        assert.equal(post.url, '/hook');
        assert.match(post.headers['content-type'] || '', /application\/json/);
        assert.ok(post.json, `JSON body: ${post.body}`);
        assert.equal(post.json.tenant, tenant);
        assert.equal(post.json.plan, 'alerted');
        assert.equal(post.json.threshold_pct, 50);
        assert.equal(Number(post.json.spend_usd), 0.006);
        assert.equal(Number(post.json.cap_usd), 0.01);
        assert.equal(Number(post.json.percent), 60);
        assert.equal(post.json.month, month);
        assert.equal(typeof post.json.text, 'string', 'Slack-compatible: a text field');
        // The webhook has not answered yet; another request of the same (single) worker is fast.
        const e3 = await send(tg, '200,50'); // +1M = 70%
        assert.ok(e3 < h.ms(1000), `a request while the webhook is pending took ${e3} ms`);
        assert.equal(post.answeredAt, null, 'the request finished while the webhook POST was still unanswered');
        await quiet(1, 'no second alert for 70%');
        await sink.settled();
        await tg.stopAndCheck();

        // Restart; spend moved back under 50% by hand so that 50% is crossed again: deduplicated in Redis.
        assert.equal((await env.redis.cmd('EXISTS', `${PREFIX}{${tenant}}:alert:${month}:50`))[0], '1', 'dedupe key for 50%');
        tg = await env.start(overrides);
        await env.redis.cmd('HSET', mKey(tenant), 'cost', '4000000');
        await send(tg, '800,100'); // 4M + 3M = 70%: crosses 50% a second time
        await quiet(1, 'crossing 50% again after a restart sends nothing');
        // 1200 in + 100 out = 4M: 11M = 110% crosses 100%.
        const e5 = await send(tg, '1200,100');
        assert.ok(e5 < h.ms(1000), `the request crossing 100% took ${e5} ms`);
        const posts = await sink.waitFor(mine, 2);
        const p100 = posts.find((p) => p.json.threshold_pct === 100);
        assert.ok(p100, `a 100% alert: ${JSON.stringify(posts.map((p) => p.json))}`);
        assert.equal(Number(p100.json.spend_usd), 0.011);
        assert.equal(Number(p100.json.percent), 110);
        assert.equal(p100.json.month, month);
        await quiet(2, 'exactly one POST per threshold');
        await sink.settled();
      } catch (e) {
        failed = true;
        throw e;
      } finally {
        if (failed) await tg.stop();
        else await tg.stopAndCheck();
      }
    });
  });

  // ---- rpm and tpm -----------------------------------------------------------------------

  test('rpm = 3: the 4th request in a burst gets 429 rate_limit_exceeded, Retry-After the real wait (20 s a slot), x-ratelimit-* headers, no x-should-retry, record rate_limited', async () => {
    const tenant = h.uniq('rpm');
    const cap = capturingFetch();
    const c = sdkOpenAI(env.tg, tenant, 'rpm3', { maxRetries: 0, fetch: cap.fetch });
    for (let i = 0; i < 3; i++) {
      await c.chat.completions.create({ model: 'gpt-4o-mini', max_tokens: 10, messages: chatMsgs(`mock:tokens=5,5 #${i}`) });
    }
    const nonce = h.uniq('n');
    const err = await c.chat.completions.create({ model: 'gpt-4o-mini', max_tokens: 10, messages: chatMsgs(`${nonce} mock:tokens=5,5`) }).then(() => null, (e) => e);
    const { OpenAI } = require('openai');
    assert.ok(err instanceof OpenAI.RateLimitError, `RateLimitError: ${err && err.message}`);
    assert.equal(err.code, 'rate_limit_exceeded');
    assert.equal(err.type, 'rate_limit_exceeded');
    const last = cap.calls[cap.calls.length - 1];
    assert.equal(cap.calls.length, 4);
    assert.equal(last.status, 429);
    assert.equal(last.headers.get('x-should-retry'), null, 'a rate limit must let the SDK retry later');
    // GCRA: a slot frees every 60/3 = 20 s after the burst, not at the next minute
    const ra = Number(last.headers.get('retry-after')), raMs = Number(last.headers.get('retry-after-ms'));
    assert.ok(ra >= 1 && ra <= 20, `Retry-After ${ra}: the wait for the next slot (<= 20 s)`);
    assert.ok(raMs > 0 && raMs <= 20000 && Math.abs(raMs / 1000 - ra) < 1, `retry-after-ms ${raMs} agrees with Retry-After ${ra}`);
    assert.equal(last.headers.get('x-ratelimit-limit-requests'), '3');
    assert.equal(last.headers.get('x-ratelimit-remaining-requests'), '0');
    assert.match(last.headers.get('x-ratelimit-reset-requests'), /^(\d+s|1m\d+s|\d+ms)$/);
    assert.equal(cap.calls[0].headers.get('x-ratelimit-limit-requests'), '3', 'forwarded answers carry them too');
    assert.equal(cap.calls[0].headers.get('x-ratelimit-remaining-requests'), '2');
    const b = JSON.parse(last.text);
    assert.equal(b.error.type, 'rate_limit_exceeded');
    assert.equal(b.error.code, 'rate_limit_exceeded');
    assert.equal(b.error.param, null);
    assert.equal((await h.newRequests(env.mock, 0, h.ms(200))).filter((q) => q.body && q.body.includes(nonce)).length, 0, 'not forwarded');
    const recs = await env.tg.records({ tenant }, 4);
    assert.deepEqual(recs.map((r) => r.outcome).sort(), ['ok', 'ok', 'ok', 'rate_limited']);
    const rl = recs.find((r) => r.outcome === 'rate_limited');
    assert.equal(rl.status, 429);
    assert.equal(rl.cost_usd, 0);
    const m = await env.redis.waitRequests(tenant, 3);
    assert.equal(m.requests, 3, 'the rate-limited request is not counted');
  });

  test('tpm = 3000: large prompts, the request that would pass 3000 tokens in the minute gets 429 rate_limit_exceeded, record rate_limited', async () => {
    const tenant = h.uniq('tpm');
    const cap = capturingFetch();
    const c = sdkOpenAI(env.tg, tenant, 'tpm3k', { maxRetries: 0, fetch: cap.fetch });
    // ~3600 bytes of prompt (~900 tokens at 4 bytes/token) + max_tokens 100: ~1000 tokens each.
    const big = (tag) => `${'lorem ipsum '.repeat(300)} ${tag} mock:tokens=1000,100`;
    for (let i = 0; i < 2; i++) {
      await c.chat.completions.create({ model: 'gpt-4o-mini', max_tokens: 100, messages: chatMsgs(big(`#${i}`)) });
      await env.redis.waitRequests(tenant, i + 1);
    }
    const nonce = h.uniq('n');
    const err = await c.chat.completions.create({ model: 'gpt-4o-mini', max_tokens: 100, messages: chatMsgs(big(nonce)) }).then(() => null, (e) => e);
    assert.ok(err && err.status === 429, `429: ${err && err.message}`);
    assert.equal(err.code, 'rate_limit_exceeded');
    assert.equal(err.type, 'rate_limit_exceeded');
    assert.match(err.message, /token/i, 'the message says tokens per minute');
    const last = cap.calls[cap.calls.length - 1];
    assert.equal(last.headers.get('x-should-retry'), null);
    const ra = Number(last.headers.get('retry-after'));
    assert.ok(ra >= 1 && ra <= 60, `Retry-After ${ra}: the wait until the tokens fit`);
    assert.equal(last.headers.get('x-ratelimit-limit-tokens'), '3000');
    assert.equal((await h.newRequests(env.mock, 0, h.ms(200))).filter((q) => q.body && q.body.includes(nonce)).length, 0, 'not forwarded');
    const recs = await env.tg.records({ tenant }, 3);
    assert.deepEqual(recs.map((r) => r.outcome).sort(), ['ok', 'ok', 'rate_limited']);
    // A small request still fits in the minute: the limit is on tokens, not requests.
    const small = await c.chat.completions.create({ model: 'gpt-4o-mini', max_tokens: 10, messages: chatMsgs('mock:tokens=5,5') }).then(() => 'ok', (e) => e);
    assert.equal(small, 'ok', `a small request fits under the tpm: ${small && small.message}`);
  });

  test('rpm = 60, a burst past the limit: the refused get retry-after-ms of at most a second, and the SDK with its default retries gets through', async () => {
    const tenant = h.uniq('rpm60');
    const cap = capturingFetch();
    const c = sdkOpenAI(env.tg, tenant, 'rpm60', { maxRetries: 0, fetch: cap.fetch });
    // 70 at once against a burst of 60: however slow the machine, some are refused
    const got = await Promise.all(Array.from({ length: 70 }, (_, i) =>
      c.chat.completions.create({ model: 'gpt-4o-mini', max_tokens: 5, messages: chatMsgs(`mock:tokens=2,2 #${i}`) })
        .then(() => 200, (e) => e.status)));
    const refused = cap.calls.filter((x) => x.status === 429);
    assert.ok(refused.length >= 1 && got.filter((x) => x === 200).length >= 60, `statuses: ${got.join(',')}`);
    for (const x of refused) {
      const ms = Number(x.headers.get('retry-after-ms'));
      assert.ok(ms >= 1 && ms <= 1000, `one slot is a second at rpm = 60, not the rest of the minute: ${ms} ms`);
    }
    const retrying = sdkOpenAI(env.tg, tenant, 'rpm60'); // default maxRetries
    const t0 = Date.now();
    const r = await retrying.chat.completions.create({ model: 'gpt-4o-mini', max_tokens: 5, messages: chatMsgs('mock:tokens=2,2 #last') });
    assert.ok(r.choices, 'the SDK got through');
    assert.ok(Date.now() - t0 < h.ms(5000), 'within seconds, not the rest of the minute');
  });

  h.cleanRunTest(env);
});
