//! Parser of the reference text form of recurrent genotypes (`Genotype_rnn(...)` or
//! `Genotype(...)` with fields `recurrent` and `concat`).

use crate::genotype::ParseError;
use crate::rnn_genotype::{RnnGene, RnnGenotype, RnnOp};

/// The two fields of the named tuple, in positional order.
const FIELDS: [&str; 2] = ["recurrent", "concat"];

/// A lexical token.
#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Int(usize),
    Str(String),
    Punct(char),
    End,
}

impl Token {
    fn describe(&self) -> String {
        match self {
            Token::Ident(name) => format!("`{name}`"),
            Token::Int(value) => format!("`{value}`"),
            Token::Str(text) => format!("'{text}'"),
            Token::Punct(c) => format!("`{}`", c.escape_debug()),
            Token::End => "end of input".to_string(),
        }
    }
}

/// Tokens with their byte offsets.
struct Parser<'a> {
    text: &'a str,
    tokens: Vec<(Token, usize)>,
    next: usize,
}

/// Parses the reference text form into a genotype (not validated).
pub(crate) fn parse(text: &str) -> Result<RnnGenotype, ParseError> {
    let mut parser = Parser {
        text,
        tokens: tokenize(text)?,
        next: 0,
    };
    parser.genotype()
}

fn error_at(text: &str, position: usize, message: String) -> ParseError {
    let before = &text[..position.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    ParseError {
        line,
        column,
        message,
    }
}

fn tokenize(text: &str) -> Result<Vec<(Token, usize)>, ParseError> {
    let mut tokens = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some(&(start, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '#' {
            while chars.peek().is_some_and(|&(_, c)| c != '\n') {
                chars.next();
            }
        } else if c.is_ascii_alphabetic() || c == '_' {
            let mut end = start;
            while let Some(&(at, c)) = chars.peek() {
                if !(c.is_ascii_alphanumeric() || c == '_') {
                    break;
                }
                end = at + c.len_utf8();
                chars.next();
            }
            tokens.push((Token::Ident(text[start..end].to_string()), start));
        } else if c.is_ascii_digit() {
            let mut end = start;
            while let Some(&(at, c)) = chars.peek() {
                if !c.is_ascii_digit() {
                    break;
                }
                end = at + 1;
                chars.next();
            }
            let value = text[start..end]
                .parse()
                .map_err(|_| error_at(text, start, "integer too large".to_string()))?;
            tokens.push((Token::Int(value), start));
        } else if c == '\'' || c == '"' {
            chars.next();
            let mut content = String::new();
            loop {
                match chars.next() {
                    Some((_, found)) if found == c => break,
                    Some((_, '\n')) | None => {
                        return Err(error_at(text, start, "unterminated string".to_string()))
                    }
                    Some((_, found)) => content.push(found),
                }
            }
            tokens.push((Token::Str(content), start));
        } else if "()[],=".contains(c) {
            chars.next();
            tokens.push((Token::Punct(c), start));
        } else {
            return Err(error_at(
                text,
                start,
                format!("unexpected character `{}`", c.escape_debug()),
            ));
        }
    }
    tokens.push((Token::End, text.len()));
    Ok(tokens)
}

impl Parser<'_> {
    fn peek(&self) -> &Token {
        &self.tokens[self.next.min(self.tokens.len() - 1)].0
    }

    fn position(&self) -> usize {
        self.tokens[self.next.min(self.tokens.len() - 1)].1
    }

    fn advance(&mut self) -> Token {
        let token = self.peek().clone();
        if self.next < self.tokens.len() - 1 {
            self.next += 1;
        }
        token
    }

    fn error(&self, message: String) -> ParseError {
        error_at(self.text, self.position(), message)
    }

    fn expected(&self, what: &str) -> ParseError {
        self.error(format!("expected {what}, found {}", self.peek().describe()))
    }

    fn punct(&mut self, wanted: char) -> Result<(), ParseError> {
        if *self.peek() == Token::Punct(wanted) {
            self.advance();
            Ok(())
        } else {
            Err(self.expected(&format!("`{wanted}`")))
        }
    }

    /// After an item: consumes `,` and returns true unless `close` follows.
    fn separator(&mut self, close: char) -> Result<bool, ParseError> {
        match self.peek() {
            Token::Punct(',') => {
                self.advance();
                Ok(*self.peek() != Token::Punct(close))
            }
            Token::Punct(found) if *found == close => Ok(false),
            _ => Err(self.expected(&format!("`,` or `{close}`"))),
        }
    }

    fn integer(&mut self) -> Result<usize, ParseError> {
        match self.peek() {
            Token::Int(value) => {
                let value = *value;
                self.advance();
                Ok(value)
            }
            _ => Err(self.expected("a non-negative integer")),
        }
    }

    fn genotype(&mut self) -> Result<RnnGenotype, ParseError> {
        match self.peek() {
            Token::Ident(name) if name == "Genotype_rnn" || name == "Genotype" => {
                self.advance();
            }
            _ => return Err(self.expected("`Genotype_rnn(` or `Genotype(`")),
        }
        self.punct('(')?;
        let mut recurrent: Option<Vec<RnnGene>> = None;
        let mut concat: Option<Vec<usize>> = None;
        let mut positional = 0;
        let mut seen_keyword = false;
        while *self.peek() != Token::Punct(')') {
            let argument_start = self.position();
            let is_keyword = matches!(self.peek(), Token::Ident(name) if name != "range")
                && self.tokens.get(self.next + 1).map(|t| &t.0) == Some(&Token::Punct('='));
            let field = if is_keyword {
                let Token::Ident(name) = self.advance() else {
                    return Err(self.expected("a field name"));
                };
                self.advance();
                seen_keyword = true;
                FIELDS.iter().position(|&f| f == name).ok_or_else(|| {
                    error_at(
                        self.text,
                        argument_start,
                        format!("unknown field `{name}` (expected recurrent or concat)"),
                    )
                })?
            } else {
                if seen_keyword {
                    return Err(self.expected("a keyword argument after keyword arguments"));
                }
                if positional == FIELDS.len() {
                    return Err(self.expected("`)` after two fields"));
                }
                positional += 1;
                positional - 1
            };
            let duplicate = || {
                error_at(
                    self.text,
                    argument_start,
                    format!("field `{}` given twice", FIELDS[field]),
                )
            };
            if field == 0 {
                if recurrent.is_some() {
                    return Err(duplicate());
                }
                recurrent = Some(self.genes()?);
            } else {
                if concat.is_some() {
                    return Err(duplicate());
                }
                concat = Some(self.concat()?);
            }
            if !self.separator(')')? {
                break;
            }
        }
        let close = self.position();
        self.punct(')')?;
        if *self.peek() != Token::End {
            return Err(self.expected("end of input after the closing `)`"));
        }
        let missing = |field: &str| error_at(self.text, close, format!("missing field `{field}`"));
        Ok(RnnGenotype {
            recurrent: recurrent.ok_or_else(|| missing(FIELDS[0]))?,
            concat: concat.ok_or_else(|| missing(FIELDS[1]))?,
        })
    }

    fn genes(&mut self) -> Result<Vec<RnnGene>, ParseError> {
        self.punct('[')?;
        let mut genes = Vec::new();
        while *self.peek() != Token::Punct(']') {
            self.punct('(')?;
            let op = match self.peek() {
                Token::Str(name) => {
                    let op: RnnOp =
                        name.parse()
                            .map_err(|error: crate::rnn_genotype::UnknownRnnOpError| {
                                self.error(error.to_string())
                            })?;
                    self.advance();
                    op
                }
                _ => return Err(self.expected("a quoted operation name")),
            };
            self.punct(',')?;
            let source = self.integer()?;
            if *self.peek() == Token::Punct(',') {
                self.advance();
            }
            self.punct(')')?;
            genes.push(RnnGene::new(op, source));
            if !self.separator(']')? {
                break;
            }
        }
        self.punct(']')?;
        Ok(genes)
    }

    fn concat(&mut self) -> Result<Vec<usize>, ParseError> {
        if *self.peek() == Token::Punct('[') {
            self.advance();
            let mut indices = Vec::new();
            while *self.peek() != Token::Punct(']') {
                indices.push(self.integer()?);
                if !self.separator(']')? {
                    break;
                }
            }
            self.punct(']')?;
            return Ok(indices);
        }
        if *self.peek() != Token::Ident("range".to_string()) {
            return Err(self.expected("`range(` or `[`"));
        }
        self.advance();
        self.punct('(')?;
        let first = self.integer()?;
        let mut bounds = (0, first);
        if *self.peek() == Token::Punct(',') {
            self.advance();
            if let Token::Int(second) = *self.peek() {
                self.advance();
                bounds = (first, second);
                if *self.peek() == Token::Punct(',') {
                    self.advance();
                }
            }
        }
        self.punct(')')?;
        Ok((bounds.0..bounds.1).collect())
    }
}
