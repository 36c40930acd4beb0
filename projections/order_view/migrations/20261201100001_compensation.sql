-- The saga's compensation of a cancelled order: its payment's authorization voided,
-- its shipment called off before dispatch.
ALTER TABLE order_view
    DROP CONSTRAINT order_view_payment_status_check,
    ADD CONSTRAINT order_view_payment_status_check
        CHECK (payment_status IN ('authorized', 'declined', 'captured', 'partially_refunded',
                                  'refunded', 'voided')),
    DROP CONSTRAINT order_view_shipment_status_check,
    ADD CONSTRAINT order_view_shipment_status_check
        CHECK (shipment_status IN ('created', 'dispatched', 'delivered', 'cancelled')),
    ADD COLUMN voided_at             TIMESTAMPTZ,
    ADD COLUMN shipment_cancelled_at TIMESTAMPTZ;
