// Load test and concurrency benchmark for `dsinfer serve` (Node, no dependencies).
//
//   node tools/loadtest.mjs load    --port P [--clients 8] [--requests 25] [--key K]
//       clients x requests completions of mixed prompt and output lengths; prints failures,
//       p50/p99 latency and time to first token, aggregate generated tokens/s.
//   node tools/loadtest.mjs streams --port P [--streams 1,2,4] [--tokens 128] [--reps 3]
//       N concurrent streams of exactly --tokens tokens each (ignore_eos) after a one-word
//       prompt (decode dominates), repeated; prints the median aggregate tokens/s per N (wall
//       clock of the whole batch of requests) and its ratio to one stream.
import http from 'node:http';

const args = process.argv.slice(2);
const mode = args[0];
const opt = (name, def) => {
  const i = args.indexOf('--' + name);
  return i >= 0 ? args[i + 1] : def;
};
const port = Number(opt('port', 8080));
const key = opt('key', null);

function post(body) {
  return new Promise((resolve) => {
    const t0 = performance.now();
    let first = null;
    const headers = { 'Content-Type': 'application/json' };
    if (key) headers.Authorization = `Bearer ${key}`;
    const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/v1/completions', headers }, (res) => {
      let data = '';
      res.on('data', (d) => {
        if (first === null) first = performance.now() - t0;
        data += d;
      });
      res.on('end', () => {
        const ms = performance.now() - t0;
        let tokens = 0;
        if (res.statusCode === 200) {
          if (body.stream) {
            tokens = (data.match(/"finish_reason":null/g) || []).length;
            const m = data.match(/"completion_tokens":(\d+)/);
            if (m) tokens = Number(m[1]);
          } else {
            try { tokens = JSON.parse(data).usage.completion_tokens; } catch { tokens = 0; }
          }
        }
        resolve({ status: res.statusCode, ms, ttft: first ?? ms, tokens });
      });
    });
    req.on('error', () => resolve({ status: 0, ms: performance.now() - t0, ttft: 0, tokens: 0 }));
    req.end(JSON.stringify(body));
  });
}

const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor(p / 100 * s.length))] : NaN;
};

const words = 'the quick brown fox jumps over a lazy dog while kings and queens debate the weather'.split(' ');
function prompt(n) {
  let s = '';
  for (let i = 0; i < n; i++) s += words[(i * 7 + n) % words.length] + ' ';
  return s;
}

async function load() {
  const clients = Number(opt('clients', 8)), per = Number(opt('requests', 25));
  const plen = [4, 16, 64, 200], olen = [8, 32, 64, 128];
  const results = [];
  const t0 = performance.now();
  await Promise.all(Array.from({ length: clients }, async (_, c) => {
    for (let i = 0; i < per; i++) {
      const k = (c * per + i) % 16;
      const stream = (c + i) % 2 === 0;
      results.push(await post({ prompt: prompt(plen[k % 4]), max_tokens: olen[(k >> 2) % 4], temperature: 0.7, stream,
        stream_options: stream ? { include_usage: true } : undefined, ignore_eos: true }));
    }
  }));
  const secs = (performance.now() - t0) / 1000;
  const ok = results.filter((r) => r.status === 200);
  const toks = ok.reduce((a, r) => a + r.tokens, 0);
  console.log(JSON.stringify({
    requests: results.length, failed: results.length - ok.length,
    statuses: [...new Set(results.map((r) => r.status))],
    latency_ms: { p50: +pct(ok.map((r) => r.ms), 50).toFixed(1), p99: +pct(ok.map((r) => r.ms), 99).toFixed(1) },
    ttft_ms: { p50: +pct(ok.map((r) => r.ttft), 50).toFixed(1), p99: +pct(ok.map((r) => r.ttft), 99).toFixed(1) },
    generated_tokens: toks, seconds: +secs.toFixed(2), tokens_per_s: +(toks / secs).toFixed(1),
  }));
}

async function streams() {
  const ns = opt('streams', '1,2,4').split(',').map(Number);
  const tokens = Number(opt('tokens', 128)), reps = Number(opt('reps', 3));
  await post({ prompt: prompt(8), max_tokens: 16, ignore_eos: true }); // warm-up
  const out = {};
  for (const n of ns) {
    const rates = [];
    for (let r = 0; r < reps; r++) {
      const t0 = performance.now();
      const rs = await Promise.all(Array.from({ length: n }, (_, i) =>
        post({ prompt: words[i % words.length], max_tokens: tokens, ignore_eos: true, temperature: 0 })));
      const secs = (performance.now() - t0) / 1000;
      rates.push(rs.reduce((a, x) => a + x.tokens, 0) / secs);
    }
    out[n] = pct(rates, 50);
  }
  const base = out[ns[0]];
  for (const n of ns)
    console.log(`streams ${n}: ${out[n].toFixed(1)} tokens/s aggregate (median of ${reps}), ${(out[n] / base).toFixed(2)}x of ${ns[0]}`);
}

if (mode === 'load') await load();
else if (mode === 'streams') await streams();
else {
  console.error('usage: node tools/loadtest.mjs load|streams --port P [...] (see the top of the file)');
  process.exit(2);
}
