//! Colour on a terminal, never elsewhere, and never when `NO_COLOR` is set
//! (<https://no-color.org>) or `TERM=dumb`.

use anstyle::{AnsiColor, Style};
use std::io::IsTerminal;

/// Whether results printed on stdout may use colour.
pub fn stdout_color() -> bool {
    std::io::stdout().is_terminal() && color_allowed()
}

/// The environment allows colour: `NO_COLOR` unset (or empty) and `TERM` not `dumb`.
pub fn color_allowed() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        && std::env::var("TERM").map_or(true, |t| t != "dumb")
}

/// Text in a style, or plain when `on` is false.
pub fn paint(text: &str, style: Style, on: bool) -> String {
    if on {
        format!("{}{text}{}", style.render(), style.render_reset())
    } else {
        text.to_string()
    }
}

pub fn bold() -> Style {
    Style::new().bold()
}
pub fn dim() -> Style {
    Style::new().dimmed()
}
pub fn fg(c: AnsiColor) -> Style {
    Style::new().fg_color(Some(c.into()))
}
pub fn red() -> Style {
    fg(AnsiColor::Red)
}
pub fn green() -> Style {
    fg(AnsiColor::Green)
}
pub fn yellow() -> Style {
    fg(AnsiColor::Yellow)
}
pub fn cyan() -> Style {
    fg(AnsiColor::Cyan)
}
pub fn magenta() -> Style {
    fg(AnsiColor::Magenta)
}
