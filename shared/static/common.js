// What both demo pages share: the state badge, the counters and the log, and
// `window.demo`, the small API the browser tests (`cargo xtask e2e`) call.
// Text goes in with textContent only: nothing a server or user sends is HTML.

const MAX_ENTRIES = 500;

// The page's state: changed only by the functions below, read by the tests
// through `window.demo`.
let state = 'connecting';
let received = 0;
let reconnects = 0;
let lastId = null;
let openedBefore = false;
const ids = [];
const entries = [];

export function byId(id) {
  return document.getElementById(id);
}

export function setState(next, detail) {
  state = next;
  const badge = byId('state');
  badge.dataset.state = next;
  badge.textContent = next;
  byId('state-detail').textContent = detail || '';
}

// The connection opened: the first time, or once more after a drop. True
// the first time only.
export function opened() {
  const first = !openedBefore;
  if (!first) reconnects += 1;
  openedBefore = true;
  setState('open');
  log('open', 'Opened connection 🎉');
  return first;
}

// The server's heartbeat, from the page it served: how often it sends
// something (a ping) even when nothing else happens.
export function heartbeatMs() {
  return Number(document.body.dataset.heartbeatMs) || 30000;
}

// A change of the connection (realtime.js's onState), as the page shows it:
// the badge, and a log line for what went wrong. True for the first open.
export function showChange(change) {
  if (change.state === 'open') return opened();
  if (change.cause === 'silent') {
    log('error', 'Heard nothing for ' + (change.silent / 1000).toFixed(1) + ' s: reconnecting');
  } else if (change.cause === 'lost') {
    log('error', 'Connection lost: the browser reconnects by itself');
  } else if (change.cause === 'refused') {
    log('error', 'The stream was refused: retrying');
  } else if (change.cause === 'close') {
    log('close', 'Closed connection');
  }
  let detail = '';
  if (change.delay !== undefined) detail = 'in ' + (change.delay / 1000).toFixed(1) + ' s';
  else if (change.cause === 'lost') detail = 'the browser retries by itself';
  setState(change.state, detail);
  return false;
}

export function countReceived() {
  received += 1;
}

// A broadcast id the page saw; the last one is where it resumes from.
export function sawId(id) {
  lastId = id;
  ids.push(id);
  showCounters();
}

function showCounters() {
  byId('received').textContent = String(received);
  byId('reconnects').textContent = String(reconnects);
  byId('last-id').textContent = lastId || 'none';
}

export function log(kind, text, id) {
  entries.push({ kind, text, id: id || null });
  const item = document.createElement('li');
  item.dataset.kind = kind;
  const time = document.createElement('time');
  const now = new Date();
  time.dateTime = now.toISOString();
  time.textContent = now.toLocaleTimeString([], { hour12: false });
  const label = document.createElement('span');
  label.className = 'kind';
  label.textContent = kind;
  const body = document.createElement('span');
  body.className = 'text';
  body.textContent = text;
  const idCell = document.createElement('span');
  idCell.className = 'id';
  idCell.textContent = id ? 'id ' + id : '';
  item.append(time, label, body, idCell);
  const list = byId('log');
  list.prepend(item);
  while (list.children.length > MAX_ENTRIES) {
    list.lastElementChild.remove();
  }
  showCounters();
}

export function describeMissed(notice) {
  if (!notice.reason) return 'Messages were missed: ' + notice.raw;
  const why = {
    expired: 'they are older than the messages the server keeps',
    restarted: 'the server restarted since',
    unknown: 'the server does not know that id',
  }[notice.reason] || notice.reason;
  return 'Messages were missed after ' + notice.since + ': ' + why + '. Live messages follow.';
}

// For the browser tests: the state (copies, so a test cannot change it), the
// page's controls used as a person uses them, and what a page from this
// origin may do to another server.
window.demo = Object.freeze({
  get state() {
    return state;
  },
  get received() {
    return received;
  },
  get reconnects() {
    return reconnects;
  },
  get lastId() {
    return lastId;
  },
  get ids() {
    return [...ids];
  },
  get entries() {
    return entries.map((entry) => ({ ...entry }));
  },
  // How many log entries mention `text`.
  count(text) {
    return entries.filter((entry) => entry.text.includes(text)).length;
  },
  send(text) {
    byId('text').value = text;
    byId('send').click();
  },
  close() {
    byId('close').click();
  },
  reconnect() {
    byId('reconnect').click();
  },
  // Resolves to 'opened' or 'refused'.
  tryWebSocket(url) {
    return new Promise((resolve) => {
      const socket = new WebSocket(url);
      socket.onopen = () => {
        socket.close();
        resolve('opened');
      };
      socket.onerror = () => resolve('refused');
    });
  },
  // Resolves to 'status <code>', or 'blocked' when the browser refuses.
  tryPost(url) {
    return fetch(url, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ message: 'cross-site' }),
    }).then((response) => 'status ' + response.status, () => 'blocked');
  },
});
