//! The shipment aggregate: pure decisions and state evolution, no I/O.
//!
//! Lifecycle: no shipment → create → `Created` → dispatch → `Dispatched` →
//! deliver → `Delivered`. Each step happens once and in that order: creating an
//! existing shipment, dispatching twice or after delivery, and delivering a
//! shipment that was never dispatched (or twice) are refused.

use serde::{Deserialize, Serialize};
use sluice_platform::aggregate::{Aggregate, DomainError, DomainEvent, Rejection};
use uuid::Uuid;

/// Longest carrier name and tracking number, in characters as sent (before
/// trimming), as the API's `maxLength` counts them.
pub const MAX_TEXT_CHARS: usize = 100;

/// The carrier that moves a shipment: 1 to 100 characters, no control characters
/// (inner spaces are fine: `DHL Express`). Surrounding whitespace is trimmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Carrier(String);

impl Carrier {
    pub fn new(raw: &str) -> Result<Self, ShipmentError> {
        let s = raw.trim();
        let length = raw.chars().count();
        if s.is_empty() || length > MAX_TEXT_CHARS || s.chars().any(char::is_control) {
            return Err(ShipmentError::InvalidCarrier(format!(
                "must be 1 to {MAX_TEXT_CHARS} printable characters, not all whitespace, got {length} characters"
            )));
        }
        Ok(Carrier(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A carrier's tracking number: 1 to 100 printable characters with no whitespace
/// inside. Surrounding whitespace is trimmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackingNumber(String);

impl TrackingNumber {
    pub fn new(raw: &str) -> Result<Self, ShipmentError> {
        let s = raw.trim();
        let length = raw.chars().count();
        if s.is_empty() || length > MAX_TEXT_CHARS {
            return Err(ShipmentError::InvalidTrackingNumber(format!(
                "must be 1 to {MAX_TEXT_CHARS} characters, got {length}"
            )));
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ShipmentError::InvalidTrackingNumber(
                "must be printable characters without whitespace".into(),
            ));
        }
        Ok(TrackingNumber(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Commands the shipment aggregate accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShipmentCommand {
    Create {
        shipment_id: Uuid,
        order_id: Uuid,
    },
    Dispatch {
        carrier: Carrier,
        tracking_number: TrackingNumber,
    },
    Deliver,
    /// Call the shipment off before it is dispatched (the saga's step when its order
    /// is cancelled).
    Cancel {
        reason: String,
    },
}

/// Events of the shipment stream (the public contract lives in `schemas/shipping/`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event_type", content = "payload")]
pub enum ShipmentEvent {
    ShipmentCreated {
        shipment_id: Uuid,
        order_id: Uuid,
    },
    ShipmentDispatched {
        shipment_id: Uuid,
        order_id: Uuid,
        carrier: String,
        tracking_number: String,
    },
    ShipmentDelivered {
        shipment_id: Uuid,
        order_id: Uuid,
    },
    ShipmentCancelled {
        shipment_id: Uuid,
        order_id: Uuid,
        reason: String,
    },
}

impl DomainEvent for ShipmentEvent {}

/// Why a shipment command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShipmentError {
    /// Dispatch or deliver of a shipment that was never created.
    #[error("shipment not found")]
    NotFound,
    /// Create of a shipment id that is already taken.
    #[error("shipment {0} already exists")]
    AlreadyCreated(Uuid),
    /// Dispatch or deliver not allowed in the shipment's current status: dispatching
    /// anything but a created shipment, delivering anything but a dispatched one.
    #[error(
        "cannot {action} a shipment whose status is `{status}`; {action} needs status `{required}`"
    )]
    InvalidTransition {
        action: &'static str,
        status: ShipmentStatus,
        required: ShipmentStatus,
    },
    /// Create naming the nil UUID as the shipment or the order: it identifies nothing.
    #[error("{0}: must not be the nil UUID")]
    NilId(&'static str),
    /// Dispatch with an empty, too long or unprintable carrier.
    #[error("carrier: {0}")]
    InvalidCarrier(String),
    /// Dispatch with an empty, too long or unprintable tracking number, or one with
    /// whitespace inside.
    #[error("tracking_number: {0}")]
    InvalidTrackingNumber(String),
}

impl DomainError for ShipmentError {
    fn rejection(&self) -> Rejection {
        match self {
            ShipmentError::NotFound => Rejection::NotFound,
            ShipmentError::AlreadyCreated(_) | ShipmentError::InvalidTransition { .. } => {
                Rejection::InvalidState
            }
            ShipmentError::NilId(_)
            | ShipmentError::InvalidCarrier(_)
            | ShipmentError::InvalidTrackingNumber(_) => Rejection::Invalid,
        }
    }
}

/// Where an existing shipment is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ShipmentStatus {
    Created,
    Dispatched,
    Delivered,
    /// Called off before dispatch.
    Cancelled,
}

impl std::fmt::Display for ShipmentStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ShipmentStatus::Created => "created",
            ShipmentStatus::Dispatched => "dispatched",
            ShipmentStatus::Delivered => "delivered",
            ShipmentStatus::Cancelled => "cancelled",
        })
    }
}

/// The shipment's state, folded from its events. `status` is `None` until the
/// shipment is created.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Shipment {
    pub shipment_id: Option<Uuid>,
    pub order_id: Option<Uuid>,
    pub status: Option<ShipmentStatus>,
    pub carrier: Option<String>,
    pub tracking_number: Option<String>,
}

impl Aggregate for Shipment {
    const STREAM_TYPE: &'static str = "shipment";
    type Command = ShipmentCommand;
    type Event = ShipmentEvent;
    type Error = ShipmentError;

    fn decide(&self, command: &ShipmentCommand) -> Result<Vec<ShipmentEvent>, ShipmentError> {
        use ShipmentStatus::{Created, Dispatched};
        match (command, self.status) {
            (
                ShipmentCommand::Create {
                    shipment_id,
                    order_id,
                },
                None,
            ) => Ok(vec![create(*shipment_id, *order_id)?]),
            (ShipmentCommand::Create { shipment_id, .. }, Some(_)) => {
                Err(ShipmentError::AlreadyCreated(*shipment_id))
            }
            (_, None) => Err(ShipmentError::NotFound),
            (
                ShipmentCommand::Dispatch {
                    carrier,
                    tracking_number,
                },
                Some(Created),
            ) => Ok(vec![ShipmentEvent::ShipmentDispatched {
                shipment_id: self.id(),
                order_id: self.order(),
                carrier: carrier.as_str().to_owned(),
                tracking_number: tracking_number.as_str().to_owned(),
            }]),
            (ShipmentCommand::Dispatch { .. }, Some(status)) => {
                Err(ShipmentError::InvalidTransition {
                    action: "dispatch",
                    status,
                    required: Created,
                })
            }
            (ShipmentCommand::Deliver, Some(Dispatched)) => {
                Ok(vec![ShipmentEvent::ShipmentDelivered {
                    shipment_id: self.id(),
                    order_id: self.order(),
                }])
            }
            (ShipmentCommand::Deliver, Some(status)) => Err(ShipmentError::InvalidTransition {
                action: "deliver",
                status,
                required: Dispatched,
            }),
            (ShipmentCommand::Cancel { reason }, Some(Created)) => {
                Ok(vec![ShipmentEvent::ShipmentCancelled {
                    shipment_id: self.id(),
                    order_id: self.order(),
                    reason: reason.clone(),
                }])
            }
            (ShipmentCommand::Cancel { .. }, Some(status)) => {
                Err(ShipmentError::InvalidTransition {
                    action: "cancel",
                    status,
                    required: Created,
                })
            }
        }
    }

    fn evolve(mut self, event: &ShipmentEvent) -> Self {
        match event {
            ShipmentEvent::ShipmentCreated {
                shipment_id,
                order_id,
            } => {
                self.shipment_id = Some(*shipment_id);
                self.order_id = Some(*order_id);
                self.status = Some(ShipmentStatus::Created);
            }
            ShipmentEvent::ShipmentDispatched {
                carrier,
                tracking_number,
                ..
            } => {
                self.status = Some(ShipmentStatus::Dispatched);
                self.carrier = Some(carrier.clone());
                self.tracking_number = Some(tracking_number.clone());
            }
            ShipmentEvent::ShipmentDelivered { .. } => {
                self.status = Some(ShipmentStatus::Delivered);
            }
            ShipmentEvent::ShipmentCancelled { .. } => {
                self.status = Some(ShipmentStatus::Cancelled);
            }
        }
        self
    }
}

impl Shipment {
    fn id(&self) -> Uuid {
        self.shipment_id.unwrap_or_default()
    }

    fn order(&self) -> Uuid {
        self.order_id.unwrap_or_default()
    }
}

fn create(shipment_id: Uuid, order_id: Uuid) -> Result<ShipmentEvent, ShipmentError> {
    if shipment_id.is_nil() {
        return Err(ShipmentError::NilId("shipment_id"));
    }
    if order_id.is_nil() {
        return Err(ShipmentError::NilId("order_id"));
    }
    Ok(ShipmentEvent::ShipmentCreated {
        shipment_id,
        order_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create_cmd(shipment_id: Uuid, order_id: Uuid) -> ShipmentCommand {
        ShipmentCommand::Create {
            shipment_id,
            order_id,
        }
    }

    fn dispatch_cmd() -> ShipmentCommand {
        ShipmentCommand::Dispatch {
            carrier: Carrier::new("DHL Express").unwrap(),
            tracking_number: TrackingNumber::new("JD014600006281").unwrap(),
        }
    }

    /// Given events, when a command, then the events it produces (or its error).
    fn given(events: &[ShipmentEvent]) -> Shipment {
        events.iter().fold(Shipment::default(), Shipment::evolve)
    }

    /// The history of a shipment taken through `commands` from nothing.
    fn history(commands: &[ShipmentCommand]) -> Vec<ShipmentEvent> {
        commands.iter().fold(Vec::new(), |mut events, command| {
            events.extend(given(&events).decide(command).unwrap());
            events
        })
    }

    #[test]
    fn creating_a_shipment_records_it_for_its_order() {
        let (id, order) = (Uuid::now_v7(), Uuid::now_v7());
        let events = given(&[]).decide(&create_cmd(id, order)).unwrap();
        assert_eq!(
            events,
            [ShipmentEvent::ShipmentCreated {
                shipment_id: id,
                order_id: order
            }]
        );
        let shipment = given(&events);
        assert_eq!(shipment.status, Some(ShipmentStatus::Created));
        assert_eq!(shipment.shipment_id, Some(id));
        assert_eq!(shipment.order_id, Some(order));
        assert_eq!(shipment.carrier, None);
    }

    #[test]
    fn creating_twice_is_refused() {
        let id = Uuid::now_v7();
        let created = history(&[create_cmd(id, Uuid::now_v7())]);
        let again = given(&created).decide(&create_cmd(id, Uuid::now_v7()));
        assert_eq!(again, Err(ShipmentError::AlreadyCreated(id)));
        assert_eq!(again.unwrap_err().rejection(), Rejection::InvalidState);
    }

    #[test]
    fn nil_ids_are_invalid() {
        let nil_order = given(&[]).decide(&create_cmd(Uuid::now_v7(), Uuid::nil()));
        assert_eq!(nil_order, Err(ShipmentError::NilId("order_id")));
        let nil_shipment = given(&[]).decide(&create_cmd(Uuid::nil(), Uuid::now_v7()));
        assert_eq!(nil_shipment, Err(ShipmentError::NilId("shipment_id")));
        assert_eq!(nil_order.unwrap_err().rejection(), Rejection::Invalid);
    }

    #[test]
    fn a_created_shipment_is_dispatched_with_its_carrier_and_tracking_number() {
        let (id, order) = (Uuid::now_v7(), Uuid::now_v7());
        let mut events = history(&[create_cmd(id, order)]);
        let dispatched = given(&events).decide(&dispatch_cmd()).unwrap();
        assert_eq!(
            dispatched,
            [ShipmentEvent::ShipmentDispatched {
                shipment_id: id,
                order_id: order,
                carrier: "DHL Express".into(),
                tracking_number: "JD014600006281".into(),
            }]
        );
        events.extend(dispatched);
        let shipment = given(&events);
        assert_eq!(shipment.status, Some(ShipmentStatus::Dispatched));
        assert_eq!(shipment.carrier.as_deref(), Some("DHL Express"));
        assert_eq!(shipment.tracking_number.as_deref(), Some("JD014600006281"));
    }

    #[test]
    fn a_dispatched_shipment_is_delivered_once() {
        let (id, order) = (Uuid::now_v7(), Uuid::now_v7());
        let mut events = history(&[create_cmd(id, order), dispatch_cmd()]);
        let delivered = given(&events).decide(&ShipmentCommand::Deliver).unwrap();
        assert_eq!(
            delivered,
            [ShipmentEvent::ShipmentDelivered {
                shipment_id: id,
                order_id: order
            }]
        );
        events.extend(delivered);
        let shipment = given(&events);
        assert_eq!(shipment.status, Some(ShipmentStatus::Delivered));
        // Delivery keeps what dispatch recorded.
        assert_eq!(shipment.carrier.as_deref(), Some("DHL Express"));
        assert_eq!(
            shipment.decide(&ShipmentCommand::Deliver),
            Err(ShipmentError::InvalidTransition {
                action: "deliver",
                status: ShipmentStatus::Delivered,
                required: ShipmentStatus::Dispatched,
            })
        );
    }

    #[test]
    fn dispatching_twice_is_refused() {
        let events = history(&[create_cmd(Uuid::now_v7(), Uuid::now_v7()), dispatch_cmd()]);
        let again = given(&events).decide(&dispatch_cmd());
        assert_eq!(
            again,
            Err(ShipmentError::InvalidTransition {
                action: "dispatch",
                status: ShipmentStatus::Dispatched,
                required: ShipmentStatus::Created,
            })
        );
        assert_eq!(again.unwrap_err().rejection(), Rejection::InvalidState);
    }

    #[test]
    fn a_delivered_shipment_cannot_be_dispatched() {
        let events = history(&[
            create_cmd(Uuid::now_v7(), Uuid::now_v7()),
            dispatch_cmd(),
            ShipmentCommand::Deliver,
        ]);
        assert_eq!(
            given(&events).decide(&dispatch_cmd()),
            Err(ShipmentError::InvalidTransition {
                action: "dispatch",
                status: ShipmentStatus::Delivered,
                required: ShipmentStatus::Created,
            })
        );
    }

    #[test]
    fn a_shipment_never_dispatched_cannot_be_delivered() {
        let events = history(&[create_cmd(Uuid::now_v7(), Uuid::now_v7())]);
        let refused = given(&events)
            .decide(&ShipmentCommand::Deliver)
            .unwrap_err();
        assert_eq!(
            refused,
            ShipmentError::InvalidTransition {
                action: "deliver",
                status: ShipmentStatus::Created,
                required: ShipmentStatus::Dispatched,
            }
        );
        assert_eq!(
            refused.to_string(),
            "cannot deliver a shipment whose status is `created`; deliver needs status `dispatched`"
        );
    }

    #[test]
    fn a_shipment_is_cancelled_only_before_it_is_dispatched() {
        let (id, order) = (Uuid::now_v7(), Uuid::now_v7());
        let cancel = || ShipmentCommand::Cancel {
            reason: "order cancelled".into(),
        };
        let created = history(&[create_cmd(id, order)]);
        let cancelled = given(&created).decide(&cancel()).unwrap();
        assert_eq!(
            cancelled,
            [ShipmentEvent::ShipmentCancelled {
                shipment_id: id,
                order_id: order,
                reason: "order cancelled".into()
            }]
        );
        let mut after = created.clone();
        after.extend(cancelled);
        assert_eq!(given(&after).status, Some(ShipmentStatus::Cancelled));
        assert!(given(&after).decide(&dispatch_cmd()).is_err());
        assert!(given(&after).decide(&cancel()).is_err());
        let dispatched = history(&[create_cmd(id, order), dispatch_cmd()]);
        assert_eq!(
            given(&dispatched).decide(&cancel()),
            Err(ShipmentError::InvalidTransition {
                action: "cancel",
                status: ShipmentStatus::Dispatched,
                required: ShipmentStatus::Created
            })
        );
    }

    #[test]
    fn commands_on_an_unknown_shipment_are_not_found() {
        for command in [dispatch_cmd(), ShipmentCommand::Deliver] {
            let refused = given(&[]).decide(&command);
            assert_eq!(refused, Err(ShipmentError::NotFound));
            assert_eq!(refused.unwrap_err().rejection(), Rejection::NotFound);
        }
    }

    #[test]
    fn carriers_are_1_to_100_printable_characters() {
        assert_eq!(Carrier::new("  UPS ").unwrap().as_str(), "UPS");
        assert_eq!(Carrier::new("La Poste").unwrap().as_str(), "La Poste");
        assert!(Carrier::new(&"é".repeat(MAX_TEXT_CHARS)).is_ok());
        // Characters as sent: surrounding whitespace counts towards the bound.
        let padded = format!(" {}", "x".repeat(MAX_TEXT_CHARS));
        for bad in [
            "",
            "   ",
            "DH\u{7}L",
            &"x".repeat(MAX_TEXT_CHARS + 1),
            &padded,
        ] {
            let err = Carrier::new(bad).unwrap_err();
            assert!(matches!(err, ShipmentError::InvalidCarrier(_)), "{bad:?}");
            assert_eq!(err.rejection(), Rejection::Invalid);
            assert!(err.to_string().starts_with("carrier: "));
        }
    }

    #[test]
    fn tracking_numbers_are_1_to_100_printable_characters_without_whitespace() {
        assert_eq!(
            TrackingNumber::new(" 1Z999AA10123456784\n")
                .unwrap()
                .as_str(),
            "1Z999AA10123456784"
        );
        assert!(TrackingNumber::new("RR-123/456.DE").is_ok());
        assert!(TrackingNumber::new(&"9".repeat(MAX_TEXT_CHARS)).is_ok());
        let too_long = "9".repeat(MAX_TEXT_CHARS + 1);
        for bad in [
            "",
            " \t ",
            "1Z 999",
            "1Z\t999",
            "1Z\u{a0}999",
            "1Z\u{0}999",
            &too_long,
        ] {
            let err = TrackingNumber::new(bad).unwrap_err();
            assert!(
                matches!(err, ShipmentError::InvalidTrackingNumber(_)),
                "{bad:?}"
            );
            assert_eq!(err.rejection(), Rejection::Invalid);
            assert!(err.to_string().starts_with("tracking_number: "));
        }
    }

    #[test]
    fn events_are_stored_with_their_type_and_fields_only() {
        let id = Uuid::now_v7();
        let event = ShipmentEvent::ShipmentDelivered {
            shipment_id: id,
            order_id: id,
        };
        let stored = sluice_platform::aggregate::to_new_event(&event).unwrap();
        assert_eq!(stored.event_type, "ShipmentDelivered");
        assert_eq!(
            stored.payload,
            serde_json::json!({ "shipment_id": id, "order_id": id })
        );
    }
}
