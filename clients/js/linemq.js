// A dependency-free linemq client for Node.js 18+, written from protocol.md.
// One TCP connection, replies matched to requests in order, MSG lines routed to
// subscriptions, heartbeats while in a group, and reconnection with backoff that
// re-joins every subscription (fanout resumes after the last offset seen). Given several
// servers, it starts at a random one and after a lost connection tries the next one first.

import net from 'node:net';
import { EventEmitter } from 'node:events';

import { BrokerError, brokerError, ConnectionLost, LinemqError } from './errors.js';
import {
  count, durationSeconds, durationText, filterTests, oneLine, parseGroupLine, parsePolicy, parseScheduleLine,
  parseStatus, progressWords, scheduleWords, settingWord,
} from './protocol.js';
import { formatAddress, parseServers, rotation } from './servers.js';
import { Worker } from './worker.js';

export { BrokerError, ConnectionLost, LinemqError, NotFound } from './errors.js';
export { RetryLater, Terminate, Worker } from './worker.js';
export { formatAddress, parseServers, rotation } from './servers.js';

export const MAX_HEARTBEAT_INTERVAL_MS = 10_000;
// Lines the broker pushes on its own: they are never the reply to a command.
const UNSOLICITED = new Set(['server shutting down', 'auth timeout', 'too many connections']);
const NAME = /^[A-Za-z0-9_.-]{1,200}$/;

/** Exponential backoff with full jitter: a pure policy, tested without sleeping. */
export class Backoff {
  constructor({ baseMs = 100, capMs = 5_000, random = Math.random } = {}) {
    this.baseMs = baseMs;
    this.capMs = capMs;
    this.random = random;
  }

  /** Milliseconds to wait before attempt `failures` + 1 (failures counts from 1). */
  delay(failures) {
    const ceiling = Math.min(this.capMs, this.baseMs * 2 ** Math.max(0, failures - 1));
    return Math.round(ceiling / 2 + (this.random() * ceiling) / 2);
  }
}

/** One delivered message; group messages can be acked, nacked, terminated and touched. */
export class Message {
  constructor(client, generation, topic, id, offset, ts, text, group) {
    Object.assign(this, { topic, id, offset, ts, text, group });
    Object.defineProperty(this, '_client', { value: client });
    Object.defineProperty(this, '_generation', { value: generation });
  }

  ack() {
    return this._settle(`ACK ${this.id}`);
  }

  /** Redeliver now, or after `delaySeconds`; `reason` (an error text) is kept with the attempt. */
  nack(delaySeconds, reason) {
    const line = delaySeconds === undefined ? `NACK ${this.id}` : `NACK ${this.id} ${delaySeconds}`;
    return this._settleWith(line, 'reason=', reason);
  }

  /** Fail it for good: dead-lettered now (no retries left), with `reason` as its error text. */
  term(reason) {
    return this._settleWith(`TERM ${this.id}`, '', reason);
  }

  _settleWith(line, prefix, reason) {
    if (reason === undefined) return this._settle(line);
    const text = oneLine(reason);
    if (text === undefined) {
      return Promise.reject(new LinemqError('reason must not be empty', 'invalid_request'));
    }
    return this._settle(`${line} ${prefix}${text}`);
  }

  /**
   * Restart the ack timer. With `{progress, note}` also report how far the job is (a number
   * from 0 to 100, and/or a note): `STATUS` shows it while this delivery is out.
   */
  touch(report) {
    if (report === undefined) return this._settle(`TOUCH ${this.id}`);
    let words;
    try {
      words = progressWords(report);
    } catch (err) {
      return Promise.reject(err);
    }
    return this._settle(`TOUCH ${this.id} progress=${words}`);
  }

  _settle(line) {
    if (this.group === undefined) {
      return Promise.reject(new LinemqError('fanout messages are not acknowledged', 'not_in_group'));
    }
    if (this._generation !== this._client._generation) {
      // Ids belong to the connection they came on; the broker redelivers this one.
      return Promise.reject(new ConnectionLost(`${this.id} came on a connection that is gone`));
    }
    return this._client._request(line);
  }
}

export class Client extends EventEmitter {
  /**
   * Options: host, port, or servers ('node1:8888,node2:8888' or a list of such addresses;
   * not both), token (sent as AUTH), reconnect (default true), backoff (a Backoff, waited
   * between rounds over the servers), requestTimeoutMs (10 s; a timed-out connection is
   * dropped and rebuilt), heartbeatIntervalMs (keep it well under the broker's
   * --heartbeat-timeout, default 10 s).
   */
  constructor(options = {}) {
    super();
    if (options.servers !== undefined && (options.host !== undefined || options.port !== undefined)) {
      throw new LinemqError('give host and port, or servers, not both', 'invalid_request');
    }
    this.servers = options.servers === undefined
      ? [{ host: options.host ?? '127.0.0.1', port: options.port ?? 8888 }]
      : parseServers(options.servers);
    /** The node of the current connection, or null while not connected. */
    this.server = null;
    this._next = Math.floor(Math.random() * this.servers.length); // spread clients over nodes
    this.token = options.token;
    this.reconnect = options.reconnect ?? true;
    this.backoff = options.backoff ?? new Backoff();
    this.requestTimeoutMs = options.requestTimeoutMs ?? 10_000;
    this.heartbeatIntervalMs = options.heartbeatIntervalMs ?? MAX_HEARTBEAT_INTERVAL_MS;
    this._socket = null;
    this._pending = [];
    this._subs = new Map();
    this._generation = 0;
    this._closed = false;
    this._connected = null;
    this._heartbeat = null;
  }

  /** The host connected to; when not connected, the one tried next. */
  get host() {
    return (this.server ?? this.servers[this._next]).host;
  }

  get port() {
    return (this.server ?? this.servers[this._next]).port;
  }

  /** Open the connection (and AUTH); rejects if no server takes it (one attempt each). */
  async connect() {
    if (this._connected) return this._connected;
    this._closed = false;
    this._connected = this._openAny();
    try {
      await this._connected;
    } catch (err) {
      this._connected = null;
      throw err;
    }
  }

  async ping() {
    await this._request('PING');
  }

  /** Resolves once the broker has answered `OK published` (the message is written). */
  async publish(topic, text) {
    if (/[\r\n]/.test(text)) {
      throw new LinemqError('a PUB message is one line; it cannot hold CR or LF', 'invalid_message');
    }
    await this._request(`PUB ${topic} ${text}`);
  }

  /** The last n messages of a topic, oldest first, as Message objects. */
  async history(topic, n) {
    const lines = await this._request(`HISTORY ${topic} ${n}`, 'OK history end');
    return lines.map((line) => this._message(line.slice('HISTORY '.length), undefined));
  }

  /**
   * Fanout: `onMessage(msg)` gets every message published from now on, in offset order,
   * also across reconnects (it resumes after the last offset it saw). A pattern
   * (`orders.*`) works too, but the broker has no `from=` for patterns: after a reconnect
   * it gets what is published from then on.
   */
  async subscribe(topic, onMessage) {
    const sub = { topic, group: undefined, onMessage, next: undefined };
    this._refuseOverlap(sub);
    if (NAME.test(topic)) {
      // Start from the offset after the last one stored: `SUB … from=` replays whatever is
      // published between this HISTORY and the SUB, so nothing falls in between.
      const history = await this._request(`HISTORY ${topic} 1`, 'OK history end');
      sub.next = history.length ? this._message(history[0].slice(8), undefined).offset + 1 : 1;
    }
    this._subs.set(key(topic), sub);
    try {
      await this._join(sub);
    } catch (err) {
      this._subs.delete(key(topic));
      throw err;
    }
    return () => this.unsubscribe(topic);
  }

  /**
   * Join a consumer group; each message must be `ack()`ed or `nack()`ed by `onMessage`.
   * `{ordering: 'fifo'}` makes a group this creates strictly FIFO (protocol.md); `{filter}`
   * (a test like 'h.type=email|sms', a list of them, or `{type: ['email', 'sms']}`) makes it
   * get only messages whose headers pass. Both are sent again on every re-join.
   */
  async subscribeGroup(topic, group, onMessage, { ordering, filter } = {}) {
    if (ordering !== undefined && !['fifo', 'key', 'none'].includes(ordering)) {
      throw new LinemqError('ordering must be fifo, key or none', 'invalid_request');
    }
    const tests = filter === undefined ? undefined : filterTests(filter);
    const sub = { topic, group, onMessage, ordering, filter: tests };
    this._refuseOverlap(sub);
    this._subs.set(key(topic, group), sub);
    try {
      await this._join(sub);
    } catch (err) {
      this._subs.delete(key(topic, group));
      throw err;
    }
    this._startHeartbeat();
    return () => this.unsubscribe(topic, group);
  }

  async unsubscribe(topic, group) {
    this._subs.delete(key(topic, group));
    if (![...this._subs.values()].some((s) => s.group !== undefined)) this._stopHeartbeat();
    await this._request(group === undefined ? `UNSUB ${topic}` : `UNSUB ${topic} ${group}`);
  }

  /**
   * Where a message (its id, or a number: its offset) is in each group of `topic` (`STATUS`).
   * Rejects with `NotFound` for an unknown topic or message.
   */
  async status(topic, message) {
    const what = String(message);
    if (!what || /\s/.test(what) || (typeof message === 'number' && !(Number.isInteger(message) && message > 0))) {
      throw new LinemqError('give a message id or a positive offset', 'invalid_request');
    }
    return parseStatus(await this._request(`STATUS ${topic} ${what}`, 'OK status end'));
  }

  /**
   * Delete a consumer group for good (`DELETE`; `topic` may be a wildcard). The broker refuses
   * a group with members (`BrokerError: group has members`) unless `{force: true}`.
   */
  async deleteGroup(topic, group, { force = false } = {}) {
    await this._request(`DELETE ${topic} ${group}${force ? ' force' : ''}`);
    this._forget((sub) => sub.topic === topic && sub.group === group);
  }

  /** Delete a topic, its dead letters and every group of both, for good (`DELETE`). */
  async deleteTopic(topic, { force = false } = {}) {
    await this._request(`DELETE ${topic}${force ? ' force=true' : ''}`);
    this._forget((sub) => sub.topic === topic || sub.topic === `${topic}.dlq`);
  }

  /**
   * Remove every dead letter of `topic` (`PURGE <topic>.dlq`), or one: `letter` is its dlq
   * offset, its dlq id, or the original message's id. Resolves to how many went.
   */
  async purgeDlq(topic, letter) {
    if (letter !== undefined && (String(letter) === '' || /\s/.test(String(letter)))) {
      throw new LinemqError('a dead letter id must be non-empty and without whitespace', 'invalid_request');
    }
    const tail = letter === undefined ? '' : ` ${letter}`;
    return count(await this._request(`PURGE ${topic}.dlq${tail}`), 'purged');
  }

  /**
   * Delete `topic`'s oldest whole segments that every group has finished (`CLEAN`), those
   * `older` than a duration (seconds, or '7d') and/or beyond the newest `keep` messages.
   * Resolves to how many messages went.
   */
  async clean(topic, { older, keep } = {}) {
    const words = [`CLEAN ${topic}`];
    if (older === undefined && keep === undefined) {
      throw new LinemqError('give older, keep, or both', 'invalid_request');
    }
    if (older !== undefined) words.push(`older=${durationText(older)}`);
    if (keep !== undefined) {
      if (!(Number.isInteger(keep) && keep >= 0)) {
        throw new LinemqError('keep must be a non-negative integer', 'invalid_request');
      }
      words.push(`keep=${keep}`);
    }
    return count(await this._request(words.join(' ')), 'cleaned');
  }

  /**
   * A `Worker` running `await handler(msg)` for each message of `group`, at most
   * `concurrency` at once; resolves once it has joined the group (see worker.js).
   */
  async worker(topic, group, handler, options = {}) {
    const worker = new Worker(this, topic, group, handler, options);
    await worker.start();
    return worker;
  }

  /** Consumer groups of `topic` (`GROUPS`): `{topic, group, stats, settings}` each. */
  async groups(topic) {
    const lines = await this._request(`GROUPS ${topic}`, 'OK groups end');
    return lines.filter((line) => line.startsWith('GROUP ')).map(parseGroupLine);
  }

  /** The policy `topic`'s groups get (`POLICY <topic>`): its `--topic-policy`, or the flags. */
  async policy(topic) {
    return parsePolicy(await this._request(`POLICY ${topic}`, 'OK policy end'));
  }

  /** The policy `group` uses (`POLICY <topic> <group>`); `overrides` names its own settings. */
  async groupPolicy(topic, group) {
    return parsePolicy(await this._request(`POLICY ${topic} ${group}`, 'OK policy end'));
  }

  /**
   * Set settings of one group, durably and at once (manage permission), e.g.
   * `{rate: '100/1s', maxRetries: 10, backoff: 'fixed:5s', ackTimeout: 30, nackBackoff: false}`;
   * `null` clears one (its topic's applies again). All or nothing: a bad value rejects with
   * `BrokerError` and changes nothing. Resolves to the group's policy after it.
   */
  async setGroupPolicy(topic, group, settings) {
    const pairs = Object.entries(settings ?? {}).map(([name, value]) => settingWord(name, value));
    if (!pairs.length) throw new LinemqError('give at least one setting', 'invalid_request');
    await this._request(`POLICY ${topic} ${group} ${pairs.join(' ')}`);
    return this.groupPolicy(topic, group);
  }

  /**
   * Make (or replace) the repeatable job `name` on `topic` (`SCHEDULE`): the broker publishes
   * `payload` (a string or a Buffer) every `every` (seconds, or '5m') or at each `cron` time
   * (UTC, or the zone `tz`), with the PUT options given: `key`, `priority`, `delay`, `ttl`,
   * `maxRetries`, `headers` ({name: value}). Resolves to the first due time (epoch seconds).
   */
  async schedule(topic, name, payload, options = {}) {
    const data = Buffer.isBuffer(payload) ? payload : Buffer.from(String(payload), 'utf8');
    const words = ['SCHEDULE', topic, name, String(data.length), ...scheduleWords(options)];
    const okLine = await this._request(Buffer.concat([Buffer.from(`${words.join(' ')}\n`), data]));
    const got = /^OK scheduled \S+ \S+ next=(\S+)$/.exec(okLine);
    if (!got) throw new LinemqError(`unexpected reply: ${okLine}`, 'protocol_error');
    return Number(got[1]);
  }

  /** The repeatable jobs (of `topic`), sorted by topic and name (`SCHEDULES`). */
  async schedules(topic) {
    const lines = await this._request(topic === undefined ? 'SCHEDULES' : `SCHEDULES ${topic}`, 'OK schedules end');
    return lines.filter((line) => line.startsWith('SCHEDULE ')).map(parseScheduleLine);
  }

  /** Remove a repeatable job (`UNSCHEDULE`); `NotFound` if `topic` has none of that name. */
  async unschedule(topic, name) {
    await this._request(`UNSCHEDULE ${topic} ${name}`);
  }

  /** The topic's ack timeout in seconds (`POLICY`), or undefined if the broker does not say. */
  async _ackTimeout(topic) {
    try {
      const [line] = await this._request(`POLICY ${topic}`, 'OK policy end');
      const value = /(?:^| )ack_timeout=(\S+)/.exec(line ?? '')?.[1];
      return value === undefined ? undefined : durationSeconds(value);
    } catch (err) {
      if (err instanceof BrokerError) return undefined; // a broker without POLICY
      throw err;
    }
  }

  /** Subscriptions the broker no longer has (deleted): never re-joined after a reconnect. */
  _forget(gone) {
    for (const [k, sub] of this._subs) if (gone(sub)) this._subs.delete(k);
    if (![...this._subs.values()].some((s) => s.group !== undefined)) this._stopHeartbeat();
  }

  /**
   * A MSG line does not say whether it came through fanout or a group, so one connection
   * cannot hold both on one topic and route them: that takes a second Client.
   */
  _refuseOverlap(sub) {
    for (const other of this._subs.values()) {
      const kinds = (other.group === undefined) !== (sub.group === undefined);
      if (kinds && (other.topic === sub.topic || matches(other.topic, sub.topic) || matches(sub.topic, other.topic))) {
        throw new LinemqError(
          `${sub.topic} overlaps ${other.topic}: use one Client for fanout and another for groups`,
          'ambiguous_subscription',
        );
      }
    }
  }

  /** Say QUIT and stop reconnecting. */
  async close() {
    this._closed = true;
    this._stopHeartbeat();
    const socket = this._socket;
    if (socket && !socket.destroyed && this._connected) {
      try {
        await this._send('QUIT', undefined, this._generation);
      } catch {
        // Already gone: nothing left to say goodbye to.
      }
    }
    socket?.destroy();
    this._socket = null;
  }

  // -- connection ---------------------------------------------------------------------

  /**
   * One round: an attempt at each server from `_next` on, until one takes us. A node that
   * refuses (no banner, `ERR` for a banner, a handshake cut off) counts as down; a refused
   * AUTH rejects at once, as every node would refuse the same token.
   */
  async _openAny() {
    const failures = [];
    for (const index of rotation(this.servers.length, this._next)) {
      const address = this.servers[index];
      try {
        await this._open(address);
      } catch (err) {
        const down = err instanceof ConnectionLost || err.code === 'protocol_error'
          || (err instanceof BrokerError && UNSOLICITED.has(err.reason));
        if (!down || this.servers.length === 1) throw err;
        failures.push(`${formatAddress(address)}: ${err.message}`);
        continue;
      }
      this.server = address;
      this._next = (index + 1) % this.servers.length; // if this one is lost: the next first
      return;
    }
    throw new ConnectionLost(`no server took the connection: ${failures.join('; ')}`);
  }

  _open(address) {
    return new Promise((resolve, reject) => {
      const socket = net.createConnection({ host: address.host, port: address.port });
      const generation = ++this._generation;
      let buffered = Buffer.alloc(0);
      let greeted = false;
      let ready = false;
      this._socket = socket;
      socket.setNoDelay(true);
      socket.on('data', (chunk) => {
        buffered = buffered.length ? Buffer.concat([buffered, chunk]) : chunk;
        let start = 0;
        let end;
        while ((end = buffered.indexOf(10, start)) !== -1) {
          const line = buffered.toString('utf8', start, end).replace(/\r$/, '');
          start = end + 1;
          if (greeted) {
            this._line(line);
          } else if (line === 'OK connected') {
            greeted = true;
            this._greeted(generation).then(() => {
              this.server = address;
              ready = true;
              resolve();
              this.emit('connected');
            }, (err) => {
              reject(err);
              socket.destroy();
            });
          } else {
            reject(line.startsWith('ERR ')
              ? new BrokerError(line.slice(4))
              : new LinemqError(`unexpected banner: ${line}`, 'protocol_error'));
            socket.destroy();
          }
        }
        buffered = buffered.subarray(start);
      });
      socket.on('error', (err) => {
        const where = formatAddress(address);
        if (!greeted) reject(new ConnectionLost(`cannot connect to ${where}: ${err.message}`));
      });
      socket.on('close', () => {
        if (generation !== this._generation) return;
        this._socket = null;
        this.server = null;
        const error = new ConnectionLost('connection closed');
        for (const request of this._pending.splice(0)) request.reject(error);
        if (!greeted) reject(new ConnectionLost('connection closed before the banner'));
        if (ready) this._lost(error);
      });
    });
  }

  async _greeted(generation) {
    if (this.token !== undefined) await this._send(`AUTH ${this.token}`, undefined, generation);
    // Pipelined re-joins: one round trip whatever the number of subscriptions.
    await Promise.all([...this._subs.values()].map((sub) => this._join(sub, generation)));
  }

  _join(sub, generation = this._generation) {
    if (sub.group !== undefined) {
      const ordering = sub.ordering === undefined ? '' : ` ordering=${sub.ordering}`;
      const filter = (sub.filter ?? []).map((test) => ` filter=${test}`).join('');
      return this._send(`SUB ${sub.topic} ${sub.group}${ordering}${filter}`, undefined, generation);
    }
    if (sub.next === undefined) return this._send(`SUB ${sub.topic}`, undefined, generation);
    return this._send(`SUB ${sub.topic} from=${sub.next}`, undefined, generation);
  }

  _lost(error) {
    if (this._closed || this._connected === null) return;
    this.emit('disconnected', error);
    if (!this.reconnect) {
      this._connected = null;
      return;
    }
    this._connected = this._reconnect();
    this._connected.catch(() => {});
  }

  async _reconnect() {
    for (let failures = 1; !this._closed; failures++) {
      const delayMs = this.backoff.delay(failures);
      this.emit('reconnecting', { attempt: failures, delayMs });
      await new Promise((r) => setTimeout(r, delayMs));
      if (this._closed) break;
      try {
        return await this._openAny();
      } catch (err) {
        this.emit('reconnectFailed', err);
      }
    }
    throw new ConnectionLost('client closed');
  }

  // -- requests and lines -------------------------------------------------------------

  async _request(line, endLine) {
    if (this._closed) throw new ConnectionLost('client closed');
    if (!this._connected) throw new ConnectionLost('not connected: call connect() first');
    await withTimeout(this._connected, this.requestTimeoutMs, 'reconnect');
    return this._send(line, endLine, this._generation);
  }

  /**
   * Write one command (a string; or a Buffer, newlines its own, for a command with a
   * payload); resolves with the OK line, or with the block's lines for `endLine`.
   */
  _send(line, endLine, generation) {
    const socket = this._socket;
    if (!socket || generation !== this._generation) {
      return Promise.reject(new ConnectionLost('connection lost before the request was sent'));
    }
    return new Promise((resolve, reject) => {
      const request = { endLine, lines: [], resolve, reject, timer: null };
      request.timer = setTimeout(() => {
        // A late reply would be matched to the wrong request: rebuild the connection.
        const verb = (typeof line === 'string' ? line : line.subarray(0, 16).toString()).split(' ')[0];
        reject(new ConnectionLost(`no reply to ${verb} within ${this.requestTimeoutMs} ms`));
        socket.destroy();
      }, this.requestTimeoutMs);
      request.timer.unref?.();
      const settle = (fn) => (value) => {
        clearTimeout(request.timer);
        fn(value);
      };
      request.resolve = settle(resolve);
      request.reject = settle(reject);
      this._pending.push(request);
      socket.write(typeof line === 'string' ? `${line}\n` : Buffer.concat([line, Buffer.from('\n')]));
    });
  }

  _line(line) {
    if (line.startsWith('MSG ')) return this._deliver(line);
    if (line.startsWith('ERR ') && UNSOLICITED.has(line.slice(4))) {
      // Not a reply: the broker is closing this connection; 'close' follows.
      this.emit('serverError', new BrokerError(line.slice(4)));
      return;
    }
    const request = this._pending[0];
    if (!request) {
      this.emit('serverError', new LinemqError(`line without a request: ${line}`, 'protocol_error'));
      return;
    }
    if (line.startsWith('ERR ')) {
      this._pending.shift();
      request.reject(brokerError(line.slice(4)));
    } else if (request.endLine === undefined) {
      this._pending.shift();
      request.resolve(line);
    } else if (line === request.endLine) {
      this._pending.shift();
      request.resolve(request.lines);
    } else {
      request.lines.push(line);
    }
  }

  _deliver(line) {
    const rest = line.slice(4);
    const topic = rest.slice(0, rest.indexOf(' '));
    // _refuseOverlap keeps fanout and groups of one topic apart, so any match will do.
    const sub = [...this._subs.values()].find((s) => matches(s.topic, topic));
    if (!sub) return;
    const msg = this._message(rest, sub.group);
    if (sub.group === undefined && sub.next !== undefined) {
      if (msg.offset < sub.next) return; // already seen before a reconnect
      sub.next = msg.offset + 1;
    }
    try {
      const result = sub.onMessage(msg);
      if (typeof result?.then === 'function') result.then(undefined, (err) => this._handlerFailed(err, msg));
    } catch (err) {
      this._handlerFailed(err, msg);
    }
  }

  _handlerFailed(err, msg) {
    // Without a listener the error surfaces as the handler's own would have.
    if (this.listenerCount('handlerError') === 0) throw err;
    this.emit('handlerError', err, msg);
  }

  _message(rest, group) {
    const parts = [];
    let start = 0;
    for (let i = 0; i < 4; i++) {
      const space = rest.indexOf(' ', start);
      parts.push(rest.slice(start, space));
      start = space + 1;
    }
    const [topic, id, offset, ts] = parts;
    const text = rest.slice(start);
    return new Message(this, this._generation, topic, id, Number(offset), Number(ts), text, group);
  }

  _startHeartbeat() {
    if (this._heartbeat || !(this.heartbeatIntervalMs > 0)) return;
    this._heartbeat = setInterval(() => {
      if (this._socket) this._send('HEARTBEAT', undefined, this._generation).catch(() => {});
    }, this.heartbeatIntervalMs);
    this._heartbeat.unref();
  }

  _stopHeartbeat() {
    clearInterval(this._heartbeat);
    this._heartbeat = null;
  }
}

/** NATS-style patterns, as the broker reads them: `*` is one token, a trailing `>` one or more. */
export function matches(pattern, topic) {
  const want = pattern.split('.');
  const got = topic.split('.');
  for (let i = 0; i < want.length; i++) {
    if (want[i] === '>' && i === want.length - 1) return got.length > i;
    if (i >= got.length || (want[i] !== '*' && want[i] !== got[i])) return false;
  }
  return want.length === got.length;
}

function key(topic, group) {
  return group === undefined ? topic : `${topic}\u0000${group}`;
}

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new ConnectionLost(`${what} did not finish within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
