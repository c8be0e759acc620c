//! Just enough JSON (RFC 8259) to read the fuzz report: objects, arrays, strings (escapes
//! kept as written, except `\"` and `\\`), numbers, `true`/`false`/`null`. xtask stays free of
//! another dependency (and of the lock-file churn it brings) for one small file.

/// A parsed JSON value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Number(f64),
    String(String),
    Array(Vec<Value>),
    /// Members in file order.
    Object(Vec<(String, Value)>),
}

impl Value {
    /// The member `key` of an object.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Object(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// A non-negative number, rounded down.
    pub fn as_count(&self) -> u64 {
        match self {
            Value::Number(n) if *n >= 0.0 => *n as u64,
            _ => 0,
        }
    }
}

struct Parser<'a> {
    text: &'a [u8],
    at: usize,
}

/// Parses a whole document; the error says what was expected at which byte.
pub fn parse(text: &str) -> Result<Value, String> {
    let mut p = Parser {
        text: text.as_bytes(),
        at: 0,
    };
    let v = p.value()?;
    p.skip_space();
    if p.at != p.text.len() {
        return Err(p.error("end of document"));
    }
    Ok(v)
}

impl Parser<'_> {
    fn error(&self, expected: &str) -> String {
        format!("expected {expected} at byte {}", self.at)
    }

    fn skip_space(&mut self) {
        while self
            .text
            .get(self.at)
            .is_some_and(|b| b.is_ascii_whitespace())
        {
            self.at += 1;
        }
    }

    fn eat(&mut self, word: &str) -> bool {
        let is_there = self.text[self.at..].starts_with(word.as_bytes());
        if is_there {
            self.at += word.len();
        }
        is_there
    }

    fn value(&mut self) -> Result<Value, String> {
        self.skip_space();
        match self.text.get(self.at) {
            Some(b'{') => self.object(),
            Some(b'[') => self.array(),
            Some(b'"') => self.string().map(Value::String),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ if self.eat("true") => Ok(Value::Bool(true)),
            _ if self.eat("false") => Ok(Value::Bool(false)),
            _ if self.eat("null") => Ok(Value::Null),
            _ => Err(self.error("a value")),
        }
    }

    fn number(&mut self) -> Result<Value, String> {
        let start = self.at;
        while self
            .text
            .get(self.at)
            .is_some_and(|b| b.is_ascii_digit() || b"+-.eE".contains(b))
        {
            self.at += 1;
        }
        std::str::from_utf8(&self.text[start..self.at])
            .ok()
            .and_then(|s| s.parse().ok())
            .map(Value::Number)
            .ok_or_else(|| self.error("a number"))
    }

    fn string(&mut self) -> Result<String, String> {
        self.at += 1;
        let mut out = Vec::new();
        loop {
            match self.text.get(self.at) {
                None => return Err(self.error("a closing quote")),
                Some(b'"') => break,
                Some(b'\\') => {
                    let escaped = *self
                        .text
                        .get(self.at + 1)
                        .ok_or_else(|| self.error("an escape"))?;
                    if !matches!(escaped, b'"' | b'\\') {
                        out.push(b'\\');
                    }
                    out.push(escaped);
                    self.at += 2;
                }
                Some(&b) => {
                    out.push(b);
                    self.at += 1;
                }
            }
        }
        self.at += 1;
        String::from_utf8(out).map_err(|_| self.error("UTF-8 text"))
    }

    fn array(&mut self) -> Result<Value, String> {
        self.at += 1;
        let mut items = Vec::new();
        self.skip_space();
        if self.eat("]") {
            return Ok(Value::Array(items));
        }
        loop {
            items.push(self.value()?);
            self.skip_space();
            if self.eat("]") {
                return Ok(Value::Array(items));
            }
            if !self.eat(",") {
                return Err(self.error("`,` or `]`"));
            }
        }
    }

    fn object(&mut self) -> Result<Value, String> {
        self.at += 1;
        let mut members = Vec::new();
        self.skip_space();
        if self.eat("}") {
            return Ok(Value::Object(members));
        }
        loop {
            self.skip_space();
            if self.text.get(self.at) != Some(&b'"') {
                return Err(self.error("a member name"));
            }
            let key = self.string()?;
            self.skip_space();
            if !self.eat(":") {
                return Err(self.error("`:`"));
            }
            members.push((key, self.value()?));
            self.skip_space();
            if self.eat("}") {
                return Ok(Value::Object(members));
            }
            if !self.eat(",") {
                return Err(self.error("`,` or `}`"));
            }
        }
    }
}
