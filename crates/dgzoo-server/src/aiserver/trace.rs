//! The server's trace (`trace_manage`): trace groups with PySDK's names and levels, and a
//! bounded buffer of records read back as PySDK's trace text (a header, then one record a
//! line).
//!
//! As probed on PySDK 1.5.0's server: `config_get` maps every group to `None|Basic|Detailed|
//! Full`; a non-empty `config_set` replaces the whole configuration (groups it does not name go
//! to `None`, unknown names are ignored, numbers are truncated and anything outside 0..=3 is
//! `None`, a value that is not a number fails the command and changes nothing) and restarts
//! the trace (`{}` and `null` set every group to `None` without a restart: the header keeps
//! the groups the trace started with); `trace_read {"size": N}` returns text of at most N bytes (no `size`: all of it).
//! PySDK returns the first N bytes of its trace file, cut anywhere; ours is the newest whole
//! records that fit in N, with the header only when every record fits too.
//!
//! Records at `Basic` (the server's info log) are always kept; a group's `Detailed` records
//! (one per request, with client text) only while that group is set to `Detailed` or `Full`.
use chrono::{DateTime, Local};
use serde_json::{json, Map, Value};
use std::collections::VecDeque;
use std::time::SystemTime;

/// A trace group: the PySDK group whose counterpart writes the record.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Group {
    /// Requests, streams, shutdown, admin refusals.
    AiServer = 0,
    /// The engine cache: model loads and unloads.
    AgentCache,
    /// Zoo scans.
    ModelZoo,
    /// Inference: frame errors.
    Runtime,
    /// The asio listener.
    TaskServerAsio,
    /// The HTTP/WebSocket listener.
    TaskServerHttp,
}

/// PySDK's names of the groups, in [`Group`] order (sorted, as PySDK lists them).
pub const GROUPS: [&str; 6] = ["AIServer", "CoreAgentCache", "CoreModelZoo", "CoreRuntime", "CoreTaskServerAsio", "CoreTaskServerHttp"];

const LEVELS: [&str; 4] = ["None", "Basic", "Detailed", "Full"];

/// A record's level: `Basic` records are always kept, `Detailed` ones on request.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Debug)]
pub enum Level {
    Basic = 1,
    Detailed = 2,
}

/// Most records kept.
const TRACE_LINES: usize = 1000;
/// Longest record kept, in bytes (client text in a record is cut past it).
const TRACE_LINE_MAX: usize = 1024;
/// Most bytes of records kept in all: older records go first.
const TRACE_BYTES: usize = 256 << 10;

/// The trace: group levels and at most [`TRACE_LINES`] records of at most [`TRACE_LINE_MAX`]
/// bytes and [`TRACE_BYTES`] in all, whatever clients send. The group table is fixed (unknown
/// names in `config_set` are ignored, as PySDK does), so clients cannot grow it either.
pub struct Trace {
    levels: [u8; GROUPS.len()],
    /// The levels when the trace started (its header lists them).
    started_levels: [u8; GROUPS.len()],
    started: SystemTime,
    /// Time of the last record (for the delta column).
    last: SystemTime,
    records: VecDeque<String>,
    bytes: usize,
}

impl Default for Trace {
    fn default() -> Self {
        let now = SystemTime::now();
        Trace { levels: [0; GROUPS.len()], started_levels: [0; GROUPS.len()], started: now, last: now, records: VecDeque::new(), bytes: 0 }
    }
}

/// One record as kept: control characters (a client's newlines) blanked, cut at
/// [`TRACE_LINE_MAX`] bytes, so a record is always exactly one line.
fn clip_line(line: &str) -> String {
    let mut l: String = line.chars().take(TRACE_LINE_MAX).map(|c| if c.is_control() { ' ' } else { c }).collect();
    if line.len() > TRACE_LINE_MAX {
        let mut cut = (TRACE_LINE_MAX - 3).min(l.len());
        while !l.is_char_boundary(cut) {
            cut -= 1;
        }
        l.truncate(cut);
        l.push('…');
    }
    l
}

/// nlohmann::json's name of a value's type, for PySDK's error texts.
fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// PySDK's text when a value that must be a number is not one.
fn not_a_number(v: &Value) -> String {
    format!("[json.exception.type_error.302] type must be number, but is {}", type_name(v))
}

/// A number as PySDK's server reads one (booleans are 0 and 1, fractions truncated);
/// `None` for a negative one.
fn unsigned(v: &Value) -> Result<Option<u64>, String> {
    match v {
        Value::Bool(b) => Ok(Some(u64::from(*b))),
        Value::Number(n) => Ok(n.as_u64().or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))),
        other => Err(not_a_number(other)),
    }
}

fn micros(t: SystemTime) -> u128 {
    t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_micros())
}

impl Trace {
    /// Whether a record of `group` at `level` is kept now.
    pub fn wants(&self, group: Group, level: Level) -> bool {
        level == Level::Basic || self.levels[group as usize] >= level as u8
    }

    /// Add a record (the caller checked [`Trace::wants`]).
    pub fn push(&mut self, group: Group, level: Level, msg: &str) {
        let now = SystemTime::now();
        let (t, delta) = (micros(now), micros(now).saturating_sub(micros(self.last)));
        self.last = now;
        let line =
            clip_line(&format!("[{}.{:06} :{:>10.1}] [{}] - {}: {msg}", t / 1_000_000, t % 1_000_000, delta as f64, level as u8, GROUPS[group as usize]));
        while !self.records.is_empty() && (self.records.len() >= TRACE_LINES || self.bytes + line.len() > TRACE_BYTES) {
            self.bytes -= self.records.pop_front().map_or(0, |x| x.len());
        }
        self.bytes += line.len();
        self.records.push_back(line);
    }

    /// `trace_manage`: `config_get` (before any change), `config_set`, then `trace_read`, as
    /// PySDK's server runs them; the reply holds the parts asked for, `null` when none.
    pub fn manage(&mut self, args: &Value) -> Result<Value, String> {
        let mut out = Map::new();
        if args.get("config_get").is_some() {
            out.insert("config_get".into(), self.config_get());
        }
        if let Some(set) = args.get("config_set") {
            self.config_set(set)?;
        }
        if let Some(r) = args.get("trace_read") {
            let size = match r.get("size") {
                Some(s) => unsigned(s)?.map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX)),
                None => usize::MAX,
            };
            out.insert("trace_read".into(), json!(self.read(size)));
        }
        Ok(if out.is_empty() { Value::Null } else { Value::Object(out) })
    }

    fn config_get(&self) -> Value {
        Value::Object(GROUPS.iter().zip(self.levels).map(|(g, l)| (g.to_string(), json!(LEVELS[l as usize]))).collect())
    }

    fn config_set(&mut self, set: &Value) -> Result<(), String> {
        // `null` iterates as empty there; other non-objects fail.
        let empty = Map::new();
        let set =
            if set.is_null() { &empty } else { set.as_object().ok_or("[json.exception.invalid_iterator.207] cannot use key() for non-object iterators")? };
        if set.is_empty() {
            self.levels = [0; GROUPS.len()];
            return Ok(());
        }
        let mut levels = [0u8; GROUPS.len()];
        for (name, v) in set {
            let level = unsigned(v)?.filter(|l| *l < LEVELS.len() as u64).unwrap_or(0) as u8;
            if let Some(i) = GROUPS.iter().position(|g| g == name) {
                levels[i] = level;
            }
        }
        // A new configuration starts a new trace.
        *self = Trace { levels, started_levels: levels, ..Trace::default() };
        Ok(())
    }

    /// PySDK's trace header: start time, enabled groups, line format.
    fn header(&self) -> String {
        let started: DateTime<Local> = self.started.into();
        let mut enabled: String =
            GROUPS.iter().zip(self.started_levels).filter(|(_, l)| *l > 0).map(|(g, l)| format!("  {g:<33}= {}\n", LEVELS[l as usize])).collect();
        if enabled.is_empty() {
            enabled = "  <none>\n".into();
        }
        format!(
            "----------------------------------------\nStarted: {}\n\nEnabled trace groups:\n{enabled}\n\n\nLine format:\n[<Timestamp, us>:<delta, us] [<level>] - <group>: <message>\n\n",
            started.format("%a %b %e %H:%M:%S %Y")
        )
    }

    /// The newest whole records that fit in `size` bytes (each ending with a newline), after
    /// the header when everything fits.
    pub fn read(&self, size: usize) -> String {
        let header = self.header();
        let mut lines = Vec::new();
        let mut used = 0usize;
        for r in self.records.iter().rev() {
            if used + r.len() + 1 > size {
                break;
            }
            used += r.len() + 1;
            lines.push(r.as_str());
        }
        let mut text = String::with_capacity(header.len() + used);
        if lines.len() == self.records.len() && header.len() + used <= size {
            text.push_str(&header);
        }
        for l in lines.iter().rev() {
            text.push_str(l);
            text.push('\n');
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trace_with(n: usize) -> Trace {
        let mut t = Trace::default();
        for i in 0..n {
            t.push(Group::AiServer, Level::Basic, &format!("record {i}"));
        }
        t
    }

    #[test]
    fn read_cuts_at_record_boundaries() {
        let t = trace_with(5);
        let all = t.read(usize::MAX);
        assert!(all.starts_with("----------------------------------------\nStarted: "), "{all}");
        let records: Vec<&str> = all.lines().filter(|l| l.starts_with("[1")).collect();
        assert_eq!(records.len(), 5);
        for (i, r) in records.iter().enumerate() {
            assert!(r.ends_with(&format!("[1] - AIServer: record {i}")), "{r}");
        }
        // Every size: the newest whole records that fit, never part of one.
        for size in 0..=all.len() {
            let got = t.read(size);
            assert!(got.len() <= size, "size {size}: {} bytes", got.len());
            assert!(all.ends_with(&got), "size {size}: not the newest part");
            let whole = records.iter().rev().scan(0, |n, r| {
                *n += r.len() + 1;
                Some(*n)
            });
            let fit = whole.take_while(|n| *n <= size).count();
            let want: String = records[5 - fit..].iter().map(|r| format!("{r}\n")).collect();
            if size < all.len() {
                assert_eq!(got, want, "size {size}");
            } else {
                assert_eq!(got, all);
            }
        }
        // One byte short of a record: that record is left out whole.
        let last = format!("{}\n", records[4]);
        assert_eq!(t.read(last.len() - 1), "");
        assert_eq!(t.read(last.len()), last);
    }

    #[test]
    fn config_set_replaces_the_configuration_as_pysdk() {
        let mut t = trace_with(3);
        let get = |t: &mut Trace| t.manage(&json!({"config_get": 1})).unwrap()["config_get"].clone();
        assert_eq!(get(&mut t).as_object().unwrap().len(), GROUPS.len());
        assert!(get(&mut t).as_object().unwrap().values().all(|v| v == "None"));
        assert_eq!(t.manage(&json!({"config_set": {"AIServer": 3, "CoreRuntime": 2, "Unknown": 1}})), Ok(Value::Null));
        assert_eq!(get(&mut t)["AIServer"], "Full");
        assert_eq!(get(&mut t)["CoreRuntime"], "Detailed");
        assert!(get(&mut t).get("Unknown").is_none());
        // The trace restarted: no records, the groups in the header.
        let text = t.read(usize::MAX);
        assert!(text.contains("\n  AIServer                         = Full\n  CoreRuntime                      = Detailed\n\n\n\nLine format:\n"), "{text}");
        assert!(!text.contains("record"), "{text}");
        // Replaced, not merged; numbers truncated, out of range is None, true is 1.
        t.manage(&json!({"config_set": {"CoreModelZoo": 2.9, "CoreAgentCache": true, "CoreRuntime": 7}})).unwrap();
        let g = get(&mut t);
        assert_eq!(
            (g["AIServer"].as_str(), g["CoreModelZoo"].as_str(), g["CoreAgentCache"].as_str(), g["CoreRuntime"].as_str()),
            (Some("None"), Some("Detailed"), Some("Basic"), Some("None"))
        );
        // Errors change nothing; an empty object is no change.
        let err = t.manage(&json!({"config_set": {"AIServer": 1, "CoreRuntime": "2"}})).unwrap_err();
        assert_eq!(err, "[json.exception.type_error.302] type must be number, but is string");
        assert!(t.manage(&json!({"config_set": [1]})).unwrap_err().contains("invalid_iterator.207"));
        // `{}` and `null`: every group None, the trace (and its header) goes on.
        t.push(Group::ModelZoo, Level::Detailed, "kept");
        for empty in [json!({}), json!(null)] {
            t.manage(&json!({"config_set": empty})).unwrap();
            assert!(get(&mut t).as_object().unwrap().values().all(|v| v == "None"));
            let text = t.read(usize::MAX);
            assert!(text.contains("kept") && text.contains("  CoreModelZoo                     = Detailed\n"), "{text}");
        }
        t.manage(&json!({"config_set": {"CoreModelZoo": 2.9, "CoreAgentCache": true}})).unwrap();
        assert_eq!(get(&mut t), g);
        // Detailed records only for groups set to Detailed or Full.
        assert!(t.wants(Group::ModelZoo, Level::Detailed) && !t.wants(Group::AgentCache, Level::Detailed) && t.wants(Group::AgentCache, Level::Basic));
        assert_eq!(t.manage(&json!({"trace_read": {"size": "a"}})).unwrap_err(), "[json.exception.type_error.302] type must be number, but is string");
        assert_eq!(t.manage(&json!({"trace_read": {"size": 0}})).unwrap(), json!({"trace_read": ""}));
    }

    #[test]
    fn records_are_bounded() {
        let mut t = Trace::default();
        let long = "x\n".repeat(10_000);
        for _ in 0..2000 {
            t.push(Group::AiServer, Level::Basic, &long);
        }
        assert!(t.records.len() <= TRACE_LINES && t.bytes <= TRACE_BYTES);
        assert!(t.records.iter().all(|r| r.len() <= TRACE_LINE_MAX && !r.contains('\n')));
    }
}
