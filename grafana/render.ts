import { mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { startObservedStack } from './src/harness.js';
import { type GrafanaPanel, type GrafanaTarget, loadDashboards, queryPanels, substitute } from './src/panels.js';
import type { Prometheus, PromResult, PromSeries } from './src/prometheus.js';
import { dashboardHtml, type PanelData, type RenderedPanel, type Series } from './src/render-html.js';

/**
 * `npm run dashboards:render [-- --seconds=45]`: the dashboards test's stack and Prometheus under a longer load, then
 * each dashboard drawn from its own panel queries and screenshotted with Chromium to docs/images/dashboard-<name>.png.
 */

const seconds = Number(/--seconds=(\d+)/.exec(process.argv.join(' '))?.[1] ?? 45);
const IMAGES = fileURLToPath(new URL('../docs/images/', import.meta.url));
const WIDTH_PX = 1600;
const STEP_SECONDS = 1;

/** A legend format with `{{label}}` filled in from a series' labels. */
const legendOf = (format: string | undefined, metric: Record<string, string>) => {
  if (!format || format === '__auto') {
    return Object.entries(metric)
      .map(([k, v]) => `${k}=${v}`)
      .join(', ');
  }
  return format.replace(/\{\{\s*(\w+)\s*\}\}/g, (_, label: string) => metric[label] ?? '');
};

const seriesOf = (result: PromSeries[], target: GrafanaTarget): Series[] =>
  result.map((s) => ({
    name: legendOf(target.legendFormat, s.metric),
    points: (s.values ?? []).map(([t, v]) => [t, Number(v)] as [number, number]),
  }));

/** The series of a successful query (vector or matrix); a failed query stops the rendering. */
const must = async (what: string, res: Promise<PromResult>): Promise<PromSeries[]> => {
  const r = await res;
  if (r.status !== 'success') throw new Error(`${what}: ${r.error}`);
  return r.data!.result as PromSeries[];
};

const panelData = async (
  prometheus: Prometheus,
  panel: GrafanaPanel,
  range: [number, number],
  windows: Parameters<typeof substitute>[1],
): Promise<PanelData> => {
  const [start, end] = range;
  const targets = panel.targets!;
  const instant = (t: GrafanaTarget) => must(panel.title, prometheus.query(substitute(t.expr, windows), end));
  const matrix = (t: GrafanaTarget) =>
    must(panel.title, prometheus.queryRange(substitute(t.expr, windows), start, end, STEP_SECONDS));
  switch (panel.type) {
    case 'timeseries':
      return {
        kind: 'timeseries',
        series: (await Promise.all(targets.map(async (t) => seriesOf(await matrix(t), t)))).flat(),
      };
    case 'stat': {
      const spark = seriesOf(await matrix(targets[0]!), targets[0]!)[0] ?? null;
      const value = Number((await instant(targets[0]!))[0]?.value?.[1] ?? Number.NaN);
      return { kind: 'stat', value: Number.isFinite(value) ? value : null, spark };
    }
    case 'bargauge':
      return {
        kind: 'bargauge',
        bars: await Promise.all(
          targets.map(async (t) => ({
            name: t.legendFormat ?? t.refId,
            value: Number((await instant(t))[0]?.value?.[1] ?? 0),
          })),
        ),
      };
    case 'table': {
      // Columns as the merge + organize transformations name them; one row per value of the grouping label.
      const rename = panel.transformations?.find((t) => t.id === 'organize')?.options.renameByName ?? {};
      const units = new Map(
        (
          (panel.fieldConfig?.overrides ?? []) as { matcher: { options: string }; properties: { value: string }[] }[]
        ).map((o) => [o.matcher.options, o.properties[0]!.value]),
      );
      const results = await Promise.all(targets.map(instant));
      const key = Object.keys(results[0]?.[0]?.metric ?? { listing: '' })[0] ?? 'listing';
      const names = targets.map((t) => rename[`Value #${t.refId}`] ?? t.refId);
      const rows = new Map<string, (number | null)[]>();
      results.forEach((result, column) => {
        for (const s of result) {
          const row = rows.get(s.metric[key] ?? '') ?? targets.map(() => null);
          row[column] = Number(s.value?.[1]);
          rows.set(s.metric[key] ?? '', row);
        }
      });
      return {
        kind: 'table',
        columns: [{ name: key, unit: '' }, ...names.map((name) => ({ name, unit: units.get(name) ?? 'short' }))],
        rows: [...rows.entries()]
          .sort((a, b) => (b[1][0] ?? 0) - (a[1][0] ?? 0))
          .map(([label, values]) => [label, ...values]),
      };
    }
    default:
      throw new Error(`panel type ${panel.type} is not drawn`);
  }
};

const main = async () => {
  console.log(`starting the stack and Prometheus; then ${seconds} s of load`);
  const observed = await startObservedStack();
  try {
    const summary = await observed.load(seconds * 1000);
    await new Promise((resolve) => setTimeout(resolve, 2_500));
    console.log('answers by kind and status:', JSON.stringify(summary));
    const { prometheus } = observed;
    const range: [number, number] = [prometheus.startedAt, Date.now() / 1000];
    // Grafana at this zoom with a 1 s scrape would use a few seconds; 10 s keeps the lines readable.
    const windows = { rateInterval: '10s', interval: '2s', range: `${Math.ceil(range[1] - range[0])}s` };
    mkdirSync(IMAGES, { recursive: true });
    const browser = await chromium.launch({
      executablePath: '/usr/bin/chromium',
      args: ['--headless', '--no-sandbox'],
    });
    try {
      for (const { name, json } of loadDashboards()) {
        const panels: RenderedPanel[] = [];
        for (const panel of queryPanels(json))
          panels.push({ panel, data: await panelData(prometheus, panel, range, windows) });
        const html = dashboardHtml(
          json.title,
          `Live data: Prometheus scraping a local Crochet stack (two proxies, one control plane) under ${seconds} s of mixed load · rate windows 10 s`,
          json.templating.list.map((v) => v.name),
          panels,
          json.panels.filter((p) => p.type === 'row'),
          range,
          WIDTH_PX,
        );
        const page = await browser.newPage({ viewport: { width: WIDTH_PX, height: 900 } });
        await page.setContent(html);
        const file = `${IMAGES}dashboard-${name}.png`;
        await page.screenshot({ path: file, fullPage: true });
        await page.close();
        console.log(`docs/images/dashboard-${name}.png: ${panels.length} panels`);
      }
    } finally {
      await browser.close();
    }
  } finally {
    await observed.stop();
  }
};

await main();
