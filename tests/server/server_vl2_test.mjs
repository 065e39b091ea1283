// `dsinfer serve` with a DeepSeek-VL2 model (the tiny-vl2-mha fixture): OpenAI content parts
// with pictures as data: URLs or (with --allow-local-images) local files, against the text of
// `dsinfer run` for the same message; errors for bad pictures.
// Usage: node server_vl2_test.mjs BIN MODEL IMAGE EXPECTED_IMAGE_TEXT_FILE EXPECTED_TEXT_FILE
// (run by tests/cli/cli_serve.sh, which writes the two files with `dsinfer run --no-echo`).
import { readFileSync } from 'node:fs';
import OpenAI from 'openai';
import { check, failureCount, json, request as req, stage, startServer as start, watchdog as startWatchdog } from './harness.mjs';

const [BIN, MODEL, IMAGE, EXP_IMAGE, EXP_TEXT] = process.argv.slice(2);
const startServer = (args) => start(BIN, args, 60000);
const request = (port, body) => req(port, 'POST', '/v1/chat/completions', { body: JSON.stringify(body) });
// `run --no-echo` prints the text and a newline; the server's chat content drops leading
// white space (as for every chat model)
const expected = (f) => readFileSync(f, 'utf8').replace(/\n$/, '').replace(/^\s+/, '');

function refused(r, what, re) {
  const msg = json(r.body)?.error?.message;
  check(r.status === 400 && typeof msg === 'string' && re.test(msg), what, { status: r.status, body: r.body });
}

async function main() {
  const wantImage = expected(EXP_IMAGE), wantText = expected(EXP_TEXT);
  const dataUrl = 'data:image/jpeg;base64,' + readFileSync(IMAGE).toString('base64');
  const imagePart = (url) => ({ type: 'image_url', image_url: { url } });
  const msgs = (url) => [{ role: 'user', content: [imagePart(url), { type: 'text', text: '\nDescribe this image.' }] }];

  // --- data: URLs only (the default)
  stage('data: URLs only');
  const srv = await startServer(['-m', MODEL, '-c', '2048', '--parallel', '2', '-t', '2', '--max-body', '4000000']);
  try {
    const client = new OpenAI({ apiKey: 'none', baseURL: `http://127.0.0.1:${srv.port}/v1`, maxRetries: 0 });
    const a = await client.chat.completions.create({ model: 'x', messages: msgs(dataUrl), max_tokens: 16, temperature: 0 });
    check(a.choices[0].message.content === wantImage, 'data URL: the text of `run --image`', { got: a.choices[0].message.content, want: wantImage });
    check(a.usage.prompt_tokens === 1430, 'data URL: 1430 prompt tokens (7 views)', a.usage);
    check(/1 image\(s\), 7 views, 1415 image tokens, encoded in [0-9.]+ s/.test(srv.log()), 'the encode is logged with its time', srv.log().slice(-500));
    check(!('images' in a) && Object.keys(a.choices[0].message).every((k) => ['role', 'content', 'refusal', 'annotations'].includes(k)),
      'nothing extra in the response', a.choices[0].message);
    // again: the model remembers the picture (no tower) and the slot's cache is reused through
    // its image tokens (the same embeddings)
    const b = await client.chat.completions.create({ model: 'x', messages: msgs(dataUrl), max_tokens: 16, temperature: 0 });
    check(b.choices[0].message.content === wantImage, 'data URL again: same text', b.choices[0].message.content);
    check(b.usage.prompt_tokens_details.cached_tokens === 1429,
      'cache reuse through the same picture (all but the last prompt token)', b.usage);
    check(/1 image\(s\), 0 views, 1415 image tokens/.test(srv.log()), 'the repeated picture is not encoded again', srv.log().slice(-500));
    // another picture: the cache is reused only up to its image tokens
    const other = 'data:image/jpeg;base64,' + readFileSync(IMAGE.replace('tiny-vl2-mha/monday.jpg', 'tiny-vl2-mla/visual_grounding_1.jpeg')).toString('base64');
    const o = await client.chat.completions.create({ model: 'x', messages: msgs(other), max_tokens: 4, temperature: 0 });
    check(o.usage.prompt_tokens_details.cached_tokens > 0 && o.usage.prompt_tokens_details.cached_tokens < 10,
      'no cache reuse across different pictures', o.usage);
    let streamed = '';
    for await (const ch of await client.chat.completions.create({ model: 'x', messages: msgs(dataUrl), max_tokens: 16, temperature: 0, stream: true }))
      streamed += ch.choices[0]?.delta?.content ?? '';
    check(streamed === wantImage, 'data URL streamed: same text', streamed);
    // two at once share the prompt passes (each prompt spans several -b 512 passes: the rows
    // follow the tokens already done)
    const two = await Promise.all([0, 1].map(() => client.chat.completions.create({ model: 'x', messages: msgs(dataUrl), max_tokens: 16, temperature: 0 })));
    check(two.every((c) => c.choices[0].message.content === wantImage), 'two concurrent picture requests: same text', two.map((c) => c.choices[0].message.content));
    // a text-only chat uses the VL2 conversation format (the GGUF has no chat template)
    const t = await client.chat.completions.create({ model: 'x', messages: [{ role: 'user', content: 'hi' }], max_tokens: 16, temperature: 0 });
    check(t.choices[0].message.content === wantText, 'text-only chat: the text of `run -p`', { got: t.choices[0].message.content, want: wantText });

    refused(await request(srv.port, { messages: msgs(IMAGE), max_tokens: 4 }), 'a local path without --allow-local-images', /--allow-local-images/);
    refused(await request(srv.port, { messages: msgs('file://' + IMAGE), max_tokens: 4 }), 'a file:// URL without --allow-local-images', /--allow-local-images/);
    refused(await request(srv.port, { messages: msgs('data:image/jpeg;base64,/9j/4AAQ$$$'), max_tokens: 4 }), 'bad base64', /base64/);
    refused(await request(srv.port, { messages: msgs('data:image/jpeg;base64,QUJDRA='), max_tokens: 4 }), 'bad base64 padding', /base64/);
    refused(await request(srv.port, { messages: msgs('data:image/png;base64,' + Buffer.from('not a picture').toString('base64')), max_tokens: 4 }), 'not a picture', /not a JPEG, PNG/);
    refused(await request(srv.port, { messages: msgs('data:text/plain;base64,QUJD'), max_tokens: 4 }), 'a data URL that is not an image', /data:image/);
    refused(await request(srv.port, { messages: msgs('https://example.com/cat.jpg'), max_tokens: 4 }), 'a remote URL', /not fetched/);
    refused(await request(srv.port, { messages: [{ role: 'user', content: 'look: <image>' }], max_tokens: 4 }), 'a literal <image> in text', /image_url parts/);
    refused(await request(srv.port, { messages: [{ role: 'assistant', content: [imagePart(dataUrl)] }, { role: 'user', content: 'x' }], max_tokens: 4 }), 'an image in an assistant turn', /user messages/);
    refused(await request(srv.port, { messages: [{ role: 'user', content: [{ type: 'input_audio', input_audio: {} }] }], max_tokens: 4 }), 'an unknown part type', /not supported/);
  } finally {
    const ex = await srv.stop();
    check(ex.code === 0, 'clean exit (no leak under ASan)', { ex, log: srv.log().slice(-2000) });
  }

  // --- with --allow-local-images: absolute paths and file:// URLs
  stage('with --allow-local-images');
  const s2 = await startServer(['-m', MODEL, '-c', '2048', '--parallel', '1', '-t', '2', '--allow-local-images']);
  try {
    const p = await request(s2.port, { messages: msgs(IMAGE), max_tokens: 16, temperature: 0 });
    check(p.status === 200 && json(p.body)?.choices?.[0]?.message?.content === wantImage, 'a local path with --allow-local-images', p.body);
    const f = await request(s2.port, { messages: msgs('file://' + IMAGE.replace(/ /g, '%20')), max_tokens: 1, temperature: 0 });
    check(f.status === 200, 'a file:// URL with --allow-local-images', f.body);
    refused(await request(s2.port, { messages: msgs('/nonexistent/x.jpg'), max_tokens: 1 }), 'a missing file', /cannot be read/);
    refused(await request(s2.port, { messages: msgs('relative/x.jpg'), max_tokens: 1 }), 'a relative path', /absolute path/);
  } finally {
    const ex = await s2.stop();
    check(ex.code === 0, 'clean exit with --allow-local-images', ex);
  }
}

const watchdog = startWatchdog(300000);
main().then(() => {
  clearTimeout(watchdog);
  const failures = failureCount();
  console.log(failures ? `server VL2 tests: ${failures} failure(s)` : 'server VL2 tests: all passed');
  process.exit(failures ? 1 : 0);
}, (e) => {
  clearTimeout(watchdog);
  console.log('FAIL: ' + (e && e.stack || e));
  process.exit(1);
});
