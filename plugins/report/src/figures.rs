//! Figures 2 and 3 as PNG files, drawn with plotters' bitmap backend and the bundled DejaVu
//! Sans font (fonts/; no system fonts), encoded with the `png` crate.
//!
//! - Figure 2, a 2×2 grid: success rate over fine-tuning steps (inter-task, cross-task) and the
//!   likelihood of held-out expert trajectories over steps (inter-task, cross-task); one line per
//!   method and learning rate for Instruct-FT, Agent and AgentMerge (chosen λ).
//! - Figure 3: Instruct-FT against AgentMerge (chosen λ), success over steps, inter and cross.
//!
//! Methods have a colour family and a marker; learning rates a shade of that colour (the same
//! shade for the same rate everywhere). Success points carry ± std err bars.

use std::path::Path;
use std::sync::OnceLock;

use anyhow::Context as _;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::config::{Method, Split};
use crate::labels::Label;
use crate::report::Report;

/// DejaVu Sans 2.37 (Bitstream Vera license, fonts/LICENSE).
static FONT: &[u8] = include_bytes!("../fonts/DejaVuSans.ttf");
const FAMILY: &str = "sans-serif";

/// Figure 2's size in pixels (two rows of panels).
pub const FIGURE2_SIZE: (u32, u32) = (1200, 900);
/// Figure 3's size in pixels (one row of panels).
pub const FIGURE3_SIZE: (u32, u32) = (1200, 520);

/// Registers the bundled font with plotters, once per process.
fn register_font() -> anyhow::Result<()> {
    static OK: OnceLock<bool> = OnceLock::new();
    let ok = *OK.get_or_init(|| plotters::style::register_font(FAMILY, FontStyle::Normal, FONT).is_ok());
    anyhow::ensure!(ok, "the bundled font fonts/DejaVuSans.ttf could not be read");
    Ok(())
}

#[derive(Clone, Copy)]
enum Marker {
    Circle,
    Triangle,
    Square,
}

/// One line on a panel: points (step, value, ± error).
struct Line {
    label: String,
    color: RGBColor,
    marker: Marker,
    points: Vec<(f64, f64, Option<f64>)>,
}

fn base_color(m: Method) -> RGBColor {
    match m {
        Method::InstructFt => RGBColor(31, 119, 180),
        Method::Agent => RGBColor(230, 110, 0),
        Method::AgentMerge => RGBColor(44, 160, 44),
        Method::Soup | Method::SoupUniform => RGBColor(148, 103, 189),
        Method::Instruct => RGBColor(90, 90, 90),
    }
}

fn marker(m: Method) -> Marker {
    match m {
        Method::InstructFt | Method::Instruct => Marker::Circle,
        Method::Agent | Method::Soup | Method::SoupUniform => Marker::Square,
        Method::AgentMerge => Marker::Triangle,
    }
}

/// The `i`-th shade of a colour: the colour, then darker, lighter, darkest, lightest, again.
fn shade(c: RGBColor, i: usize) -> RGBColor {
    let toward = |x: u8, target: f64, t: f64| (x as f64 + (target - x as f64) * t).round() as u8;
    let (target, t) = [(0.0, 0.0), (0.0, 0.4), (255.0, 0.4), (0.0, 0.65), (255.0, 0.6)][i % 5];
    RGBColor(toward(c.0, target, t), toward(c.1, target, t), toward(c.2, target, t))
}

/// Every learning rate in the report, highest first: its index picks the shade.
fn all_lrs(r: &Report) -> Vec<Option<Label>> {
    let mut lrs = r.lrs_of(&Method::ALL);
    for (_, lr) in r.likelihood_rows() {
        if !lrs.contains(&lr) {
            lrs.push(lr);
        }
    }
    lrs
}

fn line_label(m: Method, lr: Option<&Label>, r: &Report) -> String {
    let mut s = m.title().to_string();
    if let Some(lr) = lr {
        s.push_str(&format!(" lr={lr}"));
    }
    if m == Method::AgentMerge {
        if let Some(l) = r.lambda_at(lr) {
            s.push_str(&format!(" λ={l}"));
        }
    }
    s
}

/// Success rate lines of `methods` on `split`, with ± std err.
fn success_lines(r: &Report, methods: &[Method], split: Split) -> Vec<Line> {
    let lrs = all_lrs(r);
    r.shown()
        .into_iter()
        .filter(|s| methods.contains(&s.key.method))
        .map(|s| {
            let m = s.key.method;
            let shade_i = lrs.iter().position(|l| *l == s.key.lr).unwrap_or(0);
            let points = s
                .points
                .iter()
                .map(|p| p.split(split))
                .zip(&s.points)
                .filter(|(score, _)| score.n > 0)
                .map(|(score, p)| (p.step as f64, score.rate(), Some(score.std_err())))
                .collect();
            Line { label: line_label(m, s.key.lr.as_ref(), r), color: shade(base_color(m), shade_i), marker: marker(m), points }
        })
        .filter(|l| !l.points.is_empty())
        .collect()
}

/// Likelihood lines of `methods` on `split`.
fn likelihood_lines(r: &Report, methods: &[Method], split: Split) -> Vec<Line> {
    let lrs = all_lrs(r);
    r.likelihood_rows()
        .into_iter()
        .filter(|(m, _)| methods.contains(m))
        .filter_map(|(m, lr)| {
            let s = r.logp(m, split, lr.as_ref())?;
            let points: Vec<_> = s.rows.iter().filter_map(|row| row.mean_logprob.filter(|x| x.is_finite()).map(|y| (row.step as f64, y, None))).collect();
            let shade_i = lrs.iter().position(|l| *l == lr).unwrap_or(0);
            Some(Line { label: line_label(m, lr.as_ref(), r), color: shade(base_color(m), shade_i), marker: marker(m), points })
        })
        .filter(|l| !l.points.is_empty())
        .collect()
}

/// The x range: from 0 to the last step, padded; a single step gets a unit-wide range.
fn x_range(lines: &[Line]) -> (f64, f64) {
    let max = lines.iter().flat_map(|l| &l.points).map(|p| p.0).fold(0.0, f64::max);
    if max <= 0.0 {
        (-1.0, 1.0)
    } else {
        (-0.03 * max, 1.03 * max)
    }
}

/// The y range: success rates from 0 to just above the highest bar (at least 0.05, at most
/// 1.05); other values their span, padded.
fn y_range(lines: &[Line], rates: bool) -> (f64, f64) {
    let ys = lines.iter().flat_map(|l| &l.points).flat_map(|&(_, y, e)| [y - e.unwrap_or(0.0), y + e.unwrap_or(0.0)]).filter(|y| y.is_finite());
    let (lo, hi) = ys.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), y| (lo.min(y), hi.max(y)));
    if rates {
        return (0.0, (hi * 1.15).clamp(0.05, 1.05));
    }
    if !lo.is_finite() || !hi.is_finite() {
        return (0.0, 1.0);
    }
    let pad = if hi > lo { 0.08 * (hi - lo) } else { 0.5 };
    (lo - pad, hi + pad)
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

/// Draws one panel; with no lines, its title and `empty` in the middle.
fn panel(area: &Area, title: &str, y_desc: &str, lines: &[Line], rates: bool, empty: &str) -> anyhow::Result<()> {
    if lines.is_empty() {
        let (w, h) = area.dim_in_pixel();
        area.draw_text(title, &(FAMILY, 20).into_font().color(&BLACK).pos(Pos::new(HPos::Center, VPos::Top)), (w as i32 / 2, 8))?;
        area.draw_text(
            empty,
            &(FAMILY, 16).into_font().color(&RGBColor(120, 120, 120)).pos(Pos::new(HPos::Center, VPos::Center)),
            (w as i32 / 2, h as i32 / 2),
        )?;
        return Ok(());
    }
    let (x0, x1) = x_range(lines);
    let (y0, y1) = y_range(lines, rates);
    let mut chart =
        ChartBuilder::on(area).caption(title, (FAMILY, 20)).margin(12).x_label_area_size(42).y_label_area_size(62).build_cartesian_2d(x0..x1, y0..y1)?;
    chart
        .configure_mesh()
        .x_desc("fine-tuning step")
        // Steps are whole numbers: label only the ticks that are.
        .x_label_formatter(&|x| if (x - x.round()).abs() < 1e-9 { format!("{x:.0}") } else { String::new() })
        .y_desc(y_desc)
        .label_style((FAMILY, 13))
        .axis_desc_style((FAMILY, 15))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;
    for line in lines {
        let color = line.color;
        let xy: Vec<(f64, f64)> = line.points.iter().map(|&(x, y, _)| (x, y)).collect();
        chart
            .draw_series(LineSeries::new(xy.clone(), color.stroke_width(2)))?
            .label(line.label.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3)));
        match line.marker {
            Marker::Circle => chart.draw_series(xy.iter().map(|&p| Circle::new(p, 4, color.filled())))?,
            Marker::Triangle => chart.draw_series(xy.iter().map(|&p| TriangleMarker::new(p, 5, color.filled())))?,
            Marker::Square => chart.draw_series(xy.iter().map(|&p| EmptyElement::at(p) + Rectangle::new([(-4, -4), (4, 4)], color.filled())))?,
        };
        let bars = line
            .points
            .iter()
            .filter_map(|&(x, y, e)| e.filter(|e| e.is_finite() && *e > 0.0).map(|e| ErrorBar::new_vertical(x, y - e, y, y + e, color.stroke_width(1), 8)));
        chart.draw_series(bars)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font((FAMILY, 12))
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(180, 180, 180))
        .draw()?;
    Ok(())
}

fn split_title(r: &Report, split: Split) -> String {
    match split {
        Split::Inter => "inter-task".into(),
        Split::Cross if r.cross_task.is_empty() => "cross-task".into(),
        // The tasks are listed in report.md; a panel title has room for their number only.
        Split::Cross => format!("cross-task ({} held out)", r.cross_task.len()),
    }
}

fn no_cross(r: &Report, split: Split, what: &str) -> String {
    if split == Split::Cross && r.cross_task.is_empty() {
        "no cross-task tasks (`cross_task` is empty)".into()
    } else {
        format!("no {what} data")
    }
}

/// Draws into an RGB buffer with `draw` and writes it to `path` as PNG.
fn render(path: &Path, (w, h): (u32, u32), draw: impl FnOnce(&Area) -> anyhow::Result<()>) -> anyhow::Result<()> {
    register_font()?;
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE)?;
        draw(&root)?;
        root.present()?;
    }
    let file = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), w, h);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut writer = enc.write_header().with_context(|| format!("writing {}", path.display()))?;
    writer.write_image_data(&buf).with_context(|| format!("writing {}", path.display()))?;
    writer.finish().with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Figure 2: success (top) and likelihood (bottom) over steps, inter-task (left) and
/// cross-task (right), for Instruct-FT, Agent and AgentMerge.
pub fn figure2(r: &Report, path: &Path) -> anyhow::Result<()> {
    let methods = [Method::InstructFt, Method::Agent, Method::AgentMerge];
    render(path, FIGURE2_SIZE, |root| {
        let body = root.titled("Figure 2: success and expert-trajectory likelihood over fine-tuning", (FAMILY, 24))?;
        let panels = body.split_evenly((2, 2));
        for (col, split) in [Split::Inter, Split::Cross].into_iter().enumerate() {
            let lines = success_lines(r, &methods, split);
            panel(&panels[col], &format!("Success rate, {}", split_title(r, split)), "success rate", &lines, true, &no_cross(r, split, "evaluation"))?;
            let lines = likelihood_lines(r, &methods, split);
            let empty = if r.likelihood.is_empty() { "no likelihood data (set `likelihood:`)".into() } else { no_cross(r, split, "likelihood") };
            panel(&panels[2 + col], &format!("Expert-trajectory likelihood, {}", split_title(r, split)), "mean log p per token (nats)", &lines, false, &empty)?;
        }
        Ok(())
    })
}

/// Figure 3: Instruct-FT against AgentMerge (chosen λ), success over steps, inter and cross.
pub fn figure3(r: &Report, path: &Path) -> anyhow::Result<()> {
    let methods = [Method::InstructFt, Method::AgentMerge];
    render(path, FIGURE3_SIZE, |root| {
        let body = root.titled("Figure 3: Instruct-FT vs AgentMerge over fine-tuning", (FAMILY, 24))?;
        let panels = body.split_evenly((1, 2));
        for (col, split) in [Split::Inter, Split::Cross].into_iter().enumerate() {
            let lines = success_lines(r, &methods, split);
            panel(&panels[col], &format!("Success rate, {}", split_title(r, split)), "success rate", &lines, true, &no_cross(r, split, "evaluation"))?;
        }
        Ok(())
    })
}
