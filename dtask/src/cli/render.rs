//! How the CLI prints: tables that fit an 80-column terminal, and times in UTC.

use std::time::{SystemTime, UNIX_EPOCH};

/// A table of left-aligned text columns and right-aligned number columns.
pub(super) struct Table {
    /// Each column's title, width, and whether it is a number (right-aligned).
    columns: Vec<(&'static str, usize, bool)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these `(title, width, numeric)` columns; the widths should sum, with one
    /// space between columns, to at most 80.
    pub(super) fn new(columns: &[(&'static str, usize, bool)]) -> Table {
        Table {
            columns: columns.to_vec(),
            rows: Vec::new(),
        }
    }

    pub(super) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as text, one line per row under a header; a cell too wide for its column
    /// is cut with `…`.
    pub(super) fn render(&self) -> String {
        let mut text = String::new();
        let header: Vec<String> = self.columns.iter().map(|c| c.0.to_owned()).collect();
        for cells in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (i, (cell, (_, width, numeric))) in cells.iter().zip(&self.columns).enumerate() {
                if i > 0 {
                    line.push(' ');
                }
                let cell = fit(cell, *width);
                let pad = width.saturating_sub(cell.chars().count());
                if *numeric {
                    line.push_str(&" ".repeat(pad));
                    line.push_str(&cell);
                } else {
                    line.push_str(&cell);
                    line.push_str(&" ".repeat(pad));
                }
            }
            text.push_str(line.trim_end());
            text.push('\n');
        }
        text
    }
}

/// `text` on one line, cut to `width` characters with `…`; control characters (which could
/// drive the terminal: a task name is anyone's text) become spaces.
pub(super) fn fit(text: &str, width: usize) -> String {
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if one_line.chars().count() <= width {
        return one_line;
    }
    let mut cut: String = one_line.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// `time` as `YYYY-MM-DD HH:MM:SS` (UTC).
pub(super) fn time(time: SystemTime) -> String {
    crate::clock::utc_text(time)
}

/// `time` as ms since the Unix epoch, for JSON.
pub(super) fn ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn times_read_in_utc() {
        let at = UNIX_EPOCH + Duration::from_secs(1_764_485_096);
        assert_eq!(time(at), "2025-11-30 06:44:56");
        assert_eq!(time(UNIX_EPOCH), "1970-01-01 00:00:00");
        assert_eq!(
            time(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29 00:00:00"
        );
    }

    #[test]
    fn cells_too_wide_are_cut_and_numbers_align_right() {
        let mut table = Table::new(&[("NAME", 5, false), ("N", 4, true)]);
        table.row(vec!["emails-bulk".into(), "12".into()]);
        assert_eq!(table.render(), "NAME     N\nemai…   12\n");
    }
}
