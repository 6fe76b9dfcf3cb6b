import assert from 'node:assert/strict';
import test from 'node:test';

import { backoffDelay } from '../realtime.js';
import { harness, seeded } from './fakes.js';

const CEILINGS = [500, 1000, 2000, 4000, 8000, 10000, 10000, 10000];

test('the ceiling doubles from 0.5 s to 10 s, and a delay is between half of it and all of it', () => {
  CEILINGS.forEach((ceiling, attempt) => {
    assert.equal(
      backoffDelay(attempt, () => 0),
      ceiling / 2,
      `attempt ${attempt}`,
    );
    assert.equal(
      backoffDelay(attempt, () => 0.5),
      (ceiling * 3) / 4,
      `attempt ${attempt}`,
    );
    const highest = backoffDelay(attempt, () => 0.9999);
    assert.ok(highest < ceiling && highest > ceiling * 0.999, `attempt ${attempt}: ${highest}`);
  });
  assert.equal(
    backoffDelay(2000, () => 0),
    5000,
    'no overflow after many attempts',
  );
});

test('the initial delay and the largest are options', () => {
  const backoff = { initial: 100, max: 1000 };
  const lows = [0, 1, 2, 3, 4, 5].map((attempt) => backoffDelay(attempt, () => 0, backoff));
  assert.deepEqual(lows, [50, 100, 200, 400, 500, 500]);
});

test('jitter spreads clients over the whole upper half of the ceiling', () => {
  const random = seeded(19);
  const delays = Array.from({ length: 1000 }, () => backoffDelay(3, random));
  assert.ok(delays.every((delay) => delay >= 2000 && delay < 4000));
  assert.ok(Math.min(...delays) < 2050, 'some come back early');
  assert.ok(Math.max(...delays) > 3950, 'some come back late');
  // In 8 bands of 250 ms, each holds about an eighth: none empty, none crowded.
  const bands = new Array(8).fill(0);
  for (const delay of delays) bands[Math.floor((delay - 2000) / 250)] += 1;
  assert.ok(
    bands.every((count) => count > 80 && count < 170),
    `bands ${bands}`,
  );
});

test('failed attempts in a row wait longer each time, and the next one starts exactly then', () => {
  const random = seeded(7);
  const draws = seeded(7);
  const { ws, clock, changes } = harness({ random, heartbeat: 0 });
  for (let attempt = 0; attempt < 7; attempt += 1) {
    ws.last().drop(1006);
    const change = changes.at(-1);
    assert.equal(change.state, 'reconnecting');
    assert.equal(change.delay, backoffDelay(attempt, draws));
    assert.ok(change.delay >= CEILINGS[attempt] / 2 && change.delay < CEILINGS[attempt]);
    const before = ws.sockets.length;
    clock.advance(change.delay - 1);
    assert.equal(ws.sockets.length, before, 'not before the delay');
    clock.advance(1);
    assert.equal(ws.sockets.length, before + 1, 'at the delay');
  }
});

test('an open resets the backoff to its first delay', () => {
  const { ws, clock, changes } = harness({ random: () => 0, heartbeat: 0 });
  for (const expected of [250, 500, 1000]) {
    ws.last().drop(1006);
    assert.equal(changes.at(-1).delay, expected);
    clock.advance(expected);
  }
  ws.last().accept();
  ws.last().drop(1001);
  assert.equal(changes.at(-1).delay, 250);
});

test('reconnect() connects at once, and resets the backoff', () => {
  const { connection, ws, clock, changes } = harness({ random: () => 0, heartbeat: 0 });
  ws.last().drop(1006);
  clock.advance(250);
  ws.last().drop(1006);
  assert.equal(changes.at(-1).delay, 500);
  connection.reconnect();
  assert.equal(ws.sockets.length, 3);
  assert.deepEqual(changes.at(-1), { state: 'connecting', cause: 'request' });
  ws.last().drop(1006);
  assert.equal(changes.at(-1).delay, 250);
  clock.advance(10_000);
  assert.equal(ws.sockets.length, 4, 'the timer of the dropped attempt was cancelled');
});
