// Starts a real linemq broker in a subprocess for the tests, as tests/conftest.py does:
// `python -m linemq.broker --port 0 --log-format json`, the port read from the `listening` log event.

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
// LINEMQ_PYTHON lets pytest pass its own interpreter; an activated venv's python3 also works.
const PYTHON = process.env.LINEMQ_PYTHON ?? 'python3';

export class BrokerProcess {
  constructor(args = []) {
    this.args = args;
    this.dataDir = mkdtempSync(path.join(tmpdir(), 'linemq-js-'));
    this.port = 0;
    this.proc = null;
  }

  /** Start (or restart on the same port and data) and resolve once it listens. */
  start() {
    const args = ['-m', 'linemq.broker', '--port', String(this.port), '--data-dir', this.dataDir];
    args.push('--log-format', 'json', ...this.args);
    const proc = spawn(PYTHON, args, { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
    this.proc = proc;
    return new Promise((resolve, reject) => {
      let seen = '';
      const timer = setTimeout(() => reject(new Error(`broker did not start: ${seen}`)), 20_000);
      proc.stderr.setEncoding('utf8');
      proc.stderr.on('data', (chunk) => {
        seen += chunk;
        for (const line of seen.split('\n')) {
          if (!line.includes('"listening"')) continue;
          try {
            const event = JSON.parse(line);
            if (event.event === 'listening') {
              clearTimeout(timer);
              this.port = Number(event.port);
              resolve(this);
            }
          } catch {
            // a partial line: the rest comes with the next chunk
          }
        }
      });
      proc.on('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`broker exited with ${code}: ${seen}`));
      });
    });
  }

  /** Stop with a signal and wait for the exit. */
  stop(signal = 'SIGKILL') {
    const proc = this.proc;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve();
    return new Promise((resolve) => {
      proc.once('exit', () => resolve());
      proc.kill(signal);
    });
  }

  async cleanup() {
    await this.stop();
    rmSync(this.dataDir, { recursive: true, force: true });
  }
}

export async function startBroker(args = []) {
  return new BrokerProcess(args).start();
}

/** A raw line connection, to check what the broker holds without the client under test. */
export async function rawCommand(port, lines, endLine) {
  return new Promise((resolve, reject) => {
    const socket = net.createConnection({ host: '127.0.0.1', port });
    let data = '';
    socket.setEncoding('utf8');
    socket.on('connect', () => socket.write(lines.map((l) => `${l}\n`).join('')));
    socket.on('data', (chunk) => {
      data += chunk;
      const got = data.split('\n');
      if (got.includes(endLine)) {
        socket.destroy();
        resolve(got.slice(1, got.indexOf(endLine) + 1));
      }
    });
    socket.on('error', reject);
  });
}

/** Resolve when `check()` is true; no fixed sleeps. */
export async function eventually(check, timeoutMs = 5_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not reached in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}
