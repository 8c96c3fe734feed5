//! PNG plots of a sweep: a metric (or compute to a threshold) against an axis, one line per
//! value of another axis, the mean over runs with its 95% bootstrap interval as error bars,
//! and optionally a power-law fit per line with its exponent in the legend.

use std::collections::BTreeMap;
use std::path::Path;

use plotters::prelude::*;

use serde::{Deserialize, Serialize};

use crate::stats::{fit_power_law, summarize};

/// Derived columns a plot may use as its x axis besides the axes.
pub const DERIVED_X: [&str; 4] = ["params", "examples", "updates", "difficulty"];

/// What compute-to-threshold counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compute {
    /// Updates (training steps).
    #[default]
    Updates,
    /// Training problems (env samples): updates times `train.batch_size`.
    Samples,
}

/// One plot (`[[report.plot]]`, or `--plot x=...,y=...`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlotSpec {
    /// The x axis: an axis name, `params` (model parameters), `examples` (training problems:
    /// updates times batch size), `updates` (`train.steps`) or `difficulty`: one point per
    /// tag matching `y` (a pattern ending in `*`, such as `eval/accuracy/greedy/d*`), at the
    /// number that ends the tag (the hop count, the digit count).
    pub x: String,
    /// The metric tag on the y axis (its final value), or, with `threshold`, the metric
    /// whose first crossing is measured.
    pub y: String,
    /// One line per value of this axis.
    pub lines: Option<String>,
    /// Plot compute until `y` first reaches this value instead of `y` itself.
    pub threshold: Option<f64>,
    /// What compute-to-threshold counts.
    #[serde(default)]
    pub compute: Compute,
    /// Fit a power law per line (log-log least squares) and show its exponent with a 95%
    /// confidence interval.
    #[serde(default)]
    pub fit: bool,
    /// Logarithmic x axis.
    #[serde(default)]
    pub log_x: bool,
    /// Logarithmic y axis.
    #[serde(default)]
    pub log_y: bool,
    /// Only points with these axis values (axis name to value as in the point names).
    #[serde(default)]
    pub select: BTreeMap<String, String>,
    /// The PNG file name under `report/` (default from x and y).
    pub file: Option<String>,
}

impl PlotSpec {
    /// Parses `x=AXIS,y=TAG[,lines=AXIS][,threshold=V][,compute=samples][,fit][,log_x]
    /// [,log_y][,file=NAME][,select.AXIS=VALUE]`.
    pub fn parse_arg(arg: &str) -> Result<PlotSpec, String> {
        let mut table = toml::Table::new();
        let mut select = toml::Table::new();
        for part in arg.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').unwrap_or((part, "true"));
            let value = match k {
                "threshold" => toml::Value::Float(
                    v.parse()
                        .map_err(|_| format!("--plot {arg}: threshold={v} is not a number"))?,
                ),
                "fit" | "log_x" | "log_y" => toml::Value::Boolean(
                    v.parse()
                        .map_err(|_| format!("--plot {arg}: {k}={v} is not true or false"))?,
                ),
                _ => toml::Value::String(v.to_string()),
            };
            match k.strip_prefix("select.") {
                Some(axis) => {
                    select.insert(axis.to_string(), toml::Value::String(v.to_string()));
                }
                None => {
                    table.insert(k.to_string(), value);
                }
            }
        }
        if !select.is_empty() {
            table.insert("select".into(), toml::Value::Table(select));
        }
        PlotSpec::deserialize(toml::Value::Table(table))
            .map_err(|e| format!("--plot {arg}: {}", e.to_string().trim()))
    }

    /// Checks that the axes it names are among `names`.
    pub fn check(&self, names: &[&str]) -> Result<(), String> {
        let known = |n: &str| names.contains(&n);
        if !known(&self.x) && !DERIVED_X.contains(&self.x.as_str()) {
            return Err(format!(
                "x = {:?}: expected an axis ({}) or one of {}",
                self.x,
                names.join(", "),
                DERIVED_X.join(", ")
            ));
        }
        if self.x == "difficulty" && !self.y.ends_with('*') {
            return Err(format!(
                "x = \"difficulty\" needs y to be a pattern ending in '*' (such as \
                 \"eval/accuracy/greedy/d*\"), not {:?}",
                self.y
            ));
        }
        for n in self.lines.iter().chain(self.select.keys()) {
            if !known(n) {
                return Err(format!("{n:?} is not an axis (axes: {})", names.join(", ")));
            }
        }
        Ok(())
    }

    /// The PNG file name under `report/`.
    pub fn file_name(&self) -> String {
        self.file.clone().unwrap_or_else(|| {
            // A pattern's `*` (and any other character a shell would read) becomes `_`.
            let y: String = self
                .y
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            match self.threshold {
                Some(t) => format!(
                    "{}_to_{y}_{t}_vs_{}.png",
                    compute_name(self.compute),
                    self.x
                ),
                None => format!("{y}_vs_{}.png", self.x),
            }
        })
    }
}

fn compute_name(c: Compute) -> &'static str {
    match c {
        Compute::Updates => "updates",
        Compute::Samples => "samples",
    }
}

/// One line of a plot.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Its legend label (`axis=value`, or empty for a single line).
    pub name: String,
    /// One (x, y) per finished run.
    pub points: Vec<(f64, f64)>,
    /// Runs without a value (no x, no record, or threshold never reached).
    pub missing: usize,
}

/// Colour-blind-safe colours (Okabe-Ito).
const PALETTE: [RGBColor; 7] = [
    RGBColor(0x00, 0x72, 0xb2),
    RGBColor(0xe6, 0x9f, 0x00),
    RGBColor(0x00, 0x9e, 0x73),
    RGBColor(0xd5, 0x5e, 0x00),
    RGBColor(0xcc, 0x79, 0xa7),
    RGBColor(0x56, 0xb4, 0xe9),
    RGBColor(0x33, 0x33, 0x33),
];

/// One x position of a line: mean and interval of the runs there.
struct Mark {
    x: f64,
    mean: f64,
    low: f64,
    high: f64,
}

fn marks(points: &[(f64, f64)]) -> Vec<Mark> {
    let mut xs: Vec<f64> = points.iter().map(|p| p.0).collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    xs.into_iter()
        .filter_map(|x| {
            let ys: Vec<f64> = points.iter().filter(|p| p.0 == x).map(|p| p.1).collect();
            let s = summarize(&ys)?;
            Some(Mark {
                x,
                mean: s.mean,
                low: s.ci_low,
                high: s.ci_high,
            })
        })
        .collect()
}

/// The y axis's label.
fn y_label(p: &PlotSpec) -> String {
    match p.threshold {
        None => p.y.clone(),
        Some(t) => format!(
            "{} until {} >= {t}",
            match p.compute {
                Compute::Updates => "updates",
                Compute::Samples => "training problems",
            },
            p.y
        ),
    }
}

fn x_label(p: &PlotSpec) -> String {
    match p.x.as_str() {
        "params" => "model parameters".into(),
        "examples" => "training problems (steps x batch size)".into(),
        "updates" => "updates".into(),
        axis => axis.into(),
    }
}

/// A tick label: the value itself, or 10^v on a log axis (whose ticks fall between round
/// numbers, hence two significant digits there).
fn tick(v: f64, log: bool) -> String {
    let v = if log { 10f64.powf(v) } else { v };
    if v == 0.0 {
        return "0".into();
    }
    let a = v.abs();
    if !(1e-3..1e5).contains(&a) {
        return format!("{v:.1e}");
    }
    let digits = if log {
        (1 - a.log10().floor() as i32).max(0) as usize
    } else {
        3
    };
    let s = format!("{v:.digits$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    if log && a >= 100.0 {
        // Two significant digits: 1122 -> 1100.
        let scale = 10f64.powi(a.log10().floor() as i32 - 1);
        return format!("{}", (v / scale).round() * scale);
    }
    s
}

/// Draws the plot to `path`; returns one line per fitted power law.
pub fn draw(path: &Path, p: &PlotSpec, series: &[Series]) -> Result<Vec<String>, String> {
    let err = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let tx = |x: f64| if p.log_x { x.log10() } else { x };
    let ty = |y: f64| if p.log_y { y.log10() } else { y };
    let ok = |x: f64, y: f64| (!p.log_x || x > 0.0) && (!p.log_y || y > 0.0);
    let lines: Vec<(&Series, Vec<Mark>)> = series
        .iter()
        .map(|s| {
            let pts: Vec<(f64, f64)> = s
                .points
                .iter()
                .copied()
                .filter(|&(x, y)| ok(x, y))
                .collect();
            (s, marks(&pts))
        })
        .collect();
    let all: Vec<(f64, f64)> = lines
        .iter()
        .flat_map(|(_, ms)| {
            ms.iter()
                .flat_map(|m| [(m.x, m.low), (m.x, m.high), (m.x, m.mean)])
        })
        .filter(|&(x, y)| ok(x, y))
        .map(|(x, y)| (tx(x), ty(y)))
        .collect();
    if all.is_empty() {
        return Err(format!(
            "{}: no finished run has both {} and {} (on a log axis, values must be > 0)",
            path.display(),
            p.x,
            y_label(p)
        ));
    }
    let span = |vals: &mut dyn Iterator<Item = f64>| {
        let (lo, hi) = vals.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
        let pad = if hi > lo { 0.06 * (hi - lo) } else { 0.5 };
        (lo - pad, hi + pad)
    };
    let (x0, x1) = span(&mut all.iter().map(|q| q.0));
    let (y0, y1) = span(&mut all.iter().map(|q| q.1));

    let root = BitMapBackend::new(path, (960, 640)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let title = format!("{} vs {}", y_label(p), x_label(p));
    let mut chart = ChartBuilder::on(&root)
        .caption(&title, ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(|e| err(&e))?;
    let log_note = |log: bool| if log { " (log scale)" } else { "" };
    chart
        .configure_mesh()
        .x_desc(format!("{}{}", x_label(p), log_note(p.log_x)))
        .y_desc(format!("{}{}", y_label(p), log_note(p.log_y)))
        .x_label_formatter(&|v| tick(*v, p.log_x))
        .y_label_formatter(&|v| tick(*v, p.log_y))
        .axis_desc_style(("sans-serif", 16))
        .draw()
        .map_err(|e| err(&e))?;

    let mut fits = Vec::new();
    for (i, (s, ms)) in lines.iter().enumerate() {
        if ms.is_empty() {
            continue;
        }
        let color = PALETTE[i % PALETTE.len()];
        let style = ShapeStyle::from(&color).stroke_width(2);
        let mut label = if s.name.is_empty() {
            p.y.clone()
        } else {
            s.name.clone()
        };
        if p.fit {
            let pts: Vec<(f64, f64)> = s.points.to_vec();
            match fit_power_law(&pts) {
                Some(f) => {
                    let ci = f
                        .exponent_ci
                        .map_or("no interval with 2 points".to_string(), |c| {
                            format!("± {c:.3}")
                        });
                    label = format!(
                        "{label}: exponent {:.3} {ci} (95% CI, {} runs)",
                        f.exponent, f.n
                    );
                    fits.push(format!(
                        "power law {}: {} ~ {:.4} * {}^{:.4} {} (95% CI, {} runs)",
                        if s.name.is_empty() { "all" } else { &s.name },
                        y_label(p),
                        f.a,
                        p.x,
                        f.exponent,
                        ci,
                        f.n
                    ));
                    let (a, b) = (ms[0].x, ms[ms.len() - 1].x);
                    let curve: Vec<(f64, f64)> = (0..=50)
                        .map(|k| {
                            let x = if p.log_x && a > 0.0 {
                                a * (b / a).powf(k as f64 / 50.0)
                            } else {
                                a + (b - a) * k as f64 / 50.0
                            };
                            (x, f.a * x.powf(f.exponent))
                        })
                        .filter(|&(x, y)| ok(x, y))
                        .map(|(x, y)| (tx(x), ty(y)))
                        .collect();
                    chart
                        .draw_series(std::iter::once(PathElement::new(
                            curve,
                            ShapeStyle::from(&color.mix(0.5)).stroke_width(1),
                        )))
                        .map_err(|e| err(&e))?;
                }
                None => {
                    label = format!("{label}: no fit (fewer than 2 distinct x > 0)");
                    fits.push(format!(
                        "no power law {}: {} has fewer than 2 distinct {} > 0",
                        if s.name.is_empty() { "all" } else { &s.name },
                        y_label(p),
                        p.x
                    ));
                }
            }
        }
        if s.missing > 0 {
            label = format!("{label} [{} run(s) without a value]", s.missing);
        }
        let path_pts: Vec<(f64, f64)> = ms.iter().map(|m| (tx(m.x), ty(m.mean))).collect();
        chart
            .draw_series(std::iter::once(PathElement::new(path_pts.clone(), style)))
            .map_err(|e| err(&e))?;
        chart
            .draw_series(
                ms.iter()
                    .filter(|m| m.high > m.low && ok(m.x, m.low))
                    .map(|m| {
                        PathElement::new(vec![(tx(m.x), ty(m.low)), (tx(m.x), ty(m.high))], style)
                    }),
            )
            .map_err(|e| err(&e))?;
        let filled = color.filled();
        // One marker shape per line: circle, triangle, square, cross.
        let anno = match i % 4 {
            0 => chart
                .draw_series(path_pts.iter().map(|&q| Circle::new(q, 5, filled)))
                .map_err(|e| err(&e))?
                .label(label)
                .legend(move |(x, y)| Circle::new((x, y), 5, filled)),
            1 => chart
                .draw_series(path_pts.iter().map(|&q| TriangleMarker::new(q, 7, filled)))
                .map_err(|e| err(&e))?
                .label(label)
                .legend(move |(x, y)| TriangleMarker::new((x, y), 7, filled)),
            2 => chart
                .draw_series(
                    path_pts
                        .iter()
                        .map(|&q| EmptyElement::at(q) + Rectangle::new([(-5, -5), (5, 5)], filled)),
                )
                .map_err(|e| err(&e))?
                .label(label)
                .legend(move |(x, y)| Rectangle::new([(x - 5, y - 5), (x + 5, y + 5)], filled)),
            _ => chart
                .draw_series(path_pts.iter().map(|&q| Cross::new(q, 6, style)))
                .map_err(|e| err(&e))?
                .label(label)
                .legend(move |(x, y)| Cross::new((x, y), 6, style)),
        };
        let _ = anno;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(fits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plot_arguments_parse() {
        let p = PlotSpec::parse_arg(
            "x=updates,y=eval/accuracy/greedy/mean,lines=heads,threshold=0.9,compute=samples,fit,log_x,select.width=2-8",
        )
        .unwrap();
        assert_eq!(p.x, "updates");
        assert_eq!(p.lines.as_deref(), Some("heads"));
        assert_eq!(p.threshold, Some(0.9));
        assert_eq!(p.compute, Compute::Samples);
        assert!(p.fit && p.log_x && !p.log_y);
        assert_eq!(p.select.get("width").map(String::as_str), Some("2-8"));
        let e = PlotSpec::parse_arg("x=steps").unwrap_err();
        assert!(e.contains("missing field `y`"), "{e}");
        let e = PlotSpec::parse_arg("x=steps,y=a,colour=red").unwrap_err();
        assert!(e.contains("unknown field `colour`"), "{e}");
        let e = PlotSpec::parse_arg("x=steps,y=a,threshold=high").unwrap_err();
        assert!(e.contains("threshold=high"), "{e}");
    }

    #[test]
    fn ticks() {
        assert_eq!(tick(2.0, true), "100");
        assert_eq!(tick(1122.018f64.log10(), true), "1100");
        assert_eq!(tick(0.0123f64.log10(), true), "0.012");
        assert_eq!(tick(3.16f64.log10(), true), "3.2");
        assert_eq!(tick(0.5, false), "0.5");
        assert_eq!(tick(123456.0, false), "1.2e5");
    }

    #[test]
    fn draws_a_png_with_a_fit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.png");
        let spec = PlotSpec::parse_arg("x=params,y=eval/loss,lines=seed,fit,log_x,log_y").unwrap();
        let series = vec![
            Series {
                name: "depth=1".into(),
                points: vec![(10.0, 1.0), (100.0, 0.5), (1000.0, 0.26), (1000.0, 0.24)],
                missing: 0,
            },
            Series {
                name: "depth=2".into(),
                points: vec![(10.0, 2.0), (100.0, 0.9), (1000.0, 0.5)],
                missing: 1,
            },
        ];
        let fits = draw(&path, &spec, &series).unwrap();
        assert_eq!(fits.len(), 2);
        assert!(fits[0].contains("params^-0.3012 ± 0.045"), "{}", fits[0]);
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
        let none = vec![Series {
            name: String::new(),
            points: vec![],
            missing: 3,
        }];
        assert!(draw(&path, &spec, &none)
            .unwrap_err()
            .contains("no finished run"));
    }
}
