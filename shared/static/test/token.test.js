import assert from 'node:assert/strict';
import test from 'node:test';

import { tokenExpiry } from '../realtime.js';
import { Clock, harness, jwt, settle } from './fakes.js';

/** A token function handing out tokens that expire `lifetime` ms after they are made. */
function issuer(clock, lifetime) {
  const issued = [];
  const getToken = () => {
    const token = jwt({
      sub: 'user:42',
      n: issued.length + 1,
      exp: (clock.now() + lifetime) / 1000,
    });
    issued.push(token);
    return token;
  };
  return { getToken, issued };
}

test("tokenExpiry reads a JWT's exp, and gives null for anything else", () => {
  assert.equal(tokenExpiry(jwt({ sub: 'a', exp: 1_700_000_000 })), 1_700_000_000_000);
  assert.equal(tokenExpiry(jwt({ sub: 'a' })), null);
  assert.equal(tokenExpiry('opaque-token'), null);
  assert.equal(tokenExpiry('a.!!!.b'), null);
  assert.equal(
    tokenExpiry('a.' + Buffer.from('{"exp":"soon"}').toString('base64url') + '.b'),
    null,
  );
});

test('a fixed token rides in the query of every connection, and as a Bearer on POSTs', async () => {
  const { ws, clock, changes } = harness({ token: 'abc', lastId: 'r1-1' });
  assert.equal(ws.last().url.search, '?since=r1-1&token=abc');
  ws.last().drop(1006);
  clock.advance(changes.at(-1).delay);
  assert.equal(ws.last().url.searchParams.get('token'), 'abc');
  const { connection, http } = harness({ transport: 'sse', token: 'abc' });
  await connection.send({ message: 'hi' });
  assert.equal(http.requests[0].headers.Authorization, 'Bearer abc');
});

test('a token function is asked before the first connection, and not again while its token is good', async () => {
  const clock = new Clock();
  const { getToken, issued } = issuer(clock, 3_600_000);
  const { ws, changes } = harness({ token: getToken, clock });
  assert.equal(ws.sockets.length, 0, 'waits for the token');
  await settle();
  assert.equal(issued.length, 1);
  assert.equal(ws.last().url.searchParams.get('token'), issued[0]);
  ws.last().accept();
  ws.last().drop(1001);
  clock.advance(changes.at(-1).delay);
  await settle();
  assert.equal(issued.length, 1);
  assert.equal(ws.last().url.searchParams.get('token'), issued[0]);
});

test("a WebSocket's token is refreshed 30 s before it expires, on the open socket", async () => {
  const clock = new Clock();
  const { getToken, issued } = issuer(clock, 120_000);
  const { ws, states } = harness({ token: getToken, heartbeat: 0, clock });
  await settle();
  ws.last().accept();
  clock.advance(90_000 - 1);
  await settle();
  assert.equal(issued.length, 1, 'not a moment early');
  clock.advance(1);
  await settle();
  assert.equal(issued.length, 2);
  assert.deepEqual(ws.last().sent, [{ token: issued[1] }]);
  assert.equal(ws.sockets.length, 1, 'no reconnection for a refresh');
  // And again 30 s before the fresh one expires.
  clock.advance(90_000);
  await settle();
  assert.deepEqual(ws.last().sent, [{ token: issued[1] }, { token: issued[2] }]);
  assert.deepEqual(states(), ['connecting:start', 'open:opened']);
  // A later connection carries the freshest token.
  ws.last().drop(1001);
  clock.advance(10_000);
  assert.equal(ws.last().url.searchParams.get('token'), issued[2]);
});

test('a short-lived token is refreshed halfway through its life', async () => {
  const clock = new Clock();
  const { getToken, issued } = issuer(clock, 20_000);
  const { ws } = harness({ token: getToken, heartbeat: 0, clock });
  await settle();
  ws.last().accept();
  clock.advance(10_000);
  await settle();
  assert.equal(issued.length, 2);
  assert.deepEqual(ws.last().sent, [{ token: issued[1] }]);
});

test('an event stream reopens with the fresh token, resuming where it was', async () => {
  const clock = new Clock();
  const { getToken, issued } = issuer(clock, 120_000);
  const { sse, states } = harness({ transport: 'sse', token: getToken, heartbeat: 0, clock });
  await settle();
  sse.last().accept();
  sse.last().event({ message: 'Hello hello!' }, 'r1-3');
  clock.advance(90_000);
  await settle();
  assert.equal(sse.sources[0].readyState, 2, 'the old stream is closed');
  const fresh = sse.last().url.searchParams;
  assert.equal(fresh.get('token'), issued[1]);
  assert.equal(fresh.get('lastEventId'), 'r1-3');
  sse.last().accept();
  assert.deepEqual(states(), [
    'connecting:start',
    'open:opened',
    'connecting:token',
    'open:opened',
  ]);
});

test('a close in the 4000s (an expired token, say) gets a fresh token before the next connection', async () => {
  let asked = 0;
  const { ws, clock, changes } = harness({ token: () => 'token-' + ++asked, heartbeat: 0 });
  await settle();
  ws.last().accept();
  ws.last().drop(1001);
  clock.advance(changes.at(-1).delay);
  await settle();
  assert.equal(asked, 1, 'going away is not about the token');
  ws.last().accept();
  ws.last().drop(4001, 'token expired');
  clock.advance(changes.at(-1).delay);
  await settle();
  assert.equal(asked, 2);
  assert.equal(ws.last().url.searchParams.get('token'), 'token-2');
});

test('a token function that fails: reconnecting, with backoff, and asked again', async () => {
  let calls = 0;
  const token = async () => {
    calls += 1;
    if (calls < 3) throw new Error('the app is down');
    return 'at-last';
  };
  const { ws, clock, changes, states } = harness({ token, random: () => 0, heartbeat: 0 });
  await settle();
  assert.equal(changes.at(-1).cause, 'no-token');
  assert.equal(changes.at(-1).error.message, 'the app is down');
  assert.equal(changes.at(-1).delay, 250);
  clock.advance(250);
  await settle();
  assert.equal(changes.at(-1).delay, 500);
  clock.advance(500);
  await settle();
  assert.equal(ws.sockets.length, 1);
  assert.equal(ws.last().url.searchParams.get('token'), 'at-last');
  assert.deepEqual(states(), [
    'connecting:start',
    'reconnecting:no-token',
    'connecting:retry',
    'reconnecting:no-token',
    'connecting:retry',
  ]);
});

test('setToken while the socket opens: sent as soon as it is open', () => {
  const { connection, ws } = harness({ token: 'old' });
  connection.setToken('new');
  assert.equal(ws.last().url.searchParams.get('token'), 'old');
  ws.last().accept();
  assert.deepEqual(ws.last().sent, [{ token: 'new' }]);
  connection.setToken('newer');
  assert.deepEqual(ws.last().sent, [{ token: 'new' }, { token: 'newer' }]);
});

test('a token being fetched for a connection no longer wanted is not used for it', async () => {
  let release;
  const { connection, ws } = harness({
    token: () => new Promise((resolve) => (release = resolve)),
  });
  await settle();
  connection.close();
  release('late');
  await settle();
  assert.equal(ws.sockets.length, 0);
  assert.equal(connection.state, 'closed');
});
