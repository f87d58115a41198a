//! The sweep as a PNG (feature `chart`): answered against offered requests a second, and the
//! latency percentiles against offered load, so a reader sees where the service saturates.
//! Text is drawn with a TrueType font read at run time (DejaVu Sans by default), so the
//! binary carries no font and needs no font library.

use crate::http::Sweep;
use anyhow::{anyhow, Context, Result};
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};
use std::path::Path;

/// Where the font is looked for when `--font` is not given.
pub const DEFAULT_FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// The legend of a panel, top left on a light box.
fn legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    c: &mut ChartContext<'a, DB, CT>,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    c.configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font(("sans-serif", 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()
}

/// Draws `sweep` into `out` (PNG), titled `title`, with the font at `font`.
pub fn draw(sweep: &Sweep, out: &Path, title: &str, font: &Path) -> Result<()> {
    let bytes = std::fs::read(font).with_context(|| {
        format!(
            "cannot read the font {} (give one with --font)",
            font.display()
        )
    })?;
    // plotters keeps registered fonts for the process
    register_font(
        "sans-serif",
        FontStyle::Normal,
        Box::leak(bytes.into_boxed_slice()),
    )
    .map_err(|_| anyhow!("{} is not a font plotters can use", font.display()))?;
    let e = |e: DrawingAreaErrorKind<_>| anyhow!("drawing {}: {e:?}", out.display());
    let pts = &sweep.points;
    let offered: Vec<f64> = pts.iter().map(|p| p.target_per_s.unwrap_or(0.0)).collect();
    let x_max = offered
        .iter()
        .chain(std::iter::once(&sweep.max.per_s))
        .fold(1.0f64, |a, b| a.max(*b))
        * 1.05;
    let y_max = pts.iter().map(|p| p.per_s).fold(x_max, f64::max);
    let root = BitMapBackend::new(out, (1000, 820)).into_drawing_area();
    root.fill(&WHITE).map_err(e)?;
    let (top, bottom) = root.split_vertically(400);

    let mut c = ChartBuilder::on(&top)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(42)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)
        .map_err(e)?;
    let whole = |v: &f64| format!("{v:.0}");
    c.configure_mesh()
        .x_desc("offered requests/s")
        .y_desc("answered requests/s")
        .x_label_formatter(&whole)
        .y_label_formatter(&whole)
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(e)?;
    // reference lines: where answered would equal offered, and the two closed-loop maxima
    let (start, end) = (sweep.max.per_s, sweep.max_end.per_s);
    for (ends, style, label) in [
        (
            [(0.0, 0.0), (x_max, x_max)],
            BLACK.mix(0.25).into(),
            "answered = offered",
        ),
        (
            [(0.0, start), (x_max, start)],
            RED.mix(0.4).into(),
            "closed-loop maximum, at the start",
        ),
        (
            [(0.0, end), (x_max, end)],
            RED.stroke_width(2),
            "closed-loop maximum, after the sweep",
        ),
    ] {
        c.draw_series(LineSeries::new(ends, style))
            .map_err(e)?
            .label(label)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], style));
    }
    let answered: Vec<(f64, f64)> = offered
        .iter()
        .zip(pts)
        .map(|(o, p)| (*o, p.per_s))
        .collect();
    c.draw_series(LineSeries::new(answered.clone(), BLUE.stroke_width(2)))
        .map_err(e)?
        .label("answered (open loop)")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 18, y)], BLUE.stroke_width(2)));
    c.draw_series(answered.iter().map(|p| Circle::new(*p, 4, BLUE.filled())))
        .map_err(e)?;
    legend(&mut c).map_err(e)?;

    // latency on a log scale: it spans microseconds to seconds past saturation
    let ms = |us: u64| (us as f64 / 1000.0).max(0.01);
    let l_max = pts.iter().map(|p| ms(p.all_us[2])).fold(1.0, f64::max) * 2.0;
    let l_min = pts.iter().map(|p| ms(p.all_us[0])).fold(l_max, f64::min) / 2.0;
    let mut l = ChartBuilder::on(&bottom)
        .margin(12)
        .x_label_area_size(42)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_max, (l_min..l_max).log_scale())
        .map_err(e)?;
    l.configure_mesh()
        .x_desc("offered requests/s")
        .x_label_formatter(&whole)
        .y_label_formatter(&|v| format!("{v}"))
        .y_desc("latency from schedule, ms")
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(e)?;
    for (i, (name, color)) in [("p50", GREEN), ("p99", MAGENTA), ("p99.9", RED)]
        .into_iter()
        .enumerate()
    {
        let line: Vec<(f64, f64)> = offered
            .iter()
            .zip(pts)
            .map(|(o, p)| (*o, ms(p.all_us[i])))
            .collect();
        l.draw_series(LineSeries::new(line.clone(), color.stroke_width(2)))
            .map_err(e)?
            .label(name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], color.stroke_width(2)));
        l.draw_series(line.iter().map(|p| Circle::new(*p, 3, color.filled())))
            .map_err(e)?;
    }
    legend(&mut l).map_err(e)?;
    root.present().map_err(e)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::PhaseReport;

    fn phase(target: Option<f64>, per_s: f64, p50_us: u64) -> PhaseReport {
        PhaseReport {
            ok: 100,
            refused: 0,
            events_accepted: 100,
            events_duplicate: 0,
            events_rejected: 0,
            seconds: 1.0,
            per_s,
            events_per_s: per_s,
            target_per_s: target,
            all_us: [p50_us, p50_us * 4, p50_us * 10, p50_us * 20],
            scan_us: [0; 4],
        }
    }

    #[test]
    fn a_sweep_draws_a_png_and_a_missing_font_is_named() -> Result<()> {
        let sweep = Sweep {
            connections: 32,
            batch: 1,
            max: phase(None, 5000.0, 1000),
            max_end: phase(None, 4400.0, 1000),
            points: vec![
                phase(Some(500.0), 500.0, 900),
                phase(Some(2500.0), 2490.0, 1100),
                phase(Some(5000.0), 4100.0, 40_000),
                phase(Some(7500.0), 4300.0, 900_000),
            ],
        };
        let dir = std::env::temp_dir().join(format!("omnistream-chart-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let out = dir.join("sweep.png");
        draw(&sweep, &out, "test", Path::new(DEFAULT_FONT))?;
        let png = std::fs::read(&out)?;
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG");
        assert!(png.len() > 10_000, "{} bytes: nearly empty", png.len());
        let missing = dir.join("no-such-font.ttf");
        let err = draw(&sweep, &dir.join("x.png"), "t", &missing).unwrap_err();
        assert!(err.to_string().contains("no-such-font.ttf"), "{err}");
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }
}
