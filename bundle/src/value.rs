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

/// Why a JSON value cannot be read as a feature's datatype
/// (`Feature::read`). Its text continues the feature's name: "'distance_km'
/// is null but not nullable".
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReadError {
    #[error("is null but not nullable")]
    Null,
    #[error("holds a NUL character, which a BYTES value cannot carry")]
    Nul,
    /// A number beyond `f64`, as JSON allows.
    #[error("is {number}, which is not representable as {datatype}")]
    Unrepresentable {
        number: serde_json::Number,
        datatype: Datatype,
    },
    /// A float beyond the datatype's largest finite value: the model would
    /// read infinity.
    #[error("is {number}, beyond the range of finite {datatype} values")]
    NotFinite {
        number: serde_json::Number,
        datatype: Datatype,
    },
    #[error("is {number}, which does not fit in {datatype}")]
    DoesNotFit {
        number: serde_json::Number,
        datatype: Datatype,
    },
    #[error("is {number}, not an integer ({datatype})")]
    NotInteger {
        number: serde_json::Number,
        datatype: Datatype,
    },
    /// Another JSON kind than the datatype's: `kind` is "a string", "an
    /// array" and the like.
    #[error("is {kind}, but the datatype is {datatype}")]
    WrongKind {
        kind: &'static str,
        datatype: Datatype,
    },
    /// A row of a `[-1, K]` feature that is not a list.
    #[error("is not a list of {width} values (shape [-1, {width}])")]
    NotAList { width: usize },
    #[error("holds {len} values, not {width} (shape [-1, {width}])")]
    WrongWidth { len: usize, width: usize },
    /// The `index`-th value of a row of a `[-1, K]` feature.
    #[error("[{index}] {error}")]
    Item { index: usize, error: Box<ReadError> },
}

/// Why a value is outside a feature's declared domain
/// (`Feature::check_domain`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DomainError {
    #[error("'{text}' is not one of the categories {categories:?}")]
    NotACategory {
        text: String,
        categories: Vec<String>,
    },
    #[error("{value} is below min {min}")]
    BelowMin { value: f64, min: f64 },
    #[error("{value} is above max {max}")]
    AboveMax { value: f64, max: f64 },
    /// The `index`-th value of a row of a `[-1, K]` feature.
    #[error("[{index}] {error}")]
    Item {
        index: usize,
        error: Box<DomainError>,
    },
}

impl Feature {
    /// Reads a JSON value as this feature's datatype, without checking its
    /// domain (bounds and categories): a server accepts an unseen category.
    pub fn read(&self, json: &Json) -> Result<Value, ReadError> {
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
            Json::Null => Err(ReadError::Null),
            Json::Bool(b) if dt == Datatype::Bool => Ok(Value::Bool(*b)),
            Json::String(s) if dt == Datatype::Bytes && s.contains('\0') => Err(ReadError::Nul),
            Json::String(s) if dt == Datatype::Bytes => Ok(Value::Text(s.clone())),
            Json::Number(n) if dt.is_float() => {
                let x = n.as_f64().ok_or_else(|| ReadError::Unrepresentable {
                    number: n.clone(),
                    datatype: dt,
                })?;
                // Beyond the type's largest finite value it would reach the model as infinity.
                let largest = match dt {
                    Datatype::Fp16 => 65504.0,
                    Datatype::Fp32 => f64::from(f32::MAX),
                    _ => f64::MAX,
                };
                if x.abs() > largest {
                    return Err(ReadError::NotFinite {
                        number: n.clone(),
                        datatype: dt,
                    });
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
                            return Err(ReadError::DoesNotFit {
                                number: n.clone(),
                                datatype: dt,
                            });
                        }
                        _ => {
                            return Err(ReadError::NotInteger {
                                number: n.clone(),
                                datatype: dt,
                            });
                        }
                    },
                };
                let (lo, hi) = dt.integer_range().unwrap_or((f64::MIN, f64::MAX));
                let x = value.as_f64().unwrap_or(f64::NAN);
                if x < lo || x > hi {
                    return Err(ReadError::DoesNotFit {
                        number: n.clone(),
                        datatype: dt,
                    });
                }
                Ok(value)
            }
            _ => Err(ReadError::WrongKind {
                kind: kind(),
                datatype: dt,
            }),
        }
    }

    /// A row of K values, each of the datatype, as a list.
    fn read_list(&self, json: &Json, width: usize) -> Result<Value, ReadError> {
        let Json::Array(items) = json else {
            return Err(ReadError::NotAList { width });
        };
        if items.len() != width {
            return Err(ReadError::WrongWidth {
                len: items.len(),
                width,
            });
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
                    .map_err(|error| ReadError::Item {
                        index: k,
                        error: Box::new(error),
                    })
            })
            .collect::<Result<Vec<f64>, ReadError>>()
            .map(Value::List)
    }

    /// Checks a value against the declared bounds and categories.
    pub fn check_domain(&self, value: &Value) -> Result<(), DomainError> {
        if let Value::List(values) = value {
            return values.iter().enumerate().try_for_each(|(k, x)| {
                self.check_domain(&Value::Float(*x))
                    .map_err(|error| DomainError::Item {
                        index: k,
                        error: Box::new(error),
                    })
            });
        }
        if let (Some(categories), Some(text)) = (&self.categories, value.as_str())
            && !categories.iter().any(|c| c == text)
        {
            return Err(DomainError::NotACategory {
                text: text.to_owned(),
                categories: categories.clone(),
            });
        }
        if value.is_null() {
            return Ok(());
        }
        if let Some(x) = value.as_f64() {
            if let Some(min) = self.min.filter(|&min| x < min) {
                return Err(DomainError::BelowMin { value: x, min });
            }
            if let Some(max) = self.max.filter(|&max| x > max) {
                return Err(DomainError::AboveMax { value: x, max });
            }
        }
        Ok(())
    }
}
