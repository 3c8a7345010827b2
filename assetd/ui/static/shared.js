// What every view shares: the state of the page and its routes (#/view?project=&branch=…).
import { h } from "./dom.js";

export const state = { project: null, branch: "main", branches: new Set(["main"]), source: null,
  stale: new Map(), lastEvent: new Map(), refresh: null, timer: null, render: 0 };

export function route() {
  const [path, search] = location.hash.replace(/^#/, "").split("?");
  return { path: path || "/assets", params: new URLSearchParams(search || "") };
}

export function link(path, params) {
  const p = new URLSearchParams({ project: state.project, branch: state.branch, ...params });
  return `#${path}?${p}`;
}

export function go(path, params) {
  location.hash = link(path, params);
}

export function section(title, ...children) {
  return h("section", {}, h("h2", {}, title), children);
}

export function failure(err) {
  return h("p", { class: "error", role: "alert" }, `${err.code || "error"}: ${err.message}`);
}
