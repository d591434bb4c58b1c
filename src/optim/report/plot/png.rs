//! The PNG backend: plotters' bitmap backend with text drawn by us. In a module of its own
//! because the backend traits' methods (`stroke_width`) clash with plotters' `Color` methods used
//! for drawing in the parent.

use super::embedded_font;
use ab_glyph::{Font, FontRef, Glyph, PxScale, ScaleFont, point};
use plotters::prelude::{BitMapBackend, DrawingBackend};
use plotters::style::text_anchor::{HPos, VPos};
use plotters_backend::{
    BackendColor, BackendCoord, BackendStyle, BackendTextStyle, DrawingErrorKind,
};
use std::path::Path;

/// plotters' bitmap backend with its own text drawing: plotters' ab_glyph text rendering drops
/// each glyph's left side bearing, which runs words together ("test loss" reads "testloss").
/// Everything but text is the bitmap backend's.
pub(super) struct PngBackend<'a> {
    bitmap: BitMapBackend<'a>,
    font: FontRef<'static>,
}

type PngError<'a> = DrawingErrorKind<<BitMapBackend<'a> as DrawingBackend>::ErrorType>;

impl<'a> PngBackend<'a> {
    pub(super) fn new(path: &'a Path, size: (u32, u32)) -> PngBackend<'a> {
        PngBackend {
            bitmap: BitMapBackend::new(path, size),
            font: embedded_font(),
        }
    }

    /// The glyphs of `text` on one line, the top of the line at y = 0, and the line's size.
    fn layout(&self, text: &str, size: f64) -> (Vec<Glyph>, (i32, i32)) {
        let font = self.font.as_scaled(PxScale::from(size as f32));
        let mut glyphs: Vec<Glyph> = Vec::with_capacity(text.len());
        let mut pen = 0.0;
        for c in text.chars() {
            let id = font.glyph_id(c);
            if let Some(previous) = glyphs.last() {
                pen += font.kern(previous.id, id);
            }
            glyphs.push(id.with_scale_and_position(font.scale(), point(pen, font.ascent())));
            pen += font.h_advance(id);
        }
        let height = font.ascent() - font.descent();
        (glyphs, (pen.ceil() as i32, height.ceil() as i32))
    }
}

impl<'a> DrawingBackend for PngBackend<'a> {
    type ErrorType = <BitMapBackend<'a> as DrawingBackend>::ErrorType;

    fn get_size(&self) -> (u32, u32) {
        self.bitmap.get_size()
    }

    fn ensure_prepared(&mut self) -> Result<(), PngError<'a>> {
        self.bitmap.ensure_prepared()
    }

    fn present(&mut self) -> Result<(), PngError<'a>> {
        self.bitmap.present()
    }

    fn draw_pixel(&mut self, point: BackendCoord, color: BackendColor) -> Result<(), PngError<'a>> {
        self.bitmap.draw_pixel(point, color)
    }

    fn draw_line<S: BackendStyle>(
        &mut self,
        from: BackendCoord,
        to: BackendCoord,
        style: &S,
    ) -> Result<(), PngError<'a>> {
        self.bitmap.draw_line(from, to, style)
    }

    fn draw_rect<S: BackendStyle>(
        &mut self,
        upper_left: BackendCoord,
        bottom_right: BackendCoord,
        style: &S,
        fill: bool,
    ) -> Result<(), PngError<'a>> {
        self.bitmap.draw_rect(upper_left, bottom_right, style, fill)
    }

    fn draw_path<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        path: I,
        style: &S,
    ) -> Result<(), PngError<'a>> {
        self.bitmap.draw_path(path, style)
    }

    fn draw_circle<S: BackendStyle>(
        &mut self,
        center: BackendCoord,
        radius: u32,
        style: &S,
        fill: bool,
    ) -> Result<(), PngError<'a>> {
        self.bitmap.draw_circle(center, radius, style, fill)
    }

    fn fill_polygon<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        vertices: I,
        style: &S,
    ) -> Result<(), PngError<'a>> {
        self.bitmap.fill_polygon(vertices, style)
    }

    fn blit_bitmap(
        &mut self,
        position: BackendCoord,
        size: (u32, u32),
        source: &[u8],
    ) -> Result<(), PngError<'a>> {
        self.bitmap.blit_bitmap(position, size, source)
    }

    fn estimate_text_size<S: BackendTextStyle>(
        &self,
        text: &str,
        style: &S,
    ) -> Result<(u32, u32), PngError<'a>> {
        let (_, (width, height)) = self.layout(text, style.size());
        Ok((width as u32, height as u32))
    }

    /// As plotters' default, anchored and transformed (rotated) the same way, with each glyph
    /// drawn at its own outline bounds.
    fn draw_text<S: BackendTextStyle>(
        &mut self,
        text: &str,
        style: &S,
        position: BackendCoord,
    ) -> Result<(), PngError<'a>> {
        let color = style.color();
        if color.alpha == 0.0 {
            return Ok(());
        }
        let (glyphs, (width, height)) = self.layout(text, style.size());
        let dx = match style.anchor().h_pos {
            HPos::Left => 0,
            HPos::Right => -width,
            HPos::Center => -width / 2,
        };
        let dy = match style.anchor().v_pos {
            VPos::Top => 0,
            VPos::Center => -height / 2,
            VPos::Bottom => -height,
        };
        let transform = style.transform();
        let (canvas_width, canvas_height) = self.get_size();
        let mut coverage = Vec::new();
        for glyph in glyphs {
            let Some(outline) = self.font.outline_glyph(glyph) else {
                continue; // a space
            };
            let bounds = outline.px_bounds();
            outline.draw(|x, y, alpha| {
                let x = bounds.min.x as i32 + x as i32;
                let y = bounds.min.y as i32 + y as i32;
                coverage.push((x, y, alpha));
            });
        }
        for (x, y, alpha) in coverage {
            let (x, y) = transform.transform(x + dx, y + dy);
            let (x, y) = (position.0 + x, position.1 + y);
            if (0..canvas_width as i32).contains(&x) && (0..canvas_height as i32).contains(&y) {
                let shade = BackendColor {
                    alpha: color.alpha * f64::from(alpha),
                    rgb: color.rgb,
                };
                self.bitmap.draw_pixel((x, y), shade)?;
            }
        }
        Ok(())
    }
}
