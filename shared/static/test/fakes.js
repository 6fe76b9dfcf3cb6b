// Stand-ins for what realtime.js takes from the browser: a clock whose time
// moves only when a test says so, WebSocket and EventSource classes that a
// test drives from the server's side, fetch, and randomness.

import { connect } from '../realtime.js';

/** Timers that fire only in `advance`, in order of their time. */
export class Clock {
  time = 1_000_000;
  #timers = new Map();
  #next = 1;

  now = () => this.time;

  setTimeout = (callback, ms) => {
    const id = this.#next++;
    this.#timers.set(id, { at: this.time + Math.max(0, ms), callback });
    return id;
  };

  clearTimeout = (id) => {
    this.#timers.delete(id);
  };

  /** How many timers are waiting. */
  get pending() {
    return this.#timers.size;
  }

  /** Moves time on by `ms`, firing every timer that falls due, in order. */
  advance(ms) {
    const end = this.time + ms;
    for (;;) {
      let due = null;
      for (const [id, timer] of this.#timers) {
        if (timer.at <= end && (due === null || timer.at < due[1].at)) due = [id, timer];
      }
      if (due === null) break;
      this.#timers.delete(due[0]);
      this.time = due[1].at;
      due[1].callback();
    }
    this.time = end;
  }
}

/** WebSockets the module opened, newest last, each driven by the test. */
export function fakeWebSockets() {
  const sockets = [];
  class FakeWebSocket {
    constructor(url) {
      this.url = new URL(url);
      this.readyState = 0;
      this.sent = [];
      this.closedWith = null;
      sockets.push(this);
    }
    send(text) {
      if (this.readyState !== 1) throw new Error('send on a socket that is not open');
      this.sent.push(JSON.parse(text));
    }
    // The module closing it; a browser fires onclose later, if at all.
    close(code) {
      this.closedWith = code;
      this.readyState = 3;
    }
    // The server's side.
    accept() {
      this.readyState = 1;
      this.onopen?.({});
    }
    receive(message) {
      this.onmessage?.({ data: typeof message === 'string' ? message : JSON.stringify(message) });
    }
    drop(code = 1006, reason = '') {
      this.readyState = 3;
      this.onclose?.({ code, reason });
    }
  }
  return { WebSocket: FakeWebSocket, sockets, last: () => sockets.at(-1) };
}

/** EventSources the module opened, newest last, each driven by the test. */
export function fakeEventSources() {
  const sources = [];
  class FakeEventSource {
    constructor(url, init) {
      this.url = new URL(url);
      this.withCredentials = Boolean(init?.withCredentials);
      this.readyState = 0;
      this.lastEventId = '';
      this.listeners = {};
      sources.push(this);
    }
    addEventListener(type, listener) {
      (this.listeners[type] ??= []).push(listener);
    }
    close() {
      this.readyState = 2;
    }
    // The server's side.
    accept() {
      this.readyState = 1;
      this.onopen?.({});
    }
    // An unnamed event; like a browser's, lastEventId stays when `id` is absent.
    event(data, id) {
      if (id !== undefined) this.lastEventId = id;
      const text = typeof data === 'string' ? data : JSON.stringify(data);
      this.onmessage?.({ data: text, lastEventId: this.lastEventId });
    }
    named(type, data) {
      for (const listener of this.listeners[type] ?? []) listener({ data });
    }
    // The stream dropped: the browser retries by itself.
    lose() {
      this.readyState = 0;
      this.onerror?.({});
    }
    // An error status: the browser gives up.
    refuse() {
      this.readyState = 2;
      this.onerror?.({});
    }
  }
  return { EventSource: FakeEventSource, sources, last: () => sources.at(-1) };
}

/** A fetch that records each request and answers `status` with `body`. */
export function fakeFetch(status = 200, body = '{"id":"r-1"}') {
  const requests = [];
  const fetch = async (url, init) => {
    requests.push({ url, ...init });
    return { status, ok: status >= 200 && status < 300, text: async () => body };
  };
  return { fetch, requests };
}

/** Randomness from a fixed seed (mulberry32): the same numbers every run. */
export function seeded(seed) {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A JWT whose payload is `claims` (unsigned: the module never checks it). */
export function jwt(claims) {
  const part = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
  return part({ alg: 'HS256', typ: 'JWT' }) + '.' + part(claims) + '.c2lnbmF0dXJl';
}

/** Lets promise callbacks run (a token function's answer, say). */
export function settle() {
  return new Promise((resolve) => setImmediate(resolve));
}

/**
 * connect() with every fake, recording what it reports: `changes` (each
 * onState), `messages`, `missed` and `errors`. `clock` may be given, for a
 * token function that reads it.
 */
export function harness({ random = () => 0.5, clock = new Clock(), env = {}, ...options } = {}) {
  const ws = fakeWebSockets();
  const sse = fakeEventSources();
  const http = fakeFetch();
  const seen = { changes: [], messages: [], missed: [], errors: [] };
  const connection = connect({
    url: options.transport === 'sse' ? 'http://demo.test/sse' : 'ws://demo.test/',
    heartbeat: 1000,
    ...options,
    onState: (change) => seen.changes.push(change),
    onMessage: (message) => seen.messages.push(message),
    onMissed: (notice) => seen.missed.push(notice),
    onError: (error) => seen.errors.push(error),
    env: {
      WebSocket: ws.WebSocket,
      EventSource: sse.EventSource,
      fetch: http.fetch,
      setTimeout: clock.setTimeout,
      clearTimeout: clock.clearTimeout,
      now: clock.now,
      random,
      location: undefined,
      ...env,
    },
  });
  const states = () => seen.changes.map((change) => change.state + ':' + change.cause);
  return { connection, clock, ws, sse, http, ...seen, states };
}
