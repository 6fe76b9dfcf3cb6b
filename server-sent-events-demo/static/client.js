// The Server-Sent Events demo page: an EventSource for what the server
// pushes, a POST for what the page sends. The browser reconnects by itself
// and resends the last id; realtime.js adds the heartbeat watch, retries a
// refused stream, and resumes with ?lastEventId= when it opens a new one.

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

const connection = connect({
  url: '/sse',
  transport: 'sse',
  sendUrl: '/api',
  heartbeat: heartbeatMs(),
  onState: showChange,
  onMessage(message) {
    countReceived();
    if (message.id) sawId(message.id);
    log('received', 'Received Message: ' + message.raw, message.id);
  },
  onMissed(notice) {
    countReceived();
    log('missed', describeMissed(notice));
  },
});

async function send(text) {
  log('sent', 'Sent: ' + JSON.stringify({ message: text }));
  try {
    const reply = await connection.send({ message: text });
    log(reply.ok ? 'answer' : 'error', reply.status + ' ' + reply.body);
  } catch (error) {
    log('error', 'The request failed: ' + error.message);
  }
}

byId('composer').addEventListener('submit', (event) => {
  event.preventDefault();
  send(byId('text').value);
});
byId('close').addEventListener('click', () => connection.close());
byId('reconnect').addEventListener('click', () => connection.reconnect());
window.addEventListener('beforeunload', () => connection.close());
