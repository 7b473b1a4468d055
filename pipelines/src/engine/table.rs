//! A materialised table: its schema and its record batches, in the order the query produced them.

use std::sync::Arc;

use arrow::array::{Array, RecordBatch};
use arrow::datatypes::SchemaRef;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;

use crate::error::Result;

#[derive(Clone, Debug)]
pub struct Table {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

impl Table {
    pub fn rows(&self) -> u64 {
        self.batches.iter().map(|b| b.num_rows() as u64).sum()
    }

    /// Nulls in `column` (0 when the table has no such column).
    pub fn null_count(&self, column: &str) -> usize {
        let Ok(idx) = self.schema.index_of(column) else {
            return 0;
        };
        self.batches
            .iter()
            .map(|b| b.column(idx).null_count())
            .sum()
    }

    /// Register the table in `ctx` under `name`, replacing a table of that name.
    pub fn register(&self, ctx: &SessionContext, name: &str) -> Result<()> {
        ctx.deregister_table(name)?;
        ctx.register_table(
            name,
            Arc::new(MemTable::try_new(
                self.schema.clone(),
                vec![self.batches.clone()],
            )?),
        )?;
        Ok(())
    }
}
