//! One cell of a row: the value of one input or output, checked against the
//! manifest's declaration of it.

use serde_json::Value as Json;

use crate::Datatype;
use crate::manifest::Feature;

/// A scalar as the format carries it: JSON made typed by the manifest.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// JSON `null`: a missing value of a nullable input.
    Null,
    Bool(bool),
    Int(i64),
    /// Unsigned integers above `i64::MAX` only; smaller ones are `Int`.
    UInt(u64),
    Float(f64),
    Text(String),
    /// A row of an output of shape `[-1, K]`: a classifier's probabilities.
    List(Vec<f64>),
}

impl Value {
    /// The value as a number, as a model sees it: `Null` is NaN, `Bool` is 0 or 1.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Null => Some(f64::NAN),
            Value::Bool(b) => Some(f64::from(u8::from(*b))),
            Value::Int(i) => Some(*i as f64),
            Value::UInt(u) => Some(*u as f64),
            Value::Float(x) => Some(*x),
            Value::Text(_) | Value::List(_) => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The value back as JSON, for requests and reports.
    pub fn to_json(&self) -> Json {
        match self {
            Value::Null => Json::Null,
            Value::Bool(b) => Json::Bool(*b),
            Value::Int(i) => Json::from(*i),
            Value::UInt(u) => Json::from(*u),
            Value::Float(x) => serde_json::Number::from_f64(*x).map_or(Json::Null, Json::Number),
            Value::Text(s) => Json::String(s.clone()),
            Value::List(values) => Json::Array(
                values
                    .iter()
                    .map(|x| serde_json::Number::from_f64(*x).map_or(Json::Null, Json::Number))
                    .collect(),
            ),
        }
    }
}

impl Feature {
    /// Reads a JSON value as this feature's datatype, without checking its
    /// domain (bounds and categories): a server accepts an unseen category.
    pub fn read(&self, json: &Json) -> Result<Value, String> {
        let width = self.width();
        if width > 1 {
            return self.read_list(json, width);
        }
        let dt = self.datatype;
        let kind = || match json {
            Json::Null => "null",
            Json::Bool(_) => "a boolean",
            Json::Number(_) => "a number",
            Json::String(_) => "a string",
            Json::Array(_) => "an array",
            Json::Object(_) => "an object",
        };
        match json {
            Json::Null if self.nullable => Ok(Value::Null),
            Json::Null => Err("is null but not nullable".to_owned()),
            Json::Bool(b) if dt == Datatype::Bool => Ok(Value::Bool(*b)),
            Json::String(s) if dt == Datatype::Bytes && s.contains('\0') => {
                Err("holds a NUL character, which a BYTES value cannot carry".to_owned())
            }
            Json::String(s) if dt == Datatype::Bytes => Ok(Value::Text(s.clone())),
            Json::Number(n) if dt.is_float() => {
                let x = n
                    .as_f64()
                    .ok_or_else(|| format!("is {n}, which is not representable as {dt}"))?;
                // Beyond the type's largest finite value it would reach the model as infinity.
                let largest = match dt {
                    Datatype::Fp16 => 65504.0,
                    Datatype::Fp32 => f64::from(f32::MAX),
                    _ => f64::MAX,
                };
                if x.abs() > largest {
                    return Err(format!("is {n}, beyond the range of finite {dt} values"));
                }
                Ok(Value::Float(x))
            }
            Json::Number(n) if dt.is_integer() => {
                let value = match (n.as_i64(), n.as_u64()) {
                    (Some(i), _) => Value::Int(i),
                    (None, Some(u)) => Value::UInt(u),
                    // A whole number beyond 64 bits reaches here as a float,
                    // rounded: i64::MIN - 1 reads as i64::MIN.
                    _ => match n.as_f64() {
                        Some(x)
                            if x.fract() == 0.0
                                && (x <= i64::MIN as f64 || x >= u64::MAX as f64) =>
                        {
                            return Err(format!("is {n}, which does not fit in {dt}"));
                        }
                        _ => return Err(format!("is {n}, not an integer ({dt})")),
                    },
                };
                let (lo, hi) = dt.integer_range().unwrap_or((f64::MIN, f64::MAX));
                let x = value.as_f64().unwrap_or(f64::NAN);
                if x < lo || x > hi {
                    return Err(format!("is {n}, which does not fit in {dt}"));
                }
                Ok(value)
            }
            _ => Err(format!("is {}, but the datatype is {dt}", kind())),
        }
    }

    /// A row of K values, each of the datatype, as a list.
    fn read_list(&self, json: &Json, width: usize) -> Result<Value, String> {
        let Json::Array(items) = json else {
            return Err(format!(
                "is not a list of {width} values (shape [-1, {width}])"
            ));
        };
        if items.len() != width {
            return Err(format!(
                "holds {} values, not {width} (shape [-1, {width}])",
                items.len()
            ));
        }
        let one = Feature {
            shape: None,
            nullable: false,
            ..self.clone()
        };
        items
            .iter()
            .enumerate()
            .map(|(k, item)| {
                one.read(item)
                    .map(|v| v.as_f64().unwrap_or(f64::NAN))
                    .map_err(|m| format!("[{k}] {m}"))
            })
            .collect::<Result<Vec<f64>, String>>()
            .map(Value::List)
    }

    /// Checks a value against the declared bounds and categories.
    pub fn check_domain(&self, value: &Value) -> Result<(), String> {
        if let Value::List(values) = value {
            return values.iter().enumerate().try_for_each(|(k, x)| {
                self.check_domain(&Value::Float(*x))
                    .map_err(|m| format!("[{k}] {m}"))
            });
        }
        if let (Some(categories), Some(text)) = (&self.categories, value.as_str())
            && !categories.iter().any(|c| c == text)
        {
            return Err(format!(
                "'{text}' is not one of the categories {categories:?}"
            ));
        }
        if value.is_null() {
            return Ok(());
        }
        if let Some(x) = value.as_f64() {
            if let Some(min) = self.min.filter(|&min| x < min) {
                return Err(format!("{x} is below min {min}"));
            }
            if let Some(max) = self.max.filter(|&max| x > max) {
                return Err(format!("{x} is above max {max}"));
            }
        }
        Ok(())
    }
}
