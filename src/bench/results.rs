//! What a `sluice bench` run measured, kept for people and tools: every stage
//! records its figures here as it prints them, and the run ends by writing
//! `<dir>/<date>-<host>.json` and `<dir>/<date>-<host>.md` (default dir
//! `bench/results`): each figure beside its raw limit and their ratio, the goal and
//! whether it was met, and the machine (cores, memory, PostgreSQL and its fsync
//! time, DuckDB, broker). A later run on the same day and host replaces the
//! figures of the stages it ran and keeps the others, so `bench relay` after
//! `bench all` updates one section.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::{Deserialize, Serialize};

static FIGURES: Mutex<Vec<Figure>> = Mutex::new(Vec::new());
static MACHINE: Mutex<BTreeMap<String, String>> = Mutex::new(BTreeMap::new());

/// One measured figure.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Figure {
    /// `append`, `relay`, `projection`, `sink`, `e2e` or `peers`.
    pub stage: String,
    pub scenario: String,
    pub value: f64,
    pub unit: String,
    /// The same machine's raw limit for this figure, measured in the same run.
    pub raw_limit: Option<f64>,
    /// What the raw limit is.
    pub raw: Option<String>,
    /// `value / raw_limit`.
    pub ratio: Option<f64>,
    /// The goal, in words (`≥ 90 % of raw`).
    pub goal: Option<String>,
    pub met: Option<bool>,
    /// Where the time went, measured in the same run: what bounds the figure, for
    /// a goal that is not met.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
}

impl Figure {
    pub fn new(stage: &str, scenario: impl Into<String>, value: f64, unit: &str) -> Self {
        Figure {
            stage: stage.to_owned(),
            scenario: scenario.into(),
            value,
            unit: unit.to_owned(),
            raw_limit: None,
            raw: None,
            ratio: None,
            goal: None,
            met: None,
            profile: None,
        }
    }

    /// Where the time went in this run (see [`Figure::profile`]).
    pub fn profile(mut self, profile: impl Into<String>) -> Self {
        self.profile = Some(profile.into());
        self
    }

    /// Beside its raw limit `limit`, described as `what`.
    pub fn raw(mut self, limit: f64, what: impl Into<String>) -> Self {
        self.raw_limit = Some(limit);
        self.raw = Some(what.into());
        self.ratio = (limit > 0.0).then(|| self.value / limit);
        self
    }

    /// The goal: at least `fraction` of the raw limit.
    pub fn goal_ratio(mut self, fraction: f64) -> Self {
        self.goal = Some(format!("≥ {:.0} % of raw", fraction * 100.0));
        self.met = self.ratio.map(|r| r >= fraction);
        self
    }

    /// The goal: at least `minimum` (in the figure's unit).
    pub fn goal_at_least(mut self, minimum: f64) -> Self {
        self.goal = Some(format!("≥ {minimum:.0} {}", self.unit));
        self.met = Some(self.value >= minimum);
        self
    }

    /// The goal: at most `maximum` (in the figure's unit).
    pub fn goal_at_most(mut self, maximum: f64) -> Self {
        self.goal = Some(format!("< {maximum:.0} {}", self.unit));
        self.met = Some(self.value < maximum);
        self
    }

    /// The goal: ahead of the peer that is the raw limit here.
    pub fn goal_ahead(mut self) -> Self {
        self.goal = Some("ahead of the peer".to_owned());
        self.met = self.ratio.map(|r| r > 1.0);
        self
    }

    /// Keeps the figure for the results file.
    pub fn record(self) {
        FIGURES
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(self);
    }
}

/// A fact about the machine or the software under test, for the results file.
pub fn machine(key: &str, value: impl Into<String>) {
    MACHINE
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(key.to_owned(), value.into());
}

/// The results file's content.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Results {
    date: String,
    host: String,
    machine: BTreeMap<String, String>,
    figures: Vec<Figure>,
}

/// Writes what this run recorded to `<dir>/<date>-<host>.json` and `.md`, merged
/// with what an earlier run of the day wrote there; returns the two paths.
pub fn write(dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    let figures = std::mem::take(&mut *FIGURES.lock().unwrap_or_else(PoisonError::into_inner));
    let mut facts = std::mem::take(&mut *MACHINE.lock().unwrap_or_else(PoisonError::into_inner));
    facts.extend(hardware(dir));
    let date = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let host = hostname();
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let json_path = dir.join(format!("{date}-{host}.json"));
    let mut results = match std::fs::read_to_string(&json_path) {
        Ok(text) => serde_json::from_str::<Results>(&text).unwrap_or_default(),
        Err(_) => Results::default(),
    };
    let stages: Vec<&str> = figures.iter().map(|f| f.stage.as_str()).collect();
    results
        .figures
        .retain(|f| !stages.contains(&f.stage.as_str()));
    results.figures.extend(figures.iter().cloned());
    results.machine.extend(facts);
    results.date = date;
    results.host = host;
    let json = serde_json::to_string_pretty(&results)?;
    std::fs::write(&json_path, json + "\n")
        .with_context(|| format!("writing {}", json_path.display()))?;
    let md_path = json_path.with_extension("md");
    std::fs::write(&md_path, markdown(&results))
        .with_context(|| format!("writing {}", md_path.display()))?;
    Ok((json_path, md_path))
}

/// The results as a Markdown table, with the machine under it.
fn markdown(results: &Results) -> String {
    let mut out = format!(
        "# `sluice bench` on {} ({})\n\n| stage | scenario | figure | raw limit | ratio | goal | met |\n|---|---|---|---|---|---|---|\n",
        results.host, results.date
    );
    for f in &results.figures {
        let number = |v: f64| {
            if v >= 100.0 {
                format!("{v:.0}")
            } else {
                format!("{v:.1}")
            }
        };
        out.push_str(&format!(
            "| {} | {} | {} {} | {} | {} | {} | {} |\n",
            f.stage,
            f.scenario,
            number(f.value),
            f.unit,
            match (&f.raw_limit, &f.raw) {
                (Some(limit), Some(what)) => format!("{} ({what})", number(*limit)),
                _ => String::new(),
            },
            f.ratio
                .map_or(String::new(), |r| format!("{:.0} %", r * 100.0)),
            f.goal.as_deref().unwrap_or(""),
            match f.met {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "",
            }
        ));
    }
    let profiled: Vec<&Figure> = results
        .figures
        .iter()
        .filter(|f| f.profile.is_some() && f.met == Some(false))
        .collect();
    if !profiled.is_empty() {
        out.push_str("\n## Goals not met: where the time went in this run\n\n");
        for f in profiled {
            out.push_str(&format!(
                "- **{} — {}** ({}): {}\n",
                f.stage,
                f.scenario,
                f.goal.as_deref().unwrap_or(""),
                f.profile.as_deref().unwrap_or("")
            ));
        }
    }
    out.push_str("\n## Machine\n\n");
    for (key, value) in &results.machine {
        out.push_str(&format!("- {key}: {value}\n"));
    }
    out
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The value of the first `prefix: value` line of a `/proc` file
/// (`/proc/cpuinfo`, `model name`).
pub fn proc_field(file: &str, prefix: &str) -> Option<String> {
    std::fs::read_to_string(file).ok().and_then(|s| {
        s.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.split(':').nth(1))
            .map(|m| m.trim().to_owned())
    })
}

/// CPU, cores, memory, and the time of one `fdatasync` of an 8 KiB write in `dir`.
fn hardware(dir: &Path) -> BTreeMap<String, String> {
    let first = proc_field;
    let mut facts = BTreeMap::new();
    facts.insert(
        "cpu".to_owned(),
        first("/proc/cpuinfo", "model name").unwrap_or_else(|| "unknown".into()),
    );
    facts.insert(
        "cores".to_owned(),
        std::thread::available_parallelism()
            .map_or(0, |n| n.get())
            .to_string(),
    );
    if let Some(kb) = first("/proc/meminfo", "MemTotal")
        .and_then(|m| m.trim_end_matches(" kB").trim().parse::<f64>().ok())
    {
        facts.insert(
            "memory".to_owned(),
            format!("{:.1} GiB", kb / 1024.0 / 1024.0),
        );
    }
    if let Ok(fsync) = fsync_time(dir) {
        facts.insert(
            "fsync".to_owned(),
            format!(
                "{:.2} ms median fdatasync of an 8 KiB write in {}",
                fsync.as_secs_f64() * 1000.0,
                dir.display()
            ),
        );
    }
    facts
}

fn fsync_time(dir: &Path) -> std::io::Result<Duration> {
    use std::io::Write;
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!(".fsync-probe-{}", std::process::id()));
    let mut file = std::fs::File::create(&path)?;
    let block = [0x5au8; 8192];
    let mut times = Vec::with_capacity(21);
    for _ in 0..21 {
        let start = Instant::now();
        file.write_all(&block)?;
        file.sync_data()?;
        times.push(start.elapsed());
    }
    drop(file);
    let _ = std::fs::remove_file(&path);
    times.sort();
    Ok(times[times.len() / 2])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goals_are_judged_against_the_raw_limit_or_the_figure() {
        let f = Figure::new("relay", "x", 90.0, "events/s")
            .raw(100.0, "raw producer")
            .goal_ratio(0.9);
        assert_eq!((f.ratio, f.met), (Some(0.9), Some(true)));
        let f = Figure::new("sink", "x", 299_999.0, "events/s").goal_at_least(300_000.0);
        assert_eq!(f.met, Some(false));
        let f = Figure::new("peers", "x", 10.0, "events/s")
            .raw(10.0, "peer")
            .goal_ahead();
        assert_eq!(f.met, Some(false), "level is not ahead");
    }

    #[test]
    fn a_later_run_replaces_its_stages_and_keeps_the_others() {
        let dir = std::env::temp_dir().join(format!("sluice-results-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Figure::new("append", "a", 1.0, "events/s").record();
        Figure::new("relay", "r", 2.0, "events/s").record();
        let (json, md) = write(&dir).expect("write");
        Figure::new("relay", "r", 3.0, "events/s").record();
        write(&dir).expect("write again");
        let results: Results =
            serde_json::from_str(&std::fs::read_to_string(&json).expect("read")).expect("json");
        let values: Vec<(&str, f64)> = results
            .figures
            .iter()
            .map(|f| (f.stage.as_str(), f.value))
            .collect();
        assert_eq!(values, vec![("append", 1.0), ("relay", 3.0)]);
        assert!(results.machine.contains_key("cores"));
        let table = std::fs::read_to_string(md).expect("md");
        assert!(table.contains("| relay | r | 3.0 events/s |"), "{table}");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn a_goal_not_met_is_listed_with_its_profile_and_a_met_one_is_not() {
        let results = Results {
            figures: vec![
                Figure::new("relay", "slow", 10.0, "events/s")
                    .raw(100.0, "raw")
                    .goal_ratio(0.9)
                    .profile("awaiting acknowledgements 80 %"),
                Figure::new("append", "fast", 95.0, "events/s")
                    .raw(100.0, "raw")
                    .goal_ratio(0.9)
                    .profile("statements 100 %"),
            ],
            ..Results::default()
        };
        let table = markdown(&results);
        assert!(
            table.contains("- **relay — slow** (≥ 90 % of raw): awaiting acknowledgements 80 %"),
            "{table}"
        );
        assert!(!table.contains("statements 100 %"), "{table}");
        let json = serde_json::to_string(&results.figures[1]).expect("json");
        let back: Figure = serde_json::from_str(&json).expect("back");
        assert_eq!(back, results.figures[1]);
    }
}
