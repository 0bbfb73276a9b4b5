// Pure: the words of commands and the parsing of replies, as protocol.md gives them.
// Nothing here touches a socket; linemq.js sends what these build and hands them what came.

import { LinemqError } from './errors.js';

// The broker's duration syntax (protocol.md): 500ms, 5s, 2m, 1h, 1d, 1w or bare seconds.
const DURATION = /^\d+(\.\d+)?(ms|s|m|h|d|w)?$/i;
const DURATION_SECONDS = { '': 1, ms: 0.001, s: 1, m: 60, h: 3600, d: 86400, w: 604800 };
// POLICY keys, as the wire writes them; a GROUP line ends with them (always as text).
const POLICY_KEYS = ['max_retries', 'backoff', 'ack_timeout', 'max_inflight', 'ordering', 'rate', 'nack_backoff'];
// The counts a GROUP line starts with: always numbers.
const GROUP_FIGURES = new Set(['members', 'inflight', 'waiting', 'lag', 'acked', 'dead', 'next_offset', 'paused']);
const HEADER_NAME = /^[A-Za-z0-9_.-]{1,100}$/;
// SCHEDULE options kept from PUT (and h.<name> headers), as SCHEDULES lists them.
const PUT_OPTIONS = new Set(['key', 'priority', 'delay', 'ttl', 'max_retries']);
// A SCHEDULES word: a quoted cron=/tz= value is one word.
const SCHEDULE_WORD = /(?:cron|tz)="[^"]*"|\S+/g;

/** A failure text as one protocol line: line breaks become spaces, NULs go (the broker keeps 1,000 bytes). */
export function oneLine(reason) {
  const text = String(reason).replace(/\r\n|\r|\n/g, ' ').replaceAll('\0', '').replace(/^[ \t]+|[ \t]+$/g, '');
  return text || undefined;
}

/** `TOUCH … progress=` words: a number from 0 to 100 and/or a note (one line, 200 bytes kept). */
export function progressWords({ progress, note } = {}) {
  const words = [];
  if (progress !== undefined) {
    if (typeof progress !== 'number' || !(progress >= 0 && progress <= 100)) {
      throw new LinemqError('progress must be a number from 0 to 100', 'invalid_request');
    }
    words.push(String(progress));
  }
  if (note !== undefined) {
    const text = String(note).split(/\s+/).filter(Boolean).join(' ');
    if (!text) throw new LinemqError('note must not be blank', 'invalid_request');
    if (progress === undefined && /^\d+(\.\d+)?%?$/.test(text.split(' ')[0])) {
      throw new LinemqError('a note without progress must not start with a number', 'invalid_request');
    }
    words.push(text);
  }
  if (!words.length) throw new LinemqError('give progress, a note, or both', 'invalid_request');
  return words.join(' ');
}

/** A `STATUS` reply's lines as `{topic, offset, id, ts, fields, groups}`; texts unescaped. */
export function parseStatus(lines) {
  let message;
  const groups = [];
  for (const line of lines) {
    const [kind, topic, offset, name, ...pairs] = line.split(' ');
    const fields = {};
    for (const pair of pairs) {
      const eq = pair.indexOf('=');
      if (eq > 0) fields[pair.slice(0, eq)] = unescapeValue(pair.slice(eq + 1));
    }
    if (kind === 'MESSAGE') {
      message = { topic, offset: Number(offset), id: name, ts: Number(fields.ts), fields };
    } else if (kind === 'STATUS') {
      groups.push({
        group: name,
        state: fields.state,
        attempts: Number(fields.attempt ?? fields.attempts ?? 0),
        progress: fields.progress === undefined ? undefined : Number(fields.progress),
        note: fields.note,
        member: fields.member,
        reason: fields.reason,
        error: fields.error,
        fields,
      });
    }
  }
  if (message === undefined) throw new LinemqError('STATUS reply without a MESSAGE line', 'protocol_error');
  return { ...message, groups };
}

/** `filter=` tests: one in the wire syntax, a list of them, or `{name: value | [values]}`. */
export function filterTests(filter) {
  let tests;
  if (typeof filter === 'string') {
    tests = [filter];
  } else if (Array.isArray(filter)) {
    tests = filter;
  } else if (filter !== null && typeof filter === 'object') {
    tests = Object.entries(filter).map(([name, values]) => {
      if (!HEADER_NAME.test(name)) {
        throw new LinemqError(`invalid header name ${name}: use 1-100 of [A-Za-z0-9_.-]`, 'invalid_request');
      }
      const list = Array.isArray(values) ? values : [values];
      if (!list.length) throw new LinemqError(`no values for header ${name}`, 'invalid_request');
      return `h.${name}=${list.map((v) => encodeURIComponent(String(v))).join('|')}`;
    });
  }
  if (!tests?.length || !tests.every((t) => typeof t === 'string' && t && !/\s/.test(t))) {
    throw new LinemqError('a filter test is text without spaces (escape them as %20)', 'invalid_request');
  }
  return tests;
}

/** `key=value` pairs of a reply line, as text. */
export function pairsOf(words) {
  const fields = {};
  for (const pair of words) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new LinemqError(`malformed field ${pair}`, 'protocol_error');
    fields[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return fields;
}

/**
 * A GROUP line as `{topic, group, stats, settings}`: `stats` the counts (numbers), `settings`
 * the policy keys it ends with and any other non-numeric key, as text (new keys may come).
 */
export function parseGroupLine(line) {
  const [, topic, group, ...words] = line.split(' ');
  const stats = {};
  const settings = {};
  for (const [name, value] of Object.entries(pairsOf(words))) {
    const number = /^-?\d+(\.\d+)?$/.test(value) ? Number(value) : NaN;
    if (POLICY_KEYS.includes(name) || (Number.isNaN(number) && !GROUP_FIGURES.has(name))) {
      settings[name] = value;
    } else if (Number.isNaN(number)) {
      throw new LinemqError(`malformed GROUP field ${name}=${value}`, 'protocol_error');
    } else {
      stats[name] = number;
    }
  }
  return { topic, group, stats, settings };
}

/**
 * A POLICY reply: `{topic, group, maxRetries, backoff, ackTimeout (s), maxInflight, ordering,
 * rate (null: none), nackBackoff, source, overrides, fields}`; `group` and `overrides` only
 * for a group's, `fields` every pair as text.
 */
export function parsePolicy(lines) {
  const line = lines.find((l) => l.startsWith('POLICY '));
  if (line === undefined) throw new LinemqError('POLICY reply without a POLICY line', 'protocol_error');
  const [, topic, ...rest] = line.split(' ');
  const group = rest.length && !rest[0].includes('=') ? rest.shift() : undefined;
  const fields = pairsOf(rest);
  const policy = {
    topic,
    maxRetries: Number(fields.max_retries),
    backoff: fields.backoff,
    ackTimeout: durationSeconds(fields.ack_timeout ?? ''),
    maxInflight: Number(fields.max_inflight),
    ordering: fields.ordering ?? 'key',
    rate: fields.rate === undefined || fields.rate === 'none' ? null : fields.rate,
    nackBackoff: fields.nack_backoff === 'on',
    source: fields.source,
    fields,
  };
  if (group !== undefined) {
    const own = fields.overrides ?? 'none';
    Object.assign(policy, { group, overrides: own === 'none' ? [] : own.split(',').map(camel) });
  }
  return policy;
}

export function camel(name) {
  return name.replace(/_([a-z])/g, (_, c) => c.toUpperCase());
}

export function snake(name) {
  return name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

/** One `key=value` of `POLICY <topic> <group> …`; the broker checks the value itself. */
export function settingWord(name, value) {
  const key = snake(name);
  if (!POLICY_KEYS.includes(key)) {
    throw new LinemqError(`unknown policy setting ${name} (${POLICY_KEYS.map(camel).join(', ')})`, 'invalid_request');
  }
  let text;
  if (value === null || value === undefined) text = 'default';
  else if (typeof value === 'boolean') {
    if (key !== 'nack_backoff') throw new LinemqError(`${name} is not on or off`, 'invalid_request');
    text = value ? 'on' : 'off';
  } else if (key === 'ack_timeout') text = durationText(value);
  else text = String(value);
  if (!text || /[\s=]/.test(text)) throw new LinemqError(`invalid ${name} ${value}`, 'invalid_request');
  return `${key}=${text}`;
}

/** `every=…` or `cron="…" [tz="…"]`, then the PUT options, for `SCHEDULE`. */
export function scheduleWords({ every, cron, tz, key, priority, delay, ttl, maxRetries, headers } = {}) {
  if ((every === undefined) === (cron === undefined)) {
    throw new LinemqError('give every or cron, not both', 'invalid_request');
  }
  const words = [];
  if (every !== undefined) words.push(`every=${durationText(every)}`);
  else words.push(`cron="${quotable(cron, 'cron expression')}"`);
  if (tz !== undefined) {
    if (cron === undefined) throw new LinemqError('tz goes with cron', 'invalid_request');
    words.push(`tz="${quotable(tz, 'time zone')}"`);
  }
  if (key !== undefined) words.push(`key=${oneWord(key, 'key')}`);
  if (priority !== undefined) words.push(`priority=${oneWord(priority, 'priority')}`);
  if (delay !== undefined) words.push(`delay=${durationText(delay)}`);
  if (ttl !== undefined) words.push(`ttl=${durationText(ttl)}`);
  if (maxRetries !== undefined) {
    if (!(Number.isInteger(maxRetries) && maxRetries >= 0)) {
      throw new LinemqError('maxRetries must be a whole number >= 0', 'invalid_request');
    }
    words.push(`max_retries=${maxRetries}`);
  }
  for (const [name, value] of Object.entries(headers ?? {})) {
    if (!HEADER_NAME.test(name)) {
      throw new LinemqError(`invalid header name ${name}: use 1-100 of [A-Za-z0-9_.-]`, 'invalid_request');
    }
    words.push(`h.${name}=${encodeURIComponent(String(value))}`);
  }
  return words;
}

export function quotable(value, what) {
  const text = String(value).trim();
  if (!text || /["\r\n]/.test(text)) throw new LinemqError(`invalid ${what} ${value}`, 'invalid_request');
  return text;
}

export function oneWord(value, what) {
  const text = String(value);
  if (!text || /\s/.test(text)) throw new LinemqError(`invalid ${what} ${value}`, 'invalid_request');
  return text;
}

/**
 * A SCHEDULES line: `{topic, name, every, cron, tz, next, last (null: never), fired, bytes,
 * options, fields}`; `fields` holds keys this client does not know yet, as text.
 */
export function parseScheduleLine(line) {
  const [, topic, name, ...pairs] = line.match(SCHEDULE_WORD);
  const known = {};
  const options = [];
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new LinemqError(`malformed SCHEDULE field ${pair}`, 'protocol_error');
    const field = pair.slice(0, eq);
    if (PUT_OPTIONS.has(field) || field.startsWith('h.')) options.push(pair);
    else known[field] = pair.slice(eq + 1).replace(/^"(.*)"$/, '$1');
  }
  const { every = null, cron = null, tz = null, next, last, fired, bytes, ...fields } = known;
  return {
    topic,
    name,
    every,
    cron,
    tz,
    next: Number(next),
    last: last === undefined || last === '-' ? null : Number(last),
    fired: Number(fired),
    bytes: Number(bytes),
    options,
    fields,
  };
}

/** Percent-escaped values (v2 header style: `%20` for a space), as UTF-8. */
export function unescapeValue(value) {
  try {
    return decodeURIComponent(value);
  } catch {
    return value; // not an escape the broker writes: keep it as it came
  }
}

export function count(okLine, word) {
  const got = new RegExp(`^OK ${word} (\\d+)$`).exec(okLine);
  if (!got) throw new LinemqError(`unexpected reply: ${okLine}`, 'protocol_error');
  return Number(got[1]);
}

export function durationText(value) {
  if (typeof value === 'number' && Number.isFinite(value) && value >= 0) return `${value}s`;
  if (typeof value === 'string' && DURATION.test(value)) return value;
  throw new LinemqError(`invalid duration ${value}: use seconds or e.g. 500ms, 5s, 2m, 1h, 1d`, 'invalid_request');
}

export function durationSeconds(text) {
  const got = /^(\d+(?:\.\d+)?)(ms|s|m|h|d|w)?$/i.exec(text);
  return got ? Number(got[1]) * DURATION_SECONDS[(got[2] ?? '').toLowerCase()] : undefined;
}
