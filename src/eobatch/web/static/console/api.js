// Talking to the eobatch API: the access token lives in this browser tab only (sessionStorage).

const KEY = "eobatch.session";

export class ApiError extends Error {
  constructor(message, status, violations = []) {
    super(message);
    this.status = status;
    this.violations = violations; // [{parameter, violation}] of a Sentinel Hub error body
  }

  // The message with each violation on its own line, as the API reported them.
  get details() {
    return [this.message, ...this.violations.map((v) => `${v.parameter}: ${v.violation}`)].join("\n");
  }
}

export function session() {
  const saved = JSON.parse(sessionStorage.getItem(KEY) || "null");
  return saved && saved.expires > Date.now() ? saved : null;
}

export async function signIn(clientId, clientSecret) {
  const body = new URLSearchParams({
    grant_type: "client_credentials",
    client_id: clientId,
    client_secret: clientSecret,
  });
  const response = await fetch("/oauth/token", { method: "POST", body });
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) {
    const reason = answer.error_description || answer.error || response.statusText;
    throw new ApiError(`Sign-in failed: ${reason}`, response.status);
  }
  const expires = Date.now() + (answer.expires_in - 30) * 1000;
  sessionStorage.setItem(KEY, JSON.stringify({ token: answer.access_token, clientId, expires }));
}

export function signOut() {
  sessionStorage.removeItem(KEY);
}

// Call the API with the tab's token. Returns parsed JSON, null for 204, or the Response when
// `raw` is set; throws ApiError with the Sentinel Hub error message otherwise.
export async function call(path, { method = "GET", json, accept, raw = false } = {}) {
  const current = session();
  if (!current) {
    signOut();
    window.location.hash = "#/signin";
    throw new ApiError("Your session has ended; sign in again.", 401);
  }
  const headers = { Authorization: `Bearer ${current.token}` };
  if (json !== undefined) headers["Content-Type"] = "application/json";
  if (accept) headers.Accept = accept;
  const body = json === undefined ? undefined : JSON.stringify(json);
  const response = await fetch(path, { method, headers, body });
  if (response.status === 401) {
    signOut();
    window.location.hash = "#/signin";
  }
  if (!response.ok) {
    const answer = await response.json().catch(() => null);
    const error = answer && answer.error;
    const message = (error && error.message) || `${response.status} ${response.statusText}`;
    throw new ApiError(message, response.status, (error && error.errors) || []);
  }
  if (raw) return response;
  return response.status === 204 ? null : response.json();
}

// Fetch a file with the token and hand it to the browser as a download.
export async function download(path, filename) {
  const response = await call(path, { raw: true });
  const url = URL.createObjectURL(await response.blob());
  const link = document.createElement("a");
  link.href = url;
  link.download = filename;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}
