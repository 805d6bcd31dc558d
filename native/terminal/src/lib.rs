//! A terminal emulator for the output of guest programs on a PTY, for drawing them inside the
//! dashboard. Parsing and the screen are `alacritty_terminal`'s, chosen because its resize
//! reflows soft-wrapped lines (on screen and in the scrollback) instead of cutting them. This
//! crate adds what a renderer needs: rows as runs of equally styled text, the rows that changed
//! since the last frame, cursor and mode flags, and the replies the program asked for.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use alacritty_terminal::event::{Event, EventListener};
use alacritty_terminal::grid::{Dimensions, Scroll};
use alacritty_terminal::index::{Column, Point};
use alacritty_terminal::term::cell::{Cell, Flags};
use alacritty_terminal::term::{viewport_to_point, Config, Osc52, TermMode};
use alacritty_terminal::vte::ansi::{Color, NamedColor, Processor, Timeout};
use alacritty_terminal::Term;

/// A colour as the renderer tells colours apart; `Style` spells it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Colour {
    Default,
    Index(u8),
    Rgb(u8, u8, u8),
}

impl From<Color> for Colour {
    fn from(color: Color) -> Self {
        match color {
            Color::Spec(rgb) => Colour::Rgb(rgb.r, rgb.g, rgb.b),
            Color::Indexed(index) => Colour::Index(index),
            Color::Named(named) => {
                // Dim variants are the base colour drawn with the `dim` flag, which the style
                // carries on its own.
                let named = match named {
                    NamedColor::DimBlack
                    | NamedColor::DimRed
                    | NamedColor::DimGreen
                    | NamedColor::DimYellow
                    | NamedColor::DimBlue
                    | NamedColor::DimMagenta
                    | NamedColor::DimCyan
                    | NamedColor::DimWhite => named.to_bright(),
                    other => other,
                };
                // The 16 ANSI colours are palette indices 0-15; the others (foreground,
                // background, cursor) are whatever the renderer's defaults are.
                match named as usize {
                    index @ 0..=15 => Colour::Index(index as u8),
                    _ => Colour::Default,
                }
            }
        }
    }
}

impl Colour {
    /// The style string a renderer understands: `default`, `color(N)` or `#rrggbb`.
    fn name(self) -> String {
        match self {
            Colour::Default => "default".into(),
            Colour::Index(index) => format!("color({index})"),
            Colour::Rgb(r, g, b) => format!("#{r:02x}{g:02x}{b:02x}"),
        }
    }
}

/// The attributes of a cell that make up a `Style`, cheap to compare cell by cell (a `Style`
/// holds strings).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Pen {
    foreground: Colour,
    background: Colour,
    flags: Flags,
}

impl Pen {
    fn of(cell: &Cell) -> Self {
        // Only what `Style` shows, with every kind of underline as one, so that cells that
        // look the same to the renderer end up in one segment.
        let mut flags = cell.flags & (Flags::BOLD | Flags::DIM | Flags::ITALIC | Flags::INVERSE);
        flags.set(
            Flags::UNDERLINE,
            cell.flags.intersects(Flags::ALL_UNDERLINES),
        );
        Self {
            foreground: cell.fg.into(),
            background: cell.bg.into(),
            flags,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Style {
    pub foreground: String,
    pub background: String,
    pub bold: bool,
    pub dim: bool,
    pub italic: bool,
    pub underline: bool,
    pub inverse: bool,
}

impl From<Pen> for Style {
    fn from(pen: Pen) -> Self {
        Self {
            foreground: pen.foreground.name(),
            background: pen.background.name(),
            bold: pen.flags.contains(Flags::BOLD),
            dim: pen.flags.contains(Flags::DIM),
            italic: pen.flags.contains(Flags::ITALIC),
            underline: pen.flags.contains(Flags::UNDERLINE),
            inverse: pen.flags.contains(Flags::INVERSE),
        }
    }
}

/// Text of one style within a row.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Segment {
    pub text: String,
    pub style: Style,
}

/// What arrives as events rather than screen state. `EventListener::send_event` takes `&self`
/// and `Term` owns its listener, so the listener and `Terminal` share this.
#[derive(Default)]
struct Inbox {
    /// The latest title set since the last look (a reset sets an empty one).
    title: Option<String>,
    /// Answers to the program's queries (device status, terminal identity), for its input.
    replies: Vec<u8>,
}

struct Listener(Arc<Mutex<Inbox>>);

fn lock(inbox: &Mutex<Inbox>) -> MutexGuard<'_, Inbox> {
    // Nothing can panic while holding the lock; should it, the data is still consistent.
    inbox.lock().unwrap_or_else(PoisonError::into_inner)
}

impl EventListener for Listener {
    fn send_event(&self, event: Event) {
        let mut inbox = lock(&self.0);
        match event {
            Event::Title(title) => inbox.title = Some(title),
            Event::ResetTitle => inbox.title = Some(String::new()),
            Event::PtyWrite(text) => inbox.replies.extend_from_slice(text.as_bytes()),
            // Colour, clipboard and pixel-size queries need a window this emulator does not
            // have; the rest is for an event loop and a window too.
            _ => {}
        }
    }
}

/// Synchronized updates (`CSI ? 2026 h`) are not held back: the host draws right after
/// feeding, and the screen should then show everything fed so far.
#[derive(Default)]
struct NoSyncUpdates;

impl Timeout for NoSyncUpdates {
    fn set_timeout(&mut self, _: Duration) {}

    fn clear_timeout(&mut self) {}

    fn pending_timeout(&self) -> bool {
        false
    }
}

struct Size {
    rows: usize,
    cols: usize,
}

impl Size {
    fn new(rows: u16, cols: u16) -> Self {
        // At least two columns: a wide character needs two cells and alacritty_terminal
        // indexes past the row with fewer.
        Self {
            rows: usize::from(rows.max(1)),
            cols: usize::from(cols.max(2)),
        }
    }
}

impl Dimensions for Size {
    fn total_lines(&self) -> usize {
        self.rows
    }

    fn screen_lines(&self) -> usize {
        self.rows
    }

    fn columns(&self) -> usize {
        self.cols
    }
}

pub struct Terminal {
    term: Term<Listener>,
    parser: Processor<NoSyncUpdates>,
    inbox: Arc<Mutex<Inbox>>,
    title: String,
    /// A hash of each visible row as last reported, to find the rows that changed.
    shown: Vec<u64>,
}

impl Terminal {
    pub fn new(rows: u16, cols: u16, scrollback: usize) -> Self {
        let config = Config {
            scrolling_history: scrollback,
            // There is no clipboard to store into.
            osc52: Osc52::Disabled,
            ..Config::default()
        };
        let inbox = Arc::new(Mutex::new(Inbox::default()));
        Self {
            term: Term::new(config, &Size::new(rows, cols), Listener(inbox.clone())),
            parser: Processor::new(),
            inbox,
            title: String::new(),
            shown: Vec::new(),
        }
    }

    /// Parses program output.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.parser.advance(&mut self.term, bytes);
        if let Some(title) = lock(&self.inbox).title.take() {
            self.title = title;
        }
    }

    /// Bytes to send to the program: its queries' answers (e.g. the cursor position report
    /// for `CSI 6 n`), in order, each once.
    pub fn take_replies(&mut self) -> Vec<u8> {
        std::mem::take(&mut lock(&self.inbox).replies)
    }

    /// New size; soft-wrapped lines, the scrollback's too, are rewrapped to the new width and
    /// the cursor moves with its text. Every row counts as changed afterwards.
    pub fn resize(&mut self, rows: u16, cols: u16) {
        self.term.resize(Size::new(rows, cols));
        self.shown.clear();
    }

    pub fn size(&self) -> (u16, u16) {
        let grid = self.term.grid();
        (grid.screen_lines() as u16, grid.columns() as u16)
    }

    /// Rows (0-based) whose contents or styles changed since the previous call.
    pub fn dirty_rows(&mut self) -> Vec<u16> {
        let (rows, _) = self.size();
        let hashes: Vec<u64> = (0..rows)
            .map(|row| {
                let mut hasher = DefaultHasher::new();
                self.runs(row).hash(&mut hasher);
                hasher.finish()
            })
            .collect();
        let dirty = (0..rows)
            .filter(|&row| self.shown.get(usize::from(row)) != Some(&hashes[usize::from(row)]))
            .collect();
        self.shown = hashes;
        dirty
    }

    /// The displayed row (`scrollback()` lines back in the history) as runs of equally styled
    /// text. A wide character occupies its cell and the next; empty cells are spaces.
    pub fn row_segments(&self, row: u16) -> Vec<Segment> {
        self.runs(row)
            .into_iter()
            .map(|(text, pen)| Segment {
                text,
                style: pen.into(),
            })
            .collect()
    }

    /// The cells of a displayed row (scrolled back or live) as text per pen.
    fn runs(&self, row: u16) -> Vec<(String, Pen)> {
        let grid = self.term.grid();
        if usize::from(row) >= grid.screen_lines() {
            return Vec::new();
        }
        let point = viewport_to_point(
            grid.display_offset(),
            Point::new(usize::from(row), Column(0)),
        );
        let mut runs: Vec<(String, Pen)> = Vec::new();
        for cell in grid[point.line][..].iter().take(grid.columns()) {
            if cell.flags.contains(Flags::WIDE_CHAR_SPACER) {
                continue;
            }
            let pen = Pen::of(cell);
            match runs.last_mut() {
                Some((text, last)) if *last == pen => push_text(text, cell),
                _ => {
                    let mut text = String::new();
                    push_text(&mut text, cell);
                    runs.push((text, pen));
                }
            }
        }
        runs
    }

    /// Cursor row, column (on the live screen), and whether the program shows it.
    pub fn cursor(&self) -> (u16, u16, bool) {
        let point = self.term.grid().cursor.point;
        let visible = self.term.mode().contains(TermMode::SHOW_CURSOR);
        (point.line.0 as u16, point.column.0 as u16, visible)
    }

    /// The displayed text: rows trimmed on the right, a soft-wrapped row continued by the next
    /// without a line break, and no trailing empty lines.
    pub fn contents(&self) -> String {
        let grid = self.term.grid();
        let mut contents = String::new();
        for row in 0..grid.screen_lines() {
            let point = viewport_to_point(grid.display_offset(), Point::new(row, Column(0)));
            let cells = &grid[point.line][..];
            let start = contents.len();
            for cell in cells.iter().take(grid.columns()) {
                // The blank left where a wide character did not fit is no text either.
                if !cell
                    .flags
                    .intersects(Flags::WIDE_CHAR_SPACER | Flags::LEADING_WIDE_CHAR_SPACER)
                {
                    push_text(&mut contents, cell);
                }
            }
            let wrapped = cells
                .get(grid.columns() - 1)
                .is_some_and(|cell| cell.flags.contains(Flags::WRAPLINE));
            if !wrapped {
                let kept = start + contents[start..].trim_end_matches(' ').len();
                contents.truncate(kept);
                contents.push('\n');
            }
        }
        contents.truncate(contents.trim_end_matches('\n').len());
        contents
    }

    pub fn title(&self) -> &str {
        &self.title
    }

    pub fn alternate_screen(&self) -> bool {
        self.term.mode().contains(TermMode::ALT_SCREEN)
    }

    pub fn bracketed_paste(&self) -> bool {
        self.term.mode().contains(TermMode::BRACKETED_PASTE)
    }

    pub fn application_cursor(&self) -> bool {
        self.term.mode().contains(TermMode::APP_CURSOR)
    }

    /// Which mouse events the program asked for: `none`, `press`, `press_release`,
    /// `button_motion` or `any_motion`. alacritty_terminal has no press-only (X10, mode 9)
    /// reporting, so `press` does not occur; the modes 1000/1002/1003 exclude each other.
    pub fn mouse_mode(&self) -> &'static str {
        let mode = self.term.mode();
        if mode.contains(TermMode::MOUSE_MOTION) {
            "any_motion"
        } else if mode.contains(TermMode::MOUSE_DRAG) {
            "button_motion"
        } else if mode.contains(TermMode::MOUSE_REPORT_CLICK) {
            "press_release"
        } else {
            "none"
        }
    }

    /// Scrolls the view `rows` lines back into the history (0 = live screen), at most as far
    /// as the history goes.
    pub fn set_scrollback(&mut self, rows: usize) {
        self.term.scroll_display(Scroll::Bottom);
        let rows = i32::try_from(rows).unwrap_or(i32::MAX);
        self.term.scroll_display(Scroll::Delta(rows));
    }

    pub fn scrollback(&self) -> usize {
        self.term.grid().display_offset()
    }
}

/// A cell's text: its character (a tab's cell is kept as `\t` for copying; it shows as a
/// space) and any zero-width characters combined with it.
fn push_text(text: &mut String, cell: &Cell) {
    text.push(if cell.c == '\t' { ' ' } else { cell.c });
    text.extend(cell.zerowidth().into_iter().flatten());
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

    fn rows(terminal: &Terminal) -> Vec<String> {
        (0..terminal.size().0)
            .map(|row| row_text(terminal, row))
            .collect()
    }

    /// The scrollback, oldest first, then the screen.
    fn buffer(terminal: &mut Terminal) -> Vec<String> {
        terminal.set_scrollback(usize::MAX);
        let mut lines = Vec::new();
        for offset in (1..=terminal.scrollback()).rev() {
            terminal.set_scrollback(offset);
            lines.push(row_text(terminal, 0));
        }
        terminal.set_scrollback(0);
        lines.extend(rows(terminal));
        lines
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
    fn bright_dim_and_curly_underline_styles() {
        let terminal = fed(
            1,
            20,
            b"\x1b[2;94mdim\x1b[0m\x1b[4:3mcurl\x1b[0m\x1b[4mline",
        );
        let segments = terminal.row_segments(0);
        assert_eq!(segments[0].text, "dim");
        assert_eq!(segments[0].style.foreground, "color(12)");
        assert!(segments[0].style.dim);
        // Curly and straight underline look alike to the renderer: one segment.
        assert_eq!(segments[1].text, "curlline");
        assert!(segments[1].style.underline);
        assert_eq!(segments[1].style.background, "default");
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
    fn contents_joins_soft_wrapped_rows_and_drops_trailing_blanks() {
        let terminal = fed(4, 10, b"0123456789abc  \r\nnext\r\n");
        assert_eq!(terminal.contents(), "0123456789abc\nnext");
    }

    #[test]
    fn resize_marks_every_row_dirty() {
        let mut terminal = fed(2, 10, b"hello");
        assert_eq!(terminal.dirty_rows(), vec![0, 1]);
        assert!(terminal.dirty_rows().is_empty());
        terminal.feed(b"\r\nworld");
        assert_eq!(terminal.dirty_rows(), vec![1]);
        terminal.resize(3, 4);
        assert_eq!(terminal.size(), (3, 4));
        assert_eq!(terminal.dirty_rows(), vec![0, 1, 2]);
    }

    #[test]
    fn resize_reflows_a_soft_wrapped_line_when_widened_and_narrowed() {
        let mut terminal = fed(4, 10, b"$ 0123456789abcdefghij\r\n$ ");
        assert_eq!(rows(&terminal), ["$ 01234567", "89abcdefgh", "ij", "$"]);
        terminal.resize(4, 40);
        assert_eq!(rows(&terminal), ["$ 0123456789abcdefghij", "$", "", ""]);
        assert_eq!(terminal.cursor(), (1, 2, true));
        terminal.resize(4, 8);
        // The rows the line grows by go into the scrollback; the prompt stays on its row.
        assert_eq!(
            buffer(&mut terminal),
            ["$ 012345", "6789abcd", "efghij", "$", "", ""]
        );
        assert_eq!(terminal.cursor(), (1, 2, true));
        // Rewrapped rows are still one line; the hard line break stays one.
        terminal.set_scrollback(2);
        assert_eq!(terminal.contents(), "$ 0123456789abcdefghij\n$");
    }

    #[test]
    fn resize_reflows_scrollback_lines_too() {
        // Three rows: the wrapped line is in the scrollback once the later lines arrived.
        let mut terminal = fed(3, 10, b"0123456789abcdefghij\r\none\r\ntwo\r\nthree");
        assert_eq!(rows(&terminal), ["one", "two", "three"]);
        assert_eq!(
            buffer(&mut terminal),
            ["0123456789", "abcdefghij", "one", "two", "three"]
        );
        terminal.resize(3, 40);
        assert_eq!(
            buffer(&mut terminal),
            ["0123456789abcdefghij", "one", "two", "three"]
        );
        terminal.resize(3, 5);
        assert_eq!(
            buffer(&mut terminal),
            ["01234", "56789", "abcde", "fghij", "one", "two", "three"]
        );
        assert_eq!(rows(&terminal), ["one", "two", "three"]);
    }

    #[test]
    fn cursor_stays_after_its_text_on_reflow() {
        let mut terminal = fed(3, 10, b"$ echo 0123456789");
        assert_eq!(terminal.cursor(), (1, 7, true));
        terminal.resize(3, 40);
        assert_eq!(row_text(&terminal, 0), "$ echo 0123456789");
        assert_eq!(terminal.cursor(), (0, 17, true));
        terminal.resize(3, 6);
        assert_eq!(buffer(&mut terminal), ["$ echo", " 01234", "56789", "", ""]);
        assert_eq!(terminal.cursor(), (0, 5, true));
        terminal.feed(b"!");
        assert_eq!(row_text(&terminal, 0), "56789!");
    }

    #[test]
    fn alternate_screen_does_not_disturb_main_screen_reflow() {
        let mut terminal = fed(3, 10, b"0123456789abcde\r\n$ ");
        terminal.feed(b"\x1b[?1049h\x1b[H\x1b[2Jeditor");
        terminal.resize(3, 40);
        // Full-screen programs redraw on resize; their screen is not reflowed.
        assert_eq!(rows(&terminal), ["editor", "", ""]);
        terminal.feed(b"\x1b[?1049l");
        assert!(!terminal.alternate_screen());
        assert_eq!(rows(&terminal), ["0123456789abcde", "$", ""]);
        assert_eq!(terminal.cursor(), (1, 2, true));
    }

    #[test]
    fn wide_characters_after_resize() {
        // `漢` does not fit in the last column at 10 columns: it starts the next row.
        let mut terminal = fed(3, 10, "abcdefghi漢字".as_bytes());
        assert_eq!(rows(&terminal), ["abcdefghi", "漢字", ""]);
        assert_eq!(terminal.contents(), "abcdefghi漢字");
        terminal.resize(3, 20);
        assert_eq!(terminal.cursor(), (0, 13, true));
        // Each wide character keeps two cells: 13 of 20 columns used, 7 blank.
        let segments = terminal.row_segments(0);
        assert_eq!(segments.len(), 1);
        assert_eq!(segments[0].text, format!("abcdefghi漢字{}", " ".repeat(7)));
        terminal.resize(3, 7);
        assert_eq!(buffer(&mut terminal), ["abcdefg", "hi漢字", "", ""]);
        assert_eq!(terminal.cursor(), (0, 6, true));
        terminal.resize(3, 6);
        assert_eq!(buffer(&mut terminal), ["abcdef", "ghi漢", "字", "", ""]);
        // The blank where `字` did not fit is no text: the line reads on across the rows.
        terminal.set_scrollback(1);
        assert_eq!(terminal.contents(), "ghi漢字");
    }

    #[test]
    fn take_replies_answers_a_cursor_position_query() {
        let mut terminal = fed(5, 20, b"\r\n\r\nab\x1b[6n");
        assert_eq!(terminal.take_replies(), b"\x1b[3;3R");
        assert!(terminal.take_replies().is_empty());
        terminal.feed(b"\x1b[5n");
        assert_eq!(terminal.take_replies(), b"\x1b[0n");
    }

    #[test]
    fn title_modes_and_scrollback() {
        let mut terminal = fed(2, 10, b"\x1b]0;my title\x07\x1b[?2004h\x1b[?1000h\x1b[?1h");
        assert_eq!(terminal.title(), "my title");
        assert!(terminal.bracketed_paste() && terminal.application_cursor());
        assert_eq!(terminal.mouse_mode(), "press_release");
        terminal.feed(b"\x1b[?1002h");
        assert_eq!(terminal.mouse_mode(), "button_motion");
        terminal.feed(b"\x1b[?1003h");
        assert_eq!(terminal.mouse_mode(), "any_motion");
        terminal.feed(b"\x1b[?1003l");
        assert_eq!(terminal.mouse_mode(), "none");
        terminal.feed(b"1\r\n2\r\n3\r\n4");
        terminal.set_scrollback(2);
        assert_eq!(terminal.scrollback(), 2);
        assert_eq!(row_text(&terminal, 0), "1");
        assert_eq!(terminal.dirty_rows(), vec![0, 1]);
    }

    #[test]
    fn synchronized_updates_show_at_once() {
        let terminal = fed(2, 10, b"\x1b[?2026hdrawn");
        assert_eq!(row_text(&terminal, 0), "drawn");
    }
}
