//! Aligned text tables for people.

/// Render rows under headers, columns separated by two spaces; the last
/// column is not padded. Colour sequences ([`paint`]) take no width.
pub fn render(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| width(h)).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(width(cell));
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut s = String::new();
        for (i, cell) in cells.enumerate() {
            if i + 1 < widths.len() {
                s.push_str(cell);
                s.push_str(&" ".repeat(widths[i] - width(cell) + 2));
            } else {
                s.push_str(cell);
            }
        }
        out.push_str(s.trim_end());
        out.push('\n');
    };
    line(&mut headers.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

/// The width a cell shows: its characters, SGR sequences (`ESC [ ... m`) not counted.
fn width(cell: &str) -> usize {
    let mut n = 0;
    let mut chars = cell.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            n += 1;
        }
    }
    n
}

/// Should tables be coloured? Only on a terminal, and not with NO_COLOR set
/// (https://no-color.org) or TERM=dumb.
pub fn colour() -> bool {
    std::io::IsTerminal::is_terminal(&std::io::stdout())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        && std::env::var("TERM").map_or(true, |t| t != "dumb")
}

/// `word` in SGR colour `code` (`32` green, `1;33` bold yellow) when `on`.
pub fn paint(word: &str, code: &str, on: bool) -> String {
    if on { format!("\x1b[{code}m{word}\x1b[0m") } else { word.to_string() }
}

/// `42s`, `3m`, `5h`, `2d`.
pub fn duration(secs: i64) -> String {
    let (sign, s) = if secs < 0 { ("-", -secs) } else { ("", secs) };
    match s {
        0..60 => format!("{sign}{s}s"),
        60..3600 => format!("{sign}{}m", s / 60),
        3600..86400 => format!("{sign}{}h", s / 3600),
        _ => format!("{sign}{}d", s / 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_takes_no_width() {
        let red = paint("down", "31", true);
        assert_eq!(width(&red), 4);
        let t = render(&["A", "B"], &[vec![red.clone(), "x".into()], vec!["longer".into(), "y".into()]]);
        assert_eq!(t, format!("A       B\n{red}    x\nlonger  y\n"));
        assert_eq!(paint("down", "31", false), "down");
    }

    #[test]
    fn aligned() {
        let t = render(&["A", "BB", "C"], &[vec!["xxx".into(), "y".into(), "z".into()]]);
        assert_eq!(t, "A    BB  C\nxxx  y   z\n");
        assert_eq!(duration(59), "59s");
        assert_eq!(duration(61), "1m");
        assert_eq!(duration(7200), "2h");
        assert_eq!(duration(-5), "-5s");
    }
}
