// The Server-Sent Events demo page: an EventSource for what the server pushes,
// fetch() for what the page sends.

import {
  byId,
  countReceived,
  describeMissed,
  lastSeenId,
  log,
  opened,
  sawId,
  setState,
  watchSilence,
} from '/common.js';

let source = null;
let silence = null;

function connect(resume) {
  // The browser resends Last-Event-ID on its own reconnects; a new
  // EventSource (the Reconnect button, or a silent link) resumes with the
  // query instead.
  const since = resume && lastSeenId();
  const target = since ? '/sse?lastEventId=' + encodeURIComponent(since) : '/sse';
  setState('connecting');
  const current = new EventSource(target);
  source = current;
  // The browser's own retries cannot tell a dead link from a quiet one: the
  // server's `ping` events can. Opening counts too: a connection that hangs
  // is as dead as a silent one.
  stopWatching();
  silence = watchSilence(() => {
    current.close();
    connect(true);
  });
  const heard = () => {
    if (source === current && silence) silence.heard();
  };
  current.addEventListener('ping', heard);
  current.onopen = () => {
    heard();
    opened();
  };
  current.onmessage = (event) => {
    heard();
    countReceived();
    // lastEventId stays set on later events without an id (like the greeting
    // after a reconnect), so an id is this event's only when it is new.
    const id = event.lastEventId && event.lastEventId !== lastSeenId() ? event.lastEventId : null;
    if (id) sawId(id);
    log('received', 'Received Message: ' + event.data, id);
  };
  current.addEventListener('missed', (event) => {
    heard();
    countReceived();
    try {
      log('missed', describeMissed(JSON.parse(event.data)));
    } catch {
      log('missed', 'Messages were missed: ' + event.data);
    }
  });
  current.onerror = () => {
    if (source !== current) return;
    if (current.readyState === EventSource.CLOSED) {
      setState('closed');
      log('error', 'The stream was refused; the browser will not retry');
    } else {
      setState('reconnecting', 'the browser retries by itself');
      log('error', 'Connection lost: the browser reconnects by itself');
    }
  };
}

async function send(text) {
  const json = JSON.stringify({ message: text });
  log('sent', 'Sent: ' + json);
  try {
    const response = await fetch('/api', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: json,
    });
    const answer = await response.text();
    log(response.ok ? 'answer' : 'error', response.status + ' ' + answer);
  } catch (error) {
    log('error', 'The request failed: ' + error.message);
  }
}

function stopWatching() {
  if (silence) silence.stop();
  silence = null;
}

function closeStream() {
  stopWatching();
  if (source) source.close();
}

byId('composer').addEventListener('submit', (event) => {
  event.preventDefault();
  send(byId('text').value);
});
byId('close').addEventListener('click', () => {
  closeStream();
  setState('closed');
  log('close', 'Closed connection');
});
byId('reconnect').addEventListener('click', () => {
  closeStream();
  connect(true);
});
window.addEventListener('beforeunload', closeStream);

connect(false);
