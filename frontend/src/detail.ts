// Run detail: config, summary, tags and notes (editable), the lineage of clones (a tree),
// control buttons with the live status of the run's ops and their audit trail, alerts,
// an eval run's per-query drill-down (queries.ts), media (images, tables, histograms) and
// system metrics.

import { artifactsView } from "./artifacts";
import { ApiError, Json, LineageNode, MediaItem, RunDetail, RunInfo, api, mediaUrl } from "./api";
import { Chart } from "./chart";
import { actionButtons, argsText, fillButtons, fillOpStatus, opStatus } from "./control";
import { debounce, fill, flatten, fmt, fmtDuration, fmtTime, h, notice } from "./dom";
import { QueryDrillDown } from "./queries";
import { state } from "./state";

const TABLE_ROWS = 200;

export class RunDetailView {
  readonly el: HTMLElement;
  private charts: Chart[] = [];
  private runId: string | null = null;
  private current: RunDetail | null = null;
  private lineageEl: HTMLElement = h("div", { id: "detail-lineage" });
  private opsEl: HTMLElement = h("div", { id: "detail-ops" });
  private refreshLineage = debounce(() => void this.reloadLineage(), 200);
  private queries: QueryDrillDown | null = null;
  /** Queries done by the shown eval run when its per-query tables were last read. */
  private queriesDone: unknown = undefined;
  private refreshQueries = debounce(() => void this.reloadQueries(), 300);

  constructor(private back: () => void, private open: (run: string) => void) {
    this.el = h("div", { class: "view view-run" });
    state.on("ops", () => this.onOps());
  }

  /** A live change of a run: this run's status, or a run of its clone family. */
  onRun(run: RunInfo): void {
    const current = this.current;
    if (!current) return;
    if (run.id === current.id) {
      Object.assign(current, run);
      const badge = this.el.querySelector<HTMLElement>("#detail-status");
      if (badge) {
        badge.className = `status status-${run.status}`;
        badge.textContent = run.status;
      }
      const box = this.el.querySelector<HTMLElement>(".op-buttons");
      if (box) fillButtons(box, current);
      if (this.queries && run.summary["eval/queries_done"] !== this.queriesDone) {
        this.refreshQueries(); // a shard finished: its per-query tables are new
      }
    }
    const family = current.lineage.tree.map((n) => n.id);
    const known = current.lineage.tree.find((n) => n.id === run.id);
    if ((run.parent && family.includes(run.parent) && !known)
        || (known && known.status !== run.status)) {
      this.refreshLineage();
    }
  }

  private onOps(): void {
    const current = this.current;
    if (!current) return;
    const status = this.el.querySelector<HTMLElement>("#detail-op-status");
    if (status) fillOpStatus(status, current.id);
    const box = this.el.querySelector<HTMLElement>(".op-buttons");
    if (box) fillButtons(box, current);
    this.renderOps(current);
    const made = state.opsOf(current.id).some((o) => o.kind === "clone" && o.status === "applied"
      && typeof o.result.run_id === "string"
      && !current.lineage.tree.some((n) => n.id === o.result.run_id));
    if (made) this.refreshLineage();
  }

  private async reloadLineage(): Promise<void> {
    const runId = this.runId;
    if (!runId || !state.project) return;
    try {
      const run = await api.run(state.project, runId);
      if (this.runId !== runId || !this.current) return;
      this.current.lineage = run.lineage;
      fill(this.lineageEl, this.lineage(this.current));
    } catch {
      /* keep the lineage shown; the next change tries again */
    }
  }

  /** The shown eval run finished a shard: read its media list again, load the new tables. */
  private async reloadQueries(): Promise<void> {
    const runId = this.runId;
    const queries = this.queries;
    if (!runId || !state.project || !queries) return;
    try {
      const run = await api.run(state.project, runId);
      if (this.runId !== runId || this.queries !== queries || !this.current) return;
      this.current.media = run.media;
      this.queriesDone = run.summary["eval/queries_done"];
      await queries.refresh(run.media);
    } catch {
      /* keep what is shown; the next change tries again */
    }
  }

  async show(runId: string): Promise<void> {
    this.runId = runId;
    this.charts.forEach((c) => c.destroy());
    this.charts = [];
    fill(this.el, notice("loading", "Loading run…"));
    let run: RunDetail;
    try {
      run = await api.run(state.project!, runId);
    } catch (err) {
      fill(this.el, this.backButton(), notice("error", err instanceof ApiError ? err.message : String(err)));
      return;
    }
    if (this.runId !== runId) return;
    this.render(run);
  }

  private backButton(): HTMLElement {
    return h("button", { type: "button", class: "small", id: "detail-back", onclick: () => this.back() },
      "← Back");
  }

  private render(run: RunDetail): void {
    this.current = run;
    this.queries = QueryDrillDown.applies(run) ? new QueryDrillDown(run, this.open) : null;
    this.queriesDone = run.summary["eval/queries_done"];
    void this.queries?.load();
    const duration = (run.finished ?? run.updated) - run.created;
    fill(this.lineageEl, this.lineage(run));
    this.renderOps(run);
    fill(this.el,
      h("div", { class: "detail-head" }, this.backButton(),
        h("h2", { id: "detail-name" }, run.name),
        h("span", { class: `status status-${run.status}`, id: "detail-status" }, run.status),
        h("span", { class: "muted" }, `id ${run.id}`),
        run.group ? h("span", { class: "muted" }, `group ${run.group}`) : null,
        actionButtons(run, "detail"),
        (() => {
          const el = opStatus(run.id, "detail");
          el.id = "detail-op-status";
          return el;
        })()),
      h("p", { class: "muted" }, `created ${fmtTime(run.created)}`,
        run.finished ? ` · finished ${fmtTime(run.finished)}` : "",
        ` · ${fmtDuration(duration)} · last step ${run.last_step >= 0 ? run.last_step : "none"}`),
      // an eval run's queries first: its summary holds a hundred eval/ keys
      this.queries ? this.section("Queries", this.queries.el) : null,
      h("div", { class: "detail-grid" },
        this.section("Config", kvTable(flatten(run.config))),
        this.section("Summary", kvTable(flatten(run.summary))),
        this.section("Tags and notes", this.editor(run)),
        this.section("Lineage", this.lineageEl),
        this.section("Alerts", this.alerts(run))),
      state.experiment || state.opsOf(run.id).length
        ? this.section("Ops (audit trail)", this.opsEl) : null,
      this.section("Artefacts", artifactsView(run.project, run.id, this.open)),
      this.section("Media", this.media(run)),
      this.section("System metrics", this.system(run)));
  }

  private section(title: string, body: HTMLElement): HTMLElement {
    return h("section", { class: "card" }, h("h3", {}, title), body);
  }

  private editor(run: RunDetail): HTMLElement {
    const tags = h("input", { type: "text", id: "detail-tags", value: run.tags.join(", "),
                              "aria-label": "tags, separated by commas" });
    const notes = h("textarea", { id: "detail-notes", rows: 4, "aria-label": "notes" });
    notes.value = run.notes ?? "";
    const message = h("span", { class: "muted", role: "status" });
    const save = h("button", {
      type: "button", id: "detail-save",
      onclick: async () => {
        message.textContent = "Saving…";
        try {
          const updated = await api.updateRun(run.project, run.id, {
            notes: notes.value,
            tags: tags.value.split(",").map((t) => t.trim()).filter(Boolean),
          });
          const listed = state.run(run.id);
          if (listed) Object.assign(listed, updated);
          message.textContent = "Saved.";
        } catch (err) {
          message.textContent = err instanceof ApiError ? err.message : String(err);
          message.className = "error-text";
        }
      },
    }, "Save");
    return h("div", { class: "editor" }, h("label", {}, "Tags ", tags), h("label", {}, "Notes", notes),
      h("div", { class: "row" }, save, message));
  }

  private link(id: string, name: string): HTMLElement {
    return h("button", { type: "button", class: "link", onclick: () => this.open(id) }, name);
  }

  /** Parent and children in words, and the clone family as a tree (links to each run). */
  private lineage(run: RunDetail): HTMLElement {
    const parent = run.lineage.parent;
    const children = run.lineage.children;
    const tree = run.lineage.tree ?? [];
    const kids = new Map<string | null, LineageNode[]>();
    tree.forEach((n) => {
      if (!kids.has(n.parent)) kids.set(n.parent, []);
      kids.get(n.parent)!.push(n);
    });
    const branch = (nodes: LineageNode[], depth: number): HTMLElement => h("ul", {
      class: depth ? "tree" : "tree tree-root", role: depth ? "group" : "tree",
      "aria-label": depth ? null : "clone lineage",
    }, ...nodes.map((n) => {
      const sub = kids.get(n.id) ?? [];
      const label = n.id === run.id
        ? h("strong", { class: "tree-self", "aria-current": "true" }, n.name)
        : this.link(n.id, n.name);
      return h("li", { role: "treeitem", "data-run": n.id, "aria-expanded": sub.length ? "true" : null },
        label, " ", h("span", { class: `status status-${n.status}` }, n.status),
        n.parent && n.parent_step !== null
          ? h("span", { class: "muted" }, ` from step ${n.parent_step}`) : null,
        sub.length && depth < 50 ? branch(sub, depth + 1) : null);
    }));
    const roots = tree.filter((n) => !n.parent);
    return h("div", { class: "lineage" },
      h("p", { id: "lineage-parent" }, "Parent: ",
        parent ? this.link(parent.id, parent.name) : run.parent ?? "none",
        run.parent_step !== null ? ` (at step ${run.parent_step})` : ""),
      h("p", { id: "lineage-children" }, `Children (${children.length}): `,
        ...children.flatMap((c, i) => [i ? ", " : "", this.link(c.id, c.name)])),
      tree.length > 1 ? branch(roots, 0) : null);
  }

  /** The run's ops, newest first: what, from where and whom, what became of it, when. */
  private renderOps(run: RunDetail): void {
    const ops = state.opsOf(run.id).reverse();
    if (!ops.length) {
      fill(this.opsEl, h("p", { class: "muted" }, "No ops yet."));
      return;
    }
    fill(this.opsEl, h("div", { class: "table-wrap" }, h("table", { class: "ops-table" },
      h("thead", {}, h("tr", {}, ...["#", "op", "arguments", "source", "actor", "status", "reason",
                                      "requested", "applied"].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, ...ops.map((o) => h("tr", { "data-op-id": o.id, "data-op-status": o.status,
                                                 "data-op-kind": o.kind },
        h("td", { class: "num" }, o.id), h("td", {}, o.kind), h("td", {}, argsText(o)),
        h("td", {}, o.source), h("td", { class: "actor" }, o.actor ?? ""),
        h("td", {}, h("span", { class: `op-badge op-badge-${o.status}` }, o.status)),
        h("td", { class: "reason" }, o.status === "rejected" ? o.reason ?? "" :
          o.kind === "clone" && typeof o.result.name === "string" ? `→ ${o.result.name}` : ""),
        h("td", {}, fmtTime(o.created)), h("td", {}, fmtTime(o.applied))))))));
  }

  private alerts(run: RunDetail): HTMLElement {
    if (!run.alerts.length) return h("p", { class: "muted" }, "No alerts.");
    return h("ul", { class: "alerts" }, ...run.alerts.map((a) => h("li", { class: `alert alert-${a.level}` },
      h("strong", {}, a.title), ` (${a.level}${a.step !== null ? `, step ${a.step}` : ""}) `,
      h("span", { class: "muted" }, fmtTime(a.time)), h("pre", {}, a.text))));
  }

  private media(run: RunDetail): HTMLElement {
    if (!run.media.length) return h("p", { class: "muted" }, "No media logged.");
    const byKey = new Map<string, MediaItem[]>();
    run.media.forEach((m) => {
      if (!byKey.has(m.key)) byKey.set(m.key, []);
      byKey.get(m.key)!.push(m);
    });
    return h("div", { class: "media-grid" }, ...[...byKey].map(([key, items]) => {
      const body = h("div", { class: "media-body" });
      const select = h("select", {
        "aria-label": `step of ${key}`,
        onchange: (e: Event) => {
          const item = items[Number((e.target as HTMLSelectElement).value)];
          void this.showMedia(run, item, body);
        },
      }, ...items.map((m, i) => h("option", { value: i, selected: i === items.length - 1 }, `step ${m.step}`)));
      void this.showMedia(run, items[items.length - 1], body);
      return h("figure", { class: "media", "data-key": key },
        h("figcaption", {}, h("strong", {}, key), " ", select), body);
    }));
  }

  private async showMedia(run: RunDetail, item: MediaItem, body: HTMLElement): Promise<void> {
    const caption = typeof item.meta.caption === "string" ? item.meta.caption : "";
    if (item.type === "image") {
      fill(body, h("img", { src: mediaUrl(run.project, run.id, item.index), alt: caption || item.key,
                            loading: "lazy" }), caption ? h("p", { class: "muted" }, caption) : null);
      return;
    }
    if (item.type === "video" || item.type === "audio") {
      fill(body, renderPlayable(mediaUrl(run.project, run.id, item.index), item, caption));
      return;
    }
    fill(body, notice("loading", "Loading…"));
    try {
      const content = await api.mediaContent(run.project, run.id, item.index);
      if (item.type === "table" && chartSpec(content.value)) {
        fill(body, renderChart(content.value, chartSpec(content.value)!), renderTable(content.value));
      } else if (item.type === "table") fill(body, renderTable(content.value));
      else if (item.type === "histogram") fill(body, renderHistogram(content.value));
      else fill(body, h("pre", {}, JSON.stringify(content.value, null, 1).slice(0, 5000)));
    } catch (err) {
      fill(body, notice("error", err instanceof ApiError ? err.message : String(err)));
    }
  }

  private system(run: RunDetail): HTMLElement {
    const keys = run.keys.filter((k) => k.system && k.kinds.every((kind) => "fib".includes(kind)));
    if (!keys.length) return h("p", { class: "muted" }, "No system metrics.");
    const wrap = h("div", { class: "charts" });
    for (const k of keys) {
      const chart = new Chart(k.key, {
        project: run.project, runs: () => [run.id], x: () => "relative", logScale: () => false,
        smoothing: () => ({ kind: "none" }), groupOf: () => null, color: () => state.color(run.id),
        name: () => run.name, onDrawn: () => undefined,
      });
      this.charts.push(chart);
      wrap.append(chart.el);
    }
    requestAnimationFrame(() => this.charts.forEach((c) => void c.load()));
    return wrap;
  }

  hide(): void {
    this.runId = null;
    this.current = null;
    this.queries = null;
    this.charts.forEach((c) => c.destroy());
    this.charts = [];
  }
}

function kvTable(obj: Record<string, unknown>): HTMLElement {
  const entries = Object.entries(obj).sort(([a], [b]) => a.localeCompare(b));
  if (!entries.length) return h("p", { class: "muted" }, "Empty.");
  return h("table", { class: "kv" }, h("tbody", {}, ...entries.map(([k, v]) =>
    h("tr", {}, h("th", { scope: "row" }, k), h("td", {}, fmt(v))))));
}

function renderTable(value: Json): HTMLElement {
  const t = value as { columns?: string[]; data?: Json[][] };
  if (!t || !Array.isArray(t.columns) || !Array.isArray(t.data)) {
    return h("pre", {}, JSON.stringify(value).slice(0, 5000));
  }
  const rows = t.data.slice(0, TABLE_ROWS);
  return h("div", { class: "table-wrap" }, h("table", { class: "media-table" },
    h("thead", {}, h("tr", {}, ...t.columns.map((c) => h("th", {}, c)))),
    h("tbody", {}, ...rows.map((r) => h("tr", {}, ...r.map((c) => h("td", {}, fmt(c))))))),
  t.data.length > TABLE_ROWS ? h("p", { class: "muted" }, `first ${TABLE_ROWS} of ${t.data.length} rows`) : null);
}

/** A logged video (a GIF made from frames shows as an image) or audio clip, with controls. */
function renderPlayable(src: string, item: MediaItem, caption: string): HTMLElement {
  const label = caption || item.key;
  const el = item.type === "audio"
    ? h("audio", { controls: "", preload: "metadata", src, "aria-label": label })
    : item.meta.format === "gif"
      ? h("img", { src, alt: label, loading: "lazy" })
      : h("video", { controls: "", preload: "metadata", src, "aria-label": label });
  return h("div", { class: `media-${item.type}` }, el, caption ? h("p", { class: "muted" }, caption) : null);
}

/** What wandb.plot stores with a table: the kind of chart and the columns it draws. */
interface ChartSpec { type: string; title?: string; x?: string; y?: string; stroke?: string;
  label?: string; value?: string }

function chartSpec(value: Json): ChartSpec | null {
  const chart = (value as { chart?: unknown } | null)?.chart;
  if (!chart || typeof chart !== "object") return null;
  const kind = (chart as ChartSpec).type;
  return ["line", "scatter", "bar", "histogram"].includes(kind) ? chart as ChartSpec : null;
}

const CHART_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"];

/** Draw a wandb.plot chart (line, scatter, bar, histogram) from its table on a canvas. */
function renderChart(value: Json, spec: ChartSpec): HTMLElement {
  const t = value as { columns: string[]; data: Json[][] };
  const col = (name: string | undefined) => (name === undefined ? -1 : t.columns.indexOf(name));
  const num = (v: Json) => (typeof v === "number" ? v : Number.NaN);
  const width = 420, height = 200, pad = 24, dpr = window.devicePixelRatio || 1;
  const canvas = h("canvas", { class: "wandb-chart", role: "img", "data-chart": spec.type,
                               "aria-label": `${spec.type} chart${spec.title ? `: ${spec.title}` : ""}` });
  canvas.width = width * dpr;
  canvas.height = height * dpr;
  canvas.style.width = `${width}px`;
  canvas.style.height = `${height}px`;
  const ctx = canvas.getContext("2d")!;
  ctx.scale(dpr, dpr);
  ctx.font = "11px system-ui, sans-serif";
  const muted = getComputedStyle(document.documentElement).getPropertyValue("--fg-muted").trim() || "#888";
  let drawn = 0;
  if (spec.type === "bar" || spec.type === "histogram") {
    let labels: string[], values: number[];
    if (spec.type === "bar") {
      const li = col(spec.label), vi = col(spec.value);
      labels = t.data.map((r) => String(r[li] ?? ""));
      values = t.data.map((r) => num(r[vi]));
    } else {
      const xs = t.data.map((r) => num(r[col(spec.value)])).filter(Number.isFinite);
      const lo = Math.min(...xs), hi = Math.max(...xs), n = Math.min(20, Math.max(1, xs.length));
      values = new Array(n).fill(0);
      xs.forEach((x) => { values[Math.min(n - 1, Math.floor(((x - lo) / (hi - lo || 1)) * n))] += 1; });
      labels = values.map((_, i) => fmt(lo + ((hi - lo) * i) / n));
    }
    const max = Math.max(1e-12, ...values.filter(Number.isFinite).map(Math.abs));
    const w = (width - 2 * pad) / Math.max(1, values.length);
    values.forEach((v, i) => {
      if (!Number.isFinite(v)) return;
      const hgt = ((height - 2 * pad) * Math.abs(v)) / max;
      ctx.fillStyle = CHART_COLORS[0];
      ctx.fillRect(pad + i * w + 1, height - pad - hgt, Math.max(1, w - 2), hgt);
      ctx.fillStyle = muted;
      ctx.fillText(labels[i].slice(0, 8), pad + i * w + 1, height - pad + 12);
      drawn += 1;
    });
  } else {
    const xi = col(spec.x), yi = col(spec.y), si = col(spec.stroke);
    const pts = t.data.map((r) => ({ x: num(r[xi]), y: num(r[yi]), s: si < 0 ? "" : String(r[si]) }))
      .filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y));
    const xs = pts.map((p) => p.x), ys = pts.map((p) => p.y);
    const x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
    const px = (x: number) => pad + ((x - x0) / (x1 - x0 || 1)) * (width - 2 * pad);
    const py = (y: number) => height - pad - ((y - y0) / (y1 - y0 || 1)) * (height - 2 * pad);
    const groups = new Map<string, { x: number; y: number }[]>();
    pts.forEach((p) => { if (!groups.has(p.s)) groups.set(p.s, []); groups.get(p.s)!.push(p); });
    [...groups.values()].forEach((g, i) => {
      ctx.strokeStyle = ctx.fillStyle = CHART_COLORS[i % CHART_COLORS.length];
      if (spec.type === "line") {
        g.sort((a, b) => a.x - b.x);
        ctx.beginPath();
        g.forEach((p, j) => (j ? ctx.lineTo(px(p.x), py(p.y)) : ctx.moveTo(px(p.x), py(p.y))));
        ctx.stroke();
      } else {
        g.forEach((p) => { ctx.beginPath(); ctx.arc(px(p.x), py(p.y), 2.5, 0, 2 * Math.PI); ctx.fill(); });
      }
      drawn += g.length;
    });
    if (pts.length) {
      ctx.fillStyle = muted;
      ctx.fillText(`${spec.x}: ${fmt(x0)} … ${fmt(x1)}`, pad, height - 6);
      ctx.fillText(`${spec.y}: ${fmt(y0)} … ${fmt(y1)}`, pad, 12);
    }
  }
  canvas.dataset.points = String(drawn);
  return h("div", { class: "media-chart" }, spec.title ? h("p", {}, h("strong", {}, spec.title)) : null, canvas);
}

function renderHistogram(value: Json): HTMLElement {
  const hist = value as { bins?: number[]; counts?: number[] };
  const bins = hist?.bins ?? [];
  const counts = hist?.counts ?? [];
  const canvas = h("canvas", { class: "histogram", role: "img", "aria-label": "histogram" });
  const width = 360, height = 160, dpr = window.devicePixelRatio || 1;
  canvas.width = width * dpr;
  canvas.height = height * dpr;
  canvas.style.width = `${width}px`;
  canvas.style.height = `${height}px`;
  const ctx = canvas.getContext("2d")!;
  ctx.scale(dpr, dpr);
  const max = Math.max(1, ...counts);
  const bar = width / Math.max(1, counts.length);
  ctx.fillStyle = getComputedStyle(document.documentElement).getPropertyValue("--accent").trim() || "#1f77b4";
  counts.forEach((c, i) => {
    const hgt = ((height - 20) * c) / max;
    ctx.fillRect(i * bar + 0.5, height - 16 - hgt, Math.max(1, bar - 1), hgt);
  });
  ctx.fillStyle = getComputedStyle(document.documentElement).getPropertyValue("--fg-muted").trim() || "#888";
  ctx.font = "11px system-ui, sans-serif";
  if (bins.length) {
    ctx.fillText(fmt(bins[0]), 0, height - 3);
    ctx.textAlign = "right";
    ctx.fillText(fmt(bins[bins.length - 1]), width, height - 3);
  }
  return canvas;
}
