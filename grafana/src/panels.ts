import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** The dashboards as Grafana loads them (grafana/dashboards/*.json), read back into their panels' queries. */

export const DASHBOARDS_DIR = fileURLToPath(new URL('../dashboards/', import.meta.url));

export interface GrafanaTarget {
  refId: string;
  expr: string;
  legendFormat?: string;
  instant?: boolean;
  format?: string;
}

export interface GrafanaPanel {
  id: number;
  type: string;
  title: string;
  gridPos: { h: number; w: number; x: number; y: number };
  targets?: GrafanaTarget[];
  fieldConfig?: { defaults?: { unit?: string; decimals?: number }; overrides?: unknown[] };
  transformations?: { id: string; options: { renameByName?: Record<string, string> } }[];
}

export interface GrafanaDashboard {
  uid: string;
  title: string;
  panels: GrafanaPanel[];
  templating: { list: { name: string; definition: string; allValue?: string; includeAll?: boolean }[] };
}

export interface LoadedDashboard {
  /** The file name without .json. */
  name: string;
  json: GrafanaDashboard;
}

export const loadDashboards = (): LoadedDashboard[] =>
  readdirSync(DASHBOARDS_DIR)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((f) => ({
      name: f.replace(/\.json$/, ''),
      json: JSON.parse(readFileSync(`${DASHBOARDS_DIR}${f}`, 'utf8')) as GrafanaDashboard,
    }));

/** Every panel that queries (rows do not). */
export const queryPanels = (dashboard: GrafanaDashboard): GrafanaPanel[] =>
  dashboard.panels.filter((p) => p.type !== 'row' && (p.targets?.length ?? 0) > 0);

/** What Grafana would put in for its variables: All (`.*`) for ours, fixed windows for the built-in ones. */
export interface Substitutions {
  rateInterval: string;
  interval: string;
  range: string;
}

export const substitute = (expr: string, s: Substitutions): string =>
  expr
    .replace(/\$__rate_interval/g, s.rateInterval)
    .replace(/\$__interval/g, s.interval)
    .replace(/\$__range/g, s.range)
    .replace(/\$(instance|listing)\b/g, '.*');

/** `label_values(<match>, <label>)` of a template variable, with `$instance` and friends substituted. */
export const parseLabelValues = (definition: string): { match: string; label: string } => {
  const found = /^label_values\((.*),\s*(\w+)\)$/.exec(definition.trim());
  if (!found) throw new Error(`not a label_values(match, label) query: ${definition}`);
  return { match: found[1]!.replace(/\$(instance|listing)\b/g, '.*'), label: found[2]! };
};
