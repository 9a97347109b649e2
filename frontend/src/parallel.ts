// Parallel coordinates: one vertical axis per config key that varies, and a last axis for a
// chosen summary metric; one line per selected run, coloured by that metric.

import { ramp } from "./colors";
import { debounce, fmt, h, lookup, notice } from "./dom";
import { state } from "./state";

interface Axis {
  key: string;
  label: string;
  numeric: boolean;
  lo: number;
  hi: number;
  categories: string[];
  log: boolean;
}

const MAX_AXES = 10;
const PAD = { top: 36, bottom: 28, left: 40, right: 60 };

export class ParallelView {
  readonly el: HTMLElement;
  private canvas: HTMLCanvasElement;
  private controls: HTMLElement;
  private tip: HTMLElement;
  private lines: { run: string; pts: [number, number][] }[] = [];
  private hover: string | null = null;

  constructor(private open: (run: string) => void) {
    this.canvas = h("canvas", { class: "parallel", id: "parallel", role: "img",
                                "aria-label": "parallel coordinates of config values and a metric" });
    this.controls = h("div", { class: "toolbar" });
    this.tip = h("div", { class: "tooltip", hidden: true });
    this.el = h("div", { class: "view view-parallel" }, this.controls,
      h("div", { class: "parallel-wrap" }, this.canvas, this.tip));
    const redraw = debounce(() => this.render(), 60);
    state.on("runs", redraw);
    state.on("selection", redraw);
    state.on("theme", redraw);
    new ResizeObserver(redraw).observe(this.el);
    this.canvas.addEventListener("mousemove", (e) => this.onMove(e));
    this.canvas.addEventListener("mouseleave", () => {
      this.hover = null;
      this.tip.hidden = true;
      this.paint();
    });
    this.canvas.addEventListener("click", () => this.hover && this.open(this.hover));
  }

  private metric(): string {
    if (state.parallelMetric && state.summaryKeys.includes(state.parallelMetric)) {
      return state.parallelMetric;
    }
    return state.summaryKeys.find((k) => !k.startsWith("system/")) ?? "";
  }

  private axes(): Axis[] {
    const runs = state.visibleRuns();
    const keys = state.configKeys.filter((k) =>
      new Set(runs.map((r) => JSON.stringify(lookup(r.config, k) ?? null))).size > 1)
      .slice(0, MAX_AXES - 1).map((k) => ({ key: `config.${k}`, label: k }));
    const metric = this.metric();
    if (metric) keys.push({ key: `summary.${metric}`, label: metric });
    return keys.map(({ key, label }) => {
      const values = runs.map((r) => this.value(r.id, key)).filter((v) => v !== undefined);
      const numeric = values.length > 0 && values.every((v) => typeof v === "number"
        && Number.isFinite(v));
      if (numeric) {
        const nums = values as number[];
        let lo = Math.min(...nums), hi = Math.max(...nums);
        const log = lo > 0 && hi / lo >= 100;
        if (lo === hi) { lo -= 1; hi += 1; }
        return { key, label, numeric, lo, hi, categories: [], log };
      }
      const categories = [...new Set(values.map((v) => fmt(v)))].sort();
      return { key, label, numeric: false, lo: 0, hi: 1, categories, log: false };
    });
  }

  private value(run: string, key: string): unknown {
    const r = state.run(run);
    if (!r) return undefined;
    const [head, ...rest] = key.split(".");
    return lookup(head === "config" ? r.config : r.summary, rest.join("."));
  }

  private position(axis: Axis, v: unknown): number | null {
    if (v === undefined) return null;
    if (axis.numeric) {
      if (typeof v !== "number" || !Number.isFinite(v)) return null;
      if (axis.log) return (Math.log(v) - Math.log(axis.lo)) / (Math.log(axis.hi) - Math.log(axis.lo));
      return (v - axis.lo) / (axis.hi - axis.lo);
    }
    const i = axis.categories.indexOf(fmt(v));
    return axis.categories.length <= 1 ? 0.5 : i / (axis.categories.length - 1);
  }

  render(): void {
    const metricSelect = h("select", {
      id: "parallel-metric", "aria-label": "metric of the last axis",
      onchange: (e: Event) => {
        state.parallelMetric = (e.target as HTMLSelectElement).value;
        this.render();
      },
    }, ...state.summaryKeys.map((k) => h("option", { value: k, selected: k === this.metric() }, k)));
    this.controls.replaceChildren(h("label", {}, "metric ", metricSelect));
    const axes = this.axes();
    const runs = state.visibleRuns();
    const wrap = this.canvas.parentElement!;
    wrap.querySelector(".notice")?.remove();
    if (axes.length < 2 || !runs.length) {
      this.lines = [];
      this.canvas.hidden = true;
      wrap.append(notice("empty", runs.length
        ? "Parallel coordinates need at least two axes: config values that differ between the "
          + "selected runs, or a summary metric." : "No runs selected."));
      return;
    }
    this.canvas.hidden = false;
    const width = Math.max(400, wrap.clientWidth || 800);
    const height = 420;
    const dpr = window.devicePixelRatio || 1;
    this.canvas.width = width * dpr;
    this.canvas.height = height * dpr;
    this.canvas.style.width = `${width}px`;
    this.canvas.style.height = `${height}px`;
    const innerW = width - PAD.left - PAD.right;
    const innerH = height - PAD.top - PAD.bottom;
    const ax = (i: number) => PAD.left + (axes.length === 1 ? 0 : (i * innerW) / (axes.length - 1));
    const metricAxis = axes[axes.length - 1];
    this.lines = runs.map((r) => {
      const pts: [number, number][] = [];
      axes.forEach((a, i) => {
        const p = this.position(a, this.value(r.id, a.key));
        if (p !== null) pts.push([ax(i), PAD.top + (1 - p) * innerH]);
      });
      return { run: r.id, pts };
    });
    this.canvas.dataset.lines = String(this.lines.filter((l) => l.pts.length > 1).length);
    this.canvas.dataset.axes = axes.map((a) => a.label).join(",");
    this.paintState = { axes, ax, innerH, metricAxis, width, height, dpr };
    this.paint();
  }

  private paintState: {
    axes: Axis[]; ax: (i: number) => number; innerH: number; metricAxis: Axis;
    width: number; height: number; dpr: number;
  } | null = null;

  private paint(): void {
    const ps = this.paintState;
    if (!ps) return;
    const ctx = this.canvas.getContext("2d")!;
    const style = getComputedStyle(document.documentElement);
    const fg = style.getPropertyValue("--fg").trim() || "#222";
    const muted = style.getPropertyValue("--fg-muted").trim() || "#888";
    ctx.setTransform(ps.dpr, 0, 0, ps.dpr, 0, 0);
    ctx.clearRect(0, 0, ps.width, ps.height);
    const last = ps.axes.length - 1;
    for (const line of this.lines) {
      const v = this.value(line.run, ps.metricAxis.key);
      const t = this.position(ps.metricAxis, v);
      ctx.strokeStyle = t === null ? muted : ramp(t);
      ctx.globalAlpha = this.hover && this.hover !== line.run ? 0.15 : 0.85;
      ctx.lineWidth = this.hover === line.run ? 3 : 1.5;
      ctx.beginPath();
      line.pts.forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
      ctx.stroke();
    }
    ctx.globalAlpha = 1;
    ctx.font = "12px system-ui, sans-serif";
    ps.axes.forEach((a, i) => {
      const x = ps.ax(i);
      ctx.strokeStyle = muted;
      ctx.lineWidth = 1;
      ctx.beginPath();
      ctx.moveTo(x, PAD.top);
      ctx.lineTo(x, PAD.top + ps.innerH);
      ctx.stroke();
      ctx.fillStyle = fg;
      ctx.textAlign = i === 0 ? "left" : i === last ? "right" : "center";
      ctx.fillText(a.label + (a.log ? " (log)" : ""), x, PAD.top - 18);
      ctx.fillStyle = muted;
      ctx.textAlign = "left";
      if (a.numeric) {
        ctx.fillText(fmt(a.hi), x + 4, PAD.top + 4);
        ctx.fillText(fmt(a.lo), x + 4, PAD.top + ps.innerH);
      } else {
        a.categories.forEach((c, k) => {
          const p = a.categories.length <= 1 ? 0.5 : k / (a.categories.length - 1);
          ctx.fillText(c.slice(0, 16), x + 4, PAD.top + (1 - p) * ps.innerH + 4);
        });
      }
    });
  }

  private onMove(e: MouseEvent): void {
    const rect = this.canvas.getBoundingClientRect();
    const mx = e.clientX - rect.left;
    const my = e.clientY - rect.top;
    let best: string | null = null;
    let bestD = 8;
    for (const line of this.lines) {
      for (let i = 1; i < line.pts.length; i++) {
        const [x0, y0] = line.pts[i - 1];
        const [x1, y1] = line.pts[i];
        if (mx < x0 || mx > x1) continue;
        const y = y0 + ((y1 - y0) * (mx - x0)) / Math.max(1, x1 - x0);
        if (Math.abs(y - my) < bestD) {
          bestD = Math.abs(y - my);
          best = line.run;
        }
      }
    }
    if (best !== this.hover) {
      this.hover = best;
      this.paint();
    }
    const ps = this.paintState;
    if (best && ps) {
      const r = state.run(best);
      this.tip.replaceChildren(h("div", { class: "tip-x" }, r?.name ?? best),
        ...ps.axes.map((a) => h("div", { class: "tip-row" }, h("span", { class: "tip-name" }, a.label),
          h("span", { class: "tip-val" }, fmt(this.value(best!, a.key))))));
      this.tip.hidden = false;
      this.tip.style.left = `${Math.min(mx + 12, rect.width - 220)}px`;
      this.tip.style.top = `${my + 12}px`;
    } else {
      this.tip.hidden = true;
    }
    this.canvas.style.cursor = best ? "pointer" : "default";
  }
}
