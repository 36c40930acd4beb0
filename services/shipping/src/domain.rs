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

/// `raw` with its surrounding whitespace trimmed, when it is 1 to [`MAX_TEXT_CHARS`]
/// characters as sent and not all whitespace; otherwise its length in characters.
fn trimmed_text(raw: &str) -> Result<&str, usize> {
    let s = raw.trim();
    let length = raw.chars().count();
    if s.is_empty() || length > MAX_TEXT_CHARS {
        return Err(length);
    }
    Ok(s)
}

/// The carrier that moves a shipment: 1 to 100 characters, no control characters
/// (inner spaces are fine: `DHL Express`). Surrounding whitespace is trimmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Carrier(String);

impl Carrier {
    pub fn new(raw: &str) -> Result<Self, ShipmentError> {
        match trimmed_text(raw) {
            Ok(s) if !s.chars().any(char::is_control) => Ok(Carrier(s.to_owned())),
            _ => Err(ShipmentError::InvalidCarrier(format!(
                "must be 1 to {MAX_TEXT_CHARS} printable characters, not all whitespace, got {} characters",
                raw.chars().count()
            ))),
        }
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
        let s = trimmed_text(raw).map_err(|length| {
            ShipmentError::InvalidTrackingNumber(format!(
                "must be 1 to {MAX_TEXT_CHARS} characters, got {length}"
            ))
        })?;
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
mod tests;
