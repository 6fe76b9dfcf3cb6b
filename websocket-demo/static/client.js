// The WebSocket demo page: one socket, messages both ways, and reconnection
// with exponential backoff and jitter that resumes with ?since=<last id>.

import {
  byId,
  countReceived,
  describeMissed,
  heartbeatMs,
  lastSeenId,
  log,
  opened,
  sawId,
  setState,
  watchSilence,
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

let socket = null;
let attempts = 0;
let retryTimer = null;
// Sockets the page closed itself (Close, Reconnect, leaving): they stay closed.
const closedOnPurpose = new WeakSet();
// Sockets given up on because the link went silent: replaced already.
const abandoned = new WeakSet();
// The current socket's watch for silence, and its timer of pings.
let silence = null;
let pinger = null;
let pings = 0;

function connect() {
  clearTimeout(retryTimer);
  stopWatching();
  const since = lastSeenId();
  const target = since ? url + '?since=' + encodeURIComponent(since) : url;
  setState('connecting');
  const current = new WebSocket(target);
  socket = current;
  // Opening counts too: a connection that hangs is as dead as a silent one.
  silence = watchSilence(abandon);
  current.onopen = () => {
    attempts = 0;
    // Hello on the first open only, as the original page did: after a server
    // restart, every page coming back must not make one broadcast each.
    if (opened()) send({ message: 'Hello' });
    // Our own ping, answered to this page alone: the protocol's pings never
    // reach JavaScript, so this is how the page hears an idle link is alive.
    pinger = setInterval(() => sendQuietly({ ping: ++pings }), heartbeatMs());
  };
  current.onmessage = (event) => {
    if (socket === current && silence) silence.heard();
    receive(event.data);
  };
  current.onerror = () => log('error', 'Connection error');
  current.onclose = (event) => {
    const why = CLOSE_REASONS[event.code] || 'code ' + event.code;
    log('close', 'Closed connection (' + event.code + ': ' + (event.reason || why) + ')');
    if (abandoned.has(current)) return;
    if (closedOnPurpose.has(current)) {
      if (socket === current) setState('closed');
    } else {
      stopWatching();
      scheduleReconnect();
    }
  };
}

// The link went silent: give up on this socket (even one still opening)
// and reconnect, resuming after the last id seen.
function abandon() {
  stopWatching();
  abandoned.add(socket);
  socket.close();
  scheduleReconnect();
}

function stopWatching() {
  if (silence) silence.stop();
  clearInterval(pinger);
  silence = null;
}

function receive(data) {
  let message;
  try {
    message = JSON.parse(data);
  } catch {
    countReceived();
    log('received', 'Received: ' + data);
    return;
  }
  // The answer to the page's own ping: a sign of life, nothing to show.
  if (message.pong !== undefined) return;
  countReceived();
  if (message.missed) {
    log('missed', describeMissed(message));
  } else if (message.error) {
    log('error', 'The server says: ' + message.error);
  } else {
    if (message.id) sawId(message.id);
    log('received', 'Received: ' + data, message.id);
  }
}

function scheduleReconnect() {
  // 0.5 s, 1 s, 2 s ... up to 10 s, each between half and all of it, so that
  // many pages do not all come back at the same moment.
  const ceiling = Math.min(10000, 500 * 2 ** attempts);
  const delay = ceiling / 2 + Math.random() * (ceiling / 2);
  attempts += 1;
  setState('reconnecting', 'in ' + (delay / 1000).toFixed(1) + ' s');
  retryTimer = setTimeout(connect, delay);
}

function closeOnPurpose() {
  clearTimeout(retryTimer);
  stopWatching();
  if (socket && socket.readyState <= WebSocket.OPEN) {
    closedOnPurpose.add(socket);
    socket.close(1000, 'closed by the page');
  }
}

// Sends without a log line: the pings would drown the log.
function sendQuietly(payload) {
  if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(payload));
}

function send(payload) {
  if (!socket || socket.readyState !== WebSocket.OPEN) {
    log('error', 'Not connected: nothing sent');
    return;
  }
  const json = JSON.stringify(payload);
  socket.send(json);
  log('sent', 'Sent: ' + json);
}

byId('url').textContent = url;
byId('composer').addEventListener('submit', (event) => {
  event.preventDefault();
  send({ message: byId('text').value });
});
byId('close').addEventListener('click', () => {
  closeOnPurpose();
  setState('closed');
});
byId('reconnect').addEventListener('click', () => {
  closeOnPurpose();
  attempts = 0;
  connect();
});
window.addEventListener('beforeunload', closeOnPurpose);

connect();
