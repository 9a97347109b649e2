// One chart of the metric grid: fetches a key's data for the drawn runs, draws it with
// uPlot, zooms by drag (refetching the range at full resolution), shows a tooltip, and takes
// live points without refetching history. For an eval metric (`eval/<m>`) whose interval
// bounds are logged, each run's interval is drawn as a shaded band around its line.

import uPlot from "uplot";
import { ApiError, api } from "./api";
import {
  ChartData, DrawnSeries, Seq, SmoothSpec, align, appendPoints, boundSeq, centreSeq,
  fromResponse, gridFor, groupStats, rawSeq, smooth,
} from "./chartdata";
import { withAlpha } from "./colors";
import { fmt, fmtDuration, h, notice } from "./dom";

/** What a chart needs to know about the page (runs, colours, options). */
export interface ChartContext {
  project: string;
  runs: () => string[];
  x: () => string;
  logScale: () => boolean;
  smoothing: () => SmoothSpec;
  groupOf: () => ((run: string) => string) | null;
  color: (run: string) => string;
  name: (run: string) => string;
  /** The first chart drawn on the page marks the time (for the page-load benchmark). */
  onDrawn: () => void;
  /** The keys of the interval to draw as a band around each run's line of `key` (their
   *  lower and upper bounds, logged at the same steps), or null for none. */
  interval?: (key: string) => IntervalKeys | null;
}

/** The keys holding an interval's lower and upper bounds. */
export interface IntervalKeys {
  lo: string;
  hi: string;
}

/** The interval bounds of a chart's runs, fetched on the chart's grid. */
interface Bounds {
  keys: IntervalKeys;
  lo: ChartData;
  hi: ChartData;
}

const HEIGHT = 240;
const GROUP_BUCKETS = 400;
const TOOLTIP_ROWS = 12;

function cssVar(name: string): string {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || "#888";
}

export class Chart {
  readonly el: HTMLElement;
  private plotEl: HTMLElement;
  private statusEl: HTMLElement;
  private tip: HTMLElement;
  private resetBtn: HTMLButtonElement;
  private u: uPlot | null = null;
  private drawn: DrawnSeries[] = [];
  private signature = "";
  data: ChartData | null = null;
  /** Interval bounds drawn as bands (eval metrics), when the chart has them. */
  bounds: Bounds | null = null;
  zoom: [number, number] | null = null;
  requests = 0;
  private abort: AbortController | null = null;
  private redrawTimer = 0;
  private loadedRuns = new Set<string>();
  /** The runs of the fetch in flight, if any. */
  private pending: string | null = null;

  constructor(readonly key: string, private ctx: ChartContext) {
    this.plotEl = h("div", { class: "plot" });
    this.statusEl = h("div", { class: "chart-status" });
    this.tip = h("div", { class: "tooltip", hidden: true });
    this.resetBtn = h("button", {
      class: "small", type: "button", hidden: true, title: "Show the whole range (Esc)",
      onclick: () => this.resetZoom(),
    }, "Reset zoom");
    this.el = h("section", {
      class: "chart", "data-key": key, tabindex: 0,
      "aria-label": `Chart of ${key}. Drag to zoom, Escape to reset.`,
      onkeydown: (e: Event) => {
        if ((e as KeyboardEvent).key === "Escape" && this.zoom) this.resetZoom();
      },
    },
    h("header", {}, h("h3", { title: key }, key), this.resetBtn),
    this.plotEl, this.statusEl, this.tip);
    this.plotEl.addEventListener("dblclick", () => this.zoom && this.resetZoom());
  }

  private width(): number {
    return Math.max(200, Math.floor(this.plotEl.clientWidth || this.el.clientWidth || 400));
  }

  private setStatus(node: HTMLElement | null): void {
    this.statusEl.replaceChildren(...(node ? [node] : []));
  }

  /** Fetch the data for the drawn runs (over the zoomed range, if any) and draw it. */
  async load(): Promise<void> {
    this.abort?.abort();
    const runs = this.ctx.runs();
    if (!runs.length) {
      this.data = null;
      this.loadedRuns.clear();
      this.draw();
      return;
    }
    const abort = new AbortController();
    this.abort = abort;
    this.pending = runs.join(",");
    this.el.dataset.loading = "1";
    if (!this.u) this.setStatus(notice("loading", "Loading…"));
    try {
      this.requests++;
      this.el.dataset.requests = String(this.requests);
      const res = await api.series({
        project: this.ctx.project, key: this.key, runs: runs.join(","), x: this.ctx.x(),
        start: this.zoom?.[0], end: this.zoom?.[1], buckets: this.width(),
      }, abort.signal);
      if (abort.signal.aborted) return;
      const bounds = await this.fetchBounds(runs, res.start, res.end, res.buckets, abort.signal);
      if (abort.signal.aborted) return;
      this.data = fromResponse(res);
      this.bounds = bounds;
      this.loadedRuns = new Set(runs);
      this.el.dataset.mode = [...new Set(res.series.map((s) => s.mode))].join(",");
      this.setStatus(null);
      this.draw();
    } catch (err) {
      if ((err as Error).name === "AbortError") return;
      const message = err instanceof ApiError ? err.message : String(err);
      this.setStatus(h("div", { class: "notice error", role: "alert" }, message, " ",
        h("button", { class: "small", type: "button", onclick: () => void this.load() },
          "Retry")));
    } finally {
      if (this.abort === abort) {
        delete this.el.dataset.loading;
        this.pending = null;
      }
    }
  }

  /** The interval bounds of `runs` over [start, end] (the range and bucket count of the
   *  chart's own answer, so both land on its grid), or null when the chart draws no
   *  interval. A failure leaves the bands out rather than the chart. */
  private async fetchBounds(runs: string[], start: number | null, end: number | null,
                            buckets: number, signal?: AbortSignal): Promise<Bounds | null> {
    const keys = this.ctx.interval?.(this.key) ?? null;
    if (!keys || start === null || end === null) return null;
    const params = { project: this.ctx.project, runs: runs.join(","), x: this.ctx.x(),
                     start, end, buckets };
    try {
      this.requests += 2;
      this.el.dataset.requests = String(this.requests);
      const [lo, hi] = await Promise.all([api.series({ ...params, key: keys.lo }, signal),
                                          api.series({ ...params, key: keys.hi }, signal)]);
      return { keys, lo: fromResponse(lo), hi: fromResponse(hi) };
    } catch (err) {
      if ((err as Error).name === "AbortError") throw err;
      return null;
    }
  }

  /** Runs were added or removed: fetch only the new ones (on the same grid), drop others. */
  async updateRuns(): Promise<void> {
    const runs = this.ctx.runs();
    if (this.pending === runs.join(",")) return; // already being fetched
    if (!this.data) return this.load();
    const wanted = new Set(runs);
    for (const d of [this.data, this.bounds?.lo, this.bounds?.hi]) {
      if (!d) continue;
      for (const r of [...d.lines.keys()]) if (!wanted.has(r)) d.lines.delete(r);
    }
    for (const r of [...this.loadedRuns]) if (!wanted.has(r)) this.loadedRuns.delete(r);
    const missing = runs.filter((r) => !this.loadedRuns.has(r));
    if (!missing.length) return this.draw();
    const grid = this.data.grid;
    try {
      this.requests++;
      this.el.dataset.requests = String(this.requests);
      const res = await api.series({
        project: this.ctx.project, key: this.key, runs: missing.join(","), x: this.ctx.x(),
        start: grid ? grid.lo : this.zoom?.[0], end: grid ? grid.hi : this.zoom?.[1],
        buckets: grid ? grid.buckets : this.width(),
      });
      const part = fromResponse(res);
      if (part.grid && !grid) return this.load(); // its own grid: redo the chart as a whole
      const merge = (into: ChartData, from: ChartData) => {
        for (const [run, line] of from.lines) {
          const live = into.lines.get(run);
          into.lines.set(run, line);
          if (live && live.kind === "exact") appendPoints(into, run, live.x, live.y);
        }
      };
      merge(this.data, part);
      if (this.bounds) {
        const bounds = await this.fetchBounds(missing, res.start, res.end, res.buckets);
        if (bounds && this.bounds) {
          merge(this.bounds.lo, bounds.lo);
          merge(this.bounds.hi, bounds.hi);
        }
      }
      missing.forEach((r) => this.loadedRuns.add(r));
      this.draw();
    } catch (err) {
      if ((err as Error).name !== "AbortError") void this.load();
    }
  }

  /** Points that arrived live for a run (x on this chart's axis, ascending). */
  appendLive(run: string, xs: number[], ys: number[]): void {
    if (!this.data || !this.loadedRuns.has(run)) return;
    if (appendPoints(this.data, run, xs, ys) && !this.redrawTimer) {
      this.redrawTimer = window.setTimeout(() => {
        this.redrawTimer = 0;
        this.draw();
      }, 200);
    }
  }

  /** Live points of one bound of the chart's interval (`key` is the bound's key). */
  appendBound(run: string, key: string, xs: number[], ys: number[]): void {
    const b = this.bounds;
    if (!b || !this.loadedRuns.has(run) || (key !== b.keys.lo && key !== b.keys.hi)) return;
    if (appendPoints(key === b.keys.lo ? b.lo : b.hi, run, xs, ys) && !this.redrawTimer) {
      this.redrawTimer = window.setTimeout(() => {
        this.redrawTimer = 0;
        this.draw();
      }, 200);
    }
  }

  zoomTo(lo: number, hi: number): void {
    if (!(hi > lo)) return;
    this.zoom = [lo, hi];
    this.resetBtn.hidden = false;
    this.el.dataset.zoomed = "1";
    void this.load();
  }

  resetZoom(): void {
    this.zoom = null;
    this.resetBtn.hidden = true;
    delete this.el.dataset.zoomed;
    void this.load();
  }

  /** Build the series to draw: raw lines (faint when smoothed), smoothed lines, or per
   *  group a mean line with a min-max band. */
  private series(): DrawnSeries[] {
    const data = this.data;
    if (!data) return [];
    const spec = this.ctx.smoothing();
    const groupOf = this.ctx.groupOf();
    const out: DrawnSeries[] = [];
    const runs = this.ctx.runs().filter((r) => data.lines.has(r));
    if (groupOf) {
      const groups = new Map<string, Seq[]>();
      const firstRun = new Map<string, string>();
      for (const r of runs) {
        const g = groupOf(r);
        if (!groups.has(g)) {
          groups.set(g, []);
          firstRun.set(g, r);
        }
        groups.get(g)!.push(centreSeq(data.lines.get(r)!, data.grid));
      }
      const grid = data.grid ?? gridFor([...groups.values()].flat(), GROUP_BUCKETS);
      if (!grid) return out;
      for (const [g, seqs] of groups) {
        const stats = groupStats(seqs, grid);
        const color = this.ctx.color(firstRun.get(g)!);
        const label = `${g} (${seqs.length} run${seqs.length === 1 ? "" : "s"})`;
        out.push({ label: `${label} max`, run: null, group: g, role: "band", color, edge: "hi",
                   seq: { x: stats.x, y: smooth(stats.hi, spec) } });
        out.push({ label: `${label} min`, run: null, group: g, role: "band", color, edge: "lo",
                   seq: { x: stats.x, y: smooth(stats.lo, spec) } });
        out.push({ label, run: null, group: g, role: "mean", color,
                   seq: { x: stats.x, y: smooth(stats.mean, spec) } });
      }
      return out;
    }
    const bounds = this.bounds;
    for (const r of runs) {
      const line = data.lines.get(r)!;
      const color = this.ctx.color(r);
      const lo = bounds?.lo.lines.get(r);
      const hi = bounds?.hi.lines.get(r);
      if (bounds && lo && hi) {  // the interval, unsmoothed, under the run's line
        out.push({ label: `${this.ctx.name(r)} interval high`, run: r, group: null,
                   role: "band", color, edge: "hi", seq: boundSeq(hi, bounds.hi.grid, "hi") });
        out.push({ label: `${this.ctx.name(r)} interval low`, run: r, group: null,
                   role: "band", color, edge: "lo", seq: boundSeq(lo, bounds.lo.grid, "lo") });
      }
      out.push({ label: this.ctx.name(r), run: r, group: null, role: "raw", color,
                 seq: rawSeq(line, data.grid) });
      if (spec.kind !== "none") {
        const c = centreSeq(line, data.grid);
        out.push({ label: `${this.ctx.name(r)} (smoothed)`, run: r, group: null,
                   role: "smooth", color, seq: { x: c.x, y: smooth(c.y, spec) } });
      }
    }
    return out;
  }

  /** Draw (or redraw) from the data held. */
  draw(): void {
    const drawn = this.series();
    this.drawn = drawn;
    const withPoints = drawn.filter((s) => s.seq.x.length > 0);
    if (!withPoints.length) {
      this.u?.destroy();
      this.u = null;
      this.signature = "";
      this.plotEl.replaceChildren();
      this.el.dataset.series = "0";
      this.el.dataset.runs = "0";
      this.setStatus(notice("empty", this.ctx.runs().length
        ? "No points for the selected runs in this range." : "No runs selected."));
      return;
    }
    this.setStatus(null);
    const log = this.ctx.logScale();
    const aligned = align(drawn.map((s) => s.seq), log);
    const plotData = [aligned.x, ...aligned.ys] as unknown as uPlot.AlignedData;
    const signature = [this.ctx.x(), log, ...drawn.map((s) => `${s.role}:${s.label}:${s.color}`)]
      .join("|");
    if (this.u && signature === this.signature && this.u.width === this.width()) {
      this.u.setData(plotData, !this.zoom);
      if (this.zoom) this.u.setScale("x", { min: this.zoom[0], max: this.zoom[1] });
    } else {
      this.u?.destroy();
      this.u = new uPlot(this.options(drawn, log), plotData, this.plotEl);
      if (this.zoom) this.u.setScale("x", { min: this.zoom[0], max: this.zoom[1] });
      this.signature = signature;
    }
    const runsDrawn = new Set(withPoints.map((s) => s.run ?? `group:${s.group}`));
    this.el.dataset.series = String(drawn.filter((s) => s.role !== "band").length);
    this.el.dataset.bands = String(this.bandCount());
    this.el.dataset.runs = String(runsDrawn.size);
    this.el.dataset.drawn = "1";
    this.ctx.onDrawn();
  }

  private options(drawn: DrawnSeries[], log: boolean): uPlot.Options {
    const x = this.ctx.x();
    const smoothed = this.ctx.smoothing().kind !== "none";
    const fg = cssVar("--fg-muted");
    const grid = cssVar("--grid");
    const bands: uPlot.Band[] = [];
    const intervals = drawn.some((s) => s.role === "band" && s.run !== null);
    drawn.forEach((s, i) => {
      if (s.role === "band" && s.edge === "hi") {
        bands.push({ series: [i + 1, i + 2], fill: withAlpha(s.color, 0.18) });
      }
    });
    const xValues = x === "relative"
      ? (_u: uPlot, splits: number[]) => splits.map((v) => fmtDuration(v))
      : undefined;
    return {
      width: this.width(),
      height: HEIGHT,
      legend: { show: false },
      scales: { x: { time: x === "time" }, y: { distr: log ? 3 : 1 } },
      series: [
        {},
        ...drawn.map((s): uPlot.Series => ({
          label: s.label,
          stroke: s.role === "band" ? withAlpha(s.color, 0.35)
            : s.role === "raw" && smoothed ? withAlpha(s.color, 0.25) : s.color,
          width: s.role === "band" ? 0.5 : s.role === "mean" ? 2 : 1.25,
          spanGaps: true,
          // eval metrics have a point per shard: shown, so that one shard done is visible
          // (with its interval as two marks)
          points: intervals && s.run !== null && s.role !== "smooth" && s.seq.x.length <= 200
            ? { show: true, size: s.role === "band" ? 3 : 5, width: 1 } : { show: false },
        })),
      ],
      bands,
      axes: [
        { stroke: fg, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid },
          ...(xValues ? { values: xValues } : {}) },
        { stroke: fg, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid }, size: 60,
          values: (_u: uPlot, splits: number[]) => splits.map((v) => fmt(v)) },
      ],
      cursor: {
        sync: { key: `rf:${x}`, setSeries: false },
        drag: { x: true, y: false, setScale: false },
        points: { show: false },
      },
      hooks: {
        setSelect: [(u: uPlot) => {
          if (u.select.width > 4) {
            const lo = u.posToVal(u.select.left, "x");
            const hi = u.posToVal(u.select.left + u.select.width, "x");
            u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
            this.zoomTo(lo, hi);
          }
        }],
        setCursor: [(u: uPlot) => this.showTip(u)],
      },
    };
  }

  /** The tooltip: x and each series' value at the cursor (nearest point), largest first. */
  private showTip(u: uPlot): void {
    const idx = u.cursor.idx;
    if (idx === null || idx === undefined || u.cursor.left === undefined || u.cursor.left < 0) {
      this.tip.hidden = true;
      return;
    }
    const xs = u.data[0] as unknown as Float64Array;
    const rows: { label: string; color: string; value: number; run: string | null }[] = [];
    const near = (i: number): number | null => {
      const ys = u.data[i + 1] as (number | null)[];
      let v: number | null = ys[idx];
      for (let d = 1; v === null && d < 64; d++) v = ys[idx - d] ?? ys[idx + d] ?? null;
      return v ?? null;
    };
    const intervals = new Map<string, { lo: number | null; hi: number | null }>();
    this.drawn.forEach((s, i) => {
      if (s.role === "band" && s.run !== null && s.edge) {
        const b = intervals.get(s.run) ?? { lo: null, hi: null };
        b[s.edge] = near(i);
        intervals.set(s.run, b);
      }
      if (s.role === "band" || (s.role === "raw" && this.ctx.smoothing().kind !== "none")) return;
      const v = near(i);
      if (v !== null) rows.push({ label: s.label, color: s.color, value: v, run: s.run });
    });
    const valueText = (r: { value: number; run: string | null }): string => {
      const b = r.run !== null ? intervals.get(r.run) : undefined;
      return b && b.lo !== null && b.hi !== null
        ? `${fmt(r.value)} [${fmt(b.lo)}, ${fmt(b.hi)}]` : fmt(r.value);
    };
    rows.sort((a, b) => b.value - a.value);
    const x = this.ctx.x();
    const xv = xs[idx];
    const xText = x === "time" ? new Date(xv * 1000).toLocaleString()
      : x === "relative" ? fmtDuration(xv) : x === "step" ? String(Math.round(xv)) : fmt(xv);
    this.tip.replaceChildren(
      h("div", { class: "tip-x" }, `${x}: ${xText}`),
      ...rows.slice(0, TOOLTIP_ROWS).map((r) => h("div", { class: "tip-row" },
        h("span", { class: "swatch", style: `background:${r.color}` }),
        h("span", { class: "tip-name" }, r.label), h("span", { class: "tip-val" }, valueText(r)))),
      ...(rows.length > TOOLTIP_ROWS
        ? [h("div", { class: "tip-more" }, `+${rows.length - TOOLTIP_ROWS} more`)] : []),
    );
    this.tip.hidden = rows.length === 0;
    const left = u.cursor.left + u.over.offsetLeft;
    const flip = left > this.el.clientWidth / 2;
    this.tip.style.left = flip ? "" : `${left + 14}px`;
    this.tip.style.right = flip ? `${this.el.clientWidth - left + 14}px` : "";
    this.tip.style.top = `${(u.cursor.top ?? 0) + u.over.offsetTop + 10}px`;
  }

  /** How many bands uPlot draws (group min-max bands or run intervals). */
  bandCount(): number {
    // uPlot keeps its bands on the instance (`u.bands`); its typings leave them out.
    return (this.u as (uPlot & { bands?: uPlot.Band[] }) | null)?.bands?.length ?? 0;
  }

  /** Follow the container's width. */
  resize(): void {
    if (this.u && Math.abs(this.u.width - this.width()) > 2) {
      this.u.setSize({ width: this.width(), height: HEIGHT });
    }
  }

  /** Largest value drawn (for checks: a spike must reach the top of the chart). */
  yMax(): number {
    let m = -Infinity;
    for (const s of this.drawn) for (const v of s.seq.y) if (Number.isFinite(v) && v > m) m = v;
    return m;
  }

  /** The y axis' upper limit as drawn. */
  yScaleMax(): number | null {
    return this.u?.scales.y.max ?? null;
  }

  destroy(): void {
    this.abort?.abort();
    window.clearTimeout(this.redrawTimer);
    this.u?.destroy();
    this.u = null;
    this.el.remove();
  }
}
