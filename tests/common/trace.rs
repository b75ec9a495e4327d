//! Reading JSON trace lines in tests: each line parsed with serde_json, events matched by
//! their fields (a pattern object whose every key the event has, with the same value).

use serde_json::Value;

/// Every line as a JSON object (panics, naming the line, on one that is not).
pub fn parse(lines: &[String]) -> Vec<Value> {
    lines
        .iter()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            assert!(v.is_object(), "not an object: {l}");
            v
        })
        .collect()
}

/// `event` has every field of `pattern` with the same value.
pub fn matches(event: &Value, pattern: &Value) -> bool {
    let (Some(e), Some(p)) = (event.as_object(), pattern.as_object()) else {
        return false;
    };
    p.iter().all(|(k, v)| e.get(k) == Some(v))
}

/// The events that match `pattern`.
pub fn find<'a>(events: &'a [Value], pattern: &Value) -> Vec<&'a Value> {
    events.iter().filter(|e| matches(e, pattern)).collect()
}

/// The index of the first event that matches `pattern`.
pub fn position(events: &[Value], pattern: &Value) -> Option<usize> {
    events.iter().position(|e| matches(e, pattern))
}

/// The first event that matches `pattern`; panics with the whole trace if none does.
pub fn expect<'a>(events: &'a [Value], pattern: &Value) -> &'a Value {
    match events.iter().find(|e| matches(e, pattern)) {
        Some(e) => e,
        None => panic!(
            "no trace event with {pattern}; trace:\n{}",
            events
                .iter()
                .map(Value::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        ),
    }
}

/// Field `name` of `event` as text (panics if it is not a string).
pub fn text<'a>(event: &'a Value, name: &str) -> &'a str {
    event[name]
        .as_str()
        .unwrap_or_else(|| panic!("{name} is not a string in {event}"))
}
