import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, test } from 'node:test';

import { Backoff, Client, ConnectionLost, parseServers, rotation } from '../linemq.js';
import { BrokerProcess, eventually, rawCommand, startBroker } from './broker.js';

/** A port nothing listens on now, for a node that starts later in the test. */
function freePort() {
  return new Promise((resolve) => {
    const server = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

const list = (...ports) => ports.map((p) => `127.0.0.1:${p}`).join(',');
const fast = new Backoff({ baseMs: 20, capMs: 100 });

describe('server lists', () => {
  test('are read as the Python client and --servers read them', () => {
    assert.deepEqual(parseServers('a:1, [::1]:2,b'), [
      { host: 'a', port: 1 }, { host: '::1', port: 2 }, { host: 'b', port: 8888 },
    ]);
    for (const [bad, why] of [
      ['a:1,,b:2', /empty server address/], ['a:65536', /port must be 1-65535/],
      ['::1', /IPv6 address in brackets/], ['[::1', /no closing/], ['a:1,a:1', /listed twice/],
      ['tcp://a:1', /without a scheme/], ['a b:1', /bad host name/], [[], /no server address given/],
    ]) {
      assert.throws(() => parseServers(bad), why, String(bad));
    }
    assert.deepEqual(rotation(3, 2), [2, 0, 1]);
    assert.throws(() => new Client({ host: 'a', servers: 'b:1' }), /not both/);
  });
});

test('a client moves to the next node and re-joins its group there', async () => {
  const a = await startBroker();
  const b = await startBroker();
  const client = new Client({ servers: list(a.port, b.port), backoff: fast });
  try {
    await client.connect();
    const [first, other] = client.server.port === a.port ? [a, b] : [b, a];
    const got = [];
    await client.subscribeGroup('jobs', 'workers', async (m) => {
      await m.ack();
      got.push(m.text);
    });
    await first.stop();
    await eventually(() => client.server?.port === other.port, 10_000);
    await client.publish('jobs', 'after failover');
    await eventually(() => got.length === 1, 10_000);
    assert.deepEqual(got, ['after failover']);
  } finally {
    await client.close();
    await a.cleanup();
    await b.cleanup();
  }
});

test('fanout resumes after the last offset seen on a node serving the same data', async () => {
  const a = await startBroker();
  const later = await freePort();
  const client = new Client({ servers: list(later, a.port), backoff: fast });
  const b = new BrokerProcess();
  b.dataDir = a.dataDir;
  b.port = later;
  try {
    await client.connect(); // only a answers, whichever it tries first
    assert.equal(client.server.port, a.port);
    const got = [];
    await client.subscribe('news', (m) => got.push(`${m.offset} ${m.text}`));
    await rawCommand(a.port, ['PUB news one', 'PUB news two', 'PING'], 'OK pong');
    await eventually(() => got.length === 2);
    await a.stop();
    await b.start();
    await rawCommand(later, ['PUB news three', 'PING'], 'OK pong'); // before it is back
    await eventually(() => got.length === 3, 10_000);
    assert.deepEqual(got, ['1 one', '2 two', '3 three']);
    assert.equal(client.server.port, later);
  } finally {
    await client.close();
    await b.stop();
    await a.cleanup();
  }
});

test('connect names every node that did not answer', async () => {
  const down = [await freePort(), await freePort()];
  const client = new Client({ servers: list(...down), reconnect: false });
  await assert.rejects(client.connect(), (err) => {
    assert.ok(err instanceof ConnectionLost);
    assert.match(err.message, /no server took the connection/);
    for (const port of down) assert.ok(err.message.includes(`127.0.0.1:${port}:`), err.message);
    return true;
  });
});
