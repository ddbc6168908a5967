//! Results: one report per scenario run (table on stdout, JSON file), and the
//! side-by-side comparison of several reports.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Better {
    Higher,
    Lower,
    None,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Metric {
    pub key: String,
    pub value: f64,
    pub unit: String,
    pub better: Better,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// Scenario name, possibly tagged (`chat`, `chat-open`...).
    pub scenario: String,
    /// Which server this was (`xmppd`, `prosody`...).
    pub label: String,
    pub target: String,
    pub params: BTreeMap<String, String>,
    pub metrics: Vec<Metric>,
    /// Failures by kind.
    pub errors: BTreeMap<String, u64>,
    pub unix_time: u64,
}

impl Report {
    pub fn new(scenario: &str, label: &str, target: &str) -> Self {
        Report {
            scenario: scenario.to_string(),
            label: label.to_string(),
            target: target.to_string(),
            params: BTreeMap::new(),
            metrics: Vec::new(),
            errors: BTreeMap::new(),
            unix_time: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        }
    }

    pub fn param(&mut self, k: &str, v: impl ToString) {
        self.params.insert(k.to_string(), v.to_string());
    }

    pub fn metric(&mut self, key: &str, value: f64, unit: &str, better: Better) {
        self.metrics.push(Metric {
            key: key.to_string(),
            value,
            unit: unit.to_string(),
            better,
        });
    }

    pub fn get(&self, key: &str) -> Option<f64> {
        self.metrics.iter().find(|m| m.key == key).map(|m| m.value)
    }

    /// The human-readable result table.
    pub fn table(&self) -> String {
        let mut s = format!(
            "== {} against {} ({}) ==\n",
            self.scenario, self.label, self.target
        );
        let params: Vec<String> = self
            .params
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        s.push_str(&format!("parameters: {}\n", params.join(" ")));
        let w = self.metrics.iter().map(|m| m.key.len()).max().unwrap_or(10);
        for m in &self.metrics {
            s.push_str(&format!(
                "  {:<w$}  {:>14}  {}\n",
                m.key,
                fmt_num(m.value),
                m.unit
            ));
        }
        if self.errors.is_empty() {
            s.push_str("  errors: none\n");
        } else {
            let e: Vec<String> = self
                .errors
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            s.push_str(&format!("  errors: {}\n", e.join(" ")));
        }
        s
    }
}

pub fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        return "-".into();
    }
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 0.1 {
        format!("{v:.2}")
    } else {
        format!("{v:.4}")
    }
}

/// The markdown comparison table of several reports: one row per (scenario, metric),
/// one column per server, then the baseline's advantage over each other server
/// (> 1 means the baseline is better, whichever direction the metric goes).
pub fn compare(reports: &[Report], baseline: &str, keys: Option<&[String]>) -> String {
    let mut labels: Vec<String> = Vec::new();
    let mut scenarios: Vec<String> = Vec::new();
    for r in reports {
        if !labels.contains(&r.label) {
            labels.push(r.label.clone());
        }
        if !scenarios.contains(&r.scenario) {
            scenarios.push(r.scenario.clone());
        }
    }
    // baseline first
    labels.sort_by_key(|l| l != baseline);
    let others: Vec<&String> = labels.iter().filter(|l| *l != baseline).collect();
    let mut s = String::new();
    s.push_str("| scenario | metric | unit |");
    for l in &labels {
        s.push_str(&format!(" {l} |"));
    }
    for o in &others {
        s.push_str(&format!(" {baseline} vs {o} |"));
    }
    s.push_str("\n|---|---|---|");
    for _ in 0..labels.len() + others.len() {
        s.push_str("---:|");
    }
    s.push('\n');
    for sc in &scenarios {
        let of = |label: &str| {
            reports
                .iter()
                .rev()
                .find(|r| &r.scenario == sc && r.label == label)
        };
        // metric order: as they first appear in this scenario's reports (a failed run
        // may lack some)
        let mut metrics: Vec<&Metric> = Vec::new();
        for r in reports.iter().filter(|r| &r.scenario == sc) {
            for m in &r.metrics {
                if !metrics.iter().any(|x| x.key == m.key) {
                    metrics.push(m);
                }
            }
        }
        for m in metrics {
            if keys.is_some_and(|k| !k.iter().any(|k| k == &m.key)) {
                continue;
            }
            s.push_str(&format!("| {sc} | {} | {} |", m.key, m.unit));
            let base = of(baseline).and_then(|r| r.get(&m.key));
            for l in &labels {
                match of(l).and_then(|r| r.get(&m.key)) {
                    Some(v) => s.push_str(&format!(" {} |", fmt_num(v))),
                    None => s.push_str(" - |"),
                }
            }
            for o in &others {
                let other = of(o).and_then(|r| r.get(&m.key));
                let adv = match (base, other, m.better) {
                    (Some(b), Some(x), Better::Higher) if x > 0.0 => Some(b / x),
                    (Some(b), Some(x), Better::Lower) if b > 0.0 => Some(x / b),
                    _ => None,
                };
                match adv {
                    Some(a) => s.push_str(&format!(" {}× |", fmt_num(a))),
                    None => s.push_str(" |"),
                }
            }
            s.push('\n');
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comparison_advantage_follows_direction() {
        let mut a = Report::new("chat", "xmppd", "t");
        a.metric("msgs_per_s", 300.0, "msg/s", Better::Higher);
        a.metric("p99_ms", 1.0, "ms", Better::Lower);
        let mut b = Report::new("chat", "ejabberd", "t");
        b.metric("msgs_per_s", 100.0, "msg/s", Better::Higher);
        b.metric("p99_ms", 4.0, "ms", Better::Lower);
        let failed = Report::new("chat", "prosody", "t");
        let t = compare(&[failed, b, a], "xmppd", None);
        assert!(
            t.contains("| chat | msgs_per_s | msg/s | 300 | - | 100 | | 3.00× |"),
            "{t}"
        );
        assert!(
            t.contains("| chat | p99_ms | ms | 1.00 | - | 4.00 | | 4.00× |"),
            "{t}"
        );
    }
}
