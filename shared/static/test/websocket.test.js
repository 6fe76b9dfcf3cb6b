import assert from 'node:assert/strict';
import test from 'node:test';

import { connect } from '../realtime.js';
import { fakeWebSockets, harness } from './fakes.js';

const HEARTBEAT = 1000;

test("a relative URL is the page's own server, over ws: or wss:", () => {
  for (const [page, expected] of [
    ['http://localhost:8081/', 'ws://localhost:8081/'],
    ['https://example.org/app/', 'wss://example.org/'],
  ]) {
    const ws = fakeWebSockets();
    const connection = connect({ env: { WebSocket: ws.WebSocket, location: { href: page } } });
    assert.equal(ws.last().url.href, expected);
    connection.close();
  }
});

test('the first connection asks for its topics and nothing else', () => {
  const { ws, connection } = harness({ topics: ['a', 'b'] });
  assert.equal(ws.last().url.search, '?topic=a&topic=b');
  assert.deepEqual(connection.topics, ['a', 'b']);
  const plain = harness();
  assert.equal(plain.ws.last().url.search, '', 'no topic: the demo topic, as the article has it');
});

test('states: connecting, open, reconnecting with the close code, connecting, open, closed', () => {
  const { connection, ws, clock, states, changes } = harness({ random: () => 0 });
  assert.equal(connection.state, 'connecting');
  ws.last().accept();
  assert.equal(connection.state, 'open');
  ws.last().drop(1001, 'going away');
  assert.deepEqual(changes.at(-1), {
    state: 'reconnecting',
    cause: 'closed',
    code: 1001,
    reason: 'going away',
    delay: 250,
  });
  clock.advance(250);
  ws.last().accept();
  connection.close();
  assert.deepEqual(states(), [
    'connecting:start',
    'open:opened',
    'reconnecting:closed',
    'connecting:retry',
    'open:opened',
    'closed:close',
  ]);
  assert.deepEqual(
    changes.filter((change) => change.state === 'open').map((change) => change.first),
    [true, false],
  );
});

test("the demo's messages: the greeting has no id, a broadcast has one, text that is not JSON is kept", () => {
  const { connection, ws, messages } = harness();
  ws.last().accept();
  ws.last().receive({ message: 'Gotcha' });
  ws.last().receive({ id: 'r1-7', message: 'Hello hello!' });
  ws.last().receive('not json');
  assert.deepEqual(messages, [
    { id: null, topic: null, data: { message: 'Gotcha' }, raw: '{"message":"Gotcha"}' },
    {
      id: 'r1-7',
      topic: null,
      data: { id: 'r1-7', message: 'Hello hello!' },
      raw: '{"id":"r1-7","message":"Hello hello!"}',
    },
    { id: null, topic: null, data: 'not json', raw: 'not json' },
  ]);
  assert.equal(connection.lastId, 'r1-7');
});

test('a reconnection resumes after the last id, which survives reconnections that saw none', () => {
  const { connection, ws, clock, changes } = harness({ random: () => 0 });
  ws.last().accept();
  ws.last().receive({ id: 'r1-1', message: 'Hello hello!' });
  ws.last().receive({ id: 'r1-2', message: 'Hello hello!' });
  ws.last().drop(1001);
  clock.advance(changes.at(-1).delay);
  assert.equal(ws.last().url.searchParams.get('since'), 'r1-2');
  // Refused, then open with only the greeting: still r1-2.
  ws.last().drop(1006);
  clock.advance(changes.at(-1).delay);
  ws.last().accept();
  ws.last().receive({ message: 'Gotcha' });
  ws.last().drop(1013);
  clock.advance(changes.at(-1).delay);
  assert.equal(ws.last().url.searchParams.get('since'), 'r1-2');
  ws.last().accept();
  ws.last().receive({ id: 'r1-3', message: 'Hello hello!' });
  connection.reconnect();
  assert.equal(ws.last().url.searchParams.get('since'), 'r1-3');
  assert.equal(connection.lastId, 'r1-3');
});

test('lastId given at the start is resumed from by the first connection', () => {
  const { ws } = harness({ lastId: 'r9-41', topics: ['a'] });
  assert.equal(ws.last().url.search, '?topic=a&since=r9-41');
});

test('the client pings every heartbeat; a pong is a sign of life, never a message', () => {
  const { ws, clock, messages, states } = harness();
  ws.last().accept();
  clock.advance(HEARTBEAT);
  ws.last().receive({ pong: 1 });
  clock.advance(HEARTBEAT);
  ws.last().receive({ pong: 2 });
  clock.advance(HEARTBEAT);
  ws.last().receive({ pong: 3 });
  clock.advance(HEARTBEAT / 2);
  assert.deepEqual(ws.last().sent, [{ ping: 1 }, { ping: 2 }, { ping: 3 }]);
  assert.deepEqual(messages, []);
  assert.deepEqual(states(), ['connecting:start', 'open:opened']);
});

test('two and a half heartbeats of silence: the socket is abandoned and a new one resumes', () => {
  const { connection, ws, clock, changes } = harness({ random: () => 0 });
  ws.last().accept();
  ws.last().receive({ id: 'r1-5', message: 'Hello hello!' });
  clock.advance(2.5 * HEARTBEAT - 1);
  assert.equal(connection.state, 'open', 'not a moment early');
  clock.advance(1);
  assert.deepEqual(changes.at(-1), {
    state: 'reconnecting',
    cause: 'silent',
    silent: 2.5 * HEARTBEAT,
    delay: 250,
  });
  const silent = ws.last();
  assert.equal(silent.closedWith, 1000);
  clock.advance(250);
  assert.equal(ws.sockets.length, 2);
  assert.equal(ws.last().url.searchParams.get('since'), 'r1-5');
  // The abandoned socket's late close changes nothing.
  silent.drop(1006);
  assert.equal(connection.state, 'connecting');
});

test('anything heard keeps the link alive, however long', () => {
  const { connection, ws, clock } = harness();
  ws.last().accept();
  for (let beat = 0; beat < 40; beat += 1) {
    clock.advance(2 * HEARTBEAT);
    ws.last().receive({ id: 'r1-' + beat, message: 'Hello hello!' });
  }
  assert.equal(connection.state, 'open');
  assert.equal(ws.sockets.length, 1);
});

test('a socket that hangs while opening is given up on like a silent one', () => {
  const { ws, clock, changes } = harness();
  clock.advance(2.5 * HEARTBEAT);
  assert.equal(changes.at(-1).cause, 'silent');
  assert.equal(ws.last().closedWith, 1000);
});

test('heartbeat 0: no pings, no watch', () => {
  const { ws, clock } = harness({ heartbeat: 0 });
  ws.last().accept();
  assert.equal(clock.pending, 0);
  clock.advance(3_600_000);
  assert.deepEqual(ws.last().sent, []);
});

test('a socket given up on is ignored: its messages and its close', () => {
  const { connection, ws, messages, states } = harness();
  ws.last().accept();
  const old = ws.last();
  connection.reconnect();
  old.receive({ id: 'r1-1', message: 'late' });
  old.drop(1000);
  assert.deepEqual(messages, []);
  assert.equal(connection.lastId, null);
  assert.deepEqual(states(), ['connecting:start', 'open:opened', 'connecting:request']);
  assert.equal(old.closedWith, 1000);
});

test('send: JSON on an open socket; refused, and nothing sent, otherwise', async () => {
  const { connection, ws } = harness();
  await assert.rejects(connection.send({ message: 'early' }), /not connected/);
  ws.last().accept();
  assert.equal(await connection.send({ message: 'Hello' }), undefined);
  assert.deepEqual(ws.last().sent, [{ message: 'Hello' }]);
});

test('errors and missed-messages notices go to their own callbacks', () => {
  const { ws, errors, missed, messages } = harness();
  ws.last().accept();
  ws.last().receive({ error: 'message must be a JSON object with a string "message"' });
  const notice = { missed: true, since: 'r0-3', reason: 'restarted' };
  ws.last().receive(notice);
  assert.deepEqual(errors, ['message must be a JSON object with a string "message"']);
  assert.deepEqual(missed, [{ ...notice, raw: JSON.stringify(notice) }]);
  assert.deepEqual(messages, []);
});

test('close() is for good: the socket closes, no timer is left, nothing reconnects', () => {
  const { connection, ws, clock, states } = harness();
  ws.last().accept();
  clock.advance(HEARTBEAT);
  connection.close();
  connection.close();
  assert.equal(ws.last().closedWith, 1000);
  assert.equal(clock.pending, 0);
  clock.advance(60_000);
  assert.equal(ws.sockets.length, 1);
  assert.deepEqual(states(), ['connecting:start', 'open:opened', 'closed:close']);
  connection.reconnect();
  assert.equal(ws.sockets.length, 2, 'reconnect() opens again after close()');
});
