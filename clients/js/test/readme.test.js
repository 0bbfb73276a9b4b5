// The README's examples, run as written (only the import path and the port changed).

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { test } from 'node:test';
import { promisify } from 'node:util';

import { startBroker } from './broker.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));

async function runExample(example, port) {
  const dir = mkdtempSync(path.join(tmpdir(), 'linemq-js-readme-'));
  try {
    const script = path.join(dir, 'example.mjs');
    const client = pathToFileURL(path.join(HERE, '..', 'linemq.js')).href;
    writeFileSync(
      script,
      example.replace("'./clients/js/linemq.js'", `'${client}'`).replaceAll('port: 8888', `port: ${port}`),
    );
    const { stdout } = await promisify(execFile)(process.execPath, [script], { timeout: 10_000 });
    return stdout.trim().split('\n').sort();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test("the README's examples run to completion on a fresh broker", async () => {
  const readme = readFileSync(path.join(HERE, '..', 'README.md'), 'utf8');
  const [client, worker] = [...readme.matchAll(/```js\n([\s\S]*?)```/g)].map((m) => m[1]);
  const broker = await startBroker();
  try {
    assert.deepEqual(await runExample(client, broker.port), ['billing order 42', 'fanout 1 order 42']);
    assert.deepEqual(await runExample(worker, broker.port), ['resized cat.png']);
  } finally {
    await broker.cleanup();
  }
});
