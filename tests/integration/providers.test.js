'use strict';
// Exact metering of Anthropic and Gemini, normalised as provider-wire-formats.md §8:
// input includes cache reads, output includes reasoning/thoughts. The mock maps
// mock:tokens=IN,OUT mock:cached=C mock:reasoning=R onto each dialect so the record must
// read input=IN, cached=C, output=OUT, reasoning=R, and the cost follows the list prices.

const assert = require('node:assert/strict');
const { describe, test } = require('node:test');
const h = require('../lib/harness');

const STEER = 'mock:tokens=1000,500 mock:cached=200 mock:reasoning=100 mock:chunks=4';
const WANT = { input: 1000, cached: 200, output: 500, reasoning: 100 };

describe('provider metering (exact tokens and cost)', () => {
  const env = h.useStack();

  async function check(tenant, model, stream) {
    const [rec] = await env.tg.records({ tenant }, 1);
    assert.equal(rec.outcome, 'ok');
    assert.equal(rec.stream, stream);
    assert.equal(rec.estimated, false);
    assert.equal(rec.priced, true);
    h.assertTokens(rec, WANT);
    const nano = h.expectedNano(model, WANT);
    assert.equal(h.recordNano(rec), nano);
    const m = await env.redis.waitRequests(tenant, 1);
    assert.equal(m.cost, nano);
    assert.equal(m.input_tokens, WANT.input);
    assert.equal(m.cached_tokens, WANT.cached);
    assert.equal(m.output_tokens, WANT.output);
    return rec;
  }

  test('anthropic JSON: input = input_tokens + cache reads, claude-haiku-4-5 cost exact ($0.00332)', async () => {
    const tenant = h.uniq('antx');
    await env.anthropic(tenant).messages.create({ model: 'claude-haiku-4-5', max_tokens: 600, messages: [{ role: 'user', content: STEER }] });
    await check(tenant, 'claude-haiku-4-5', false);
    assert.equal(h.expectedNano('claude-haiku-4-5', WANT), 3320000);
  });

  test('anthropic SSE: input from message_start, output from the last (cumulative) message_delta', async () => {
    const tenant = h.uniq('antsx');
    await env.anthropic(tenant).messages.stream({ model: 'claude-haiku-4-5', max_tokens: 600, messages: [{ role: 'user', content: STEER }] }).finalMessage();
    await check(tenant, 'claude-haiku-4-5', true);
  });

  test('gemini JSON: output = candidates + thoughts, gemini-2.5-flash cost exact ($0.001496)', async () => {
    const tenant = h.uniq('gemx');
    await env.gemini(tenant).models.generateContent({ model: 'gemini-2.5-flash', contents: STEER });
    await check(tenant, 'gemini-2.5-flash', false);
    assert.equal(h.expectedNano('gemini-2.5-flash', WANT), 1496000);
  });

  test('gemini SSE: the last usageMetadata wins (earlier chunks carry only the prompt count)', async () => {
    const tenant = h.uniq('gemsx');
    for await (const ch of await env.gemini(tenant).models.generateContentStream({ model: 'gemini-2.5-flash', contents: STEER })) void ch;
    await check(tenant, 'gemini-2.5-flash', true);
  });

  h.cleanRunTest(env);
});
