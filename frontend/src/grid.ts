// The metric grid: a toolbar (x axis, log scale, smoothing, group by, interval, export) and
// one chart per key with the selected runs overlaid. Charts load when scrolled into view.
// The interval bounds of eval metrics (`eval/<m>_ci_low` ...) get no chart of their own
// when their metric has one: they are drawn there, as a band.

import { exportUrl } from "./api";
import { Chart, ChartContext } from "./chart";
import { SmoothSpec } from "./chartdata";
import { debounce, fmt, h, lookup, notice } from "./dom";
import { IntervalKind, boundKeys, parseBound } from "./evals";
import { Smoothing, state } from "./state";

export class MetricGrid {
  readonly el: HTMLElement;
  private toolbar: HTMLElement;
  private body: HTMLElement;
  readonly charts = new Map<string, Chart>();
  private observer: IntersectionObserver;
  private visible = new Set<string>();
  private stale = new Set<string>();
  private keyFilter = "";
  private firstDrawn = false;
  private exportLink: HTMLAnchorElement = h("a", {
    class: "button", id: "export-csv",
    title: "Download every point of the selected runs as CSV (exact values)",
  }, "Export CSV");

  constructor() {
    this.toolbar = h("div", { class: "toolbar", role: "toolbar", "aria-label": "Chart options" });
    this.body = h("div", { class: "charts" });
    this.el = h("div", { class: "view view-charts" }, this.toolbar, this.body);
    this.observer = new IntersectionObserver((entries) => {
      for (const e of entries) {
        const key = (e.target as HTMLElement).dataset.key!;
        if (e.isIntersecting) {
          this.visible.add(key);
          if (this.stale.has(key)) {
            this.stale.delete(key);
            void this.charts.get(key)?.load();
          }
        } else {
          this.visible.delete(key);
        }
      }
    }, { rootMargin: "200px" });
    new ResizeObserver(debounce(() => this.charts.forEach((c) => c.resize()), 100))
      .observe(this.body);
    state.on("keys", () => this.rebuild());
    state.on("chartOptions", () => {
      this.renderToolbar();
      this.reloadAll();
    });
    state.on("selection", debounce(() => this.updateRuns(), 150));
    state.on("selection", () => this.updateExport());
    state.on("theme", () => this.charts.forEach((c) => c.draw()));
    this.renderToolbar();
  }

  private context(): ChartContext {
    return {
      project: state.project ?? "",
      runs: () => state.visibleRuns().map((r) => r.id),
      x: () => state.x,
      logScale: () => state.logScale,
      smoothing: (): SmoothSpec => state.smoothing === "ema"
        ? { kind: "ema", weight: state.emaWeight }
        : state.smoothing === "ma" ? { kind: "ma", window: state.maWindow } : { kind: "none" },
      groupOf: () => state.groupBy
        ? (run: string) => {
          const r = state.run(run);
          const v = r ? lookup(r.config, state.groupBy) : undefined;
          return v === undefined ? "(none)" : `${state.groupBy}=${fmt(v)}`;
        }
        : null,
      color: (run) => state.color(run),
      name: (run) => state.run(run)?.name ?? run,
      interval: (key) => boundKeys(key, new Set(state.keys.map((k) => k.key)), state.interval),
      onDrawn: () => {
        if (!this.firstDrawn) {
          this.firstDrawn = true;
          performance.mark("rf-first-chart");
          document.documentElement.dataset.firstChart = String(performance.now());
        }
      },
    };
  }

  private chartKeys(): string[] {
    let pattern: RegExp | null = null;
    try {
      pattern = this.keyFilter ? new RegExp(this.keyFilter, "i") : null;
    } catch {
      pattern = null;
    }
    const keys = state.keys.filter((k) => k.chartable && !k.system)
      .map((k) => k.key)
      .filter((k) => !pattern || pattern.test(k));
    const charted = new Set(keys);
    return keys.filter((k) => !charted.has(parseBound(k)?.base ?? ""));
  }

  /** Keys changed (project opened, new key logged): make one chart per key. */
  rebuild(): void {
    const keys = this.chartKeys();
    for (const [key, chart] of this.charts) {
      if (!keys.includes(key)) {
        this.observer.unobserve(chart.el);
        chart.destroy();
        this.charts.delete(key);
      }
    }
    const ctx = this.context();
    keys.forEach((key) => {
      if (this.charts.has(key)) return;
      const chart = new Chart(key, ctx);
      this.charts.set(key, chart);
      this.stale.add(key);
      this.observer.observe(chart.el);
    });
    // keep the DOM in key order
    this.body.replaceChildren(...keys.map((k) => this.charts.get(k)!.el));
    if (!keys.length) {
      this.body.replaceChildren(notice("empty", state.keys.length
        ? "No chartable metric matches the chart filter."
        : state.runs.length ? "These runs have logged no metrics yet." : "No runs to show."));
    }
    this.renderToolbar();
    this.reloadAll();
  }

  /** Options changed: every chart fetches again (visible ones now, others when shown). */
  reloadAll(): void {
    for (const [key, chart] of this.charts) {
      if (this.visible.has(key)) void chart.load();
      else this.stale.add(key);
    }
  }

  private updateRuns(): void {
    for (const [key, chart] of this.charts) {
      if (this.visible.has(key)) void chart.updateRuns();
      else this.stale.add(key);
    }
  }

  /** Live points of one run and key, x already on the chart's axis. */
  live(run: string, key: string, xs: number[], ys: number[]): void {
    const chart = this.charts.get(key);
    if (chart) chart.appendLive(run, xs, ys);
    else {
      const bound = parseBound(key);
      if (bound) this.charts.get(bound.base)?.appendBound(run, key, xs, ys);
    }
  }

  private renderToolbar(): void {
    const numericKeys = state.keys.filter((k) => k.chartable && !k.system).map((k) => k.key);
    const xSelect = h("select", {
      id: "x-axis", "aria-label": "x axis",
      onchange: (e: Event) => {
        state.x = (e.target as HTMLSelectElement).value;
        this.charts.forEach((c) => { c.zoom = null; });
        state.emit("chartOptions");
      },
    },
    ...[["step", "step"], ["time", "wall time"], ["relative", "relative time"]]
      .map(([v, label]) => h("option", { value: v, selected: state.x === v }, label)),
    numericKeys.length ? h("optgroup", { label: "metric" },
      ...numericKeys.map((k) => h("option", { value: k, selected: state.x === k }, k))) : null);
    const log = h("input", {
      type: "checkbox", id: "log-scale", checked: state.logScale,
      onchange: (e: Event) => {
        state.logScale = (e.target as HTMLInputElement).checked;
        state.emit("chartOptions");
      },
    });
    const smoothing = h("select", {
      id: "smoothing", "aria-label": "smoothing",
      onchange: (e: Event) => {
        state.smoothing = (e.target as HTMLSelectElement).value as Smoothing;
        state.emit("chartOptions");
      },
    },
    h("option", { value: "none", selected: state.smoothing === "none" }, "no smoothing"),
    h("option", { value: "ema", selected: state.smoothing === "ema" }, "EMA (debiased)"),
    h("option", { value: "ma", selected: state.smoothing === "ma" }, "moving average"));
    const amount = state.smoothing === "ema"
      ? h("input", {
        type: "range", id: "ema-weight", min: 0, max: 0.99, step: 0.01, value: state.emaWeight,
        "aria-label": "EMA weight", title: `weight ${state.emaWeight}`,
        onchange: (e: Event) => {
          state.emaWeight = Number((e.target as HTMLInputElement).value);
          this.charts.forEach((c) => c.draw());
        },
      })
      : state.smoothing === "ma"
        ? h("input", {
          type: "number", id: "ma-window", min: 1, max: 999, step: 2, value: state.maWindow,
          "aria-label": "moving average window (points)",
          onchange: (e: Event) => {
            state.maWindow = Math.max(1, Number((e.target as HTMLInputElement).value) || 1);
            this.charts.forEach((c) => c.draw());
          },
        })
        : null;
    const group = h("select", {
      id: "group-by", "aria-label": "group by",
      onchange: (e: Event) => {
        state.groupBy = (e.target as HTMLSelectElement).value;
        this.charts.forEach((c) => c.draw());
      },
    },
    h("option", { value: "" }, "no grouping"),
    ...state.configKeys.map((k) => h("option", { value: k, selected: state.groupBy === k },
      `group by ${k}`)));
    const filter = h("input", {
      type: "search", id: "key-filter", placeholder: "Filter charts (regex)",
      value: this.keyFilter, "aria-label": "filter charts by key",
      oninput: debounce((e: Event) => {
        this.keyFilter = (e.target as HTMLInputElement).value;
        this.rebuild();
      }, 250),
    });
    const hasIntervals = state.keys.some((k) => parseBound(k.key) !== null);
    const interval = hasIntervals ? h("select", {
      id: "interval", "aria-label": "interval band of eval metrics",
      title: "Band drawn around eval metrics: the 95% interval for the mean over the whole "
        + "eval set (closes when every query is done), or the anytime-valid one",
      onchange: (e: Event) => {
        state.interval = (e.target as HTMLSelectElement).value as IntervalKind | "none";
        state.emit("chartOptions");
      },
    },
    h("option", { value: "ci", selected: state.interval === "ci" }, "95% interval band"),
    h("option", { value: "cs", selected: state.interval === "cs" }, "anytime interval band"),
    h("option", { value: "none", selected: state.interval === "none" }, "no interval band"))
      : null;
    this.updateExport();
    this.toolbar.replaceChildren(
      h("label", {}, "x ", xSelect),
      h("label", { class: "check" }, log, " log y"),
      h("label", {}, smoothing), ...(amount ? [amount] : []),
      h("label", {}, group),
      ...(interval ? [h("label", {}, interval)] : []),
      filter,
      this.exportLink,
    );
  }

  private updateExport(): void {
    const runs = state.visibleRuns().map((r) => r.id);
    this.exportLink.href = state.project && runs.length ? exportUrl(state.project, runs) : "#";
    this.exportLink.setAttribute("download", `${state.project ?? "runs"}.csv`);
    this.exportLink.toggleAttribute("aria-disabled", !runs.length);
  }
}
