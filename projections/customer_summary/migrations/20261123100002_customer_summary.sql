-- The customer_summary read model: per customer, how many orders they placed,
-- confirmed and cancelled, when they last ordered, and what they spent per currency.
-- Rebuildable from the beginning of orders.events and payments.events.

-- One row per customer, created by their first OrderPlaced. The counts are of events:
-- an order confirmed and later cancelled counts in both.
CREATE TABLE customers (
    customer_id      TEXT        PRIMARY KEY CHECK (char_length(customer_id) BETWEEN 1 AND 100),
    orders_placed    BIGINT      NOT NULL DEFAULT 0 CHECK (orders_placed >= 0),
    orders_confirmed BIGINT      NOT NULL DEFAULT 0 CHECK (orders_confirmed >= 0),
    orders_cancelled BIGINT      NOT NULL DEFAULT 0 CHECK (orders_cancelled >= 0),
    last_order_at    TIMESTAMPTZ NOT NULL,
    -- An order is confirmed or cancelled only after it was placed.
    CHECK (orders_confirmed <= orders_placed AND orders_cancelled <= orders_placed)
);

-- Money per customer and currency: captured minus refunded. Amounts are in minor
-- units of the payment's currency.
CREATE TABLE customer_spend (
    customer_id    TEXT   NOT NULL REFERENCES customers (customer_id),
    currency       TEXT   NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    captured_minor BIGINT NOT NULL DEFAULT 0 CHECK (captured_minor >= 0),
    refunded_minor BIGINT NOT NULL DEFAULT 0 CHECK (refunded_minor >= 0),
    spent_minor    BIGINT GENERATED ALWAYS AS (captured_minor - refunded_minor) STORED,
    -- A payment refunds at most what it captured, so neither does a customer.
    CHECK (refunded_minor <= captured_minor),
    PRIMARY KEY (customer_id, currency)
);

-- `GET /customers/top?currency=…`: the best spenders of one currency, ties by id.
CREATE INDEX customer_spend_top ON customer_spend (currency, spent_minor DESC, customer_id);

-- Which customer placed each order: payment events name the order, not the customer.
CREATE TABLE order_customers (
    order_id    UUID PRIMARY KEY,
    customer_id TEXT NOT NULL REFERENCES customers (customer_id)
);

-- The currency of each authorized payment: captures and refunds are in it but do not
-- repeat it. Filled by PaymentAuthorized, which starts the payment's stream.
CREATE TABLE payments (
    payment_id UUID PRIMARY KEY,
    currency   TEXT NOT NULL CHECK (currency ~ '^[A-Z]{3}$')
);

-- Captures and refunds of orders whose OrderPlaced has not arrived yet (the two
-- topics are consumed independently). Folded into the customer's spend, and
-- deleted, in the transaction that applies the OrderPlaced.
CREATE TABLE pending_payments (
    event_id     UUID        PRIMARY KEY,
    order_id     UUID        NOT NULL,
    payment_id   UUID        NOT NULL,
    kind         TEXT        NOT NULL CHECK (kind IN ('captured', 'refunded')),
    amount_minor BIGINT      NOT NULL CHECK (amount_minor > 0),
    currency     TEXT        NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    recorded_at  TIMESTAMPTZ NOT NULL
);

CREATE INDEX pending_payments_order ON pending_payments (order_id);
