//! Every client mistake gets a 4xx with a message that names the model, the
//! input and the row; never a 5xx, never a dropped connection.

use preflight_bundle::{Bundle, Record};
use serde_json::{Value, json};

use crate::{Server, config, fixtures};

const INFER: &str = "/v2/models/eta-madrid/versions/1/infer";

/// A valid two-row request, as JSON to edit.
fn valid() -> Value {
    let bundle = Bundle::open(&fixtures().join("models/eta-madrid/1")).expect("bundle");
    let samples = bundle.samples().expect("samples").expect("present");
    let rows: Vec<&Record> = samples.iter().take(2).collect();
    bundle.manifest().infer_request(&rows)
}

/// The request with input `name`'s field `field` set to `value`.
fn with_input(name: &str, field: &str, value: Value) -> Value {
    let mut request = valid();
    let inputs = request["inputs"].as_array_mut().expect("inputs");
    let input = inputs
        .iter_mut()
        .find(|i| i["name"] == name)
        .expect("input");
    input[field] = value;
    request
}

fn without_input(name: &str) -> Value {
    let mut request = valid();
    request["inputs"]
        .as_array_mut()
        .expect("inputs")
        .retain(|i| i["name"] != name);
    request
}

/// One request of the catalogue.
enum Request {
    /// `POST path` with a JSON body.
    Json(&'static str, Value),
    /// `POST path` with these bytes as the body.
    Raw(&'static str, Vec<u8>),
    /// A whole HTTP/1.1 request written by hand (`{addr}` is the server's).
    Hand(String),
}

const V1: &str = "/v1/models/eta-madrid:predict";
const LOAD: &str = "/v2/repository/models/eta-madrid/load";

/// The request with its top-level field `field` set to `value`.
fn with(field: &str, value: Value) -> Value {
    let mut request = valid();
    request[field] = value;
    request
}

/// The request with input `index` (in request order) replaced by `value`.
fn with_input_at(index: usize, value: Value) -> Value {
    let mut request = valid();
    request["inputs"][index] = value;
    request
}

/// The request with the first input's field `field` removed.
fn without_field(field: &str) -> Value {
    let mut request = valid();
    request["inputs"][0]
        .as_object_mut()
        .expect("input")
        .remove(field);
    request
}

/// A request head and body written by hand, with a correct length.
fn by_hand(method: &str, path: &str, headers: &str, body: &str) -> Request {
    Request::Hand(format!(
        "{method} {path} HTTP/1.1\r\nHost: {{addr}}\r\n{headers}Content-Length: {}\r\n\
        Connection: close\r\n\r\n{body}",
        body.len()
    ))
}

/// A v1 request of one instance, the first sample's, with `edit` applied.
fn v1_instance(edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Value {
    let request = valid();
    let mut instance = serde_json::Map::new();
    for input in request["inputs"].as_array().expect("inputs") {
        let name = input["name"].as_str().expect("name").to_owned();
        instance.insert(name, input["data"][0].clone());
    }
    edit(&mut instance);
    json!({"instances": [instance]})
}

/// The catalogue: every kind of client mistake the two protocols allow,
/// by family. Each must get a 4xx whose message names what is wrong.
fn catalogue() -> Vec<(String, Request)> {
    use Request::{Hand, Json, Raw};
    let mut cases: Vec<(String, Request)> = Vec::new();
    let mut add = |name: &str, request: Request| cases.push((name.to_owned(), request));

    // The body is not JSON, or not a JSON object.
    let text = valid().to_string();
    for (name, body) in [
        ("empty body", String::new()),
        ("malformed JSON", "{\"inputs\": [".to_owned()),
        ("truncated document", text[..text.len() / 2].to_owned()),
        ("trailing garbage", format!("{text} x")),
        ("two documents", format!("{text}{text}")),
        ("a comment", format!("// rows\n{text}")),
        ("single quotes", text.replace('"', "'")),
        ("JSON null", "null".to_owned()),
        ("JSON array", "[]".to_owned()),
        ("JSON string", "\"inputs\"".to_owned()),
        ("JSON number", "42".to_owned()),
        ("bare NaN token", text.replacen("8.7", "NaN", 1)),
        ("bare Infinity token", text.replacen("8.7", "Infinity", 1)),
        ("bare -Infinity token", text.replacen("8.7", "-Infinity", 1)),
        ("hexadecimal number", text.replacen("8.7", "0x8", 1)),
        (
            "number with a leading plus",
            text.replacen("8.7", "+8.7", 1),
        ),
        (
            "number too large for any type",
            text.replacen("8.7", &"9".repeat(400), 1),
        ),
        (
            // Inside a field that takes any JSON, so that the parser goes
            // down until its depth limit stops it.
            "nesting 10,000 deep",
            text.replacen(
                "{",
                &format!(
                    "{{\"parameters\": {{\"deep\": {}{}}}, ",
                    "[".repeat(10_000),
                    "]".repeat(10_000)
                ),
                1,
            ),
        ),
        (
            "INT64 below its range",
            with_input("items", "data", json!([1, "BELOW"]))
                .to_string()
                .replacen("\"BELOW\"", "-9223372036854775809", 1),
        ),
    ] {
        add(name, Raw(INFER, body.into_bytes()));
    }
    add(
        "invalid UTF-8",
        Raw(INFER, b"{\"id\": \"\xff\xfe\", \"inputs\": []}".to_vec()),
    );
    add(
        "a byte-order mark first",
        Raw(
            INFER,
            [b"\xef\xbb\xbf".as_slice(), text.as_bytes()].concat(),
        ),
    );

    // The request's fields are missing or of the wrong kind.
    add("no inputs field", Json(INFER, json!({"id": "x"})));
    add("inputs null", Json(INFER, with("inputs", Value::Null)));
    add(
        "inputs an object",
        Json(INFER, with("inputs", json!({"hour": [13]}))),
    );
    add("inputs empty", Json(INFER, with("inputs", json!([]))));
    add(
        "an input that is a number",
        Json(INFER, with_input_at(0, json!(1.5))),
    );
    add(
        "an input that is null",
        Json(INFER, with_input_at(0, Value::Null)),
    );
    add("id a number", Json(INFER, with("id", json!(7))));
    add(
        "parameters a list",
        Json(INFER, with("parameters", json!([1]))),
    );
    add(
        "outputs an object",
        Json(INFER, with("outputs", json!({"name": "eta_minutes"}))),
    );
    add(
        "an output without a name",
        Json(INFER, with("outputs", json!([{}]))),
    );
    add(
        "an output name a number",
        Json(INFER, with("outputs", json!([{"name": 1}]))),
    );
    add(
        "unknown output",
        Json(INFER, with("outputs", json!([{"name": "eta_seconds"}]))),
    );
    add(
        "an output asked twice",
        Json(
            INFER,
            with(
                "outputs",
                json!([
                    {"name": "eta_minutes"}, {"name": "eta_minutes"}, {"name": "eta_hours"}
                ]),
            ),
        ),
    );
    for field in ["name", "datatype", "shape", "data"] {
        add(
            &format!("an input without {field}"),
            Json(INFER, without_field(field)),
        );
    }
    add(
        "input name a number",
        Json(INFER, with_input("hour", "name", json!(3))),
    );
    add(
        "input name empty",
        Json(INFER, with_input("hour", "name", json!(""))),
    );
    add(
        "datatype a number",
        Json(INFER, with_input("hour", "datatype", json!(64))),
    );
    add(
        "shape a number",
        Json(INFER, with_input("hour", "shape", json!(2))),
    );
    add(
        "shape of strings",
        Json(INFER, with_input("hour", "shape", json!(["2"]))),
    );
    add(
        "shape negative",
        Json(INFER, with_input("hour", "shape", json!([-2]))),
    );
    add(
        "shape fractional",
        Json(INFER, with_input("hour", "shape", json!([2.5]))),
    );
    add(
        "shape empty",
        Json(INFER, with_input("hour", "shape", json!([]))),
    );
    add(
        "shape of another rank",
        Json(INFER, with_input("hour", "shape", json!([2, 3]))),
    );
    add(
        "shape of rank three",
        Json(INFER, with_input("hour", "shape", json!([2, 1, 1]))),
    );
    add(
        "shape overflowing",
        Json(INFER, with_input("hour", "shape", json!([i64::MAX, 2]))),
    );
    add(
        "shape and data disagree",
        Json(INFER, with_input("hour", "shape", json!([3]))),
    );
    add(
        "data a scalar",
        Json(INFER, with_input("hour", "data", json!(13))),
    );
    add(
        "data an object",
        Json(INFER, with_input("hour", "data", json!({"0": 13}))),
    );
    add(
        "data null",
        Json(INFER, with_input("hour", "data", Value::Null)),
    );
    add(
        "data nested too deep",
        Json(INFER, with_input("hour", "data", json!([[[13]], [[13]]]))),
    );
    add(
        "data nested unevenly",
        Json(INFER, with_input("hour", "data", json!([[13], 13]))),
    );
    add(
        "more values than the shape",
        Json(INFER, with_input("hour", "data", json!([13, 13, 13]))),
    );
    add(
        "fewer values than the shape",
        Json(INFER, with_input("hour", "data", json!([13]))),
    );
    add(
        "rows differ between inputs",
        Json(
            INFER,
            with_input("hour", "data", json!([13])).pipe(|mut r| {
                r["inputs"][1]["shape"] = json!([1]);
                r
            }),
        ),
    );
    add(
        "zero rows",
        Json(
            INFER,
            valid().pipe(|mut r| {
                for input in r["inputs"].as_array_mut().expect("inputs") {
                    input["shape"] = json!([0]);
                    input["data"] = json!([]);
                }
                r
            }),
        ),
    );

    // The inputs do not match the model's.
    add("missing input", Json(INFER, without_input("vehicle")));
    add(
        "every input missing but one",
        Json(
            INFER,
            valid().pipe(|mut r| {
                r["inputs"].as_array_mut().expect("inputs").truncate(1);
                r
            }),
        ),
    );
    let mut extra = valid();
    extra["inputs"]
        .as_array_mut()
        .expect("inputs")
        .push(json!({"name": "speed", "datatype": "FP32", "shape": [2], "data": [1.0, 2.0]}));
    add("unknown input", Json(INFER, extra));
    let mut misspelt = valid();
    misspelt["inputs"][1]["name"] = json!("hours");
    add("input name misspelt", Json(INFER, misspelt));
    let mut duplicated = valid();
    let first = duplicated["inputs"][0].clone();
    duplicated["inputs"]
        .as_array_mut()
        .expect("inputs")
        .push(first);
    add("input given twice", Json(INFER, duplicated));

    // Each input, with a value or datatype it cannot take.
    let manifest = Bundle::open(&fixtures().join("models/eta-madrid/1"))
        .expect("bundle")
        .manifest()
        .clone();
    for input in &manifest.inputs {
        let name = input.name.as_str();
        let wrong = if input.datatype.as_str() == "BYTES" {
            "INT64"
        } else {
            "BYTES"
        };
        add(
            &format!("{name}: datatype {wrong}"),
            Json(INFER, with_input(name, "datatype", json!(wrong))),
        );
        add(
            &format!("{name}: datatype lower-case"),
            Json(
                INFER,
                with_input(
                    name,
                    "datatype",
                    json!(input.datatype.as_str().to_lowercase()),
                ),
            ),
        );
        add(
            &format!("{name}: datatype unknown"),
            Json(INFER, with_input(name, "datatype", json!("FLOAT"))),
        );
        add(
            &format!("{name}: an object as a value"),
            Json(INFER, with_input(name, "data", json!([{}, {}]))),
        );
        add(
            &format!("{name}: a boolean as a value"),
            Json(INFER, with_input(name, "data", json!([true, false]))),
        );
        if !input.nullable {
            add(
                &format!("{name}: null, not nullable"),
                Json(INFER, with_input(name, "data", json!([null, null]))),
            );
        }
        if input.datatype.as_str() != "BYTES" {
            add(
                &format!("{name}: a number as a string"),
                Json(INFER, with_input(name, "data", json!(["1", "2"]))),
            );
        }
    }
    for (name, input, data) in [
        ("NaN as a string", "prep_time_min", json!(["NaN", 3.0])),
        (
            "Infinity as a string",
            "distance_km",
            json!([1.0, "Infinity"]),
        ),
        ("inf as a string", "distance_km", json!([1.0, "inf"])),
        (
            "FP32 beyond its largest finite value",
            "distance_km",
            json!([1.0, 1e39]),
        ),
        (
            "FP32 below its lowest finite value",
            "distance_km",
            json!([1.0, -1e39]),
        ),
        ("float in an INT64 input", "hour", json!([13, 13.5])),
        ("exponent in an INT64 input", "hour", json!([13, 1e1])),
        (
            "INT64 beyond its range",
            "items",
            json!([1, 9_223_372_036_854_775_808_u64]),
        ),
        ("number in a BYTES input", "vehicle", json!(["car", 4])),
        (
            "NUL character in a BYTES input",
            "vehicle",
            json!(["car", "ca\u{0}r"]),
        ),
        (
            "a list as a BYTES value",
            "vehicle",
            json!(["car", ["car"]]),
        ),
        (
            "null among floats, not nullable",
            "distance_km",
            json!([1.5, null]),
        ),
    ] {
        add(name, Json(INFER, with_input(input, "data", data)));
    }
    let big_rows: Vec<Value> = (0..150).map(|_| json!(1.0)).collect();
    add(
        "too many rows",
        Json(
            INFER,
            with_input("distance_km", "data", Value::Array(big_rows)).pipe(|mut r| {
                r["inputs"][0]["shape"] = json!([150]);
                r
            }),
        ),
    );

    // Parameters.
    for (name, value) in [
        ("deadline not a number", json!("soon")),
        ("deadline negative", json!(-5)),
        ("deadline fractional", json!(2.5)),
        ("deadline null", Value::Null),
        ("deadline beyond u64", json!(1e30)),
    ] {
        add(
            name,
            Json(INFER, with("parameters", json!({"deadline_ms": value}))),
        );
    }

    // Routes, versions and methods.
    add(
        "unknown model",
        Json("/v2/models/eta-atlantis/infer", valid()),
    );
    add(
        "unknown version",
        Json("/v2/models/eta-madrid/versions/7/infer", valid()),
    );
    add(
        "version not a number",
        Json("/v2/models/eta-madrid/versions/latest/infer", valid()),
    );
    add(
        "version negative",
        Json("/v2/models/eta-madrid/versions/-1/infer", valid()),
    );
    add(
        "version beyond u64",
        Json(
            "/v2/models/eta-madrid/versions/99999999999999999999/infer",
            valid(),
        ),
    );
    add(
        "model name of 4,000 characters",
        Json(
            Box::leak(format!("/v2/models/{}/infer", "m".repeat(4000)).into_boxed_str()),
            valid(),
        ),
    );
    add(
        "model name with an encoded NUL",
        Json("/v2/models/eta%00madrid/infer", valid()),
    );
    add(
        "model name with an encoded slash",
        Json("/v2/models/..%2Feta-madrid/infer", valid()),
    );
    add(
        "model name with an encoded quote and newline",
        Json("/v2/models/%22%7D%0Aup%201/infer", valid()),
    );
    add("empty model name", Json("/v2/models//infer", valid()));
    add(
        "unknown route",
        Json("/v2/models/eta-madrid/explain", valid()),
    );
    add(
        "no such API version",
        Json("/v3/models/eta-madrid/infer", valid()),
    );
    for method in ["GET", "PUT", "DELETE", "PATCH"] {
        add(
            &format!("infer with {method}"),
            by_hand(method, INFER, "", ""),
        );
    }
    add(
        "metadata with POST",
        by_hand("POST", "/v2/models/eta-madrid", "", "{}"),
    );
    add(
        "readiness of an unknown model",
        by_hand("GET", "/v2/models/eta-atlantis/ready", "", ""),
    );
    add(
        "metadata of an unknown version",
        by_hand("GET", "/v2/models/eta-madrid/versions/9", "", ""),
    );
    add(
        "metadata of a version not a number",
        by_hand("GET", "/v2/models/eta-madrid/versions/x", "", ""),
    );

    // HTTP framing and headers.
    add("body over the limit", Raw(INFER, vec![b' '; 100 * 1024]));
    add(
        "declared length over the limit",
        Hand(format!(
            "POST {INFER} HTTP/1.1\r\nHost: {{addr}}\r\nContent-Length: {}\r\n\
            Connection: close\r\n\r\n{{}}",
            1024 * 1024
        )),
    );
    add(
        "broken chunked encoding",
        Hand(format!(
            "POST {INFER} HTTP/1.1\r\nHost: {{addr}}\r\nTransfer-Encoding: chunked\r\n\
        Connection: close\r\n\r\nZZ\r\n{{}}\r\n0\r\n\r\n"
        )),
    );
    add(
        "content encoding gzip, not compressed",
        by_hand(
            "POST",
            INFER,
            "Content-Encoding: gzip\r\n",
            "{\"inputs\": 1}",
        ),
    );

    // KServe v1.
    add("v1 without instances", Json(V1, json!({"inputs": []})));
    add(
        "v1 instances not a list",
        Json(V1, json!({"instances": {"distance_km": 1.0}})),
    );
    add("v1 instances empty", Json(V1, json!({"instances": []})));
    add(
        "v1 instances not objects",
        Json(V1, json!({"instances": [[1.0, 2.0]]})),
    );
    add(
        "v1 instance missing an input",
        Json(V1, json!({"instances": [{"distance_km": 1.0}]})),
    );
    add(
        "v1 instance with an unknown input",
        Json(
            V1,
            v1_instance(|i| {
                i.insert("speed".into(), json!(3.0));
            }),
        ),
    );
    add(
        "v1 instance with a null, not nullable",
        Json(
            V1,
            v1_instance(|i| {
                i.insert("hour".into(), Value::Null);
            }),
        ),
    );
    add(
        "v1 instance with a string for a number",
        Json(
            V1,
            v1_instance(|i| {
                i.insert("hour".into(), json!("13"));
            }),
        ),
    );
    add(
        "v1 instance with a list for a value",
        Json(
            V1,
            v1_instance(|i| {
                i.insert("hour".into(), json!([13]));
            }),
        ),
    );
    add("v1 malformed JSON", Raw(V1, b"{\"instances\": [".to_vec()));
    add(
        "v1 without :predict",
        Json("/v1/models/eta-madrid", json!({"instances": []})),
    );
    add(
        "v1 with :explain",
        Json("/v1/models/eta-madrid:explain", json!({"instances": []})),
    );
    add(
        "v1 unknown model",
        Json("/v1/models/eta-atlantis:predict", json!({"instances": []})),
    );
    add("v1 with GET", by_hand("GET", V1, "", ""));

    // The repository API.
    add(
        "load of an unknown model",
        Json("/v2/repository/models/eta-atlantis/load", json!({})),
    );
    add(
        "load with malformed JSON",
        Raw(LOAD, b"{\"parameters\": ".to_vec()),
    );
    add(
        "load pinning a version not a number",
        Json(LOAD, json!({"parameters": {"version": "two"}})),
    );
    add(
        "load pinning a version not in the repository",
        Json(LOAD, json!({"parameters": {"version": "9"}})),
    );
    add(
        "unload of an unknown model",
        Json("/v2/repository/models/eta-atlantis/unload", json!({})),
    );
    add(
        "index with GET",
        by_hand("GET", "/v2/repository/index", "", ""),
    );
    cases
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_a_clear_4xx() {
    let mut config = config(&fixtures().join("models"));
    config.body.max_bytes = 64 * 1024;
    config.max_rows = 100;
    let server = Server::with_config(config).await;

    let cases = catalogue();
    assert!(cases.len() >= 120, "{} cases", cases.len());
    let (mut report, mut wrong) = (String::new(), Vec::new());
    for (name, request) in cases {
        let (status, answer) = match request {
            Request::Json(path, body) => server.post(path, &body).await,
            Request::Raw(path, body) => server.post_raw(path, body).await,
            Request::Hand(raw) => {
                let answer = server.by_hand(&raw).await;
                let status = answer
                    .split_whitespace()
                    .nth(1)
                    .and_then(|s| s.parse().ok());
                let body = answer.split_once("\r\n\r\n").map_or("", |(_, body)| body);
                let json = serde_json::from_str(body).unwrap_or(Value::String(answer.clone()));
                (status.unwrap_or(0), json)
            }
        };
        if !(400..500).contains(&status) || answer["error"].as_str().is_none() {
            wrong.push(format!("{name}: status {status}: {answer}"));
            continue;
        }
        let message = answer["error"].as_str().unwrap_or_default();
        report.push_str(&format!("{name}: {status} {message}\n"));
    }
    assert!(
        wrong.is_empty(),
        "not a 4xx with a message:\n{}",
        wrong.join("\n")
    );
    insta::assert_snapshot!(report);

    // After all that, the server still answers.
    let (status, _) = server.post(INFER, &valid()).await;
    assert_eq!(status, 200);
}

/// `value.pipe(f)`: edit a value inline in a table of cases.
trait Pipe: Sized {
    fn pipe(self, f: impl FnOnce(Self) -> Self) -> Self {
        f(self)
    }
}

impl Pipe for Value {}

/// A body that stalls is refused once the body timeout is over: the client
/// does not hold the connection and its buffers for as long as it likes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stalls_gets_a_408() {
    let mut config = config(&fixtures().join("models"));
    config.body.timeout = std::time::Duration::from_secs(1);
    let server = Server::with_config(config).await;
    let answer = server
        .by_hand(&format!(
            "POST {INFER} HTTP/1.1\r\nHost: {{addr}}\r\nContent-Type: application/json\r\n\
            Content-Length: 1000\r\n\r\n{{\"inputs\""
        ))
        .await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains("the request body did not arrive within 1 s"),
        "{answer}"
    );
}
