// STATUS, DELETE, PURGE of one letter, CLEAN, TOUCH progress=, SUB ordering=fifo and the worker,
// against a real broker.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { Client, NotFound, RetryLater, Terminate } from '../linemq.js';
import { eventually, rawCommand, startBroker } from './broker.js';

// No retries: a NACK dead-letters at once, so each failure's reason is in a letter.
const ARGS = ['--ack-timeout', '30', '--max-retries', '0', '--segment-bytes', '4096', '--max-inflight', '10'];

async function letters(port, topic) {
  const lines = await rawCommand(port, [`DLQ ${topic}`], 'OK dlq end');
  return lines.slice(0, -1).map((line) => JSON.parse(line.split(' ').slice(3).join(' ')));
}

describe('issue-26 verbs', () => {
  let broker;
  let client;

  before(async () => {
    broker = await startBroker(ARGS);
    client = new Client({ port: broker.port });
    await client.connect();
  });

  after(async () => {
    await client.close();
    await broker.cleanup();
  });

  test('status shows a held message with its progress, then done; unknown ones are NotFound', async () => {
    const held = [];
    await client.subscribeGroup('js.st', 'workers', (m) => held.push(m));
    await client.publish('js.st', 'resize image');
    await eventually(() => held.length === 1);
    const [msg] = held;
    await msg.touch({ progress: 50, note: 'half  done\n100%' });
    let found = await client.status('js.st', msg.id);
    assert.deepEqual([found.topic, found.offset, found.id], ['js.st', 1, msg.id]);
    assert.ok(found.ts > 1e9);
    const [place] = found.groups;
    assert.deepEqual(
      [place.group, place.state, place.attempts, place.progress, place.note],
      ['workers', 'inflight', 1, 50, 'half done 100%'],
    );
    await msg.touch({ note: 'almost' });
    assert.equal((await client.status('js.st', 1)).groups[0].note, 'almost');
    await assert.rejects(msg.touch({ progress: 101 }), { code: 'invalid_request' });
    await assert.rejects(msg.touch({ note: '12 left' }), { code: 'invalid_request' });
    await msg.touch();
    await msg.ack();
    found = await client.status('js.st', 1);
    assert.equal(found.groups[0].state, 'done');
    await assert.rejects(client.status('js.st', 7), NotFound);
    await assert.rejects(client.status('js.nowhere', 1), { code: 'not_found', reason: 'no topic js.nowhere' });
    await client.unsubscribe('js.st', 'workers');
  });

  test('deleteGroup refuses a group with members unless forced, and is not re-joined after', async () => {
    await client.subscribeGroup('js.del', 'wrokers', () => {});
    await assert.rejects(client.deleteGroup('js.del', 'wrokers'), { reason: 'group has members' });
    await client.deleteGroup('js.del', 'wrokers', { force: true });
    assert.deepEqual(await rawCommand(broker.port, ['GROUPS js.del'], 'OK groups end'), ['OK groups end']);
    assert.ok(![...client._subs.values()].some((s) => s.topic === 'js.del'));
    await assert.rejects(client.deleteGroup('js.del', 'wrokers'), NotFound);
  });

  test('deleteTopic deletes a topic for good; with subscribers only when forced', async () => {
    const other = new Client({ port: broker.port });
    await other.connect();
    try {
      await other.subscribe('js.gone', () => {});
      await client.publish('js.gone', 'x');
      await assert.rejects(client.deleteTopic('js.gone'), { reason: 'topic has subscribers' });
      await client.deleteTopic('js.gone', { force: true });
      assert.deepEqual(await client.history('js.gone', 5), []);
      await assert.rejects(client.deleteTopic('js.gone'), NotFound);
    } finally {
      await other.close();
    }
  });

  test('purgeDlq removes one letter by message id, or all', async () => {
    const held = [];
    await client.subscribeGroup('js.pg', 'w', (m) => held.push(m));
    for (const text of ['a', 'b', 'c']) await client.publish('js.pg', text);
    await eventually(() => held.length === 3);
    for (const m of held) await m.nack();
    await eventually(async () => (await letters(broker.port, 'js.pg')).length === 3);
    assert.equal(await client.purgeDlq('js.pg', held[0].id), 1);
    assert.deepEqual((await letters(broker.port, 'js.pg')).map((l) => l.msg), ['b', 'c']);
    await assert.rejects(client.purgeDlq('js.pg', held[0].id), NotFound);
    assert.equal(await client.purgeDlq('js.pg'), 3); // every record of js.pg.dlq: the removed one's too
    assert.deepEqual(await letters(broker.port, 'js.pg'), []);
    await client.unsubscribe('js.pg', 'w');
  });

  test('clean drops whole segments every group finished', async () => {
    const held = [];
    await client.subscribeGroup('js.cl', 'w', async (m) => {
      held.push(m);
      await m.ack();
    });
    for (let i = 0; i < 60; i++) await client.publish('js.cl', `${i} ${'x'.repeat(150)}`);
    await eventually(async () => {
      const [line] = await rawCommand(broker.port, ['GROUPS js.cl'], 'OK groups end');
      return line.includes('acked=60');
    });
    assert.equal(await client.clean('js.cl', { older: '1h' }), 0); // all of it is newer
    const cleaned = await client.clean('js.cl', { keep: 0 });
    assert.ok(cleaned > 0 && cleaned < 60, `cleaned ${cleaned}`);
    assert.equal((await client.history('js.cl', 100))[0].offset, cleaned + 1);
    await assert.rejects(client.clean('js.cl'), { code: 'invalid_request' });
    await assert.rejects(client.clean('js.cl', { older: 'soon' }), { code: 'invalid_request' });
    await client.unsubscribe('js.cl', 'w');
  });

  test("subscribeGroup with ordering 'fifo' makes a FIFO group", async () => {
    await client.subscribeGroup('js.fifo', 'steps', () => {}, { ordering: 'fifo' });
    const lines = await rawCommand(
      broker.port,
      ['SUB js.fifo steps ordering=none'],
      'ERR group steps on js.fifo has ordering=fifo',
    );
    assert.equal(lines.at(-1), 'ERR group steps on js.fifo has ordering=fifo');
    await assert.rejects(client.subscribeGroup('js.fifo2', 'g', () => {}, { ordering: 'random' }), {
      code: 'invalid_request',
    });
    await client.subscribeGroup('js.fifo3', 'g', () => {}, { ordering: 'key' }); // the default, by name
    await client.unsubscribe('js.fifo3', 'g');
    await client.unsubscribe('js.fifo', 'steps');
  });
});

describe('worker', () => {
  let broker;
  let client;

  before(async () => {
    broker = await startBroker(ARGS);
    client = new Client({ port: broker.port });
    await client.connect();
  });

  after(async () => {
    await client.close();
    await broker.cleanup();
  });

  test('acks on success, nacks a throw with its text, terms on Terminate, at most concurrency at once', async () => {
    let running = 0;
    let most = 0;
    const worker = await client.worker('js.work', 'workers', async (msg) => {
      running += 1;
      most = Math.max(most, running);
      await new Promise((r) => setTimeout(r, 20));
      running -= 1;
      if (msg.text === 'broken') throw new TypeError('no such image');
      if (msg.text === 'poison') throw new Terminate('cannot parse');
    }, { concurrency: 2 });
    for (const text of ['a', 'b', 'broken', 'c', 'poison', 'd']) await client.publish('js.work', text);
    await eventually(() => worker.stats.acked + worker.stats.nacked + worker.stats.terminated === 6);
    assert.deepEqual(worker.stats, { acked: 4, nacked: 1, terminated: 1, lost: 0 });
    assert.equal(most, 2);
    const dead = await letters(broker.port, 'js.work');
    assert.deepEqual(
      dead.map((l) => [l.msg, l.reason, l.error]),
      [['broken', 'nacked', 'TypeError: no such image'], ['poison', 'terminated', 'cannot parse']],
    );
    await worker.stop();
    const [line] = await rawCommand(broker.port, ['GROUPS js.work'], 'OK groups end');
    assert.match(line, /members=0 inflight=0 /);
  });

  test('stop drains: running handlers finish and are acked, waiting messages go back unattempted', async () => {
    let release;
    const gate = new Promise((r) => (release = r));
    const started = [];
    const worker = await client.worker('js.drain', 'workers', async (msg) => {
      started.push(msg.text);
      await gate;
    });
    for (const text of ['first', 'second', 'third']) await client.publish('js.drain', text);
    await eventually(() => started.length === 1);
    const stopped = worker.stop();
    setTimeout(release, 50);
    await stopped;
    assert.deepEqual(started, ['first']);
    assert.equal(worker.stats.acked, 1);
    const [line] = await rawCommand(broker.port, ['GROUPS js.drain'], 'OK groups end');
    assert.match(line, /members=0 inflight=0 waiting=2 .*acked=1 dead=0/);
    // Given back with no attempt used: with --max-retries 0 a counted one would be dead now.
    const status = await client.status('js.drain', 2);
    assert.deepEqual([status.groups[0].state, status.groups[0].attempts], ['waiting', 0]);
  });

  test('RetryLater nacks with its delay; a second stop cuts the grace short', async () => {
    const seen = [];
    const worker = await client.worker('js.later', 'workers', async (msg) => {
      seen.push(msg.text);
      if (msg.text === 'later') throw new RetryLater(60, 'not yet');
      await new Promise(() => {}); // never finishes
    }, { concurrency: 2, graceMs: 60_000 });
    await client.publish('js.later', 'later');
    await client.publish('js.later', 'stuck');
    await eventually(() => seen.length === 2 && worker.stats.nacked === 1);
    const stopped = worker.stop();
    worker.stop();
    await stopped;
    assert.equal(worker.stats.acked, 0);
    const dead = await letters(broker.port, 'js.later');
    assert.deepEqual(dead.map((l) => [l.msg, l.error]), [['later', 'not yet']]);
  });
});

test("a worker touches what it holds within the topic's ack timeout (read with POLICY)", async () => {
  // Without touches, with no retries, the slow job and the one queued behind it would be
  // dead letters after 0.6 s.
  const broker = await startBroker(['--ack-timeout', '0.6', '--max-retries', '0']);
  const client = new Client({ port: broker.port });
  try {
    await client.connect();
    const worker = await client.worker('js.slow', 'workers', () => new Promise((r) => setTimeout(r, 1000)));
    await client.publish('js.slow', 'one');
    await client.publish('js.slow', 'two');
    await eventually(() => worker.stats.acked === 2, 5_000);
    assert.deepEqual(await letters(broker.port, 'js.slow'), []);
    await worker.stop();
  } finally {
    await client.close();
    await broker.cleanup();
  }
});
