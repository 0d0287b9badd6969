/* taskq dashboard: requests to the API, and the API token.
 *
 * When the server has API_TOKEN set, a 401 opens a small dialog; the token is kept in
 * sessionStorage and sent as `Authorization: Bearer …` on every request, the event
 * stream included (static/stream.js reads the stream with fetch() for that reason:
 * EventSource cannot send headers, and a token in the URL would end up in access logs
 * and browser history).
 */

import { $, showAlert } from './util.js';

const TOKEN_KEY = 'taskq.apiToken';

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** The server's `{"error": "..."}` message, or the status line when the body is not that. */
export async function errorMessage(res) {
  let message = `${res.status} ${res.statusText || ''}`.trim();
  try {
    const body = await res.json();
    if (body && typeof body.error === 'string') message = body.error;
  } catch {
    // Not JSON (a proxy's HTML page, for example): keep the status line.
  }
  return message;
}

const storage = {
  get() {
    try { return sessionStorage.getItem(TOKEN_KEY) || ''; } catch { return ''; }
  },
  set(value) {
    try { sessionStorage.setItem(TOKEN_KEY, value); } catch { /* storage disabled: keep it in memory */ }
  },
};

let token = storage.get();
let authPending = null;
/**
 * Set when the user dismisses the token dialog: further 401s then fail quietly
 * instead of reopening it, until the user clicks "Enter token" in the header.
 */
let authDismissed = false;

/** The token requests are sent with now; a request compares it after a 401. */
export const currentToken = () => token;

export function authHeaders(extra) {
  const headers = { ...extra };
  if (token) headers.Authorization = `Bearer ${token}`;
  return headers;
}

/**
 * Ask the user for a token. Concurrent 401s share one dialog: the promise resolves
 * when a token is entered and rejects when the user dismisses the dialog.
 */
export function requestToken(reason, { userAsked = false } = {}) {
  if (authDismissed && !userAsked) return Promise.reject(new ApiError(401, 'An API token is required.'));
  if (!authPending) {
    authPending = new Promise((resolve, reject) => openAuthDialog(reason, resolve, reject))
      .then(() => { authDismissed = false; }, (error) => { authDismissed = true; throw error; })
      .finally(() => { authPending = null; });
  }
  return authPending;
}

/** JSON request against the API. Throws ApiError with the server's message on failure. */
export async function api(path, { method = 'GET', body } = {}) {
  for (;;) {
    const sentWith = token;
    const headers = authHeaders({ Accept: 'application/json' });
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    let res;
    try {
      res = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: 'no-store',
      });
    } catch {
      throw new ApiError(0, 'The server could not be reached.');
    }
    if (res.status === 401) {
      const message = await errorMessage(res);
      // Another request may already have obtained a new token while this one was out.
      if (token !== sentWith) continue;
      try {
        await requestToken(message);
      } catch {
        throw new ApiError(401, 'An API token is required.');
      }
      continue;
    }
    if (!res.ok) throw new ApiError(res.status, await errorMessage(res));
    if (res.status === 204) return null;
    return res.json();
  }
}

function openAuthDialog(reason, resolve, reject) {
  const dialog = $('#auth');
  const form = $('#auth-form');
  const input = $('#auth-token');
  let settled = false;

  $('#auth-reason').textContent = token
    ? 'The saved token was not accepted. Enter a valid API token.'
    : 'This server asks for an API token for every request.';
  showAlert($('#auth-error'), token && reason ? new Error(reason) : null);
  input.value = '';

  const cleanup = () => {
    form.removeEventListener('submit', onSubmit);
    dialog.removeEventListener('close', onClose);
    $('#auth-cancel').removeEventListener('click', onCancel);
  };
  const onSubmit = (event) => {
    event.preventDefault();
    const value = input.value.trim();
    if (!value) return;
    token = value;
    storage.set(value);
    settled = true;
    cleanup();
    dialog.close();
    resolve();
  };
  const onCancel = () => dialog.close();
  const onClose = () => {
    cleanup();
    if (!settled) reject(new ApiError(401, 'An API token is required.'));
  };

  form.addEventListener('submit', onSubmit);
  dialog.addEventListener('close', onClose);
  $('#auth-cancel').addEventListener('click', onCancel);
  dialog.showModal();
  input.focus();
}
