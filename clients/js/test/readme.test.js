// The README's example, run as written (only the import path and the port changed).

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

test("the README's example runs to completion on a fresh broker", async () => {
  const readme = readFileSync(path.join(HERE, '..', 'README.md'), 'utf8');
  const example = readme.match(/```js\n([\s\S]*?)```/)[1];
  const broker = await startBroker();
  const dir = mkdtempSync(path.join(tmpdir(), 'linemq-js-readme-'));
  try {
    const script = path.join(dir, 'example.mjs');
    const client = pathToFileURL(path.join(HERE, '..', 'linemq.js')).href;
    writeFileSync(
      script,
      example.replace("'./clients/js/linemq.js'", `'${client}'`).replaceAll('port: 8888', `port: ${broker.port}`),
    );
    const { stdout } = await promisify(execFile)(process.execPath, [script], { timeout: 10_000 });
    assert.deepEqual(stdout.trim().split('\n').sort(), ['billing order 42', 'fanout 1 order 42']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
    await broker.cleanup();
  }
});
