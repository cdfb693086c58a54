// @ts-check
/**
 * The Crochet operator dashboard (DESIGN §3.7): plain JavaScript, no build step, served under a strict CSP.
 *
 * Every piece of text that comes from the API is written with textContent or DOM methods (the `h` helper below);
 * nothing is ever parsed as HTML, so names, comments and error messages render as the literal text they are.
 * State-changing requests carry the session's CSRF token in X-CSRF-Token; the session itself is an HttpOnly cookie.
 */

const OPERATOR_API = '/api/v1/operator';
/** How often the open page refreshes what it shows (a new gateway request appears within this). */
const POLL_MS = 3_000;
const PAGE_SIZE = 25;
/** The latest payouts and refunds shown (the agents' own GET /api/v1/payouts has them all). */
const TRANSFERS_SHOWN = 10;
/** How long a success notice stays. */
const FLASH_MS = 6_000;
const USDC_DECIMALS = 6;

// ---- types (the operator API's shapes, docs/operator contract) ------------------------------------------------------

/** @typedef {{ id: string, email: string, created_at?: string }} Operator */
/** @typedef {{ id: string, prefix: string, name: string | null, status: 'active' | 'revoked', created_at: string, last_used_at: string | null }} Key */
/**
 * @typedef {{ id: string, name: string, status: 'active' | 'paused' | 'archived',
 *   paused_by?: 'operator' | 'seller' | null, pricing_model: string, price: string | null, currency: string | null,
 *   crochet_score: number | null, verified: boolean, review_count: number }} Listing
 */
/**
 * @typedef {{ id: string, name: string, status: 'active' | 'paused', daily_spend_cap: string | null,
 *   spent_today: string, spent_total: string, earned_total: string, claimed_at: string, keys: Key[],
 *   listings: Listing[] }} Agent
 */
/**
 * @typedef {{ id: string, created_at: string, listing_id: string, listing_name: string | null,
 *   buyer_id: string | null, seller_id: string | null, method: string | null, status_code: number | null,
 *   duration_ms: number | null, price: string | { amount: string } | null, payment_outcome: string | null }} GatewayRequest
 */
/**
 * @typedef {{ id: string, created_at: string, agent_id: string, kind: string, amount: string,
 *   gateway_request_id: string | null, transfer_id?: string | null }} LedgerEntry
 */
/**
 * @typedef {{ id: string, kind: 'payout' | 'refund', agent_id: string,
 *   status: 'pending' | 'broadcast' | 'confirmed' | 'failed', amount: string, currency: string, network: string,
 *   to: string, tx: string | null, gateway_request_id: string | null, requested_by: string, error: string | null,
 *   created_at: string, confirmed_at: string | null }} Transfer
 */

/** An error answered by the API (its envelope), or a network failure (status 0). */
class ApiError extends Error {
  /**
   * @param {number} status
   * @param {string} code
   * @param {string} message
   * @param {string} hint
   */
  constructor(status, code, message, hint) {
    super(message);
    this.status = status;
    this.code = code;
    this.hint = hint;
  }
}

// ---- state ------------------------------------------------------------------------------------------------------------

const state = {
  /** @type {string | null} the session's CSRF token, echoed in X-CSRF-Token */
  csrf: null,
  /** @type {Operator | null} */
  operator: null,
  /** @type {Map<string, Agent>} */
  agents: new Map(),
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  pollTimer: undefined,
  /** bumped on every sign-in and sign-out, so a refresh that started in an earlier session drops its answer */
  generation: 0,
  /** @type {LedgerEntry[]} entries of older pages the operator asked for */
  ledgerOlder: [],
  /** @type {string | null} */
  ledgerCursor: null,
  /** @type {Set<string> | null} request ids on screen (null before the first render: nothing is "new" then) */
  seenRequests: null,
  /** what the two tables last drew, so an unchanged refresh leaves the DOM (and the reader's place) alone */
  shown: { requests: '', ledger: '', transfers: '' },
};

// ---- DOM helpers --------------------------------------------------------------------------------------------------------

/**
 * @param {string} id
 * @returns {HTMLElement}
 */
const $ = (id) => {
  const el = document.getElementById(id);
  if (!el) throw new Error(`#${id} is missing from the page`);
  return el;
};

/** @typedef {Node | string | number | null | undefined | false} Child */

/**
 * Creates an element. Attribute values and children are always text: there is no way to pass HTML through here.
 * `on<event>` attributes take functions (listeners), never strings.
 * @param {string} tag
 * @param {Record<string, unknown>} [attrs]
 * @param {...Child} children
 * @returns {HTMLElement}
 */
const h = (tag, attrs = {}, ...children) => {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on')) {
      if (typeof value !== 'function') throw new TypeError(`${name} must be a function`);
      el.addEventListener(name.slice(2), /** @type {EventListener} */ (value));
    } else if (name === 'class') {
      el.className = String(value);
    } else {
      el.setAttribute(name, value === true ? '' : String(value));
    }
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    el.append(typeof child === 'number' ? String(child) : child);
  }
  return el;
};

/**
 * Shows an API error (message, then hint) in a form's alert slot; `null` clears it.
 * @param {Element} slot
 * @param {unknown} error
 */
const showError = (slot, error) => {
  slot.replaceChildren();
  if (error === null) return;
  const { message, hint } = describeError(error);
  slot.append(h('strong', { class: 'alert-message' }, message));
  if (hint) slot.append(h('span', { class: 'alert-hint' }, hint));
};

/**
 * @param {unknown} error
 * @returns {{ message: string, hint: string }}
 */
const describeError = (error) => {
  if (error instanceof ApiError) return { message: error.message, hint: error.hint };
  console.error(error);
  return { message: 'Something went wrong on this page.', hint: 'Reload the page and try again.' };
};

/**
 * Runs an action with its button disabled (no double submits), reporting failure in `slot`.
 * @param {HTMLButtonElement | null} button
 * @param {Element} slot
 * @param {() => Promise<void>} action
 */
const busy = async (button, slot, action) => {
  if (button) {
    button.disabled = true;
    button.setAttribute('aria-busy', 'true');
  }
  showError(slot, null);
  try {
    await action();
  } catch (error) {
    if (!handleSessionLoss(error)) showError(slot, error);
  } finally {
    if (button) {
      button.disabled = false;
      button.removeAttribute('aria-busy');
    }
  }
};

/** @type {WeakMap<Element, ReturnType<typeof setTimeout>>} */
const flashTimers = new WeakMap();

/**
 * A confirmation that goes away by itself (errors stay until the next attempt).
 * @param {Element} slot
 * @param {string} text
 */
const flash = (slot, text) => {
  clearTimeout(flashTimers.get(slot));
  slot.textContent = text;
  flashTimers.set(
    slot,
    setTimeout(() => {
      slot.textContent = '';
    }, FLASH_MS),
  );
};

// ---- formatting ---------------------------------------------------------------------------------------------------------

/**
 * A decimal string in atomic units (BigInt), or null when it is not one. Money is never a float here.
 * @param {string | null | undefined} decimal
 * @returns {bigint | null}
 */
const toAtomic = (decimal) => {
  const match = /^(-|\+)?(\d+)(?:\.(\d+))?$/.exec(String(decimal ?? '').trim());
  if (!match) return null;
  const fraction = (match[3] ?? '').padEnd(USDC_DECIMALS, '0').slice(0, USDC_DECIMALS);
  const value = BigInt(match[2] ?? '0') * 10n ** BigInt(USDC_DECIMALS) + BigInt(fraction || '0');
  return match[1] === '-' ? -value : value;
};

/**
 * @param {bigint} atomic
 * @returns {string} at least two decimals, no trailing zeros beyond them
 */
const fromAtomic = (atomic) => {
  const negative = atomic < 0n;
  const abs = negative ? -atomic : atomic;
  const unit = 10n ** BigInt(USDC_DECIMALS);
  const fraction = String(abs % unit)
    .padStart(USDC_DECIMALS, '0')
    .replace(/0+$/, '')
    .padEnd(2, '0');
  return `${negative ? '−' : ''}${abs / unit}.${fraction}`;
};

/**
 * "1.50" → "1.50", "0.009900" → "0.0099"; anything unparseable is shown as it came.
 * @param {string | null | undefined} decimal
 */
const money = (decimal) => {
  const atomic = toAtomic(decimal);
  return atomic === null ? String(decimal ?? '—') : fromAtomic(atomic);
};

/** @param {(string | null | undefined)[]} decimals */
const sum = (decimals) => decimals.reduce((total, d) => total + (toAtomic(d) ?? 0n), 0n);

const timeOnly = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
const dateTime = new Intl.DateTimeFormat(undefined, {
  month: 'short',
  day: 'numeric',
  hour: '2-digit',
  minute: '2-digit',
});
const dateOnly = new Intl.DateTimeFormat(undefined, { year: 'numeric', month: 'short', day: 'numeric' });

/**
 * A <time> element: the time of day for today, the date and time before.
 * @param {string | null | undefined} iso
 * @param {'auto' | 'date'} [style]
 */
const when = (iso, style = 'auto') => {
  if (!iso) return h('span', { class: 'muted' }, 'never');
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return h('span', {}, iso);
  const today = new Date().toDateString() === date.toDateString();
  const text = style === 'date' ? dateOnly.format(date) : today ? timeOnly.format(date) : dateTime.format(date);
  return h('time', { datetime: date.toISOString(), title: date.toLocaleString() }, text);
};

/** @param {string} kind "seller_credit" → "Seller credit" */
const humanize = (kind) => {
  const words = kind.replaceAll('_', ' ');
  return words.charAt(0).toUpperCase() + words.slice(1);
};

/**
 * @param {string} text
 * @param {'ok' | 'warn' | 'bad' | 'muted' | 'info'} tone
 */
const badge = (text, tone) => h('span', { class: `badge badge-${tone}` }, text);

/** @param {string} status */
const statusBadge = (status) =>
  badge(humanize(status), status === 'active' ? 'ok' : status === 'paused' ? 'warn' : 'muted');

/**
 * An id in monospace; `short` keeps the prefix and the last characters (ids of one kind share their leading,
 * time-ordered characters), with the whole id in the tooltip.
 * @param {string} id
 * @param {boolean} [short]
 */
const mono = (id, short = false) => {
  const cut = id.indexOf('_') + 1;
  const text = short && id.length > cut + 10 ? `${id.slice(0, cut)}…${id.slice(-8)}` : id;
  return h('code', { class: 'id', title: id }, text);
};

// ---- API ---------------------------------------------------------------------------------------------------------------

/**
 * One JSON request to the API. Success answers come back whole (`{data, next_cursor?}`); errors throw ApiError
 * with the envelope's message and hint.
 * @param {'GET' | 'POST' | 'PUT'} method
 * @param {string} path
 * @param {unknown} [body]
 * @param {boolean} [retried]
 * @returns {Promise<any>}
 */
const request = async (method, path, body, retried = false) => {
  /** @type {Record<string, string>} */
  const headers = { accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (method !== 'GET' && state.csrf) headers['x-csrf-token'] = state.csrf;
  /** @type {Response} */
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      credentials: 'same-origin',
      cache: 'no-store',
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
  } catch {
    throw new ApiError(0, 'NETWORK', 'Crochet could not be reached.', 'Check your connection; the page keeps trying.');
  }
  if (response.status === 204) return null;
  /** @type {any} */
  let json = null;
  try {
    json = await response.json();
  } catch {}
  if (response.ok) return json;
  const error = json?.error;
  // The token may be from before a new login in another tab: recover the current one once, then retry.
  if (error?.code === 'CSRF_TOKEN_INVALID' && !retried && method !== 'GET') {
    const session = await request('GET', `${OPERATOR_API}/session`).catch(() => null);
    if (session?.data?.csrf_token) {
      state.csrf = session.data.csrf_token;
      return request(method, path, body, true);
    }
  }
  throw new ApiError(
    response.status,
    typeof error?.code === 'string' ? error.code : `HTTP_${response.status}`,
    typeof error?.message === 'string' ? error.message : `The server answered ${response.status}.`,
    typeof error?.hint === 'string' ? error.hint : '',
  );
};

/** @param {string} id */
const seg = (id) => encodeURIComponent(id);

// ---- views -------------------------------------------------------------------------------------------------------------

const view = {
  boot: () => $('boot'),
  auth: () => $('auth-view'),
  dash: () => $('dash-view'),
};

/**
 * @param {'boot' | 'auth' | 'dash'} name
 */
const show = (name) => {
  for (const [key, el] of Object.entries(view)) el().hidden = key !== name;
  $('account').hidden = name !== 'dash';
};

/**
 * A 401 means the session ended (expired, logged out elsewhere): back to the sign-in form, saying why.
 * @param {unknown} error
 * @returns {boolean} whether the error was a lost session
 */
const handleSessionLoss = (error) => {
  if (!(error instanceof ApiError) || error.status !== 401 || !state.operator) return false;
  signOut();
  const form = /** @type {HTMLFormElement} */ ($('login-form'));
  selectTab('login');
  showError(form.querySelector('[data-error]') ?? form, error);
  return true;
};

/**
 * @param {{ operator: Operator, csrf_token: string }} session
 */
const signIn = (session) => {
  state.generation += 1;
  state.csrf = session.csrf_token;
  state.operator = session.operator;
  state.agents = new Map();
  state.ledgerOlder = [];
  state.ledgerCursor = null;
  state.seenRequests = null;
  state.shown = { requests: '', ledger: '', transfers: '' };
  $('account-email').textContent = session.operator.email;
  $('agents').replaceChildren();
  $('requests').replaceChildren();
  $('ledger').replaceChildren();
  $('transfers').replaceChildren();
  cards.clear();
  show('dash');
  void refresh();
};

const signOut = () => {
  state.generation += 1;
  state.csrf = null;
  state.operator = null;
  clearTimeout(state.pollTimer);
  state.pollTimer = undefined;
  show('auth');
};

// ---- auth forms ----------------------------------------------------------------------------------------------------------

/** @param {'login' | 'signup'} which */
const selectTab = (which) => {
  for (const name of /** @type {const} */ (['login', 'signup'])) {
    const tab = $(`tab-${name}`);
    const selected = name === which;
    tab.setAttribute('aria-selected', String(selected));
    tab.tabIndex = selected ? 0 : -1;
    $(`${name}-form`).hidden = !selected;
  }
};

const wireAuth = () => {
  for (const name of /** @type {const} */ (['login', 'signup'])) {
    $(`tab-${name}`).addEventListener('click', () => {
      selectTab(name);
      /** @type {HTMLInputElement | null} */ ($(`${name}-form`).querySelector('input'))?.focus();
    });
    const form = /** @type {HTMLFormElement} */ ($(`${name}-form`));
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      const data = new FormData(form);
      const body = { email: String(data.get('email') ?? '').trim(), password: String(data.get('password') ?? '') };
      const slot = form.querySelector('[data-error]') ?? form;
      void busy(form.querySelector('button[type="submit"]'), slot, async () => {
        const answer = await request('POST', `${OPERATOR_API}/${name}`, body);
        form.reset();
        signIn(answer.data);
      });
    });
  }
  // Arrow keys move between the two tabs (WAI-ARIA tabs pattern).
  $('tab-login').parentElement?.addEventListener('keydown', (event) => {
    if (event.key !== 'ArrowLeft' && event.key !== 'ArrowRight') return;
    const next = $('tab-login').getAttribute('aria-selected') === 'true' ? 'signup' : 'login';
    selectTab(next);
    $(`tab-${next}`).focus();
  });
  $('logout').addEventListener('click', async () => {
    try {
      await request('POST', `${OPERATOR_API}/logout`);
    } catch {
      // Signed out on this page whatever the server said: the cookie is HttpOnly and the token is forgotten.
    }
    signOut();
  });
};

// ---- claim ----------------------------------------------------------------------------------------------------------------

const wireClaim = () => {
  const form = /** @type {HTMLFormElement} */ ($('claim-form'));
  const input = /** @type {HTMLInputElement} */ ($('claim-code'));
  const slot = form.querySelector('[data-error]') ?? form;
  const notice = form.querySelector('[data-notice]') ?? form;
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    notice.textContent = '';
    const code = input.value.trim().toUpperCase();
    if (!code) {
      showError(
        slot,
        new ApiError(0, 'EMPTY', 'Enter the claim code your agent received.', 'It looks like CLM-7K3F-QX9P.'),
      );
      input.focus();
      return;
    }
    void busy(form.querySelector('button[type="submit"]'), slot, async () => {
      const answer = await request('POST', `${OPERATOR_API}/claims`, { claim_code: code });
      input.value = '';
      flash(notice, `Claimed ${answer.data?.agent?.name ?? 'the agent'}.`);
      await refresh();
    });
  });
};

// ---- confirmation dialog ------------------------------------------------------------------------------------------------

/**
 * Asks before a destructive action; resolves true when confirmed.
 * @param {string} title
 * @param {string} text
 * @param {string} action the confirm button's label
 * @returns {Promise<boolean>}
 */
const confirmAction = (title, text, action) => {
  const dialog = /** @type {HTMLDialogElement} */ ($('confirm'));
  $('confirm-title').textContent = title;
  $('confirm-text').textContent = text;
  $('confirm-ok').textContent = action;
  dialog.returnValue = '';
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'confirm'), { once: true });
  });
};

// ---- tables --------------------------------------------------------------------------------------------------------------

/**
 * @template T
 * @typedef {{ label: string, cell: (row: T) => Child, className?: string }} Column
 */

/**
 * A table whose rows become labelled blocks on narrow screens (each cell carries its column's label).
 * @template T
 * @param {string} caption
 * @param {Column<T>[]} columns
 * @param {T[]} rows
 * @param {(row: T) => Record<string, unknown>} [rowAttrs]
 */
const table = (caption, columns, rows, rowAttrs = () => ({})) =>
  h(
    'table',
    { class: 'table' },
    h('caption', { class: 'visually-hidden' }, caption),
    h('thead', {}, h('tr', {}, ...columns.map((c) => h('th', { scope: 'col', class: c.className }, c.label)))),
    h(
      'tbody',
      {},
      ...rows.map((row) =>
        h(
          'tr',
          rowAttrs(row),
          ...columns.map((c) => h('td', { 'data-label': c.label, class: c.className }, c.cell(row))),
        ),
      ),
    ),
  );

/**
 * @param {string} title
 * @param {string} text
 */
const empty = (title, text) => h('div', { class: 'empty' }, h('strong', {}, title), h('span', {}, text));

// ---- agents ---------------------------------------------------------------------------------------------------------------

/**
 * One agent's card, built once and updated in place on every refresh so that a half-typed cap or a focused
 * button survives the auto-refresh.
 * @param {Agent} initial
 */
const agentCard = (initial) => {
  let agent = initial;
  const nameId = `agent-${agent.id}-name`;
  const title = h('h3', { class: 'agent-name', id: nameId });
  const status = h('span');
  const toggle = /** @type {HTMLButtonElement} */ (h('button', { type: 'button', class: 'btn btn-secondary' }));
  const toggleError = h('div', { class: 'alert', role: 'alert' });
  const spentToday = h('span', { class: 'figure-value' });
  const capOf = h('span', { class: 'figure-sub' });
  const spentTotal = h('span', { class: 'figure-value' });
  const earnedTotal = h('span', { class: 'figure-value' });
  const meter = /** @type {HTMLProgressElement} */ (h('progress', { class: 'meter', max: '1000', value: '0' }));
  const meterRow = h('div', { class: 'meter-row' }, meter);
  const capInputId = `cap-${agent.id}`;
  const capInput = /** @type {HTMLInputElement} */ (
    h('input', {
      id: capInputId,
      name: 'daily_spend_cap',
      type: 'text',
      inputmode: 'decimal',
      autocomplete: 'off',
      placeholder: 'No cap',
      'aria-describedby': `${capInputId}-help`,
    })
  );
  const capError = h('div', { class: 'alert', role: 'alert' });
  const capNotice = h('p', { class: 'notice', role: 'status' });
  const capSave = /** @type {HTMLButtonElement} */ (
    h('button', { type: 'submit', class: 'btn btn-primary' }, 'Save cap')
  );
  const capForm = h(
    'form',
    { class: 'cap-form', novalidate: true },
    h(
      'div',
      { class: 'field' },
      h('label', { for: capInputId }, 'Daily spend cap (USDC)'),
      h('div', { class: 'input-row' }, capInput, capSave),
      h('p', { class: 'help', id: `${capInputId}-help` }, 'Leave empty for no cap. Resets at 00:00 UTC.'),
    ),
    capError,
    capNotice,
  );
  const keys = h('div', { class: 'subsection' });
  const listings = h('div', { class: 'subsection' });
  let keysShown = '';
  let listingsShown = '';
  /** true while the cap field holds something the operator typed and has not saved */
  let capEdited = false;

  const root = h(
    'article',
    { class: 'card agent', 'aria-labelledby': nameId, 'data-agent-id': agent.id },
    h(
      'header',
      { class: 'agent-head' },
      h(
        'div',
        { class: 'agent-title' },
        h('div', { class: 'agent-title-row' }, title, status),
        h('div', { class: 'agent-meta' }),
      ),
      h('div', { class: 'agent-actions' }, toggle),
    ),
    toggleError,
    h(
      'div',
      { class: 'figures' },
      h('div', { class: 'figure' }, h('span', { class: 'figure-label' }, 'Spent today'), spentToday, capOf),
      h('div', { class: 'figure' }, h('span', { class: 'figure-label' }, 'Spent in total'), spentTotal),
      h('div', { class: 'figure' }, h('span', { class: 'figure-label' }, 'Earned in total'), earnedTotal),
    ),
    meterRow,
    capForm,
    h('div', { class: 'agent-lists' }, keys, listings),
  );
  const meta = /** @type {HTMLElement} */ (root.querySelector('.agent-meta'));

  capInput.addEventListener('input', () => {
    capEdited = true;
    capNotice.textContent = '';
  });
  capForm.addEventListener('submit', (event) => {
    event.preventDefault();
    capNotice.textContent = '';
    const text = capInput.value.trim();
    if (text !== '' && !/^\d{1,12}(\.\d{1,6})?$/.test(text)) {
      showError(
        capError,
        new ApiError(0, 'CAP_INVALID', 'Enter an amount in USDC such as 2.50.', 'Leave the field empty for no cap.'),
      );
      capInput.focus();
      return;
    }
    void busy(capSave, capError, async () => {
      const answer = await request('PUT', `${OPERATOR_API}/agents/${seg(agent.id)}/spend-cap`, {
        daily_spend_cap: text === '' ? null : text,
      });
      capEdited = false; // the saved value replaces what was typed
      if (answer?.data?.id) update(answer.data, true);
      flash(capNotice, text === '' ? 'Cap removed.' : `Cap set to ${money(text)} USDC a day.`);
      void refresh();
    });
  });
  toggle.addEventListener('click', () => {
    const action = agent.status === 'paused' ? 'resume' : 'pause';
    void busy(toggle, toggleError, async () => {
      const answer = await request('POST', `${OPERATOR_API}/agents/${seg(agent.id)}/${action}`);
      if (answer?.data?.id) update(answer.data, true);
      void refresh();
    });
  });

  /**
   * @param {Agent} next
   * @param {boolean} [partial] a summary from an action: keys and listings may be absent
   */
  const update = (next, partial = false) => {
    agent = partial
      ? { ...agent, ...next, keys: next.keys ?? agent.keys, listings: next.listings ?? agent.listings }
      : next;
    state.agents.set(agent.id, agent);
    title.textContent = agent.name;
    status.replaceChildren(statusBadge(agent.status));
    meta.replaceChildren(mono(agent.id), h('span', { class: 'dot' }, '·'), 'claimed ', when(agent.claimed_at, 'date'));
    toggle.textContent = agent.status === 'paused' ? 'Resume agent' : 'Pause agent';
    toggle.setAttribute('aria-label', `${agent.status === 'paused' ? 'Resume' : 'Pause'} agent ${agent.name}`);
    toggle.className = agent.status === 'paused' ? 'btn btn-primary' : 'btn btn-secondary';
    root.classList.toggle('is-paused', agent.status === 'paused');

    spentToday.textContent = `${money(agent.spent_today)} USDC`;
    spentTotal.textContent = `${money(agent.spent_total)} USDC`;
    earnedTotal.textContent = `${money(agent.earned_total)} USDC`;
    const cap = toAtomic(agent.daily_spend_cap);
    const spent = toAtomic(agent.spent_today) ?? 0n;
    if (cap === null) {
      capOf.textContent = 'no daily cap';
      meterRow.hidden = true;
    } else {
      capOf.textContent = `of ${money(agent.daily_spend_cap)} USDC cap`;
      meterRow.hidden = false;
      const permille = cap === 0n ? 1000n : spent >= cap ? 1000n : (spent * 1000n) / cap;
      meter.value = Number(permille);
      meter.textContent = `${Number(permille) / 10}%`;
      meter.setAttribute('aria-label', `${Number(permille) / 10}% of today's cap used`);
      meter.classList.toggle('meter-full', spent >= cap);
    }
    // The input shows the saved cap unless the operator is editing it.
    if (!capEdited && document.activeElement !== capInput) {
      capInput.value = agent.daily_spend_cap === null ? '' : money(agent.daily_spend_cap);
    }

    // Buttons in these lists name the agent (for screen readers): a rename redraws them too.
    const keysJson = JSON.stringify([agent.name, agent.keys]);
    if (keysJson !== keysShown) {
      keysShown = keysJson;
      keys.replaceChildren(...keysSection(agent));
    }
    const listingsJson = JSON.stringify([agent.name, agent.listings]);
    if (listingsJson !== listingsShown) {
      listingsShown = listingsJson;
      listings.replaceChildren(...listingsSection(agent));
    }
  };
  update(initial);
  return { root, update };
};

/** @param {Agent} agent */
const keysSection = (agent) => {
  const error = h('div', { class: 'alert', role: 'alert' });
  const rows = agent.keys ?? [];
  return [
    h('h4', {}, 'API keys'),
    rows.length === 0
      ? empty('No keys', 'This agent has no API keys.')
      : table(
          `API keys of ${agent.name}`,
          /** @type {Column<Key>[]} */ ([
            { label: 'Key', cell: (k) => h('code', { class: 'id' }, `${k.prefix}…`) },
            { label: 'Name', cell: (k) => k.name || h('span', { class: 'muted' }, '—') },
            { label: 'Status', cell: (k) => statusBadge(k.status) },
            { label: 'Last used', cell: (k) => when(k.last_used_at) },
            {
              label: 'Action',
              className: 'cell-action',
              cell: (k) =>
                k.status === 'revoked'
                  ? h('span', { class: 'muted' }, 'Revoked')
                  : h(
                      'button',
                      {
                        type: 'button',
                        class: 'btn btn-danger',
                        'aria-label': `Revoke key ${k.prefix} of ${agent.name}`,
                        onclick: (/** @type {Event} */ event) => revokeKey(agent, k, event, error),
                      },
                      'Revoke',
                    ),
            },
          ]),
          rows,
        ),
    error,
  ];
};

/**
 * @param {Agent} agent
 * @param {Key} key
 * @param {Event} event
 * @param {HTMLElement} slot
 */
const revokeKey = async (agent, key, event, slot) => {
  const button = /** @type {HTMLButtonElement} */ (event.currentTarget);
  const ok = await confirmAction(
    'Revoke this key?',
    `Key ${key.prefix}… of ${agent.name} stops working at once, on every gateway. This cannot be undone.`,
    'Revoke key',
  );
  if (!ok) return;
  await busy(button, slot, async () => {
    await request('POST', `${OPERATOR_API}/agents/${seg(agent.id)}/keys/${seg(key.id)}/revoke`);
    await refresh();
  });
};

/** @param {Agent} agent */
const listingsSection = (agent) => {
  const error = h('div', { class: 'alert', role: 'alert' });
  const rows = agent.listings ?? [];
  return [
    h('h4', {}, 'Listings'),
    rows.length === 0
      ? empty('No listings', 'This agent sells nothing yet.')
      : table(
          `Listings of ${agent.name}`,
          /** @type {Column<Listing>[]} */ ([
            { label: 'Listing', cell: (l) => h('span', { class: 'listing-name' }, l.name) },
            {
              label: 'Price',
              className: 'num',
              cell: (l) =>
                l.pricing_model === 'free' || l.price === null ? 'Free' : `${money(l.price)} ${l.currency ?? 'USDC'}`,
            },
            {
              label: 'Crochet Score',
              cell: (l) =>
                h(
                  'span',
                  { class: 'score' },
                  l.crochet_score === null ? h('span', { class: 'muted' }, 'not yet') : String(l.crochet_score),
                  l.verified
                    ? h('span', { class: 'verified', title: 'Crochet Score of 800 or more' }, '✓ Verified')
                    : null,
                ),
            },
            {
              label: 'Status',
              // An operator's pause holds until resumed here; the agent cannot lift it.
              cell: (l) => (l.paused_by === 'operator' ? badge('Paused by operator', 'warn') : statusBadge(l.status)),
            },
            {
              label: 'Action',
              className: 'cell-action',
              cell: (l) =>
                l.status === 'archived'
                  ? h('span', { class: 'muted' }, 'Archived')
                  : h(
                      'button',
                      {
                        type: 'button',
                        class: 'btn btn-secondary',
                        'aria-label': `${l.status === 'paused' ? 'Resume' : 'Pause'} listing ${l.name}`,
                        onclick: (/** @type {Event} */ event) =>
                          busy(/** @type {HTMLButtonElement} */ (event.currentTarget), error, async () => {
                            const action = l.status === 'paused' ? 'resume' : 'pause';
                            await request('POST', `${OPERATOR_API}/listings/${seg(l.id)}/${action}`);
                            await refresh();
                          }),
                      },
                      l.status === 'paused' ? 'Resume' : 'Pause',
                    ),
            },
          ]),
          rows,
        ),
    error,
  ];
};

/** @type {Map<string, ReturnType<typeof agentCard>>} */
const cards = new Map();

/** @param {Agent[]} agents */
const renderAgents = (agents) => {
  const container = $('agents');
  const ids = new Set(agents.map((a) => a.id));
  for (const [id, card] of cards) {
    if (!ids.has(id)) {
      card.root.remove();
      cards.delete(id);
      state.agents.delete(id);
    }
  }
  if (agents.length === 0) {
    container.replaceChildren(
      empty('No agents yet', 'Ask your agent to call POST /api/v1/me/claim, then paste its code above.'),
    );
    return;
  }
  container.querySelector(':scope > .empty')?.remove();
  for (const agent of agents) {
    const card = cards.get(agent.id);
    if (card) card.update(agent);
    else cards.set(agent.id, agentCard(agent));
    container.append(/** @type {ReturnType<typeof agentCard>} */ (cards.get(agent.id)).root); // keeps API order
  }

  $('total-agents').textContent = String(agents.length);
  $('total-today').textContent = `${fromAtomic(sum(agents.map((a) => a.spent_today)))} USDC`;
  $('total-spent').textContent = `${fromAtomic(sum(agents.map((a) => a.spent_total)))} USDC`;
  $('total-earned').textContent = `${fromAtomic(sum(agents.map((a) => a.earned_total)))} USDC`;
};

// ---- gateway requests and ledger -------------------------------------------------------------------------------------------

/** @param {string | null} id */
const agentName = (id) => (id ? (state.agents.get(id)?.name ?? null) : null);

/** @param {GatewayRequest} r */
const roleCell = (r) => {
  const parts = [];
  const buyer = agentName(r.buyer_id);
  const seller = agentName(r.seller_id);
  if (buyer) parts.push(h('span', { class: 'role' }, badge('Bought', 'info'), ' ', buyer));
  if (seller) parts.push(h('span', { class: 'role' }, badge('Sold', 'ok'), ' ', seller));
  return parts.length ? h('span', { class: 'roles' }, ...parts) : h('span', { class: 'muted' }, '—');
};

/** @param {number | null} code */
const httpBadge = (code) => {
  if (code === null || code === undefined) return badge('pending', 'muted');
  return badge(String(code), code < 300 ? 'ok' : code < 500 ? 'warn' : 'bad');
};

/** @param {GatewayRequest['price']} price */
const priceText = (price) => {
  if (price === null || price === undefined) return h('span', { class: 'muted' }, '—');
  const amount = typeof price === 'object' ? price.amount : price;
  return `${money(amount)} USDC`;
};

/** @param {GatewayRequest[]} rows */
const renderRequests = (rows) => {
  const container = $('requests');
  const before = state.seenRequests;
  state.seenRequests = new Set(rows.map((r) => r.id));
  // Rows show agent names too: a renamed or newly claimed agent redraws them.
  const signature = JSON.stringify([rows, [...state.agents.values()].map((a) => [a.id, a.name])]);
  if (state.shown.requests === signature) return;
  state.shown.requests = signature;
  if (rows.length === 0) {
    container.replaceChildren(empty('No gateway requests yet', 'Calls your agents make or serve appear here.'));
    return;
  }
  container.replaceChildren(
    h(
      'div',
      { class: 'table-scroll' },
      table(
        'Recent gateway requests',
        /** @type {Column<GatewayRequest>[]} */ ([
          { label: 'Time', cell: (r) => when(r.created_at) },
          {
            label: 'Listing',
            cell: (r) => h('span', { class: 'listing-name', title: r.listing_id }, r.listing_name ?? r.listing_id),
          },
          { label: 'Agent', className: 'wide', cell: roleCell },
          { label: 'Status', cell: (r) => httpBadge(r.status_code) },
          { label: 'Duration', className: 'num', cell: (r) => (r.duration_ms === null ? '—' : `${r.duration_ms} ms`) },
          { label: 'Price', className: 'num', cell: (r) => priceText(r.price) },
          {
            label: 'Payment',
            cell: (r) => (r.payment_outcome ? humanize(r.payment_outcome) : h('span', { class: 'muted' }, '—')),
          },
          { label: 'Request', cell: (r) => mono(r.id, true) },
        ]),
        rows,
        (r) => ({ 'data-request-id': r.id, class: before && !before.has(r.id) ? 'fresh' : undefined }),
      ),
    ),
  );
};

/** @param {LedgerEntry[]} rows */
const renderLedger = (rows) => {
  const container = $('ledger');
  const signature = JSON.stringify([rows, [...state.agents.values()].map((a) => [a.id, a.name])]);
  if (state.shown.ledger === signature) return;
  state.shown.ledger = signature;
  if (rows.length === 0) {
    container.replaceChildren(empty('No ledger entries yet', 'Paid calls post a debit, a credit and a fee here.'));
    return;
  }
  container.replaceChildren(
    h(
      'div',
      { class: 'table-scroll' },
      table(
        'Ledger entries',
        /** @type {Column<LedgerEntry>[]} */ ([
          { label: 'Time', cell: (e) => when(e.created_at) },
          { label: 'Agent', cell: (e) => agentName(e.agent_id) ?? mono(e.agent_id, true) },
          { label: 'Kind', cell: (e) => humanize(e.kind) },
          {
            label: 'Amount',
            className: 'num',
            cell: (e) => {
              const atomic = toAtomic(e.amount) ?? 0n;
              const text = `${atomic > 0n ? '+' : ''}${money(e.amount)} USDC`;
              return h('span', { class: atomic < 0n ? 'amount-out' : 'amount-in' }, text);
            },
          },
          {
            label: 'Request',
            // A payout books no call: its entries name the transfer instead.
            cell: (e) =>
              e.gateway_request_id ? mono(e.gateway_request_id, true) : e.transfer_id ? mono(e.transfer_id, true) : '—',
          },
        ]),
        rows,
      ),
    ),
  );
};

/** @param {Transfer['status']} status */
const transferBadge = (status) =>
  badge(
    status === 'broadcast' ? 'Sent, not final' : humanize(status),
    status === 'confirmed' ? 'ok' : status === 'failed' ? 'bad' : 'muted',
  );

/** @param {Transfer[]} rows */
const renderTransfers = (rows) => {
  const container = $('transfers');
  const signature = JSON.stringify([rows, [...state.agents.values()].map((a) => [a.id, a.name])]);
  if (state.shown.transfers === signature) return;
  state.shown.transfers = signature;
  if (rows.length === 0) {
    container.replaceChildren(
      empty(
        'No payouts or refunds yet',
        'A seller agent is paid out with POST /api/v1/payouts; refunds go out by themselves.',
      ),
    );
    return;
  }
  container.replaceChildren(
    h(
      'div',
      { class: 'table-scroll' },
      table(
        'Payouts and refunds',
        /** @type {Column<Transfer>[]} */ ([
          { label: 'Time', cell: (t) => when(t.confirmed_at ?? t.created_at) },
          { label: 'Agent', cell: (t) => agentName(t.agent_id) ?? mono(t.agent_id, true) },
          {
            label: 'Kind',
            cell: (t) =>
              t.kind === 'payout'
                ? badge(t.requested_by === 'auto' ? 'Payout (automatic)' : 'Payout', 'info')
                : h('span', { title: t.gateway_request_id ?? '' }, badge('Refund', 'warn')),
          },
          {
            label: 'Status',
            cell: (t) => (t.error ? h('span', { title: t.error }, transferBadge(t.status)) : transferBadge(t.status)),
          },
          { label: 'Amount', className: 'num', cell: (t) => `${money(t.amount)} ${t.currency}` },
          { label: 'Network', cell: (t) => h('code', { class: 'id' }, t.network) },
          { label: 'To', cell: (t) => h('code', { class: 'id', title: t.to }, shortAddress(t.to)) },
          {
            label: 'Transaction',
            cell: (t) => (t.tx ? h('code', { class: 'id', title: t.tx }, shortAddress(t.tx)) : '—'),
          },
        ]),
        rows,
        (t) => ({ 'data-transfer-id': t.id }),
      ),
    ),
  );
};

/**
 * A wallet address or transaction id, its ends kept: "0x1234…cdef" (the whole in the tooltip).
 * @param {string} text
 */
const shortAddress = (text) => (text.length > 16 ? `${text.slice(0, 6)}…${text.slice(-6)}` : text);

const wireLedger = () => {
  const button = /** @type {HTMLButtonElement} */ ($('ledger-more'));
  button.addEventListener('click', () => {
    if (!state.ledgerCursor) return;
    const cursor = state.ledgerCursor;
    void busy(button, $('ledger-error'), async () => {
      const page = await request('GET', `${OPERATOR_API}/ledger?limit=${PAGE_SIZE}&cursor=${seg(cursor)}`);
      state.ledgerOlder.push(...page.data);
      state.ledgerCursor = page.next_cursor;
      await refresh();
    });
  });
};

// ---- refresh loop ---------------------------------------------------------------------------------------------------------

/** @type {{ generation: number, done: Promise<void>, next?: Promise<void> } | null} the refresh in flight */
let refreshing = null;

/**
 * Fetches everything shown and renders it. A call while a refresh is in flight waits for one that starts after it
 * (whatever the operator just changed is then on screen); any number of such calls share that one.
 * @returns {Promise<void>}
 */
const refresh = () => {
  const current = refreshing;
  if (current && current.generation === state.generation) {
    current.next ??= current.done.then(() => refresh());
    return current.next;
  }
  const generation = state.generation;
  /** @type {NonNullable<typeof refreshing>} */
  const entry = { generation, done: Promise.resolve() };
  refreshing = entry;
  entry.done = (async () => {
    try {
      const [overview, requests, ledger, transfers] = await Promise.all([
        request('GET', `${OPERATOR_API}/overview`),
        request('GET', `${OPERATOR_API}/gateway-requests?limit=${PAGE_SIZE}`),
        request('GET', `${OPERATOR_API}/ledger?limit=${PAGE_SIZE}`),
        request('GET', `${OPERATOR_API}/transfers?limit=${TRANSFERS_SHOWN}`),
      ]);
      if (generation !== state.generation) return;
      renderAgents(overview.data.agents);
      renderRequests(requests.data);
      renderTransfers(transfers.data);
      /** @type {LedgerEntry[]} */
      const firstPage = ledger.data;
      if (state.ledgerOlder.length === 0) state.ledgerCursor = ledger.next_cursor;
      const ids = new Set(firstPage.map((e) => e.id));
      renderLedger([...firstPage, ...state.ledgerOlder.filter((e) => !ids.has(e.id))]);
      $('ledger-more').hidden = !state.ledgerCursor;
      setConnection(null);
    } catch (error) {
      if (generation !== state.generation) return;
      if (!handleSessionLoss(error)) setConnection(error);
    } finally {
      if (refreshing === entry) refreshing = null;
      if (generation === state.generation) schedule();
    }
  })();
  return entry.done;
};

const schedule = () => {
  clearTimeout(state.pollTimer);
  // A hidden tab does not poll; it refreshes as soon as it is shown again.
  state.pollTimer = setTimeout(() => {
    if (document.visibilityState === 'visible') void refresh();
    else schedule();
  }, POLL_MS);
};

/** @param {unknown} error null when the last refresh worked */
const setConnection = (error) => {
  const banner = $('connection');
  const live = $('live');
  if (error === null) {
    banner.hidden = true;
    live.classList.remove('is-stale');
    $('live-text').textContent = `Live · updated ${timeOnly.format(new Date())}`;
    return;
  }
  const { message, hint } = describeError(error);
  banner.replaceChildren(h('strong', {}, message), ' ', h('span', {}, hint || 'The page keeps trying.'));
  banner.hidden = false;
  live.classList.add('is-stale');
  $('live-text').textContent = 'Reconnecting…';
};

// ---- start ----------------------------------------------------------------------------------------------------------------

const start = async () => {
  wireAuth();
  wireClaim();
  wireLedger();
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible' && state.operator) void refresh();
  });
  try {
    const session = await request('GET', `${OPERATOR_API}/session`);
    signIn(session.data);
  } catch (error) {
    show('auth');
    if (!(error instanceof ApiError && error.status === 401)) {
      showError($('login-form').querySelector('[data-error]') ?? $('login-form'), error);
    }
    // On a touch screen focusing would open the keyboard over the page before the reader chose to type.
    if (matchMedia('(pointer: fine)').matches) /** @type {HTMLInputElement} */ ($('login-email')).focus();
  }
};

void start();
