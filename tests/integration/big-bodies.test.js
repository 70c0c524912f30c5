'use strict';
// Request bodies that arrive in many reads (100 KB) go upstream intact on fresh and on pooled
// keep-alive connections alike: the upstream gets every byte, the answer comes back, and the
// request is metered. (A pooled connection once got a request built from a body of many chains
// cut short, and the call hung until first_byte_timeout.)

const assert = require('node:assert/strict');
const { describe, test } = require('node:test');
const h = require('../lib/harness');

describe('large request bodies', () => {
  const env = h.useStack({});

  test('six 100 KB chat requests in a row: all 200, the upstream gets each body whole, each is recorded', async () => {
    const tenant = h.uniq('big');
    for (let i = 0; i < 6; i++) {
      const nonce = h.uniq('n');
      const content = `${nonce} ${'x'.repeat(100000)} mock:tokens=10,5`;
      const r = await h.post(env.tg, '/v1/chat/completions',
        { model: 'gpt-4o-mini', max_tokens: 5, messages: [{ role: 'user', content }] }, { 'X-Tenant-Id': tenant });
      assert.equal(r.status, 200, `request ${i}: ${r.status} ${r.text.slice(0, 200)}`);
      const up = env.mock.requestsWith(nonce);
      assert.equal(up.length, 1, `request ${i} forwarded once`);
      assert.equal(up[0].json.messages[0].content, content, `request ${i}: the body arrived whole`);
    }
    const recs = await env.tg.records({ tenant }, 6);
    assert.deepEqual(recs.map((x) => x.outcome), Array(6).fill('ok'));
  });

  h.cleanRunTest(env);
});
