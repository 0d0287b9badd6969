//! The results: every figure with its runs, the raw-SQL and peer runs measured beside
//! them, taskq's target, and the machine they were measured on; printed as a table
//! or JSON.
//!
//! Nothing here changes a measurement: the median and range are those of the runs as
//! measured, and "met" compares the median with the target as it is.

use std::fmt::Write as _;

use serde::Serialize;
use serde::ser::SerializeStruct;

use super::{BenchDb, sorted};

/// What a figure counts, and so which direction is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// Events per second: higher is better.
    PerSecond,
    /// Milliseconds: lower is better.
    Millis,
    /// Megabytes (10^6 bytes) of memory: lower is better.
    Megabytes,
    /// Seconds: lower is better.
    Seconds,
}

impl Unit {
    fn higher_is_better(self) -> bool {
        matches!(self, Self::PerSecond)
    }

    fn suffix(self) -> &'static str {
        match self {
            Self::PerSecond => "/s",
            Self::Millis => " ms",
            Self::Megabytes => " MB",
            Self::Seconds => " s",
        }
    }

    fn format(self, value: f64) -> String {
        if !value.is_finite() {
            return "-".into();
        }
        match self {
            Self::PerSecond => thousands(value.round() as i64),
            Self::Millis if value < 10.0 => format!("{value:.2}"),
            Self::Millis => format!("{value:.1}"),
            Self::Megabytes => format!("{value:.1}"),
            Self::Seconds => format!("{value:.2}"),
        }
    }
}

/// How a figure's median is held to its target.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub enum Goal {
    /// On the unit's better side: at least the target for rates, at most for times
    /// and sizes.
    #[default]
    Better,
    /// At least the target, whatever the unit: a spacing that must not shrink.
    AtLeast,
    /// Within this fraction of the target on either side: a rate limit, which must
    /// hold a pace, neither faster nor slower.
    Within(f64),
}

impl Goal {
    /// Whether the median must be at least the target (for [`Goal::Within`], unused).
    fn at_least(self, unit: Unit) -> bool {
        match self {
            Self::Better => unit.higher_is_better(),
            Self::AtLeast => true,
            Self::Within(_) => false,
        }
    }

    /// `at_least`, `at_most` or `within`, for the JSON.
    fn name(self, unit: Unit) -> &'static str {
        match self {
            Self::Within(_) => "within",
            _ if self.at_least(unit) => "at_least",
            _ => "at_most",
        }
    }

    fn met(self, unit: Unit, target: f64, median: f64) -> bool {
        match self {
            Self::Within(tolerance) => (median - target).abs() <= tolerance * target.abs(),
            _ if self.at_least(unit) => median >= target,
            _ => median <= target,
        }
    }

    fn format(self, unit: Unit, target: f64) -> String {
        match self {
            Self::Within(tolerance) => format!("{} ± {:.0}%", unit.format(target), tolerance * 100.0),
            _ if self.at_least(unit) => format!("≥ {}", unit.format(target)),
            _ => format!("≤ {}", unit.format(target)),
        }
    }
}

/// One figure across the runs.
#[derive(Debug, Clone)]
pub struct Figure {
    pub scenario: &'static str,
    /// What is measured, with the case: "completed tasks/s, concurrency 100".
    pub name: String,
    pub unit: Unit,
    /// The target taskq sets itself for it, if any.
    pub target: Option<f64>,
    /// How the median is held to the target.
    pub goal: Goal,
    /// One value per run, in run order.
    pub runs: Vec<f64>,
    /// The same work done by raw SQL in the same runs.
    pub raw_sql: Option<Beside>,
    /// The same work done by the peer queue in the same runs.
    pub peer: Option<Beside>,
}

/// Runs of something measured beside taskq: what it is, and its values.
#[derive(Debug, Clone)]
pub struct Beside {
    pub what: String,
    pub runs: Vec<f64>,
}

impl Beside {
    fn median(&self) -> Option<f64> {
        (!self.runs.is_empty()).then(|| median(&self.runs))
    }

    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({ "what": self.what, "median": self.median(), "runs": self.runs })
    }
}

impl Figure {
    pub fn median(&self) -> f64 {
        median(&self.runs)
    }

    pub fn raw_median(&self) -> Option<f64> {
        self.raw_sql.as_ref().and_then(Beside::median)
    }

    pub fn peer_median(&self) -> Option<f64> {
        self.peer.as_ref().and_then(Beside::median)
    }

    /// taskq's median over raw SQL's, oriented so that 1.0 means "as good as raw SQL"
    /// and lower is worse: rates are divided taskq / raw, times raw / taskq.
    pub fn ratio(&self) -> Option<f64> {
        self.ratio_to(self.raw_median()?)
    }

    /// taskq's median over the peer's, oriented as [`Figure::ratio`]: above 1.0,
    /// taskq does better.
    pub fn peer_ratio(&self) -> Option<f64> {
        self.ratio_to(self.peer_median()?)
    }

    fn ratio_to(&self, other: f64) -> Option<f64> {
        let ours = self.median();
        let ratio = if self.unit.higher_is_better() { ours / other } else { other / ours };
        ratio.is_finite().then_some(ratio)
    }

    pub fn target_met(&self) -> Option<bool> {
        Some(self.goal.met(self.unit, self.target?, self.median()))
    }
}

impl Serialize for Figure {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let runs = sorted(self.runs.clone());
        let mut s = serializer.serialize_struct("Figure", 15)?;
        s.serialize_field("scenario", self.scenario)?;
        s.serialize_field("name", &self.name)?;
        s.serialize_field("unit", &self.unit)?;
        s.serialize_field("median", &self.median())?;
        s.serialize_field("min", &runs.first())?;
        s.serialize_field("max", &runs.last())?;
        s.serialize_field("runs", &self.runs)?;
        s.serialize_field("raw_sql", &self.raw_sql.as_ref().map(Beside::to_json))?;
        s.serialize_field("ratio_to_raw_sql", &self.ratio())?;
        s.serialize_field("peer", &self.peer.as_ref().map(Beside::to_json))?;
        s.serialize_field("ratio_to_peer", &self.peer_ratio())?;
        s.serialize_field("target", &self.target)?;
        s.serialize_field("goal", &self.target.map(|_| self.goal.name(self.unit)))?;
        let tolerance = match self.goal {
            Goal::Within(tolerance) => Some(tolerance),
            _ => None,
        };
        s.serialize_field("tolerance", &tolerance)?;
        s.serialize_field("target_met", &self.target_met())?;
        s.end()
    }
}

/// Where the figures were measured.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory_gib: f64,
    pub postgres: String,
    /// The settings that decide the fsync-bound figures.
    pub settings: Vec<(String, String)>,
}

impl Machine {
    pub(crate) async fn describe(db: &BenchDb) -> anyhow::Result<Self> {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name").map(|r| r.trim_start_matches([' ', '\t', ':']).to_owned())
            })
            .unwrap_or_else(|| "unknown".into());
        let memory_gib = std::fs::read_to_string("/proc/meminfo")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
        let mut conn = db.connect().await?;
        let postgres: String = sqlx::query_scalar("SELECT version()").fetch_one(&mut conn).await?;
        let mut settings = Vec::new();
        for name in [
            "fsync",
            "synchronous_commit",
            "wal_sync_method",
            "full_page_writes",
            "shared_buffers",
            "max_wal_size",
            "checkpoint_timeout",
            "commit_delay",
            "max_connections",
        ] {
            let value: String = sqlx::query_scalar(&format!("SHOW {name}")).fetch_one(&mut conn).await?;
            settings.push((name.to_owned(), value));
        }
        Ok(Self {
            cpu,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_gib,
            postgres,
            settings,
        })
    }
}

/// Everything measured by one `taskq bench`.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// Runs of every scenario (`--runs`).
    pub runs: u32,
    pub machine: Option<Machine>,
    pub figures: Vec<Figure>,
}

impl Report {
    /// The figure named so, created on first use.
    pub fn figure(
        &mut self,
        scenario: &'static str,
        name: &str,
        unit: Unit,
        target: Option<f64>,
    ) -> &mut Figure {
        let index = match self.figures.iter().position(|f| f.scenario == scenario && f.name == name) {
            Some(index) => index,
            None => {
                self.figures.push(Figure {
                    scenario,
                    name: name.to_owned(),
                    unit,
                    target,
                    goal: Goal::default(),
                    runs: Vec::new(),
                    raw_sql: None,
                    peer: None,
                });
                self.figures.len() - 1
            }
        };
        &mut self.figures[index]
    }

    /// Adds one run of taskq to a figure.
    pub fn taskq(&mut self, scenario: &'static str, name: &str, unit: Unit, target: Option<f64>, value: f64) {
        self.figure(scenario, name, unit, target).runs.push(value);
    }

    /// Adds one raw-SQL run to a figure.
    pub fn raw(&mut self, scenario: &'static str, name: &str, unit: Unit, what: &str, value: f64) {
        let figure = self.figure(scenario, name, unit, None);
        beside(&mut figure.raw_sql, what).runs.push(value);
    }

    /// Adds one run of the peer queue to a figure.
    pub fn peer(&mut self, scenario: &'static str, name: &str, unit: Unit, what: &str, value: f64) {
        let figure = self.figure(scenario, name, unit, None);
        beside(&mut figure.peer, what).runs.push(value);
    }

    /// The results as a plain-text table, with the machine and a key below it.
    pub fn table(&self) -> String {
        let header =
            ["scenario", "figure", "median", "range", "raw SQL", "ratio", "peer", "× peer", "target", "met"];
        let mut rows = vec![header.map(String::from).to_vec()];
        for figure in &self.figures {
            let runs = sorted(figure.runs.clone());
            let unit = figure.unit;
            let range = match (runs.first(), runs.last()) {
                (Some(lo), Some(hi)) => format!("{}–{}", unit.format(*lo), unit.format(*hi)),
                _ => "-".into(),
            };
            rows.push(vec![
                figure.scenario.to_owned(),
                figure.name.clone(),
                format!("{}{}", unit.format(figure.median()), unit.suffix()),
                range,
                figure.raw_median().map_or("-".into(), |raw| unit.format(raw)),
                figure.ratio().map_or("-".into(), |ratio| format!("{ratio:.2}")),
                figure.peer_median().map_or("-".into(), |peer| unit.format(peer)),
                figure.peer_ratio().map_or("-".into(), |ratio| format!("{ratio:.2}")),
                figure.target.map_or("-".into(), |t| figure.goal.format(unit, t)),
                match figure.target_met() {
                    Some(true) => "yes".into(),
                    Some(false) => "no".into(),
                    None => "-".into(),
                },
            ]);
        }
        let widths: Vec<usize> =
            (0..header.len()).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
        let mut out = String::new();
        for (i, row) in rows.iter().enumerate() {
            let line: Vec<String> = row
                .iter()
                .zip(&widths)
                .enumerate()
                .map(|(c, (cell, width))| {
                    let pad = width - cell.chars().count();
                    // Text columns left, numbers right.
                    if c < 2 {
                        format!("{cell}{}", " ".repeat(pad))
                    } else {
                        format!("{}{cell}", " ".repeat(pad))
                    }
                })
                .collect();
            let _ = writeln!(out, "{}", line.join("  ").trim_end());
            if i == 0 {
                let _ =
                    writeln!(out, "{}", "-".repeat(widths.iter().sum::<usize>() + 2 * (widths.len() - 1)));
            }
        }
        let _ = writeln!(
            out,
            "\nmedian and range of {} run(s) of each scenario; ratio = taskq / raw SQL for rates, raw SQL / taskq for times (1.00 = as good as raw SQL); × peer likewise against the peer (above 1.00, taskq does better)",
            self.runs
        );
        for figure in &self.figures {
            for (label, beside) in [("raw SQL", &figure.raw_sql), ("peer", &figure.peer)] {
                if let Some(beside) = beside {
                    let _ =
                        writeln!(out, "  {label} for {} / {}: {}", figure.scenario, figure.name, beside.what);
                }
            }
        }
        if let Some(machine) = &self.machine {
            let settings: Vec<String> = machine.settings.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let _ = writeln!(
                out,
                "machine: {} × {} cores, {:.1} GiB; {}\npostgres: {}",
                machine.cpu,
                machine.cores,
                machine.memory_gib,
                machine.postgres.split(" on ").next().unwrap_or(&machine.postgres),
                settings.join(" ")
            );
        }
        out
    }
}

/// The runs beside a figure, created on first use.
fn beside<'a>(slot: &'a mut Option<Beside>, what: &str) -> &'a mut Beside {
    slot.get_or_insert_with(|| Beside { what: what.to_owned(), runs: Vec::new() })
}

pub(crate) fn median(values: &[f64]) -> f64 {
    let values = sorted(values.to_vec());
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

fn thousands(value: i64) -> String {
    let digits = value.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    if value < 0 { format!("-{out}") } else { out }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_of_an_even_sample_is_the_mean_of_the_middle_two() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
    }

    #[test]
    fn ratios_read_one_as_raw_sql_speed_whatever_the_unit() {
        let mut report = Report::default();
        report.taskq("drain", "tasks/s", Unit::PerSecond, Some(100.0), 50.0);
        report.raw("drain", "tasks/s", Unit::PerSecond, "pgbench", 100.0);
        report.taskq("latency", "p50", Unit::Millis, Some(2.0), 4.0);
        report.raw("latency", "p50", Unit::Millis, "pgbench", 2.0);
        assert_eq!(report.figures[0].ratio(), Some(0.5));
        assert_eq!(report.figures[1].ratio(), Some(0.5));
        assert_eq!(report.figures[0].target_met(), Some(false));
        assert_eq!(report.figures[1].target_met(), Some(false));
        assert!(report.table().contains("0.50"));
    }

    #[test]
    fn peer_ratios_read_above_one_as_taskq_ahead() {
        let mut report = Report::default();
        report.taskq("drain", "tasks/s", Unit::PerSecond, None, 130.0);
        report.peer("drain", "tasks/s", Unit::PerSecond, "peer", 100.0);
        report.taskq("latency", "p50", Unit::Millis, None, 2.0);
        report.peer("latency", "p50", Unit::Millis, "peer", 1.0);
        assert_eq!(report.figures[0].peer_ratio(), Some(1.3));
        assert_eq!(report.figures[1].peer_ratio(), Some(0.5));
        assert_eq!(report.figures[0].ratio(), None, "no raw SQL beside it");
        let table = report.table();
        assert!(table.contains("1.30") && table.contains("peer for drain / tasks/s: peer"), "{table}");
    }

    #[test]
    fn a_goal_can_ask_for_at_least_a_time_or_a_band_around_the_target() {
        let mut report = Report::default();
        report.taskq("ratelimit", "gap", Unit::Millis, Some(10.0), 10.0);
        report.figures[0].goal = Goal::AtLeast;
        report.taskq("ratelimit", "drain", Unit::Seconds, Some(20.0), 22.5);
        report.figures[1].goal = Goal::Within(0.1);
        report.taskq("ratelimit", "fast drain", Unit::Seconds, Some(20.0), 17.0);
        report.figures[2].goal = Goal::Within(0.1);
        let met: Vec<_> = report.figures.iter().map(Figure::target_met).collect();
        assert_eq!(met, [Some(true), Some(false), Some(false)], "too fast misses a band as too slow does");
        let table = report.table();
        assert!(table.contains("≥ 10.0") && table.contains("20.00 ± 10%"), "{table}");
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["figures"][0]["goal"], "at_least");
        assert!(json["figures"][0]["tolerance"].is_null());
        assert_eq!(json["figures"][1]["goal"], "within");
        assert_eq!(json["figures"][1]["tolerance"], 0.1);
    }

    #[test]
    fn large_rates_are_grouped_by_thousands() {
        assert_eq!(thousands(17_000), "17,000");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
