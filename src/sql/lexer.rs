//! A PostgreSQL tokenizer and statement splitter: strings (standard, `E''`, `U&''`,
//! `B''`/`X''`), quoted identifiers, dollar quotes, nested block comments, `--`
//! comments, `BEGIN ATOMIC … END` function bodies, psql meta-commands (`\set …`) and
//! `COPY … FROM stdin` data. Positions are 1-based lines and columns (in characters).

/// What a token is. Words are lowercased; quoted identifiers keep their case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tok {
    Word(String),
    QuotedIdent(String),
    /// A string constant's value (escapes of standard strings resolved; others raw).
    Str(String),
    Number(String),
    /// `$1`
    Param,
    LParen,
    RParen,
    Comma,
    Dot,
    Semicolon,
    /// Any other operator or punctuation: `=`, `::`, `+`, `[`…
    Op(String),
}

#[derive(Clone, Debug)]
pub struct Token {
    pub tok: Tok,
    pub line: usize,
    pub col: usize,
    /// Byte offsets in the source.
    pub start: usize,
    pub end: usize,
}

impl Token {
    /// A keyword or unquoted identifier, lowercased.
    pub fn word(&self) -> Option<&str> {
        match &self.tok {
            Tok::Word(w) => Some(w),
            _ => None,
        }
    }
    pub fn is(&self, w: &str) -> bool {
        self.word() == Some(w)
    }
    /// An identifier as PostgreSQL folds it: unquoted lowercased, quoted as written.
    pub fn ident(&self) -> Option<&str> {
        match &self.tok {
            Tok::Word(w) => Some(w),
            Tok::QuotedIdent(w) => Some(w),
            _ => None,
        }
    }
}

/// One SQL statement of a file.
#[derive(Clone, Debug)]
pub struct Statement {
    pub tokens: Vec<Token>,
    pub line: usize,
    pub col: usize,
    pub end_line: usize,
    /// The statement's source text, without the final `;`.
    pub text: String,
}

impl Statement {
    /// The text on one line, whitespace collapsed, at most `max` characters.
    pub fn excerpt(&self, max: usize) -> String {
        // tokens as written, each gap (whitespace or comments) as one space
        let base = self.tokens.first().map(|t| t.start).unwrap_or(0);
        let mut one = String::new();
        let mut prev_end = base;
        for t in &self.tokens {
            if t.start > prev_end {
                one.push(' ');
            }
            one.push_str(&self.text[t.start - base..t.end - base]);
            prev_end = t.end;
        }
        let one: String = one.split_whitespace().collect::<Vec<_>>().join(" ");
        if one.chars().count() > max {
            format!("{}…", one.chars().take(max - 1).collect::<String>())
        } else {
            one
        }
    }
}

/// A `--` or `/* */` comment.
#[derive(Clone, Debug)]
pub struct Comment {
    pub line: usize,
    pub text: String,
}

#[derive(Clone, Debug, Default)]
pub struct Lexed {
    pub statements: Vec<Statement>,
    pub comments: Vec<Comment>,
    /// Problems the lexer found (unterminated string, comment…), with line numbers.
    pub errors: Vec<(usize, String)>,
}

struct Cursor<'a> {
    src: &'a str,
    chars: Vec<(usize, char)>,
    i: usize,
    line: usize,
    col: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self, k: usize) -> Option<char> {
        self.chars.get(self.i + k).map(|c| c.1)
    }
    fn pos(&self) -> usize {
        self.chars
            .get(self.i)
            .map(|c| c.0)
            .unwrap_or(self.src.len())
    }
    fn bump(&mut self) -> Option<char> {
        let c = self.peek(0)?;
        self.i += 1;
        if c == '\n' {
            self.line += 1;
            self.col = 1;
        } else {
            self.col += 1;
        }
        Some(c)
    }
    fn at_line_start(&self) -> bool {
        let start = self.pos();
        let before = &self.src[..start];
        before
            .rsplit('\n')
            .next()
            .is_none_or(|l| l.trim().is_empty())
    }
    fn skip_line(&mut self) -> String {
        let mut s = String::new();
        while let Some(c) = self.peek(0) {
            if c == '\n' {
                break;
            }
            s.push(c);
            self.bump();
        }
        s
    }
}

fn is_ident_start(c: char) -> bool {
    c.is_alphabetic() || c == '_' || (c as u32) >= 0x80
}
fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '$' || (c as u32) >= 0x80
}

/// Splits a file into statements and comments.
pub fn lex(src: &str) -> Lexed {
    let mut c = Cursor {
        src,
        chars: src.char_indices().collect(),
        i: 0,
        line: 1,
        col: 1,
    };
    let mut out = Lexed::default();
    let mut cur: Vec<Token> = Vec::new();
    let mut atomic_depth = 0usize;
    let mut copy_data_pending = false;

    let finish = |cur: &mut Vec<Token>, out: &mut Lexed, src: &str| {
        if cur.is_empty() {
            return;
        }
        let toks = std::mem::take(cur);
        let first = &toks[0];
        let last = &toks[toks.len() - 1];
        out.statements.push(Statement {
            line: first.line,
            col: first.col,
            end_line: last.line,
            text: src[first.start..last.end].to_string(),
            tokens: toks,
        });
    };

    while let Some(ch) = c.peek(0) {
        // COPY … FROM stdin: data lines follow the statement up to `\.`
        if copy_data_pending && ch == '\n' {
            c.bump();
            loop {
                if c.peek(0).is_none() {
                    break;
                }
                let l = c.skip_line();
                c.bump();
                if l.trim_end() == "\\." {
                    break;
                }
            }
            copy_data_pending = false;
            continue;
        }
        if ch.is_whitespace() {
            c.bump();
            continue;
        }
        let (line, col, start) = (c.line, c.col, c.pos());
        // psql meta-command: to the end of the line
        if ch == '\\' && c.at_line_start() {
            c.skip_line();
            continue;
        }
        if ch == '-' && c.peek(1) == Some('-') {
            c.bump();
            c.bump();
            let text = c.skip_line();
            out.comments.push(Comment { line, text });
            continue;
        }
        if ch == '/' && c.peek(1) == Some('*') {
            c.bump();
            c.bump();
            let mut depth = 1;
            let mut text = String::new();
            while depth > 0 {
                match (c.peek(0), c.peek(1)) {
                    (None, _) => {
                        out.errors.push((line, "unterminated /* comment".into()));
                        break;
                    }
                    (Some('*'), Some('/')) => {
                        c.bump();
                        c.bump();
                        depth -= 1;
                    }
                    (Some('/'), Some('*')) => {
                        c.bump();
                        c.bump();
                        depth += 1;
                    }
                    (Some(x), _) => {
                        text.push(x);
                        c.bump();
                    }
                }
            }
            out.comments.push(Comment { line, text });
            continue;
        }
        let tok = if ch == '\'' {
            Tok::Str(quoted(&mut c, '\'', false, &mut out.errors))
        } else if (ch == 'e' || ch == 'E') && c.peek(1) == Some('\'') {
            c.bump();
            Tok::Str(quoted(&mut c, '\'', true, &mut out.errors))
        } else if matches!(ch, 'b' | 'B' | 'x' | 'X' | 'n' | 'N') && c.peek(1) == Some('\'') {
            c.bump();
            Tok::Str(quoted(&mut c, '\'', false, &mut out.errors))
        } else if (ch == 'u' || ch == 'U') && c.peek(1) == Some('&') && c.peek(2) == Some('\'') {
            c.bump();
            c.bump();
            Tok::Str(quoted(&mut c, '\'', false, &mut out.errors))
        } else if (ch == 'u' || ch == 'U') && c.peek(1) == Some('&') && c.peek(2) == Some('"') {
            c.bump();
            c.bump();
            Tok::QuotedIdent(quoted(&mut c, '"', false, &mut out.errors))
        } else if ch == '"' {
            Tok::QuotedIdent(quoted(&mut c, '"', false, &mut out.errors))
        } else if ch == '$' && c.peek(1).is_some_and(|d| d.is_ascii_digit()) {
            c.bump();
            while c.peek(0).is_some_and(|d| d.is_ascii_digit()) {
                c.bump();
            }
            Tok::Param
        } else if ch == '$' {
            // dollar quote: $tag$ … $tag$
            let mut tag = String::from("$");
            let mut k = 1;
            while let Some(d) = c.peek(k) {
                if d == '$' {
                    tag.push('$');
                    break;
                }
                if !(is_ident_char(d) && d != '$') || (k == 1 && d.is_ascii_digit()) {
                    tag.clear();
                    break;
                }
                tag.push(d);
                k += 1;
            }
            if tag.len() >= 2 && tag.ends_with('$') {
                for _ in 0..tag.chars().count() {
                    c.bump();
                }
                let body_start = c.pos();
                let rest = &src[body_start..];
                match rest.find(&tag) {
                    Some(end) => {
                        let body = rest[..end].to_string();
                        let target = body_start + end + tag.len();
                        while c.pos() < target {
                            c.bump();
                        }
                        Tok::Str(body)
                    }
                    None => {
                        out.errors
                            .push((line, format!("unterminated dollar quote {tag}")));
                        while c.bump().is_some() {}
                        Tok::Str(rest.to_string())
                    }
                }
            } else {
                c.bump();
                Tok::Op("$".into())
            }
        } else if is_ident_start(ch) {
            let mut w = String::new();
            while let Some(d) = c.peek(0) {
                if !is_ident_char(d) {
                    break;
                }
                w.push(d);
                c.bump();
            }
            Tok::Word(w.to_lowercase())
        } else if ch.is_ascii_digit()
            || (ch == '.' && c.peek(1).is_some_and(|d| d.is_ascii_digit()))
        {
            let mut n = String::new();
            while let Some(d) = c.peek(0) {
                if !(d.is_ascii_alphanumeric() || d == '.' || d == '_') {
                    break;
                }
                n.push(d);
                c.bump();
            }
            Tok::Number(n)
        } else {
            c.bump();
            match ch {
                '(' => Tok::LParen,
                ')' => Tok::RParen,
                ',' => Tok::Comma,
                ';' => Tok::Semicolon,
                '.' => Tok::Dot,
                ':' if c.peek(0) == Some(':') => {
                    c.bump();
                    Tok::Op("::".into())
                }
                _ => {
                    let mut op = ch.to_string();
                    while let Some(d) = c.peek(0) {
                        if !"+-*/<>=~!@#%^&|`?".contains(d) {
                            break;
                        }
                        // `--` and `/*` start comments even inside operators
                        if (d == '-' && c.peek(1) == Some('-'))
                            || (d == '/' && c.peek(1) == Some('*'))
                        {
                            break;
                        }
                        op.push(d);
                        c.bump();
                    }
                    Tok::Op(op)
                }
            }
        };
        let token = Token {
            tok,
            line,
            col,
            start,
            end: c.pos(),
        };
        if token.tok == Tok::Semicolon && atomic_depth == 0 {
            copy_data_pending = is_copy_from_stdin(&cur);
            finish(&mut cur, &mut out, src);
            continue;
        }
        // BEGIN ATOMIC … END bodies hold semicolons (psql counts BEGIN/CASE … END)
        if let Some(w) = token.word() {
            let opens_body = w == "atomic"
                && cur.last().is_some_and(|t| t.is("begin"))
                && cur.first().is_some_and(|t| t.is("create"));
            let nested = atomic_depth > 0 && (w == "begin" || w == "case");
            if opens_body || nested {
                atomic_depth += 1;
            } else if atomic_depth > 0 && w == "end" {
                atomic_depth -= 1;
            }
        }
        cur.push(token);
    }
    finish(&mut cur, &mut out, src);
    out
}

fn is_copy_from_stdin(toks: &[Token]) -> bool {
    toks.first().is_some_and(|t| t.is("copy"))
        && toks.windows(2).any(|w| w[0].is("from") && w[1].is("stdin"))
}

/// Reads a quoted string or identifier; `"` / `'` doubled is the quote itself.
fn quoted(
    c: &mut Cursor<'_>,
    q: char,
    backslash: bool,
    errors: &mut Vec<(usize, String)>,
) -> String {
    let line = c.line;
    c.bump();
    let mut s = String::new();
    loop {
        match c.bump() {
            None => {
                errors.push((
                    line,
                    format!(
                        "unterminated {}",
                        if q == '"' {
                            "quoted identifier"
                        } else {
                            "string"
                        }
                    ),
                ));
                return s;
            }
            Some('\\') if backslash => {
                if let Some(n) = c.bump() {
                    s.push(n);
                }
            }
            Some(x) if x == q => {
                if c.peek(0) == Some(q) {
                    c.bump();
                    s.push(q);
                } else {
                    return s;
                }
            }
            Some(x) => s.push(x),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(src: &str) -> Vec<String> {
        lex(src).statements.iter().map(|s| s.text.clone()).collect()
    }

    #[test]
    fn splits_on_semicolons_outside_strings_and_comments() {
        let src = "SELECT 'a;b', \"x;y\" FROM t; -- c;d\n/* e; /* nested; */ f; */ SELECT E'it\\'s;';\nSELECT $$ ; $$, $tag$ $$ ; $tag$;";
        assert_eq!(
            texts(src),
            vec![
                "SELECT 'a;b', \"x;y\" FROM t",
                "SELECT E'it\\'s;'",
                "SELECT $$ ; $$, $tag$ $$ ; $tag$"
            ]
        );
        let l = lex(src);
        assert_eq!(l.comments.len(), 2);
        assert_eq!(l.statements[1].line, 2);
    }

    #[test]
    fn begin_atomic_bodies_and_params() {
        let src = "CREATE FUNCTION f(a int) RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT CASE WHEN a > 0 THEN 1 END; SELECT $1; END;\nALTER TABLE t ADD COLUMN a int;";
        let t = texts(src);
        assert_eq!(t.len(), 2, "{t:?}");
        assert!(t[0].ends_with("END"), "{t:?}");
        assert_eq!(lex(src).statements[1].line, 2);
    }

    #[test]
    fn psql_meta_commands_and_copy_data() {
        let src = "\\set ON_ERROR_STOP on\nCOPY t (a) FROM stdin;\n1;2\n3\n\\.\nALTER TABLE t DROP COLUMN a;\n";
        let t = texts(src);
        assert_eq!(
            t,
            vec!["COPY t (a) FROM stdin", "ALTER TABLE t DROP COLUMN a"]
        );
        assert_eq!(lex(src).statements[1].line, 6);
    }

    #[test]
    fn words_fold_and_quoted_idents_keep_case() {
        let l = lex("ALTER TABLE \"Users\" ADD x int");
        let t = &l.statements[0].tokens;
        assert!(t[0].is("alter"));
        assert_eq!(t[2].tok, Tok::QuotedIdent("Users".into()));
    }

    #[test]
    fn unterminated_things_are_reported() {
        assert!(!lex("SELECT 'abc").errors.is_empty());
        assert!(!lex("SELECT $$ abc").errors.is_empty());
        assert!(!lex("/* abc").errors.is_empty());
    }
}
