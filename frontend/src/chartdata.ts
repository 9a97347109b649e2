// Pure data shaping for charts: decoding API series, live appends, smoothing, grouping and
// aligning many runs onto one x array for uPlot. No DOM here, so it can be tested alone.

import { ChartResponse, Grid, decodeFloats, decodeInts } from "./api";

/** A run's exact points (x ascending), growing as live points arrive. */
export interface Exact {
  kind: "exact";
  x: number[];
  y: number[];
}

/** A run's min/max/mean per bucket of the chart's grid, plus exact live points after it. */
export interface Bucketed {
  kind: "buckets";
  min: Float64Array;
  max: Float64Array;
  mean: Float64Array;
  n: Int32Array;
  tailX: number[];
  tailY: number[];
}

export type Line = Exact | Bucketed;

export interface ChartData {
  grid: Grid | null;
  lines: Map<string, Line>;
}

/** Turn an API chart response into lines. */
export function fromResponse(res: ChartResponse): ChartData {
  const lines = new Map<string, Line>();
  for (const s of res.series) {
    if (s.mode === "buckets") {
      lines.set(s.run, {
        kind: "buckets", min: decodeFloats(s.min), max: decodeFloats(s.max),
        mean: decodeFloats(s.mean), n: decodeInts(s.n), tailX: [], tailY: [],
      });
    } else {
      lines.set(s.run, { kind: "exact", x: Array.from(decodeFloats(s.x)),
                         y: Array.from(decodeFloats(s.y)) });
    }
  }
  return { grid: res.grid, lines };
}

/** The last x a line holds (live points are appended only after it). */
export function lastX(line: Line, grid: Grid | null): number {
  if (line.kind === "exact") return line.x.length ? line.x[line.x.length - 1] : -Infinity;
  if (line.tailX.length) return line.tailX[line.tailX.length - 1];
  return grid ? grid.hi : -Infinity;
}

/** Append live points (x ascending) that come after what the line holds; returns how many. */
export function appendPoints(data: ChartData, run: string, xs: number[], ys: number[]): number {
  let line = data.lines.get(run);
  if (!line) {
    line = { kind: "exact", x: [], y: [] };
    data.lines.set(run, line);
  }
  const after = lastX(line, data.grid);
  let added = 0;
  for (let i = 0; i < xs.length; i++) {
    if (!(xs[i] > after) || (added && xs[i] <= xs[i - 1])) continue;
    if (line.kind === "exact") {
      line.x.push(xs[i]);
      line.y.push(ys[i]);
    } else {
      line.tailX.push(xs[i]);
      line.tailY.push(ys[i]);
    }
    added++;
  }
  return added;
}

export interface Seq {
  x: number[];
  y: number[];
}

function bucketWidth(grid: Grid): number {
  return (grid.hi - grid.lo) / grid.buckets;
}

/** Points to draw for a run's raw line: exact points, or each bucket's min and max side by
 *  side (so a one-point spike is drawn as a vertical stroke), then live points. */
export function rawSeq(line: Line, grid: Grid | null): Seq {
  if (line.kind === "exact" || !grid) {
    return line.kind === "exact" ? { x: line.x, y: line.y } : { x: line.tailX, y: line.tailY };
  }
  const w = bucketWidth(grid);
  const x: number[] = [];
  const y: number[] = [];
  for (let i = 0; i < line.n.length; i++) {
    if (line.n[i] === 0) continue;
    x.push(grid.lo + (i + 0.25) * w, grid.lo + (i + 0.75) * w);
    y.push(line.min[i], line.max[i]);
  }
  return { x: x.concat(line.tailX), y: y.concat(line.tailY) };
}

/** One point per bucket (its mean, at the bucket centre) or the exact points: what
 *  smoothing and group statistics work on. */
export function centreSeq(line: Line, grid: Grid | null): Seq {
  if (line.kind === "exact" || !grid) return rawSeq(line, grid);
  const w = bucketWidth(grid);
  const x: number[] = [];
  const y: number[] = [];
  for (let i = 0; i < line.n.length; i++) {
    if (line.n[i] === 0) continue;
    x.push(grid.lo + (i + 0.5) * w);
    y.push(line.mean[i]);
  }
  return { x: x.concat(line.tailX), y: y.concat(line.tailY) };
}

/** One edge of an interval band: the exact points, or per non-empty bucket its lowest
 *  (`lo`) or highest (`hi`) value at the bucket centre (so the band drawn holds every
 *  interval of the bucket), then live points. */
export function boundSeq(line: Line, grid: Grid | null, edge: "lo" | "hi"): Seq {
  if (line.kind === "exact" || !grid) return rawSeq(line, grid);
  const w = bucketWidth(grid);
  const x: number[] = [];
  const y: number[] = [];
  for (let i = 0; i < line.n.length; i++) {
    if (line.n[i] === 0) continue;
    x.push(grid.lo + (i + 0.5) * w);
    y.push(edge === "lo" ? line.min[i] : line.max[i]);
  }
  return { x: x.concat(line.tailX), y: y.concat(line.tailY) };
}

/** Exponential moving average with TensorBoard's weight (0 = none, 0.99 = heavy), debiased:
 *  dividing by 1 - weight^k removes the pull towards 0 of the first points. NaN and
 *  infinite values are skipped (passed through as they are). */
export function ema(values: number[], weight: number): number[] {
  const out = new Array<number>(values.length);
  let acc = 0;
  let k = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (!Number.isFinite(v)) {
      out[i] = v;
      continue;
    }
    k++;
    acc = weight * acc + (1 - weight) * v;
    out[i] = weight === 0 ? v : acc / (1 - Math.pow(weight, k));
  }
  return out;
}

/** Centred moving average over `window` points (odd; shrinks at the ends). NaN and infinite
 *  values are left out of the averages. */
export function movingAverage(values: number[], window: number): number[] {
  const half = Math.max(0, Math.floor(window / 2));
  const n = values.length;
  const sum = new Float64Array(n + 1);
  const cnt = new Int32Array(n + 1);
  for (let i = 0; i < n; i++) {
    const ok = Number.isFinite(values[i]);
    sum[i + 1] = sum[i] + (ok ? values[i] : 0);
    cnt[i + 1] = cnt[i] + (ok ? 1 : 0);
  }
  const out = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    const a = Math.max(0, i - half);
    const b = Math.min(n, i + half + 1);
    const c = cnt[b] - cnt[a];
    out[i] = c ? (sum[b] - sum[a]) / c : NaN;
  }
  return out;
}

export type SmoothSpec = { kind: "none" } | { kind: "ema"; weight: number }
  | { kind: "ma"; window: number };

export function smooth(values: number[], spec: SmoothSpec): number[] {
  if (spec.kind === "ema") return ema(values, spec.weight);
  if (spec.kind === "ma") return movingAverage(values, spec.window);
  return values;
}

/** Mean per bucket of a sequence on a grid (NaN where empty). */
export function bucketMeans(seq: Seq, grid: Grid): Float64Array {
  const sum = new Float64Array(grid.buckets);
  const cnt = new Int32Array(grid.buckets);
  const w = bucketWidth(grid);
  for (let i = 0; i < seq.x.length; i++) {
    const v = seq.y[i];
    if (!Number.isFinite(v)) continue;
    let b = w > 0 ? Math.floor((seq.x[i] - grid.lo) / w) : 0;
    if (b < 0 || b > grid.buckets) continue;
    if (b === grid.buckets) b--;
    sum[b] += v;
    cnt[b]++;
  }
  return sum.map((s, i) => (cnt[i] ? s / cnt[i] : NaN));
}

export interface GroupStats {
  x: number[];
  mean: number[];
  lo: number[];
  hi: number[];
  runs: number;
}

/** Mean line and min-max band across runs, per bucket of `grid`: each run contributes its
 *  own mean in the bucket. */
export function groupStats(seqs: Seq[], grid: Grid): GroupStats {
  const means = seqs.map((s) => bucketMeans(s, grid));
  const w = bucketWidth(grid);
  const out: GroupStats = { x: [], mean: [], lo: [], hi: [], runs: seqs.length };
  for (let b = 0; b < grid.buckets; b++) {
    let sum = 0, cnt = 0, lo = Infinity, hi = -Infinity;
    for (const m of means) {
      const v = m[b];
      if (!Number.isFinite(v)) continue;
      sum += v;
      cnt++;
      lo = Math.min(lo, v);
      hi = Math.max(hi, v);
    }
    if (!cnt) continue;
    out.x.push(grid.lo + (b + 0.5) * w);
    out.mean.push(sum / cnt);
    out.lo.push(lo);
    out.hi.push(hi);
  }
  return out;
}

/** The x extent of sequences, as a grid of `buckets` buckets. */
export function gridFor(seqs: Seq[], buckets: number): Grid | null {
  let lo = Infinity, hi = -Infinity;
  for (const s of seqs) {
    if (!s.x.length) continue;
    lo = Math.min(lo, s.x[0]);
    hi = Math.max(hi, s.x[s.x.length - 1]);
  }
  return Number.isFinite(lo) ? { lo, hi, buckets } : null;
}

export type Role = "raw" | "smooth" | "mean" | "band";

export interface DrawnSeries {
  label: string;
  run: string | null;
  group: string | null;
  role: Role;
  color: string;
  seq: Seq;
  /** For a band: its upper edge (followed by its lower edge) or its lower edge. */
  edge?: "hi" | "lo";
}

export interface Aligned {
  x: Float64Array;
  ys: (number | null)[][];
}

/** Put sequences on one sorted x array (the union of theirs), null where a sequence has no
 *  point; values that cannot be drawn (NaN, infinities, and <= 0 on a log scale) are null. */
export function align(seqs: Seq[], logScale: boolean): Aligned {
  let total = 0;
  for (const s of seqs) total += s.x.length;
  const all = new Float64Array(total);
  let o = 0;
  for (const s of seqs) {
    all.set(s.x, o);
    o += s.x.length;
  }
  all.sort();
  let u = 0;
  for (let i = 0; i < all.length; i++) {
    if (i === 0 || all[i] !== all[u - 1]) all[u++] = all[i];
  }
  const x = all.slice(0, u);
  const ys = seqs.map((s) => {
    const col = new Array<number | null>(u).fill(null);
    let j = 0;
    for (let i = 0; i < s.x.length; i++) {
      while (x[j] < s.x[i]) j++;
      const v = s.y[i];
      col[j] = Number.isFinite(v) && (!logScale || v > 0) ? v : null;
    }
    return col;
  });
  return { x, ys };
}
