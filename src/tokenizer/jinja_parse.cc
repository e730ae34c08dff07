// Lexer and parser of the Jinja subset (jinja_parse.h). ref: Jinja2 3.1 lexer.py / parser.py.
#include "tokenizer/jinja_parse.h"

#include <cctype>
#include <charconv>
#include <cstdlib>
#include <cstring>

namespace g4::jinja::detail {
namespace {

std::unique_ptr<Stmt> make_stmt(Stmt::K k) {
  auto s = std::make_unique<Stmt>();
  s->k = k;
  return s;
}

// ---------------------------------------------------------------- lexer

enum class Tk : uint8_t {
  kText,
  kVarBegin,
  kVarEnd,
  kBlockBegin,
  kBlockEnd,
  kName,
  kString,
  kInt,
  kFloat,
  kOp,
  kEof
};

struct Token {
  Tk k;
  std::string s;  // text, name, string value, operator
  int64_t i = 0;
  double f = 0;
  int line = 1, col = 1;
};

class Lexer {
 public:
  explicit Lexer(std::string_view src) : src_(src) {}

  std::vector<Token> run() {
    // keep_trailing_newline=False: one trailing newline of the source is dropped.
    if (src_.size() >= 2 && src_.substr(src_.size() - 2) == "\r\n") {
      src_.remove_suffix(2);
    } else if (!src_.empty() && (src_.back() == '\n' || src_.back() == '\r')) {
      src_.remove_suffix(1);
    }
    bool strip_next = false;  // a `-}}` / `-%}` before this text
    while (pos_ < src_.size()) {
      size_t open = find_open(pos_);
      const size_t text_begin = pos_;
      std::string text(src_.substr(pos_, (open == std::string::npos ? src_.size() : open) - pos_));
      if (strip_next) {
        size_t k = 0;
        while (k < text.size() && is_space(text[k])) ++k;
        text.erase(0, k);
      }
      strip_next = false;
      if (open == std::string::npos) {
        emit_text(text, text_begin);
        pos_ = src_.size();
        break;
      }
      const char kind = src_[open + 1];  // '{', '%' or '#'
      const char mod = open + 2 < src_.size() ? src_[open + 2] : 0;
      if (mod == '-') {
        while (!text.empty() && is_space(text.back())) text.pop_back();
      } else if (mod != '+' && kind != '{') {
        // lstrip_blocks: spaces/tabs between a line start and a block or comment tag.
        const size_t nlp = text.rfind('\n');
        const size_t lp = nlp == std::string::npos ? 0 : nlp + 1;
        const bool line_start = text_begin == 0 || src_[text_begin - 1] == '\n';
        if (nlp != std::string::npos || line_start) {
          bool ws = true;
          for (size_t k = lp; k < text.size(); ++k) ws = ws && (text[k] == ' ' || text[k] == '\t');
          if (ws) text.erase(lp);
        }
      }
      emit_text(text, text_begin);
      pos_ = open + 2 + ((mod == '-' || mod == '+') ? 1 : 0);
      if (kind == '#') {
        const size_t end = src_.find("#}", pos_);
        if (end == std::string::npos) error_at(open, "unterminated comment");
        const bool dash = end > pos_ && src_[end - 1] == '-';
        pos_ = end + 2;
        if (dash) {
          strip_next = true;
        } else {
          trim_newline();
        }
        continue;
      }
      const bool block = kind == '%';
      push(block ? Tk::kBlockBegin : Tk::kVarBegin, "", open);
      keep_newline_ = false;
      strip_next = lex_tag(block, open);
      if (block && !strip_next && !keep_newline_) trim_newline();
      if (block && raw_pending_) lex_raw(&strip_next);
    }
    push(Tk::kEof, "", src_.size());
    return std::move(toks_);
  }

 private:
  static bool is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
  }
  size_t find_open(size_t from) const {
    for (size_t p = src_.find('{', from); p != std::string::npos; p = src_.find('{', p + 1))
      if (p + 1 < src_.size() && (src_[p + 1] == '{' || src_[p + 1] == '%' || src_[p + 1] == '#'))
        return p;
    return std::string::npos;
  }
  void trim_newline() {  // trim_blocks
    if (pos_ < src_.size() && src_[pos_] == '\n') {
      ++pos_;
    } else if (pos_ + 1 < src_.size() && src_[pos_] == '\r' && src_[pos_ + 1] == '\n') {
      pos_ += 2;
    }
  }
  void emit_text(std::string text, size_t at) {
    if (text.empty()) return;
    // Jinja normalizes template newlines to "\n".
    std::string out;
    for (size_t k = 0; k < text.size(); ++k) {
      if (text[k] == '\r') {
        out += '\n';
        if (k + 1 < text.size() && text[k + 1] == '\n') ++k;
      } else {
        out += text[k];
      }
    }
    push(Tk::kText, std::move(out), at);
  }
  void line_col(size_t at, int* line, int* col) const {
    int l = 1, c = 1;
    for (size_t k = 0; k < at && k < src_.size(); ++k) {
      if (src_[k] == '\n') {
        ++l;
        c = 1;
      } else {
        ++c;
      }
    }
    *line = l;
    *col = c;
  }
  [[noreturn]] void error_at(size_t at, const std::string& msg) const {
    int l = 0, c = 0;
    line_col(at, &l, &c);
    fail("syntax error at line " + std::to_string(l) + ", column " + std::to_string(c) + ": " +
         msg);
  }
  Token& push(Tk k, std::string s, size_t at) {
    Token t{k, std::move(s)};
    // Line/column by counting from the previous token (linear overall).
    while (lc_pos_ < at && lc_pos_ < src_.size()) {
      if (src_[lc_pos_] == '\n') {
        ++lc_line_;
        lc_col_ = 1;
      } else {
        ++lc_col_;
      }
      ++lc_pos_;
    }
    t.line = lc_line_;
    t.col = lc_col_;
    toks_.push_back(std::move(t));
    return toks_.back();
  }

  // Tokens up to the tag's end; returns whether it ended with '-'.
  bool lex_tag(bool block, size_t open) {
    const size_t first = toks_.size();
    int depth = 0;
    while (true) {
      while (pos_ < src_.size() && is_space(src_[pos_])) ++pos_;
      if (pos_ >= src_.size()) error_at(open, block ? "unterminated '{%'" : "unterminated '{{'");
      const std::string_view rest = src_.substr(pos_);
      const std::string_view end = block ? "%}" : "}}";
      if (block && rest.substr(0, 1) == "+" && rest.substr(1, 2) == end) {  // no trim_blocks
        push(Tk::kBlockEnd, "", pos_);
        pos_ += 3;
        check_raw(first);
        keep_newline_ = true;
        return false;
      }
      if (rest.substr(0, 1) == "-" && rest.substr(1, 2) == end) {
        push(block ? Tk::kBlockEnd : Tk::kVarEnd, "", pos_);
        pos_ += 3;
        check_raw(first);
        return true;
      }
      if (rest.substr(0, 2) == end && depth <= 0) {
        push(block ? Tk::kBlockEnd : Tk::kVarEnd, "", pos_);
        pos_ += 2;
        check_raw(first);
        return false;
      }
      const char c = src_[pos_];
      if (std::isalpha(uint8_t(c)) || c == '_') {
        size_t e = pos_;
        while (e < src_.size() && (std::isalnum(uint8_t(src_[e])) || src_[e] == '_')) ++e;
        push(Tk::kName, std::string(src_.substr(pos_, e - pos_)), pos_);
        pos_ = e;
      } else if (std::isdigit(uint8_t(c))) {
        lex_number();
      } else if (c == '\'' || c == '"') {
        lex_string(c);
      } else {
        static const char* kOps[] = {"**", "//", "==", "!=", "<=", ">=", "+", "-", "*",
                                     "/",  "%",  "~",  "<",  ">",  "=",  "(", ")", "[",
                                     "]",  "{",  "}",  ",",  ".",  ":",  "|"};
        bool found = false;
        for (const char* op : kOps) {
          const size_t n = std::strlen(op);
          if (rest.substr(0, n) == op) {
            push(Tk::kOp, op, pos_);
            if (op[0] == '(' || op[0] == '[' || op[0] == '{') ++depth;
            if (op[0] == ')' || op[0] == ']' || op[0] == '}') --depth;
            pos_ += n;
            found = true;
            break;
          }
        }
        if (!found) error_at(pos_, std::string("unexpected character '") + c + "'");
      }
    }
  }
  void check_raw(size_t first) {
    raw_pending_ =
        toks_.size() == first + 2 && toks_[first].k == Tk::kName && toks_[first].s == "raw";
  }
  // {% raw %} ... {% endraw %}: text verbatim.
  void lex_raw(bool* strip_next) {
    raw_pending_ = false;
    toks_.resize(toks_.size() - 3);  // drop {% raw %}
    size_t p = pos_;
    while (true) {
      p = src_.find("{%", p);
      if (p == std::string::npos) error_at(pos_, "unterminated raw block");
      size_t q = p + 2;
      if (q < src_.size() && (src_[q] == '-' || src_[q] == '+')) ++q;
      while (q < src_.size() && is_space(src_[q])) ++q;
      if (src_.substr(q, 6) == "endraw") {
        size_t r = q + 6;
        while (r < src_.size() && is_space(src_[r])) ++r;
        bool dash = false;
        if (r < src_.size() && src_[r] == '-') {
          dash = true;
          ++r;
        }
        if (src_.substr(r, 2) == "%}") {
          std::string text(src_.substr(pos_, p - pos_));
          if (*strip_next) {
            size_t k = 0;
            while (k < text.size() && is_space(text[k])) ++k;
            text.erase(0, k);
          }
          if (src_[p + 2] == '-')
            while (!text.empty() && is_space(text.back())) text.pop_back();
          emit_text(text, pos_);
          pos_ = r + 2;
          *strip_next = dash;
          if (!dash) trim_newline();
          return;
        }
      }
      p += 2;
    }
  }
  void lex_number() {
    size_t e = pos_;
    bool is_float = false;
    while (e < src_.size() && (std::isdigit(uint8_t(src_[e])) || src_[e] == '_')) ++e;
    if (e + 1 < src_.size() && src_[e] == '.' && std::isdigit(uint8_t(src_[e + 1]))) {
      is_float = true;
      ++e;
      while (e < src_.size() && (std::isdigit(uint8_t(src_[e])) || src_[e] == '_')) ++e;
    }
    if (e < src_.size() && (src_[e] == 'e' || src_[e] == 'E')) {
      size_t x = e + 1;
      if (x < src_.size() && (src_[x] == '+' || src_[x] == '-')) ++x;
      if (x < src_.size() && std::isdigit(uint8_t(src_[x]))) {
        is_float = true;
        e = x;
        while (e < src_.size() && std::isdigit(uint8_t(src_[e]))) ++e;
      }
    }
    std::string lit(src_.substr(pos_, e - pos_));
    lit.erase(std::remove(lit.begin(), lit.end(), '_'), lit.end());
    Token& t = push(is_float ? Tk::kFloat : Tk::kInt, lit, pos_);
    if (is_float) {
      t.f = std::strtod(lit.c_str(), nullptr);
    } else {
      auto r = std::from_chars(lit.data(), lit.data() + lit.size(), t.i);
      if (r.ec != std::errc()) error_at(pos_, "integer literal out of range");
    }
    pos_ = e;
  }
  void lex_string(char q) {
    const size_t start = pos_;
    std::string out;
    size_t p = pos_ + 1;
    while (true) {
      if (p >= src_.size()) error_at(start, "unterminated string");
      const char c = src_[p];
      if (c == q) break;
      if (c != '\\') {
        out += c;
        ++p;
        continue;
      }
      if (p + 1 >= src_.size()) error_at(start, "unterminated string");
      const char e = src_[p + 1];
      p += 2;
      switch (e) {
        case 'n':
          out += '\n';
          break;
        case 't':
          out += '\t';
          break;
        case 'r':
          out += '\r';
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'v':
          out += '\v';
          break;
        case 'a':
          out += '\a';
          break;
        case '0':
          out += '\0';
          break;
        case '\\':
          out += '\\';
          break;
        case '\'':
          out += '\'';
          break;
        case '"':
          out += '"';
          break;
        case '\n':
          break;  // line continuation
        case 'x':
        case 'u':
        case 'U': {
          const size_t n = e == 'x' ? 2 : e == 'u' ? 4 : 8;
          if (p + n > src_.size()) error_at(start, "truncated escape in string");
          uint32_t cp = 0;
          for (size_t k = 0; k < n; ++k) {
            const char h = src_[p + k];
            if (!std::isxdigit(uint8_t(h))) error_at(start, "bad escape in string");
            cp = cp * 16 + uint32_t(std::isdigit(uint8_t(h)) ? h - '0' : (h | 0x20) - 'a' + 10);
          }
          if (cp > 0x10FFFF) error_at(start, "escape out of range");
          append_utf8(out, cp);
          p += n;
          break;
        }
        default:  // Python keeps unknown escapes as written
          out += '\\';
          out += e;
      }
    }
    push(Tk::kString, std::move(out), start);
    pos_ = p + 1;
  }

  std::string_view src_;
  size_t pos_ = 0;
  std::vector<Token> toks_;
  bool raw_pending_ = false;
  bool keep_newline_ = false;  // the tag ended with "+%}"
  size_t lc_pos_ = 0;
  int lc_line_ = 1, lc_col_ = 1;
};

// ---------------------------------------------------------------- parser

class Parser {
 public:
  Parser(std::vector<Token> toks, Program& prog, int max_depth)
      : t_(std::move(toks)), prog_(prog), max_depth_(max_depth) {}

  void run() {
    std::string end;
    prog_.body = parse_body({}, &end);
  }

 private:
  struct Depth {
    explicit Depth(Parser& p) : p_(p) {
      if (++p_.depth_ > p_.max_depth_) p_.err("template nests too deeply");
    }
    ~Depth() { --p_.depth_; }
    Parser& p_;
  };

  const Token& cur() const { return t_[i_]; }
  const Token& next() { return t_[i_ < t_.size() - 1 ? i_++ : i_]; }
  [[noreturn]] void err(const std::string& msg) const {
    const Token& t = cur();
    fail("syntax error at line " + std::to_string(t.line) + ", column " + std::to_string(t.col) +
         ": " + msg);
  }
  bool is_op(const char* op) const { return cur().k == Tk::kOp && cur().s == op; }
  bool is_name(const char* n) const { return cur().k == Tk::kName && cur().s == n; }
  bool accept_op(const char* op) {
    if (!is_op(op)) return false;
    next();
    return true;
  }
  bool accept_name(const char* n) {
    if (!is_name(n)) return false;
    next();
    return true;
  }
  void expect_op(const char* op) {
    if (!accept_op(op)) err(std::string("expected '") + op + "'");
  }
  std::string expect_name() {
    if (cur().k != Tk::kName) err("expected a name");
    return next().s;
  }
  void expect_block_end() {
    if (cur().k != Tk::kBlockEnd) err("expected '%}'");
    next();
  }

  // Statements until one of `ends` (block keyword); *end gets the one found.
  Body parse_body(std::initializer_list<const char*> ends, std::string* end) {
    Depth d(*this);
    Body body;
    while (true) {
      const Token& tk = cur();
      if (tk.k == Tk::kEof) {
        if (ends.size() != 0) err(std::string("missing '{% ") + *(ends.end() - 1) + " %}'");
        return body;
      }
      if (tk.k == Tk::kText) {
        auto s = make_stmt(Stmt::K::kText);
        s->text = next().s;
        body.push_back(std::move(s));
        continue;
      }
      if (tk.k == Tk::kVarBegin) {
        next();
        auto s = make_stmt(Stmt::K::kOut);
        s->line = tk.line;
        s->e = expr();
        if (cur().k != Tk::kVarEnd) err("expected '}}'");
        next();
        body.push_back(std::move(s));
        continue;
      }
      if (tk.k != Tk::kBlockBegin) err("unexpected token");
      next();
      if (cur().k != Tk::kName) err("expected a statement name");
      const std::string kw = cur().s;
      for (const char* e : ends)
        if (kw == e) {
          *end = kw;
          next();
          return body;
        }
      const int line = cur().line, col = cur().col;
      next();
      std::unique_ptr<Stmt> s;
      if (kw == "if") {
        s = parse_if();
      } else if (kw == "for") {
        s = parse_for();
      } else if (kw == "set") {
        s = parse_set();
      } else if (kw == "macro") {
        s = parse_macro();
      } else if (kw == "break" || kw == "continue") {
        if (loops_ == 0) err("'" + kw + "' outside a loop");
        s = make_stmt(kw == "break" ? Stmt::K::kBreak : Stmt::K::kContinue);
        expect_block_end();
      } else {
        err("unknown or unexpected tag '" + kw + "'");
      }
      s->line = line;
      s->col = col;
      body.push_back(std::move(s));
    }
  }

  std::unique_ptr<Stmt> parse_if() {
    auto s = make_stmt(Stmt::K::kIf);
    ExprP c = expr();
    expect_block_end();
    while (true) {
      std::string end;
      Body b = parse_body({"elif", "else", "endif"}, &end);
      s->ifs.emplace_back(std::move(c), std::move(b));
      if (end == "endif") break;
      if (end == "else") {
        expect_block_end();
        Body eb = parse_body({"endif"}, &end);
        s->ifs.emplace_back(nullptr, std::move(eb));
        break;
      }
      c = expr();
      expect_block_end();
    }
    expect_block_end();
    return s;
  }

  std::unique_ptr<Stmt> parse_for() {
    auto s = make_stmt(Stmt::K::kFor);
    do {
      s->targets.push_back(expect_name());
    } while (accept_op(","));
    if (!accept_name("in")) err("expected 'in'");
    s->e = ternary(/*allow_cond=*/false);
    if (accept_name("if")) s->cond = ternary(false);
    if (accept_name("recursive")) err("recursive loops are not supported");
    expect_block_end();
    std::string end;
    ++loops_;
    s->body = parse_body({"else", "endfor"}, &end);
    --loops_;
    if (end == "else") {
      expect_block_end();
      s->else_body = parse_body({"endfor"}, &end);
    }
    expect_block_end();
    return s;
  }

  std::unique_ptr<Stmt> parse_set() {
    auto s = make_stmt(Stmt::K::kSet);
    s->targets.push_back(expect_name());
    if (accept_op(".")) {
      s->attr = expect_name();
    } else {
      while (accept_op(",")) s->targets.push_back(expect_name());
    }
    if (cur().k == Tk::kBlockEnd) {  // {% set x %}...{% endset %}
      if (!s->attr.empty() || s->targets.size() != 1) err("block set takes one name");
      next();
      s->k = Stmt::K::kSetBlock;
      std::string end;
      const int saved = loops_;
      loops_ = 0;
      s->body = parse_body({"endset"}, &end);
      loops_ = saved;
      expect_block_end();
      return s;
    }
    expect_op("=");
    s->e = expr();
    expect_block_end();
    return s;
  }

  std::unique_ptr<Stmt> parse_macro() {
    auto m = std::make_unique<MacroDef>();
    m->name = expect_name();
    expect_op("(");
    if (!is_op(")")) {
      do {
        std::string p = expect_name();
        ExprP def;
        if (accept_op("=")) def = expr();
        m->params.emplace_back(std::move(p), std::move(def));
      } while (accept_op(","));
    }
    expect_op(")");
    expect_block_end();
    std::string end;
    const int saved = loops_;
    loops_ = 0;
    m->body = parse_body({"endmacro"}, &end);
    loops_ = saved;
    expect_block_end();
    auto s = make_stmt(Stmt::K::kMacro);
    s->targets.push_back(m->name);
    s->macro = m.get();
    prog_.macros.push_back(std::move(m));
    return s;
  }

  ExprP node(Expr::K k) {
    auto e = std::make_unique<Expr>();
    e->k = k;
    e->line = cur().line;
    e->col = cur().col;
    return e;
  }

  ExprP expr() { return ternary(true); }

  ExprP ternary(bool allow_cond) {
    Depth d(*this);
    ExprP e = or_expr();
    while (allow_cond && is_name("if")) {
      next();
      ExprP c = node(Expr::K::kCond);
      c->a.push_back(or_expr());  // condition
      c->a.push_back(std::move(e));
      c->a.push_back(accept_name("else") ? ternary(true) : nullptr);
      e = std::move(c);
    }
    return e;
  }
  ExprP or_expr() {
    ExprP e = and_expr();
    while (is_name("or")) {
      ExprP o = node(Expr::K::kOr);
      next();
      o->a.push_back(std::move(e));
      o->a.push_back(and_expr());
      e = std::move(o);
    }
    return e;
  }
  ExprP and_expr() {
    ExprP e = not_expr();
    while (is_name("and")) {
      ExprP o = node(Expr::K::kAnd);
      next();
      o->a.push_back(std::move(e));
      o->a.push_back(not_expr());
      e = std::move(o);
    }
    return e;
  }
  ExprP not_expr() {
    Depth d(*this);
    if (is_name("not")) {
      ExprP n = node(Expr::K::kNot);
      next();
      n->a.push_back(not_expr());
      return n;
    }
    return compare();
  }
  ExprP compare() {
    ExprP e = concat();
    ExprP c;
    while (true) {
      std::string op;
      if (cur().k == Tk::kOp && (cur().s == "==" || cur().s == "!=" || cur().s == "<" ||
                                 cur().s == ">" || cur().s == "<=" || cur().s == ">=")) {
        op = next().s;
      } else if (is_name("in")) {
        next();
        op = "in";
      } else if (is_name("not") && i_ + 1 < t_.size() && t_[i_ + 1].k == Tk::kName &&
                 t_[i_ + 1].s == "in") {
        next();
        next();
        op = "notin";
      } else {
        break;
      }
      if (!c) {
        c = node(Expr::K::kCompare);
        c->a.push_back(std::move(e));
      }
      c->ops.push_back(op);
      c->a.push_back(concat());
    }
    return c ? std::move(c) : std::move(e);
  }
  ExprP concat() {
    ExprP e = math1();
    while (is_op("~")) {
      ExprP o = node(Expr::K::kConcat);
      next();
      o->a.push_back(std::move(e));
      o->a.push_back(math1());
      e = std::move(o);
    }
    return e;
  }
  ExprP binary(ExprP lhs, ExprP rhs, const std::string& op) {
    auto o = std::make_unique<Expr>();
    o->k = Expr::K::kBinary;
    o->name = op;
    o->line = lhs->line;
    o->col = lhs->col;
    o->a.push_back(std::move(lhs));
    o->a.push_back(std::move(rhs));
    return o;
  }
  ExprP math1() {
    ExprP e = math2();
    while (is_op("+") || is_op("-")) {
      const std::string op = next().s;
      e = binary(std::move(e), math2(), op);
    }
    return e;
  }
  ExprP math2() {
    ExprP e = power();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      const std::string op = next().s;
      e = binary(std::move(e), power(), op);
    }
    return e;
  }
  ExprP power() {
    ExprP e = unary();
    while (is_op("**")) {
      next();
      e = binary(std::move(e), unary(), "**");
    }
    return e;
  }
  // Jinja: `-x | f` is `(-x) | f`; the operand of unary minus takes no filters itself.
  ExprP unary(bool with_filters = true) {
    Depth d(*this);
    ExprP e;
    if (is_op("-") || is_op("+")) {
      e = node(Expr::K::kUnary);
      e->name = next().s;
      e->a.push_back(unary(false));
    } else {
      e = postfix(primary());
    }
    return with_filters ? filters(std::move(e)) : std::move(e);
  }

  void call_args(Expr& e) {
    // after '('
    if (!is_op(")")) {
      do {
        if (is_op(")")) break;
        if (cur().k == Tk::kName && i_ + 1 < t_.size() && t_[i_ + 1].k == Tk::kOp &&
            t_[i_ + 1].s == "=") {
          std::string k = next().s;
          next();
          e.kw.emplace_back(std::move(k), expr());
        } else {
          if (!e.kw.empty()) err("positional argument after a keyword argument");
          e.a.push_back(expr());
        }
      } while (accept_op(","));
    }
    expect_op(")");
  }

  ExprP postfix(ExprP e) {
    while (true) {
      if (is_op(".")) {
        next();
        ExprP a = node(Expr::K::kAttr);
        if (cur().k == Tk::kInt) {  // x.0
          ExprP idx = node(Expr::K::kLit);
          idx->lit = Value::integer(next().i);
          a->k = Expr::K::kIndex;
          a->a.push_back(std::move(e));
          a->a.push_back(std::move(idx));
        } else {
          a->name = expect_name();
          a->a.push_back(std::move(e));
        }
        e = std::move(a);
      } else if (is_op("[")) {
        next();
        ExprP lo, hi, st;
        bool slice = false;
        if (!is_op(":")) lo = expr();
        if (accept_op(":")) {
          slice = true;
          if (!is_op("]") && !is_op(":")) hi = expr();
          if (accept_op(":") && !is_op("]")) st = expr();
        }
        expect_op("]");
        ExprP s = node(slice ? Expr::K::kSlice : Expr::K::kIndex);
        if (!slice && !lo) err("empty subscript");
        s->a.push_back(std::move(e));
        s->a.push_back(std::move(lo));
        if (slice) {
          s->a.push_back(std::move(hi));
          s->a.push_back(std::move(st));
        }
        e = std::move(s);
      } else if (is_op("(")) {
        next();
        ExprP c = node(Expr::K::kCall);
        c->a.push_back(std::move(e));
        call_args(*c);
        e = std::move(c);
      } else {
        return e;
      }
    }
  }

  ExprP filters(ExprP e) {
    while (true) {
      if (is_op("|")) {
        next();
        ExprP f = node(Expr::K::kFilter);
        f->name = expect_name();
        while (accept_op(".")) f->name += "." + expect_name();
        f->a.push_back(std::move(e));
        if (accept_op("(")) call_args(*f);
        e = std::move(f);
      } else if (is_name("is")) {
        next();
        ExprP t = node(Expr::K::kTest);
        if (accept_name("not")) t->negate = true;
        t->name = expect_name();
        t->a.push_back(std::move(e));
        if (accept_op("(")) {
          call_args(*t);
        } else if (cur().k == Tk::kInt || cur().k == Tk::kFloat || cur().k == Tk::kString ||
                   (cur().k == Tk::kName && !is_name("and") && !is_name("or") && !is_name("if") &&
                    !is_name("else") && !is_name("is") && !is_name("in") && !is_name("not"))) {
          t->a.push_back(primary());
        }
        e = std::move(t);
      } else {
        return e;
      }
    }
  }

  ExprP primary() {
    Depth d(*this);
    const Token& tk = cur();
    if (tk.k == Tk::kString) {
      ExprP e = node(Expr::K::kLit);
      std::string s = next().s;
      while (cur().k == Tk::kString) s += next().s;  // adjacent literals concatenate
      e->lit = Value::str(std::move(s));
      return e;
    }
    if (tk.k == Tk::kInt || tk.k == Tk::kFloat) {
      ExprP e = node(Expr::K::kLit);
      e->lit = tk.k == Tk::kInt ? Value::integer(tk.i) : Value::real(tk.f);
      next();
      return e;
    }
    if (tk.k == Tk::kName) {
      ExprP e = node(Expr::K::kLit);
      const std::string n = next().s;
      if (n == "true" || n == "True") {
        e->lit = Value::boolean(true);
      } else if (n == "false" || n == "False") {
        e->lit = Value::boolean(false);
      } else if (n == "none" || n == "None") {
        e->lit = Value::none();
      } else {
        e->k = Expr::K::kName;
        e->name = n;
        prog_.names.push_back(n);
      }
      return e;
    }
    if (accept_op("(")) {
      if (accept_op(")")) return lit_list();
      ExprP e = expr();
      if (is_op(",")) {  // tuple
        ExprP l = node(Expr::K::kList);
        l->negate = true;  // a tuple
        l->a.push_back(std::move(e));
        while (accept_op(",")) {
          if (is_op(")")) break;
          l->a.push_back(expr());
        }
        e = std::move(l);
      }
      expect_op(")");
      return e;
    }
    if (accept_op("[")) {
      ExprP l = node(Expr::K::kList);
      while (!is_op("]")) {
        l->a.push_back(expr());
        if (!accept_op(",")) break;
      }
      expect_op("]");
      return l;
    }
    if (accept_op("{")) {
      ExprP dct = node(Expr::K::kDict);
      while (!is_op("}")) {
        ExprP k = expr();
        expect_op(":");
        dct->a.push_back(std::move(k));
        dct->a.push_back(expr());
        if (!accept_op(",")) break;
      }
      expect_op("}");
      return dct;
    }
    err("unexpected " + std::string(tk.k == Tk::kEof        ? "end of template"
                                    : tk.k == Tk::kVarEnd   ? "'}}'"
                                    : tk.k == Tk::kBlockEnd ? "'%}'"
                                                            : "'" + tk.s + "'"));
  }
  ExprP lit_list() {
    ExprP l = node(Expr::K::kList);
    l->negate = true;  // ()
    return l;
  }

  std::vector<Token> t_;
  size_t i_ = 0;
  Program& prog_;
  int max_depth_;
  int depth_ = 0;
  int loops_ = 0;
};

}  // namespace

void parse_program(std::string_view source, Program& prog, int max_depth) {
  Lexer lx(source);
  Parser p(lx.run(), prog, max_depth);
  p.run();
}

}  // namespace g4::jinja::detail
