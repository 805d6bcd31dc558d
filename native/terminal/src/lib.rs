//! A terminal emulator for the output of guest programs on a PTY, for drawing them inside the
//! dashboard. Parsing is `vt100`'s; this crate adds what a renderer needs: rows as runs of
//! equally styled text, the rows that changed since the last frame, cursor and mode flags.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::num::NonZeroU16;

/// A colour as a style string a renderer understands: `default`, `color(N)` or `#rrggbb`.
fn color_name(color: vt100::Color) -> String {
    match color {
        vt100::Color::Default => "default".into(),
        vt100::Color::Idx(index) => format!("color({index})"),
        vt100::Color::Rgb(r, g, b) => format!("#{r:02x}{g:02x}{b:02x}"),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Style {
    pub foreground: String,
    pub background: String,
    pub bold: bool,
    pub dim: bool,
    pub italic: bool,
    pub underline: bool,
    pub inverse: bool,
}

impl Style {
    fn of(cell: &vt100::Cell) -> Self {
        Self {
            foreground: color_name(cell.fgcolor()),
            background: color_name(cell.bgcolor()),
            bold: cell.bold(),
            dim: cell.dim(),
            italic: cell.italic(),
            underline: cell.underline(),
            inverse: cell.inverse(),
        }
    }
}

/// Text of one style within a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub text: String,
    pub style: Style,
}

/// Collects what arrives through callbacks rather than the screen state (the title).
#[derive(Default)]
struct Events {
    title: String,
}

impl vt100::Callbacks for Events {
    fn set_window_title(&mut self, _: &mut vt100::Screen, title: &[u8]) {
        self.title = String::from_utf8_lossy(title).into_owned();
    }
}

pub struct Terminal {
    parser: vt100::Parser<Events>,
    /// A hash of each visible row as last reported, to find the rows that changed.
    shown: Vec<u64>,
}

fn size(value: u16) -> NonZeroU16 {
    NonZeroU16::new(value.max(1)).expect("at least 1")
}

impl Terminal {
    pub fn new(rows: u16, cols: u16, scrollback: usize) -> Self {
        Self {
            parser: vt100::Parser::new_with_callbacks(
                size(rows),
                size(cols),
                scrollback,
                Events::default(),
            ),
            shown: Vec::new(),
        }
    }

    /// Parses program output.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.parser.process(bytes);
    }

    /// New size; every row counts as changed afterwards.
    pub fn resize(&mut self, rows: u16, cols: u16) {
        self.parser.screen_mut().set_size(size(rows), size(cols));
        self.shown.clear();
    }

    pub fn size(&self) -> (u16, u16) {
        let (rows, cols) = self.parser.screen().size();
        (rows.get(), cols.get())
    }

    /// Rows (0-based) whose contents or styles changed since the previous call.
    pub fn dirty_rows(&mut self) -> Vec<u16> {
        let (_, cols) = self.size();
        let hashes: Vec<u64> = self
            .parser
            .screen()
            .rows_formatted(0, cols)
            .map(|row| {
                let mut hasher = DefaultHasher::new();
                row.hash(&mut hasher);
                hasher.finish()
            })
            .collect();
        let dirty = (0..hashes.len())
            .filter(|&index| self.shown.get(index) != Some(&hashes[index]))
            .map(|index| index as u16)
            .collect();
        self.shown = hashes;
        dirty
    }

    /// The visible row as runs of equally styled text. A wide character occupies its cell
    /// and the next; empty cells are spaces.
    pub fn row_segments(&self, row: u16) -> Vec<Segment> {
        let screen = self.parser.screen();
        let (_, cols) = self.size();
        let mut segments: Vec<Segment> = Vec::new();
        for col in 0..cols {
            let Some(cell) = screen.cell(row, col) else {
                break;
            };
            if cell.is_wide_continuation() {
                continue;
            }
            let text = if cell.has_contents() {
                cell.contents()
            } else {
                " "
            };
            let style = Style::of(cell);
            match segments.last_mut() {
                Some(last) if last.style == style => last.text.push_str(text),
                _ => segments.push(Segment {
                    text: text.to_string(),
                    style,
                }),
            }
        }
        segments
    }

    /// Cursor row, column, and whether the program shows it.
    pub fn cursor(&self) -> (u16, u16, bool) {
        let screen = self.parser.screen();
        let (row, col) = screen.cursor_position();
        (row, col, !screen.hide_cursor())
    }

    pub fn contents(&self) -> String {
        self.parser.screen().contents()
    }

    pub fn title(&self) -> &str {
        &self.parser.callbacks().title
    }

    pub fn alternate_screen(&self) -> bool {
        self.parser.screen().alternate_screen()
    }

    pub fn bracketed_paste(&self) -> bool {
        self.parser.screen().bracketed_paste()
    }

    pub fn application_cursor(&self) -> bool {
        self.parser.screen().application_cursor()
    }

    /// Which mouse events the program asked for: `none`, `press`, `press_release`,
    /// `button_motion` or `any_motion`.
    pub fn mouse_mode(&self) -> &'static str {
        match self.parser.screen().mouse_protocol_mode() {
            vt100::MouseProtocolMode::None => "none",
            vt100::MouseProtocolMode::Press => "press",
            vt100::MouseProtocolMode::PressRelease => "press_release",
            vt100::MouseProtocolMode::ButtonMotion => "button_motion",
            vt100::MouseProtocolMode::AnyMotion => "any_motion",
        }
    }

    /// Scrolls the view `rows` lines back into the history (0 = live screen).
    pub fn set_scrollback(&mut self, rows: usize) {
        self.parser.screen_mut().set_scrollback(rows);
    }

    pub fn scrollback(&self) -> usize {
        self.parser.screen().scrollback()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fed(rows: u16, cols: u16, bytes: &[u8]) -> Terminal {
        let mut terminal = Terminal::new(rows, cols, 100);
        terminal.feed(bytes);
        terminal
    }

    fn row_text(terminal: &Terminal, row: u16) -> String {
        terminal
            .row_segments(row)
            .iter()
            .map(|s| s.text.as_str())
            .collect::<String>()
            .trim_end()
            .to_string()
    }

    #[test]
    fn colours_16_256_and_truecolor_with_attributes() {
        let terminal = fed(
            2,
            40,
            b"\x1b[31mred\x1b[0m \x1b[1;38;5;200mpink\x1b[0m \x1b[4;7;38;2;1;2;3mrgb\x1b[0m",
        );
        let segments = terminal.row_segments(0);
        assert_eq!(segments[0].text, "red");
        assert_eq!(segments[0].style.foreground, "color(1)");
        let pink = segments.iter().find(|s| s.text == "pink").unwrap();
        assert_eq!(
            (pink.style.foreground.as_str(), pink.style.bold),
            ("color(200)", true)
        );
        let rgb = segments.iter().find(|s| s.text == "rgb").unwrap();
        assert_eq!(rgb.style.foreground, "#010203");
        assert!(rgb.style.underline && rgb.style.inverse);
    }

    #[test]
    fn cursor_movement_and_erase() {
        let mut terminal = fed(3, 10, b"abcdefgh\x1b[1;3HX\x1b[2;5Hyz\x1b[1;6H\x1b[K");
        assert_eq!(row_text(&terminal, 0), "abXde");
        assert_eq!(row_text(&terminal, 1), "    yz");
        assert_eq!(terminal.cursor(), (0, 5, true));
        terminal.feed(b"\x1b[2J\x1b[?25l");
        assert_eq!(terminal.contents().trim(), "");
        assert!(!terminal.cursor().2);
    }

    #[test]
    fn scroll_region_keeps_the_lines_outside_it() {
        let terminal = fed(4, 10, b"top\r\n1\r\n2\r\nbottom\x1b[2;3r\x1b[3;1H\nnew");
        assert_eq!(row_text(&terminal, 0), "top");
        assert_eq!(row_text(&terminal, 1), "2");
        assert_eq!(row_text(&terminal, 2), "new");
        assert_eq!(row_text(&terminal, 3), "bottom");
    }

    #[test]
    fn alternate_screen_on_and_off_restores_the_main_screen() {
        let mut terminal = fed(3, 10, b"shell$ ");
        terminal.feed(b"\x1b[?1049h\x1b[Hfull-screen");
        assert!(terminal.alternate_screen());
        assert_eq!(row_text(&terminal, 0), "full-scree");
        terminal.feed(b"\x1b[?1049l");
        assert!(!terminal.alternate_screen());
        assert_eq!(row_text(&terminal, 0), "shell$");
    }

    #[test]
    fn wide_characters_take_two_cells() {
        let terminal = fed(1, 10, "a漢b".as_bytes());
        assert_eq!(row_text(&terminal, 0), "a漢b");
        assert_eq!(terminal.cursor(), (0, 4, true));
    }

    #[test]
    fn resize_cuts_rows_to_the_new_width_and_marks_everything_dirty() {
        let mut terminal = fed(2, 10, b"hello");
        assert_eq!(terminal.dirty_rows(), vec![0, 1]);
        assert!(terminal.dirty_rows().is_empty());
        terminal.feed(b"\r\nworld");
        assert_eq!(terminal.dirty_rows(), vec![1]);
        terminal.resize(3, 4);
        assert_eq!(terminal.size(), (3, 4));
        assert_eq!(terminal.dirty_rows(), vec![0, 1, 2]);
        assert_eq!(row_text(&terminal, 0), "hell");
    }

    #[test]
    fn title_modes_and_scrollback() {
        let mut terminal = fed(2, 10, b"\x1b]0;my title\x07\x1b[?2004h\x1b[?1000h\x1b[?1h");
        assert_eq!(terminal.title(), "my title");
        assert!(terminal.bracketed_paste() && terminal.application_cursor());
        assert_eq!(terminal.mouse_mode(), "press_release");
        terminal.feed(b"1\r\n2\r\n3\r\n4");
        terminal.set_scrollback(2);
        assert_eq!(terminal.scrollback(), 2);
        assert_eq!(row_text(&terminal, 0), "1");
    }
}
