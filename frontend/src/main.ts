// The dashboard page: layout, project and view switching, keyboard shortcuts, theme, and the
// glue between the run list, the views and live updates. The Compare tab appears for a
// project of RAG eval runs (config trainer "rag").

import "uplot/dist/uPlot.min.css";
import "./style.css";
import { ApiError, RunInfo, api, setToken } from "./api";
import { ema, movingAverage } from "./chartdata";
import { CompareView } from "./compare";
import { setOpenRun } from "./control";
import { debounce, fill, h, notice } from "./dom";
import { classify, isEvalRun } from "./evals";
import { MetricGrid } from "./grid";
import { LiveClient, PointsEvent, encodeCursor } from "./live";
import { ParallelView } from "./parallel";
import { RunDetailView } from "./detail";
import { RunList } from "./runlist";
import { View, state } from "./state";
import { RunsTable } from "./table";

const root = document.getElementById("app")!;
const grid = new MetricGrid();
const runList = new RunList(() => void loadRuns(false), (id) => openRun(id));
const table = new RunsTable(() => void loadRuns(false), (id) => openRun(id));
const parallel = new ParallelView((id) => openRun(id));
const compare = new CompareView((id) => openRun(id));
const detail = new RunDetailView(() => setView(state.detailRun ? lastView : "charts"), (id) => openRun(id));
const main = h("main", { id: "main", tabindex: -1 });
const projectSelect = h("select", { id: "project", "aria-label": "project",
  onchange: (e: Event) => void openProject((e.target as HTMLSelectElement).value) });
const liveBadge = h("span", { class: "live", id: "live-status", role: "status" }, "");
const tabs = new Map<View, HTMLButtonElement>();
const VIEWS: View[] = ["charts", "table", "parallel", "compare"];
const TAB_LABELS: Record<string, string> = {
  charts: "Charts", table: "Table", parallel: "Parallel", compare: "Compare",
};
let lastView: View = "charts";
/** Whether the open project holds RAG eval runs (then the Compare tab is shown). */
let evalProject = false;
const live = new LiveClient({
  run: onRunEvent,
  points: onPoints,
  op: (op) => {
    if (op.project !== state.project) return;
    state.putOp(op);
    state.emit("ops");
    if (op.kind === "delete" && op.status === "applied" && op.result.purged && op.run
        && state.run(op.run)) {  // purged: the run and its data are gone
      state.runs = state.runs.filter((r) => r.id !== op.run);
      state.emit("runs");
      state.emit("selection");
    }
  },
  controller: (c) => {
    state.experiment = c.experiment;
    state.controllerAlive = c.alive;
    state.emit("ops");
  },
  status: (s) => {
    state.liveStatus = s;
    liveBadge.textContent = s === "live" ? "● live" : s === "connecting" ? "○ connecting" : "○ offline";
    liveBadge.dataset.status = s;
  },
});

// -- theme ---------------------------------------------------------------------------------
function applyTheme(theme: "light" | "dark"): void {
  state.theme = theme;
  document.documentElement.dataset.theme = theme;
  try {
    localStorage.setItem("runfleet-theme", theme);
  } catch {
    /* storage may be off */
  }
  state.emit("theme");
}

function initialTheme(): "light" | "dark" {
  try {
    const saved = localStorage.getItem("runfleet-theme");
    if (saved === "light" || saved === "dark") return saved;
  } catch {
    /* storage may be off */
  }
  return window.matchMedia?.("(prefers-color-scheme: dark)").matches ? "dark" : "light";
}

// -- layout --------------------------------------------------------------------------------
function layout(): void {
  const tabBar = h("nav", { class: "tabs", role: "tablist", "aria-label": "views" },
    ...VIEWS.map((v, i) => {
      const b = h("button", { type: "button", role: "tab", id: `tab-${v}`, "aria-selected": "false",
                              title: v === "compare"
                                ? "compare eval configs: metrics with intervals, latency (4)"
                                : `${v} (${i + 1})`,
                              hidden: v === "compare" && !evalProject, onclick: () => setView(v) },
        TAB_LABELS[v]);
      tabs.set(v, b);
      return b;
    }));
  const themeBtn = h("button", { type: "button", class: "small", id: "theme-toggle",
                                 title: "Light or dark theme (t)",
                                 onclick: () => applyTheme(state.theme === "dark" ? "light" : "dark") },
    "◐ Theme");
  const help = h("span", { class: "muted keys-help" }, "/ search · 1-4 views · t theme · Esc back");
  fill(root,
    h("header", { class: "topbar" }, h("strong", { class: "brand" }, "runfleet"),
      h("label", {}, "Project ", projectSelect), tabBar, liveBadge, help, themeBtn),
    h("div", { class: "layout" }, runList.el, main));
  root.removeAttribute("aria-busy");
}

/** Show the Compare tab once the project's listed runs include an eval run (it stays while
 *  a search hides them); leave the view if the project has none. */
function updateTabs(): void {
  evalProject = evalProject || state.runs.some((r) => isEvalRun(r));
  const tab = tabs.get("compare");
  if (tab) tab.hidden = !evalProject;
  if (!evalProject && state.view === "compare") setView("charts");
}

state.on("runs", updateTabs);

function setView(view: View): void {
  if (view === "compare" && !evalProject) view = "charts";
  if (view !== "run") {
    lastView = view;
    state.detailRun = null;
    detail.hide();
  }
  state.view = view;
  tabs.forEach((b, v) => b.setAttribute("aria-selected", String(v === view)));
  const el = view === "charts" ? grid.el : view === "table" ? table.el
    : view === "parallel" ? parallel.el : view === "compare" ? compare.el : detail.el;
  main.replaceChildren(el);
  if (view === "table") table.render();
  if (view === "parallel") parallel.render();
  if (view === "compare") compare.render();
  if (view === "charts") grid.reloadAll();
  updateUrl();
}

function openRun(id: string): void {
  state.detailRun = id;
  setView("run");
  void detail.show(id);
}

function updateUrl(): void {
  const url = new URL(window.location.href);
  url.hash = "";
  if (state.project) url.searchParams.set("project", state.project);
  url.searchParams.set("view", state.view);
  if (state.detailRun) url.searchParams.set("run", state.detailRun);
  else url.searchParams.delete("run");
  history.replaceState(null, "", url);
}

function pageError(message: string): void {
  main.replaceChildren(notice("error", message));
}

// -- data ----------------------------------------------------------------------------------
async function openProject(name: string): Promise<void> {
  state.project = name;
  state.search = "";
  state.filters = [];
  state.statuses = [];
  state.keys = [];
  state.ops = new Map();
  state.experiment = false;
  state.controllerAlive = false;
  evalProject = false;
  projectSelect.value = name;
  live.close();
  subscribed = null;
  main.replaceChildren(notice("loading", "Loading runs…"));
  await loadOps();
  const ok = await loadRuns(true);
  setView(state.view === "run" ? "charts" : state.view);
  if (!ok) return;
  await loadKeys();
  subscribe();
}

/** The project's control ops (audit trail) and whether its controller runs. */
async function loadOps(): Promise<void> {
  if (!state.project) return;
  const project = state.project;
  try {
    const res = await api.ops(project);
    if (project !== state.project) return;
    state.ops = new Map(res.ops.map((o) => [o.id, o]));
    state.opsStart = res.ops_from;
    state.experiment = res.experiment;
    state.controllerAlive = res.controller_alive;
    state.engineKeys = new Set(res.engine_keys);
    state.emit("ops");
  } catch (err) {
    runList.showError(err instanceof ApiError ? err.message : String(err));
  }
}

/** (Re)open the live stream for the runs drawn, from what the page knows of them. */
let subscribed: string | null = null;

function subscribe(): void {
  if (!state.project) return;
  const shown = state.visibleRuns();
  const cursor: Record<string, number> = {};
  shown.forEach((r) => { cursor[r.id] = r.last_step; });
  subscribed = shown.map((r) => r.id).join(",");
  live.connect(state.project, encodeCursor(cursor), shown.map((r) => r.id), state.opsFrom());
}

// Ticking runs on or off changes the subscription (after the first one is open).
state.on("selection", debounce(() => {
  if (subscribed !== null && state.visibleRuns().map((r) => r.id).join(",") !== subscribed) {
    subscribe();
  }
}, 500));

let runsRequest = 0;

/** Ask the server for the run list with the current search, filters and sort. */
async function loadRuns(fresh: boolean): Promise<boolean> {
  if (!state.project) return false;
  const mine = ++runsRequest;
  const text = state.search.trim();
  const regex = text.length > 2 && text.startsWith("/") && text.endsWith("/");
  try {
    const res = await api.runs({
      project: state.project, search: regex ? text.slice(1, -1) : text, regex,
      status: state.statuses, filter: state.filters, sort: state.sort,
      deleted: state.showDeleted,
    });
    if (mine !== runsRequest) return false;
    runList.showError(null);
    state.setRuns(res.runs, fresh);
    state.total = res.total;
    state.configKeys = res.config_keys;
    state.summaryKeys = res.summary_keys;
    state.emit("runs");
    state.emit("selection");
    return true;
  } catch (err) {
    if (mine !== runsRequest) return false;
    runList.showError(err instanceof ApiError ? err.message : String(err));
    return false;
  }
}

async function loadKeys(): Promise<void> {
  if (!state.project) return;
  try {
    state.keys = await api.keys(state.project);
    state.emit("keys");
  } catch (err) {
    pageError(err instanceof ApiError ? err.message : String(err));
  }
}

const reloadForNewRuns = debounce(() => {
  void loadRuns(false).then(() => loadKeys());
}, 300);
const reloadKeys = debounce(() => void loadKeys(), 500);
const refreshTable = debounce(() => {
  if (state.view === "table") table.render();
}, 1000);

function onRunEvent(run: RunInfo): void {
  if (run.project !== state.project) return;
  detail.onRun(run);
  const listed = state.run(run.id);
  const hidden = run.status === "deleted" && !state.showDeleted
    && !state.statuses.includes("deleted");
  if (listed && hidden) {  // deleted: leave the list (the "show deleted" toggle brings it back)
    state.runs = state.runs.filter((r) => r.id !== run.id);
    state.total = Math.max(0, state.total - 1);
    state.emit("runs");
    state.emit("selection");
  } else if (hidden) {
    return;
  } else if (listed) {
    Object.assign(listed, run);
    state.emit("live");
    refreshTable();
  } else {
    reloadForNewRuns();
  }
}

/** x of live points on the chart's axis; for a metric axis, the value of that metric logged
 *  at the same step (remembered per run). */
const liveX = new Map<string, Map<number, number>>();

function onPoints(batch: PointsEvent[]): void {
  const axis = state.x;
  if (axis !== "step" && axis !== "time" && axis !== "relative") {
    for (const ev of batch) {
      if (ev.key !== axis) continue;
      if (!liveX.has(ev.run)) liveX.set(ev.run, new Map());
      const m = liveX.get(ev.run)!;
      ev.steps.forEach((s, i) => m.set(s, Number(ev.values[i])));
    }
  }
  const known = new Set(state.keys.map((k) => k.key));
  for (const ev of batch) {
    if (!known.has(ev.key)) reloadKeys();
    if (!state.selected.has(ev.run)) continue;
    const run = state.run(ev.run);
    const times = ev.times.map(Number);
    let xs: number[];
    if (axis === "step") xs = ev.steps;
    else if (axis === "time") xs = times;
    else if (axis === "relative") xs = times.map((t) => t - (run?.created ?? 0));
    else {
      const m = liveX.get(ev.run);
      xs = ev.steps.map((s) => m?.get(s) ?? NaN);
    }
    const ys = ev.values.map((v) => (typeof v === "boolean" ? Number(v) : Number(v)));
    const keep = xs.map((x, i) => (Number.isFinite(x) ? i : -1)).filter((i) => i >= 0);
    grid.live(ev.run, ev.key, keep.map((i) => xs[i]), keep.map((i) => ys[i]));
  }
}

// -- keyboard ------------------------------------------------------------------------------
function onKey(e: KeyboardEvent): void {
  const target = e.target as HTMLElement;
  // A dialog (confirmation, clone form) handles its own keys: Escape closes only it.
  if (target?.closest?.("dialog") || document.querySelector("dialog[open]")) return;
  const typing = target && (target.tagName === "INPUT" || target.tagName === "TEXTAREA"
    || target.tagName === "SELECT" || target.isContentEditable);
  if (e.key === "Escape" && state.view === "run") {
    setView(lastView);
    return;
  }
  if (typing || e.ctrlKey || e.metaKey || e.altKey) return;
  if (e.key === "/") {
    e.preventDefault();
    document.getElementById("run-search")?.focus();
  } else if (e.key === "t") {
    applyTheme(state.theme === "dark" ? "light" : "dark");
  } else if (e.key === "1" || e.key === "2" || e.key === "3" || (e.key === "4" && evalProject)) {
    setView(VIEWS[Number(e.key) - 1]);
  }
}

// -- start ---------------------------------------------------------------------------------
async function boot(): Promise<void> {
  const hash = new URLSearchParams(window.location.hash.slice(1));
  const token = hash.get("token");
  try {
    if (token) sessionStorage.setItem("runfleet-token", token);
    setToken(token ?? sessionStorage.getItem("runfleet-token"));
  } catch {
    setToken(token);
  }
  if (token) {
    // Out of the address bar (and so out of bookmarks, screenshots and copied links); the
    // tab keeps it in sessionStorage for reloads.
    const url = new URL(window.location.href);
    url.hash = "";
    history.replaceState(null, "", url);
  }
  applyTheme(initialTheme());
  layout();
  document.addEventListener("keydown", onKey);
  const params = new URLSearchParams(window.location.search);
  const view = params.get("view");
  if (view === "table" || view === "parallel" || view === "charts" || view === "compare") {
    state.view = view;
  }
  try {
    state.projects = await api.projects();
  } catch (err) {
    pageError(err instanceof ApiError ? err.message : String(err));
    return;
  }
  fill(projectSelect, ...state.projects.map((p) => h("option", { value: p.name },
    `${p.name} (${p.run_count})`)));
  if (!state.projects.length) {
    main.replaceChildren(notice("empty",
      "No projects yet. Log a run with runfleet.init(project=...) and it appears here."));
    return;
  }
  const wanted = params.get("project");
  const chosen = state.projects.find((p) => p.name === wanted)
    ?? [...state.projects].sort((a, b) => (b.last_updated ?? 0) - (a.last_updated ?? 0))[0];
  await openProject(chosen.name);
  const run = params.get("run");
  if (run) openRun(run);
}

setOpenRun((id) => openRun(id));

// Hooks for tests and debugging.
(window as unknown as Record<string, unknown>).__rf = {
  state, grid, charts: grid.charts, smoothing: { ema, movingAverage }, compare,
  evals: { classify },
};

void boot();
