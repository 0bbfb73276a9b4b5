// The pure parsers of protocol.js: lines a newer broker may send still parse.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { filterTests, parseGroupLine, parsePolicy, parseScheduleLine, settingWord } from '../protocol.js';

test('a GROUP line: counts as numbers, policy and unknown non-numeric keys as text', () => {
  const line = 'GROUP jobs mail members=1 inflight=0 waiting=0 lag=0 acked=1 dead=0 next_offset=4 paused=0 '
    + 'filtered=2 max_retries=3 backoff=exponential:1s:1m ack_timeout=30s max_inflight=5 ordering=key '
    + 'rate=none nack_backoff=on mode=turbo later=7';
  const group = parseGroupLine(line);
  assert.deepEqual([group.topic, group.group], ['jobs', 'mail']);
  assert.deepEqual(group.stats, {
    members: 1, inflight: 0, waiting: 0, lag: 0, acked: 1, dead: 0, next_offset: 4, paused: 0, filtered: 2, later: 7,
  });
  assert.deepEqual(group.settings, {
    max_retries: '3', backoff: 'exponential:1s:1m', ack_timeout: '30s', max_inflight: '5', ordering: 'key',
    rate: 'none', nack_backoff: 'on', mode: 'turbo',
  });
  assert.throws(() => parseGroupLine('GROUP jobs mail lag=lots'), { code: 'protocol_error' });
  assert.throws(() => parseGroupLine('GROUP jobs mail lag'), { code: 'protocol_error' });
});

test('a POLICY line of a topic and of a group', () => {
  const topic = parsePolicy(['POLICY jobs max_retries=5 backoff=fixed:5s ack_timeout=500ms max_inflight=50 source=default']);
  assert.deepEqual(
    [topic.topic, topic.group, topic.maxRetries, topic.ackTimeout, topic.ordering, topic.rate, topic.nackBackoff],
    ['jobs', undefined, 5, 0.5, 'key', null, false], // an older broker's line: what it did
  );
  const group = parsePolicy([
    'POLICY jobs w max_retries=5 backoff=fixed:5s ack_timeout=1m max_inflight=5 ordering=fifo rate=5/1s '
      + 'nack_backoff=on source=jobs overrides=max_inflight,rate',
  ]);
  assert.deepEqual([group.group, group.ackTimeout, group.rate, group.overrides], ['w', 60, '5/1s', ['maxInflight', 'rate']]);
});

test('a SCHEDULE line with quoted cron and tz, options and a field this client does not know', () => {
  const job = parseScheduleLine(
    'SCHEDULE r nightly cron="0 2 * * *" tz="Europe/Paris" next=1795489200.0 last=- fired=0 bytes=12 '
      + 'owner=ops key=nightly h.x=a%20b',
  );
  assert.deepEqual(job, {
    topic: 'r', name: 'nightly', every: null, cron: '0 2 * * *', tz: 'Europe/Paris', next: 1795489200, last: null,
    fired: 0, bytes: 12, options: ['key=nightly', 'h.x=a%20b'], fields: { owner: 'ops' },
  });
});

test('setting words and filter tests', () => {
  assert.equal(settingWord('maxRetries', 4), 'max_retries=4');
  assert.equal(settingWord('ack_timeout', 2.5), 'ack_timeout=2.5s');
  assert.equal(settingWord('nackBackoff', false), 'nack_backoff=off');
  assert.equal(settingWord('rate', null), 'rate=default');
  assert.throws(() => settingWord('backoff', 'fixed 5s'), { code: 'invalid_request' });
  assert.throws(() => settingWord('maxRetries', true), { code: 'invalid_request' });
  assert.deepEqual(filterTests({ type: ['a b', 'c|d'], x: 'y' }), ['h.type=a%20b|c%7Cd', 'h.x=y']);
  assert.deepEqual(filterTests('!h.debug'), ['!h.debug']);
  assert.throws(() => filterTests([]), { code: 'invalid_request' });
  assert.throws(() => filterTests({ 'bad name': 'v' }), { code: 'invalid_request' });
});
