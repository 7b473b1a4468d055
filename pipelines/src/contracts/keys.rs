//! Key checks over whole columns: which values occur more than once (unique keys of inputs and
//! outputs) and which values a referenced table holds (foreign keys). Done in Rust because a SQL
//! self-join on the key repartitions every column of a multi-million-row input only to find the
//! handful of duplicates; here the work is one 8-byte hash per value, sorted, then exact counts of
//! the few values whose hash repeats.

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringArray};
use arrow::datatypes::DataType;
use foldhash::fast::FixedState;

use crate::error::{FlywheelError, Result};

/// A fixed seed: the sets are never iterated for output, but fixed is easier to reason about.
fn hasher() -> FixedState {
    FixedState::with_seed(0x666c_7977_6865_656c)
}

pub type KeySet<'a> = HashSet<&'a str, FixedState>;

/// A set of owned values (e.g. the duplicated keys of an input).
pub type ValueSet = HashSet<String, FixedState>;

/// The column `name` of every batch as text (a no-op for string columns).
pub fn text_column(batches: &[RecordBatch], name: &str) -> Result<Vec<StringArray>> {
    batches
        .iter()
        .map(|b| {
            let c: &ArrayRef = b
                .column_by_name(name)
                .ok_or_else(|| FlywheelError::internal(format!("no column {name}")))?;
            let text = arrow::compute::cast(c, &DataType::Utf8)?;
            Ok(text.as_string::<i32>().clone())
        })
        .collect()
}

/// The values that occur more than once in `columns` (nulls are not values): the two passes of
/// [`KeyHashes`] and [`RepeatedValues`] over columns already in memory.
pub fn duplicated(columns: &[StringArray]) -> ValueSet {
    let mut hashes = KeyHashes::default();
    columns.iter().for_each(|c| hashes.add(c));
    let mut values = RepeatedValues::new(hashes.repeated());
    if !values.is_empty() {
        columns.iter().for_each(|c| values.add(c));
    }
    values.duplicated()
}

/// The 64-bit hashes of every value of a key column streamed batch by batch (8 bytes a row,
/// never the values themselves): the first pass of finding duplicated keys in an input that is
/// not held in memory.
#[derive(Default)]
pub struct KeyHashes(Vec<u64>);

impl KeyHashes {
    pub fn add(&mut self, column: &StringArray) {
        let state = hasher();
        self.0
            .extend(column.iter().flatten().map(|v| state.hash_one(v)));
    }

    /// The hashes seen more than once: the duplicated values' and rare collisions'.
    pub fn repeated(mut self) -> HashSet<u64, FixedState> {
        self.0.sort_unstable();
        self.0
            .windows(2)
            .filter(|w| w[0] == w[1])
            .map(|w| w[0])
            .collect()
    }
}

/// The second pass: exact counts of the values whose hash was seen more than once.
pub struct RepeatedValues {
    hashes: HashSet<u64, FixedState>,
    counts: HashMap<String, u32, FixedState>,
}

impl RepeatedValues {
    pub fn new(hashes: HashSet<u64, FixedState>) -> Self {
        RepeatedValues {
            hashes,
            counts: HashMap::with_hasher(hasher()),
        }
    }

    /// Nothing to count: no hash was seen twice, so no value is duplicated.
    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    pub fn add(&mut self, column: &StringArray) {
        let state = hasher();
        for v in column.iter().flatten() {
            if self.hashes.contains(&state.hash_one(v)) {
                *self.counts.entry(v.to_string()).or_default() += 1;
            }
        }
    }

    /// The values that occur more than once.
    pub fn duplicated(self) -> ValueSet {
        self.counts
            .into_iter()
            .filter(|(_, n)| *n > 1)
            .map(|(v, _)| v)
            .collect()
    }
}

/// Every value of `columns`, as a set.
pub fn key_set(columns: &[StringArray]) -> KeySet<'_> {
    let rows: usize = columns.iter().map(|c| c.len() - c.null_count()).sum();
    let mut set = KeySet::with_capacity_and_hasher(rows, hasher());
    for c in columns {
        set.extend(c.iter().flatten());
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_found_across_batches_and_nulls_are_not_values() {
        let a = StringArray::from(vec![Some("a"), Some("b"), None, Some("c")]);
        let b = StringArray::from(vec![Some("c"), None, Some("d"), Some("a"), Some("a")]);
        let columns = [a.clone(), b.clone()];
        let mut found: Vec<String> = duplicated(&columns).into_iter().collect();
        found.sort();
        assert_eq!(found, vec!["a", "c"]);
        let unique = [StringArray::from(vec!["x", "y", "z"])];
        assert!(duplicated(&unique).is_empty());
        let columns = [a];
        let keys = key_set(&columns);
        assert!(keys.contains("b") && !keys.contains("d") && keys.len() == 3);
    }

    #[test]
    fn streamed_passes_find_the_same_duplicates() {
        let a = StringArray::from(vec![Some("a"), Some("b"), None, Some("c")]);
        let b = StringArray::from(vec![Some("c"), None, Some("d"), Some("a"), Some("a")]);
        let mut hashes = KeyHashes::default();
        hashes.add(&a);
        hashes.add(&b);
        let mut values = RepeatedValues::new(hashes.repeated());
        assert!(!values.is_empty());
        values.add(&a);
        values.add(&b);
        let mut found: Vec<String> = values.duplicated().into_iter().collect();
        found.sort();
        assert_eq!(found, vec!["a", "c"]);
        let mut unique = KeyHashes::default();
        unique.add(&StringArray::from(vec!["x", "y", "z"]));
        assert!(RepeatedValues::new(unique.repeated()).is_empty());
    }
}
