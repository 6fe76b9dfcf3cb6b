import assert from 'node:assert/strict';
import test from 'node:test';

import { harness, settle } from './fakes.js';

/** Whether `promise` has settled yet, and how. */
async function outcome(promise) {
  let result = 'pending';
  promise.then(
    () => (result = 'resolved'),
    (error) => (result = 'rejected: ' + error.message),
  );
  await settle();
  return result;
}

test("a topic's broadcast over a WebSocket gives its topic, its id and what was published", () => {
  const { connection, ws, messages } = harness({ topics: ['scores'] });
  ws.last().accept();
  ws.last().receive({ topic: 'scores', id: 'r1-3', data: { home: 2 } });
  ws.last().receive({ topic: 'scores', id: 'r1-4', data: null });
  assert.deepEqual(
    messages.map(({ id, topic, data }) => ({ id, topic, data })),
    [
      { id: 'r1-3', topic: 'scores', data: { home: 2 } },
      { id: 'r1-4', topic: 'scores', data: null },
    ],
  );
  assert.equal(connection.lastId, 'r1-4');
});

test("subscribe and unsubscribe on an open WebSocket: one message each, settled by the server's answer", async () => {
  const { connection, ws, messages } = harness({ topics: ['a'] });
  ws.last().accept();
  const subscribed = connection.subscribe('b');
  assert.deepEqual(ws.last().sent, [{ subscribe: 'b' }]);
  assert.deepEqual(connection.topics, ['a', 'b']);
  assert.equal(await outcome(subscribed), 'pending');
  ws.last().receive({ subscribed: 'b' });
  assert.equal(await outcome(subscribed), 'resolved');
  const unsubscribed = connection.unsubscribe('a');
  assert.deepEqual(connection.topics, ['b']);
  ws.last().receive({ unsubscribed: 'a' });
  assert.equal(await outcome(unsubscribed), 'resolved');
  assert.deepEqual(ws.last().sent, [{ subscribe: 'b' }, { unsubscribe: 'a' }]);
  assert.deepEqual(messages, [], 'answers are not messages');
});

test('asking for what is already so sends nothing', async () => {
  const { connection, ws } = harness({ topics: ['a'] });
  ws.last().accept();
  assert.equal(await outcome(connection.subscribe('a')), 'resolved');
  assert.equal(await outcome(connection.unsubscribe('z')), 'resolved');
  const twice = [connection.subscribe('b'), connection.subscribe('b')];
  assert.equal(twice[0], twice[1], 'the same request');
  assert.deepEqual(ws.last().sent, [{ subscribe: 'b' }]);
});

test('an error while requests wait answers the oldest: rejected, and its topic dropped', async () => {
  const { connection, ws, errors } = harness();
  ws.last().accept();
  const first = connection.subscribe('user:1');
  const second = connection.subscribe('news');
  ws.last().receive({ error: 'not allowed to subscribe to user:1' });
  ws.last().receive({ subscribed: 'news' });
  assert.equal(await outcome(first), 'rejected: not allowed to subscribe to user:1');
  assert.equal(await outcome(second), 'resolved');
  assert.deepEqual(connection.topics, ['news']);
  assert.deepEqual(errors, ['not allowed to subscribe to user:1'], 'onError hears it too');
  connection.reconnect();
  assert.equal(ws.last().url.search, '?topic=news', 'the refused topic is not asked for again');
});

test('subscribing while disconnected: the next handshake carries it, and its opening settles it', async () => {
  const { connection, ws, clock, changes } = harness({ topics: ['a'] });
  ws.last().accept();
  ws.last().receive({ topic: 'a', id: 'r1-1', data: 1 });
  ws.last().drop(1006);
  const subscribed = connection.subscribe('b');
  clock.advance(changes.at(-1).delay);
  assert.equal(ws.last().url.search, '?topic=a&topic=b&since=r1-1');
  assert.equal(await outcome(subscribed), 'pending');
  ws.last().accept();
  assert.equal(await outcome(subscribed), 'resolved');
  assert.deepEqual(ws.last().sent, [], 'nothing to send: the URL said it');
});

test('subscribing while the socket opens: sent once open, in the order asked', async () => {
  const { connection, ws } = harness({ topics: ['a'] });
  const requests = [
    connection.subscribe('b'),
    connection.unsubscribe('b'),
    connection.unsubscribe('a'),
  ];
  ws.last().accept();
  assert.deepEqual(ws.last().sent, [
    { subscribe: 'b' },
    { unsubscribe: 'b' },
    { unsubscribe: 'a' },
  ]);
  ws.last().receive({ subscribed: 'b' });
  ws.last().receive({ unsubscribed: 'b' });
  ws.last().receive({ unsubscribed: 'a' });
  for (const request of requests) assert.equal(await outcome(request), 'resolved');
  assert.deepEqual(connection.topics, []);
});

test('a request whose socket was lost before the answer is settled by the next handshake', async () => {
  const { connection, ws, clock, changes } = harness();
  ws.last().accept();
  const subscribed = connection.subscribe('b');
  ws.last().drop(1006);
  clock.advance(changes.at(-1).delay);
  assert.equal(ws.last().url.search, '?topic=b');
  ws.last().accept();
  assert.equal(await outcome(subscribed), 'resolved');
});

test('close() rejects what waits, and keeps the topics for a later reconnect()', async () => {
  const { connection, ws } = harness();
  ws.last().accept();
  const subscribed = connection.subscribe('b');
  connection.close();
  assert.equal(await outcome(subscribed), 'rejected: the connection is closed');
  assert.equal(await outcome(connection.subscribe('c')), 'rejected: the connection is closed');
  connection.reconnect();
  assert.equal(ws.last().url.search, '?topic=b');
});

test('an event stream reopens for a new topic, resuming, and the request settles as it opens', async () => {
  const { connection, sse, states } = harness({ transport: 'sse', topics: ['a'] });
  sse.last().accept();
  sse.last().event({ topic: 'a', data: 1 }, 'r1-5');
  const subscribed = connection.subscribe('b');
  assert.equal(sse.sources[0].readyState, 2);
  assert.equal(sse.last().url.search, '?topic=a&topic=b&lastEventId=r1-5');
  assert.equal(await outcome(subscribed), 'pending');
  sse.last().accept();
  assert.equal(await outcome(subscribed), 'resolved');
  assert.deepEqual(states(), [
    'connecting:start',
    'open:opened',
    'connecting:topics',
    'open:opened',
  ]);
});

test('an event stream refused for a new topic: the request rejects, and the retry goes without it', async () => {
  const { connection, sse, clock, changes } = harness({ transport: 'sse', topics: ['a'] });
  sse.last().accept();
  const subscribed = connection.subscribe('user:1');
  sse.last().refuse();
  assert.equal(await outcome(subscribed), 'rejected: the event stream was refused');
  clock.advance(changes.at(-1).delay);
  assert.equal(sse.last().url.search, '?topic=a');
  assert.deepEqual(connection.topics, ['a']);
});
