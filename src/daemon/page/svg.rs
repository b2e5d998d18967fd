//! The status page's charts as geometry: path data, axis ticks and bar
//! offsets computed here from numbers, drawn as inline SVG by the
//! templates. Nothing here writes markup, so nothing here can inject any:
//! every value a template prints is a number or a label the template
//! escapes.

use serde::Serialize;

/// A sparkline's box, in SVG user units (CSS scales it).
pub const SPARK_W: f64 = 120.0;
pub const SPARK_H: f64 = 28.0;
/// A detail chart's plot box, beside its axis labels.
pub const CHART_W: f64 = 640.0;
pub const CHART_H: f64 = 200.0;

/// A path through `values` (left to right, evenly spaced; `None` leaves a
/// gap) in a `width` × `height` box, 0 at the bottom and `max` at the top.
/// A point with gaps on both sides is a zero-length segment, which a round
/// line cap draws as a dot.
pub fn path(values: &[Option<f64>], max: f64, width: f64, height: f64) -> String {
    path_below(values, max, width, height, 0.0)
}

/// [`path`] in a box whose top is `top` units down.
fn path_below(values: &[Option<f64>], max: f64, width: f64, height: f64, top: f64) -> String {
    let n = values.len();
    let step = if n > 1 { width / (n - 1) as f64 } else { 0.0 };
    let x0 = if n > 1 { 0.0 } else { width / 2.0 };
    let mut out = String::new();
    let mut open = false;
    for (i, v) in values.iter().enumerate() {
        let Some(v) = v.filter(|v| v.is_finite()) else {
            open = false;
            continue;
        };
        let x = x0 + step * i as f64;
        let y = top + y_of(v, max, height);
        let next_missing = values
            .get(i + 1)
            .is_none_or(|n| !n.is_some_and(f64::is_finite));
        if open {
            out.push_str(&format!(" L{x:.1} {y:.1}"));
        } else {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(&format!("M{x:.1} {y:.1}"));
            if next_missing {
                out.push_str(" h0");
            }
        }
        open = true;
    }
    out
}

fn y_of(v: f64, max: f64, height: f64) -> f64 {
    if max <= 0.0 {
        return height;
    }
    height - (v / max).clamp(0.0, 1.0) * height
}

/// The smallest 1, 2 or 5 × 10ⁿ at or above `v` (an axis' top), `None`
/// without a positive finite value.
pub fn nice_ceiling(v: f64) -> Option<f64> {
    if !(v.is_finite() && v > 0.0) {
        return None;
    }
    let magnitude = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|top| *top >= v * (1.0 - 1e-9))
}

/// A sparkline of one series: its path, and the figures its text
/// alternative names.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Spark {
    pub path: String,
    /// Where the newest value sits (a dot marks it).
    pub last: Option<(f64, f64)>,
    pub latest: Option<f64>,
    pub highest: Option<f64>,
    /// How many points have a value.
    pub points: usize,
}

/// A sparkline of `values`, scaled to their own highest value.
pub fn spark(values: &[Option<f64>]) -> Spark {
    let present: Vec<f64> = values
        .iter()
        .flatten()
        .copied()
        .filter(|v| v.is_finite())
        .collect();
    let highest = present.iter().copied().reduce(f64::max);
    let max = highest.unwrap_or(0.0);
    // A line along the very top or bottom would lose half its stroke.
    let pad = 2.0;
    let inner = SPARK_H - 2.0 * pad;
    let path = path_below(values, max, SPARK_W, inner, pad);
    let n = values.len();
    let last = values
        .iter()
        .enumerate()
        .rev()
        .find_map(|(i, v)| v.filter(|v| v.is_finite()).map(|v| (i, v)))
        .map(|(i, v)| {
            let x = if n > 1 {
                SPARK_W * i as f64 / (n - 1) as f64
            } else {
                SPARK_W / 2.0
            };
            (round1(x), round1(pad + y_of(v, max, inner)))
        });
    Spark {
        path,
        last,
        latest: values.last().copied().flatten(),
        highest,
        points: present.len(),
    }
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

/// One line of a chart.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Line {
    /// `p50`, `p95`, `p99`: the legend's text and the CSS class.
    pub name: &'static str,
    pub path: String,
    /// A marker at each point with a value (x, y), so a lone hour shows.
    pub dots: Vec<(f64, f64)>,
}

/// Where each point with a value sits in a `width` × `height` box.
fn dots(values: &[Option<f64>], max: f64, width: f64, height: f64) -> Vec<(f64, f64)> {
    let n = values.len();
    values
        .iter()
        .enumerate()
        .filter_map(|(i, v)| {
            let v = v.filter(|v| v.is_finite())?;
            let x = if n > 1 {
                width * i as f64 / (n - 1) as f64
            } else {
                width / 2.0
            };
            Some((round1(x), round1(y_of(v, max, height))))
        })
        .collect()
}

/// A tick on an axis: where (user units) and its label.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tick {
    pub at: f64,
    pub label: String,
}

/// A chart of a few series over the same time points.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Chart {
    pub width: f64,
    pub height: f64,
    pub lines: Vec<Line>,
    pub y_ticks: Vec<Tick>,
    pub x_ticks: Vec<Tick>,
    /// No series has a value: the template says so instead of drawing.
    pub empty: bool,
}

/// A chart of `series` (name, values), all over the same `labels` (one per
/// point: the x axis labels the first, middle and last), on a common y
/// axis from 0 to a round ceiling, labelled with `format`.
pub fn chart(
    series: &[(&'static str, Vec<Option<f64>>)],
    labels: &[String],
    format: impl Fn(f64) -> String,
) -> Chart {
    let highest = series
        .iter()
        .flat_map(|(_, v)| v.iter().flatten().copied())
        .filter(|v| v.is_finite())
        .reduce(f64::max);
    let top = highest.and_then(nice_ceiling);
    let max = top.unwrap_or(1.0);
    let lines = series
        .iter()
        .map(|(name, values)| Line {
            name,
            path: path(values, max, CHART_W, CHART_H),
            dots: dots(values, max, CHART_W, CHART_H),
        })
        .collect();
    let y_ticks = match top {
        Some(top) => (0..=4)
            .map(|i| {
                let v = top * f64::from(i) / 4.0;
                Tick {
                    at: round1(y_of(v, top, CHART_H)),
                    label: format(v),
                }
            })
            .collect(),
        None => Vec::new(),
    };
    let n = labels.len();
    let mut x_ticks = Vec::new();
    if n > 0 {
        let mut idx = vec![0, n / 2, n - 1];
        idx.dedup();
        for i in idx {
            let x = if n > 1 {
                CHART_W * i as f64 / (n - 1) as f64
            } else {
                CHART_W / 2.0
            };
            x_ticks.push(Tick {
                at: round1(x),
                label: labels[i].clone(),
            });
        }
    }
    Chart {
        width: CHART_W,
        height: CHART_H,
        lines,
        y_ticks,
        x_ticks,
        empty: highest.is_none(),
    }
}

/// A bar of a waterfall, in percent of the whole run's span.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bar {
    pub x: f64,
    pub width: f64,
}

/// Bars for spans (offset and duration, in µs) inside a run of `total` µs;
/// a span too short to see is drawn a little wide.
pub fn bars(spans: &[(i64, i64)], total: i64) -> Vec<Bar> {
    let total = spans
        .iter()
        .map(|(o, d)| o.saturating_add(*d))
        .chain(std::iter::once(total))
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    spans
        .iter()
        .map(|(offset, duration)| {
            let x = (*offset).max(0) as f64 / total * 100.0;
            let w = ((*duration).max(0) as f64 / total * 100.0).max(0.5);
            Bar {
                x: round1(x.min(99.5)),
                width: round1(w.min(100.0 - x.min(99.5))),
            }
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_path_leaves_gaps_and_dots_lone_points() {
        let d = path(
            &[Some(0.0), Some(1.0), None, Some(0.5), None],
            1.0,
            40.0,
            10.0,
        );
        assert_eq!(d, "M0.0 10.0 L10.0 0.0 M30.0 5.0 h0");
        assert_eq!(path(&[None, None], 1.0, 40.0, 10.0), "");
        // One point sits in the middle.
        assert_eq!(path(&[Some(1.0)], 2.0, 40.0, 10.0), "M20.0 5.0 h0");
        // Nothing outside the box, whatever the value.
        assert_eq!(
            path(&[Some(9.0), Some(-1.0)], 1.0, 10.0, 10.0),
            "M0.0 0.0 L10.0 10.0"
        );
    }

    #[test]
    fn axes_end_at_round_values() {
        assert_eq!(nice_ceiling(0.0123), Some(0.02));
        assert_eq!(nice_ceiling(0.05), Some(0.05));
        assert_eq!(nice_ceiling(0.051), Some(0.1));
        assert_eq!(nice_ceiling(3.2), Some(5.0));
        assert_eq!(nice_ceiling(0.0), None);
        assert_eq!(nice_ceiling(f64::NAN), None);
    }

    #[test]
    fn a_sparkline_names_its_figures_and_marks_the_newest() {
        let s = spark(&[Some(0.01), None, Some(0.04), Some(0.02)]);
        assert_eq!((s.latest, s.highest, s.points), (Some(0.02), Some(0.04), 3));
        assert_eq!(s.path, "M0.0 20.0 h0 M80.0 2.0 L120.0 14.0");
        assert_eq!(s.last, Some((120.0, 14.0)));
        let empty = spark(&[None; 24]);
        assert_eq!(
            (empty.path.as_str(), empty.last, empty.points),
            ("", None, 0)
        );
    }

    #[test]
    fn a_chart_shares_one_axis() {
        let c = chart(
            &[
                ("p50", vec![Some(0.01), Some(0.02)]),
                ("p99", vec![Some(0.03), None]),
            ],
            &["a".into(), "b".into()],
            |v| format!("{v:.2}"),
        );
        assert!(!c.empty);
        assert_eq!(c.y_ticks.last().map(|t| t.label.as_str()), Some("0.05"));
        assert_eq!(
            c.x_ticks.iter().map(|t| t.at).collect::<Vec<_>>(),
            vec![0.0, 640.0]
        );
        assert_eq!(c.lines[1].path, "M0.0 80.0 h0");
        assert_eq!(c.lines[1].dots, vec![(0.0, 80.0)]);
        assert_eq!(c.lines[0].dots, vec![(0.0, 160.0), (640.0, 120.0)]);
        assert!(chart(&[("p50", vec![None])], &["a".into()], |v| v.to_string()).empty);
    }

    #[test]
    fn bars_fit_the_run() {
        let b = bars(&[(0, 500), (500, 1500), (2000, 0)], 2000);
        assert_eq!(
            b,
            vec![
                Bar {
                    x: 0.0,
                    width: 25.0
                },
                Bar {
                    x: 25.0,
                    width: 75.0
                },
                Bar {
                    x: 99.5,
                    width: 0.5
                },
            ]
        );
    }
}
