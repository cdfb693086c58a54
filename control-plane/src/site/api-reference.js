// /docs/api: the interactive reference (Scalar, served from this site) over this site's OpenAPI document.
// A separate file, not an inline script, so the page's CSP can forbid inline scripts.
/* global Scalar */
Scalar.createApiReference('#reference', {
  url: '/api/openapi.json',
  withDefaultFonts: false,
  hideClientButton: false,
  showDeveloperTools: 'never',
  agent: { disabled: true },
  mcp: { disabled: true },
  telemetry: false,
});
