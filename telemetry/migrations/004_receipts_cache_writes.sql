-- Migration 4: input tokens written to the provider's prompt cache (Anthropic's
-- cache_creation_input_tokens), which cost more than plain input (1.25 × for the 5-minute
-- cache, 2 × for the 1-hour one). Both are parts of input_tokens, as cached_tokens is;
-- rows written before this migration have 0 (their writes were billed as plain input).
ALTER TABLE receipts ADD COLUMN cache_write_tokens INTEGER NOT NULL DEFAULT 0;
ALTER TABLE receipts ADD COLUMN cache_write_1h_tokens INTEGER NOT NULL DEFAULT 0;
