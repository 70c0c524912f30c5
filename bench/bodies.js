#!/usr/bin/env node
'use strict';
// bodies.js DIR: writes the request bodies of `make bench` into DIR:
//   body-1k.json body-1k-stream.json body-100k.json body-100k-stream.json
// OpenAI chat completions for gpt-4o-mini whose user message is padded to ~1 KB / ~100 KB
// of text, carrying mock directives (tokens reported ~ bytes / 4, 8 content chunks).
const fs = require('node:fs');
const path = require('node:path');

const dir = process.argv[2];
if (!dir) { process.stderr.write('usage: bodies.js DIR\n'); process.exit(2); }

const words = ('the quick brown fox jumps over a lazy dog while metering proxies count '
  + 'tokens for every tenant and settle their budgets ').split(' ').filter(Boolean);

function body(size, stream) {
  const tokensIn = Math.round(size / 4);
  const head = `mock:tokens=${tokensIn},64 mock:chunks=8 Summarise this text:`;
  const base = { model: 'gpt-4o-mini', messages: [
    { role: 'system', content: 'You are a concise assistant.' },
    { role: 'user', content: '' }] };
  if (stream) base.stream = true;
  const empty = JSON.stringify(base).length;
  let text = head;
  for (let i = 0; empty + text.length < size; i++) text += ` ${words[i % words.length]}`;
  base.messages[1].content = text.slice(0, Math.max(head.length, size - empty));
  return JSON.stringify(base);
}

for (const [name, size] of [['1k', 1024], ['100k', 100 * 1024]]) {
  fs.writeFileSync(path.join(dir, `body-${name}.json`), body(size, false));
  fs.writeFileSync(path.join(dir, `body-${name}-stream.json`), body(size, true));
}
