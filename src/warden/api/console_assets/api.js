// Calls to Warden's own API with the session cookie. The CSRF token lives in this module's
// memory only and goes out as X-CSRF-Token on every state-changing request; the API key is
// never held here at all (the sign-in form sends it once and forgets it).

const SAFE = new Set(["GET", "HEAD"]);
let csrf = null;
let signedOut = () => {};

/** An API refusal or failure: the HTTP status and the answer's `error.code` and `error.message`. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** Remember the session's CSRF token (null forgets it). */
export function setCsrf(token) {
  csrf = token;
}

/** What to do when any call answers 401 (the session ended): go back to the sign-in view. */
export function onSignedOut(handler) {
  signedOut = handler;
}

async function errorOf(response) {
  let code = `http_${response.status}`;
  let message = response.statusText || "request failed";
  try {
    const body = await response.json();
    if (body && body.error) {
      code = String(body.error.code);
      message = String(body.error.message);
    }
  } catch {
    // not a JSON error body: keep the status line
  }
  return new ApiError(response.status, code, message);
}

function refused(error) {
  if (error.status === 401) signedOut(error);
  return error;
}

/** A path with its query string; parameters that are null, undefined or "" are left out. */
export function withQuery(path, query = {}) {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(query)) {
    if (value !== null && value !== undefined && value !== "") params.set(name, String(value));
  }
  const text = params.toString();
  return text ? `${path}?${text}` : path;
}

/**
 * One request: `json` is sent as JSON, `body` as is (with `type` as its Content-Type).
 * Resolves to {data, headers}; rejects with an ApiError (401 also signs the page out).
 */
export async function request(method, path, { json, body, type, query, signal } = {}) {
  const headers = { Accept: "application/json" };
  if (!SAFE.has(method) && csrf) headers["X-CSRF-Token"] = csrf;
  let payload = body;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(json);
  } else if (body !== undefined) {
    headers["Content-Type"] = type || "application/octet-stream";
  }
  let response;
  try {
    response = await fetch(withQuery(path, query), {
      method,
      headers,
      body: payload,
      credentials: "same-origin",
      cache: "no-store",
      signal,
    });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, "network_error", `the server could not be reached (${err.message})`);
  }
  if (!response.ok) throw refused(await errorOf(response));
  const data = response.status === 204 ? null : await response.json();
  return { data, headers: response.headers };
}

/** GET and the like: resolves to the answer's JSON. */
export async function call(method, path, options) {
  return (await request(method, path, options)).data;
}

/**
 * Upload a file as the raw body with XMLHttpRequest, for its progress events
 * (`progress(sent, total)`); resolves to the answer's JSON.
 */
export function upload(path, file, query, progress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", withQuery(path, query));
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    xhr.setRequestHeader("Accept", "application/json");
    if (csrf) xhr.setRequestHeader("X-CSRF-Token", csrf);
    xhr.responseType = "json";
    xhr.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) progress(event.loaded, event.total);
    });
    xhr.addEventListener("load", () => {
      const body = xhr.response;
      if (xhr.status >= 200 && xhr.status < 300) {
        resolve(body);
        return;
      }
      const error = body && body.error ? body.error : { code: `http_${xhr.status}`, message: xhr.statusText };
      reject(refused(new ApiError(xhr.status, String(error.code), String(error.message))));
    });
    xhr.addEventListener("error", () => {
      reject(new ApiError(0, "network_error", "the upload did not reach the server"));
    });
    xhr.send(file);
  });
}
