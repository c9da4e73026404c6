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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_a_clear_4xx() {
    let mut config = config(&fixtures().join("models"));
    config.max_body_bytes = 64 * 1024;
    config.max_rows = 100;
    let server = Server::with_config(config).await;

    let mut duplicated = valid();
    let first = duplicated["inputs"][0].clone();
    duplicated["inputs"]
        .as_array_mut()
        .expect("inputs")
        .push(first);
    let mut unknown_output = valid();
    unknown_output["outputs"] = json!([{"name": "eta_seconds"}]);
    let mut bad_deadline = valid();
    bad_deadline["parameters"] = json!({"deadline_ms": "soon"});
    let mut extra = valid();
    extra["inputs"]
        .as_array_mut()
        .expect("inputs")
        .push(json!({"name": "speed", "datatype": "FP32", "shape": [2], "data": [1.0, 2.0]}));
    let big_rows: Vec<Value> = (0..150).map(|_| json!(1.0)).collect();

    let cases: Vec<(&str, &str, Value)> = vec![
        (
            "malformed JSON",
            INFER,
            Value::String("{\"inputs\": [".into()),
        ),
        ("no inputs field", INFER, json!({"id": "x"})),
        (
            "bare NaN token",
            INFER,
            Value::String(valid().to_string().replacen("8.7", "NaN", 1)),
        ),
        (
            "wrong datatype",
            INFER,
            with_input("hour", "datatype", json!("FP32")),
        ),
        (
            "shape of another rank",
            INFER,
            with_input("hour", "shape", json!([2, 3])),
        ),
        (
            "shape and data disagree",
            INFER,
            with_input("hour", "shape", json!([3])),
        ),
        (
            "more values than the shape",
            INFER,
            with_input("hour", "data", json!([13, 13, 13])),
        ),
        (
            "rows differ between inputs",
            INFER,
            with_input("hour", "data", json!([13])).pipe(|mut r| {
                r["inputs"][1]["shape"] = json!([1]);
                r
            }),
        ),
        ("missing input", INFER, without_input("vehicle")),
        ("unknown input", INFER, extra),
        ("input given twice", INFER, duplicated),
        (
            "null in a non-nullable input",
            INFER,
            with_input("distance_km", "data", json!([1.5, null])),
        ),
        (
            "NaN as a string",
            INFER,
            with_input("prep_time_min", "data", json!(["NaN", 3.0])),
        ),
        (
            "Infinity as a string",
            INFER,
            with_input("distance_km", "data", json!([1.0, "Infinity"])),
        ),
        (
            "FP32 beyond its largest finite value",
            INFER,
            with_input("distance_km", "data", json!([1.0, 1e39])),
        ),
        (
            "NUL character in a BYTES input",
            INFER,
            with_input("vehicle", "data", json!(["car", "ca\u{0}r"])),
        ),
        (
            "float in an INT64 input",
            INFER,
            with_input("hour", "data", json!([13, 13.5])),
        ),
        (
            "number in a BYTES input",
            INFER,
            with_input("vehicle", "data", json!(["car", 4])),
        ),
        ("unknown output", INFER, unknown_output),
        ("deadline not a number", INFER, bad_deadline),
        (
            "too many rows",
            INFER,
            with_input("distance_km", "data", Value::Array(big_rows)).pipe(|mut r| {
                r["inputs"][0]["shape"] = json!([150]);
                r
            }),
        ),
        ("unknown model", "/v2/models/eta-atlantis/infer", valid()),
        (
            "unknown version",
            "/v2/models/eta-madrid/versions/7/infer",
            valid(),
        ),
        (
            "version not a number",
            "/v2/models/eta-madrid/versions/latest/infer",
            valid(),
        ),
        (
            "v1 instance missing an input",
            "/v1/models/eta-madrid:predict",
            json!({"instances": [{"distance_km": 1.0}]}),
        ),
        (
            "v1 instances not objects",
            "/v1/models/eta-madrid:predict",
            json!({"instances": [[1.0, 2.0]]}),
        ),
        (
            "v1 without :predict",
            "/v1/models/eta-madrid",
            json!({"instances": []}),
        ),
    ];
    let mut report = String::new();
    for (name, path, body) in cases {
        let (status, answer) = match &body {
            Value::String(raw) => server.post_raw(path, raw.clone()).await,
            other => server.post(path, other).await,
        };
        assert!(
            (400..500).contains(&status),
            "{name}: status {status}: {answer}"
        );
        let message = answer["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: no error message in {answer}"));
        report.push_str(&format!("{name}: {status} {message}\n"));
    }

    // Over the body limit: 413, with the limit named.
    let (status, answer) = server.post_raw(INFER, vec![b' '; 100 * 1024]).await;
    assert_eq!(status, 413);
    report.push_str(&format!(
        "body over the limit: {status} {}\n",
        answer["error"].as_str().expect("error")
    ));
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

/// A body that cannot be read (here, a broken chunked encoding) is the
/// client's mistake, and says so: 400, not "over the limit".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_body_is_a_400_that_says_so() {
    let server = Server::start(&fixtures().join("models")).await;
    let answer = server
        .by_hand(&format!(
            "POST {INFER} HTTP/1.1\r\nHost: {{addr}}\r\nContent-Type: application/json\r\n\
            Transfer-Encoding: chunked\r\n\r\nZZ\r\n{{}}\r\n0\r\n\r\n"
        ))
        .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(
        answer.contains("the request body could not be read"),
        "{answer}"
    );
}

/// A body that stalls is refused once the body timeout is over: the client
/// does not hold the connection and its buffers for as long as it likes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stalls_gets_a_408() {
    let mut config = config(&fixtures().join("models"));
    config.body_timeout = std::time::Duration::from_secs(1);
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
