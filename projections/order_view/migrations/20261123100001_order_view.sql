-- order_view: one denormalized row per order, joined from the orders, payments and
-- shipping topics.
--
-- Events of the three services arrive in no particular order relative to each other
-- (different topics), so a row is created by whichever event of an order arrives
-- first. A column nothing has told the view about yet is NULL; `order_status` is NULL
-- until the order's `OrderPlaced` arrives. Every timestamp is the `recorded_at` of the
-- event that set it, so a rebuild from the topics gives the same rows.
CREATE TABLE order_view (
    order_id            UUID        PRIMARY KEY,

    -- From the orders service.
    customer_id         TEXT        CHECK (char_length(customer_id) BETWEEN 1 AND 100),
    currency            TEXT        CHECK (currency ~ '^[A-Z]{3}$'),
    lines               JSONB       CHECK (jsonb_typeof(lines) = 'array'),
    total_minor         BIGINT      CHECK (total_minor >= 0),
    order_status        TEXT        CHECK (order_status IN ('placed', 'confirmed', 'cancelled')),
    cancel_reason       TEXT,

    -- From the payments service: the one payment the row follows (see the crate docs).
    payment_id          UUID,
    payment_status      TEXT        CHECK (payment_status IN ('authorized', 'declined', 'captured',
                                                              'partially_refunded', 'refunded')),
    payment_currency    TEXT        CHECK (payment_currency ~ '^[A-Z]{3}$'),
    authorized_minor    BIGINT      CHECK (authorized_minor > 0),
    captured_minor      BIGINT      CHECK (captured_minor > 0),
    refunded_minor      BIGINT      CHECK (refunded_minor >= 0),
    decline_reason      TEXT,

    -- From the shipping service: the one shipment the row follows.
    shipment_id         UUID,
    shipment_status     TEXT        CHECK (shipment_status IN ('created', 'dispatched', 'delivered')),
    carrier             TEXT        CHECK (char_length(carrier) BETWEEN 1 AND 100),
    tracking_number     TEXT        CHECK (char_length(tracking_number) BETWEEN 1 AND 100),

    -- When each step happened (the event's recorded_at).
    placed_at           TIMESTAMPTZ,
    confirmed_at        TIMESTAMPTZ,
    cancelled_at        TIMESTAMPTZ,
    authorized_at       TIMESTAMPTZ,
    declined_at         TIMESTAMPTZ,
    captured_at         TIMESTAMPTZ,
    refunded_at         TIMESTAMPTZ,
    shipment_created_at TIMESTAMPTZ,
    dispatched_at       TIMESTAMPTZ,
    delivered_at        TIMESTAMPTZ,
    -- The latest recorded_at of the events applied to the row.
    updated_at          TIMESTAMPTZ NOT NULL,

    -- A placed order knows everything OrderPlaced carries.
    CONSTRAINT order_view_placed_complete CHECK (
        placed_at IS NULL OR (customer_id IS NOT NULL AND currency IS NOT NULL
                              AND lines IS NOT NULL AND total_minor IS NOT NULL
                              AND order_status IS NOT NULL)),
    -- A cancel reason exactly when cancelled.
    CONSTRAINT order_view_cancel_reason CHECK ((order_status = 'cancelled') = (cancel_reason IS NOT NULL)),
    -- A payment status exactly when a payment is known; a decline reason only when declined.
    CONSTRAINT order_view_payment_known CHECK ((payment_id IS NULL) = (payment_status IS NULL)),
    CONSTRAINT order_view_decline_reason CHECK (decline_reason IS NULL OR payment_status = 'declined'),
    -- Money moves forward only: captured at most what was authorized, refunded at most
    -- what was captured.
    CONSTRAINT order_view_capture_within_authorized CHECK (captured_minor <= authorized_minor),
    CONSTRAINT order_view_refund_within_captured CHECK (refunded_minor <= captured_minor),
    -- A shipment status exactly when a shipment is known; carrier and tracking number together.
    CONSTRAINT order_view_shipment_known CHECK ((shipment_id IS NULL) = (shipment_status IS NULL)),
    CONSTRAINT order_view_dispatch_details CHECK ((carrier IS NULL) = (tracking_number IS NULL))
);

-- The list queries: keyset pagination in (placed_at DESC, order_id DESC) order, over
-- placed orders only, optionally filtered by customer or by order status.
CREATE INDEX order_view_by_placed ON order_view (placed_at DESC, order_id DESC)
    WHERE placed_at IS NOT NULL;
CREATE INDEX order_view_by_customer ON order_view (customer_id, placed_at DESC, order_id DESC)
    WHERE placed_at IS NOT NULL;
CREATE INDEX order_view_by_status ON order_view (order_status, placed_at DESC, order_id DESC)
    WHERE placed_at IS NOT NULL;
