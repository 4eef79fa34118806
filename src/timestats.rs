//! PySDK's `Model.time_stats()`: min/average/max/count of each timing key, in the order the
//! keys were first recorded (PySDK's dict order), and its printed table. A leaf module.
use serde_json::Value;

/// Client-side pre-processing time of a frame (PySDK's key name).
pub const PREPROCESS_KEY: &str = "PythonPreprocessDuration_ms";
/// Time from the start of a frame's pre-processing to its result (PySDK's key name).
pub const FRAME_TOTAL_KEY: &str = "FrameTotalDuration_ms";

/// One key's statistics (PySDK's `Model._Stat`).
#[derive(Debug, Clone, PartialEq)]
pub struct Stat {
    pub min: f64,
    pub max: f64,
    pub sum: f64,
    pub count: u64,
}

impl Stat {
    fn new() -> Stat {
        Stat { min: f64::MAX, max: -f64::MAX, sum: 0.0, count: 0 }
    }

    fn add(&mut self, v: f64) {
        if v < self.min {
            self.min = v;
        }
        if v > self.max {
            self.max = v;
        }
        self.count += 1;
        self.sum += v;
    }

    pub fn avg(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum / self.count as f64
        }
    }
}

/// The statistics of one model, keys in first-recorded order.
#[derive(Debug, Clone, Default)]
pub struct TimeStats {
    entries: Vec<(String, Stat)>,
}

impl TimeStats {
    /// Record one value of `key`.
    pub fn add(&mut self, key: &str, v: f64) {
        match self.entries.iter_mut().find(|(k, _)| k == key) {
            Some((_, s)) => s.add(v),
            None => {
                let mut s = Stat::new();
                s.add(v);
                self.entries.push((key.to_string(), s));
            }
        }
    }

    /// Record every numeric key of a frame's `Timing` object (the server's keys).
    pub fn add_timing(&mut self, timing: &Value) {
        if let Some(o) = timing.as_object() {
            for (k, v) in o {
                if let Some(x) = v.as_f64() {
                    self.add(k, x);
                }
            }
        }
    }

    pub fn get(&self, key: &str) -> Option<&Stat> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, s)| s)
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(k, _)| k.as_str())
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// `{"key": {"min": f, "avg": f, "max": f, "count": n}, ...}` with the keys in PySDK's order.
    pub fn to_json(&self) -> String {
        let mut out = String::from("{");
        for (i, (k, s)) in self.entries.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            let obj = serde_json::json!({"min": s.min, "avg": s.avg(), "max": s.max, "count": s.count});
            out.push_str(&format!("{}: {}", Value::String(k.clone()), obj));
        }
        out.push('}');
        out
    }

    /// PySDK's `str(model.time_stats())` table.
    pub fn table(&self) -> String {
        let mut out = format!("{:30}, {:>9}, {:>9}, {:>9}, {:>6}\n", "Statistic", "Min", "Average", "Max", "Count");
        let rows: Vec<String> = self.entries.iter().map(|(k, s)| format!("{:30}, {:9.2}, {:9.2}, {:9.2}, {:6}", k, s.min, s.avg(), s.max, s.count)).collect();
        out.push_str(&rows.join("\n"));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn min_avg_max_count_in_first_recorded_order() {
        let mut t = TimeStats::default();
        t.add(PREPROCESS_KEY, 2.0);
        t.add_timing(&json!({"CoreInferenceDuration_ms": 10.0, "CoreInputFrameSize_bytes": 300}));
        t.add(FRAME_TOTAL_KEY, 20.0);
        t.add(PREPROCESS_KEY, 4.0);
        t.add(FRAME_TOTAL_KEY, 30.0);
        assert_eq!(t.keys().collect::<Vec<_>>(), [PREPROCESS_KEY, "CoreInferenceDuration_ms", "CoreInputFrameSize_bytes", FRAME_TOTAL_KEY]);
        let p = t.get(PREPROCESS_KEY).unwrap();
        assert_eq!((p.min, p.avg(), p.max, p.count), (2.0, 3.0, 4.0, 2));
        let v: Value = serde_json::from_str(&t.to_json()).unwrap();
        assert_eq!(v[FRAME_TOTAL_KEY], json!({"min": 20.0, "avg": 25.0, "max": 30.0, "count": 2}));
        assert!(t.to_json().starts_with("{\"PythonPreprocessDuration_ms\""));
        let table = t.table();
        assert_eq!(table.lines().next().unwrap(), "Statistic                     ,       Min,   Average,       Max,  Count");
        assert!(table.contains("FrameTotalDuration_ms         ,     20.00,     25.00,     30.00,      2"), "{table}");
        t.clear();
        assert!(t.is_empty());
        assert_eq!(t.to_json(), "{}");
    }
}
