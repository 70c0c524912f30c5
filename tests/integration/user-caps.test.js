'use strict';
// Issue 11, per-user caps: user_budget_monthly and user_rpm of a plan (and a tenant's override)
// hold each end user (X-User-Id) inside a tenant at its own limit, in the same admission
// script as the tenant's caps: a user past its cap is refused (429 budget_exceeded, cap
// user_budget_monthly, in every dialect) or downgraded while the next user of the same tenant
// goes on; the race of many parallel requests of one user overshoots by at most one request;
// user_rpm = 1 refuses a user's second call, not another user's first.

const assert = require('node:assert/strict');
const { describe, test } = require('node:test');
const h = require('../lib/harness');

const PREFIX = 'tollgate:';
const PLANS = {
  // $0.001 a user: one gpt-4o call of 200 + 50 tokens ($0.0005 + $0.0005)
  'plan team': { price: 29, user_budget_monthly: 0.001 },
  'plan teamdown': { price: 29, user_budget_monthly: 0.001, on_exceed: 'downgrade', downgrade: 'gpt-4o > gpt-4o-mini' },
  'plan teamrace': { price: 29, user_budget_monthly: 0.005 },
  'plan teamrpm': { price: 29, user_rpm: 1 },
  'tenant bigteam': { plan: 'team', user_budget_monthly: 1 },
};

const month = () => new Date().toISOString().slice(0, 7);
const ucapKey = (t) => `${PREFIX}{${t}}:m:${month()}:ucap`;
const monthKey = (t) => `${PREFIX}{${t}}:m:${month()}`;
const chat = (content) => [{ role: 'user', content }];
const usd = (nano) => nano / 1e9;

async function ucap(redis, tenant) {
  const m = await redis.hgetall(ucapKey(tenant));
  const o = {};
  for (const [k, v] of Object.entries(m)) o[k] = Number(v);
  return o;
}

describe('per-user caps', () => {
  const env = h.useStack({ overrides: { ...PLANS } });
  const client = (tenant, plan, user) => h.openaiClient(env.tg, tenant,
    { headers: { 'X-Tenant-Plan': plan, ...(user ? { 'X-User-Id': user } : {}) } });

  test('a user at its user_budget_monthly is blocked, the next user of the same tenant is served, the settled cost is the user\'s at once', async () => {
    const tenant = h.uniq('team');
    const r1 = await client(tenant, 'team', 'u1').chat.completions.create({ model: 'gpt-4o', max_tokens: 50, messages: chat('mock:tokens=200,50') }).withResponse();
    assert.equal(r1.response.status, 200);
    // the user's spend is settled in its cap hash with the tenant's cost, not a second later
    const spent = h.expectedNano('gpt-4o', { input: 200, output: 50 });
    const u = await h.waitFor(async () => { const x = await ucap(env.redis, tenant); return x['u1|r'] === 0 && x.u1 ? x : null; },
      { what: 'u1 settled, nothing reserved' });
    assert.equal(u.u1, spent);
    const err = await client(tenant, 'team', 'u1').chat.completions.create({ model: 'gpt-4o', max_tokens: 50, messages: chat('mock:tokens=10,5') })
      .then(() => null, (e) => e);
    assert.ok(err, 'u1 is refused at its own cap');
    assert.equal(err.status, 429);
    assert.equal(err.code, 'budget_exceeded');
    assert.equal(err.error.cap, 'user_budget_monthly');
    assert.match(err.message, /this user \(not the whole account\) has used its own monthly AI budget of \$0\.001/);
    const hd = (n) => (typeof err.headers.get === 'function' ? err.headers.get(n) : err.headers[n]);
    assert.equal(hd('x-should-retry'), 'false');
    // the next user, and a request without a user, go on
    const r2 = await client(tenant, 'team', 'u2').chat.completions.create({ model: 'gpt-4o', max_tokens: 50, messages: chat('mock:tokens=10,5') }).withResponse();
    assert.equal(r2.response.status, 200);
    const r3 = await client(tenant, 'team').chat.completions.create({ model: 'gpt-4o', max_tokens: 50, messages: chat('mock:tokens=10,5') }).withResponse();
    assert.equal(r3.response.status, 200);
    const recs = await env.tg.records({ tenant }, 4);
    assert.deepEqual(recs.map((r) => `${r.user || '-'}:${r.outcome}`).sort(), ['-:ok', 'u1:blocked', 'u1:ok', 'u2:ok']);
    // the app can show each user where it stands: GET /v1/tollgate/usage with the user header
    const ask = async (user) => (await fetch(`${env.tg.base}/v1/tollgate/usage`,
      { headers: { 'X-Tenant-Id': tenant, 'X-Tenant-Plan': 'team', 'X-User-Id': user } })).json();
    const u1 = (await ask('u1')).user;
    assert.deepEqual([u1.budget_used_pct, u1.blocked, u1.downgraded], [100, true, false]);
    const u2 = await ask('u2');
    assert.equal(u2.blocked, false, 'the tenant is not blocked');
    assert.equal(u2.user.blocked, false);
    assert.ok(u2.user.budget_used_pct > 0 && u2.user.budget_used_pct < 100, JSON.stringify(u2.user));
  });

  test('the user\'s 429 in every dialect, as the SDKs see it', async () => {
    const tenant = h.uniq('teamsdk');
    await env.redis.cmd('HSET', ucapKey(tenant), 'u1', '1000000');
    const headers = { 'X-Tenant-Plan': 'team', 'X-User-Id': 'u1' };
    const ae = await h.anthropicClient(env.tg, tenant, { headers })
      .messages.create({ model: 'claude-haiku-4-5', max_tokens: 10, messages: chat('mock:tokens=5,5') }).then(() => null, (e) => e);
    assert.equal(ae && ae.status, 429);
    assert.deepEqual([ae.error.error.type, ae.error.error.code, ae.error.error.cap], ['rate_limit_error', 'budget_exceeded', 'user_budget_monthly']);
    const ge = await h.geminiClient(env.tg, tenant, { headers })
      .models.generateContent({ model: 'gemini-2.5-flash', contents: 'mock:tokens=5,5' }).then(() => null, (e) => e);
    assert.equal(ge && ge.status, 429);
    assert.deepEqual(JSON.parse(ge.message).error.details[0].metadata, { code: 'budget_exceeded', cap: 'user_budget_monthly' });
    // another user of that tenant, through the same SDKs
    const ok = await h.geminiClient(env.tg, tenant, { headers: { ...headers, 'X-User-Id': 'u2' } })
      .models.generateContent({ model: 'gemini-2.5-flash', contents: 'mock:tokens=5,5' });
    assert.ok(ok.text !== undefined);
  });

  test('on_exceed = downgrade: the user past its cap gets the cheaper model, the next user the model it asked for', async () => {
    const tenant = h.uniq('teamdown');
    await env.redis.cmd('HSET', ucapKey(tenant), 'u1', '1000000');
    const r1 = await client(tenant, 'teamdown', 'u1').chat.completions.create({ model: 'gpt-4o', max_tokens: 10, messages: chat('mock:tokens=5,5') }).withResponse();
    assert.equal(r1.response.headers.get('x-tollgate-downgraded'), 'gpt-4o -> gpt-4o-mini');
    const r2 = await client(tenant, 'teamdown', 'u2').chat.completions.create({ model: 'gpt-4o', max_tokens: 10, messages: chat('mock:tokens=5,5') }).withResponse();
    assert.equal(r2.response.headers.get('x-tollgate-downgraded'), null);
  });

  test('a tenant\'s user_budget_monthly overrides the plan\'s', async () => {
    await env.redis.cmd('HSET', ucapKey('bigteam'), 'u1', '1000000');
    const r = await h.openaiClient(env.tg, 'bigteam', { headers: { 'X-User-Id': 'u1' } })
      .chat.completions.create({ model: 'gpt-4o', max_tokens: 10, messages: chat('mock:tokens=5,5') }).withResponse();
    assert.equal(r.response.status, 200, 'under the tenant\'s $1 per user');
  });

  test('race: 30 parallel requests of one user against its $0.005 cap overshoot by at most one request; reservations all given back', async () => {
    const tenant = h.uniq('teamrace');
    // each: 5 + 50 tokens of gpt-4o ($0.0005125); its estimate (the body's input, max_tokens) bounds that
    const c = client(tenant, 'teamrace', 'heavy');
    const all = await Promise.all(Array.from({ length: 30 }, () =>
      c.chat.completions.create({ model: 'gpt-4o', max_tokens: 50, messages: chat('mock:tokens=5,50') })
        .then(() => 'ok', (e) => (e.status === 429 ? e.error.cap : `error ${e.message}`))));
    const ok = all.filter((x) => x === 'ok').length;
    assert.ok(all.every((x) => x === 'ok' || x === 'user_budget_monthly'), JSON.stringify(all));
    const each = h.expectedNano('gpt-4o', { input: 5, output: 50 });
    const u = await h.waitFor(async () => { const x = await ucap(env.redis, tenant); return x.heavy === ok * each && !x['heavy|r'] ? x : null; },
      { what: `the ${ok} admitted requests settled for the user, nothing reserved` });
    assert.ok(u.heavy <= 5000000 + each, `user spent $${usd(u.heavy)} of $0.005 (at most one request over)`);
    assert.ok(ok >= 5, `the cap was used: ${ok} admitted`);
    // the tenant's own counters agree with the user's
    const m = await env.redis.hgetall(monthKey(tenant));
    assert.equal(Number(m.cost), u.heavy);
    assert.equal(Number(m.reserved || 0), 0);
    // another user of the tenant is not held by the heavy one
    const other = await client(tenant, 'teamrace', 'light').chat.completions.create({ model: 'gpt-4o', max_tokens: 50, messages: chat('mock:tokens=200,50') }).withResponse();
    assert.equal(other.response.status, 200);
  });

  test('user_rpm = 1: a user\'s second call in the minute is 429 rate_limit_exceeded (cap user_rpm) with the real wait; another user\'s first call passes', async () => {
    const tenant = h.uniq('teamrpm');
    const first = await client(tenant, 'teamrpm', 'u1').chat.completions.create({ model: 'gpt-4o-mini', max_tokens: 10, messages: chat('mock:tokens=5,5') }).withResponse();
    assert.equal(first.response.status, 200);
    const err = await client(tenant, 'teamrpm', 'u1').chat.completions.create({ model: 'gpt-4o-mini', max_tokens: 10, messages: chat('mock:tokens=5,5') })
      .then(() => null, (e) => e);
    assert.equal(err && err.status, 429);
    assert.deepEqual([err.code, err.error.cap], ['rate_limit_exceeded', 'user_rpm']);
    const hd = (n) => (typeof err.headers.get === 'function' ? err.headers.get(n) : err.headers[n]);
    const wait = Number(hd('retry-after-ms'));
    assert.ok(wait > 50000 && wait <= 60000, `the next request fits in about a minute: ${wait} ms`);
    assert.equal(hd('x-should-retry'), null, 'a rate limit may be retried');
    const u2 = await client(tenant, 'teamrpm', 'u2').chat.completions.create({ model: 'gpt-4o-mini', max_tokens: 10, messages: chat('mock:tokens=5,5') }).withResponse();
    assert.equal(u2.response.status, 200);
    const none = await client(tenant, 'teamrpm').chat.completions.create({ model: 'gpt-4o-mini', max_tokens: 10, messages: chat('mock:tokens=5,5') }).withResponse();
    assert.equal(none.response.status, 200, 'a request without a user has no user limit');
  });

  h.cleanRunTest(env);
});
