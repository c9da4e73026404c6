//! A request tensor's `data`, flattened as it is read.
//!
//! Read into a generic JSON tree, a nested `[[v], [v], ...]` costs about a
//! hundred bytes a value: a list per row, and a 32-byte node per value. Read
//! here, each value is one [`Scalar`] of 24 bytes in one flat list, and how
//! the rows were nested is remembered for the shape check, so a request's
//! memory stays within a small multiple of its body.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde_json::Value as Json;

/// The scalar methods of a visitor whose value wraps a [`Scalar`] with `$wrap`.
macro_rules! scalars {
    ($wrap:expr) => {
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(($wrap)(Scalar::Null))
        }

        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
            Ok(($wrap)(Scalar::Bool(v)))
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(($wrap)(Scalar::Int(v)))
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(($wrap)(match i64::try_from(v) {
                Ok(i) => Scalar::Int(i),
                Err(_) => Scalar::UInt(v),
            }))
        }

        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            Ok(($wrap)(Scalar::Float(v)))
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(($wrap)(Scalar::Text(v.into())))
        }
    };
}

/// One value of a tensor, as JSON wrote it.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Text(Box<str>),
    /// An object, which no datatype takes: kept only to say so.
    Object,
}

impl Scalar {
    /// The value as JSON, for the manifest's checks.
    pub fn to_json(&self) -> Json {
        match self {
            Scalar::Null => Json::Null,
            Scalar::Bool(b) => Json::Bool(*b),
            Scalar::Int(i) => Json::from(*i),
            Scalar::UInt(u) => Json::from(*u),
            Scalar::Float(x) => serde_json::Number::from_f64(*x).map_or(Json::Null, Json::Number),
            Scalar::Text(s) => Json::String(s.to_string()),
            Scalar::Object => Json::Object(serde_json::Map::new()),
        }
    }
}

/// How the rows of `data` were written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Nesting {
    /// `[v, v, ...]`.
    Flat,
    /// `[[v], [v], ...]`: one list of one value per row.
    Rows,
    /// Neither: what row `row` held instead.
    Bad { row: usize, found: &'static str },
}

/// A tensor's `data`: its values in row order, and how they were nested.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestData {
    pub values: Vec<Scalar>,
    pub nesting: Nesting,
}

impl<'de> Deserialize<'de> for RequestData {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(DataVisitor)
    }
}

struct DataVisitor;

impl<'de> Visitor<'de> for DataVisitor {
    type Value = RequestData;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("data: a list of values, flat or one list per row")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RequestData, A::Error> {
        let mut values = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 16));
        let mut nesting = None;
        let mut row = 0;
        while let Some(item) = seq.next_element::<Item>()? {
            let form = match item {
                Item::Value(value) => {
                    values.push(value);
                    Nesting::Flat
                }
                Item::Row(Some(value)) => {
                    values.push(value);
                    Nesting::Rows
                }
                Item::Row(None) => Nesting::Bad {
                    row,
                    found: "a list that is not of one value",
                },
            };
            nesting = match nesting {
                None => Some(form),
                Some(bad @ Nesting::Bad { .. }) => Some(bad),
                Some(first) if form == first => Some(first),
                Some(_) if matches!(form, Nesting::Bad { .. }) => Some(form),
                Some(Nesting::Flat) => Some(Nesting::Bad {
                    row,
                    found: "a list among single values",
                }),
                Some(_) => Some(Nesting::Bad {
                    row,
                    found: "a single value among lists of one",
                }),
            };
            row += 1;
        }
        Ok(RequestData {
            values,
            nesting: nesting.unwrap_or(Nesting::Flat),
        })
    }
}

/// One element of `data`: a value, or a row's list.
enum Item {
    Value(Scalar),
    /// A list: its one value, or `None` when it held another count or a list.
    Row(Option<Scalar>),
}

impl<'de> Deserialize<'de> for Item {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ItemVisitor)
    }
}

struct ItemVisitor;

impl<'de> Visitor<'de> for ItemVisitor {
    type Value = Item;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a value, or a list of one value")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Item, A::Error> {
        let first = seq.next_element::<Inner>()?;
        let mut more = false;
        while seq.next_element::<IgnoredAny>()?.is_some() {
            more = true;
        }
        Ok(Item::Row(match (first, more) {
            (Some(Inner(Some(value))), false) => Some(value),
            _ => None,
        }))
    }

    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Item, A::Error> {
        ScalarVisitor.visit_map(map).map(Item::Value)
    }

    scalars!(Item::Value);
}

/// A value inside a row's list: `None` for a deeper list.
struct Inner(Option<Scalar>);

impl<'de> Deserialize<'de> for Inner {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(InnerVisitor)
    }
}

struct InnerVisitor;

impl<'de> Visitor<'de> for InnerVisitor {
    type Value = Inner;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a value")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Inner, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Inner(None))
    }

    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Inner, A::Error> {
        ScalarVisitor.visit_map(map).map(|s| Inner(Some(s)))
    }

    scalars!(|s| Inner(Some(s)));
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a value")
    }

    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Scalar, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Scalar::Object)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> RequestData {
        serde_json::from_str(text).expect("data")
    }

    #[test]
    fn flat_and_row_nested_data_read_the_same_values() {
        let flat = read(r#"[1, 2.5, "car", null, true, 18446744073709551615]"#);
        assert_eq!(flat.nesting, Nesting::Flat);
        let rows = read(r#"[[1], [2.5], ["car"], [null], [true], [18446744073709551615]]"#);
        assert_eq!(rows.nesting, Nesting::Rows);
        assert_eq!(flat.values, rows.values);
        assert_eq!(
            flat.values,
            [
                Scalar::Int(1),
                Scalar::Float(2.5),
                Scalar::Text("car".into()),
                Scalar::Null,
                Scalar::Bool(true),
                Scalar::UInt(u64::MAX),
            ]
        );
    }

    #[test]
    fn other_nesting_names_the_first_row_at_fault() {
        for (text, row, found) in [
            ("[[[13]], [[13]]]", 0, "a list that is not of one value"),
            ("[[13], 13]", 1, "a single value among lists of one"),
            ("[13, [13]]", 1, "a list among single values"),
            ("[[1, 2], [3]]", 0, "a list that is not of one value"),
            ("[[1], []]", 1, "a list that is not of one value"),
        ] {
            assert_eq!(read(text).nesting, Nesting::Bad { row, found }, "{text}");
        }
    }

    #[test]
    fn an_object_is_a_value_no_datatype_takes() {
        assert_eq!(read(r#"[{"a": [1]}]"#).values, [Scalar::Object]);
        assert_eq!(Scalar::Object.to_json(), serde_json::json!({}));
    }

    #[test]
    fn data_that_is_not_a_list_is_refused_with_what_was_expected() {
        let error = serde_json::from_str::<RequestData>("13").expect_err("not a list");
        assert!(error.to_string().contains("a list of values"), "{error}");
    }
}
