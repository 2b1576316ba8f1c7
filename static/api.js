// The REST calls the pages make (see app/api.py), and their errors as readable messages.

export class ApiError extends Error {
  /** `fieldErrors` maps a parameter name to its messages (from a 422 that names it). */
  constructor(message, { status, fieldErrors = {} } = {}) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.fieldErrors = fieldErrors;
  }
}

// Where a 422's `loc` names a field: ["body", "params", name] for runs, ["body", name] for
// queries on a run.
async function errorFrom(response, fieldRoot = ["body", "params"]) {
  let detail = null;
  try {
    detail = (await response.json()).detail;
  } catch {
    // not JSON (a proxy's error page, say): fall back to the status line below
  }
  if (response.status === 429) {
    const wait = response.headers.get("Retry-After");
    return new ApiError(`Server busy, retry in ${wait ?? "a few"} s.`, { status: 429 });
  }
  if (response.status === 422 && Array.isArray(detail)) {
    const fieldErrors = {};
    const other = [];
    for (const { loc = [], msg: raw } of detail) {
      const msg = String(raw).replace(/^Value error, /, ""); // pydantic's prefix says nothing here
      // ["body", "params", "gamma"] names a field; anything shorter is about the request.
      const named = loc.length > fieldRoot.length && fieldRoot.every((key, i) => loc[i] === key);
      const field = named ? loc[fieldRoot.length] : null;
      if (field !== null) (fieldErrors[field] ??= []).push(msg);
      else other.push(loc.length ? `${loc.join(".")}: ${msg}` : msg);
    }
    const message = other.length ? other.join("\n") : "Some parameters are not valid.";
    return new ApiError(message, { status: 422, fieldErrors });
  }
  const text = typeof detail === "string" ? detail : `${response.status} ${response.statusText}`;
  return new ApiError(text, { status: response.status });
}

async function request(method, url, body, fieldRoot) {
  const options = { method, headers: { Accept: "application/json" } };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await send(url, options);
  if (!response.ok) throw await errorFrom(response, fieldRoot);
  return response.json();
}

// A server with an API token (PLAYGROUND_API_TOKEN) answers writes without it with 401: the
// page then asks for the token once and keeps it for this tab only, never in a URL.
const TOKEN_KEY = "playground-api-token";

async function send(url, options) {
  for (let asked = false; ; asked = true) {
    const token = sessionStorage.getItem(TOKEN_KEY);
    const headers = token ? { ...options.headers, Authorization: `Bearer ${token}` } : options.headers;
    let response;
    try {
      response = await fetch(url, { ...options, headers });
    } catch (error) {
      throw new ApiError(`Cannot reach the server (${error.message}).`, { status: 0 });
    }
    if (response.status !== 401) return response;
    sessionStorage.removeItem(TOKEN_KEY);
    if (asked) return response;
    const detail = await response.clone().json().then((b) => b.detail, () => null);
    const entered = window.prompt(`${detail ?? "This server needs an API token."}\n\nAPI token:`);
    if (!entered?.trim()) return response;
    sessionStorage.setItem(TOKEN_KEY, entered.trim());
  }
}

/** POST /api/runs: {id, experiment, status, urls: {self, events, page}}. */
export function startRun(api, experiment, params) {
  return request("POST", `${api}/runs`, { experiment, params });
}

/** POST /api/runs/{id}/queries: ask a finished run; the answer is a run of its own. */
export function queryRun(api, id, query) {
  return request("POST", `${api}/runs/${encodeURIComponent(id)}/queries`, query, ["body"]);
}

/** GET /api/runs/{id}: the run's status and result. */
export function getRun(api, id) {
  return request("GET", `${api}/runs/${encodeURIComponent(id)}`);
}

/** DELETE /api/runs/{id}: ask the run to stop. */
export function cancelRun(api, id) {
  return request("DELETE", `${api}/runs/${encodeURIComponent(id)}`);
}

export function eventsUrl(api, id) {
  return `${api}/runs/${encodeURIComponent(id)}/events`;
}

/** POST /api/uploads with the file as the body: {id, width, height, source}. The server
 * reads the type from the content; 413/415/422 come back as their messages. */
export async function uploadImage(api, file) {
  const response = await send(`${api}/uploads`, {
    method: "POST",
    headers: { Accept: "application/json", "Content-Type": file.type || "application/octet-stream" },
    body: file,
  });
  if (!response.ok) throw await errorFrom(response);
  return response.json();
}

/** MathML markup for each LaTeX string (the server converts; see /mathml in app/pages.py). */
export async function mathml(url, latexList) {
  const query = new URLSearchParams();
  for (const latex of latexList) query.append("latex", latex);
  return request("GET", `${url}?${query}`);
}
