#!/usr/bin/env node
'use strict';
// Mock LLM upstream for tollgate's tests and benchmark: one Node process, stdlib only.
// Speaks the wire formats of shared/reference/provider-wire-formats.md:
//   OpenAI   POST /v1/chat/completions (JSON, SSE with/without stream_options.include_usage),
//            POST /v1/responses (JSON, SSE), /v1/embeddings, /v1/completions (JSON, SSE),
//            GET /v1/models, POST /v1/moderations, POST /v1/images/generations, /edits and
//            /variations (the last two multipart/form-data) (JSON; SSE
//            image_generation.partial_image / .completed events with stream: true; usage
//            only for gpt-image-*, none for dall-e-*), POST /v1/audio/speech (audio/mpeg bytes;
//            stream_format "sse": speech.audio.delta events, then speech.audio.done with usage
//            input_tokens=IN, output_tokens=OUT), POST /v1/audio/transcriptions and
//            /translations (multipart/form-data; whisper-1: usage {type: duration, seconds},
//            verbose_json adds duration; gpt-4o*-transcribe: usage {type: tokens} and with
//            stream=true transcript.text.delta / .done events; text, srt, vtt: plain text);
//            the form's fields are logged as "json" and steer like a JSON body (prompt);
//            Gemini's OpenAI-compatible
//            POST /v1beta/openai/chat/completions (OpenAI's chat format)
//   Anthropic POST /v1/messages (JSON, SSE), /v1/messages/count_tokens
//   Gemini   POST /v1beta/models/{m}:generateContent, :streamGenerateContent?alt=sse (CRLF),
//            :embedContent, :batchEmbedContents (embeddings, no usage, as the Gemini API),
//            :predict (Imagen: parameters.sampleCount images, default 4, no usage)
//            (also /v1/models/{m}:...)
// Steered by words in the last user message text (or input / prompt / contents):
//   mock:tokens=IN,OUT  prompt and completion tokens reported (default 12,5)
//   mock:cached=N       of IN, N were cache reads     mock:reasoning=N  of OUT, N were reasoning
//   mock:cachewrite=N   of IN, N were cache writes (Anthropic cache_creation_input_tokens)
//   mock:cachewrite1h=H of those writes, H had a 1-hour TTL (cache_creation.ephemeral_1h_input_tokens)
//   mock:seconds=N      audio duration a transcription reports (default 7; verbose_json: N.5)
//   mock:chunks=N       content chunks (default 3)    mock:slow=MS      delay between chunks
//                       (non-streamed answers wait MS once before the headers)
//   mock:delay=MS       wait MS before the response headers
//   mock:status=CODE    error body in the provider's dialect with that status
//   mock:reset          destroy the socket mid-body (after 2 chunks); mock:reset-early: before headers
//   mock:hang           send headers, then nothing;    mock:hang-early: send nothing at all
//   mock:nousage        omit usage even when asked for it
//   mock:imagetokens=I  of an image answer's IN input tokens, I were image tokens (edits)
//   mock:served-TIER    the answer's service_tier (OpenAI chat, Responses) is TIER (flex,
//                       priority, default); without it, the tier asked for when it is flex or
//                       priority, else "default"
//   mock:pad=BYTES      a non-streamed answer starts with a member "mock_pad" of BYTES 'x's
//                       (usage comes after it: answers of any size)
//   mock:lie=N          chat usage lies: 1 negative completion count, 2 prompt count as a
//                       string, 3 a fractional completion count, 4 an absurd one (1e12)
//   mock:gzip           a non-streamed answer gzip-encoded, whatever Accept-Encoding said
//   mock:refusal        a 200 that refuses: chat message/delta refusal, Responses refusal part,
//                       Anthropic stop_reason "refusal", Gemini finishReason SAFETY
//   mock:servertool     a 200 with a provider-run tool in it: chat url_citation annotations,
//                       Responses web_search_call item, Anthropic server_tool_use and
//                       web_search_tool_result blocks, Gemini groundingMetadata
//   mock:blocked        Gemini: the prompt blocked (promptFeedback.blockReason, no candidates)
// Token mapping, so one directive means the same in every dialect (normalised per
// provider-wire-formats.md §8, the record gets input=IN, cached=N, output=OUT, reasoning=R):
//   OpenAI chat/completions: prompt_tokens=IN, cached_tokens=N, completion_tokens=OUT, reasoning_tokens=R
//   Responses: input_tokens=IN, cached_tokens=N, output_tokens=OUT, reasoning_tokens=R
//   Anthropic: input_tokens=IN-N-W, cache_read_input_tokens=N, cache_creation_input_tokens=W,
//              output_tokens=OUT,
//              output_tokens_details.thinking_tokens=R
//   Gemini:    promptTokenCount=IN, cachedContentTokenCount=N, candidatesTokenCount=OUT-R,
//              thoughtsTokenCount=R
// Usage: node upstream.js --cert FILE --key FILE [--port N] [--http-port N] [--log FILE]
//   --port is the HTTPS port (0 = any free one); --http-port adds a plain HTTP listener
//   (0 = any free one). Prints {"https":P,"http":P,"pid":N} on stdout once listening.
//   Every request received is appended to --log as one JSON line (flushed at once):
//   {"n","t","method","path","query","headers","body","json","peerPort"} (peerPort: the
//   connection's client port, to tell a reused connection); clientError lines too.
//   SIGTERM/SIGINT: close every socket and exit 0.

const fs = require('node:fs');
const http = require('node:http');
const https = require('node:https');
const zlib = require('node:zlib');

const DEFAULT_IN = 12;
const DEFAULT_OUT = 5;
const DEFAULT_CHUNKS = 3;

// ---- steering --------------------------------------------------------------------------

function textOf(content) {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) return content.map(textOf).join(' ');
  if (content && typeof content === 'object') {
    if (typeof content.text === 'string') return content.text;
    if (content.content !== undefined) return textOf(content.content);
    if (Array.isArray(content.parts)) return textOf(content.parts);
  }
  return '';
}

function lastUser(list) {
  if (!Array.isArray(list)) return textOf(list);
  for (let i = list.length - 1; i >= 0; i--) {
    const m = list[i];
    if (m && typeof m === 'object' && (m.role === undefined || m.role === 'user')) return textOf(m);
    if (typeof m === 'string') return m;
  }
  return '';
}

// The text the directives are read from, per route.
function steeringText(json) {
  if (!json || typeof json !== 'object') return '';
  if (json.messages !== undefined) return lastUser(json.messages);
  if (json.contents !== undefined) return lastUser(json.contents);
  if (json.input !== undefined) return lastUser(json.input);
  if (json.prompt !== undefined) return textOf(json.prompt);
  return '';
}

function parseDirectives(text) {
  const d = {
    in: DEFAULT_IN, out: DEFAULT_OUT, cached: 0, cachewrite: 0, cachewrite1h: 0, reasoning: 0, seconds: 7, chunks: DEFAULT_CHUNKS,
    slow: 0, delay: 0, status: 0, reset: false, resetEarly: false, hang: false,
    hangEarly: false, nousage: false, pad: 0, gzip: false, lie: 0, served: null, imagetokens: 0,
    refusal: false, servertool: false, blocked: false,
  };
  const re = /mock:([a-z0-9-]+)(?:=([0-9]+(?:,[0-9]+)?))?/g;
  let m;
  while ((m = re.exec(text)) !== null) {
    const v = m[2];
    switch (m[1]) {
      case 'tokens': {
        const [a, b] = (v || '').split(',');
        if (a !== undefined && a !== '') d.in = +a;
        if (b !== undefined && b !== '') d.out = +b;
        break;
      }
      case 'cached': d.cached = +(v || 0); break;
      case 'cachewrite': d.cachewrite = +(v || 0); break;
      case 'cachewrite1h': d.cachewrite1h = +(v || 0); break;
      case 'seconds': d.seconds = +(v || 0); break;
      case 'reasoning': d.reasoning = +(v || 0); break;
      case 'chunks': d.chunks = Math.max(1, +(v || 1)); break;
      case 'slow': d.slow = +(v || 0); break;
      case 'delay': d.delay = +(v || 0); break;
      case 'status': d.status = +(v || 500); break;
      case 'reset': d.reset = true; break;
      case 'reset-early': d.resetEarly = true; break;
      case 'hang': d.hang = true; break;
      case 'hang-early': d.hangEarly = true; break;
      case 'nousage': d.nousage = true; break;
      case 'imagetokens': d.imagetokens = +(v || 0); break;
      case 'served-flex': d.served = 'flex'; break;
      case 'served-priority': d.served = 'priority'; break;
      case 'served-default': d.served = 'default'; break;
      case 'pad': d.pad = +(v || 0); break;
      case 'gzip': d.gzip = true; break;
      case 'lie': d.lie = +(v || 0); break;
      case 'refusal': d.refusal = true; break;
      case 'servertool': d.servertool = true; break;
      case 'blocked': d.blocked = true; break;
      default: break;
    }
  }
  return d;
}

// ---- bodies ----------------------------------------------------------------------------

let seq = 0;
// mock:servertool: what a provider-run web search leaves in an answer
const CITATION = { type: 'url_citation', url_citation: { url: 'https://example.com/mock', title: 'mock', start_index: 0, end_index: 4 } };
const SERVER_TOOL_BLOCKS = [
  { type: 'server_tool_use', id: 'srvtoolu_mock', name: 'web_search', input: { query: 'mock' } },
  { type: 'web_search_tool_result', tool_use_id: 'srvtoolu_mock', content: [{ type: 'web_search_result', url: 'https://example.com/mock', title: 'mock', encrypted_content: 'x', page_age: null }] },
];
const now = () => Math.floor(Date.now() / 1000);
const pieces = (d) => Array.from({ length: d.chunks }, (_, i) => `tok${i} `);

const STATUS_TEXT = {
  400: ['invalid_request_error', 'INVALID_ARGUMENT'], 401: ['authentication_error', 'UNAUTHENTICATED'],
  403: ['permission_error', 'PERMISSION_DENIED'], 404: ['not_found_error', 'NOT_FOUND'],
  429: ['rate_limit_error', 'RESOURCE_EXHAUSTED'], 500: ['api_error', 'INTERNAL'],
  503: ['overloaded_error', 'UNAVAILABLE'], 529: ['overloaded_error', 'UNAVAILABLE'],
};

// Error body in the dialect of provider ('openai' | 'anthropic' | 'gemini'). Exported so
// tests can compare what the client got with what the mock sent, byte for byte.
function errorBody(provider, status) {
  const message = `mock upstream error ${status}`;
  const [atype, gstatus] = STATUS_TEXT[status] || ['api_error', 'UNKNOWN'];
  if (provider === 'anthropic') {
    return JSON.stringify({ type: 'error', error: { type: atype, message }, request_id: 'req_mock' });
  }
  if (provider === 'gemini') {
    return JSON.stringify({ error: { code: status, message, status: gstatus } });
  }
  let type = status >= 500 ? 'server_error' : 'invalid_request_error';
  let code = null;
  if (status === 429) { type = 'requests'; code = 'rate_limit_exceeded'; }
  return JSON.stringify({ error: { message, type, param: null, code } });
}

function chatUsage(d) {
  // mock:lie=1 a negative completion count, =2 the prompt count as a string, =3 fractional,
  // =4 absurd (a trillion output tokens)
  const lie = { 1: { completion_tokens: -d.out }, 2: { prompt_tokens: String(d.in) }, 3: { completion_tokens: d.out + 0.5 }, 4: { completion_tokens: 1e12 } }[d.lie] || {};
  return {
    prompt_tokens: d.in, completion_tokens: d.out, total_tokens: d.in + d.out, ...lie,
    prompt_tokens_details: { cached_tokens: d.cached, audio_tokens: 0 },
    completion_tokens_details: {
      reasoning_tokens: d.reasoning, audio_tokens: 0,
      accepted_prediction_tokens: 0, rejected_prediction_tokens: 0,
    },
  };
}

function responsesUsage(d) {
  return {
    input_tokens: d.in, input_tokens_details: { cached_tokens: d.cached },
    output_tokens: d.out, output_tokens_details: { reasoning_tokens: d.reasoning },
    total_tokens: d.in + d.out,
  };
}

function anthropicUsage(d, output) {
  return {
    input_tokens: Math.max(0, d.in - d.cached - d.cachewrite), cache_creation_input_tokens: d.cachewrite,
    cache_read_input_tokens: d.cached, output_tokens: output,
    cache_creation: { ephemeral_5m_input_tokens: d.cachewrite - d.cachewrite1h, ephemeral_1h_input_tokens: d.cachewrite1h },
    output_tokens_details: { thinking_tokens: d.reasoning }, service_tier: 'standard',
  };
}

function geminiUsage(d, final) {
  if (!final) return { promptTokenCount: d.in, totalTokenCount: d.in };
  const u = {
    promptTokenCount: d.in, candidatesTokenCount: Math.max(0, d.out - d.reasoning),
    totalTokenCount: d.in + d.out,
  };
  if (d.cached) u.cachedContentTokenCount = d.cached;
  if (d.reasoning) u.thoughtsTokenCount = d.reasoning;
  return u;
}

// The service_tier an OpenAI answer names: the tier that served it (mock:served-TIER), else
// the one asked for when OpenAI has it (flex, priority), else "default".
function servedTier(req, d) {
  if (d.served) return d.served;
  const asked = req.json && req.json.service_tier;
  return asked === 'flex' || asked === 'priority' ? asked : 'default';
}

// Each builder returns {json} for a plain answer or {events} (strings already framed) for SSE.
const builders = {
  chat(req, d, stream) {
    const id = `chatcmpl-mock${++seq}`;
    const created = now();
    const model = req.json.model || 'unknown';
    const text = pieces(d);
    if (!stream) {
      const body = {
        id, object: 'chat.completion', created, model,
        choices: [{ index: 0, message: { role: 'assistant', content: d.refusal ? null : text.join(''),
          refusal: d.refusal ? text.join('') : null, annotations: d.servertool ? [CITATION] : [] },
          logprobs: null, finish_reason: 'stop' }],
        service_tier: servedTier(req, d), system_fingerprint: 'fp_mock',
      };
      if (!d.nousage) body.usage = chatUsage(d);
      return { json: body };
    }
    const withUsage = !!(req.json.stream_options && req.json.stream_options.include_usage) && !d.nousage;
    const chunk = (choices, extra) => {
      const c = { id, object: 'chat.completion.chunk', created, model, service_tier: servedTier(req, d),
        system_fingerprint: 'fp_mock', choices };
      if (withUsage) c.usage = null;
      return `data: ${JSON.stringify(Object.assign(c, extra || {}))}\n\n`;
    };
    const events = [chunk([{ index: 0, delta: { role: 'assistant', content: '', refusal: null }, logprobs: null, finish_reason: null }])];
    for (const t of text) events.push(chunk([{ index: 0, delta: d.refusal ? { refusal: t } : { content: t }, logprobs: null, finish_reason: null }]));
    if (d.servertool) events.push(chunk([{ index: 0, delta: { annotations: [CITATION] }, logprobs: null, finish_reason: null }]));
    events.push(chunk([{ index: 0, delta: {}, logprobs: null, finish_reason: 'stop' }]));
    if (withUsage) events.push(chunk([], { usage: chatUsage(d) }));
    events.push('data: [DONE]\n\n');
    return { events, contentEvents: 1 };
  },

  completions(req, d, stream) {
    const id = `cmpl-mock${++seq}`;
    const created = now();
    const model = req.json.model || 'unknown';
    const text = pieces(d);
    if (!stream) {
      const body = { id, object: 'text_completion', created, model,
        choices: [{ text: text.join(''), index: 0, logprobs: null, finish_reason: 'stop' }] };
      if (!d.nousage) body.usage = chatUsage(d);
      return { json: body };
    }
    const withUsage = !!(req.json.stream_options && req.json.stream_options.include_usage) && !d.nousage;
    const chunk = (choices, extra) => {
      const c = { id, object: 'text_completion', created, model, choices };
      if (withUsage) c.usage = null;
      return `data: ${JSON.stringify(Object.assign(c, extra || {}))}\n\n`;
    };
    const events = text.map((t, i) => chunk([{ text: t, index: 0, logprobs: null,
      finish_reason: i === text.length - 1 ? 'stop' : null }]));
    if (withUsage) events.push(chunk([], { usage: chatUsage(d) }));
    events.push('data: [DONE]\n\n');
    return { events, contentEvents: 0 };
  },

  responses(req, d, stream) {
    const id = `resp_mock${++seq}`;
    const msgId = `msg_mock${seq}`;
    const model = req.json.model || 'unknown';
    const text = pieces(d);
    const full = text.join('');
    const resp = (status, output, usage) => ({
      id, object: 'response', created_at: now(), status, error: null, incomplete_details: null,
      instructions: null, model, output, parallel_tool_calls: true, tool_choice: 'auto', tools: [],
      usage, metadata: {}, service_tier: servedTier(req, d),
    });
    const item = { id: msgId, type: 'message', status: 'completed', role: 'assistant',
      content: [d.refusal ? { type: 'refusal', refusal: full } : { type: 'output_text', text: full, annotations: [] }] };
    const search = { id: `ws_mock${seq}`, type: 'web_search_call', status: 'completed', action: { type: 'search', query: 'mock' } };
    const output = d.servertool ? [search, item] : [item];
    if (!stream) return { json: resp('completed', output, d.nousage ? null : responsesUsage(d)) };
    let n = 0;
    const ev = (type, data) => `event: ${type}\ndata: ${JSON.stringify(Object.assign({ type, sequence_number: n++ }, data))}\n\n`;
    const events = [
      ev('response.created', { response: resp('in_progress', [], null) }),
      ev('response.in_progress', { response: resp('in_progress', [], null) }),
    ];
    if (d.servertool) {
      events.push(ev('response.output_item.added', { output_index: 0, item: { ...search, status: 'in_progress' } }));
      events.push(ev('response.output_item.done', { output_index: 0, item: search }));
    }
    events.push(
      ev('response.output_item.added', { output_index: 0, item: { id: msgId, type: 'message', status: 'in_progress', role: 'assistant', content: [] } }),
      ev('response.content_part.added', { item_id: msgId, output_index: 0, content_index: 0, part: { type: 'output_text', text: '', annotations: [] } }),
    );
    const first = events.length;
    const deltaType = d.refusal ? 'response.refusal.delta' : 'response.output_text.delta';
    for (const t of text) events.push(ev(deltaType, { item_id: msgId, output_index: 0, content_index: 0, delta: t }));
    events.push(ev('response.output_text.done', { item_id: msgId, output_index: 0, content_index: 0, text: full }));
    events.push(ev('response.content_part.done', { item_id: msgId, output_index: 0, content_index: 0, part: { type: 'output_text', text: full, annotations: [] } }));
    events.push(ev('response.output_item.done', { output_index: 0, item }));
    events.push(ev('response.completed', { response: resp('completed', output, d.nousage ? null : responsesUsage(d)) }));
    return { events, contentEvents: first };
  },

  embeddings(req, d) {
    const inputs = Array.isArray(req.json.input) ? req.json.input : [req.json.input];
    const b64 = req.json.encoding_format === 'base64';
    const vec = [0.25, -0.5, 0.125, 1];
    const data = inputs.map((_, index) => ({ object: 'embedding', index,
      embedding: b64 ? Buffer.from(new Float32Array(vec).buffer).toString('base64') : vec }));
    const body = { object: 'list', data, model: req.json.model || 'unknown' };
    if (!d.nousage) body.usage = { prompt_tokens: d.in, total_tokens: d.in };
    return { json: body };
  },

  models() {
    const created = now();
    return { json: { object: 'list', data: ['gpt-4o', 'gpt-4o-mini'].map((id) => ({ id, object: 'model', created, owned_by: 'openai' })) } };
  },

  messages(req, d, stream) {
    const id = `msg_mock${++seq}`;
    const model = req.json.model || 'unknown';
    const text = pieces(d);
    if (!stream) {
      const content = [{ type: 'text', text: text.join('') }];
      if (d.servertool) content.unshift(...SERVER_TOOL_BLOCKS);
      const body = { id, type: 'message', role: 'assistant', model,
        content, stop_reason: d.refusal ? 'refusal' : 'end_turn', stop_sequence: null };
      if (!d.nousage) body.usage = anthropicUsage(d, d.out);
      return { json: body };
    }
    const ev = (type, data) => `event: ${type}\ndata: ${JSON.stringify(Object.assign({ type }, data))}\n\n`;
    const startMsg = { id, type: 'message', role: 'assistant', content: [], model, stop_reason: null, stop_sequence: null };
    if (!d.nousage) {
      // message_start knows the input side; thinking is only known at the end (message_delta).
      startMsg.usage = anthropicUsage(d, Math.min(1, d.out));
      delete startMsg.usage.output_tokens_details;
    }
    const events = [
      ev('message_start', { message: startMsg }),
      ev('content_block_start', { index: 0, content_block: { type: 'text', text: '' } }),
      ev('ping', {}),
    ];
    const first = events.length;
    for (const t of text) events.push(ev('content_block_delta', { index: 0, delta: { type: 'text_delta', text: t } }));
    events.push(ev('content_block_stop', { index: 0 }));
    if (d.servertool) {
      SERVER_TOOL_BLOCKS.forEach((b, i) => {
        events.push(ev('content_block_start', { index: i + 1, content_block: b }));
        events.push(ev('content_block_stop', { index: i + 1 }));
      });
    }
    const delta = { delta: { stop_reason: d.refusal ? 'refusal' : 'end_turn', stop_sequence: null } };
    if (!d.nousage) delta.usage = { output_tokens: d.out, output_tokens_details: { thinking_tokens: d.reasoning } };
    events.push(ev('message_delta', delta));
    events.push(ev('message_stop', {}));
    return { events, contentEvents: first };
  },

  countTokens(req, d) {
    return { json: { input_tokens: d.in } };
  },

  // ImagesResponse (openai-node src/resources/images.ts): n images; gpt-image-* report usage
  // (input_tokens=IN of which text, output_tokens=OUT), dall-e-* none. Streamed: per image
  // one partial_image and one completed event carrying that image's usage.
  images(req, d, stream) {
    const model = req.json.model || 'dall-e-2';
    const n = req.json.n || 1;
    const gpt = model.startsWith('gpt-image');
    const b64 = Buffer.from(`mock image ${++seq}`).toString('base64');
    const usage = { input_tokens: d.in, input_tokens_details: { text_tokens: d.in - d.imagetokens, image_tokens: d.imagetokens },
      output_tokens: d.out, total_tokens: d.in + d.out };
    if (!stream) {
      const body = { created: now(), data: Array.from({ length: n }, () => ({ b64_json: b64 })) };
      if (gpt) Object.assign(body, { background: 'opaque', output_format: 'png', quality: 'high', size: '1024x1024' });
      if (gpt && !d.nousage) body.usage = usage;
      return { json: body };
    }
    const ev = (type, data) => `event: ${type}\ndata: ${JSON.stringify(Object.assign({ type }, data))}\n\n`;
    const events = [];
    for (let i = 0; i < n; i++) {
      events.push(ev('image_generation.partial_image', { b64_json: b64, created_at: now(), partial_image_index: 0,
        background: 'opaque', output_format: 'png', quality: 'high', size: '1024x1024' }));
      const done = { b64_json: b64, created_at: now(), background: 'opaque', output_format: 'png', quality: 'high', size: '1024x1024' };
      if (!d.nousage) done.usage = usage;
      events.push(ev('image_generation.completed', done));
    }
    return { events, contentEvents: 0 };
  },

  // Speech: the audio itself (no usage), or with stream_format "sse" (gpt-4o-mini-tts)
  // speech.audio.delta events and speech.audio.done carrying the usage.
  speech(req, d) {
    const audio = Buffer.from(`ID3 mock audio ${++seq} `.repeat(8));
    if (req.json.stream_format !== 'sse') return { binary: audio, contentType: 'audio/mpeg' };
    const ev = (type, data) => `data: ${JSON.stringify(Object.assign({ type }, data))}\n\n`;
    const events = Array.from({ length: d.chunks }, () => ev('speech.audio.delta', { audio: audio.toString('base64') }));
    const done = {};
    if (!d.nousage) done.usage = { input_tokens: d.in, output_tokens: d.out, total_tokens: d.in + d.out };
    events.push(ev('speech.audio.done', done));
    return { events, contentEvents: 0 };
  },

  // Transcription / Translation (openai-node src/resources/audio/transcriptions.ts).
  transcribe(req, d, stream) {
    const f = req.json;
    const model = f.model || 'whisper-1';
    const text = pieces(d).join('');
    const fmt = f.response_format || 'json';
    const tokens = { type: 'tokens', input_tokens: d.in, input_token_details: { text_tokens: 0, audio_tokens: d.in },
      output_tokens: d.out, total_tokens: d.in + d.out };
    const usage = model.startsWith('whisper') ? { type: 'duration', seconds: d.seconds } : tokens;
    if (stream) {
      const ev = (type, data) => `data: ${JSON.stringify(Object.assign({ type }, data))}\n\n`;
      const events = pieces(d).map((t) => ev('transcript.text.delta', { delta: t }));
      const done = { text };
      if (!d.nousage) done.usage = usage;
      events.push(ev('transcript.text.done', done));
      return { events, contentEvents: 0 };
    }
    if (['text', 'srt', 'vtt'].includes(fmt)) return { binary: Buffer.from(text), contentType: 'text/plain; charset=utf-8' };
    const body = { text };
    if (fmt === 'verbose_json') Object.assign(body, { task: 'transcribe', language: 'english', duration: d.seconds + 0.5, segments: [] });
    if (!d.nousage) body.usage = usage;
    return { json: body };
  },

  // EmbedContentResponse / BatchEmbedContentsResponse: no usageMetadata.
  geminiEmbed(req) {
    const values = [0.25, -0.5, 0.125, 1];
    if (Array.isArray(req.json.requests)) return { json: { embeddings: req.json.requests.map(() => ({ values })) } };
    return { json: { embedding: { values } } };
  },

  // Imagen :predict (js-genai models.generateImages): one prediction per image asked for
  // (parameters.sampleCount, default 4), no usage.
  imagen(req) {
    const n = (req.json.parameters && req.json.parameters.sampleCount) || 4;
    const b64 = Buffer.from(`mock imagen ${++seq}`).toString('base64');
    return { json: { predictions: Array.from({ length: n }, () => ({ bytesBase64Encoded: b64, mimeType: 'image/png' })) } };
  },

  // ModerationCreateResponse (openai-node src/resources/moderations.ts); free at OpenAI.
  moderations(req) {
    const inputs = Array.isArray(req.json.input) ? req.json.input : [req.json.input];
    return { json: { id: `modr-mock${++seq}`, model: req.json.model || 'omni-moderation-latest',
      results: inputs.map(() => ({ flagged: false, categories: {}, category_scores: {}, category_applied_input_types: {} })) } };
  },

  gemini(req, d, stream, model) {
    const text = pieces(d);
    const responseId = `mockresp${++seq}`;
    const cand = (t, fin) => {
      const c = { content: { parts: [{ text: t }], role: 'model' }, index: 0 };
      if (fin) c.finishReason = d.refusal ? 'SAFETY' : 'STOP';
      if (fin && d.servertool) c.groundingMetadata = { webSearchQueries: ['mock'], groundingChunks: [{ web: { uri: 'https://example.com/mock', title: 'mock' } }] };
      return c;
    };
    if (d.blocked) {
      const body = { promptFeedback: { blockReason: 'SAFETY' }, modelVersion: model, responseId, usageMetadata: geminiUsage({ ...d, out: 0 }, true) };
      if (!stream) return { json: body };
      return { events: [`data: ${JSON.stringify(body)}\r\n\r\n`], contentEvents: 0 };
    }
    if (!stream) {
      const body = { candidates: [cand(text.join(''), true)], modelVersion: model, responseId };
      if (!d.nousage) body.usageMetadata = geminiUsage(d, true);
      return { json: body };
    }
    const events = text.map((t, i) => {
      const last = i === text.length - 1;
      const body = { candidates: [cand(t, last)], modelVersion: model, responseId };
      if (!d.nousage) body.usageMetadata = geminiUsage(d, last);
      return `data: ${JSON.stringify(body)}\r\n\r\n`;
    });
    return { events, contentEvents: 0 };
  },
};

// Route: [provider, builder name, model (gemini), stream forced] or null.
function route(method, path, json) {
  // Bedrock's OpenAI-compatible API (bedrock-runtime.REGION.amazonaws.com/openai/v1/...)
  if (path.startsWith('/openai/v1/')) return route(method, path.slice('/openai'.length), json);
  if (method === 'GET' && path === '/v1/models') return ['openai', 'models'];
  if (method !== 'POST') return null;
  switch (path) {
    case '/v1/chat/completions': return ['openai', 'chat'];
    case '/v1/completions': return ['openai', 'completions'];
    case '/v1/responses': return ['openai', 'responses'];
    case '/v1/embeddings': return ['openai', 'embeddings'];
    case '/v1/messages': return ['anthropic', 'messages'];
    case '/v1/messages/count_tokens': return ['anthropic', 'countTokens'];
    case '/v1/moderations': return ['openai', 'moderations'];
    case '/v1/images/generations': return ['openai', 'images'];
    case '/v1/images/edits': return ['openai', 'images'];
    case '/v1/images/variations': return ['openai', 'images'];
    case '/v1/audio/speech': return ['openai', 'speech'];
    case '/v1/audio/transcriptions': return ['openai', 'transcribe'];
    case '/v1/audio/translations': return ['openai', 'transcribe'];
    case '/v1beta/openai/chat/completions': return ['openai', 'chat'];
    default: break;
  }
  const p = /^\/(?:v1beta|v1)\/models\/([^/:]+):predict$/.exec(path);
  if (p) return ['gemini', 'imagen', decodeURIComponent(p[1]), false];
  const e = /^\/(?:v1beta|v1)\/models\/([^/:]+):(embedContent|batchEmbedContents)$/.exec(path);
  if (e) return ['gemini', 'geminiEmbed', decodeURIComponent(e[1]), false];
  const g = /^\/(?:v1beta|v1)\/models\/([^/:]+):(generateContent|streamGenerateContent)$/.exec(path);
  if (g) return ['gemini', 'gemini', decodeURIComponent(g[1]), g[2] === 'streamGenerateContent'];
  return null;
}

// ---- serving ---------------------------------------------------------------------------

let opts = null;
let logFd = null;
let nReq = 0;
const sockets = new Set();

function parseArgs(argv) {
  const o = { port: 0, httpPort: null, log: null, cert: null, key: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = () => argv[++i];
    if (a === '--port') o.port = +v();
    else if (a === '--http-port') o.httpPort = +v();
    else if (a === '--log') o.log = v();
    else if (a === '--cert') o.cert = v();
    else if (a === '--key') o.key = v();
    else throw new Error(`upstream.js: unknown argument ${a}`);
  }
  return o;
}

function logLine(obj) {
  if (logFd === null) return;
  fs.writeSync(logFd, `${JSON.stringify(obj)}\n`);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// The text fields of a multipart/form-data body (file parts skipped), last one wins.
function formFields(raw, boundary) {
  const out = {};
  const parts = raw.toString('latin1').split(`--${boundary}`);
  for (const p of parts.slice(1)) {
    const end = p.indexOf('\r\n\r\n');
    if (end < 0) continue;
    const head = p.slice(0, end);
    const name = /name="([^"]*)"/i.exec(head);
    if (!name || /filename=/i.test(head)) continue;
    out[name[1]] = Buffer.from(p.slice(end + 4).replace(/\r\n$/, ''), 'latin1').toString('utf8');
  }
  return out;
}

function sendJson(res, status, bodyText, extraHeaders) {
  const buf = Buffer.from(bodyText);
  res.writeHead(status, Object.assign({ 'content-type': 'application/json', 'content-length': buf.length,
    'x-request-id': `req_mock${seq}` }, extraHeaders || {}));
  res.end(buf);
}

async function handle(req, res, raw) {
  const url = new URL(req.url, 'http://mock');
  let json = null;
  try { json = raw.length ? JSON.parse(raw.toString('utf8')) : null; } catch { json = null; }
  const form = /^multipart\/form-data;.*boundary="?([^";]+)"?/i.exec(req.headers['content-type'] || '');
  if (form) json = formFields(raw, form[1]);
  const n = ++nReq;
  if (logFd !== null) {
    logLine({ n, t: Date.now(), method: req.method, path: url.pathname, query: url.search,
      headers: req.headers, rawHeaders: req.rawHeaders, body: raw.toString('utf8'), json,
      peerPort: req.socket.remotePort });
  }
  const r = route(req.method, url.pathname, json);
  if (!r) { sendJson(res, 404, errorBody('openai', 404)); return; }
  const [provider, name, model, forcedStream] = r;
  const d = parseDirectives(steeringText(json));
  const stream = forcedStream || !!(json && (json.stream === true || json.stream === 'true'));

  if (d.hangEarly) return; // keep the socket open, say nothing
  if (d.resetEarly) { req.socket.destroy(); return; }
  if (d.delay) await sleep(d.delay);
  if (d.status) {
    sendJson(res, d.status, errorBody(provider, d.status), d.status === 429 ? { 'retry-after': '7' } : {});
    return;
  }
  const built = builders[name]({ json: json || {} }, d, stream, model);
  if (built.binary) {
    res.writeHead(200, { 'content-type': built.contentType, 'content-length': built.binary.length, 'x-request-id': `req_mock${seq}` });
    res.end(built.binary);
    return;
  }
  if (built.json) {
    if (d.slow) await sleep(d.slow);
    const obj = d.pad ? { mock_pad: 'x'.repeat(d.pad), ...built.json } : built.json;
    let buf = Buffer.from(JSON.stringify(obj));
    const enc = {};
    if (d.gzip) { buf = zlib.gzipSync(buf); enc['content-encoding'] = 'gzip'; }
    if (d.hang) { res.writeHead(200, { 'content-type': 'application/json', 'content-length': buf.length }); res.flushHeaders(); return; }
    if (d.reset) {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': buf.length });
      res.write(buf.subarray(0, buf.length >> 1), () => setTimeout(() => req.socket.destroy(), 20));
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': buf.length, 'x-request-id': `req_mock${seq}`, ...enc });
    res.end(buf);
    return;
  }
  // SSE
  res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache',
    'x-request-id': `req_mock${seq}` });
  res.flushHeaders();
  if (d.hang) return;
  const events = built.events;
  const resetAfter = d.reset ? Math.min(events.length - 1, built.contentEvents + 2) : -1;
  for (let i = 0; i < events.length; i++) {
    if (res.destroyed || req.socket.destroyed) return;
    if (i === resetAfter) {
      // let the written bytes leave before the reset
      await new Promise((r) => res.write('', r));
      await sleep(20);
      req.socket.destroy();
      return;
    }
    if (d.slow && i > 0) await sleep(d.slow);
    res.write(events[i]);
  }
  res.end();
}

function onRequest(req, res) {
  const parts = [];
  req.on('data', (c) => parts.push(c));
  req.on('end', () => {
    handle(req, res, Buffer.concat(parts)).catch((e) => {
      process.stderr.write(`upstream.js: ${e.stack}\n`);
      if (!res.headersSent) sendJson(res, 500, errorBody('openai', 500));
      else res.destroy();
    });
  });
  req.on('error', () => {});
}

function configure(server) {
  server.keepAliveTimeout = 65000;
  server.headersTimeout = 66000;
  server.requestTimeout = 0;
  server.on('connection', (s) => { sockets.add(s); s.on('close', () => sockets.delete(s)); });
  server.on('secureConnection', (s) => { sockets.add(s); s.on('close', () => sockets.delete(s)); });
  server.on('clientError', (err, socket) => {
    logLine({ n: ++nReq, t: Date.now(), clientError: err.code || err.message });
    socket.destroy();
  });
  server.on('tlsClientError', () => {});
  return server;
}

function listen(server, port) {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve(server.address().port));
  });
}

async function main() {
  opts = parseArgs(process.argv.slice(2));
  if (!opts.cert || !opts.key) throw new Error('upstream.js: --cert and --key are required');
  if (opts.log) logFd = fs.openSync(opts.log, 'a');
  const tlsServer = configure(https.createServer({ cert: fs.readFileSync(opts.cert), key: fs.readFileSync(opts.key) }, onRequest));
  const servers = [tlsServer];
  const out = { https: await listen(tlsServer, opts.port), http: null, pid: process.pid };
  if (opts.httpPort !== null) {
    const plain = configure(http.createServer(onRequest));
    servers.push(plain);
    out.http = await listen(plain, opts.httpPort);
  }
  const stop = () => {
    for (const s of servers) s.close();
    for (const s of sockets) s.destroy();
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

module.exports = { errorBody, parseDirectives, steeringText };

if (require.main === module) {
  main().catch((e) => { process.stderr.write(`${e.stack}\n`); process.exit(1); });
}
