import assert from 'node:assert/strict';
import test from 'node:test';

import { connect } from '../realtime.js';
import { fakeEventSources, harness } from './fakes.js';

const HEARTBEAT = 1000;

function stream(options = {}) {
  return harness({ transport: 'sse', random: () => 0, ...options });
}

test("a relative URL is the page's own /sse by default", () => {
  const sse = fakeEventSources();
  const connection = connect({
    transport: 'sse',
    env: { EventSource: sse.EventSource, location: { href: 'https://example.org/page' } },
  });
  assert.equal(sse.last().url.href, 'https://example.org/sse');
  assert.equal(sse.last().withCredentials, false);
  connection.close();
});

test('the first stream asks for its topics; withCredentials reaches the EventSource', () => {
  const { sse } = stream({ topics: ['a', 'b'], withCredentials: true });
  assert.equal(sse.last().url.search, '?topic=a&topic=b');
  assert.equal(sse.last().withCredentials, true);
});

test('an event has an id only when it brings a new one', () => {
  const { connection, sse, messages } = stream();
  sse.last().accept();
  sse.last().event({ message: 'Gotcha' });
  sse.last().event({ message: 'Hello hello!' }, 'r1-1');
  // The browser reconnected by itself: its greeting has no id of its own,
  // and the EventSource still reports the last one.
  sse.last().lose();
  sse.last().accept();
  sse.last().event({ message: 'Gotcha' });
  assert.deepEqual(
    messages.map((message) => [message.id, message.data.message]),
    [
      [null, 'Gotcha'],
      ['r1-1', 'Hello hello!'],
      [null, 'Gotcha'],
    ],
  );
  assert.equal(connection.lastId, 'r1-1');
});

test("a topic's broadcast gives its topic and what was published", () => {
  const { sse, messages } = stream({ topics: ['scores'] });
  sse.last().accept();
  sse.last().event({ topic: 'scores', data: { home: 2, away: 1 } }, 'r1-9');
  assert.deepEqual(messages, [
    {
      id: 'r1-9',
      topic: 'scores',
      data: { home: 2, away: 1 },
      raw: '{"topic":"scores","data":{"home":2,"away":1}}',
    },
  ]);
});

test("the browser's own retries: reconnecting without a delay, then open on the same EventSource", () => {
  const { connection, sse, changes, states } = stream();
  sse.last().accept();
  sse.last().lose();
  assert.deepEqual(changes.at(-1), { state: 'reconnecting', cause: 'lost' });
  sse.last().lose();
  sse.last().accept();
  assert.equal(connection.state, 'open');
  assert.equal(sse.sources.length, 1);
  assert.deepEqual(states(), [
    'connecting:start',
    'open:opened',
    'reconnecting:lost',
    'reconnecting:lost',
    'open:opened',
  ]);
});

test('a refused stream is retried with backoff, resuming with ?lastEventId=', () => {
  const { sse, clock, changes } = stream();
  sse.last().accept();
  sse.last().event({ message: 'Hello hello!' }, 'r1-4');
  sse.last().refuse();
  assert.deepEqual(changes.at(-1), { state: 'reconnecting', cause: 'refused', delay: 250 });
  clock.advance(249);
  assert.equal(sse.sources.length, 1);
  clock.advance(1);
  assert.equal(sse.last().url.search, '?lastEventId=r1-4');
  sse.last().refuse();
  assert.equal(changes.at(-1).delay, 500, 'backing off');
});

test('ping events keep a quiet stream alive; two and a half heartbeats of nothing reopen it, resuming', () => {
  const { connection, sse, clock, changes, messages } = stream();
  sse.last().accept();
  sse.last().event({ message: 'Hello hello!' }, 'r1-2');
  for (let beat = 0; beat < 10; beat += 1) {
    clock.advance(HEARTBEAT);
    sse.last().named('ping', '');
  }
  assert.equal(connection.state, 'open');
  assert.equal(messages.length, 1, 'pings are not messages');
  clock.advance(2.5 * HEARTBEAT);
  assert.deepEqual(changes.at(-1), {
    state: 'reconnecting',
    cause: 'silent',
    silent: 2.5 * HEARTBEAT,
    delay: 250,
  });
  const silent = sse.last();
  assert.equal(silent.readyState, 2, 'the silent stream is closed');
  clock.advance(250);
  assert.equal(sse.sources.length, 2);
  assert.equal(sse.last().url.search, '?lastEventId=r1-2');
  silent.event({ message: 'late' }, 'r1-3');
  assert.equal(connection.lastId, 'r1-2', 'the closed stream is ignored');
});

test('the browser retrying for too long counts as silence too', () => {
  const { sse, clock, changes } = stream();
  sse.last().accept();
  sse.last().lose();
  clock.advance(2.5 * HEARTBEAT);
  assert.equal(changes.at(-1).cause, 'silent');
  clock.advance(changes.at(-1).delay);
  assert.equal(sse.sources.length, 2);
});

test('reconnect() opens a new stream at once, resuming', () => {
  const { connection, sse } = stream();
  sse.last().accept();
  sse.last().event({ message: 'Hello hello!' }, 'r1-8');
  connection.reconnect();
  assert.equal(sse.sources[0].readyState, 2);
  assert.equal(sse.last().url.search, '?lastEventId=r1-8');
});

test('a missed-messages notice goes to onMissed, parsed, with its text', () => {
  const { sse, missed, messages } = stream();
  sse.last().accept();
  const notice = '{"missed":true,"since":"r0-9","reason":"restarted"}';
  sse.last().named('missed', notice);
  sse.last().named('missed', 'garbled');
  assert.deepEqual(missed, [
    { missed: true, since: 'r0-9', reason: 'restarted', raw: notice },
    { raw: 'garbled' },
  ]);
  assert.deepEqual(messages, []);
});

test('send() POSTs JSON to /api beside the stream and gives the answer', async () => {
  const { connection, http } = stream();
  const reply = await connection.send({ message: 'Hey there' });
  assert.deepEqual(reply, { status: 200, ok: true, body: '{"id":"r-1"}' });
  assert.deepEqual(http.requests, [
    {
      url: 'http://demo.test/api',
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: '{"message":"Hey there"}',
    },
  ]);
});

test('close() closes the stream for good', () => {
  const { connection, sse, clock, states } = stream();
  sse.last().accept();
  connection.close();
  assert.equal(sse.last().readyState, 2);
  assert.equal(clock.pending, 0);
  sse.last().lose();
  assert.deepEqual(states(), ['connecting:start', 'open:opened', 'closed:close']);
});
