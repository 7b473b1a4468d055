//! Two aggregates that pick one row of each group by an instant and an id, registered in every
//! session next to the business rules of `udf`:
//!
//! - `first_by(value, ts, id)`: the `value` of the group's row with the smallest `(ts, id)`, the
//!   same as `first_value(value ORDER BY ts, id)`;
//! - `last_by(value, ts, id)`: the `value` of the row with the largest `(ts, id)`, the same as
//!   `first_value(value ORDER BY ts DESC, id DESC)`.
//!
//! `ts` is a BIGINT (an instant in nanoseconds: `CAST(t AS BIGINT)`), `id` a VARCHAR, `value` a
//! VARCHAR or a BIGINT. A null `ts` or `id` sorts after every value, as in DataFusion's
//! `ORDER BY` (ascending nulls last, descending nulls first). Rows equal in `(ts, id)` are
//! decided by the value (the smaller for `first_by`, the larger for `last_by`), so the pick never
//! depends on the order rows arrive in.
//!
//! Why not `first_value(… ORDER BY …)`: DataFusion 55 keeps each group's ordering as a vector of
//! `ScalarValue`s, an allocation per group and per better row. With 13 million groups (the
//! referral signups of a 10M-customer network) that aggregate took 19.5 s where a `COUNT` over
//! the same groups took 3.1 s. These keep plain vectors per group, like `MIN` and `MAX`.

use std::cmp::Ordering;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, BooleanBufferBuilder, Int64Array, StringArray,
};
use arrow::datatypes::{DataType, Field, FieldRef, Int64Type};
use datafusion::common::{internal_err, ScalarValue};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, EmitTo, GroupsAccumulator, Signature,
    TypeSignature, Volatility,
};
use datafusion::prelude::SessionContext;

/// Register `first_by` and `last_by`.
pub fn register(ctx: &SessionContext) {
    for last in [false, true] {
        ctx.register_udaf(AggregateUDF::from(PickBy::new(last)));
    }
}

/// `first_by` (`last` false) or `last_by` (`last` true).
#[derive(Debug, PartialEq, Eq, Hash)]
struct PickBy {
    last: bool,
    signature: Signature,
}

impl PickBy {
    fn new(last: bool) -> Self {
        let variants = [DataType::Utf8, DataType::Int64]
            .into_iter()
            .map(|value| TypeSignature::Exact(vec![value, DataType::Int64, DataType::Utf8]))
            .collect();
        Self {
            last,
            signature: Signature::one_of(variants, Volatility::Immutable),
        }
    }
}

impl AggregateUDFImpl for PickBy {
    fn name(&self) -> &str {
        if self.last {
            "last_by"
        } else {
            "first_by"
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(arg_types[0].clone())
    }

    fn accumulator(&self, args: AccumulatorArgs) -> DfResult<Box<dyn Accumulator>> {
        let picks = Picks::new(self.last, args.return_field.data_type())?;
        Ok(Box::new(OneGroup(picks)))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> DfResult<Vec<FieldRef>> {
        let field = |part: &str, data_type: DataType| {
            Arc::new(Field::new(
                format_state_name(args.name, part),
                data_type,
                true,
            ))
        };
        Ok(vec![
            field("value", args.return_type().clone()),
            field("ts", DataType::Int64),
            field("id", DataType::Utf8),
            field("set", DataType::Boolean),
        ])
    }

    fn groups_accumulator_supported(&self, _args: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs,
    ) -> DfResult<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(Picks::new(
            self.last,
            args.return_field.data_type(),
        )?))
    }
}

/// Nulls after every value (DataFusion's ascending `NULLS LAST`, descending `NULLS FIRST`).
fn nulls_greatest<T: Ord + ?Sized>(a: Option<&T>, b: Option<&T>) -> Ordering {
    match (a, b) {
        (Some(a), Some(b)) => a.cmp(b),
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
    }
}

/// The picked values of every group.
#[derive(Clone, Debug)]
enum Values {
    Text(Vec<Option<String>>),
    Int(Vec<Option<i64>>),
}

/// One row's value, borrowed from its batch.
#[derive(Clone, Copy)]
enum Value<'a> {
    Text(Option<&'a str>),
    Int(Option<i64>),
}

/// The value column of a batch.
enum Column<'a> {
    Text(&'a StringArray),
    Int(&'a Int64Array),
}

impl<'a> Column<'a> {
    fn of(array: &'a ArrayRef) -> DfResult<Self> {
        Ok(match array.data_type() {
            DataType::Utf8 => Column::Text(array.as_string::<i32>()),
            DataType::Int64 => Column::Int(array.as_primitive::<Int64Type>()),
            other => return internal_err!("first_by/last_by: a value of type {other}"),
        })
    }

    fn get(&self, row: usize) -> Value<'a> {
        match self {
            Column::Text(a) => Value::Text(a.is_valid(row).then(|| a.value(row))),
            Column::Int(a) => Value::Int(a.is_valid(row).then(|| a.value(row))),
        }
    }
}

/// Each group's picked row: its `(ts, id)` and value, and whether it has one.
#[derive(Clone, Debug)]
struct Picks {
    last: bool,
    ts: Vec<Option<i64>>,
    ids: Vec<Option<String>>,
    values: Values,
    set: Vec<bool>,
    /// Bytes the strings of `ids` and `values` hold.
    heap: usize,
}

impl Picks {
    fn new(last: bool, data_type: &DataType) -> DfResult<Self> {
        let values = match data_type {
            DataType::Utf8 => Values::Text(Vec::new()),
            DataType::Int64 => Values::Int(Vec::new()),
            other => return internal_err!("first_by/last_by: a value of type {other}"),
        };
        Ok(Self {
            last,
            ts: Vec::new(),
            ids: Vec::new(),
            values,
            set: Vec::new(),
            heap: 0,
        })
    }

    fn resize(&mut self, groups: usize) {
        if self.set.len() < groups {
            self.ts.resize(groups, None);
            self.ids.resize(groups, None);
            self.set.resize(groups, false);
            match &mut self.values {
                Values::Text(v) => v.resize(groups, None),
                Values::Int(v) => v.resize(groups, None),
            }
        }
    }

    /// Offer a row to group `g`: it becomes the pick when it comes first (`first_by`) or last
    /// (`last_by`) in `(ts, id, value)` order.
    fn offer(&mut self, g: usize, ts: Option<i64>, id: Option<&str>, value: Value) {
        if self.set[g] {
            let order = nulls_greatest(ts.as_ref(), self.ts[g].as_ref())
                .then_with(|| nulls_greatest(id, self.ids[g].as_deref()))
                .then_with(|| match (&self.values, value) {
                    (Values::Text(v), Value::Text(x)) => nulls_greatest(x, v[g].as_deref()),
                    (Values::Int(v), Value::Int(x)) => nulls_greatest(x.as_ref(), v[g].as_ref()),
                    _ => Ordering::Equal,
                });
            let wanted = if self.last {
                Ordering::Greater
            } else {
                Ordering::Less
            };
            if order != wanted {
                return;
            }
        }
        self.set[g] = true;
        self.ts[g] = ts;
        let old = self.ids[g].as_ref().map_or(0, String::len);
        self.heap = self.heap - old + id.map_or(0, str::len);
        self.ids[g] = id.map(str::to_owned);
        match (&mut self.values, value) {
            (Values::Text(v), Value::Text(x)) => {
                let old = v[g].as_ref().map_or(0, String::len);
                self.heap = self.heap - old + x.map_or(0, str::len);
                v[g] = x.map(str::to_owned);
            }
            (Values::Int(v), Value::Int(x)) => v[g] = x,
            _ => {}
        }
    }

    /// Offer every row of `(value, ts, id)` columns whose `keep` is true.
    fn offer_rows(
        &mut self,
        columns: &[ArrayRef],
        groups: &[usize],
        keep: impl Fn(usize) -> bool,
    ) -> DfResult<()> {
        let [value, ts, id, ..] = columns else {
            return internal_err!("first_by/last_by takes a value, an instant and an id");
        };
        let value = Column::of(value)?;
        let ts = ts.as_primitive::<Int64Type>();
        let id = id.as_string::<i32>();
        for (row, &g) in groups.iter().enumerate() {
            if keep(row) {
                let t = ts.is_valid(row).then(|| ts.value(row));
                let i = id.is_valid(row).then(|| id.value(row));
                self.offer(g, t, i, value.get(row));
            }
        }
        Ok(())
    }

    /// Take the groups `emit_to` names out (the rest move to the front).
    fn take(&mut self, emit_to: EmitTo) -> Picks {
        let ts = emit_to.take_needed(&mut self.ts);
        let ids = emit_to.take_needed(&mut self.ids);
        let set = emit_to.take_needed(&mut self.set);
        let values = match &mut self.values {
            Values::Text(v) => Values::Text(emit_to.take_needed(v)),
            Values::Int(v) => Values::Int(emit_to.take_needed(v)),
        };
        let strings = |v: &[Option<String>]| v.iter().flatten().map(String::len).sum::<usize>();
        let heap = strings(&ids)
            + match &values {
                Values::Text(v) => strings(v),
                Values::Int(_) => 0,
            };
        self.heap -= heap;
        Picks {
            last: self.last,
            ts,
            ids,
            values,
            set,
            heap,
        }
    }

    /// The picked values (null for a group without a row).
    fn value_array(&self) -> ArrayRef {
        match &self.values {
            Values::Text(v) => Arc::new(StringArray::from_iter(
                v.iter()
                    .zip(&self.set)
                    .map(|(x, &set)| x.as_deref().filter(|_| set)),
            )),
            Values::Int(v) => Arc::new(Int64Array::from_iter(
                v.iter().zip(&self.set).map(|(x, &set)| x.filter(|_| set)),
            )),
        }
    }

    /// The state columns: value, ts, id, set.
    fn state_arrays(&self) -> Vec<ArrayRef> {
        vec![
            self.value_array(),
            Arc::new(Int64Array::from(self.ts.clone())),
            Arc::new(StringArray::from_iter(
                self.ids.iter().map(|x| x.as_deref()),
            )),
            Arc::new(BooleanArray::from(self.set.clone())),
        ]
    }

    fn bytes(&self) -> usize {
        let values = match &self.values {
            Values::Text(v) => v.capacity() * std::mem::size_of::<Option<String>>(),
            Values::Int(v) => v.capacity() * std::mem::size_of::<Option<i64>>(),
        };
        std::mem::size_of::<Self>()
            + self.ts.capacity() * std::mem::size_of::<Option<i64>>()
            + self.ids.capacity() * std::mem::size_of::<Option<String>>()
            + self.set.capacity()
            + values
            + self.heap
    }
}

impl GroupsAccumulator for Picks {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> DfResult<()> {
        self.resize(total_num_groups);
        self.offer_rows(values, group_indices, |row| {
            opt_filter.is_none_or(|f| f.is_valid(row) && f.value(row))
        })
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> DfResult<ArrayRef> {
        Ok(self.take(emit_to).value_array())
    }

    fn state(&mut self, emit_to: EmitTo) -> DfResult<Vec<ArrayRef>> {
        Ok(self.take(emit_to).state_arrays())
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> DfResult<()> {
        self.resize(total_num_groups);
        let Some(set) = values.get(3) else {
            return internal_err!("first_by/last_by: a state without its `set` column");
        };
        let set = set.as_boolean();
        self.offer_rows(values, group_indices, |row| {
            set.is_valid(row) && set.value(row)
        })
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> DfResult<Vec<ArrayRef>> {
        let rows = values.first().map_or(0, |v| v.len());
        let mut set = BooleanBufferBuilder::new(rows);
        for row in 0..rows {
            set.append(opt_filter.is_none_or(|f| f.is_valid(row) && f.value(row)));
        }
        let mut state = values[..3].to_vec();
        state.push(Arc::new(BooleanArray::new(set.finish(), None)));
        Ok(state)
    }

    fn size(&self) -> usize {
        self.bytes()
    }
}

/// The aggregate over one group (no `GROUP BY`).
#[derive(Debug)]
struct OneGroup(Picks);

impl Accumulator for OneGroup {
    fn update_batch(&mut self, values: &[ArrayRef]) -> DfResult<()> {
        let rows = values.first().map_or(0, |v| v.len());
        GroupsAccumulator::update_batch(&mut self.0, values, &vec![0; rows], None, 1)
    }

    fn evaluate(&mut self) -> DfResult<ScalarValue> {
        self.0.resize(1);
        ScalarValue::try_from_array(&self.0.value_array(), 0)
    }

    fn size(&self) -> usize {
        self.0.bytes()
    }

    fn state(&mut self) -> DfResult<Vec<ScalarValue>> {
        self.0.resize(1);
        self.0
            .state_arrays()
            .iter()
            .map(|a| ScalarValue::try_from_array(a, 0))
            .collect()
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> DfResult<()> {
        let rows = states.first().map_or(0, |v| v.len());
        GroupsAccumulator::merge_batch(&mut self.0, states, &vec![0; rows], 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::RecordBatch;
    use arrow::datatypes::Schema;
    use datafusion::datasource::MemTable;
    use datafusion::prelude::SessionConfig;

    /// A test row: group, value, ts, id.
    type Row = (
        &'static str,
        Option<&'static str>,
        Option<i64>,
        Option<&'static str>,
    );

    /// Rows `(group, value, ts, id)` with ties in `ts`, equal `(ts, id)` pairs with different
    /// values, and null instants, ids and values, cut into several batches and partitions.
    fn session() -> SessionContext {
        let rows: Vec<Row> = vec![
            ("a", Some("x"), Some(5), Some("e2")),
            ("a", Some("y"), Some(5), Some("e1")),
            ("a", Some("z"), Some(9), Some("e0")),
            ("b", Some("p"), None, Some("e5")),
            ("b", Some("q"), Some(1), None),
            ("b", Some("r"), Some(1), Some("e9")),
            ("c", Some("s"), Some(3), Some("e3")),
            ("c", Some("t"), Some(3), Some("e3")),
            ("c", None, Some(4), Some("e4")),
            ("d", None, None, None),
            ("e", Some("u"), Some(-7), Some("e1")),
            ("e", Some("v"), Some(7), Some("e1")),
            ("e", Some("w"), Some(7), Some("e1")),
        ];
        let schema = Arc::new(Schema::new(vec![
            Field::new("g", DataType::Utf8, false),
            Field::new("v", DataType::Utf8, true),
            Field::new("n", DataType::Int64, true),
            Field::new("ts", DataType::Int64, true),
            Field::new("id", DataType::Utf8, true),
        ]));
        let batch = |rows: &[Row]| {
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
                    Arc::new(StringArray::from_iter(rows.iter().map(|r| r.1))),
                    Arc::new(Int64Array::from_iter(
                        rows.iter()
                            .map(|r| r.1.map(|v| v.len() as i64 * 10 + r.0.len() as i64)),
                    )),
                    Arc::new(Int64Array::from_iter(rows.iter().map(|r| r.2))),
                    Arc::new(StringArray::from_iter(rows.iter().map(|r| r.3))),
                ],
            )
            .unwrap()
        };
        // Rows of one group in different partitions and batches, so that both the update and the
        // merge of states decide between them.
        let partitions = vec![
            vec![batch(&rows[0..2]), batch(&rows[3..5]), batch(&rows[9..11])],
            vec![batch(&rows[2..3]), batch(&rows[5..9]), batch(&rows[11..13])],
        ];
        let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(2));
        register(&ctx);
        let table = MemTable::try_new(schema, partitions).unwrap();
        ctx.register_table("t", Arc::new(table)).unwrap();
        ctx
    }

    async fn rows(ctx: &SessionContext, sql: &str) -> Vec<String> {
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        arrow::util::pretty::pretty_format_batches(&batches)
            .unwrap()
            .to_string()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    #[tokio::test]
    async fn first_by_and_last_by_pick_what_first_value_picks() {
        let ctx = session();
        let picked = rows(
            &ctx,
            "SELECT g, first_by(v, ts, id) AS first, last_by(v, ts, id) AS last
             FROM t GROUP BY g ORDER BY g",
        )
        .await;
        // By hand: a's smallest (ts, id) is (5, e1) → y and its largest (9, e0) → z; b's null ts
        // and null id sort last; c ties first at (3, e3) between s and t: the smaller value
        // comes first, and its last row (4, e4) has a null value; d has one row, all null; e
        // ties last at (7, e1) between v and w: the larger value comes last.
        assert_eq!(
            picked[3..8],
            [
                "| a | y     | z    |",
                "| b | r     | p    |",
                "| c | s     |      |",
                "| d |       |      |",
                "| e | u     | w    |",
            ]
        );
        // Where no two rows tie in (ts, id), the same as first_value (ascending nulls last,
        // descending nulls first).
        let reference = rows(
            &ctx,
            "SELECT g, first_value(v ORDER BY ts, id) AS first,
                    first_value(v ORDER BY ts DESC, id DESC) AS last
             FROM t WHERE g IN ('a', 'b', 'd') GROUP BY g ORDER BY g",
        )
        .await;
        let ours = rows(
            &ctx,
            "SELECT g, first_by(v, ts, id) AS first, last_by(v, ts, id) AS last
             FROM t WHERE g IN ('a', 'b', 'd') GROUP BY g ORDER BY g",
        )
        .await;
        assert_eq!(ours, reference);
    }

    #[tokio::test]
    async fn integer_values_and_a_whole_table_without_groups() {
        let ctx = session();
        let picked = rows(
            &ctx,
            "SELECT first_by(n, ts, id) AS first, last_by(n, ts, id) AS last,
                    first_by(v, ts, id) AS first_v, last_by(v, ts, id) AS last_v FROM t",
        )
        .await;
        // Smallest (ts, id): (-7, e1) in e → u (n = 11); largest: d's row, whose null ts and null
        // id sort after every value (b's (null, e5) comes just before it), with a null value.
        assert_eq!(picked[3], "| 11    |      | u       |        |");
        let reference = rows(
            &ctx,
            "SELECT first_value(n ORDER BY ts, id) AS first,
                    first_value(n ORDER BY ts DESC, id DESC) AS last,
                    first_value(v ORDER BY ts, id) AS first_v,
                    first_value(v ORDER BY ts DESC, id DESC) AS last_v FROM t",
        )
        .await;
        assert_eq!(picked, reference);
    }
}
