-- The sku_sales read model: per SKU, orders placed, units ordered and units in
-- orders later cancelled. Rebuildable from the beginning of orders.events.

CREATE TABLE skus (
    sku             TEXT        PRIMARY KEY CHECK (char_length(sku) BETWEEN 1 AND 64),
    orders_placed   BIGINT      NOT NULL DEFAULT 0 CHECK (orders_placed >= 0),
    units_ordered   BIGINT      NOT NULL DEFAULT 0 CHECK (units_ordered >= 0),
    units_cancelled BIGINT      NOT NULL DEFAULT 0 CHECK (units_cancelled >= 0),
    last_ordered_at TIMESTAMPTZ NOT NULL,
    CHECK (units_cancelled <= units_ordered)
);

-- Each order once: OrderCancelled names the order, not its lines.
CREATE TABLE orders (
    order_id     UUID        PRIMARY KEY,
    placed_at    TIMESTAMPTZ NOT NULL,
    cancelled_at TIMESTAMPTZ
);

CREATE TABLE order_lines (
    order_id UUID   NOT NULL REFERENCES orders (order_id),
    sku      TEXT   NOT NULL REFERENCES skus (sku),
    quantity BIGINT NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (order_id, sku)
);
