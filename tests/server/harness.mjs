// Shared pieces of the server tests (server_test.mjs, server_vl2_test.mjs): checks that count
// failures, a server started on a free port, raw HTTP requests.
import { spawn } from 'node:child_process';
import http from 'node:http';

let failures = 0;
const verbose = !!process.env.VERBOSE;

export function check(cond, what, detail) {
  if (!cond) {
    failures++;
    console.log(`FAIL: ${what}${detail !== undefined ? ': ' + JSON.stringify(detail).slice(0, 600) : ''}`);
  } else if (verbose) {
    console.log(`ok: ${what}`);
  }
}

export const failureCount = () => failures;

// What the test is doing now, and the servers it has running: a watchdog that fires names the
// stage, shows the servers' last log lines and kills them (no server outlives a hung test).
let current = 'start';
const live = new Set();
export function stage(name) {
  current = name;
  if (verbose) console.log(`stage: ${name}`);
}
export function watchdog(ms) {
  return setTimeout(() => {
    console.log(`FAIL: timeout after ${ms / 1000} s in stage "${current}"`);
    for (const s of live) {
      console.log(`server pid ${s.proc.pid} log tail:\n${s.log().slice(-1500)}`);
      s.proc.kill('SIGKILL');
    }
    process.exit(100);
  }, ms);
}

// Start `BIN serve --port 0 ARGS`; resolves with {proc, port, log(), exited, stop(sig)} once
// it listens.
export function startServer(bin, args, timeoutMs = 120000) {
  return new Promise((resolve, reject) => {
    const proc = spawn(bin, ['serve', '--port', '0', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    let log = '';
    let done = false;
    const timer = setTimeout(() => { if (!done) { done = true; proc.kill('SIGKILL'); reject(new Error('server did not start: ' + log)); } }, timeoutMs);
    proc.stderr.on('data', (d) => {
      log += d.toString();
      const m = log.match(/listening on http:\/\/[^:]+:(\d+)/);
      if (m && !done) {
        done = true;
        clearTimeout(timer);
        const exited = new Promise((res) => proc.on('exit', (code, sig) => res({ code, sig })));
        const srv = {
          proc, port: Number(m[1]), log: () => log, exited,
          stop: async (sig = 'SIGTERM') => { proc.kill(sig); return exited; },
        };
        live.add(srv);
        exited.then(() => live.delete(srv));
        resolve(srv);
      }
    });
    proc.on('exit', (code) => { if (!done) { done = true; clearTimeout(timer); reject(new Error(`server exited ${code}: ${log}`)); } });
  });
}

// Raw HTTP request; resolves {status, headers, body}. key: a bearer token (none: no header).
export function request(port, method, url, { body, headers = {}, key } = {}) {
  return new Promise((resolve, reject) => {
    const h = { ...headers };
    if (key) h.Authorization = `Bearer ${key}`;
    if (body !== undefined && !h['Content-Type']) h['Content-Type'] = 'application/json';
    const req = http.request({ host: '127.0.0.1', port, method, path: url, headers: h }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString() }));
    });
    req.on('error', reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

export const json = (s) => { try { return JSON.parse(s); } catch { return null; } };
