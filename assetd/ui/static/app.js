// assetd's web UI: hash routes #/assets, #/asset, #/lineage, #/dlq with ?project=&branch=…
import { get, q, stream } from "./api.js";
import { assetView } from "./asset.js";
import { clear, h, table, when } from "./dom.js";
import { lineageSvg } from "./graph.js";
import { failure, go, link, route, state } from "./shared.js";

const view = document.getElementById("view");
const projectPick = document.getElementById("project");
const branchPick = document.getElementById("branch");
const liveBadge = document.getElementById("live");
const eventList = document.getElementById("events");
const LAST_EVENT_LOOKUPS = 100; // assets whose newest instance's time is looked up (one page each)

// ---------- pickers ----------

function fillSelect(select, names, current) {
  clear(select);
  for (const name of [...new Set([...names, current])].sort()) {
    select.append(h("option", { value: name, selected: name === current }, name));
  }
}

async function loadPickers() {
  let projects = [];
  try {
    projects = await get("projects");
  } catch (err) {
    view.replaceChildren(failure(err));
  }
  const wanted = route().params.get("project") || localStorage.getItem("assetd.project");
  state.project = wanted || projects[0] || "default";
  fillSelect(projectPick, projects, state.project);
  await loadBranches();
}

async function loadBranches() {
  try {
    for (const b of await q(state.project, "branches")) state.branches.add(b);
  } catch {
    /* the project has no instances yet */
  }
  state.branch = route().params.get("branch") || state.branch;
  state.branches.add(state.branch);
  fillSelect(branchPick, state.branches, state.branch);
}

projectPick.addEventListener("change", async () => {
  state.project = projectPick.value;
  localStorage.setItem("assetd.project", state.project);
  state.branches = new Set(["main"]);
  state.branch = "main";
  await loadBranches();
  connect();
  go("/assets", {});
});

branchPick.addEventListener("change", () => {
  state.branch = branchPick.value;
  const { path, params } = route();
  go(path, { ...Object.fromEntries(params), branch: state.branch });
});

// ---------- live updates ----------

function connect() {
  if (state.source) state.source.close();
  let lost = false;
  state.source = stream(state.project, onEvent, (up) => {
    if (up && lost) render(true); // what the stream missed meanwhile: read the view again
    lost = !up;
    liveBadge.textContent = up ? "live" : "offline";
    liveBadge.className = up ? "live on" : "live off";
  });
}

function onEvent(ev) {
  const branch = ev.branch || "main";
  if (!state.branches.has(branch)) {
    state.branches.add(branch);
    fillSelect(branchPick, state.branches, state.branch);
  }
  state.lastEvent.set(`${branch}/${ev.subject}`, ev.time);
  if (ev.type === "asset_stale") state.stale.set(`${branch}/${ev.subject}`, ev.time);
  if (ev.type === "instance_created") state.stale.delete(`${branch}/${ev.subject}`);
  const instance = ev.data && (ev.data.instance || ev.data.to || ev.data.last_instance);
  eventList.prepend(h("li", { class: "event" }, h("b", {}, ev.type), " ",
    `${ev.subject}@${branch}`, instance ? `:${instance}` : "", " ",
    h("span", { class: "muted" }, when(ev.time))));
  while (eventList.children.length > 30) eventList.lastChild.remove();
  if (branch === state.branch && state.refresh && state.refresh(ev)) {
    clearTimeout(state.timer);
    state.timer = setTimeout(() => render(true), 250);
  }
}

// ---------- views ----------

async function assetsView() {
  state.refresh = () => true;
  const assets = await q(state.project, "assets", { branch: state.branch });
  const rows = assets.map((a, n) => {
    const key = `${state.branch}/${a.asset}`;
    const stale = state.stale.get(key);
    const last = h("td", { class: "last" }, when(state.lastEvent.get(key)));
    if (a.latest && n < LAST_EVENT_LOOKUPS) {
      q(state.project, "instances", { asset: a.asset, branch: state.branch, limit: 1 })
        .then((page) => {
          const t = page.items[0] && page.items[0].created_at;
          const seen = state.lastEvent.get(key);
          last.textContent = when(seen && seen > t ? seen : t);
        }).catch(() => {});
    }
    return h("tr", { "data-asset": a.asset },
      h("td", {}, h("a", { href: link("/asset", { asset: a.asset }) }, a.asset)),
      h("td", {}, a.kind), h("td", {}, a.latest || "—"),
      h("td", {}, Object.entries(a.aliases).map(([k, v]) => h("span", { class: "alias" }, `@${k} ${v}`))),
      h("td", { class: "num" }, String(a.instances)),
      h("td", {}, stale ? h("span", { class: "stale" }, `stale since ${when(stale)}`) : h("span", { class: "fresh" }, "—")),
      last);
  });
  return [h("h1", {}, `Assets of ${state.project} on ${state.branch}`),
    rows.length ? table("assets", ["asset", "kind", "latest", "aliases", "instances", "freshness", "last event"], rows)
      : h("p", { class: "muted", id: "no-assets" }, "No assets on this branch yet.")];
}
async function lineageView(params) {
  const asset = params.get("asset");
  const instance = params.get("instance") || "latest";
  const depth = params.get("depth") || "3";
  state.refresh = (ev) => ev.type === "instance_created";
  const names = (await q(state.project, "assets", { branch: state.branch })).map((a) => a.asset);
  const form = h("form", { id: "lineage-form", class: "filters" },
    h("label", {}, "asset ", h("input", { id: "l-asset", name: "asset", value: asset || "", list: "asset-names" })),
    h("datalist", { id: "asset-names" }, names.map((n) => h("option", { value: n }))),
    h("label", {}, "instance ", h("input", { id: "l-instance", name: "instance", value: instance, size: 10 })),
    h("label", {}, "depth ", h("input", { id: "l-depth", name: "depth", type: "number", min: 1, max: 50, value: depth })),
    h("button", { type: "submit" }, "Show"));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const d = new FormData(form);
    go("/lineage", { asset: d.get("asset"), instance: d.get("instance"), depth: d.get("depth") });
  });
  if (!asset) return [h("h1", {}, "Lineage"), form, h("p", { class: "muted" }, "Choose an asset.")];
  const args = { asset, branch: state.branch, instance, depth };
  const [up, down] = await Promise.all(["upstream", "downstream"].map((direction) =>
    q(state.project, "lineage", { ...args, direction })));
  const nodes = new Map();
  for (const n of [...up.nodes, ...down.nodes]) nodes.set(n.id, n);
  const edges = new Map();
  for (const e of [...up.edges, ...down.edges]) edges.set(`${e.from}|${e.to}|${e.relation}`, e);
  const root = up.nodes[0] || down.nodes[0];
  const onPick = (n) => go("/asset", { asset: n.asset, branch: n.branch, instance: n.instance });
  const graph = root ? lineageSvg(root.id, [...nodes.values()], [...edges.values()], onPick) : null;
  return [h("h1", {}, "Lineage of ", root ? root.id : asset), form,
    h("p", { class: "muted" }, "Upstream on the left, downstream on the right; click an instance to open it.",
      up.truncated || down.truncated ? " (cut at a limit)" : ""),
    h("div", { class: "graph-box" }, graph)];
}

async function dlqView() {
  state.refresh = (ev) => ev.type === "event_rejected";
  const letters = await get(`${encodeURIComponent(state.project)}/dlq`, { limit: 100 });
  return [h("h1", {}, `Dead letters of ${state.project}`),
    letters.length ? table("dlq", ["seq", "time", "inbound subject", "event id", "reason", "errors"],
      letters.map((d) => h("tr", {}, h("td", { class: "num" }, String(d.seq)), h("td", {}, when(d.time)),
        h("td", {}, d.inbound_subject), h("td", {}, d.event_id || "—"), h("td", { class: "reason" }, d.reason),
        h("td", {}, h("code", {}, d.errors.length ? JSON.stringify(d.errors) : "—")))))
      : h("p", { class: "muted", id: "no-dlq" }, "No dead letters.")];
}

const VIEWS = { "/assets": assetsView, "/asset": assetView, "/lineage": lineageView, "/dlq": dlqView };

async function render(quiet) {
  const { path, params } = route();
  const branch = params.get("branch");
  if (branch && branch !== state.branch) {
    state.branch = branch;
    state.branches.add(branch);
    fillSelect(branchPick, state.branches, branch);
  }
  const project = params.get("project");
  if (project && project !== state.project) {
    state.project = project;
    fillSelect(projectPick, [...projectPick.options].map((o) => o.value), project);
    connect();
  }
  for (const id of ["assets", "lineage", "dlq"]) {
    const a = document.getElementById(`nav-${id}`);
    a.setAttribute("href", link(`/${id}`, {}));
    a.classList.toggle("current", path === `/${id}` || (id === "assets" && path === "/asset"));
  }
  const ticket = ++state.render;
  const fn = VIEWS[path] || assetsView;
  let content;
  try {
    content = await fn(params);
  } catch (err) {
    content = [failure(err)];
  }
  if (ticket !== state.render) return;
  const scroll = window.scrollY;
  view.replaceChildren(...content.flat());
  if (quiet) window.scrollTo(0, scroll);
  const instance = params.get("instance");
  if (path === "/asset" && instance && !quiet) {
    const row = document.querySelector(`#instances tr[data-version="${CSS.escape(instance)}"]`);
    if (row) row.classList.add("picked");
  }
  document.body.dataset.view = path.slice(1);
  document.body.dataset.ready = String(ticket);
}

window.addEventListener("hashchange", () => render(false));

await loadPickers();
connect();
await render(false);
