// The page's state and who to tell when it changes. Views subscribe to named topics.

import { KeyInfo, OpInfo, Project, RunInfo } from "./api";
import { paletteColor } from "./colors";
import { IntervalKind } from "./evals";

export type View = "charts" | "table" | "parallel" | "compare" | "run";
export type Smoothing = "none" | "ema" | "ma";
export type Topic = "projects" | "runs" | "selection" | "keys" | "chartOptions" | "view" | "theme"
  | "live" | "ops";

/** Most runs drawn by default when a project opens (the rest can be selected). */
export const DEFAULT_SELECTED = 200;

export class State {
  projects: Project[] = [];
  project: string | null = null;
  runs: RunInfo[] = [];
  total = 0;
  configKeys: string[] = [];
  summaryKeys: string[] = [];
  keys: KeyInfo[] = [];
  /** Runs drawn on charts (ids). */
  selected = new Set<string>();
  /** Runs the user unticked: live additions must not bring them back. */
  deselected = new Set<string>();
  colors = new Map<string, string>();
  private colorIndex = new Map<string, number>();

  // run list query (evaluated on the server)
  search = "";
  statuses: string[] = [];
  filters: string[] = [];
  sort = "";

  view: View = "charts";
  detailRun: string | null = null;

  // chart options
  x = "step";
  logScale = false;
  smoothing: Smoothing = "none";
  emaWeight = 0.6;
  maWindow = 9;
  groupBy = "";
  parallelMetric = "";
  /** Interval drawn as a band around eval metrics (`eval/<m>` with `_ci_`/`_cs_` bounds). */
  interval: IntervalKind | "none" = "ci";

  /** Control ops of the project by id (the audit trail, kept live). */
  ops = new Map<number, OpInfo>();
  /** Whether the project is an experiment run by the engine (its runs have control buttons). */
  experiment = false;
  /** Whether the experiment's controller runs now (else ops wait for it). */
  controllerAlive = false;
  /** Config keys the engine sets for every run (GET /api/ops): read-only in the clone form. */
  engineKeys = new Set<string>();
  /** The first op id the page may not know in its final state (for the live stream). */
  opsStart = 1;
  /** List deleted runs too. */
  showDeleted = false;

  liveStatus: "connecting" | "live" | "offline" = "connecting";
  theme: "light" | "dark" = "light";

  private listeners = new Map<Topic, Set<() => void>>();

  on(topic: Topic, fn: () => void): void {
    if (!this.listeners.has(topic)) this.listeners.set(topic, new Set());
    this.listeners.get(topic)!.add(fn);
  }

  emit(topic: Topic): void {
    this.listeners.get(topic)?.forEach((fn) => fn());
  }

  /** The run's colour: chosen by the user, else from the palette in run order. */
  color(id: string): string {
    const chosen = this.colors.get(id);
    if (chosen) return chosen;
    if (!this.colorIndex.has(id)) this.colorIndex.set(id, this.colorIndex.size);
    return paletteColor(this.colorIndex.get(id)!);
  }

  run(id: string): RunInfo | undefined {
    return this.runs.find((r) => r.id === id);
  }

  /** Selected runs that the current list shows, in list order. */
  visibleRuns(): RunInfo[] {
    return this.runs.filter((r) => this.selected.has(r.id));
  }

  /** Take a new run list: keep the user's choices, select new runs unless unticked. */
  setRuns(runs: RunInfo[], fresh: boolean): void {
    // Colours follow creation order so that a run keeps its colour as filters change.
    [...runs].sort((a, b) => a.created - b.created).forEach((r) => this.color(r.id));
    const known = new Set(this.runs.map((r) => r.id));
    this.runs = runs;
    if (fresh) {
      this.selected = new Set(runs.slice(0, DEFAULT_SELECTED).map((r) => r.id));
      this.deselected.clear();
    } else {
      for (const r of runs) {
        if (!known.has(r.id) && !this.deselected.has(r.id) && this.selected.size < DEFAULT_SELECTED) {
          this.selected.add(r.id);
        }
      }
    }
  }

  /** Take an op (new or changed). */
  putOp(op: OpInfo): void {
    if (op.project !== this.project) return;
    this.ops.set(op.id, op);
  }

  /** Ops of a run, oldest first. */
  opsOf(run: string): OpInfo[] {
    return [...this.ops.values()].filter((o) => o.run === run).sort((a, b) => a.id - b.id);
  }

  /** The newest op of a run, if any. */
  lastOp(run: string): OpInfo | undefined {
    const ops = this.opsOf(run);
    return ops[ops.length - 1];
  }

  /** Where the live stream should resume ops: the first op still pending, else one past
   *  the newest op known. */
  opsFrom(): number {
    let first = Infinity;
    let last = this.opsStart - 1;
    this.ops.forEach((o) => {
      if (o.status === "pending") first = Math.min(first, o.id);
      last = Math.max(last, o.id);
    });
    return Number.isFinite(first) ? Math.min(first, last + 1) : last + 1;
  }

  toggle(id: string, on: boolean): void {
    if (on) {
      this.selected.add(id);
      this.deselected.delete(id);
    } else {
      this.selected.delete(id);
      this.deselected.add(id);
    }
  }
}

export const state = new State();
