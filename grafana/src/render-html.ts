import type { GrafanaPanel } from './panels.js';

/**
 * A dashboard as one static HTML page — Grafana's grid (24 columns, 30 px rows), a dark theme, inline SVG charts —
 * from query results already fetched. No chart library: lines, axes and legends are drawn here.
 */

export interface Series {
  name: string;
  points: [number, number][];
}

/** What each panel shows, by kind. */
export type PanelData =
  | { kind: 'timeseries'; series: Series[] }
  | { kind: 'stat'; value: number | null; spark: Series | null }
  | { kind: 'bargauge'; bars: { name: string; value: number }[] }
  | { kind: 'table'; columns: { name: string; unit: string }[]; rows: (string | number | null)[][] };

export interface RenderedPanel {
  panel: GrafanaPanel;
  data: PanelData;
}

const COLORS = ['#73bf69', '#f2cc0c', '#8ab8ff', '#ff780a', '#f2495c', '#5794f2', '#b877d9', '#fade2a', '#37872d'];
const ROW_PX = 30;
const GAP_PX = 8;

const escapeHtml = (text: string) =>
  text.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);

/** A value in a Grafana unit, short. */
export const formatValue = (unit: string, value: number | null, decimals?: number): string => {
  if (value === null || !Number.isFinite(value)) return '–';
  const fixed = (v: number, d = 2) => {
    if (decimals !== undefined) return v.toFixed(decimals);
    if (v === 0) return '0';
    const abs = Math.abs(v);
    return abs >= 100 ? v.toFixed(0) : abs >= 10 ? v.toFixed(1) : v.toFixed(d);
  };
  const scaled = (v: number, steps: string[], base: number, suffix: string) => {
    let i = 0;
    while (Math.abs(v) >= base && i < steps.length - 1) {
      v /= base;
      i++;
    }
    return `${fixed(v)} ${steps[i]}${suffix}`;
  };
  switch (unit) {
    case 'percentunit':
      return `${fixed(value * 100, 1)}%`;
    case 's':
      if (value === 0) return '0 s';
      if (Math.abs(value) < 0.001) return `${fixed(value * 1e6)} µs`;
      if (Math.abs(value) < 1) return `${fixed(value * 1000)} ms`;
      return `${fixed(value)} s`;
    case 'reqps':
      return `${fixed(value)} req/s`;
    case 'ops':
      return `${fixed(value)} ops/s`;
    case 'bytes':
      return scaled(value, ['B', 'KiB', 'MiB', 'GiB'], 1024, '');
    case 'Bps':
      return scaled(value, ['B', 'KiB', 'MiB', 'GiB'], 1024, '/s');
    default:
      return scaled(value, ['', 'K', 'M', 'G'], 1000, '').trim();
  }
};

/** About five round tick values from 0 (or the minimum, if negative) to at least `max`. */
const ticks = (min: number, max: number): number[] => {
  const span = max - min || Math.abs(max) || 1;
  const raw = span / 4;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((f) => f * magnitude).find((s) => s >= raw) ?? raw;
  const out: number[] = [];
  for (let v = Math.floor(min / step) * step; v <= max + step * 0.999; v += step) out.push(Number(v.toPrecision(12)));
  return out;
};

const clock = (seconds: number) => new Date(seconds * 1000).toISOString().slice(11, 19);

/** A line chart: time on x, the unit on y, one polyline per series (gaps where a value is missing). */
const lineChart = (series: Series[], unit: string, width: number, height: number, range: [number, number]) => {
  const left = 64;
  const right = 8;
  const top = 6;
  const bottom = 18;
  const values = series.flatMap((s) => s.points.map(([, v]) => v)).filter(Number.isFinite);
  const min = Math.min(0, ...values);
  // An all-zero chart still gets an axis from 0 to 1.
  const highest = values.length ? Math.max(...values) : min;
  const max = highest > min ? highest : min + 1;
  const ys = ticks(min, max);
  const yMax = ys[ys.length - 1]!;
  const yMin = ys[0]!;
  const [t0, t1] = range;
  const x = (t: number) => left + ((t - t0) / (t1 - t0 || 1)) * (width - left - right);
  const y = (v: number) => top + (1 - (v - yMin) / (yMax - yMin || 1)) * (height - top - bottom);
  const parts: string[] = [];
  for (const v of ys) {
    parts.push(
      `<line x1="${left}" x2="${width - right}" y1="${y(v)}" y2="${y(v)}" stroke="#2c3235" />`,
      `<text x="${left - 6}" y="${y(v) + 4}" text-anchor="end">${escapeHtml(formatValue(unit, v))}</text>`,
    );
  }
  for (let i = 0; i <= 4; i++) {
    const t = t0 + ((t1 - t0) * i) / 4;
    const anchor = i === 0 ? 'start' : i === 4 ? 'end' : 'middle';
    parts.push(`<text x="${x(t)}" y="${height - 4}" text-anchor="${anchor}">${clock(t)}</text>`);
  }
  series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length]!;
    let path = '';
    let pen = false;
    for (const [t, v] of s.points) {
      if (!Number.isFinite(v)) {
        pen = false;
        continue;
      }
      path += `${pen ? 'L' : 'M'}${x(t).toFixed(1)},${y(v).toFixed(1)}`;
      pen = true;
    }
    if (path) parts.push(`<path d="${path}" fill="none" stroke="${color}" stroke-width="1.5" />`);
  });
  return `<svg width="${width}" height="${height}" class="chart">${parts.join('')}</svg>`;
};

const legend = (series: Series[], unit: string) => {
  const items = series.map((s, i) => {
    const last = [...s.points].reverse().find(([, v]) => Number.isFinite(v))?.[1] ?? null;
    return `<span><i style="background:${COLORS[i % COLORS.length]}"></i>${escapeHtml(s.name)} <b>${escapeHtml(formatValue(unit, last))}</b></span>`;
  });
  return `<div class="legend">${items.join('')}</div>`;
};

const thresholdColor = (panel: GrafanaPanel, value: number | null) => {
  const steps =
    (panel.fieldConfig?.defaults as { thresholds?: { steps: { color: string; value: number | null }[] } })?.thresholds
      ?.steps ?? [];
  let color = 'green';
  for (const step of steps) if (step.value === null || (value !== null && value >= step.value)) color = step.color;
  return { green: '#73bf69', orange: '#ff9830', red: '#f2495c' }[color] ?? '#73bf69';
};

const body = (panel: GrafanaPanel, data: PanelData, width: number, height: number, range: [number, number]) => {
  const unit = panel.fieldConfig?.defaults?.unit ?? 'short';
  const decimals = panel.fieldConfig?.defaults?.decimals;
  switch (data.kind) {
    case 'timeseries': {
      // Series that stayed at 0 take no legend room (Grafana would list them; the picture has little space).
      const shown = data.series.filter((s) => s.points.some(([, v]) => Number.isFinite(v) && v !== 0));
      const series = shown.length > 0 ? shown : data.series.slice(0, 1);
      const legendRows = Math.min(3, Math.ceil(series.length / Math.max(1, Math.floor(width / 220))));
      return lineChart(series, unit, width, height - legendRows * 16 - 4, range) + legend(series, unit);
    }
    case 'stat': {
      const color = thresholdColor(panel, data.value);
      const spark = data.spark ? lineChart([data.spark], unit, width, height - 4, range) : '';
      return `<div class="stat" style="color:${color}">${escapeHtml(formatValue(unit, data.value, decimals))}</div><div class="spark">${spark}</div>`;
    }
    case 'bargauge': {
      const max = Math.max(1, ...data.bars.map((b) => b.value));
      return data.bars
        .map(
          (b) =>
            `<div class="bar"><div class="bar-name">${escapeHtml(b.name)}</div><div class="bar-track"><div class="bar-fill" style="width:${((b.value / max) * 100).toFixed(1)}%"></div><span>${escapeHtml(formatValue(unit, b.value, decimals))}</span></div></div>`,
        )
        .join('');
    }
    case 'table': {
      const head = data.columns.map((c) => `<th>${escapeHtml(c.name)}</th>`).join('');
      const rows = data.rows
        .map(
          (row) =>
            `<tr>${row.map((cell, i) => `<td>${escapeHtml(typeof cell === 'number' || cell === null ? formatValue(data.columns[i]!.unit, cell) : cell)}</td>`).join('')}</tr>`,
        )
        .join('');
      return `<table><thead><tr>${head}</tr></thead><tbody>${rows}</tbody></table>`;
    }
  }
};

const STYLE = `
* { box-sizing: border-box; }
body { margin: 0; padding: 16px; background: #111217; color: #ccccdc; font: 12px Inter, "Helvetica Neue", Arial, sans-serif; }
h1 { font-size: 18px; font-weight: 500; margin: 0 0 4px; color: #d8d9da; }
.sub { color: #8e8e8e; margin-bottom: 12px; }
.vars span { background: #181b1f; border: 1px solid #2c3235; padding: 3px 8px; margin-right: 6px; }
.grid { position: relative; }
.panel { position: absolute; background: #181b1f; border: 1px solid #2c3235; border-radius: 2px; padding: 6px 8px; overflow: hidden; }
.panel h2 { font-size: 12px; font-weight: 500; margin: 0 0 4px; color: #d8d9da; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.row { position: absolute; font-size: 14px; font-weight: 500; color: #d8d9da; padding-top: 6px; }
svg.chart text { fill: #8e8e8e; font-size: 10px; }
.legend { display: flex; flex-wrap: wrap; gap: 2px 12px; max-height: 48px; overflow: hidden; }
.legend span { white-space: nowrap; font-size: 11px; }
.legend i { display: inline-block; width: 10px; height: 3px; margin: 0 4px 3px 0; vertical-align: middle; }
.legend b { color: #8e8e8e; font-weight: 400; }
.stat { font-size: 30px; font-weight: 500; position: relative; z-index: 1; }
.spark { position: absolute; left: 0; right: 0; bottom: 0; opacity: 0.35; }
.spark svg text, .spark svg line { display: none; }
.bar { margin: 6px 0 10px; }
.bar-name { margin-bottom: 3px; }
.bar-track { position: relative; background: #22252b; height: 22px; }
.bar-fill { height: 100%; background: linear-gradient(90deg, #37872d, #73bf69); }
.bar-track span { position: absolute; right: 6px; top: 3px; font-weight: 500; color: #d8d9da; }
table { width: 100%; border-collapse: collapse; }
th { text-align: left; color: #6e9fff; font-weight: 500; border-bottom: 1px solid #2c3235; padding: 3px 6px; }
td { padding: 3px 6px; border-bottom: 1px solid #22252b; white-space: nowrap; }
`;

/** The whole page; panels sit where their gridPos puts them on a `width`-pixel canvas. */
export const dashboardHtml = (
  title: string,
  subtitle: string,
  variables: string[],
  panels: RenderedPanel[],
  rows: GrafanaPanel[],
  range: [number, number],
  width: number,
): string => {
  const column = (width - 32 + GAP_PX) / 24;
  const place = (g: GrafanaPanel['gridPos']) => ({
    left: g.x * column,
    top: g.y * ROW_PX,
    width: g.w * column - GAP_PX,
    height: g.h * ROW_PX - GAP_PX,
  });
  const html: string[] = [];
  let bottom = 0;
  for (const row of rows) {
    const p = place(row.gridPos);
    html.push(`<div class="row" style="left:${p.left}px;top:${p.top}px">${escapeHtml(row.title)}</div>`);
  }
  for (const { panel, data } of panels) {
    const p = place(panel.gridPos);
    bottom = Math.max(bottom, p.top + p.height);
    const inner = body(panel, data, p.width - 18, p.height - 34, range);
    html.push(
      `<div class="panel" style="left:${p.left}px;top:${p.top}px;width:${p.width}px;height:${p.height}px"><h2>${escapeHtml(panel.title)}</h2>${inner}</div>`,
    );
  }
  const vars = variables.map((v) => `<span>${escapeHtml(v)}: All</span>`).join('');
  return `<!doctype html><html><head><meta charset="utf-8"><style>${STYLE}</style></head><body>
<h1>${escapeHtml(title)}</h1><div class="sub">${escapeHtml(subtitle)}</div><div class="vars">${vars}</div><br>
<div class="grid" style="height:${bottom}px">${html.join('')}</div></body></html>`;
};
