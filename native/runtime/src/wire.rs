//! The boundary format: every record crosses into Python as JSON text, from one
//! `serde::Serialize` struct per record, with the field names of the Python type it decodes
//! into (`microsandbox_tui._wire`). Timestamps are milliseconds since the Unix epoch.

use serde::Serialize;

/// The JSON text of a record.
pub fn to_json(record: &impl Serialize) -> String {
    // The records are plain structs, lists and string-keyed maps: they always serialise.
    serde_json::to_string(record).expect("a record serialises to JSON")
}
