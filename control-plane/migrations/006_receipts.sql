-- Receipts (DESIGN §3.4): the full receipt of a paid call, a compact JWS the proxy signed once the answer had
-- streamed to its end (gateway.end `receipt`). NULL for free calls, for answers cut short, and until the end event
-- is recorded. Served by GET /api/v1/gateway-requests/:id/receipt; the JWS is the proof, this column only keeps it.

ALTER TABLE gateway_requests ADD COLUMN receipt text;
