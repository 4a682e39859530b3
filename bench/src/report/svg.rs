//! A small hand-written SVG line chart: axes, ticks, gridlines, labels, a
//! legend and a title, one polyline per series. Hand-written because the
//! report needs only this one kind of chart, and a plotting crate would
//! bring fonts and system libraries for it; the output is plain text,
//! deterministic (same input, same bytes), and opens in any browser.

use std::fmt::Write as _;

/// Width of the drawing in user units (the `viewBox`; it scales).
const WIDTH: f64 = 960.0;
/// Height of the drawing.
const HEIGHT: f64 = 540.0;
/// The plot area: left, top, right and bottom edges. The right margin
/// holds the legend.
const PLOT: (f64, f64, f64, f64) = (90.0, 76.0, 790.0, 470.0);

/// Series colours: the Okabe–Ito palette, distinct for colour-blind
/// readers too (its yellow is left out: unreadable on white).
const COLOURS: [&str; 7] = [
    "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000",
];

/// How an axis maps values to positions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scale {
    /// Equal steps for equal differences; fitted ranges include zero.
    Linear,
    /// Equal steps for equal ratios; values ≤ 0 cannot be drawn and are
    /// left out.
    Log,
}

/// One axis.
#[derive(Clone, Debug)]
pub struct Axis {
    /// The axis title, units included.
    pub label: String,
    /// Linear or logarithmic.
    pub scale: Scale,
    /// A fixed range in data units; `None` fits the data.
    pub range: Option<(f64, f64)>,
    /// Fixed ticks (value, label); `None` chooses round values. Ticks
    /// outside the range are not drawn.
    pub ticks: Option<Vec<(f64, String)>>,
}

impl Axis {
    /// A fitted axis with chosen ticks.
    pub fn new(label: impl Into<String>, scale: Scale) -> Self {
        Self {
            label: label.into(),
            scale,
            range: None,
            ticks: None,
        }
    }
}

/// One line.
#[derive(Clone, Debug)]
pub struct Series {
    /// Its name in the legend.
    pub name: String,
    /// `(x, y)` in data units, drawn in order.
    pub points: Vec<(f64, f64)>,
}

/// A line chart, rendered by [`LineChart::render`].
#[derive(Clone, Debug)]
pub struct LineChart {
    /// Title, at the top.
    pub title: String,
    /// One line under the title: what was measured and how to read it.
    pub subtitle: String,
    /// Horizontal axis.
    pub x: Axis,
    /// Vertical axis.
    pub y: Axis,
    /// The lines, one legend entry each.
    pub series: Vec<Series>,
}

/// An axis resolved against the data: its range (in scale units, i.e.
/// log10 of the value on a log axis) and its ticks.
struct Resolved {
    scale: Scale,
    lo: f64,
    hi: f64,
    ticks: Vec<(f64, String)>,
}

impl Resolved {
    fn new(axis: &Axis, values: impl Iterator<Item = f64>) -> Self {
        let (lo, hi) = axis
            .range
            .filter(|(lo, hi)| drawable(axis.scale, *lo) && drawable(axis.scale, *hi) && lo < hi)
            .unwrap_or_else(|| fit(axis.scale, values));
        let (lo, hi, chosen) = match axis.scale {
            Scale::Linear => linear_ticks(lo, hi, axis.range.is_some()),
            Scale::Log => log_ticks(lo, hi, axis.range.is_some()),
        };
        let ticks = match &axis.ticks {
            Some(fixed) => fixed
                .iter()
                .filter(|(v, _)| drawable(axis.scale, *v))
                .map(|(v, l)| (to_scale(axis.scale, *v), l.clone()))
                .filter(|(v, _)| *v >= lo - 1e-9 && *v <= hi + 1e-9)
                .collect(),
            None => chosen,
        };
        Self {
            scale: axis.scale,
            lo,
            hi,
            ticks,
        }
    }

    /// Where `v` (data units) falls between `from` and `to` (pixels), or
    /// `None` when the scale cannot show it.
    fn place(&self, v: f64, from: f64, to: f64) -> Option<f64> {
        if !drawable(self.scale, v) {
            return None;
        }
        let s = to_scale(self.scale, v);
        Some(from + (s - self.lo) / (self.hi - self.lo) * (to - from))
    }

    /// Where a tick (scale units) falls.
    fn place_tick(&self, s: f64, from: f64, to: f64) -> f64 {
        from + (s - self.lo) / (self.hi - self.lo) * (to - from)
    }
}

fn drawable(scale: Scale, v: f64) -> bool {
    v.is_finite() && (scale == Scale::Linear || v > 0.0)
}

fn to_scale(scale: Scale, v: f64) -> f64 {
    match scale {
        Scale::Linear => v,
        Scale::Log => v.log10(),
    }
}

/// The data's range in data units, or a unit range when there is none.
fn fit(scale: Scale, values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| drawable(scale, *v))
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    match scale {
        _ if lo > hi => match scale {
            Scale::Linear => (0.0, 1.0),
            Scale::Log => (1.0, 10.0),
        },
        Scale::Linear => (lo.min(0.0), hi.max(0.0)),
        Scale::Log => (lo, hi),
    }
}

/// A round range covering `lo..=hi` and ticks at a 1, 2 or 5 × 10ⁿ step
/// (about six of them). A fixed range is kept as given.
fn linear_ticks(lo: f64, hi: f64, fixed: bool) -> (f64, f64, Vec<(f64, String)>) {
    let span = if hi > lo { hi - lo } else { lo.abs().max(1.0) };
    let raw = span / 6.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * magnitude);
    let (lo, hi) = if fixed {
        (lo, hi)
    } else {
        let lo = (lo / step).floor() * step;
        // A value a hair past a round tick (a 4.003 s run) does not earn a
        // whole empty step; it is clipped by less than a pixel instead.
        let hi = ((hi / step - 0.02).ceil() * step).max(lo + step);
        (lo, hi)
    };
    let first = (lo / step - 1e-9).ceil() as i64;
    let last = (hi / step + 1e-9).floor() as i64;
    let ticks = (first..=last)
        .map(|i| {
            let v = i as f64 * step;
            (v, number(v))
        })
        .collect();
    (lo, hi, ticks)
}

/// Whole decades covering `lo..=hi` (data units; returned in log10 units),
/// with ticks at each power of ten, and at 2× and 5× when the range spans
/// few decades.
fn log_ticks(lo: f64, hi: f64, fixed: bool) -> (f64, f64, Vec<(f64, String)>) {
    let (mut lo, mut hi) = (lo.log10(), hi.log10());
    if !fixed {
        lo = lo.floor();
        hi = hi.ceil();
        if hi <= lo {
            hi = lo + 1.0;
        }
    }
    let mantissas: &[f64] = if hi - lo <= 3.0 {
        &[1.0, 2.0, 5.0]
    } else {
        &[1.0]
    };
    let mut ticks = Vec::new();
    for decade in (lo.floor() as i64)..=(hi.ceil() as i64) {
        for m in mantissas {
            let v = m * 10f64.powi(decade as i32);
            let s = v.log10();
            if s >= lo - 1e-9 && s <= hi + 1e-9 {
                ticks.push((s, number(v)));
            }
        }
    }
    (lo, hi, ticks)
}

/// A tick label: at most three decimals, no trailing zeros, thousands as
/// `k` and millions as `M`.
pub fn number(v: f64) -> String {
    let trim = |s: String| {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    };
    let a = v.abs();
    if a >= 1e6 {
        format!("{}M", trim(format!("{:.2}", v / 1e6)))
    } else if a >= 1e4 {
        format!("{}k", trim(format!("{:.1}", v / 1e3)))
    } else if a == 0.0 || a >= 0.001 {
        trim(format!("{v:.3}"))
    } else {
        format!("{v:.0e}")
    }
}

/// `s` with the five XML special characters escaped.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

impl LineChart {
    /// The chart as a standalone SVG document.
    pub fn render(&self) -> String {
        let (left, top, right, bottom) = PLOT;
        let x = Resolved::new(
            &self.x,
            self.series
                .iter()
                .flat_map(|s| s.points.iter().map(|p| p.0)),
        );
        let y = Resolved::new(
            &self.y,
            self.series
                .iter()
                .flat_map(|s| s.points.iter().map(|p| p.1)),
        );
        let mut out = String::new();
        let _ = writeln!(
            out,
            r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" font-family="Helvetica, Arial, sans-serif" font-size="13" fill="#222">"##
        );
        let _ = writeln!(
            out,
            r#"<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>"#
        );
        let _ = writeln!(
            out,
            r#"<text x="{left}" y="30" font-size="19" font-weight="bold">{}</text>"#,
            escape(&self.title)
        );
        let _ = writeln!(
            out,
            r##"<text x="{left}" y="53" font-size="13" fill="#555">{}</text>"##,
            escape(&self.subtitle)
        );
        let _ = writeln!(
            out,
            r#"<clipPath id="plot"><rect x="{left}" y="{top}" width="{}" height="{}"/></clipPath>"#,
            right - left,
            bottom - top
        );
        // Gridlines and tick labels.
        let _ = writeln!(out, r##"<g stroke="#e3e3e3" stroke-width="1">"##);
        for (s, _) in &x.ticks {
            let px = x.place_tick(*s, left, right);
            let _ = writeln!(
                out,
                r#"<line x1="{px:.1}" y1="{top}" x2="{px:.1}" y2="{bottom}"/>"#
            );
        }
        for (s, _) in &y.ticks {
            let py = y.place_tick(*s, bottom, top);
            let _ = writeln!(
                out,
                r#"<line x1="{left}" y1="{py:.1}" x2="{right}" y2="{py:.1}"/>"#
            );
        }
        let _ = writeln!(out, "</g>");
        let _ = writeln!(
            out,
            r##"<rect x="{left}" y="{top}" width="{}" height="{}" fill="none" stroke="#888"/>"##,
            right - left,
            bottom - top
        );
        let _ = writeln!(out, r##"<g font-size="12" fill="#444">"##);
        for (s, label) in &x.ticks {
            let px = x.place_tick(*s, left, right);
            let _ = writeln!(
                out,
                r#"<text x="{px:.1}" y="{}" text-anchor="middle">{}</text>"#,
                bottom + 18.0,
                escape(label)
            );
        }
        for (s, label) in &y.ticks {
            let py = y.place_tick(*s, bottom, top);
            let _ = writeln!(
                out,
                r#"<text x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
                left - 8.0,
                py + 4.0,
                escape(label)
            );
        }
        let _ = writeln!(out, "</g>");
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{}</text>"#,
            (left + right) / 2.0,
            bottom + 46.0,
            escape(&self.x.label)
        );
        let (ly, lx) = ((top + bottom) / 2.0, 24.0);
        let _ = writeln!(
            out,
            r#"<text x="{lx}" y="{ly:.1}" text-anchor="middle" transform="rotate(-90 {lx} {ly:.1})">{}</text>"#,
            escape(&self.y.label)
        );
        self.lines(&mut out, &x, &y);
        self.legend(&mut out);
        if self.series.iter().all(|s| s.points.is_empty()) {
            let _ = writeln!(
                out,
                r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#888">no data</text>"##,
                (left + right) / 2.0,
                (top + bottom) / 2.0
            );
        }
        out.push_str("</svg>\n");
        out
    }

    /// One polyline per series (an empty one for a series with no drawable
    /// point, so every legend entry has its line).
    fn lines(&self, out: &mut String, x: &Resolved, y: &Resolved) {
        let (left, top, right, bottom) = PLOT;
        let _ = writeln!(
            out,
            r#"<g clip-path="url(#plot)" fill="none" stroke-width="2" stroke-linejoin="round">"#
        );
        for (i, series) in self.series.iter().enumerate() {
            let points: Vec<String> = series
                .points
                .iter()
                .filter_map(|&(px, py)| {
                    Some(format!(
                        "{:.1},{:.1}",
                        x.place(px, left, right)?,
                        y.place(py, bottom, top)?
                    ))
                })
                .collect();
            let _ = writeln!(
                out,
                r#"<polyline stroke="{}" points="{}"><title>{}</title></polyline>"#,
                COLOURS[i % COLOURS.len()],
                points.join(" "),
                escape(&series.name)
            );
        }
        let _ = writeln!(out, "</g>");
    }

    fn legend(&self, out: &mut String) {
        let (_, top, right, _) = PLOT;
        let _ = writeln!(out, r#"<g font-size="13">"#);
        for (i, series) in self.series.iter().enumerate() {
            let y = top + 12.0 + 22.0 * i as f64;
            let _ = writeln!(
                out,
                r#"<line x1="{}" y1="{y}" x2="{}" y2="{y}" stroke="{}" stroke-width="3"/>"#,
                right + 16.0,
                right + 40.0,
                COLOURS[i % COLOURS.len()]
            );
            let _ = writeln!(
                out,
                r#"<text x="{}" y="{}">{}</text>"#,
                right + 48.0,
                y + 4.5,
                escape(&series.name)
            );
        }
        let _ = writeln!(out, "</g>");
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Checks that `svg` is well-formed as far as a chart needs: every tag
    /// closed in order, attribute quotes balanced, no raw `&` or `<` in
    /// text. Returns the number of each element name seen.
    pub(crate) fn check_well_formed(svg: &str) -> std::collections::BTreeMap<String, usize> {
        let mut stack: Vec<String> = Vec::new();
        let mut seen = std::collections::BTreeMap::new();
        let mut rest = svg;
        while let Some(open) = rest.find('<') {
            let text = &rest[..open];
            assert_entities(text);
            let close = rest[open..].find('>').expect("unclosed tag") + open;
            let tag = &rest[open + 1..close];
            assert_eq!(tag.matches('"').count() % 2, 0, "quotes in <{tag}>");
            assert!(!tag.contains('<'), "'<' inside <{tag}>");
            if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(stack.pop().as_deref(), Some(name), "closing </{name}>");
            } else {
                let name: String = tag
                    .chars()
                    .take_while(|c| !c.is_whitespace() && *c != '/')
                    .collect();
                *seen.entry(name.clone()).or_insert(0) += 1;
                if !tag.ends_with('/') {
                    stack.push(name);
                }
            }
            rest = &rest[close + 1..];
        }
        assert_entities(rest);
        assert!(stack.is_empty(), "unclosed: {stack:?}");
        assert_eq!(seen.get("svg"), Some(&1), "one root");
        seen
    }

    fn assert_entities(text: &str) {
        for (i, _) in text.match_indices('&') {
            let entity = &text[i..];
            assert!(
                ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"]
                    .iter()
                    .any(|e| entity.starts_with(e)),
                "raw & in {text:?}"
            );
        }
    }

    fn chart(series: Vec<Series>, x: Scale, y: Scale) -> LineChart {
        LineChart {
            title: "Latency <by> path & \"percentile\"".into(),
            subtitle: "it's a test".into(),
            x: Axis::new("x", x),
            y: Axis::new("y", y),
            series,
        }
    }

    fn series(name: &str, points: &[(f64, f64)]) -> Series {
        Series {
            name: name.into(),
            points: points.to_vec(),
        }
    }

    #[test]
    fn one_polyline_per_series_and_well_formed() {
        let svg = chart(
            vec![
                series("direct", &[(0.0, 1.2), (1.0, 2.5), (2.0, 9.0)]),
                series("tunnel <&>", &[(0.0, 8.0), (1.0, 12.0), (3.0, 40.0)]),
                series("empty", &[]),
            ],
            Scale::Linear,
            Scale::Log,
        )
        .render();
        let seen = check_well_formed(&svg);
        assert_eq!(seen.get("polyline"), Some(&3));
        assert!(svg.contains("tunnel &lt;&amp;&gt;"));
        assert!(svg.contains("Latency &lt;by&gt; path &amp; &quot;percentile&quot;"));
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
    }

    #[test]
    fn log_axes_survive_zero_negative_and_empty_data() {
        for points in [
            vec![],
            vec![(0.0, 0.0)],
            vec![(0.0, 0.0), (-1.0, -5.0)],
            vec![(f64::NAN, f64::INFINITY)],
            vec![(3.0, 3.0)],
            vec![(1.0, 0.0), (2.0, 5.0)],
        ] {
            for (x, y) in [
                (Scale::Log, Scale::Log),
                (Scale::Linear, Scale::Log),
                (Scale::Linear, Scale::Linear),
            ] {
                let svg = chart(vec![series("s", &points)], x, y).render();
                check_well_formed(&svg);
                assert!(
                    !svg.contains("NaN") && !svg.contains("inf"),
                    "{points:?} {x:?} {y:?}: {svg}"
                );
            }
        }
        let empty = chart(Vec::new(), Scale::Log, Scale::Log).render();
        assert!(empty.contains("no data"));
        check_well_formed(&empty);
    }

    #[test]
    fn output_is_deterministic() {
        let make = || {
            chart(
                vec![series("a", &[(0.0, 1.0), (1.5, 2.25)])],
                Scale::Linear,
                Scale::Linear,
            )
            .render()
        };
        assert_eq!(make(), make());
    }

    #[test]
    fn fixed_ticks_outside_the_range_are_dropped() {
        let mut c = chart(
            vec![series("a", &[(0.0, 1.0), (2.0, 2.0)])],
            Scale::Linear,
            Scale::Linear,
        );
        c.x.range = Some((0.0, 2.0));
        c.x.ticks = Some(vec![(1.0, "one".into()), (5.0, "five".into())]);
        let svg = c.render();
        assert!(svg.contains(">one<") && !svg.contains(">five<"));
    }

    #[test]
    fn ticks_are_round_numbers() {
        let (lo, hi, ticks) = linear_ticks(0.0, 7300.0, false);
        assert_eq!((lo, hi), (0.0, 8000.0));
        let labels: Vec<&str> = ticks.iter().map(|t| t.1.as_str()).collect();
        assert_eq!(labels, ["0", "2000", "4000", "6000", "8000"]);
        assert_eq!(linear_ticks(0.0, 4.003, false).1, 4.0);
        let (lo, hi, ticks) = log_ticks(0.8, 31.0, false);
        assert_eq!((lo, hi), (-1.0, 2.0));
        assert_eq!(ticks.first().map(|t| t.1.as_str()), Some("0.1"));
        assert_eq!(ticks.last().map(|t| t.1.as_str()), Some("100"));
        assert_eq!(number(25_000.0), "25k");
        assert_eq!(number(1_500_000.0), "1.5M");
        assert_eq!(number(0.25), "0.25");
    }
}
