import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { Backoff, BrokerError, Client, ConnectionLost, LinemqError, matches } from '../linemq.js';
import { BrokerProcess, eventually, rawCommand, startBroker } from './broker.js';

const FAST = ['--ack-timeout', '0.3', '--retry-backoff-base', '0.05', '--retry-backoff-max', '0.2'];

describe('pure parts', () => {
  test('backoff doubles up to its cap, with jitter in the upper half', () => {
    const low = new Backoff({ baseMs: 100, capMs: 1000, random: () => 0 });
    const high = new Backoff({ baseMs: 100, capMs: 1000, random: () => 1 });
    assert.deepEqual([1, 2, 3, 4, 5, 9].map((n) => high.delay(n)), [100, 200, 400, 800, 1000, 1000]);
    assert.deepEqual([1, 2, 3].map((n) => low.delay(n)), [50, 100, 200]);
  });

  test('patterns match as the broker reads them', () => {
    assert.ok(matches('orders.*', 'orders.eu'));
    assert.ok(!matches('orders.*', 'orders.eu.x'));
    assert.ok(matches('orders.>', 'orders.eu.x'));
    assert.ok(!matches('orders.>', 'orders'));
    assert.ok(matches('orders', 'orders'));
  });
});

describe('against one broker', () => {
  let broker;
  let client;

  before(async () => {
    broker = await startBroker(FAST);
    client = new Client({ port: broker.port });
    await client.connect();
  });

  after(async () => {
    await client.close();
    await broker.cleanup();
  });

  test('publish resolves once the broker said OK published', async () => {
    await client.publish('js.pub', 'hello  world ');
    const lines = await rawCommand(broker.port, ['HISTORY js.pub 5'], 'OK history end');
    assert.equal(lines.length, 2);
    assert.match(lines[0], /^HISTORY js\.pub msg_\d+_[0-9a-f]{8} 1 [\d.]+ hello {2}world $/);
  });

  test('an ERR reply rejects with a BrokerError and the connection stays usable', async () => {
    await assert.rejects(client.publish('..bad', 'x'), (err) => {
      assert.ok(err instanceof BrokerError && err instanceof LinemqError);
      assert.equal(err.reason, 'invalid topic name');
      return true;
    });
    await assert.rejects(client.publish('js.pub', 'two\nlines'), { code: 'invalid_message' });
    await client.ping();
  });

  test('fanout gets what is published after it subscribed, in order', async () => {
    await client.publish('js.fan', 'before');
    const got = [];
    await client.subscribe('js.fan', (m) => got.push(m));
    for (const text of ['a', 'b', 'c']) await client.publish('js.fan', text);
    await eventually(() => got.length === 3);
    assert.deepEqual(got.map((m) => [m.offset, m.text, m.topic]), [[2, 'a', 'js.fan'], [3, 'b', 'js.fan'], [4, 'c', 'js.fan']]);
    assert.ok(got[0].ts > 1e9);
  });

  test('history returns the last messages oldest first', async () => {
    await client.publish('js.hist', 'one');
    await client.publish('js.hist', 'two');
    const got = await client.history('js.hist', 10);
    assert.deepEqual(got.map((m) => [m.offset, m.text]), [[1, 'one'], [2, 'two']]);
  });

  test('a group member acks; a nacked message comes back with the same id', async () => {
    const got = [];
    await client.subscribeGroup('js.jobs', 'workers', async (m) => {
      got.push(m);
      if (got.length === 1) await m.nack();
      else await m.ack();
    });
    await client.publish('js.jobs', 'job 1');
    await eventually(() => got.length === 2);
    assert.equal(got[0].id, got[1].id);
    assert.equal(got[1].group, 'workers');
    await eventually(async () => {
      const lines = await rawCommand(broker.port, ['GROUPS js.jobs'], 'OK groups end');
      return lines[0].includes('inflight=0') && lines[0].includes('acked=1');
    });
    await assert.rejects(got[1].ack(), BrokerError); // acked already: the broker says so
  });

  test('term dead-letters a message at once, with the reason; nack carries one too', async () => {
    const got = [];
    const outcomes = [];
    await client.subscribeGroup('js.poison', 'workers', async (m) => {
      got.push(m);
      if (m.text === 'poison') outcomes.push(await m.term('bad input:\n"x"'));
      else outcomes.push(await m.nack(0, 'db down'));
    });
    await client.publish('js.poison', 'poison');
    await client.publish('js.poison', 'flaky');
    await eventually(() => outcomes.length >= 2);
    const lines = await rawCommand(broker.port, ['DLQ js.poison'], 'OK dlq end');
    const letter = JSON.parse(lines[0].split(' ').slice(3).join(' '));
    assert.equal(letter.msg, 'poison');
    assert.equal(letter.reason, 'terminated');
    assert.equal(letter.error, 'bad input: "x"');
    assert.equal(got.filter((m) => m.text === 'poison').length, 1, 'never redelivered');
    await assert.rejects(got[0].term(' \n '), { code: 'invalid_request' });
    await assert.rejects(got[0].term('again'), BrokerError); // not held any more
  });

  test('fanout and a group on one topic need two clients', async () => {
    await client.subscribe('js.both', () => {});
    await assert.rejects(client.subscribeGroup('js.both', 'g', () => {}), { code: 'ambiguous_subscription' });
    await assert.rejects(client.subscribeGroup('js.*', 'g', () => {}), { code: 'ambiguous_subscription' });
    await client.unsubscribe('js.both');
    await client.subscribeGroup('js.both', 'g', () => {});
    await client.unsubscribe('js.both', 'g');
  });

  test('a handler that throws or rejects is reported, and delivery goes on', async () => {
    const errors = [];
    const failing = (err) => errors.push(err.message);
    client.on('handlerError', failing);
    let n = 0;
    await client.subscribe('js.throw', async (m) => {
      n += 1;
      throw new Error(`bad ${m.text}`);
    });
    await client.publish('js.throw', 'a');
    await client.publish('js.throw', 'b');
    await eventually(() => errors.length === 2);
    client.off('handlerError', failing);
    assert.deepEqual(errors, ['bad a', 'bad b']);
    assert.equal(n, 2);
  });

  test('fanout messages cannot be acked', async () => {
    const got = [];
    await client.subscribe('js.noack', (m) => got.push(m));
    await client.publish('js.noack', 'x');
    await eventually(() => got.length === 1);
    await assert.rejects(got[0].ack(), { code: 'not_in_group' });
  });
});

test('heartbeats keep a quiet group member alive past --heartbeat-timeout', async () => {
  const broker = await startBroker(['--heartbeat-timeout', '0.8']);
  const client = new Client({ port: broker.port, heartbeatIntervalMs: 100 });
  const silent = new Client({ port: broker.port, heartbeatIntervalMs: 0, reconnect: false });
  try {
    await client.connect();
    await silent.connect();
    await client.subscribeGroup('js.hb', 'alive', () => {});
    await silent.subscribeGroup('js.hb', 'quiet', () => {});
    const lost = new Promise((resolve) => silent.once('disconnected', resolve));
    assert.ok((await lost) instanceof ConnectionLost); // the broker declared it dead
    await new Promise((r) => setTimeout(r, 1000));
    const lines = await rawCommand(broker.port, ['GROUPS js.hb'], 'OK groups end');
    assert.match(lines.find((l) => l.includes(' alive ')), /members=1/);
    assert.match(lines.find((l) => l.includes(' quiet ')), /members=0/);
  } finally {
    await client.close();
    await silent.close();
    await broker.cleanup();
  }
});

test('after kill -9 and a restart the client reconnects, fanout resumes after the last offset, groups re-join', async () => {
  const broker = await startBroker(FAST);
  const client = new Client({ port: broker.port, backoff: new Backoff({ baseMs: 50, capMs: 200 }) });
  const events = [];
  try {
    await client.connect();
    for (const name of ['disconnected', 'reconnecting', 'connected']) client.on(name, () => events.push(name));
    const fan = [];
    const jobs = [];
    await client.subscribe('js.r', (m) => fan.push(m.offset));
    await client.subscribeGroup('js.rjobs', 'w', (m) => {
      jobs.push(m.text);
      m.ack().catch(() => {});
    });
    await client.publish('js.r', 'one');
    await client.publish('js.r', 'two');
    await eventually(() => fan.length === 2);
    await broker.stop('SIGKILL');
    await broker.start(); // same port, same data
    // Published while the client is still away: fanout must replay these on re-join.
    await rawCommand(broker.port, ['PUB js.r three', 'PUB js.r four', 'PUB js.rjobs job', 'PING'], 'OK pong');
    await eventually(() => fan.length === 4 && jobs.length === 1);
    await client.publish('js.r', 'five');
    await eventually(() => fan.length === 5);
    assert.deepEqual(fan, [1, 2, 3, 4, 5]);
    assert.deepEqual(jobs, ['job']);
    assert.deepEqual(events.slice(0, 2), ['disconnected', 'reconnecting']);
    assert.ok(events.includes('connected'));
  } finally {
    await client.close();
    await broker.cleanup();
  }
});

test('graceful shutdown: the pushed ERR is not taken as a reply, and a message held across it is redelivered', async () => {
  const broker = await startBroker(FAST);
  const client = new Client({
    port: broker.port,
    backoff: new Backoff({ baseMs: 50, capMs: 200 }),
    requestTimeoutMs: 500,
  });
  const serverErrors = [];
  client.on('serverError', (err) => serverErrors.push(err.reason));
  try {
    await client.connect();
    const held = [];
    await client.subscribeGroup('js.g', 'w', (m) => held.push(m));
    await client.publish('js.g', 'job');
    await eventually(() => held.length === 1);
    await broker.stop('SIGTERM');
    await eventually(() => serverErrors.length > 0);
    assert.deepEqual(serverErrors, ['server shutting down']);
    await assert.rejects(client.ping(), ConnectionLost); // no broker yet: times out or fails
    await broker.start();
    await eventually(() => held.length === 2, 10_000);
    await assert.rejects(held[0].ack(), ConnectionLost); // its id died with the old connection
    await held[1].ack();
    assert.equal(held[1].id, held[0].id);
  } finally {
    await client.close();
    await broker.cleanup();
  }
});

test('connect fails clearly when nothing listens', async () => {
  const gone = new BrokerProcess();
  await gone.start();
  const port = gone.port;
  await gone.cleanup();
  await assert.rejects(new Client({ port }).connect(), ConnectionLost);
});

test('with a token the client authenticates on connect, and a bad token fails connect', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'linemq-js-auth-'));
  const users = path.join(dir, 'users.toml');
  const hash = createHash('sha256').update('s3cret').digest('hex');
  writeFileSync(users, `[[users]]\nname = "js"\ntoken_sha256 = "${hash}"\npublish = ["js.>"]\nsubscribe = ["js.>"]\n`);
  const broker = await startBroker(['--auth-file', users]);
  const client = new Client({ port: broker.port, token: 's3cret' });
  try {
    await client.connect();
    await client.publish('js.auth', 'hi');
    await assert.rejects(client.publish('other', 'hi'), { reason: 'permission denied' });
    await assert.rejects(new Client({ port: broker.port, token: 'wrong' }).connect(), { reason: 'auth failed' });
  } finally {
    await client.close();
    await broker.cleanup();
    rmSync(dir, { recursive: true, force: true });
  }
});
