// realtime.js: the browser client of these servers, one ES module with no
// dependencies. Both servers serve it at `/realtime.js`; the demo pages use it.
//
//   import { connect } from '/realtime.js';
//   const connection = connect({
//     transport: 'websocket',            // or 'sse': the same calls over an event stream
//     topics: ['scores'],                // none: the demo's own topic
//     onMessage: (message) => console.log(message.topic, message.id, message.data),
//     onState: (change) => console.log(change.state, change.cause),
//   });
//
// It reconnects with jittered backoff, resumes after the last id it saw
// (`?since=` on a WebSocket, `Last-Event-ID` or `?lastEventId=` on an event
// stream), notices a dead link by the server's heartbeat, carries a token and
// refreshes it before it expires. Everything it touches outside itself (the
// WebSocket and EventSource constructors, fetch, timers, the clock,
// randomness) comes from `env`, so that its tests run under Node with none of
// them real.

/** @typedef {'connecting' | 'open' | 'reconnecting' | 'closed'} State */

/**
 * Why the state changed:
 * - connecting: `start` (the first connection), `retry` (after a backoff
 *   delay), `request` ({@link Connection.reconnect}), `topics` (an event
 *   stream reopened for new topics), `token` (an event stream reopened to
 *   carry a fresh token);
 * - open: `opened`;
 * - reconnecting: `closed` (the WebSocket closed; `code`, `reason`),
 *   `silent` (nothing heard for `silent` ms), `lost` (the event stream
 *   dropped and the browser retries by itself: no `delay`), `refused` (the
 *   server answered the event stream with an error status, or the browser
 *   gave up on it), `no-token` (the token function failed; `error`);
 * - closed: `close` ({@link Connection.close}).
 * @typedef {'start' | 'retry' | 'request' | 'topics' | 'token' | 'opened' | 'closed'
 *   | 'silent' | 'lost' | 'refused' | 'no-token' | 'close'} Cause
 */

/**
 * A change of state, as `onState` gets it.
 * @typedef {object} Change
 * @property {State} state The state now.
 * @property {Cause} cause Why.
 * @property {boolean} [first] open: whether this is the connection's first open.
 * @property {number} [delay] reconnecting: milliseconds until the next attempt.
 * @property {number} [code] cause `closed`: the WebSocket close code.
 * @property {string} [reason] cause `closed`: the close reason the server gave.
 * @property {number} [silent] cause `silent`: milliseconds without a sign of life.
 * @property {unknown} [error] cause `no-token`: what the token function threw.
 */

/**
 * A broadcast, or a message for this client only (the demo's greeting).
 * @typedef {object} Message
 * @property {string | null} id The broadcast's id; null for a message that has none.
 * @property {string | null} topic The topic, for a topic's broadcast; null on the demo's topic.
 * @property {unknown} data A topic's broadcast: what was published; otherwise the whole
 *   JSON message (`{"id":..,"message":..}`), or the text itself when it is not JSON.
 * @property {string} raw The text as it arrived.
 */

/**
 * A missed-messages notice: the id resumed from could not be served.
 * @typedef {object} Missed
 * @property {string} [since] The id the connection resumed from.
 * @property {string} [reason] `expired`, `restarted` or `unknown`.
 * @property {string} [topic] The topic, when the notice is about one.
 * @property {string} raw The notice as it arrived.
 */

/**
 * The server's answer to {@link Connection.send} over an event stream.
 * @typedef {object} Reply
 * @property {number} status
 * @property {boolean} ok
 * @property {string} body
 */

/**
 * What the module uses from its surroundings; the browser's by default.
 * @typedef {object} Env
 * @property {new (url: string) => WebSocket} WebSocket
 * @property {new (url: string, init?: {withCredentials?: boolean}) => EventSource} EventSource
 * @property {typeof fetch} fetch
 * @property {(callback: () => void, ms: number) => unknown} setTimeout
 * @property {(timer: any) => void} clearTimeout
 * @property {() => number} now Milliseconds since the Unix epoch.
 * @property {() => number} random A number in [0, 1).
 * @property {{href: string} | undefined} location What relative URLs resolve against.
 */

/**
 * @typedef {object} Backoff
 * @property {number} [initial] The first delay's ceiling, ms (500).
 * @property {number} [max] The largest ceiling, ms (10,000).
 */

/**
 * Options of {@link connect}.
 * @typedef {object} Options
 * @property {'websocket' | 'sse'} [transport] `websocket` (the default) or `sse`.
 * @property {string} [url] The WebSocket (`/` by default) or the event stream
 *   (`/sse`); relative to the page, and `http(s):` becomes `ws(s):` for a WebSocket.
 * @property {string[]} [topics] The topics to be on; none: the demo's own topic.
 * @property {string | (() => string | Promise<string>)} [token] A token, or a
 *   function that gets a fresh one: asked before a connection when there is
 *   none yet or it is due, and ahead of its `exp` (a JWT's) to refresh it.
 * @property {number} [refreshBefore] How long before the token's `exp` to
 *   refresh it, ms (30,000; at half its remaining life when that is sooner).
 * @property {number} [heartbeat] The server's heartbeat, ms (30,000): after
 *   two and a half of them without a sign of life the link is taken for dead.
 *   A WebSocket sends its own `{"ping":N}` every heartbeat. 0: no watch.
 * @property {Backoff} [backoff] Delays between attempts.
 * @property {string | null} [lastId] Resume after this id from the first connection on.
 * @property {string} [sendUrl] Event stream only: where `send` POSTs (`/api`,
 *   relative to `url`).
 * @property {boolean} [withCredentials] Event stream only: send cookies to another origin.
 * @property {(change: Change) => void} [onState] Each change of state, and each new attempt.
 * @property {(message: Message) => void} [onMessage] Each broadcast or message.
 * @property {(notice: Missed) => void} [onMissed] Each missed-messages notice.
 * @property {(error: string) => void} [onError] Each `{"error": ...}` the
 *   WebSocket server sends (about something this client sent).
 * @property {Partial<Env>} [env] Replacements for the browser's, for tests.
 */

/**
 * What {@link connect} returns.
 * @typedef {object} Connection
 * @property {State} state
 * @property {string | null} lastId The last broadcast id seen: where a reconnection resumes.
 * @property {string[]} topics The topics asked for.
 * @property {(topic: string) => Promise<void>} subscribe Resolves once the
 *   server has it (see {@link connect}); rejects if it refuses, and the topic is dropped.
 * @property {(topic: string) => Promise<void>} unsubscribe
 * @property {(data: unknown) => Promise<Reply | undefined>} send Sends `data`
 *   as JSON: on the WebSocket (rejects when it is not open), or as a POST to
 *   `sendUrl` (resolves with the answer).
 * @property {(token: string) => void} setToken Use this token from now on:
 *   sent on an open WebSocket as `{"token": ...}`; an event stream reopens with it.
 * @property {() => void} reconnect Reconnect now (also after `close`), resuming.
 * @property {() => void} close Close for good; pending topic requests reject.
 */

const SOCKET_OPEN = 1;
const SOURCE_CLOSED = 2;
/** How many heartbeats of silence mean the link is dead. */
const SILENT_HEARTBEATS = 2.5;

/**
 * The delay before reconnection attempt `attempt` (0 for the first): a
 * ceiling that doubles from `initial` up to `max`, and a delay between half
 * the ceiling and all of it, so that clients dropped together do not all
 * come back at the same moment.
 * @param {number} attempt
 * @param {() => number} random
 * @param {Backoff} [backoff]
 * @returns {number} Milliseconds.
 */
export function backoffDelay(attempt, random, { initial = 500, max = 10000 } = {}) {
  const ceiling = Math.min(max, initial * 2 ** attempt);
  return ceiling / 2 + random() * (ceiling / 2);
}

/**
 * When a JWT expires (its `exp` claim), read without checking its signature:
 * only the server can trust a token; the client just needs to know when to
 * refresh it.
 * @param {string} token
 * @returns {number | null} Milliseconds since the Unix epoch, or null.
 */
export function tokenExpiry(token) {
  const payload = token.split('.')[1];
  if (!payload) return null;
  try {
    const exp = JSON.parse(atob(payload.replace(/-/g, '+').replace(/_/g, '/'))).exp;
    return typeof exp === 'number' ? exp * 1000 : null;
  } catch {
    return null;
  }
}

/**
 * A JSON object: not null, not an array.
 * @param {unknown} value
 * @returns {value is Record<string, any>}
 */
function isObject(value) {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/** @returns {Env} */
function browserEnv() {
  const global = /** @type {any} */ (globalThis);
  return {
    WebSocket: global.WebSocket,
    EventSource: global.EventSource,
    fetch: (...args) => global.fetch(...args),
    setTimeout: (callback, ms) => global.setTimeout(callback, ms),
    clearTimeout: (timer) => global.clearTimeout(timer),
    now: () => Date.now(),
    random: () => Math.random(),
    location: global.location,
  };
}

/**
 * Connects, and keeps connecting until {@link Connection.close}.
 *
 * Topics: `topics` go in the connection's URL (`?topic=a&topic=b`). On an
 * open WebSocket, `subscribe` and `unsubscribe` send `{"subscribe":"t"}` and
 * `{"unsubscribe":"t"}` and resolve on the server's `{"subscribed":"t"}` /
 * `{"unsubscribed":"t"}`; an `{"error":...}` while requests wait is taken as
 * the answer to the oldest (the server answers them in order). An event
 * stream cannot change its topics: it reopens with the new ones, resuming
 * after the last id, and the request resolves when it opens (or rejects,
 * undone, if the stream is refused). Either way the next connection carries
 * the topics asked for.
 *
 * Tokens: a browser cannot put a header on a WebSocket or an EventSource, so
 * the token goes in the `token` query parameter of each connection (it can end
 * up in proxy logs: on the same site, a cookie set by the app is better, and
 * then no token is given here). A fresh token reaches an open WebSocket as
 * `{"token": ...}`; an event stream reopens with it. Over an event stream,
 * `send` carries the token as `Authorization: Bearer`.
 *
 * @param {Options} [options]
 * @returns {Connection}
 */
export function connect(options = {}) {
  const env = { ...browserEnv(), ...options.env };
  const transport = options.transport ?? 'websocket';
  if (transport !== 'websocket' && transport !== 'sse') {
    throw new TypeError('transport must be "websocket" or "sse", not ' + JSON.stringify(transport));
  }
  const websocket = transport === 'websocket';
  const base = new URL(options.url ?? (websocket ? '/' : '/sse'), env.location?.href);
  if (websocket) base.protocol = base.protocol.replace(/^http/, 'ws');
  const sendUrl = new URL(options.sendUrl ?? '/api', base).href;
  const heartbeat = options.heartbeat ?? 30000;
  const refreshBefore = options.refreshBefore ?? 30000;
  const getToken = typeof options.token === 'function' ? options.token : null;

  /** @type {State} */
  let state = 'connecting';
  let lastId = options.lastId ?? null;
  const topics = new Set(options.topics ?? []);
  /** @type {string | null} */
  let token = typeof options.token === 'string' ? options.token : null;
  // Ask getToken again before the next connection: the token may be why the
  // last one failed.
  let tokenStale = false;
  let refreshAt = Infinity;
  let attempts = 0;
  let opens = 0;
  let pings = 0;
  let lastHeard = 0;
  // Bumped whenever what is under way must be forgotten (a token being
  // fetched for a connection that is no longer wanted).
  let generation = 0;
  /** @type {Link | null} */
  let link = null;
  /** @type {any} */
  let retryTimer = null;
  /** @type {any} */
  let watchTimer = null;
  /** @type {any} */
  let pingTimer = null;
  /** @type {any} */
  let refreshTimer = null;
  /**
   * A subscribe (`on`) or unsubscribe waiting for its answer.
   * @typedef {object} Request
   * @property {string} topic
   * @property {boolean} on
   * @property {Link | null} link The WebSocket that carried its message; null
   *   while the next handshake is to carry it.
   * @property {() => void} resolve
   * @property {(error: Error) => void} reject
   * @property {Promise<void>} [promise]
   */
  /** @type {Request[]} Oldest first. */
  const pending = [];

  /**
   * One WebSocket or EventSource. Its events count only while it is `link`:
   * one the module gave up on may still fire, and is ignored.
   * @typedef {object} Link
   * @property {string[]} topics The topics its URL carried.
   * @property {string | null} token The token its URL carried.
   * @property {boolean} open
   * @property {(payload: unknown) => void} send
   * @property {() => void} close
   */

  /**
   * @param {State} next
   * @param {Omit<Change, 'state'>} change
   */
  function report(next, change) {
    state = next;
    options.onState?.({ state: next, ...change });
  }

  /** The URL of the next connection. */
  function address() {
    const url = new URL(base);
    for (const topic of topics) url.searchParams.append('topic', topic);
    if (lastId) url.searchParams.set(websocket ? 'since' : 'lastEventId', lastId);
    if (token) url.searchParams.set('token', token);
    return url.href;
  }

  /** @param {Cause} cause */
  function start(cause) {
    const current = ++generation;
    stop();
    report('connecting', { cause });
    const due = getToken && (!token || tokenStale || env.now() >= refreshAt);
    if (!due) {
      open();
      return;
    }
    Promise.resolve()
      .then(getToken)
      .then(
        (fresh) => {
          if (current !== generation) return;
          adopt(fresh);
          open();
        },
        (error) => {
          if (current === generation) retry({ cause: 'no-token', error });
        },
      );
  }

  function open() {
    link = websocket ? openSocket(address()) : openStream(address());
    watch();
  }

  /** Forgets the current link and every timer but the token's. */
  function stop() {
    env.clearTimeout(retryTimer);
    env.clearTimeout(watchTimer);
    env.clearTimeout(pingTimer);
    const old = link;
    link = null;
    old?.close();
  }

  /** @param {Omit<Change, 'state' | 'delay'>} change */
  function retry(change) {
    stop();
    const delay = backoffDelay(attempts, env.random, options.backoff);
    attempts += 1;
    retryTimer = env.setTimeout(() => start('retry'), delay);
    report('reconnecting', { ...change, delay });
  }

  /** @param {string} url */
  function openSocket(url) {
    const socket = new env.WebSocket(url);
    /** @type {Link} */
    const mine = {
      topics: [...topics],
      token,
      open: false,
      send: (payload) => socket.send(JSON.stringify(payload)),
      close: () => socket.close(1000),
    };
    socket.onopen = () => {
      if (link !== mine) return;
      mine.open = true;
      opened();
    };
    socket.onmessage = (event) => {
      if (link !== mine) return;
      lastHeard = env.now();
      receive(String(event.data));
    };
    socket.onclose = (event) => {
      if (link !== mine) return;
      link = null;
      // Closed before it opened (refused?) or in the range servers use for
      // their own reasons, such as an expired token: get a fresh one.
      if (!mine.open || (event.code >= 4000 && event.code < 5000)) tokenStale = true;
      retry({ cause: 'closed', code: event.code, reason: event.reason });
    };
    return mine;
  }

  /** @param {string} url */
  function openStream(url) {
    const source = new env.EventSource(url, { withCredentials: Boolean(options.withCredentials) });
    /** @type {Link} */
    const mine = {
      topics: [...topics],
      token,
      open: false,
      send: () => {},
      close: () => source.close(),
    };
    const heard = () => {
      if (link !== mine) return false;
      lastHeard = env.now();
      return true;
    };
    source.addEventListener('ping', heard);
    source.onopen = () => {
      if (!heard()) return;
      mine.open = true;
      opened();
    };
    source.onmessage = (event) => {
      if (!heard()) return;
      // The browser keeps lastEventId on later events that have no id (the
      // greeting after a reconnect): an id is this event's only when new.
      const id = event.lastEventId && event.lastEventId !== lastId ? event.lastEventId : null;
      deliver(parse(event.data), event.data, id);
    };
    source.addEventListener('missed', (event) => {
      if (heard()) missed(parse(event.data), event.data);
    });
    source.onerror = () => {
      if (link !== mine) return;
      if (source.readyState === SOURCE_CLOSED) {
        // An error status (401, 403, 503...) or a bad answer: the browser
        // will not retry, so the module does, with a fresh token if it can.
        link = null;
        tokenStale = true;
        const error = new Error('the event stream was refused');
        for (const request of [...pending]) answer(request, error);
        retry({ cause: 'refused' });
      } else {
        mine.open = false;
        report('reconnecting', { cause: 'lost' });
      }
    };
    return mine;
  }

  function opened() {
    const mine = /** @type {Link} */ (link);
    attempts = 0;
    opens += 1;
    lastHeard = env.now();
    if (websocket) {
      if (token && token !== mine.token) mine.send({ token });
      // What the URL carried is done; what was asked for while it opened
      // (or sent on a link since lost, and not in the URL) is sent now, in
      // order.
      const carried = new Set(mine.topics);
      for (const request of [...pending]) {
        if (carried.has(request.topic) === request.on) {
          answer(request);
        } else {
          if (request.on) carried.add(request.topic);
          else carried.delete(request.topic);
          request.link = mine;
          mine.send(request.on ? { subscribe: request.topic } : { unsubscribe: request.topic });
        }
      }
      ping(mine);
    } else {
      // Every change of topics reopened the stream: this one carries them all.
      for (const request of [...pending]) answer(request);
    }
    report('open', { cause: 'opened', first: opens === 1 });
  }

  /**
   * Answers a topic request: resolved, or rejected with `error`; `undo`
   * drops a refused subscription from the topics asked for.
   * @param {Request} request
   * @param {Error} [error]
   * @param {boolean} [undo]
   */
  function answer(request, error, undo = true) {
    pending.splice(pending.indexOf(request), 1);
    if (!error) {
      request.resolve();
      return;
    }
    if (undo && request.on) topics.delete(request.topic);
    request.reject(error);
  }

  /** Our own ping every heartbeat, answered to this client alone: the
   * protocol's pings never reach JavaScript, so this is how an idle link is
   * heard to be alive.
   * @param {Link} mine */
  function ping(mine) {
    if (!heartbeat) return;
    pingTimer = env.setTimeout(() => {
      mine.send({ ping: ++pings });
      ping(mine);
    }, heartbeat);
  }

  /** Watches for a dead link (a laptop that slept, a network that changed, a
   * frozen server): opening counts, since a connection that hangs is as dead
   * as a silent one. */
  function watch() {
    if (!heartbeat) return;
    const limit = heartbeat * SILENT_HEARTBEATS;
    lastHeard = env.now();
    const check = () => {
      const silent = env.now() - lastHeard;
      if (silent >= limit) retry({ cause: 'silent', silent });
      else watchTimer = env.setTimeout(check, limit - silent);
    };
    watchTimer = env.setTimeout(check, limit);
  }

  /** @param {string} text */
  function parse(text) {
    try {
      return { value: JSON.parse(text) };
    } catch {
      return null;
    }
  }

  /** A WebSocket message: a broadcast, or an answer to this client.
   * @param {string} text */
  function receive(text) {
    const parsed = parse(text);
    const value = parsed?.value;
    if (!isObject(value)) {
      deliver(parsed, text, null);
    } else if (value.missed === true) {
      missed(parsed, text);
    } else if ('pong' in value) {
      // The answer to our ping: a sign of life, nothing more.
    } else if (typeof value.error === 'string') {
      const request = pending.find((each) => each.link === link);
      if (request) answer(request, new Error(value.error));
      options.onError?.(value.error);
    } else if (typeof value.subscribed === 'string' || typeof value.unsubscribed === 'string') {
      const on = typeof value.subscribed === 'string';
      const topic = on ? value.subscribed : value.unsubscribed;
      const request = pending.find(
        (each) => each.link === link && each.on === on && each.topic === topic,
      );
      if (request) answer(request);
    } else {
      deliver(parsed, text, typeof value.id === 'string' ? value.id : null);
    }
  }

  /**
   * @param {{value: any} | null} parsed
   * @param {string} raw
   * @param {string | null} id
   */
  function deliver(parsed, raw, id) {
    const value = parsed?.value;
    const onTopic = isObject(value) && typeof value.topic === 'string' && 'data' in value;
    if (id) lastId = id;
    options.onMessage?.({
      id,
      topic: onTopic ? value.topic : null,
      data: parsed ? (onTopic ? value.data : value) : raw,
      raw,
    });
  }

  /**
   * @param {{value: any} | null} parsed
   * @param {string} raw
   */
  function missed(parsed, raw) {
    const value = parsed?.value;
    const notice = isObject(value) ? value : {};
    options.onMissed?.({ ...notice, raw });
  }

  /** @param {string} fresh */
  function adopt(fresh) {
    token = fresh;
    tokenStale = false;
    scheduleRefresh();
  }

  /** With a token function, asks it again ahead of the token's `exp`. */
  function scheduleRefresh() {
    env.clearTimeout(refreshTimer);
    refreshAt = Infinity;
    const expiry = token && tokenExpiry(token);
    if (!getToken || !expiry) return;
    const left = expiry - env.now();
    // Halfway when the token has less than `refreshBefore` left, so a short
    // one is refreshed in time too.
    refreshAt = env.now() + Math.max(left - refreshBefore, left / 2);
    // Already expired: the next connection asks for another.
    if (left > 0) refreshTimer = env.setTimeout(refresh, refreshAt - env.now());
  }

  function refresh() {
    Promise.resolve()
      .then(/** @type {() => string | Promise<string>} */ (getToken))
      .then(
        (fresh) => {
          if (state !== 'closed') setToken(fresh);
        },
        () => {
          // The server closes the connection when the token expires; the
          // reconnection asks again, with backoff, and says so.
          tokenStale = true;
        },
      );
  }

  /** @param {string} fresh */
  function setToken(fresh) {
    adopt(fresh);
    if (state === 'closed' || !link) return;
    if (!websocket) start('token');
    else if (link.open) {
      link.token = fresh;
      link.send({ token: fresh });
    }
    // A WebSocket still opening is sent it once open.
  }

  /**
   * @param {string} topic
   * @param {boolean} on
   * @returns {Promise<void>}
   */
  function change(topic, on) {
    if (state === 'closed') return Promise.reject(new Error('the connection is closed'));
    const waiting = pending.findLast((each) => each.topic === topic);
    if (waiting?.on === on) return /** @type {Promise<void>} */ (waiting.promise);
    if (!waiting && topics.has(topic) === on) return Promise.resolve();
    if (on) topics.add(topic);
    else topics.delete(topic);
    /** @type {Request} */
    const request = { topic, on, link: null, resolve: () => {}, reject: () => {} };
    request.promise = new Promise((resolve, reject) => {
      request.resolve = resolve;
      request.reject = reject;
    });
    pending.push(request);
    if (!websocket) {
      if (link) start('topics');
    } else if (link?.open) {
      request.link = link;
      link.send(on ? { subscribe: topic } : { unsubscribe: topic });
    }
    return request.promise;
  }

  /** @param {unknown} data */
  async function post(data) {
    /** @type {Record<string, string>} */
    const headers = { 'Content-Type': 'application/json' };
    if (token) headers.Authorization = 'Bearer ' + token;
    const response = await env.fetch(sendUrl, {
      method: 'POST',
      headers,
      body: JSON.stringify(data),
    });
    return { status: response.status, ok: response.ok, body: await response.text() };
  }

  start('start');

  return Object.freeze({
    get state() {
      return state;
    },
    get lastId() {
      return lastId;
    },
    get topics() {
      return [...topics];
    },
    subscribe: (/** @type {string} */ topic) => change(topic, true),
    unsubscribe: (/** @type {string} */ topic) => change(topic, false),
    send(/** @type {unknown} */ data) {
      if (!websocket) return post(data);
      if (!link?.open) return Promise.reject(new Error('not connected'));
      link.send(data);
      return Promise.resolve(undefined);
    },
    setToken,
    reconnect() {
      attempts = 0;
      if (state === 'closed') scheduleRefresh();
      start('request');
    },
    close() {
      if (state === 'closed') return;
      generation += 1;
      stop();
      env.clearTimeout(refreshTimer);
      const error = new Error('the connection is closed');
      for (const request of [...pending]) answer(request, error, false);
      report('closed', { cause: 'close' });
    },
  });
}
