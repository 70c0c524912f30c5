'use strict';
// Issue 11, "distinct error codes for each reason, in every dialect": every limit of a plan
// that refuses a call answers 429 with tollgate's code (budget_exceeded, allowance_exhausted,
// rate_limit_exceeded) and the plan key that refused ("cap"), and each official SDK hands
// both to the app: openai err.code and err.error.cap, @anthropic-ai/sdk err.error.error.code
// and .cap, @google/genai the google.rpc.ErrorInfo in the ApiError's body (reason, metadata).
// The refusals are reached through Redis counters seeded at the limit, or a rate limit of one.

const assert = require('node:assert/strict');
const { describe, test } = require('node:test');
const h = require('../lib/harness');

const PREFIX = 'tollgate:';
const PLANS = {
  'plan monthly': { price: 9, budget_monthly: 0.001 },
  'plan daily': { price: 9, budget_daily: 0.001 },
  'plan hard': { price: 9, budget_monthly: 0.001, on_exceed: 'downgrade', hard_limit: 0.002,
    downgrade: 'gpt-4o > gpt-4o-mini, claude-haiku-4-5 > claude-3-haiku-20240307, gemini-2.5-flash > gemini-2.5-flash-lite' },
  'plan tokens': { price: 9, included_tokens: 100, on_allowance: 'block' },
  'plan requests': { price: 9, included_requests: 1, on_allowance: 'block' },
  'plan rpm': { price: 9, rpm: 1 },
  'plan tpm': { price: 9, tpm: 50 },
};

const now = () => new Date().toISOString();
const monthKey = (t) => `${PREFIX}{${t}}:m:${now().slice(0, 7)}`;
const dayKey = (t) => `${PREFIX}{${t}}:d:${now().slice(0, 10)}`;
const chat = (content) => [{ role: 'user', content }];

// One call through each SDK (no retries); resolves what the SDK let the app read of the
// refusal: {status, code, cap}, or {status: 200} when it was served.
const SDKS = {
  async openai(tg, tenant, plan) {
    const c = h.openaiClient(tg, tenant, { headers: { 'X-Tenant-Plan': plan } });
    try {
      await c.chat.completions.create({ model: 'gpt-4o', max_tokens: 20, messages: chat('mock:tokens=30,20') });
      return { status: 200 };
    } catch (e) {
      const { OpenAI } = require('openai');
      assert.ok(e instanceof OpenAI.RateLimitError, `openai RateLimitError, got ${e && e.message}`);
      return { status: e.status, code: e.code, cap: e.error && e.error.cap };
    }
  },
  async anthropic(tg, tenant, plan) {
    const c = h.anthropicClient(tg, tenant, { headers: { 'X-Tenant-Plan': plan } });
    try {
      await c.messages.create({ model: 'claude-haiku-4-5', max_tokens: 20, messages: chat('mock:tokens=30,20') });
      return { status: 200 };
    } catch (e) {
      const { Anthropic } = require('@anthropic-ai/sdk');
      assert.ok(e instanceof Anthropic.RateLimitError, `anthropic RateLimitError, got ${e && e.message}`);
      const body = e.error && e.error.error;
      assert.equal(body.type, 'rate_limit_error');
      return { status: e.status, code: body.code, cap: body.cap };
    }
  },
  async gemini(tg, tenant, plan) {
    const c = h.geminiClient(tg, tenant, { headers: { 'X-Tenant-Plan': plan } });
    try {
      await c.models.generateContent({ model: 'gemini-2.5-flash', contents: 'mock:tokens=30,20', config: { maxOutputTokens: 20 } });
      return { status: 200 };
    } catch (e) {
      assert.equal(e.name, 'ApiError', `gemini ApiError, got ${e && e.message}`);
      const body = JSON.parse(e.message).error;
      assert.equal(body.status, 'RESOURCE_EXHAUSTED');
      assert.equal(body.details.length, 1);
      const info = body.details[0];
      assert.equal(info['@type'], 'type.googleapis.com/google.rpc.ErrorInfo');
      assert.equal(info.domain, 'tollgate');
      assert.equal(info.reason, info.metadata.code.toUpperCase(), 'reason is the code in google.rpc form');
      return { status: e.status, code: info.metadata.code, cap: info.metadata.cap };
    }
  },
};

// Each limit: the plan, how to bring a fresh tenant to it, and what the refusal says.
const CASES = [
  { plan: 'monthly', code: 'budget_exceeded', cap: 'budget_monthly',
    seed: (r, t) => r.cmd('HSET', monthKey(t), 'cost', '1000000') },
  { plan: 'daily', code: 'budget_exceeded', cap: 'budget_daily',
    seed: (r, t) => r.cmd('HSET', dayKey(t), 'cost', '1000000') },
  { plan: 'hard', code: 'budget_exceeded', cap: 'hard_limit',
    seed: (r, t) => r.cmd('HSET', monthKey(t), 'cost', '2000000') },
  { plan: 'tokens', code: 'allowance_exhausted', cap: 'included_tokens',
    seed: (r, t) => r.cmd('HSET', monthKey(t), 'allowance_used', '100') },
  { plan: 'requests', code: 'allowance_exhausted', cap: 'included_requests',
    seed: (r, t) => r.cmd('HSET', monthKey(t), 'allowance_used', '1') },
  // a limit of one request a minute: the first call passes, the next is refused
  { plan: 'rpm', code: 'rate_limit_exceeded', cap: 'rpm', first: true },
  // an empty bucket takes one call larger than tpm; the next must wait
  { plan: 'tpm', code: 'rate_limit_exceeded', cap: 'tpm', first: true },
];

describe('each limit refuses with its code and cap, in every dialect, as the SDKs see it', () => {
  const env = h.useStack({ overrides: { ...PLANS } });

  for (const k of CASES) {
    for (const sdk of Object.keys(SDKS)) {
      test(`${k.plan}: ${sdk} SDK sees 429 ${k.code}, cap ${k.cap}`, async () => {
        const tenant = h.uniq(`${k.plan}-${sdk}`);
        if (k.seed) await k.seed(env.redis, tenant);
        if (k.first) assert.deepEqual(await SDKS[sdk](env.tg, tenant, k.plan), { status: 200 }, 'the first call fits');
        const got = await SDKS[sdk](env.tg, tenant, k.plan);
        assert.deepEqual(got, { status: 429, code: k.code, cap: k.cap });
        const recs = await env.tg.records({ tenant }, k.first ? 2 : 1);
        const refused = recs.filter((r) => r.status === 429);
        assert.equal(refused.length, 1);
        assert.equal(refused[0].outcome, k.code === 'rate_limit_exceeded' ? 'rate_limited' : 'blocked');
      });
    }
  }

  test('errors that are not a limit carry their code and no cap, in every dialect', async () => {
    // no tenant header: missing_tenant (400)
    const o = await h.post(env.tg, '/v1/chat/completions', { model: 'gpt-4o', messages: chat('x') });
    assert.equal(o.status, 400);
    assert.equal(o.json.error.code, 'missing_tenant');
    assert.equal('cap' in o.json.error, false);
    const a = await h.post(env.tg, '/v1/messages', { model: 'claude-haiku-4-5', max_tokens: 5, messages: chat('x') });
    assert.equal(a.status, 400);
    assert.deepEqual(Object.keys(a.json.error).sort(), ['code', 'message', 'type']);
    assert.equal(a.json.error.code, 'missing_tenant');
    const g = await h.post(env.tg, '/v1beta/models/gemini-2.5-flash:generateContent', { contents: [{ parts: [{ text: 'x' }] }] });
    assert.equal(g.status, 400);
    assert.deepEqual(g.json.error.details, [{ '@type': 'type.googleapis.com/google.rpc.ErrorInfo',
      reason: 'MISSING_TENANT', domain: 'tollgate', metadata: { code: 'missing_tenant' } }]);
  });

  h.cleanRunTest(env);
});
