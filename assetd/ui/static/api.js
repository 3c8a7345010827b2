// The read API, same origin: /api/v1/…; a bearer token from sessionStorage when the daemon
// asks for one (401), asked for in a dialog.
const KEY = "assetd.token";

export class ApiError extends Error {
  constructor(code, message, status) {
    super(message);
    this.code = code;
    this.status = status;
  }
}

function token() {
  return sessionStorage.getItem(KEY);
}

let asking = null;
function askToken() {
  if (asking) return asking;
  const dialog = document.getElementById("token-dialog");
  const form = document.getElementById("token-form");
  const input = document.getElementById("token");
  asking = new Promise((resolve) => {
    form.addEventListener("submit", () => {
      sessionStorage.setItem(KEY, input.value);
      input.value = "";
      asking = null;
      resolve();
    }, { once: true });
  });
  if (!dialog.open) dialog.showModal();
  return asking;
}

function query(params) {
  const q = new URLSearchParams();
  for (const [key, value] of Object.entries(params || {})) {
    if (value === undefined || value === null || value === "") continue;
    if (Array.isArray(value)) value.forEach((v) => q.append(key, v));
    else if (typeof value === "object") {
      for (const [k, v] of Object.entries(value)) q.append(`${key}[${k}]`, v);
    } else q.append(key, String(value));
  }
  const text = q.toString();
  return text ? `?${text}` : "";
}

export async function get(path, params) {
  for (;;) {
    const headers = { Accept: "application/json" };
    if (token()) headers.Authorization = `Bearer ${token()}`;
    const response = await fetch(`/api/v1/${path}${query(params)}`, { headers });
    if (response.status === 401) {
      await askToken();
      continue;
    }
    let body;
    try {
      body = await response.json();
    } catch {
      throw new ApiError("internal", `HTTP ${response.status}`, response.status);
    }
    if (!body.ok) throw new ApiError(body.error.code, body.error.message, response.status);
    return body.result;
  }
}

export function q(project, method, params) {
  return get(`${encodeURIComponent(project)}/${method}`, params);
}

// Server-sent events of one project (every branch); the token as a parameter, since an
// EventSource cannot send headers.
export function stream(project, onEvent, onState) {
  const url = `/api/v1/${encodeURIComponent(project)}/stream${query({ token: token() })}`;
  const source = new EventSource(url);
  source.addEventListener("ready", () => onState(true));
  source.addEventListener("cloudevent", (e) => {
    try {
      onEvent(JSON.parse(e.data));
    } catch {
      /* not JSON: skipped */
    }
  });
  source.addEventListener("error", () => onState(false));
  return source;
}
