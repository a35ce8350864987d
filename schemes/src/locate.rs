//! Where each value of a RON document starts, by path (`schemes[0].pattern.size.max`).
//!
//! `ron` reports syntax and structure errors with their span, but a semantic mistake found
//! after deserializing (min > max, a goal whose source is missing) needs the position of the
//! field it is about. This module walks the source once with a small lenient tokenizer and
//! records, for every struct field, list item and tuple item, the line and column (1-based,
//! columns counted in characters like `ron`'s) of its value and of its field name.
//!
//! It runs only on text `ron` accepted, but it never panics and always terminates on any
//! input (the fuzz target feeds it arbitrary bytes through the parser).

use std::collections::HashMap;

/// A 1-based line and column (in characters).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, serde::Serialize)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Loc {
    /// The field name, for struct fields.
    pub key: Option<Pos>,
    /// The first character of the value.
    pub value: Pos,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    Open(char),
    Close(char),
    Comma,
    Colon,
    Word(String),
    Literal,
}

#[derive(Default, Debug, Clone)]
pub struct Locator {
    map: HashMap<String, Loc>,
}

impl Locator {
    pub fn new(src: &str) -> Self {
        let toks = tokenize(src);
        let mut w = Walker {
            toks: &toks,
            i: 0,
            map: HashMap::new(),
            depth: 0,
        };
        w.skip_attributes();
        w.value(String::new());
        Locator { map: w.map }
    }

    /// The location of `path`, or of its nearest recorded ancestor.
    pub fn find(&self, path: &str) -> Option<Loc> {
        let mut p = path;
        loop {
            if let Some(l) = self.map.get(p) {
                return Some(*l);
            }
            let cut = p.rfind(['.', '['])?;
            p = &p[..cut];
        }
    }

    /// Position of the value at `path` (or its nearest ancestor), else 1:1.
    pub fn value_pos(&self, path: &str) -> Pos {
        self.find(path)
            .map(|l| l.value)
            .unwrap_or(Pos { line: 1, column: 1 })
    }
}

fn tokenize(src: &str) -> Vec<(Tok, Pos)> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut line, mut col) = (0usize, 1usize, 1usize);
    // Advance over chars[i], tracking line/column.
    macro_rules! bump {
        () => {{
            if chars[i] == '\n' {
                line += 1;
                col = 1;
            } else {
                col += 1;
            }
            i += 1;
        }};
    }
    while i < chars.len() {
        let c = chars[i];
        let pos = Pos { line, column: col };
        if c.is_whitespace() {
            bump!();
        } else if c == '/' && chars.get(i + 1) == Some(&'/') {
            while i < chars.len() && chars[i] != '\n' {
                bump!();
            }
        } else if c == '/' && chars.get(i + 1) == Some(&'*') {
            let mut depth = 0usize;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    bump!();
                    bump!();
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth = depth.saturating_sub(1);
                    bump!();
                    bump!();
                    if depth == 0 {
                        break;
                    }
                } else {
                    bump!();
                }
            }
        } else if matches!(c, '(' | '[' | '{') {
            out.push((Tok::Open(c), pos));
            bump!();
        } else if matches!(c, ')' | ']' | '}') {
            out.push((Tok::Close(c), pos));
            bump!();
        } else if c == ',' {
            out.push((Tok::Comma, pos));
            bump!();
        } else if c == ':' {
            out.push((Tok::Colon, pos));
            bump!();
        } else if c == '"' || ((c == 'b') && chars.get(i + 1) == Some(&'"')) {
            if c == 'b' {
                bump!();
            }
            bump!(); // opening quote
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' && i + 1 < chars.len() {
                    bump!();
                }
                bump!();
            }
            if i < chars.len() {
                bump!();
            }
            out.push((Tok::Literal, pos));
        } else if (c == 'r' || c == 'b') && is_raw_string_start(&chars, i) {
            if c == 'b' {
                bump!();
            }
            bump!(); // r
            let mut hashes = 0usize;
            while i < chars.len() && chars[i] == '#' {
                hashes += 1;
                bump!();
            }
            if i < chars.len() {
                bump!(); // opening quote
            }
            'raw: while i < chars.len() {
                if chars[i] == '"' && (1..=hashes).all(|k| chars.get(i + k) == Some(&'#')) {
                    for _ in 0..=hashes {
                        bump!();
                    }
                    break 'raw;
                }
                bump!();
            }
            out.push((Tok::Literal, pos));
        } else if c == '\'' || (c == 'b' && chars.get(i + 1) == Some(&'\'')) {
            if c == 'b' {
                bump!();
            }
            bump!();
            let mut n = 0;
            while i < chars.len() && chars[i] != '\'' && n < 12 {
                if chars[i] == '\\' && i + 1 < chars.len() {
                    bump!();
                }
                bump!();
                n += 1;
            }
            if i < chars.len() && chars[i] == '\'' {
                bump!();
            }
            out.push((Tok::Literal, pos));
        } else {
            let start = i;
            while i < chars.len() {
                let d = chars[i];
                if d.is_whitespace()
                    || matches!(
                        d,
                        '(' | ')' | '[' | ']' | '{' | '}' | ',' | ':' | '"' | '\''
                    )
                {
                    break;
                }
                if d == '/' && matches!(chars.get(i + 1), Some('/') | Some('*')) {
                    break;
                }
                bump!();
            }
            if i == start {
                bump!(); // never stall
            }
            out.push((Tok::Word(chars[start..i].iter().collect()), pos));
        }
    }
    out
}

fn is_raw_string_start(chars: &[char], i: usize) -> bool {
    let mut j = i + 1;
    if chars[i] == 'b' {
        if chars.get(j) != Some(&'r') {
            return false;
        }
        j += 1;
    }
    while chars.get(j) == Some(&'#') {
        j += 1;
    }
    chars.get(j) == Some(&'"')
}

struct Walker<'a> {
    toks: &'a [(Tok, Pos)],
    i: usize,
    map: HashMap<String, Loc>,
    depth: usize,
}

const MAX_DEPTH: usize = 128;

impl Walker<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.i).map(|t| &t.0)
    }
    fn peek2(&self) -> Option<&Tok> {
        self.toks.get(self.i + 1).map(|t| &t.0)
    }
    fn pos(&self) -> Pos {
        self.toks.get(self.i).map(|t| t.1).unwrap_or_default()
    }

    /// `#![enable(...)]` attributes before the value.
    fn skip_attributes(&mut self) {
        while matches!(self.peek(), Some(Tok::Word(w)) if w.starts_with('#')) {
            self.i += 1;
            let mut depth = 0i32;
            while let Some(t) = self.peek().cloned() {
                self.i += 1;
                match t {
                    Tok::Open(_) => depth += 1,
                    Tok::Close(_) => {
                        depth -= 1;
                        if depth <= 0 {
                            break;
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    fn record(&mut self, path: &str, key: Option<Pos>, value: Pos) {
        self.map
            .entry(path.to_string())
            .or_insert(Loc { key, value });
    }

    fn value(&mut self, path: String) {
        let start = self.pos();
        let Some(tok) = self.peek().cloned() else {
            return;
        };
        if self.depth > MAX_DEPTH {
            self.i = self.toks.len();
            return;
        }
        self.depth += 1;
        match tok {
            Tok::Word(w) => {
                self.i += 1;
                if self.peek() == Some(&Tok::Open('(')) {
                    let some = w == "Some";
                    self.paren(&path, some);
                }
            }
            Tok::Open('(') => self.paren(&path, false),
            Tok::Open('[') => {
                self.i += 1;
                let mut n = 0usize;
                loop {
                    match self.peek() {
                        None => break,
                        Some(Tok::Close(_)) => {
                            self.i += 1;
                            break;
                        }
                        Some(Tok::Comma) => self.i += 1,
                        Some(_) => {
                            let p = format!("{path}[{n}]");
                            let at = self.pos();
                            self.record(&p, None, at);
                            let before = self.i;
                            self.value(p);
                            if self.i == before {
                                self.i += 1;
                            }
                            n += 1;
                        }
                    }
                }
            }
            Tok::Open(_) => {
                // A map: record values under path.{key text}; not used by policies.
                self.i += 1;
                loop {
                    match self.peek() {
                        None => break,
                        Some(Tok::Close(_)) => {
                            self.i += 1;
                            break;
                        }
                        _ => {
                            let before = self.i;
                            self.value(format!("{path}{{}}"));
                            if self.peek() == Some(&Tok::Colon) {
                                self.i += 1;
                            }
                            self.value(format!("{path}{{}}"));
                            if self.peek() == Some(&Tok::Comma) {
                                self.i += 1;
                            }
                            if self.i == before {
                                self.i += 1;
                            }
                        }
                    }
                }
            }
            Tok::Literal | Tok::Close(_) | Tok::Comma | Tok::Colon => self.i += 1,
        }
        self.depth -= 1;
        if path.is_empty() {
            self.record("", None, start);
        }
    }

    /// At `(`: a struct body (`name: value, ...`) or tuple items. `transparent` (for `Some`)
    /// records a single item at `path` itself.
    fn paren(&mut self, path: &str, transparent: bool) {
        self.i += 1; // (
        let is_struct = matches!(
            (self.peek(), self.peek2()),
            (Some(Tok::Word(_)), Some(Tok::Colon))
        );
        let mut n = 0usize;
        loop {
            match self.peek().cloned() {
                None => break,
                Some(Tok::Close(_)) => {
                    self.i += 1;
                    break;
                }
                Some(Tok::Comma) => self.i += 1,
                Some(Tok::Word(name)) if is_struct && self.peek2() == Some(&Tok::Colon) => {
                    let key = self.pos();
                    self.i += 2;
                    let p = if path.is_empty() {
                        name.clone()
                    } else {
                        format!("{path}.{name}")
                    };
                    let at = self.pos();
                    self.record(&p, Some(key), at);
                    self.value(p);
                }
                Some(_) => {
                    let p = if transparent {
                        path.to_string()
                    } else {
                        format!("{path}.{n}")
                    };
                    let at = self.pos();
                    if !transparent {
                        self.record(&p, None, at);
                    }
                    let before = self.i;
                    self.value(p);
                    if self.i == before {
                        self.i += 1;
                    }
                    n += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_fields_items_and_nested_values() {
        let src = "// c\n#![enable(implicit_some)]\n(\n  a: 1,\n  b: [ (x: \"s,:(\"), Name(y: r#\"q\"#) ],\n  c: Some(\"v\"),\n  d: kind(3, /* ) */ 4),\n)";
        let l = Locator::new(src);
        assert_eq!(l.find("a").unwrap().value, Pos { line: 4, column: 6 });
        assert_eq!(l.find("a").unwrap().key, Some(Pos { line: 4, column: 3 }));
        assert_eq!(l.find("b[0]").unwrap().value, Pos { line: 5, column: 8 });
        assert_eq!(
            l.find("b[0].x").unwrap().value,
            Pos {
                line: 5,
                column: 12
            }
        );
        assert_eq!(
            l.find("b[1].y").unwrap().value,
            Pos {
                line: 5,
                column: 29
            }
        );
        assert_eq!(l.find("c").unwrap().value, Pos { line: 6, column: 6 });
        assert_eq!(
            l.find("d.1").unwrap().value,
            Pos {
                line: 7,
                column: 22
            }
        );
        // Unknown paths fall back to the nearest ancestor.
        assert_eq!(
            l.find("b[1].z").unwrap().value,
            Pos {
                line: 5,
                column: 21
            }
        );
    }

    #[test]
    fn never_panics_on_garbage() {
        for s in [
            "",
            "(",
            ")",
            "(a:",
            "[[[",
            "r#\"",
            "b'",
            "'\\",
            "/*",
            "(a: b(c: d(",
            "\"\\",
        ] {
            let _ = Locator::new(s);
        }
        let deep = "(".repeat(10_000);
        let _ = Locator::new(&deep);
    }
}
