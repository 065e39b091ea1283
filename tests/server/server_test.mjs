// Integration tests of `dsinfer serve` with the official `openai` npm client and raw HTTP.
// Usage: node tests/server/server_test.mjs BIN MODEL   (run by tests/cli/cli_serve.sh, which
// installs the client). Each check prints on failure; the exit status is the failure count.
import { copyFileSync, writeFileSync, mkdtempSync, rmSync, renameSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import OpenAI from 'openai';
import { check, failureCount, json, request as req, stage, startServer as start, watchdog as startWatchdog } from './harness.mjs';

const [BIN, MODEL] = process.argv.slice(2);
const KEY = 'test-key-123';
// Raw HTTP request with the test key; resolves {status, headers, body}.
const request = (port, method, url, opt = {}) => req(port, method, url, { key: KEY, ...opt });
const startServer = (args) => start(BIN, args);

async function metric(port, name) {
  const r = await request(port, 'GET', '/metrics');
  const m = r.body.match(new RegExp(`^${name.replace(/[{}"=]/g, (c) => '\\' + c)} (\\S+)$`, 'm'));
  return m ? Number(m[1]) : NaN;
}

async function waitFor(fn, ms = 10000) {
  const end = Date.now() + ms;
  for (;;) {
    if (await fn()) return true;
    if (Date.now() > end) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
}

function errorShape(r, status, what) {
  const j = json(r.body);
  check(r.status === status, `${what}: status ${status}`, { status: r.status, body: r.body });
  check(j && j.error && typeof j.error.message === 'string' && typeof j.error.type === 'string' && 'code' in j.error && 'param' in j.error,
    `${what}: OpenAI error shape`, r.body);
}

async function main() {
  const srv = await startServer(['-m', MODEL, '--parallel', '4', '-c', '512', '--api-key', KEY,
    '--max-body', '65536', '--queue', '64', '-t', '2']);
  const port = srv.port;
  const client = new OpenAI({ apiKey: KEY, baseURL: `http://127.0.0.1:${port}/v1`, maxRetries: 0 });
  try {
    // --- the official client: models, chat, completions, stream and non-stream
    stage('the official client');
    const models = await client.models.list();
    check(models.data.length === 1 && typeof models.data[0].id === 'string', 'models.list', models.data);
    const messages = [{ role: 'system', content: 'You are a player.' }, { role: 'user', content: 'Speak of love.' }];
    const chat = await client.chat.completions.create({ model: 'x', messages, max_tokens: 24, temperature: 0 });
    const text = chat.choices[0].message.content;
    check(typeof text === 'string' && text.length > 0, 'chat: content', chat);
    check(chat.choices[0].finish_reason === 'length' || chat.choices[0].finish_reason === 'stop', 'chat: finish_reason', chat.choices[0]);
    check(chat.usage.completion_tokens > 0 && chat.usage.prompt_tokens > 0 &&
      chat.usage.total_tokens === chat.usage.prompt_tokens + chat.usage.completion_tokens, 'chat: usage', chat.usage);
    check(chat.object === 'chat.completion' && chat.id.startsWith('chatcmpl-'), 'chat: object and id', chat);

    const stream = await client.chat.completions.create({ model: 'x', messages, max_tokens: 24, temperature: 0, stream: true, stream_options: { include_usage: true } });
    let streamed = '', finish = null, usage = null, role = null;
    for await (const ch of stream) {
      if (ch.usage) usage = ch.usage;
      for (const c of ch.choices) {
        if (c.delta.role) role = c.delta.role;
        if (c.delta.content) streamed += c.delta.content;
        if (c.finish_reason) finish = c.finish_reason;
      }
    }
    check(streamed === text, 'chat: streamed text equals the non-streamed text', { streamed, text });
    check(role === 'assistant' && finish === chat.choices[0].finish_reason, 'chat stream: role and finish_reason', { role, finish });
    check(usage && usage.completion_tokens === chat.usage.completion_tokens, 'chat stream: usage chunk', usage);

    const compl = await client.completions.create({ model: 'x', prompt: 'ROMEO:', max_tokens: 32, temperature: 0 });
    const ctext = compl.choices[0].text;
    check(typeof ctext === 'string' && ctext.length > 0 && compl.object === 'text_completion', 'completions: text', compl);
    const cstream = await client.completions.create({ model: 'x', prompt: 'ROMEO:', max_tokens: 32, temperature: 0, stream: true });
    let cs = '';
    for await (const ch of cstream) cs += ch.choices[0]?.text ?? '';
    check(cs === ctext, 'completions: streamed text equals the non-streamed text', { cs, ctext });

    // sampling parameters, stop strings, logprobs, seeds
    const seeded = async () => (await client.completions.create({ model: 'x', prompt: 'KING:', max_tokens: 16, temperature: 0.9, top_p: 0.9, top_k: 40, min_p: 0.05, seed: 42, presence_penalty: 0.5, frequency_penalty: 0.5 })).choices[0].text;
    const s1 = await seeded(), s2 = await seeded();
    check(s1 === s2, 'same seed, same text', { s1, s2 });
    const stopWord = ctext.trim().split(/\s+/)[1];
    if (stopWord) {
      const st = await client.completions.create({ model: 'x', prompt: 'ROMEO:', max_tokens: 32, temperature: 0, stop: [stopWord] });
      check(st.choices[0].finish_reason === 'stop' && !st.choices[0].text.includes(stopWord) &&
        ctext.startsWith(st.choices[0].text), 'stop string cuts the text', { stopWord, got: st.choices[0].text });
    }
    const lp = await client.chat.completions.create({ model: 'x', messages, max_tokens: 4, temperature: 0, logprobs: true, top_logprobs: 3 });
    const lpc = lp.choices[0].logprobs?.content;
    check(Array.isArray(lpc) && lpc.length === lp.usage.completion_tokens && lpc.every((e) => e.logprob <= 0 &&
      e.top_logprobs.length === 3 && e.top_logprobs[0].logprob >= e.logprob - 1e-6 && Array.isArray(e.bytes)), 'chat logprobs', lpc);
    const lp2 = await client.completions.create({ model: 'x', prompt: 'ROMEO:', max_tokens: 4, temperature: 0, logprobs: 2 });
    const l2 = lp2.choices[0].logprobs;
    check(l2 && l2.tokens.length === 4 && l2.token_logprobs.length === 4 && l2.top_logprobs.length === 4, 'completions logprobs', l2);

    // --- 16 concurrent identical requests at temperature 0: all equal to the single request
    stage('16 concurrent identical requests at temperature 0');
    const b0 = await metric(port, 'dsinfer_decode_batches_total');
    const t0 = await metric(port, 'dsinfer_decode_batch_tokens_total');
    const many = await Promise.all(Array.from({ length: 16 }, () =>
      client.completions.create({ model: 'x', prompt: 'ROMEO:', max_tokens: 32, temperature: 0 })));
    check(many.every((c) => c.choices[0].text === ctext), '16 concurrent completions equal the single one',
      many.map((c) => c.choices[0].text).filter((t) => t !== ctext));
    const manyChat = await Promise.all(Array.from({ length: 16 }, (_, i) => i % 2 ?
      client.chat.completions.create({ model: 'x', messages, max_tokens: 24, temperature: 0 }) :
      (async () => { let s = ''; for await (const ch of await client.chat.completions.create({ model: 'x', messages, max_tokens: 24, temperature: 0, stream: true })) s += ch.choices[0]?.delta?.content ?? ''; return { choices: [{ message: { content: s } }] }; })()));
    check(manyChat.every((c) => c.choices[0].message.content === text), '16 concurrent chats (half streamed) equal the single one',
      manyChat.map((c) => c.choices[0].message.content).filter((t) => t !== text));
    const b1 = await metric(port, 'dsinfer_decode_batches_total');
    const t1 = await metric(port, 'dsinfer_decode_batch_tokens_total');
    check((t1 - t0) / (b1 - b0) > 1.5, 'concurrent requests are decoded in shared batches', { tokens: t1 - t0, batches: b1 - b0 });

    // --- prefix reuse: the same conversation again, and continued
    stage('prefix reuse');
    const again = await client.chat.completions.create({ model: 'x', messages, max_tokens: 8, temperature: 0 });
    check(again.usage.prompt_tokens_details.cached_tokens === again.usage.prompt_tokens - 1, 'same prompt: all but the last token cached', again.usage);
    const cont = await client.chat.completions.create({ model: 'x', messages: [...messages, { role: 'assistant', content: text }, { role: 'user', content: 'And of hate?' }], max_tokens: 8, temperature: 0 });
    check(cont.usage.prompt_tokens_details.cached_tokens >= again.usage.prompt_tokens - 2, 'continued chat reuses the cached prefix', cont.usage);

    // --- errors
    stage('errors');
    errorShape(await request(port, 'POST', '/v1/chat/completions', { body: '{"messages": [' }), 400, 'invalid JSON');
    errorShape(await request(port, 'POST', '/v1/chat/completions', { body: JSON.stringify({ messages, max_tokens: 'ten' }) }), 400, 'max_tokens of the wrong type');
    errorShape(await request(port, 'POST', '/v1/chat/completions', { body: JSON.stringify({ messages, max_tokens: -5 }) }), 400, 'negative max_tokens');
    errorShape(await request(port, 'POST', '/v1/chat/completions', { body: JSON.stringify({ messages, temperature: 7 }) }), 400, 'temperature out of range');
    errorShape(await request(port, 'POST', '/v1/chat/completions', { body: '{"messages":[{"role":"user","content":"x"}],"max_tokens":1e300}' }), 400, 'max_tokens far out of range');
    errorShape(await request(port, 'POST', '/v1/completions', { body: '{"prompt":"x","logprobs":1.5}' }), 400, 'logprobs not an integer');
    errorShape(await request(port, 'POST', '/v1/chat/completions', { body: JSON.stringify({ messages, n: 2 }) }), 400, 'n = 2');
    errorShape(await request(port, 'POST', '/v1/chat/completions', { body: JSON.stringify({ messages: [] }) }), 400, 'no messages');
    errorShape(await request(port, 'POST', '/v1/chat/completions', { body: JSON.stringify({ messages: [{ role: 'wizard', content: 'x' }] }) }), 400, 'unknown role');
    const img = await request(port, 'POST', '/v1/chat/completions', { body: JSON.stringify({ messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'data:image/png;base64,iVBORw0KGgo=' } }, { type: 'text', text: 'What is it?' }] }] }) });
    errorShape(img, 400, 'an image part to a text-only model');
    check(/vision encoder/.test(json(img.body)?.error?.message), 'the text-only model error names the reason', img.body);
    errorShape(await request(port, 'POST', '/v1/completions', { body: JSON.stringify({ prompt: 42 }) }), 400, 'prompt of the wrong type');
    errorShape(await request(port, 'POST', '/v1/completions', { body: JSON.stringify({ prompt: [1, 2, 99999999] }) }), 400, 'token id outside the vocabulary');
    errorShape(await request(port, 'POST', '/v1/completions', { body: Buffer.from([0x7b, 0x22, 0x70, 0x72, 0x6f, 0x6d, 0x70, 0x74, 0x22, 0x3a, 0x22, 0xff, 0xfe, 0x22, 0x7d]) }), 400, 'invalid UTF-8');
    const long = await request(port, 'POST', '/v1/completions', { body: JSON.stringify({ prompt: 'To be or not to be. '.repeat(200) }) });
    errorShape(long, 400, 'prompt larger than the context');
    check(json(long.body)?.error?.code === 'context_length_exceeded', 'context_length_exceeded code', long.body);
    errorShape(await request(port, 'POST', '/v1/completions', { body: JSON.stringify({ prompt: 'x'.repeat(70000) }) }), 413, 'body over the limit');
    errorShape(await request(port, 'POST', '/v1/completions', { body: '{"prompt":"hi"}', key: null }), 401, 'missing API key');
    errorShape(await request(port, 'POST', '/v1/completions', { body: '{"prompt":"hi"}', key: 'wrong' }), 401, 'wrong API key');
    errorShape(await request(port, 'GET', '/v1/nothing'), 404, 'unknown route');
    errorShape(await request(port, 'GET', '/v1/completions'), 405, 'wrong method');
    let clientErr = null;
    try { await new OpenAI({ apiKey: 'bad', baseURL: `http://127.0.0.1:${port}/v1`, maxRetries: 0 }).models.list(); } catch (e) { clientErr = e; }
    check(clientErr && clientErr.status === 401, 'the client sees 401 for a bad key', clientErr?.status);
    check((await request(port, 'GET', '/health', { key: null })).status === 200, '/health needs no key');

    // --- a client disconnecting mid-stream frees its slot at once
    stage('a client disconnecting mid-stream frees its slot at once');
    const g0 = await metric(port, 'dsinfer_generated_tokens_total');
    await new Promise((resolve) => {
      const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/v1/completions',
        headers: { Authorization: `Bearer ${KEY}`, 'Content-Type': 'application/json' } }, (res) => {
        res.once('data', () => { req.destroy(); resolve(); });
      });
      req.on('error', () => {});
      req.end(JSON.stringify({ prompt: 'ROMEO:', max_tokens: 480, temperature: 0.8, stream: true, ignore_eos: true }));
    });
    const freed = await waitFor(async () => (await metric(port, 'dsinfer_slots_active')) === 0, 5000);
    const g1 = await metric(port, 'dsinfer_generated_tokens_total');
    check(freed, 'disconnect frees the slot');
    check(g1 - g0 < 480, 'disconnect stops the generation early', { generated: g1 - g0 });
    check(await waitFor(async () => /dsinfer_requests_total\{endpoint="\/v1\/completions",status="499"\} [1-9]/.test((await request(port, 'GET', '/metrics')).body), 3000),
      'the disconnect is counted as status 499');

    // --- metrics
    stage('metrics');
    const met = (await request(port, 'GET', '/metrics')).body;
    for (const name of ['dsinfer_requests_total{endpoint="/v1/chat/completions",status="200"}', 'dsinfer_prompt_tokens_total',
      'dsinfer_generated_tokens_total', 'dsinfer_time_to_first_token_seconds_bucket{le="+Inf"}', 'dsinfer_time_per_output_token_seconds_count',
      'dsinfer_slots_active', 'dsinfer_queue_depth', 'dsinfer_kv_cache_usage_ratio', 'dsinfer_requests_total{endpoint="/v1/completions",status="400"}',
      'dsinfer_requests_total{endpoint="/v1/completions",status="413"}'])
      check(met.includes(name + ' '), `metrics: ${name}`);

    // --- still healthy, still the same answer
    stage('still healthy, still the same answer');
    check((await request(port, 'GET', '/health')).status === 200, 'healthy after everything');
    const last = await client.completions.create({ model: 'x', prompt: 'ROMEO:', max_tokens: 32, temperature: 0 });
    check(last.choices[0].text === ctext, 'same answer after everything', last.choices[0].text);
  } finally {
    const ex = await srv.stop('SIGTERM');
    check(ex.code === 0, 'clean exit on SIGTERM (no leak under ASan)', { ex, log: srv.log().slice(-2000) });
  }

  // --- a full queue answers 503 with Retry-After
  stage('a full queue answers 503 with Retry-After');
  {
    const s2 = await startServer(['-m', MODEL, '--parallel', '1', '--queue', '1', '-c', '512', '-t', '2']);
    const body = JSON.stringify({ prompt: 'ROMEO:', max_tokens: 400, ignore_eos: true });
    const rs = await Promise.all(Array.from({ length: 6 }, () => request(s2.port, 'POST', '/v1/completions', { body, key: null })));
    const busy = rs.filter((r) => r.status === 503);
    check(busy.length >= 1 && rs.filter((r) => r.status === 200).length >= 2, 'full queue: some 503, others served', rs.map((r) => r.status));
    check(busy.every((r) => r.headers['retry-after'] !== undefined && json(r.body)?.error), '503 has Retry-After and an error body');
    // graceful shutdown: a stream in flight finishes, then the process exits 0
    stage('graceful shutdown');
    const streamDone = new Promise((resolve) => {
      const req = http.request({ host: '127.0.0.1', port: s2.port, method: 'POST', path: '/v1/completions', headers: { 'Content-Type': 'application/json' } }, (res) => {
        let all = '';
        res.on('data', (d) => {
          all += d;
          if (!s2.sent) { s2.sent = true; s2.proc.kill('SIGTERM'); }
        });
        res.on('end', () => resolve(all));
        res.on('error', () => resolve(all));
      });
      req.on('error', () => resolve(''));
      req.end(JSON.stringify({ prompt: 'ROMEO:', max_tokens: 200, stream: true }));
    });
    const all = await streamDone;
    check(all.includes('"finish_reason":"') && all.trimEnd().endsWith('data: [DONE]'), 'SIGTERM lets the in-flight stream finish', all.slice(-300));
    const ex = await s2.exited;
    check(ex.code === 0, 'graceful stop exits 0', ex);
  }

  // --- R1-style reasoning: with the deepseek-r1 template the generation starts inside <think>
  stage('R1-style reasoning');
  {
    const s3 = await startServer(['-m', MODEL, '--chat-template', 'deepseek-r1', '-c', '512', '-t', '2']);
    const c3 = new OpenAI({ apiKey: 'none', baseURL: `http://127.0.0.1:${s3.port}/v1`, maxRetries: 0 });
    const r = await c3.chat.completions.create({ model: 'x', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 16, temperature: 0 });
    const m = r.choices[0].message;
    check(typeof m.reasoning_content === 'string' && m.reasoning_content.length > 0 && m.content === '', 'reasoning_content separate from content', m);
    let rs = '', cs = '';
    for await (const ch of await c3.chat.completions.create({ model: 'x', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 16, temperature: 0, stream: true })) {
      rs += ch.choices[0]?.delta?.reasoning_content ?? '';
      cs += ch.choices[0]?.delta?.content ?? '';
    }
    check(rs === m.reasoning_content && cs === '', 'streamed reasoning_content equals the non-streamed one', { rs, cs });
    await s3.stop();
  }

  // --- hot reload: SIGHUP and /admin/reload; a broken file keeps the old model serving
  stage('hot reload');
  {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'dsinfer-serve-'));
    const mp = path.join(dir, 'model.gguf');
    copyFileSync(MODEL, mp);
    const s4 = await startServer(['-m', mp, '-c', '512', '-t', '2', '--api-key', KEY]);
    const before = (await request(s4.port, 'POST', '/v1/completions', { body: JSON.stringify({ prompt: 'ROMEO:', max_tokens: 8, temperature: 0 }) })).body;
    // a long request in flight while reloading finishes on the old model
    const inflight = request(s4.port, 'POST', '/v1/completions', { body: JSON.stringify({ prompt: 'ROMEO:', max_tokens: 300, ignore_eos: true, temperature: 0 }) });
    copyFileSync(MODEL, mp + '.new');
    renameSync(mp + '.new', mp);
    stage('hot reload: SIGHUP');
    s4.proc.kill('SIGHUP');
    check(await waitFor(async () => (await metric(s4.port, 'dsinfer_model_reloads_total')) === 1, 30000), 'SIGHUP reloads the model');
    const fin = await inflight;
    check(fin.status === 200 && json(fin.body)?.choices?.[0]?.text.length > 0, 'the in-flight request finished across the reload', fin.status);
    const after = (await request(s4.port, 'POST', '/v1/completions', { body: JSON.stringify({ prompt: 'ROMEO:', max_tokens: 8, temperature: 0 }) })).body;
    check(json(after)?.choices?.[0]?.text === json(before)?.choices?.[0]?.text, 'the reloaded model answers the same', { before, after });
    writeFileSync(mp + '.bad', 'GGUF but not really');
    renameSync(mp + '.bad', mp);
    check((await request(s4.port, 'POST', '/admin/reload', { key: null })).status === 401, '/admin/reload needs the key');
    check((await request(s4.port, 'POST', '/admin/reload')).status === 202, '/admin/reload accepted');
    check(await waitFor(async () => (await metric(s4.port, 'dsinfer_model_reload_failures_total')) === 1, 30000), 'a broken file is a failed reload');
    const still = await request(s4.port, 'POST', '/v1/completions', { body: JSON.stringify({ prompt: 'ROMEO:', max_tokens: 8, temperature: 0 }) });
    check(still.status === 200 && json(still.body)?.choices?.[0]?.text === json(before)?.choices?.[0]?.text, 'the old model keeps serving after a failed reload', still.body);
    check(/reload of .* failed/.test(s4.log()), 'the failed reload is logged with its cause', s4.log().slice(-500));
    const ex = await s4.stop();
    check(ex.code === 0, 'reload server exits 0', ex);
    rmSync(dir, { recursive: true, force: true });
  }
}

const watchdog = startWatchdog(600000);
main().then(() => {
  clearTimeout(watchdog);
  const failures = failureCount();
  console.log(failures ? `server tests: ${failures} failure(s)` : 'server tests: all passed');
  process.exit(failures ? 1 : 0);
}, (e) => {
  clearTimeout(watchdog);
  console.log('FAIL: ' + (e && e.stack || e));
  process.exit(1);
});
