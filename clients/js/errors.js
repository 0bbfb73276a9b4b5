// The errors this client raises, and which ERR reasons mean "not there".

// ERR reasons that say something is not there (as the Python client reads them).
const NOT_FOUND = [
  'no pending messages', 'no group ', 'no topic ', 'not subscribed', 'not a member', 'dead letter ', 'no schedule ',
];

/** Base class of every error this client raises; `code` is stable, `message` is for people. */
export class LinemqError extends Error {
  constructor(message, code) {
    super(message);
    this.name = new.target.name;
    this.code = code;
  }
}

/** The broker answered `ERR <reason>`; the connection is still usable. */
export class BrokerError extends LinemqError {
  constructor(reason) {
    super(reason, 'broker_error');
    this.reason = reason;
  }
}

/** An `ERR` saying the message, dead letter, group, topic, schedule or subscription is not there. */
export class NotFound extends BrokerError {
  constructor(reason) {
    super(reason);
    this.code = 'not_found';
  }
}

/** The error for an `ERR <reason>` reply. */
export function brokerError(reason) {
  const missing = (reason.startsWith('message ') && reason.includes(' not found in '))
    || NOT_FOUND.some((prefix) => reason.startsWith(prefix));
  return missing ? new NotFound(reason) : new BrokerError(reason);
}

/** The connection went away before the reply came (or the request timed out). */
export class ConnectionLost extends LinemqError {
  constructor(message) {
    super(message, 'connection_lost');
  }
}
