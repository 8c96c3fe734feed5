//! Reading a run's `metrics.jsonl` (one `{"step", "tag", "value"}` object a line).

use std::collections::BTreeMap;
use std::path::Path;

/// Every record of a run, by tag, in step order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metrics {
    /// (step, value) pairs of each tag.
    pub by_tag: BTreeMap<String, Vec<(u64, f64)>>,
}

impl Metrics {
    /// Reads `metrics.jsonl`; a missing file is no records, lines that are not records
    /// (a line cut short by a crash) are skipped.
    pub fn read(path: &Path) -> Metrics {
        let mut m = Metrics::default();
        let Ok(text) = std::fs::read_to_string(path) else {
            return m;
        };
        for line in text.lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let (Some(step), Some(tag), Some(value)) = (
                v.get("step").and_then(|s| s.as_u64()),
                v.get("tag").and_then(|t| t.as_str()),
                v.get("value").and_then(|x| x.as_f64()),
            ) else {
                continue;
            };
            m.by_tag
                .entry(tag.to_string())
                .or_default()
                .push((step, value));
        }
        m
    }

    /// The last value of `tag`.
    pub fn last(&self, tag: &str) -> Option<f64> {
        self.by_tag.get(tag)?.last().map(|&(_, v)| v)
    }

    /// The first step at which `tag` reaches `threshold` (`>=`).
    pub fn first_step_reaching(&self, tag: &str, threshold: f64) -> Option<u64> {
        self.by_tag
            .get(tag)?
            .iter()
            .find(|&&(_, v)| v >= threshold)
            .map(|&(s, _)| s)
    }

    /// The tags matching `pattern`: an exact tag, or a prefix followed by `*`.
    pub fn matching<'a>(&'a self, pattern: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.by_tag
            .keys()
            .map(String::as_str)
            .filter(move |t| matches(pattern, t))
    }
}

/// Whether `tag` matches `pattern` (exact, or prefix with a trailing `*`).
pub fn matches(pattern: &str, tag: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => tag.starts_with(prefix),
        None => tag == pattern,
    }
}

/// Orders tags so that numbered parts sort by number (`d2` before `d10`).
pub fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    fn parts(s: &str) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        let mut text = String::new();
        let mut num = String::new();
        for c in s.chars() {
            if c.is_ascii_digit() {
                num.push(c);
            } else {
                if !num.is_empty() {
                    out.push((std::mem::take(&mut text), num.parse().unwrap_or(u64::MAX)));
                    num.clear();
                }
                text.push(c);
            }
        }
        out.push((text, num.parse().unwrap_or(0)));
        out
    }
    parts(a).cmp(&parts(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_records_and_finds_thresholds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        std::fs::write(
            &path,
            "{\"step\":5,\"tag\":\"eval/a\",\"value\":0.2}\n\
             {\"step\":10,\"tag\":\"eval/a\",\"value\":0.7}\n\
             {\"step\":10,\"tag\":\"train/loss\",\"value\":1.5}\n\
             {\"step\":15,\"tag\":\"eval/a\",\"value\":0.6}\n\
             {\"step\":20,\"tag\":\"eval/a\",\"val",
        )
        .unwrap();
        let m = Metrics::read(&path);
        assert_eq!(m.last("eval/a"), Some(0.6));
        assert_eq!(m.first_step_reaching("eval/a", 0.5), Some(10));
        assert_eq!(m.first_step_reaching("eval/a", 0.9), None);
        assert_eq!(m.matching("eval/*").collect::<Vec<_>>(), ["eval/a"]);
        assert_eq!(m.matching("train/loss").count(), 1);
        assert!(Metrics::read(&dir.path().join("none")).by_tag.is_empty());
    }

    #[test]
    fn natural_order() {
        let mut v = vec!["e/d10", "e/d2", "e/mean", "e/d1"];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(v, ["e/d1", "e/d2", "e/d10", "e/mean"]);
    }
}
