// `await client.worker(topic, group, handler, {concurrency})`: a consumer-group worker that drains,
// as the Python client's `client.worker(...)` (clients/worker.py).
//
// Each message runs `await handler(msg)`, at most `concurrency` at once; the rest wait in
// the worker. What the handler does decides what the broker is told (`outcome`, pure):
// it resolves, ACK; it throws `Terminate`, TERM (dead-lettered now, with the reason);
// `RetryLater`, NACK with its delay; anything else, NACK with the error's text as the
// reason (the broker's retry backoff decides when it comes back).
//
// Held messages, waiting or running, are touched every third of the topic's ack timeout
// (`POLICY`), so a long job or a long queue is not taken back. `stop()` starts nothing new,
// gives running handlers up to `graceMs` to finish and be settled (a second `stop()` cuts
// that short), then leaves the group (`UNSUB`): what the worker still holds goes back to
// the group at once without an attempt counted. A handler still running after the grace is
// left to finish, but its message is not settled: it was given back.

const DEFAULT_GRACE_MS = 30_000;
const DEFAULT_TOUCH_EVERY_MS = 10_000; // a third of the broker's default 30 s ack timeout
const MAX_REASON_CHARS = 4_000; // the broker keeps 1,000 bytes and marks the cut

/** Throw from a handler to fail the message for good: dead-lettered now (`TERM`). */
export class Terminate extends Error {
  constructor(reason) {
    super(reason ?? '');
    this.name = 'Terminate';
    this.reason = reason;
  }
}

/** Throw from a handler to give the message back, redelivered after `delaySeconds`. */
export class RetryLater extends Error {
  constructor(delaySeconds, reason) {
    super(reason ?? '');
    this.name = 'RetryLater';
    this.delaySeconds = delaySeconds;
    this.reason = reason;
  }
}

/** What the broker is told about a handler's run: `{verb, delaySeconds, reason}`. */
export function outcome(error) {
  if (error === undefined) return { verb: 'ack' };
  if (error instanceof Terminate) return { verb: 'term', reason: cut(error.reason) };
  if (error instanceof RetryLater) {
    return { verb: 'nack', delaySeconds: error.delaySeconds, reason: cut(error.reason) };
  }
  return { verb: 'nack', reason: errorText(error) };
}

/** `Name: message` on one line, as the reason of a NACK. */
export function errorText(error) {
  const said = String(error?.message ?? error).split(/\s+/).filter(Boolean).join(' ');
  const name = error?.name ?? 'Error';
  return cut(said ? `${name}: ${said}` : name);
}

function cut(text) {
  if (!text || !text.trim()) return undefined;
  return text.length > MAX_REASON_CHARS ? text.slice(0, MAX_REASON_CHARS) : text;
}

export class Worker {
  /**
   * Options: concurrency (1), graceMs (30 s), ordering ('fifo' for a group this creates),
   * autoExtend (true), touchEveryMs (a third of the topic's ack timeout).
   */
  constructor(client, topic, group, handler, options = {}) {
    const { concurrency = 1, graceMs = DEFAULT_GRACE_MS, ordering, autoExtend = true, touchEveryMs } = options;
    if (!(Number.isInteger(concurrency) && concurrency >= 1)) {
      throw new RangeError(`concurrency must be 1 or more, got ${concurrency}`);
    }
    Object.assign(this, { client, topic, group, handler, concurrency, graceMs, ordering, autoExtend });
    this.touchEveryMs = touchEveryMs;
    this.stats = { acked: 0, nacked: 0, terminated: 0, lost: 0 };
    this._waiting = [];
    this._running = new Set(); // held entries whose handler runs
    this._stopping = false;
    this._hurry = null;
    this._stopped = null;
    this._touchTimer = null;
  }

  /** Handlers running now. */
  get running() {
    return this._running.size;
  }

  /** Join the group and start taking messages (`client.worker()` calls it). */
  async start() {
    if (this._started) throw new Error('a Worker starts once; make another');
    this._started = true;
    await this.client.subscribeGroup(this.topic, this.group, (msg) => this._take(msg), { ordering: this.ordering });
    if (this.autoExtend) {
      let every = this.touchEveryMs;
      if (every === undefined) {
        const ackTimeout = /[*>]/.test(this.topic) ? undefined : await this.client._ackTimeout(this.topic);
        every = ackTimeout ? (ackTimeout * 1000) / 3 : DEFAULT_TOUCH_EVERY_MS;
      }
      this._touchTimer = setInterval(() => this._touchHeld(), every);
      this._touchTimer.unref?.();
    }
  }

  /**
   * Start nothing new, let running handlers finish (up to `graceMs`), then leave the group.
   * Resolves once stopped; a second call cuts the grace short.
   */
  stop() {
    if (this._stopped) {
      this._hurry?.();
      return this._stopped;
    }
    this._stopping = true;
    this._stopped = this._drain();
    return this._stopped;
  }

  _take(msg) {
    const held = { msg, settling: false, abandoned: false };
    this._waiting.push(held);
    this._next();
  }

  _next() {
    while (!this._stopping && this._waiting.length && this._running.size < this.concurrency) {
      const held = this._waiting.shift();
      if (held.msg._generation !== this.client._generation) continue; // the broker redelivers it
      this._running.add(held);
      this._run(held);
    }
  }

  async _run(held) {
    let error;
    try {
      await this.handler(held.msg);
    } catch (err) {
      error = err ?? new Error('handler failed');
    }
    if (!held.abandoned) {
      held.settling = true;
      await this._settle(held.msg, outcome(error));
    }
    this._running.delete(held);
    this._changed?.();
    this._next();
  }

  async _settle(msg, result) {
    try {
      if (result.verb === 'ack') {
        await msg.ack();
        this.stats.acked += 1;
      } else if (result.verb === 'term') {
        await msg.term(result.reason);
        this.stats.terminated += 1;
      } else {
        await msg.nack(result.delaySeconds, result.reason);
        this.stats.nacked += 1;
      }
    } catch {
      // The connection dropped or the message was taken back meanwhile: it is redelivered.
      this.stats.lost += 1;
    }
  }

  _touchHeld() {
    for (const held of [...this._waiting, ...this._running]) {
      if (!held.settling && held.msg._generation === this.client._generation) held.msg.touch().catch(() => {});
    }
  }

  async _drain() {
    await new Promise((resolve) => {
      const timer = setTimeout(resolve, this.graceMs);
      const check = () => {
        if (this._running.size === 0) {
          clearTimeout(timer);
          resolve();
        }
      };
      this._changed = check;
      this._hurry = () => {
        clearTimeout(timer);
        resolve();
      };
      check();
    });
    for (const held of this._running) if (!held.settling) held.abandoned = true;
    clearInterval(this._touchTimer);
    this._waiting = [];
    try {
      // Gives back what is still held (never started, or cut short) with no attempt counted.
      await this.client.unsubscribe(this.topic, this.group);
    } catch {
      // Gone with the connection: the broker gives the messages back all the same.
    }
  }
}
