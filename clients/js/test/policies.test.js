// Per-group policies (POLICY), header filters (SUB … filter=), GROUPS lines and repeatable
// jobs (SCHEDULE, SCHEDULES, UNSCHEDULE), against a real broker.

import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';

import { BrokerError, Client, NotFound } from '../linemq.js';
import { BrokerProcess, eventually, rawCommand } from './broker.js';

const ARGS = [
  '--ack-timeout', '30', '--schedule-min-every', '0.05',
  '--topic-policy', 'js.pol=max_retries:5,backoff:exponential:2s:5m',
];

/** `PUT` with headers on a connection of its own; resolves to the reply line. */
function put(port, topic, text, headers = {}) {
  const payload = Buffer.from(text);
  const options = Object.entries(headers).map(([k, v]) => ` h.${k}=${encodeURIComponent(v)}`).join('');
  return new Promise((resolve, reject) => {
    const socket = net.createConnection({ host: '127.0.0.1', port });
    let data = '';
    socket.setEncoding('utf8');
    socket.on('connect', () => socket.write(`PUT ${topic} ${payload.length}${options}\n${text}\n`));
    socket.on('data', (chunk) => {
      data += chunk;
      const reply = data.split('\n').slice(1).find((l) => l.startsWith('OK') || l.startsWith('ERR'));
      if (reply !== undefined) {
        socket.destroy();
        resolve(reply);
      }
    });
    socket.on('error', reject);
  });
}

describe('policies, filters and schedules', () => {
  let broker;
  let client;

  before(async () => {
    broker = await new BrokerProcess(ARGS).start();
    client = new Client({ port: broker.port, backoff: { delay: () => 20 } });
    await client.connect();
  });

  after(async () => {
    await client.close();
    await broker.cleanup();
  });

  test('groupPolicy and setGroupPolicy read and change one group, all or nothing', async () => {
    await client.subscribeGroup('js.pol', 'workers', () => {});
    const topic = await client.policy('js.pol');
    assert.deepEqual(
      [topic.maxRetries, topic.backoff, topic.ackTimeout, topic.source, topic.rate, topic.nackBackoff],
      [5, 'exponential:2s:5m', 30, 'js.pol', null, true],
    );
    let policy = await client.groupPolicy('js.pol', 'workers');
    assert.equal(policy.group, 'workers');
    assert.deepEqual(policy.overrides, []);

    policy = await client.setGroupPolicy('js.pol', 'workers', {
      rate: '100/1s', maxInflight: 20, backoff: 'fixed:5s', ackTimeout: 0.5, nackBackoff: false,
    });
    assert.deepEqual(
      [policy.rate, policy.maxInflight, policy.backoff, policy.ackTimeout, policy.nackBackoff, policy.maxRetries],
      ['100/1s', 20, 'fixed:5s', 0.5, false, 5],
    );
    assert.deepEqual(policy.overrides, ['backoff', 'ackTimeout', 'maxInflight', 'rate', 'nackBackoff']);
    assert.equal(policy.fields.source, 'js.pol');

    await assert.rejects(client.setGroupPolicy('js.pol', 'workers', { rate: 'fast', maxInflight: 1 }), BrokerError);
    assert.equal((await client.groupPolicy('js.pol', 'workers')).maxInflight, 20); // all or nothing
    await assert.rejects(client.setGroupPolicy('js.pol', 'workers', { speed: 1 }), { code: 'invalid_request' });
    await assert.rejects(client.setGroupPolicy('js.pol', 'workers', {}), { code: 'invalid_request' });
    await assert.rejects(client.groupPolicy('js.pol', 'nobody'), NotFound);

    policy = await client.setGroupPolicy('js.pol', 'workers', { maxInflight: null, ordering: 'fifo' });
    assert.equal(policy.maxInflight, 5);
    assert.equal(policy.ordering, 'fifo');
    assert.ok(!policy.overrides.includes('maxInflight'));

    // GROUPS: counts as numbers, the policy it ends with as text.
    const [line] = await client.groups('js.pol');
    assert.equal(line.group, 'workers');
    assert.equal(line.stats.members, 1);
    assert.equal(line.stats.next_offset, 1);
    assert.deepEqual(line.settings, {
      max_retries: '5', backoff: 'fixed:5s', ack_timeout: '500ms', max_inflight: '5',
      ordering: 'fifo', rate: '100/1s', nack_backoff: 'off',
    });
    await client.unsubscribe('js.pol', 'workers');
  });

  test('a filtered group gets only matching messages, and re-joins with its filter', async () => {
    const got = [];
    await client.subscribeGroup('js.f', 'mail', async (msg) => {
      got.push(msg.text);
      await msg.ack();
    }, { filter: { channel: ['email', 'sms text'] } });
    assert.match(await put(broker.port, 'js.f', 'push one', { channel: 'push' }), /^OK published 1 /);
    assert.match(await put(broker.port, 'js.f', 'sms one', { channel: 'sms text' }), /^OK published 2 /);
    await eventually(() => got.length === 1);
    assert.deepEqual(got, ['sms one']);
    let [group] = await client.groups('js.f');
    assert.equal(group.stats.filtered, 1);

    // The broker comes back without its data: the re-join makes the group again, filter and all.
    const back = new Promise((resolve) => client.once('connected', resolve));
    await broker.stop('SIGKILL');
    rmSync(broker.dataDir, { recursive: true, force: true });
    await broker.start();
    await back;
    assert.match(await put(broker.port, 'js.f', 'push two', { channel: 'push' }), /^OK published 1 /);
    assert.match(await put(broker.port, 'js.f', 'email two', { channel: 'email' }), /^OK published 2 /);
    await eventually(() => got.length === 2);
    assert.deepEqual(got, ['sms one', 'email two']);
    [group] = await client.groups('js.f');
    assert.equal(group.stats.filtered, 1);
    const refused = 'ERR group mail on js.f has filter=h.channel=email|sms%20text';
    assert.deepEqual(await rawCommand(broker.port, ['SUB js.f mail filter=h.channel=push'], refused), [refused]);
    await client.unsubscribe('js.f', 'mail');

    await assert.rejects(
      client.subscribeGroup('js.f2', 'g', () => {}, { filter: 'h.a=b c' }),
      { code: 'invalid_request' },
    );
    await assert.rejects(client.subscribeGroup('js.f2', 'g', () => {}, { filter: 'nonsense' }), BrokerError);
  });

  test('schedule, schedules and unschedule', async () => {
    const seen = [];
    await client.subscribe('js.sched', (msg) => seen.push(msg.text));
    const first = await client.schedule('js.sched', 'beat', 'alive', {
      every: '100ms', key: 'k1', priority: 'high', headers: { source: 'js test' },
    });
    assert.ok(first > Date.now() / 1000 - 1);
    const nightly = await client.schedule('js.sched', 'nightly', Buffer.from('a\nb'), {
      cron: '0 2 * * *', tz: 'Europe/Paris', ttl: '1h', maxRetries: 2,
    });
    assert.ok(nightly > first);
    await eventually(() => seen.length >= 1);
    assert.equal(seen[0], 'alive');

    let jobs = await client.schedules('js.sched');
    assert.deepEqual(jobs.map((j) => j.name), ['beat', 'nightly']);
    const [beat, cron] = jobs;
    assert.deepEqual(
      [beat.every, beat.cron, beat.tz, beat.bytes, beat.options],
      ['100ms', null, null, 5, ['key=k1', 'priority=high', 'h.source=js%20test']],
    );
    await eventually(async () => (await client.schedules('js.sched'))[0].fired >= 1);
    jobs = await client.schedules();
    assert.ok(jobs[0].last > 0 && jobs[0].next > jobs[0].last);
    assert.deepEqual(
      [cron.every, cron.cron, cron.tz, cron.last, cron.fired, cron.bytes, cron.options],
      [null, '0 2 * * *', 'Europe/Paris', null, 0, 3, ['ttl=1h', 'max_retries=2']],
    );
    assert.equal(cron.next, nightly);

    await client.unschedule('js.sched', 'beat');
    await assert.rejects(client.unschedule('js.sched', 'beat'), NotFound);
    assert.deepEqual((await client.schedules('js.sched')).map((j) => j.name), ['nightly']);
    await assert.rejects(client.schedule('js.sched', 'bad', 'x', { cron: '0 25 * * *' }), BrokerError);
    await assert.rejects(client.schedule('js.sched', 'bad', 'x', {}), { code: 'invalid_request' });
    await assert.rejects(client.schedule('js.sched', 'bad', 'x', { every: '1s', tz: 'UTC' }), { code: 'invalid_request' });
    await client.ping(); // a refused SCHEDULE left the connection in step
    await client.unsubscribe('js.sched');
  });
});
