"use strict";
const REFRESH_MS = 3000;
const PAGE = 500;  // apps per request: the server filters and pages (GET /api/v1/apps?...&limit=&continue=)
const FILTERS = {q: "app-search", label: "filter-label", sync: "filter-sync", health: "filter-health",
  cluster: "filter-cluster", appSet: "filter-appset"};
const TYPED = new Set(["q", "label"]);  // text boxes: asked again as the user types
const filters = JSON.parse(sessionStorage.getItem("filters") || "{}");  // the FILTERS keys, and group
let selected = sessionStorage.getItem("cluster");
let cell = JSON.parse(sessionStorage.getItem("cell") || "null");  // {app, cluster}: the matrix cell shown
const el = (tag, attrs = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) { if (k === "class") node.className = v; else node.setAttribute(k, v); }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(c ?? ""));
  return node;
};
const badge = (text) => el("span", {class: "badge " + text}, text);
let may = null;  // GET /api/v1/me's "may": per resource, the actions this token may take (levers it may not: hidden)
let csrf = null;  // a single sign-on session's CSRF token: every change made through the session carries it
const can = (action) => !may || (may.apps || []).includes(action);

async function load() {
  const typing = document.activeElement && ["suspend-reason", "rollback-to"].includes(document.activeElement.id);
  if (typing) return;  // not while an operator types
  const token = sessionStorage.getItem("token");
  const get = (path) => fetch(path, {headers: token ? {Authorization: "Bearer " + token} : {}});
  // The fleet summary carries no per-object results; only the selected cluster's are fetched.
  // The apps x clusters matrix comes compact from /api/v1/apps (about 100 bytes a cell).
  const query = new URLSearchParams({limit: String(PAGE)});
  for (const k of Object.keys(FILTERS)) if (filters[k]) query.set(k, filters[k]);
  const [resp, appsResp, one, past, setsResp] = await Promise.all([get("api/v1/status?objects=false&apps=false"),
    get("api/v1/apps?" + query),
    cell ? get("api/v1/apps/" + encodeURIComponent(cell.app) + "?objects=true")
      : selected ? get("api/v1/clusters/" + encodeURIComponent(selected)) : null,
    cell ? get("api/v1/apps/" + encodeURIComponent(cell.app) + "/history") : null, get("api/v1/appsets")]);
  if (resp.status === 401) { signIn(); return; }
  document.getElementById("login").style.display = "none";
  if (may === null) {
    const me = await get("api/v1/me");
    const doc = me.ok ? await me.json() : {may: {}};
    may = doc.may;
    csrf = doc.csrfToken || null;
    document.getElementById("user").textContent = doc.subject ? `${doc.subject}` +
      (doc.groups && doc.groups.length ? ` (${doc.groups.join(", ")})` : "") : "";
    document.getElementById("logout").hidden = !csrf;
  }
  const detailed = one && one.ok ? await one.json() : null;
  const appsDoc = appsResp.ok ? await appsResp.json()
    : {apps: [], total: 0, refused: appsResp.status === 400 ? (await appsResp.json()).detail : null};
  filterError = appsDoc.refused || "";
  appSets = setsResp.ok ? (await setsResp.json()).appSets.map((a) => a.name) : [];
  total = appsDoc.total ?? appsDoc.apps.length;
  if (cell && detailed) {  // the app's cell on the chosen cluster, shown like a cluster's objects
    const found = (detailed.clusters || []).find((c) => c.cluster === cell.cluster);
    const history = past && past.ok ? ((await past.json()).clusters || []).find((c) => c.cluster === cell.cluster) : null;
    render(await resp.json(), appsDoc.apps, found ? {name: cell.cluster, app: cell.app, lastSync: found.lastSync,
      hookRuns: found.lastHookRuns, held: found.held, pinned: found.pinned, syncStatus: found.syncStatus,
      history: history ? history.history : []} : null);
  } else render(await resp.json(), appsDoc.apps, detailed);
}

let appSets = [];  // the app sets' names (the filter's choices)
let filterError = "";  // why the server refused the filter (a label selector it cannot read)
let total = 0;  // how many apps the filter keeps (the server's count; the page shows PAGE at most)
let refilter = null;

function wireFilters() {
  // The filter bar is static markup: refreshes update its counts and choices, never the control being used.
  for (const [k, id] of Object.entries(FILTERS)) {
    const node = document.getElementById(id);
    node.value = filters[k] || "";
    node.addEventListener(TYPED.has(k) ? "input" : "change", () => { filters[k] = node.value; saveFilters(); });
  }
  const group = document.getElementById("group-appset");
  group.checked = !!filters.group;
  group.addEventListener("change", () => { filters.group = group.checked; saveFilters(); });
}

function saveFilters() {
  sessionStorage.setItem("filters", JSON.stringify(filters));
  clearTimeout(refilter);
  refilter = setTimeout(load, 250);  // typing in the search box asks once it pauses
}

function addChoices(id, values) {
  const select = document.getElementById(id);
  const have = new Set([...select.options].map((o) => o.value));
  for (const v of values) if (!have.has(v)) select.append(el("option", {value: v}, v));
  const key = Object.keys(FILTERS).find((k) => FILTERS[k] === id);
  if (filters[key] && select.value !== filters[key]) select.value = filters[key];
}

function renderCounts(counts) {
  // Over the whole fleet (the status summary's appCounts): apps, and app x cluster cells per sync status and health.
  const parts = [`${counts.apps} apps`, ...Object.entries(counts.syncStatus).map(([k, n]) => `${n} ${k}`),
    ...Object.entries(counts.health).map(([k, n]) => `${n} ${k}`)];
  document.getElementById("app-counts").textContent = parts.join(" · ");
}

let reason = "";  // the suspend reason being typed (kept across the 3 s refreshes)
let rollbackTo = "";  // the revision a rollback is typed to
let leverResult = "";

async function lever(path, body, done) {
  // An operator's lever on the app's cell: sync now, suspend or resume (POST, with the token), then refresh.
  const token = sessionStorage.getItem("token");
  const headers = {"Content-Type": "application/json", ...(token ? {Authorization: "Bearer " + token} : {}),
    ...(csrf ? {"X-CSRF-Token": csrf} : {})};
  const resp = await fetch(path, {method: "POST", headers, body: JSON.stringify(body)});
  const doc = await resp.json().catch(() => ({}));
  leverResult = resp.ok ? done : `refused (${resp.status}): ${doc.detail || ""}`;
  load();
}

function renderLevers(c) {
  const app = encodeURIComponent(c.app);
  const input = el("input", {id: "suspend-reason", placeholder: "reason", value: reason});
  input.addEventListener("input", () => { reason = input.value; });
  const to = el("input", {id: "rollback-to", placeholder: "revision (sha, tag)", value: rollbackTo});
  to.addEventListener("input", () => { rollbackTo = to.value; });
  const button = (id, text, handler) => {
    const b = el("button", {id}, text);
    b.addEventListener("click", handler);
    return b;
  };
  // Only the levers the token's roles grant somewhere (the server checks each request against this cell anyway).
  const parts = [];
  if (can("sync")) parts.push(button("sync-app", "Sync", () => lever(`api/v1/apps/${app}/sync`, {cluster: c.name},
    `sync of ${c.app} on ${c.name} requested`)), " ");
  if (can("suspend")) parts.push(input, " ",
    button("suspend-app", "Suspend", () => lever(`api/v1/apps/${app}/suspend`, {cluster: c.name, reason, by: "dashboard"},
      `${c.app} suspended on ${c.name}`)), " ",
    button("resume-app", "Resume", () => lever(`api/v1/apps/${app}/resume`, {cluster: c.name, by: "dashboard"},
      `${c.app} resumed on ${c.name}`)), " ");
  if (can("rollback")) parts.push(to, " ",
    button("rollback-app", "Roll back", () => lever(`api/v1/apps/${app}/rollback`,
      {cluster: c.name, to: rollbackTo, by: "dashboard"}, `${c.app} on ${c.name} pinned to ${rollbackTo}`)), " ",
    button("unpin-app", "Unpin", () => lever(`api/v1/apps/${app}/unpin`, {cluster: c.name, by: "dashboard"},
      `${c.app} on ${c.name} unpinned`)), " ");
  return el("p", {id: "levers"}, ...parts, el("span", {id: "lever-result", class: "muted"}, leverResult));
}

function selectiveSync(c, o) {
  // Argo CD's selective sync: write this object of the app only (no hook, no prune).
  if (!can("sync")) return "";
  const ref = `${o.kind}${o.group ? "." + o.group : ""}/${o.namespace ? o.namespace + "/" : ""}${o.name}`;
  const b = el("button", {class: "sync-object", "data-object": ref, title: "sync only this object"}, "Sync");
  b.addEventListener("click", () => lever(`api/v1/apps/${encodeURIComponent(c.app)}/sync`,
    {cluster: c.name, resources: [ref]}, `selective sync of ${ref} on ${c.name} requested`));
  return b;
}

function renderApps(apps, clusters) {
  // Apps x clusters: per cell the app's sync status and health there ("-" where it is not placed); the apps the
  // filter bar keeps (filtered and paged by the server), grouped by app set when asked.
  const box = document.getElementById("apps");
  box.replaceChildren();
  const placed = apps.filter((a) => a.clusters.length);
  if (filters.group) placed.sort((a, b) => (a.appSet || "").localeCompare(b.appSet || ""));
  const names = placed.map((a) => a.name);
  const setOf = Object.fromEntries(placed.map((a) => [a.name, a.appSet || ""]));
  const shown = filterError ? el("p", {id: "apps-shown", class: "error"}, filterError)
    : el("p", {id: "apps-shown", class: "muted"}, `${names.length} of ${total} matching apps shown`);
  const labelsOf = Object.fromEntries(placed.map((a) => [a.name,
    Object.entries(a.labels || {}).map(([k, v]) => `${k}=${v}`).join(", ")]));
  if (!names.length) { box.append(el("h2", {}, "Apps"), shown); return; }
  const cells = {};
  for (const a of apps) for (const c of a.clusters) cells[a.name + "\u0000" + c.cluster] = c;
  const head = el("tr", {}, el("th", {}, "app"), ...clusters.map((c) => el("th", {}, c.name)));
  const rows = names.map((app) => el("tr", {"data-app": app}, el("td", {}, el("b", {}, app),
    labelsOf[app] ? el("div", {class: "labels muted"}, labelsOf[app]) : ""), ...clusters.map((c) => {
    const a = cells[app + "\u0000" + c.name];
    if (!a) return el("td", {class: "muted"}, "-");
    const chosen = cell && cell.app === app && cell.cluster === c.name;
    const td = el("td", {class: "cell" + (chosen ? " selected" : ""), "data-app": app, "data-cluster": c.name,
      title: [a.syncStatusReason, a.stale ? "source stale: " + a.stale : ""].filter(Boolean).join("; ")},
      badge(a.syncStatus), badge(a.health), el("span", {class: "mono muted"}, a.revision ? a.revision.slice(0, 7) : ""),
      a.syncStatus !== "Synced" && a.syncStatusReason ? el("div", {class: "reason muted"}, a.syncStatusReason) : "");
    td.addEventListener("click", () => {
      cell = {app, cluster: c.name}; sessionStorage.setItem("cell", JSON.stringify(cell)); load();
    });
    return td;
  })));
  const grouped = [];
  rows.forEach((row, i) => {
    const group = setOf[names[i]];
    if (filters.group && (i === 0 || setOf[names[i - 1]] !== group)) {
      const count = names.filter((n) => setOf[n] === group).length;
      grouped.push(el("tr", {class: "group", "data-appset": group}, el("td", {colspan: String(clusters.length + 1)},
        group ? `app set ${group} (${count})` : `apps (${count})`)));
    }
    grouped.push(row);
  });
  box.append(el("h2", {}, "Apps"), shown, el("table", {id: "matrix"}, el("thead", {}, head), el("tbody", {}, ...grouped)));
}

function renderEvents(events) {
  // The timeline: the newest events first, per cluster (or the source), with their reason and message.
  const box = document.getElementById("events");
  box.replaceChildren();
  if (!events.length) return;
  const rows = events.map((e) => el("tr", {class: "event"},
    el("td", {class: "muted"}, new Date(e.time).toLocaleTimeString()),
    el("td", {}, el("span", {class: "badge " + (e.type === "Warning" ? "failed" : "Succeeded")}, e.reason)),
    el("td", {}, e.cluster || "source"), el("td", {class: "mono"}, (e.revision || "").slice(0, 12)),
    el("td", {}, e.message)));
  box.append(el("h2", {}, "Events"), el("table", {id: "timeline"},
    el("thead", {}, el("tr", {}, el("th", {}, "time"), el("th", {}, "reason"), el("th", {}, "cluster"),
      el("th", {}, "revision"), el("th", {}, "message"))), el("tbody", {}, ...rows)));
}

function render(status, apps, detailed) {
  const src = status.source || {};
  const rev = src.revision ? `${src.revision.ref} @ ${src.revision.sha.slice(0, 12)}` : "no revision yet";
  const stale = src.stale ? "  STALE (source error: " + src.error + ")" : "";
  const ready = status.ready && !status.ready.ready ? "  not ready: " + status.ready.reasons.join("; ") : "";
  document.getElementById("source").textContent = rev + stale + ready;
  document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
  const body = document.querySelector("#clusters tbody");
  body.replaceChildren();
  const perCluster = (status.appCounts || {}).clusters || {};
  for (const c of status.clusters) {
    const last = c.lastSync || {};
    const apps = perCluster[c.name];  // its apps per sync status and health
    const appText = apps ? [`${apps.apps}`, ...Object.entries(apps.syncStatus).map(([k, n]) => `${n} ${k}`),
      ...Object.entries(apps.health).map(([k, n]) => `${n} ${k}`)].join(" · ") : "-";
    const counts = Object.entries(last.counts || {}).filter(([, n]) => n).map(([a, n]) => `${n} ${a}`).join(", ");
    const row = el("tr", {class: "cluster" + (c.name === selected ? " selected" : ""), "data-cluster": c.name},
      el("td", {}, el("b", {}, c.name)), el("td", {class: "app-counts"}, appText),
      el("td", {class: "mono"}, last.revision ? last.revision.sha.slice(0, 12) : "-"),
      el("td", {}, badge(c.syncStatus || "Unknown")), el("td", {}, badge(c.health || "Unknown")),
      el("td", {class: "muted"}, last.started ? new Date(last.started).toLocaleString() : "-"),
      el("td", {}, last.durationSeconds !== undefined ? last.durationSeconds.toFixed(2) + " s" : "-"),
      el("td", {}, counts), el("td", {class: "error"}, [(c.worker || {}).throttled, c.syncStatusReason, last.error].filter(Boolean).join("; ")));
    row.addEventListener("click", () => {
      selected = c.name; cell = null; sessionStorage.setItem("cluster", c.name); sessionStorage.removeItem("cell"); load();
    });
    body.append(row);
  }
  document.getElementById("clusters").hidden = false;
  const detail = document.getElementById("detail");
  detail.replaceChildren();
  if (detailed && (detailed.app || detailed.name === selected)) detail.append(renderCluster(detailed));
  document.getElementById("filters").hidden = false;
  addChoices("filter-cluster", status.clusters.map((c) => c.name));
  addChoices("filter-appset", appSets);
  renderCounts(status.appCounts || {apps: 0, syncStatus: {}, health: {}});
  renderApps(apps, status.clusters);
  renderEvents(status.events || []);
}

function renderCluster(c) {
  const last = c.lastSync || {objects: []};
  const fights = (c.selfHeal && c.selfHeal.fighting) || [];
  const table = el("table", {id: "objects"}, el("thead", {}, el("tr", {},
    el("th", {}, "object"), el("th", {}, "action"), el("th", {}, "health"), el("th", {}, "source"), el("th", {}, "message"),
    ...(c.app ? [el("th", {}, "")] : []))));
  const body = el("tbody");
  for (const o of last.objects || []) {
    const name = `${o.kind}${o.group ? "." + o.group : ""} ${o.namespace ? o.namespace + "/" : ""}${o.name}`;
    const message = el("td", {}, o.healthMessage ? o.message + (o.message ? " · " : "") + o.healthMessage : o.message);
    if (o.diff) message.append(renderDiff(o.diff));
    const row = el("tr", {}, el("td", {class: "mono"}, name), el("td", {}, badge(o.action)),
      el("td", {}, o.health ? badge(o.health) : ""), el("td", {class: "mono muted"}, o.source), message);
    if (c.app) row.append(el("td", {}, selectiveSync(c, o)));
    body.append(row);
  }
  table.append(body);
  const parts = [el("h2", {}, c.app ? `app ${c.app} on cluster ${c.name}` : `cluster ${c.name}`)];
  if (c.app) parts.push(renderLevers(c));
  if (c.held) parts.push(el("p", {id: "held", class: "error"}, badge("Held"), " " + c.held));
  if (c.pinned) parts.push(el("p", {id: "pinned", class: "error"}, badge("Pinned"), " " + c.pinned.text));
  for (const f of fights) parts.push(el("p", {class: "error"}, badge("Fighting"),
    ` ${f.kind} ${f.namespace}/${f.name}: corrected ${f.corrections} times, other field manager "${f.manager}"`));
  const plan = c.app && last.plans ? last.plans[c.app] : null;
  if (plan) parts.push(el("p", {class: "muted", id: "plan"}, "plan: " + plan.map((s) =>
    `${s.phase} wave ${s.wave}` + (s.objects ? ` (${s.objects} objects)` : "") +
    (s.hooks.length ? ` (hooks: ${s.hooks.join(", ")})` : "")).join(" → ")));
  if (c.hookRuns && c.hookRuns.runs.length) parts.push(renderHooks(c.hookRuns));
  parts.push(table);
  if (c.app && c.history && c.history.length) parts.push(renderHistory(c.history));
  const wrap = el("div");
  wrap.append(...parts);
  return wrap;
}

function renderHistory(entries) {  // the app's last syncs on the cluster that meant something, newest first
  const rows = entries.map((e) => el("tr", {class: "past"}, el("td", {class: "muted"}, new Date(e.started).toLocaleString()),
    el("td", {class: "mono"}, (e.revision || "").slice(0, 12)), el("td", {}, badge(e.result)),
    el("td", {}, String(e.changes)), el("td", {}, e.kind), el("td", {class: "muted"}, e.trigger),
    el("td", {class: "error"}, e.error || "")));
  const table = el("table", {id: "history"}, el("thead", {}, el("tr", {}, ...["started", "revision", "result",
    "changes", "kind", "trigger", "error"].map((h) => el("th", {}, h)))), el("tbody", {}, ...rows));
  const wrap = el("div");
  wrap.append(el("h3", {}, "history (last syncs that changed something or failed)"), table);
  return wrap;
}

function renderHooks(found) {  // the runs of the last sync that ran hooks
  const table = el("table", {id: "hooks"}, el("thead", {}, el("tr", {}, el("th", {}, "hook"), el("th", {}, "phase"),
    el("th", {}, "wave"), el("th", {}, "result"), el("th", {}, "duration"), el("th", {}, "message"))));
  const body = el("tbody");
  for (const h of found.runs) {
    body.append(el("tr", {}, el("td", {class: "mono"}, `${h.kind} ${h.namespace ? h.namespace + "/" : ""}${h.name}`),
      el("td", {}, h.phase), el("td", {}, String(h.wave)), el("td", {}, badge(h.result)),
      el("td", {}, h.duration.toFixed(1) + "s"), el("td", {}, h.message)));
  }
  table.append(body);
  const rev = found.revision ? found.revision.sha.slice(0, 12) : "-";
  const wrap = el("div");
  wrap.append(el("h3", {}, `hook runs (last sync that ran hooks, @ ${rev})`), table);
  return wrap;
}

function renderDiff(text) {
  const pre = el("pre", {class: "diff"});
  for (const line of text.split("\n")) {
    const cls = line.startsWith("+") && !line.startsWith("+++") ? "add" : line.startsWith("-") && !line.startsWith("---") ? "del" : "";
    pre.append(el("span", {class: cls}, line + "\n"));
  }
  return pre;
}

async function signIn() {
  // Not signed in: the token form, and the single sign-on link when the agent has it (GET /auth/info).
  document.getElementById("login").style.display = "block";
  may = null;
  csrf = null;
  document.getElementById("user").textContent = "";
  document.getElementById("logout").hidden = true;
  const info = await fetch("auth/info").then((r) => r.json()).catch(() => ({}));
  document.getElementById("sso").hidden = !info.oidc;
}

document.getElementById("logout").addEventListener("click", async () => {
  const resp = await fetch("auth/logout", {method: "POST", headers: csrf ? {"X-CSRF-Token": csrf} : {}});
  const doc = await resp.json().catch(() => ({}));
  sessionStorage.removeItem("token");
  window.location.assign(doc.logoutURL || "/");
});

document.getElementById("login").addEventListener("submit", (e) => {
  e.preventDefault();
  sessionStorage.setItem("token", document.getElementById("token").value);
  may = null;  // another token: asked again what it may do
  load();
});
wireFilters();
load();
setInterval(load, REFRESH_MS);
