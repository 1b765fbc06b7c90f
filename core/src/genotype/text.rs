//! The reference's Python-repr text form of genotypes, read and written for CNN and RNN cells
//! alike: `Genotype(normal=[('sep_conv_3x3', 0), ...], normal_concat=range(2, 6), ...)` and
//! `Genotype_rnn(recurrent=[('relu', 0), ...], concat=range(1, 9))`.
//!
//! Both are a call whose arguments come in pairs per cell: a gene list `[('op', source), ...]`
//! and a concat, `range(a, b)`, `range(b)` or a list. The reader accepts keyword or positional
//! arguments, single or double quotes, any whitespace, `#` comments and trailing commas, and
//! names the line and column of the first thing it cannot read.

use std::fmt::Display;
use std::str::FromStr;

/// A syntax error in the reference text form, with its 1-based line and column.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct ParseError {
    /// 1-based line of the offending character.
    pub line: usize,
    /// 1-based column (in characters) of the offending character.
    pub column: usize,
    /// What was expected and what was found.
    pub message: String,
}

/// The shape of one genotype's text form.
pub(crate) struct ReprForm {
    /// Accepted names of the call (`Genotype`, `Genotype_rnn`).
    pub(crate) names: &'static [&'static str],
    /// Per cell, the names of its gene list and of its concat, in positional order.
    pub(crate) cells: &'static [[&'static str; 2]],
}

impl ReprForm {
    fn field_name(&self, field: usize) -> &'static str {
        self.cells[field / 2][field % 2]
    }

    fn field_count(&self) -> usize {
        self.cells.len() * 2
    }
}

/// The gene list (even field) or concat (odd field) given for one field.
enum FieldValue<Op> {
    Genes(Vec<(Op, usize)>),
    Indices(Vec<usize>),
}

/// The fields of a parsed call; taking one that was not given is the "missing field" error,
/// pointing at the closing parenthesis.
pub(crate) struct ParsedFields<'a, Op> {
    text: &'a str,
    form: &'static ReprForm,
    values: Vec<Option<FieldValue<Op>>>,
    close: usize,
}

impl<Op> ParsedFields<'_, Op> {
    /// The gene list of cell `cell`.
    pub(crate) fn genes(&mut self, cell: usize) -> Result<Vec<(Op, usize)>, ParseError> {
        match self.values[2 * cell].take() {
            Some(FieldValue::Genes(genes)) => Ok(genes),
            _ => Err(self.missing(2 * cell)),
        }
    }

    /// The concat of cell `cell`.
    pub(crate) fn concat(&mut self, cell: usize) -> Result<Vec<usize>, ParseError> {
        match self.values[2 * cell + 1].take() {
            Some(FieldValue::Indices(indices)) => Ok(indices),
            _ => Err(self.missing(2 * cell + 1)),
        }
    }

    fn missing(&self, field: usize) -> ParseError {
        error_at(
            self.text,
            self.close,
            format!("missing field `{}`", self.form.field_name(field)),
        )
    }
}

/// Reads `text` as a call of `form`; operation names are read with `Op::from_str`, whose error
/// message becomes the parse error's.
pub(crate) fn parse<'a, Op>(
    text: &'a str,
    form: &'static ReprForm,
) -> Result<ParsedFields<'a, Op>, ParseError>
where
    Op: FromStr,
    Op::Err: Display,
{
    Parser { text, position: 0 }.call(form)
}

/// `[('op', source), ...]`.
pub(crate) fn write_genes<Op: Display>(genes: impl IntoIterator<Item = (Op, usize)>) -> String {
    let items: Vec<String> = genes
        .into_iter()
        .map(|(op, source)| format!("('{op}', {source})"))
        .collect();
    format!("[{}]", items.join(", "))
}

/// `range(a, b)` for consecutive indices, a list otherwise.
pub(crate) fn write_concat(concat: &[usize]) -> String {
    let contiguous = concat.windows(2).all(|pair| pair[1] == pair[0] + 1);
    match (concat.first(), concat.last()) {
        (Some(first), Some(last)) if contiguous => format!("range({first}, {})", last + 1),
        _ => {
            let items: Vec<String> = concat.iter().map(usize::to_string).collect();
            format!("[{}]", items.join(", "))
        }
    }
}

/// An error with `message` at byte `position` of `text`, as line and column.
fn error_at(text: &str, position: usize, message: String) -> ParseError {
    let before = &text[..position.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
    let column = before[line_start..].chars().count() + 1;
    ParseError {
        line,
        column,
        message,
    }
}

/// A lexical token; strings hold their content without the quotes.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Token<'a> {
    Ident(&'a str),
    Int(usize),
    Str(&'a str),
    Punct(char),
    /// Any other character, reported as found where something else was expected.
    Other,
    End,
}

/// A token with the byte range of its source text.
#[derive(Debug, Clone, Copy)]
struct Lexeme<'a> {
    token: Token<'a>,
    start: usize,
    end: usize,
}

/// Recursive descent over tokens read lazily, so the first error in text order is reported.
struct Parser<'a> {
    text: &'a str,
    /// Byte offset of the first unread character.
    position: usize,
}

impl<'a> Parser<'a> {
    /// The whole text: one call of `form` and nothing after it but blanks and comments.
    fn call<Op>(&mut self, form: &'static ReprForm) -> Result<ParsedFields<'a, Op>, ParseError>
    where
        Op: FromStr,
        Op::Err: Display,
    {
        let header = self.peek()?;
        match header.token {
            Token::Ident(name) if form.names.contains(&name) => self.advance(header),
            _ => {
                let names: Vec<String> =
                    form.names.iter().map(|name| format!("`{name}(`")).collect();
                return Err(self.expected(&names.join(" or ")));
            }
        }
        self.punct('(')?;
        let mut values: Vec<Option<FieldValue<Op>>> =
            (0..form.field_count()).map(|_| None).collect();
        let mut positional = 0;
        let mut seen_keyword = false;
        loop {
            let argument = self.peek()?;
            if argument.token == Token::Punct(')') {
                break;
            }
            let field = match self.keyword_argument(form, argument)? {
                Some(field) => {
                    seen_keyword = true;
                    field
                }
                None => {
                    if seen_keyword {
                        return Err(
                            self.expected("a keyword argument (`field=`) after keyword arguments")
                        );
                    }
                    if positional == form.field_count() {
                        return Err(self.expected(&format!(
                            "`)` after {} fields",
                            count_word(form.field_count())
                        )));
                    }
                    positional += 1;
                    positional - 1
                }
            };
            if values[field].is_some() {
                return Err(error_at(
                    self.text,
                    argument.start,
                    format!("field `{}` given twice", form.field_name(field)),
                ));
            }
            values[field] = Some(if field % 2 == 0 {
                FieldValue::Genes(self.genes()?)
            } else {
                FieldValue::Indices(self.concat()?)
            });
            if !self.separator(')')? {
                break;
            }
        }
        let close = self.peek()?.start;
        self.punct(')')?;
        if self.peek()?.token != Token::End {
            return Err(self.expected("end of input after the closing `)`"));
        }
        Ok(ParsedFields {
            text: self.text,
            form,
            values,
            close,
        })
    }

    /// When `argument` starts `name=`, consumes that and returns the field it names.
    fn keyword_argument(
        &mut self,
        form: &ReprForm,
        argument: Lexeme<'a>,
    ) -> Result<Option<usize>, ParseError> {
        let Token::Ident(name) = argument.token else {
            return Ok(None);
        };
        if self.lex(argument.end).ok().map(|next| next.token) != Some(Token::Punct('=')) {
            return Ok(None);
        }
        self.advance(argument);
        self.punct('=')?;
        let field = (0..form.field_count()).find(|&field| form.field_name(field) == name);
        let Some(field) = field else {
            let expected = match form.cells {
                [[genes, concat]] => format!("{genes} or {concat}"),
                cells => format!("one of: {}", cells.concat().join(", ")),
            };
            let message = format!("unknown field `{name}` (expected {expected})");
            return Err(error_at(self.text, argument.start, message));
        };
        Ok(Some(field))
    }

    fn genes<Op>(&mut self) -> Result<Vec<(Op, usize)>, ParseError>
    where
        Op: FromStr,
        Op::Err: Display,
    {
        self.punct('[')?;
        let mut genes = Vec::new();
        while self.peek()?.token != Token::Punct(']') {
            self.punct('(')?;
            let op = self.op_name()?;
            self.punct(',')?;
            let source = self.integer()?;
            self.optional_comma()?;
            self.punct(')')?;
            genes.push((op, source));
            if !self.separator(']')? {
                break;
            }
        }
        self.punct(']')?;
        Ok(genes)
    }

    fn concat(&mut self) -> Result<Vec<usize>, ParseError> {
        let first = self.peek()?;
        if first.token == Token::Punct('[') {
            self.advance(first);
            let mut indices = Vec::new();
            while self.peek()?.token != Token::Punct(']') {
                indices.push(self.integer()?);
                if !self.separator(']')? {
                    break;
                }
            }
            self.punct(']')?;
            return Ok(indices);
        }
        if first.token != Token::Ident("range") {
            return Err(self.expected("`range(` or `[`"));
        }
        self.advance(first);
        self.punct('(')?;
        let first = self.integer()?;
        let (begin, end) = if self.optional_comma()? && self.peek()?.token != Token::Punct(')') {
            let second = self.integer()?;
            self.optional_comma()?;
            (first, second)
        } else {
            (0, first)
        };
        self.punct(')')?;
        Ok((begin..end).collect())
    }

    fn op_name<Op>(&mut self) -> Result<Op, ParseError>
    where
        Op: FromStr,
        Op::Err: Display,
    {
        let lexeme = self.peek()?;
        let Token::Str(name) = lexeme.token else {
            return Err(self.expected("a quoted operation name"));
        };
        let op = name
            .parse()
            .map_err(|error: Op::Err| error_at(self.text, lexeme.start, error.to_string()))?;
        self.advance(lexeme);
        Ok(op)
    }

    fn integer(&mut self) -> Result<usize, ParseError> {
        let lexeme = self.peek()?;
        let Token::Int(value) = lexeme.token else {
            return Err(self.expected("a non-negative integer"));
        };
        self.advance(lexeme);
        Ok(value)
    }

    fn punct(&mut self, wanted: char) -> Result<(), ParseError> {
        let lexeme = self.peek()?;
        if lexeme.token != Token::Punct(wanted) {
            return Err(self.expected(&format!("`{wanted}`")));
        }
        self.advance(lexeme);
        Ok(())
    }

    /// Consumes a `,` if one comes next; whether it did.
    fn optional_comma(&mut self) -> Result<bool, ParseError> {
        let lexeme = self.peek()?;
        let found = lexeme.token == Token::Punct(',');
        if found {
            self.advance(lexeme);
        }
        Ok(found)
    }

    /// After an item: consumes a `,` and returns true, or returns false before `close`.
    fn separator(&mut self, close: char) -> Result<bool, ParseError> {
        let lexeme = self.peek()?;
        match lexeme.token {
            Token::Punct(',') => {
                self.advance(lexeme);
                Ok(true)
            }
            Token::Punct(found) if found == close => Ok(false),
            _ => Err(self.expected(&format!("`,` or `{close}`"))),
        }
    }

    /// "expected ..., found ..." at the next token.
    fn expected(&self, what: &str) -> ParseError {
        match self.peek() {
            Ok(lexeme) => error_at(
                self.text,
                lexeme.start,
                format!("expected {what}, found {}", self.describe(lexeme)),
            ),
            Err(error) => error,
        }
    }

    /// The first character of `lexeme`, or "end of input".
    fn describe(&self, lexeme: Lexeme<'_>) -> String {
        match self.text[lexeme.start..].chars().next() {
            Some(c) => format!("`{}`", c.escape_debug()),
            None => "end of input".to_string(),
        }
    }

    fn advance(&mut self, lexeme: Lexeme<'_>) {
        self.position = lexeme.end;
    }

    fn peek(&self) -> Result<Lexeme<'a>, ParseError> {
        self.lex(self.position)
    }

    /// The token at or after byte `from`, past whitespace and `#` comments.
    fn lex(&self, from: usize) -> Result<Lexeme<'a>, ParseError> {
        let text = self.text;
        let start = skip_blank(text, from);
        let rest = &text[start..];
        let Some(first) = rest.chars().next() else {
            return Ok(Lexeme {
                token: Token::End,
                start,
                end: start,
            });
        };
        let run = |accept: fn(char) -> bool| rest.find(|c: char| !accept(c)).unwrap_or(rest.len());
        let (token, length) = if first.is_ascii_alphabetic() || first == '_' {
            let length = run(|c| c.is_ascii_alphanumeric() || c == '_');
            (Token::Ident(&rest[..length]), length)
        } else if first.is_ascii_digit() {
            let length = run(|c| c.is_ascii_digit());
            let value = rest[..length]
                .parse()
                .map_err(|_| error_at(text, start, "integer too large".to_string()))?;
            (Token::Int(value), length)
        } else if first == '\'' || first == '"' {
            let content = &rest[1..];
            let length = content
                .find([first, '\n'])
                .filter(|&end| content[end..].starts_with(first))
                .ok_or_else(|| error_at(text, start, "unterminated string".to_string()))?;
            (Token::Str(&content[..length]), length + 2)
        } else if "()[],=".contains(first) {
            (Token::Punct(first), first.len_utf8())
        } else {
            (Token::Other, first.len_utf8())
        };
        Ok(Lexeme {
            token,
            start,
            end: start + length,
        })
    }
}

/// The offset of the first character at or after `from` that is neither whitespace nor in a
/// `#` comment.
fn skip_blank(text: &str, mut from: usize) -> usize {
    loop {
        let rest = &text[from..];
        let trimmed = rest.trim_start();
        from += rest.len() - trimmed.len();
        if !trimmed.starts_with('#') {
            return from;
        }
        from += trimmed.find('\n').unwrap_or(trimmed.len());
    }
}

/// A field count in words, as the messages have always said it.
fn count_word(count: usize) -> String {
    match count {
        2 => "two".to_string(),
        4 => "four".to_string(),
        other => other.to_string(),
    }
}
