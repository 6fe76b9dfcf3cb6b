'use strict';
// What both demo pages share: the state badge, the counters and the log.
// Text goes in with textContent only: nothing a server or user sends is HTML.

// Read by the browser tests; kept up to date by the page.
const demo = (window.demo = {
  state: 'connecting',
  received: 0,
  reconnects: 0,
  lastId: null,
  ids: [],
  entries: [],
});

const MAX_ENTRIES = 500;

function byId(id) {
  return document.getElementById(id);
}

function setState(state, detail) {
  demo.state = state;
  const badge = byId('state');
  badge.dataset.state = state;
  badge.textContent = state;
  byId('state-detail').textContent = detail || '';
}

function showCounters() {
  byId('received').textContent = String(demo.received);
  byId('reconnects').textContent = String(demo.reconnects);
  byId('last-id').textContent = demo.lastId || 'none';
}

// Remembers a broadcast id: the page resumes after the last one it saw.
function sawId(id) {
  demo.lastId = id;
  demo.ids.push(id);
  showCounters();
}

function log(kind, text, id) {
  demo.entries.push({ kind, text, id: id || null });
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

function describeMissed(notice) {
  const why = {
    expired: 'they are older than the messages the server keeps',
    restarted: 'the server restarted since',
    unknown: 'the server does not know that id',
  }[notice.reason] || notice.reason;
  return 'Messages were missed after ' + notice.since + ': ' + why + '. Live messages follow.';
}
