//! The sink's positions: `sluice_positions` in the warehouse, written by the loader
//! in each batch's transaction and read by the reader when it assigns partitions
//! (the shared [`assign_at_stored`](sluice_platform::broker::assign_at_stored)).

use std::future::Future;
use std::sync::Arc;

use duckdb::Connection;
use sluice_platform::broker::{Offsets, PositionStore};

use super::SinkError;
use crate::warehouse::Warehouse;

/// The warehouse as the store of the sink's positions, read on a connection of its
/// own.
pub(crate) struct WarehousePositions(pub Arc<Warehouse>);

impl PositionStore for WarehousePositions {
    type Error = SinkError;

    fn stored_offsets(&self) -> impl Future<Output = Result<Offsets, SinkError>> + Send {
        let warehouse = self.0.clone();
        async move {
            // DuckDB's calls block: on a blocking thread.
            tokio::task::spawn_blocking(move || stored_offsets(&warehouse.connect()?))
                .await
                .map_err(|e| SinkError::LoaderThread(format!("positions task: {e}")))?
        }
    }
}

/// The stored next offset of every partition the sink has loaded from.
pub(crate) fn stored_offsets(conn: &Connection) -> Result<Offsets, SinkError> {
    let mut statement =
        conn.prepare("SELECT topic, partition, next_offset FROM sluice_positions")?;
    let rows = statement.query_map([], |r| Ok(((r.get(0)?, r.get(1)?), r.get(2)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}
