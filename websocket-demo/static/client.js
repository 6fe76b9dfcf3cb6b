// The WebSocket demo page: one socket, messages both ways. Reconnection
// (backoff with jitter, resuming with ?since=<last id>) and the heartbeat are
// realtime.js's; the page shows what happens.

import { connect } from '/realtime.js';
import {
  byId,
  countReceived,
  describeMissed,
  heartbeatMs,
  log,
  sawId,
  showChange,
} from '/common.js';

const url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/';
const CLOSE_REASONS = {
  1000: 'closed normally',
  1001: 'the server is going away',
  1002: 'protocol error',
  1003: 'the server does not take that kind of message',
  1006: 'the connection was lost',
  1007: 'the message was not valid UTF-8',
  1008: 'too many messages: the rate limit was exceeded',
  1009: 'the message was too big',
  1011: 'the server hit an error',
  1012: 'broadcasts were lost upstream: reconnecting to be told which',
  1013: 'too slow to keep up: reconnect to resume',
};

const connection = connect({
  url,
  transport: 'websocket',
  heartbeat: heartbeatMs(),
  onState(change) {
    if (change.cause === 'closed') {
      const why = change.reason || CLOSE_REASONS[change.code] || 'code ' + change.code;
      log('close', 'Closed connection (' + change.code + ': ' + why + ')');
    }
    // Hello on the first open only, as the original page did: after a server
    // restart, every page coming back must not make one broadcast each.
    if (showChange(change)) send({ message: 'Hello' });
  },
  onMessage(message) {
    countReceived();
    if (message.id) sawId(message.id);
    log('received', 'Received: ' + message.raw, message.id);
  },
  onMissed(notice) {
    countReceived();
    log('missed', describeMissed(notice));
  },
  onError(error) {
    countReceived();
    log('error', 'The server says: ' + error);
  },
});

function send(payload) {
  const json = JSON.stringify(payload);
  connection.send(payload).then(
    () => log('sent', 'Sent: ' + json),
    () => log('error', 'Not connected: nothing sent'),
  );
}

byId('url').textContent = url;
byId('composer').addEventListener('submit', (event) => {
  event.preventDefault();
  send({ message: byId('text').value });
});
byId('close').addEventListener('click', () => connection.close());
byId('reconnect').addEventListener('click', () => connection.reconnect());
window.addEventListener('beforeunload', () => connection.close());
