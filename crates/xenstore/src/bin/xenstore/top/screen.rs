//! The interactive view: the alternate screen in raw mode, redrawn every
//! refresh and on every key; the terminal is restored however the view
//! ends (a guard), so a failure never leaves the shell in raw mode.

use std::io::{self, Write};
use std::time::{Duration, Instant};

use crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use crossterm::{cursor, execute, queue, style, terminal};

use super::sample::{self, Sample};
use super::table::{self, Column, Order};
use super::Settings;

/// The keys, as the help line shows them.
const KEYS: &str = "sort: d id, a name, c conn, n/N nodes/%, w/W watches/%, t tx, m/M mem/%, r req/s, i in, o out, \
e denied, u quota; R reverse; space refresh; q quit";

struct Raw;

impl Raw {
    fn enter() -> io::Result<Raw> {
        terminal::enable_raw_mode()?;
        let guard = Raw;
        execute!(io::stdout(), terminal::EnterAlternateScreen, cursor::Hide)?;
        Ok(guard)
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        let _ = execute!(io::stdout(), cursor::Show, terminal::LeaveAlternateScreen);
        let _ = terminal::disable_raw_mode();
    }
}

/// Runs the view until `q`, Escape or Ctrl-C (or `-n` refreshes).
pub fn run(client: &xenstore::Client, settings: &Settings) -> Result<(), String> {
    let _raw = Raw::enter().map_err(|e| format!("the terminal: {e}"))?;
    let mut order = settings.order;
    let mut before: Option<(Sample, Instant)> = None;
    let mut now = (sample::take(client).map_err(|e| e.to_string())?, Instant::now());
    let mut frames = 0u64;
    let mut show_keys = false;
    loop {
        let seconds = before.as_ref().map_or(0.0, |b| now.1.duration_since(b.1).as_secs_f64());
        let frame = table::frame(&now.0, before.as_ref().map(|b| &b.0), seconds, order);
        draw(&frame, show_keys).map_err(|e| format!("drawing: {e}"))?;
        frames += 1;
        if settings.iterations.is_some_and(|n| frames >= n) {
            return Ok(());
        }
        // The first rates come sooner than a whole period.
        let period = if before.is_none() { settings.delay.min(Duration::from_secs(1)) } else { settings.delay };
        let deadline = now.1 + period;
        let mut refresh = false;
        while !refresh {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            if !event::poll(left).map_err(|e| format!("reading keys: {e}"))? {
                continue;
            }
            match event::read().map_err(|e| format!("reading keys: {e}"))? {
                Event::Key(KeyEvent { code, modifiers, kind: KeyEventKind::Press, .. }) => match code {
                    KeyCode::Char('q') | KeyCode::Esc => return Ok(()),
                    KeyCode::Char('c') if modifiers.contains(KeyModifiers::CONTROL) => return Ok(()),
                    KeyCode::Char(' ') => refresh = true,
                    KeyCode::Char('R') => order.reversed = !order.reversed,
                    KeyCode::Char('h' | '?') => show_keys = !show_keys,
                    KeyCode::Char(key) => {
                        if let Some(column) = Column::from_key(key) {
                            order = Order { column, reversed: false };
                        }
                    }
                    _ => {}
                },
                Event::Resize(..) => {}
                _ => continue,
            }
            if !refresh {
                let frame = table::frame(&now.0, before.as_ref().map(|b| &b.0), seconds, order);
                draw(&frame, show_keys).map_err(|e| format!("drawing: {e}"))?;
            }
        }
        let next = (sample::take(client).map_err(|e| e.to_string())?, Instant::now());
        before = Some(std::mem::replace(&mut now, next));
    }
}

fn draw(frame: &table::Frame, show_keys: bool) -> io::Result<()> {
    let (width, height) = terminal::size().unwrap_or((80, 24));
    let (width, height) = (usize::from(width), usize::from(height));
    let mut out = io::stdout().lock();
    queue!(out, cursor::MoveTo(0, 0), terminal::Clear(terminal::ClearType::All))?;
    let mut lines: Vec<String> = frame.summary.clone();
    if show_keys {
        lines.extend(wrap(KEYS, width));
    } else {
        lines.push("h: keys".to_owned());
    }
    lines.push(String::new());
    lines.push(table::header());
    let header_row = lines.len() - 1;
    let room = height.saturating_sub(lines.len());
    lines.extend(frame.rows.iter().take(room).map(table::line));
    for (i, line) in lines.iter().enumerate().take(height) {
        let cut: String = line.chars().take(width).collect();
        let y = u16::try_from(i).unwrap_or(u16::MAX);
        if i == header_row {
            queue!(out, cursor::MoveTo(0, y), style::SetAttribute(style::Attribute::Reverse))?;
            queue!(out, style::Print(format!("{cut:<width$}")), style::SetAttribute(style::Attribute::Reset))?;
        } else {
            queue!(out, cursor::MoveTo(0, y), style::Print(cut))?;
        }
    }
    out.flush()
}

/// `text` in lines of at most `width` characters, broken at spaces.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for word in text.split(' ') {
        let last = lines.last_mut().expect("one line at least");
        if !last.is_empty() && last.len() + 1 + word.len() > width {
            lines.push(word.to_owned());
        } else {
            if !last.is_empty() {
                last.push(' ');
            }
            last.push_str(word);
        }
    }
    lines
}
