// Server lists as the Python client and `--servers` read them: pure, tested without sockets.

import net from 'node:net';

import { LinemqError } from './errors.js';

export const DEFAULT_PORT = 8888;
export const MAX_SERVERS = 64;
const HOSTNAME = /^[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,251}[A-Za-z0-9_])?$/;

function invalid(entry, why) {
  return new LinemqError(`invalid server address '${entry}': ${why}`, 'invalid_request');
}

function port(text, entry) {
  if (!/^[0-9]{1,5}$/.test(text) || Number(text) < 1 || Number(text) > 65535) {
    throw invalid(entry, 'port must be 1-65535');
  }
  return Number(text);
}

function isIPv6(text) {
  return net.isIPv6(text.split('%')[0]);
}

/** `host:port`, `host` (port 8888), `[ipv6]:port` or `[ipv6]`, to `{host, port}`. */
export function parseAddress(text) {
  const entry = text.trim();
  if (!entry) throw new LinemqError('empty server address', 'invalid_request');
  if (entry.includes('://')) throw invalid(text, 'give host:port, without a scheme');
  if (entry.startsWith('[')) {
    const close = entry.indexOf(']');
    if (close === -1) throw invalid(text, "no closing ']'");
    const inside = entry.slice(1, close);
    const rest = entry.slice(close + 1);
    if (!isIPv6(inside)) throw invalid(text, 'not an IPv6 address');
    if (rest && !rest.startsWith(':')) throw invalid(text, "':port' after ']' expected");
    return { host: inside, port: rest ? port(rest.slice(1), text) : DEFAULT_PORT };
  }
  const colons = entry.split(':').length - 1;
  if (colons > 1 && (isIPv6(entry) || isIPv6(entry.slice(0, entry.lastIndexOf(':'))))) {
    throw invalid(text, 'put an IPv6 address in brackets ([::1]:8888)');
  }
  const sep = entry.indexOf(':');
  const host = sep === -1 ? entry : entry.slice(0, sep);
  if (!HOSTNAME.test(host)) throw invalid(text, `bad host name '${host}'`);
  return { host, port: sep === -1 ? DEFAULT_PORT : port(entry.slice(sep + 1), text) };
}

/** A comma-separated list, or an array of addresses (strings or `{host, port}`): at least one, none twice. */
export function parseServers(servers) {
  const entries = typeof servers === 'string' ? servers.split(',') : [...servers];
  const found = [];
  for (const entry of entries) {
    const address = typeof entry === 'string' ? parseAddress(entry) : { host: entry.host, port: entry.port };
    if (found.some((a) => a.host === address.host && a.port === address.port)) {
      throw new LinemqError(`server ${formatAddress(address)} is listed twice`, 'invalid_request');
    }
    found.push(address);
  }
  if (!found.length) throw new LinemqError('no server address given', 'invalid_request');
  if (found.length > MAX_SERVERS) {
    throw new LinemqError(`at most ${MAX_SERVERS} servers, got ${found.length}`, 'invalid_request');
  }
  return found;
}

/** The nodes to try in one round: each once, from `start` on, wrapping around. */
export function rotation(count, start) {
  return Array.from({ length: count }, (_, i) => (start + i) % count);
}

export function formatAddress({ host, port }) {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}
