//! From a window's result to the output record: the value is a JSON object
//! with the statement's columns in select-list order (group keys by name,
//! window start and end in epoch ms, each aggregate by its name); the key is
//! the group key (a JSON array of the key columns), so that every result of
//! one group lands in one output partition, in order. The record timestamp
//! is the time of writing (results of replayed history must not fall under
//! the output's time retention at once).

use serde_json::Value;

use super::plan::{JobPlan, OutputColumn};
use super::window::WindowResult;

/// The key and value bytes of the output record of `r` under `plan`.
pub fn record(plan: &JobPlan, r: &WindowResult) -> (Vec<u8>, Vec<u8>) {
    let keys = r.key.values();
    // Written by hand: a JSON map would sort the fields.
    let mut text = String::from("{");
    for c in &plan.columns {
        let (name, v) = match c {
            OutputColumn::Key { index, name } => {
                (name, keys.get(*index).cloned().unwrap_or(Value::Null))
            }
            OutputColumn::WindowStart { name } => (name, Value::from(r.start_ms)),
            OutputColumn::WindowEnd { name } => (name, Value::from(r.end_ms)),
            OutputColumn::Aggregate { index, name } => {
                (name, r.values.get(*index).cloned().unwrap_or(Value::Null))
            }
        };
        if text.len() > 1 {
            text.push(',');
        }
        text.push_str(&Value::String(name.clone()).to_string());
        text.push(':');
        text.push_str(&v.to_string());
    }
    text.push('}');
    (r.key.0.clone().into_bytes(), text.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::plan::{seed_plan, TimeSource};
    use crate::stream::window::GroupKey;
    use serde_json::json;

    /// Columns come out in select-list order, under their names.
    #[test]
    fn the_output_record_follows_the_select_list() {
        let columns = vec![
            OutputColumn::Key {
                index: 0,
                name: "customerId".into(),
            },
            OutputColumn::WindowStart {
                name: "window_start".into(),
            },
            OutputColumn::Aggregate {
                index: 0,
                name: "total".into(),
            },
            OutputColumn::Aggregate {
                index: 1,
                name: "n".into(),
            },
            OutputColumn::WindowEnd {
                name: "until".into(),
            },
        ];
        let plan = seed_plan(None, TimeSource::Field("ts".into()), columns);
        let r = WindowResult {
            key: GroupKey::of(&[json!(17)]),
            start_ms: 30_000,
            end_ms: 60_000,
            values: vec![json!(25.5), json!(3)],
            is_final: true,
        };
        let (k, v) = record(&plan, &r);
        assert_eq!(k, b"[17]");
        assert_eq!(
            String::from_utf8(v).unwrap(),
            r#"{"customerId":17,"window_start":30000,"total":25.5,"n":3,"until":60000}"#
        );
    }
}
