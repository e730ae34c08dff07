// Jinja2 subset: the evaluator (tree walk over the syntax tree of jinja_parse.h with the values
// of jinja_value.h) and the public API. Errors are thrown as JinjaError inside and turned into
// Status here, so no exception leaves the API. ref: Jinja2 3.1 filters.py / tests.py semantics.
#include "tokenizer/jinja.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <vector>

#include "tokenizer/jinja_parse.h"
#include "tokenizer/jinja_value.h"

namespace g4::jinja {
namespace detail {

struct BreakSignal {};
struct ContinueSignal {};

namespace {

class Renderer {
 public:
  Renderer(const Limits& lim, std::string& out) : lim_(lim), out_(out) {}

  void run(const Program& p, const Json& ctx) {
    frames_.emplace_back();
    if (!ctx.is_object()) fail("the context must be an object");
    for (auto it = ctx.begin(); it != ctx.end(); ++it)
      frames_[0].emplace_back(it.key(), from_json(it.value()));
    exec(p.body);
  }

 private:
  using Frame = std::vector<std::pair<std::string, Value>>;

  struct Depth {
    explicit Depth(Renderer& r) : r_(r) {
      if (++r_.depth_ > r_.lim_.max_depth) r_.err("nesting deeper than the limit");
    }
    ~Depth() { --r_.depth_; }
    Renderer& r_;
  };

  [[noreturn]] void err(const std::string& msg) const {
    fail(line_ > 0 ? "line " + std::to_string(line_) + ": " + msg : msg);
  }
  void step() {
    if (++steps_ > lim_.max_steps) err("template exceeds the step limit");
  }
  // Every string or list an operation builds: at most max_output bytes each, and all of them
  // together at most 16 x max_output over the render (copies of values are not counted).
  void check_size(uint64_t n) {
    if (n > lim_.max_output) err("a string or list exceeds the output limit");
    alloc_ += n;
    if (alloc_ > uint64_t(lim_.max_output) * 16) err("the template allocates more than the limit");
  }
  void emit(std::string_view s) {
    step();
    if (pending_ + out_.size() + s.size() > lim_.max_output) err("output exceeds the limit");
    out_.append(s);
  }

  Value* lookup(const std::string& n) {
    for (size_t k = frames_.size(); k-- > base_;)
      for (auto& [key, v] : frames_[k])
        if (key == n) return &v;
    if (base_ > 0)
      for (auto& [key, v] : frames_[0])
        if (key == n) return &v;
    return nullptr;
  }
  void assign(const std::string& n, Value v) {
    Frame& f = frames_.back();
    for (auto& [key, old] : f)
      if (key == n) {
        old = std::move(v);
        return;
      }
    f.emplace_back(n, std::move(v));
  }

  // ---- statements

  void exec(const Body& body) {
    Depth d(*this);
    for (const auto& s : body) exec_one(*s);
  }

  void exec_one(const Stmt& s) {
    if (s.line) line_ = s.line;
    switch (s.k) {
      case Stmt::K::kText:
        emit(s.text);
        return;
      case Stmt::K::kOut: {
        const Value v = eval(*s.e);
        emit(to_str(v));
        return;
      }
      case Stmt::K::kIf:
        for (const auto& [c, b] : s.ifs) {
          if (!c || truthy(eval(*c))) {
            exec(b);
            return;
          }
        }
        return;
      case Stmt::K::kFor:
        exec_for(s);
        return;
      case Stmt::K::kSet: {
        Value v = eval(*s.e);
        if (!s.attr.empty()) {
          Value* ns = lookup(s.targets[0]);
          if (!ns || !ns->is(T::kNs)) err("'" + s.targets[0] + "' is not a namespace");
          // Only namespaces are mutable; keeping them out of each other keeps values acyclic.
          if (holds_namespace(v)) err("a namespace attribute cannot hold a namespace");
          ns->put(s.attr, std::move(v));
        } else if (s.targets.size() == 1) {
          assign(s.targets[0], std::move(v));
        } else {
          unpack(s.targets, v);
        }
        return;
      }
      case Stmt::K::kSetBlock: {
        std::string saved;
        std::swap(saved, out_);
        pending_ += saved.size();
        struct Restore {
          ~Restore() {
            r.pending_ -= saved.size();
            std::swap(saved, r.out_);
          }
          Renderer& r;
          std::string& saved;
        } restore{*this, saved};
        exec(s.body);
        assign(s.targets[0], Value::str(out_));
        return;
      }
      case Stmt::K::kMacro: {
        Value m = Value::mk(T::kMacro);
        m.m = s.macro;
        assign(s.targets[0], std::move(m));
        return;
      }
      case Stmt::K::kBreak:
        throw BreakSignal{};
      case Stmt::K::kContinue:
        throw ContinueSignal{};
    }
  }

  void unpack(const std::vector<std::string>& names, const Value& v) {
    List items = iterate(v);
    if (items.size() != names.size())
      err("cannot unpack " + std::to_string(items.size()) + " values into " +
          std::to_string(names.size()) + " names");
    for (size_t k = 0; k < names.size(); ++k) assign(names[k], items[k]);
  }

  List iterate(const Value& v) {
    switch (v.t) {
      case T::kUndef:
        return {};
      case T::kList:
        return *v.l;
      case T::kDict: {
        List keys;
        for (const auto& [k, x] : *v.d) keys.push_back(Value::str(k));
        return keys;
      }
      case T::kStr: {
        List cps;
        const auto o = cp_offsets(v.s);
        for (size_t k = 0; k + 1 < o.size(); ++k)
          cps.push_back(Value::str(v.s.substr(o[k], o[k + 1] - o[k])));
        return cps;
      }
      default:
        err(std::string("'") + type_name(v) + "' object is not iterable");
    }
  }

  void exec_for(const Stmt& s) {
    const Value seq = eval(*s.e);
    List items = iterate(seq);
    frames_.emplace_back();
    struct Pop {
      ~Pop() { r.frames_.pop_back(); }
      Renderer& r;
    } pop{*this};
    auto bind = [&](const Value& item) {
      if (s.targets.size() == 1) {
        assign(s.targets[0], item);
      } else {
        unpack(s.targets, item);
      }
    };
    if (s.cond) {
      List kept;
      for (const Value& it : items) {
        step();
        bind(it);
        if (truthy(eval(*s.cond))) kept.push_back(it);
      }
      items = std::move(kept);
    }
    const int64_t n = int64_t(items.size());
    for (int64_t k = 0; k < n; ++k) {
      step();
      bind(items[size_t(k)]);
      Dict loop{{"index", Value::integer(k + 1)},
                {"index0", Value::integer(k)},
                {"revindex", Value::integer(n - k)},
                {"revindex0", Value::integer(n - k - 1)},
                {"first", Value::boolean(k == 0)},
                {"last", Value::boolean(k == n - 1)},
                {"length", Value::integer(n)},
                {"previtem", k > 0 ? items[size_t(k - 1)] : Value::undef("previtem")},
                {"nextitem", k + 1 < n ? items[size_t(k + 1)] : Value::undef("nextitem")},
                {"depth", Value::integer(1)},
                {"depth0", Value::integer(0)}};
      assign("loop", Value::dict(std::move(loop)));
      try {
        exec(s.body);
      } catch (const BreakSignal&) {
        break;
      } catch (const ContinueSignal&) {
      }
    }
    if (n == 0) exec(s.else_body);
  }

  // ---- expressions

  Value eval(const Expr& e) {
    Depth d(*this);
    switch (e.k) {
      case Expr::K::kLit:
        return e.lit;
      case Expr::K::kName: {
        if (const Value* v = lookup(e.name)) return *v;
        static const char* kBuiltins[] = {"range", "namespace", "raise_exception", "dict",
                                          "strftime_now"};
        for (const char* b : kBuiltins)
          if (e.name == b) {
            Value f = Value::mk(T::kFn);
            f.s = b;
            return f;
          }
        return Value::undef(e.name);
      }
      case Expr::K::kList: {
        List l;
        for (const auto& x : e.a) l.push_back(eval(*x));
        Value v = Value::list(std::move(l));
        v.tuple = e.negate;
        return v;
      }
      case Expr::K::kDict: {
        Value dct = Value::dict();
        for (size_t k = 0; k + 1 < e.a.size(); k += 2) {
          const Value key = eval(*e.a[k]);
          if (!key.is(T::kStr)) err("dict keys must be strings");
          dct.put(key.s, eval(*e.a[k + 1]));
        }
        return dct;
      }
      case Expr::K::kAttr:
        return attr(eval(*e.a[0]), e.name);
      case Expr::K::kIndex:
        return index(eval(*e.a[0]), eval(*e.a[1]));
      case Expr::K::kSlice:
        return slice(e);
      case Expr::K::kCall:
        return call(e);
      case Expr::K::kFilter:
        return filter(e);
      case Expr::K::kTest: {
        const bool r = test(e);
        return Value::boolean(e.negate ? !r : r);
      }
      case Expr::K::kUnary: {
        const Value v = eval(*e.a[0]);
        if (!v.numeric()) err(std::string("bad operand type for unary ") + e.name);
        if (e.name == "+") return v.is(T::kBool) ? Value::integer(v.b) : v;
        if (v.is(T::kFloat)) return Value::real(-v.f);
        const int64_t x = v.is(T::kBool) ? v.b : v.i;
        if (x == INT64_MIN) err("integer overflow");
        return Value::integer(-x);
      }
      case Expr::K::kBinary:
        return arith(e.name, eval(*e.a[0]), eval(*e.a[1]));
      case Expr::K::kConcat: {
        std::string s = to_str(eval(*e.a[0]));
        s += to_str(eval(*e.a[1]));
        check_size(s.size());
        return Value::str(std::move(s));
      }
      case Expr::K::kAnd: {
        Value l = eval(*e.a[0]);
        return truthy(l) ? eval(*e.a[1]) : l;
      }
      case Expr::K::kOr: {
        Value l = eval(*e.a[0]);
        return truthy(l) ? l : eval(*e.a[1]);
      }
      case Expr::K::kNot:
        return Value::boolean(!truthy(eval(*e.a[0])));
      case Expr::K::kCompare: {
        Value l = eval(*e.a[0]);
        for (size_t k = 0; k < e.ops.size(); ++k) {
          Value r = eval(*e.a[k + 1]);
          if (!cmp(e.ops[k], l, r)) return Value::boolean(false);
          l = std::move(r);
        }
        return Value::boolean(true);
      }
      case Expr::K::kCond:
        if (truthy(eval(*e.a[0]))) return eval(*e.a[1]);
        return e.a[2] ? eval(*e.a[2]) : Value::undef("");
    }
    return Value();
  }

  bool contains(const Value& hay, const Value& needle) {
    switch (hay.t) {
      case T::kStr:
        if (!needle.is(T::kStr)) err("'in <string>' requires a string as left operand");
        return hay.s.find(needle.s) != std::string::npos;
      case T::kList:
        for (const Value& x : *hay.l)
          if (equal(x, needle)) return true;
        return false;
      case T::kDict:
        return needle.is(T::kStr) && hay.get(needle.s) != nullptr;
      default:
        err(std::string("argument of type '") + type_name(hay) + "' is not iterable");
    }
  }

  bool cmp(const std::string& op, const Value& l, const Value& r) {
    if (op == "==") return equal(l, r);
    if (op == "!=") return !equal(l, r);
    if (op == "in") return contains(r, l);
    if (op == "notin") return !contains(r, l);
    const int c = compare(l, r);
    if (op == "<") return c < 0;
    if (op == ">") return c > 0;
    if (op == "<=") return c <= 0;
    return c >= 0;
  }

  Value arith(const std::string& op, const Value& a, const Value& b) {
    if (op == "+") {
      if (a.is(T::kStr) && b.is(T::kStr)) {
        check_size(a.s.size() + b.s.size());
        return Value::str(a.s + b.s);
      }
      if (a.is(T::kList) && b.is(T::kList)) {
        check_size(approx_bytes(a) + approx_bytes(b));
        List l = *a.l;
        l.insert(l.end(), b.l->begin(), b.l->end());
        return Value::list(std::move(l));
      }
    }
    if (op == "*") {
      const Value* seq = a.is(T::kStr) || a.is(T::kList) ? &a : &b;
      const Value* cnt = seq == &a ? &b : &a;
      if ((seq->is(T::kStr) || seq->is(T::kList)) && (cnt->is(T::kInt) || cnt->is(T::kBool))) {
        const int64_t n = std::max<int64_t>(0, cnt->is(T::kBool) ? cnt->b : cnt->i);
        const uint64_t unit = seq->is(T::kStr) ? seq->s.size() : approx_bytes(*seq);
        if (unit && uint64_t(n) > lim_.max_output / unit) err("repetition exceeds the limit");
        check_size(unit * uint64_t(n));
        if (seq->is(T::kStr)) {
          std::string s;
          for (int64_t k = 0; k < n; ++k) s += seq->s;
          return Value::str(std::move(s));
        }
        List l;
        for (int64_t k = 0; k < n; ++k) l.insert(l.end(), seq->l->begin(), seq->l->end());
        return Value::list(std::move(l));
      }
    }
    if (!a.numeric() || !b.numeric())
      err(std::string("unsupported operand types for ") + op + ": '" + type_name(a) + "' and '" +
          type_name(b) + "'");
    const bool fl = a.is(T::kFloat) || b.is(T::kFloat);
    const double x = a.num(), y = b.num();
    if (op == "/") {
      if (y == 0) err("division by zero");
      return Value::real(x / y);
    }
    if (fl) {
      if (op == "+") return Value::real(x + y);
      if (op == "-") return Value::real(x - y);
      if (op == "*") return Value::real(x * y);
      if (op == "**") return Value::real(std::pow(x, y));
      if (y == 0) err("division by zero");
      const double fq = std::floor(x / y);
      if (op == "//") return Value::real(fq);
      return Value::real(x - fq * y);
    }
    const int64_t p = a.is(T::kBool) ? a.b : a.i, q = b.is(T::kBool) ? b.b : b.i;
    int64_t r = 0;
    if (op == "+") {
      if (__builtin_add_overflow(p, q, &r)) err("integer overflow");
      return Value::integer(r);
    }
    if (op == "-") {
      if (__builtin_sub_overflow(p, q, &r)) err("integer overflow");
      return Value::integer(r);
    }
    if (op == "*") {
      if (__builtin_mul_overflow(p, q, &r)) err("integer overflow");
      return Value::integer(r);
    }
    if (op == "**") {
      if (q < 0) return Value::real(std::pow(double(p), double(q)));
      int64_t acc = 1;
      for (int64_t k = 0; k < q; ++k) {
        if (__builtin_mul_overflow(acc, p, &acc)) err("integer overflow");
        if (acc == 0 || acc == 1) break;
      }
      return Value::integer(acc);
    }
    if (q == 0) err("division by zero");
    if (p == INT64_MIN && q == -1) err("integer overflow");
    int64_t fq = p / q;
    if ((p % q != 0) && ((p < 0) != (q < 0))) --fq;
    if (op == "//") return Value::integer(fq);
    return Value::integer(p - fq * q);
  }

  Value attr(const Value& v, const std::string& name) {
    if (v.is(T::kUndef))
      err("'" + (v.s.empty() ? std::string("value") : v.s) + "' is undefined (attribute '" + name +
          "')");
    if (v.is(T::kDict) || v.is(T::kNs)) {
      if (const Value* x = v.get(name)) return *x;
    }
    return Value::undef(name);
  }

  static int64_t norm_index(int64_t k, size_t n) { return k < 0 ? k + int64_t(n) : k; }

  Value index(const Value& v, const Value& k) {
    if (v.is(T::kUndef))
      err("'" + (v.s.empty() ? std::string("value") : v.s) + "' is undefined (subscript)");
    if (v.is(T::kDict) || v.is(T::kNs)) {
      if (k.is(T::kStr))
        if (const Value* x = v.get(k.s)) return *x;
      return Value::undef(k.is(T::kStr) ? k.s : "");
    }
    if ((v.is(T::kList) || v.is(T::kStr)) && (k.is(T::kInt) || k.is(T::kBool))) {
      if (v.is(T::kList)) {
        const int64_t i = norm_index(k.is(T::kBool) ? k.b : k.i, v.l->size());
        if (i < 0 || i >= int64_t(v.l->size())) return Value::undef("");
        return (*v.l)[size_t(i)];
      }
      const auto o = cp_offsets(v.s);
      const int64_t i = norm_index(k.is(T::kBool) ? k.b : k.i, o.size() - 1);
      if (i < 0 || i >= int64_t(o.size() - 1)) return Value::undef("");
      return Value::str(v.s.substr(o[size_t(i)], o[size_t(i) + 1] - o[size_t(i)]));
    }
    if (k.is(T::kStr)) return attr(v, k.s);
    return Value::undef("");
  }

  Value slice(const Expr& e) {
    const Value v = eval(*e.a[0]);
    auto bound = [&](const ExprP& x, bool* given) -> int64_t {
      *given = false;
      if (!x) return 0;
      const Value b = eval(*x);
      if (b.is(T::kNone)) return 0;
      if (!b.is(T::kInt)) err("slice indices must be integers");
      *given = true;
      return b.i;
    };
    bool hl = false, hh = false, hs = false;
    const int64_t lo = bound(e.a[1], &hl), hi = bound(e.a[2], &hh);
    int64_t st = bound(e.a[3], &hs);
    if (!hs) st = 1;
    if (st == 0) err("slice step cannot be zero");
    std::vector<size_t> o;
    size_t n = 0;
    if (v.is(T::kList)) {
      n = v.l->size();
    } else if (v.is(T::kStr)) {
      o = cp_offsets(v.s);
      n = o.size() - 1;
    } else {
      err(std::string("'") + type_name(v) + "' object is not subscriptable");
    }
    // Python's slice.indices()
    const int64_t len = int64_t(n);
    auto adj = [&](int64_t x, bool given, int64_t dflt) {
      if (!given) return dflt;
      if (x < 0) x += len;
      if (st > 0) return std::clamp<int64_t>(x, 0, len);
      return std::clamp<int64_t>(x, -1, len - 1);
    };
    const int64_t b = adj(lo, hl, st > 0 ? 0 : len - 1);
    const int64_t en = adj(hi, hh, st > 0 ? len : -1);
    std::vector<size_t> pick;
    for (int64_t k = b; st > 0 ? k < en : k > en; k += st) pick.push_back(size_t(k));
    if (v.is(T::kList)) {
      List l;
      for (size_t k : pick) l.push_back((*v.l)[k]);
      return Value::list(std::move(l));
    }
    std::string s;
    for (size_t k : pick) s.append(v.s, o[k], o[k + 1] - o[k]);
    return Value::str(std::move(s));
  }

  // Positional + keyword arguments evaluated.
  struct Args {
    List pos;
    std::vector<std::pair<std::string, Value>> kw;
    const Value* get(size_t i, const char* name) const {
      if (i < pos.size()) return &pos[i];
      for (const auto& [k, v] : kw)
        if (k == name) return &v;
      return nullptr;
    }
  };
  Args eval_args(const Expr& e, size_t first) {
    Args a;
    for (size_t k = first; k < e.a.size(); ++k) a.pos.push_back(eval(*e.a[k]));
    for (const auto& [k, x] : e.kw) a.kw.emplace_back(k, eval(*x));
    return a;
  }
  const std::string& need_str(const Value* v, const char* what) {
    if (!v || !v->is(T::kStr)) err(std::string(what) + " must be a string");
    return v->s;
  }
  int64_t need_int(const Value* v, const char* what) {
    if (!v || !(v->is(T::kInt) || v->is(T::kBool))) err(std::string(what) + " must be an integer");
    return v->is(T::kBool) ? v->b : v->i;
  }

  Value call(const Expr& e) {
    const Expr& callee = *e.a[0];
    if (callee.k == Expr::K::kAttr) {  // method call
      const Value obj = eval(*callee.a[0]);
      if (obj.is(T::kStr) || obj.is(T::kDict) || obj.is(T::kList))
        return method(obj, callee.name, eval_args(e, 1));
      const Value f = attr(obj, callee.name);
      return call_value(f, eval_args(e, 1));
    }
    const Value f = eval(callee);
    return call_value(f, eval_args(e, 1));
  }

  Value call_value(const Value& f, const Args& a) {
    if (f.is(T::kMacro)) return call_macro(*f.m, a);
    if (!f.is(T::kFn)) err(std::string("'") + type_name(f) + "' object is not callable");
    if (f.s == "raise_exception") {
      const Value* m = a.get(0, "message");
      err("raise_exception: " + (m ? to_str(*m) : std::string()));
    }
    if (f.s == "namespace" || f.s == "dict") {
      Value ns = Value::dict();
      if (f.s == "namespace") ns.t = T::kNs;
      for (const Value& p : a.pos) {
        if (!p.is(T::kDict)) err(f.s + "() takes keyword arguments or a dict");
        for (const auto& [k, v] : *p.d) ns.put(k, v);
      }
      for (const auto& [k, v] : a.kw) ns.put(k, v);
      return ns;
    }
    if (f.s == "range") {
      int64_t lo = 0, hi = 0, st = 1;
      if (a.pos.size() == 1) {
        hi = need_int(&a.pos[0], "range() argument");
      } else if (a.pos.size() == 2 || a.pos.size() == 3) {
        lo = need_int(&a.pos[0], "range() argument");
        hi = need_int(&a.pos[1], "range() argument");
        if (a.pos.size() == 3) st = need_int(&a.pos[2], "range() argument");
      } else {
        err("range() takes 1 to 3 arguments");
      }
      if (st == 0) err("range() step must not be zero");
      List l;
      for (int64_t k = lo; st > 0 ? k < hi : k > hi; k += st) {
        step();
        check_size(64);
        l.push_back(Value::integer(k));
      }
      return Value::list(std::move(l));
    }
    err("'" + f.s + "' is not supported");
  }

  Value call_macro(const MacroDef& m, const Args& a) {
    step();
    if (a.pos.size() > m.params.size())
      err("macro '" + m.name + "' takes " + std::to_string(m.params.size()) + " arguments");
    for (const auto& [k, v] : a.kw) {
      bool ok = false;
      for (const auto& p : m.params) ok = ok || p.first == k;
      if (!ok) err("macro '" + m.name + "' has no parameter '" + k + "'");
    }
    Frame f;
    for (size_t k = 0; k < m.params.size(); ++k) {
      const Value* v = a.get(k, m.params[k].first.c_str());
      if (v) {
        f.emplace_back(m.params[k].first, *v);
      } else if (m.params[k].second) {
        f.emplace_back(m.params[k].first, eval(*m.params[k].second));
      } else {
        f.emplace_back(m.params[k].first, Value::undef(m.params[k].first));
      }
    }
    const size_t saved_base = base_;
    const int saved_line = line_;
    frames_.push_back(std::move(f));
    base_ = frames_.size() - 1;
    std::string saved;
    std::swap(saved, out_);
    pending_ += saved.size();
    struct Restore {
      ~Restore() {
        r.frames_.pop_back();
        r.base_ = base;
        r.line_ = line;
        r.pending_ -= saved.size();
        std::swap(saved, r.out_);
      }
      Renderer& r;
      size_t base;
      int line;
      std::string& saved;
    } restore{*this, saved_base, saved_line, saved};
    exec(m.body);
    return Value::str(out_);  // out_ holds the macro's output until Restore swaps back
  }

  static Value pair(const std::string& k, const Value& v) {
    Value p = Value::list({Value::str(k), v});
    p.tuple = true;
    return p;
  }

  Value method(const Value& o, const std::string& n, const Args& a) {
    if (o.is(T::kDict)) {
      if (n == "get") {
        const Value* k = a.get(0, "key");
        if (!k) err("get() needs a key");
        if (k->is(T::kStr))
          if (const Value* v = o.get(k->s)) return *v;
        const Value* d = a.get(1, "default");
        return d ? *d : Value::none();
      }
      if (n == "items" || n == "keys" || n == "values") {
        List l;
        for (const auto& [k, v] : *o.d) {
          if (n == "items") {
            l.push_back(pair(k, v));
          } else {
            l.push_back(n == "keys" ? Value::str(k) : v);
          }
        }
        return Value::list(std::move(l));
      }
      return call_value(attr(o, n), a);
    }
    if (o.is(T::kList)) err("list has no method '" + n + "'");
    const std::string& s = o.s;
    if (n == "startswith" || n == "endswith") {
      const Value* p = a.get(0, "prefix");
      if (!p) err(n + "() needs an argument");
      List cands = p->is(T::kList) ? *p->l : List{*p};
      for (const Value& c : cands) {
        const std::string& x = need_str(&c, n.c_str());
        if (n == "startswith"
                ? s.compare(0, x.size(), x) == 0 && s.size() >= x.size()
                : s.size() >= x.size() && s.compare(s.size() - x.size(), x.size(), x) == 0)
          return Value::boolean(true);
      }
      return Value::boolean(false);
    }
    if (n == "strip" || n == "lstrip" || n == "rstrip") {
      const Value* c = a.get(0, "chars");
      const std::string* chars = c && c->is(T::kStr) ? &c->s : nullptr;
      return Value::str(py_strip(s, n != "rstrip", n != "lstrip", chars));
    }
    if (n == "upper") return Value::str(ascii_upper(s));
    if (n == "lower") return Value::str(ascii_lower(s));
    if (n == "title" || n == "capitalize") return str_filter(n, o);
    if (n == "replace") {
      const Value* c = a.get(2, "count");
      return Value::str(replace(s, need_str(a.get(0, "old"), "replace() old"),
                                need_str(a.get(1, "new"), "replace() new"),
                                c ? need_int(c, "count") : -1));
    }
    if (n == "split" || n == "rsplit") {
      const Value* sep = a.get(0, "sep");
      const Value* mx = a.get(1, "maxsplit");
      int64_t maxsplit = mx ? need_int(mx, "maxsplit") : -1;
      List parts;
      if (!sep || sep->is(T::kNone)) {  // runs of whitespace, no empty strings
        std::vector<std::pair<size_t, size_t>> w;
        size_t i = 0;
        while (i < s.size()) {
          size_t len = 0;
          while (i < s.size() && py_space(decode_at(s, i, &len))) i += len;
          if (i >= s.size()) break;
          size_t b = i;
          while (i < s.size() && !py_space(decode_at(s, i, &len))) i += len;
          w.emplace_back(b, i);
        }
        for (size_t k = 0; k < w.size(); ++k) {
          if (maxsplit >= 0 && int64_t(k) == maxsplit && n == "split") {
            parts.push_back(Value::str(py_strip(s.substr(w[k].first), false, true, nullptr)));
            break;
          }
          parts.push_back(Value::str(s.substr(w[k].first, w[k].second - w[k].first)));
        }
        return Value::list(std::move(parts));
      }
      const std::string& d = need_str(sep, "split() separator");
      if (d.empty()) err("empty separator");
      size_t b = 0;
      int64_t cnt = 0;
      if (n == "rsplit" && maxsplit >= 0) {
        std::vector<std::string> rev;
        size_t e = s.size();
        while (cnt < maxsplit) {
          if (e < d.size()) break;
          const size_t p = s.rfind(d, e - d.size());
          if (p == std::string::npos) break;
          rev.push_back(s.substr(p + d.size(), e - p - d.size()));
          e = p;
          ++cnt;
        }
        parts.push_back(Value::str(s.substr(0, e)));
        for (size_t k = rev.size(); k-- > 0;) parts.push_back(Value::str(rev[k]));
        return Value::list(std::move(parts));
      }
      while (true) {
        step();
        const size_t p = s.find(d, b);
        if (p == std::string::npos || (maxsplit >= 0 && cnt == maxsplit)) break;
        parts.push_back(Value::str(s.substr(b, p - b)));
        b = p + d.size();
        ++cnt;
      }
      parts.push_back(Value::str(s.substr(b)));
      return Value::list(std::move(parts));
    }
    if (n == "join") {
      const Value* it = a.get(0, "iterable");
      if (!it) err("join() needs an argument");
      std::string out;
      bool first = true;
      for (const Value& x : iterate(*it)) {
        if (!x.is(T::kStr)) err("join() expects strings");
        if (!first) out += s;
        first = false;
        out += x.s;
        check_size(out.size());
      }
      return Value::str(std::move(out));
    }
    if (n == "find" || n == "count") {
      const std::string& x = need_str(a.get(0, "sub"), (n + "() argument").c_str());
      if (n == "find") {
        const size_t p = s.find(x);
        return Value::integer(p == std::string::npos ? -1 : int64_t(cp_count(s.substr(0, p))));
      }
      if (x.empty()) return Value::integer(int64_t(cp_count(s)) + 1);
      int64_t c = 0;
      for (size_t p = s.find(x); p != std::string::npos; p = s.find(x, p + x.size())) ++c;
      return Value::integer(c);
    }
    if (n == "isdigit" || n == "isspace" || n == "isalpha") {
      if (s.empty()) return Value::boolean(false);
      for (char c : s) {
        const bool ok = n == "isdigit"   ? std::isdigit(uint8_t(c)) != 0
                        : n == "isspace" ? std::isspace(uint8_t(c)) != 0
                                         : std::isalpha(uint8_t(c)) != 0;
        if (!ok) return Value::boolean(false);
      }
      return Value::boolean(true);
    }
    err("str has no method '" + n + "'");
  }

  std::string replace(const std::string& s, const std::string& from, const std::string& to,
                      int64_t count) {
    std::string out;
    if (from.empty()) {  // Python inserts `to` around every code point
      const auto o = cp_offsets(s);
      int64_t done = 0;
      for (size_t k = 0; k + 1 < o.size() + 1; ++k) {
        if (count < 0 || done < count) {
          out += to;
          ++done;
        }
        if (k + 1 < o.size()) out.append(s, o[k], o[k + 1] - o[k]);
        check_size(out.size());
      }
      return out;
    }
    size_t b = 0;
    int64_t done = 0;
    while (count < 0 || done < count) {
      const size_t p = s.find(from, b);
      if (p == std::string::npos) break;
      out.append(s, b, p - b);
      out += to;
      check_size(out.size());
      b = p + from.size();
      ++done;
    }
    out.append(s, b);
    check_size(out.size());
    return out;
  }

  Value str_filter(const std::string& n, const Value& v) {
    std::string s = to_str(v);
    if (n == "upper") return Value::str(ascii_upper(s));
    if (n == "lower") return Value::str(ascii_lower(s));
    if (n == "capitalize") {
      s = ascii_lower(s);
      if (!s.empty() && s[0] >= 'a' && s[0] <= 'z') s[0] = char(s[0] - 32);
      return Value::str(s);
    }
    // title: upper after a non-letter, lower otherwise
    bool prev_alpha = false;
    for (char& c : s) {
      const bool alpha = std::isalpha(uint8_t(c)) != 0;
      if (alpha) c = prev_alpha ? char(std::tolower(uint8_t(c))) : char(std::toupper(uint8_t(c)));
      prev_alpha = alpha;
    }
    return Value::str(s);
  }

  // Applies the named filter to v (map()).
  Value apply_filter(const std::string& n, const Value& v, const Args& a) {
    if (n == "trim" || n == "strip") {
      const Value* c = a.get(0, "chars");
      return Value::str(py_strip(to_str(v), true, true, c && c->is(T::kStr) ? &c->s : nullptr));
    }
    if (n == "length" || n == "count") {
      switch (v.t) {
        case T::kStr:
          return Value::integer(int64_t(cp_count(v.s)));
        case T::kList:
          return Value::integer(int64_t(v.l->size()));
        case T::kDict:
        case T::kNs:
          return Value::integer(int64_t(v.d->size()));
        case T::kUndef:
          return Value::integer(0);
        default:
          err(std::string("object of type '") + type_name(v) + "' has no len()");
      }
    }
    if (n == "upper" || n == "lower" || n == "capitalize" || n == "title") return str_filter(n, v);
    if (n == "default" || n == "d") {
      const Value* d = a.get(0, "default_value");
      const Value* b = a.get(1, "boolean");
      const bool use = v.is(T::kUndef) || (b && truthy(*b) && !truthy(v));
      if (use) return d ? *d : Value::str("");
      return v;
    }
    if (n == "join") {
      const Value* sep = a.get(0, "d");
      const Value* at = a.get(1, "attribute");
      std::string out;
      bool first = true;
      for (const Value& x : iterate(v)) {
        if (!first && sep) out += to_str(*sep);
        first = false;
        out += to_str(at ? attr_path(x, *at) : x);
        check_size(out.size());
      }
      return Value::str(std::move(out));
    }
    if (n == "replace") {
      const Value* c = a.get(2, "count");
      return Value::str(replace(to_str(v), to_str(*need(a.get(0, "old"), "replace")),
                                to_str(*need(a.get(1, "new"), "replace")),
                                c && !c->is(T::kNone) ? need_int(c, "count") : -1));
    }
    if (n == "tojson") {
      const Value* ind = a.get(0, "indent");
      std::string o;
      to_json(
          o, v,
          ind && !ind->is(T::kNone) ? int(std::clamp<int64_t>(need_int(ind, "indent"), 0, 64)) : -1,
          0, lim_.max_output);
      check_size(o.size());
      return Value::str(std::move(o));
    }
    if (n == "items") {
      if (v.is(T::kUndef)) return Value::list();
      if (!v.is(T::kDict)) err("items: expected a mapping");
      return method(v, "items", {});
    }
    if (n == "dictsort") {
      if (!v.is(T::kDict)) err("dictsort: expected a mapping");
      const Value* cs = a.get(0, "case_sensitive");
      const Value* by = a.get(1, "by");
      const Value* rev = a.get(2, "reverse");
      const bool sens = cs && truthy(*cs);
      const bool by_value = by && by->is(T::kStr) && by->s == "value";
      List items;
      for (const auto& [k, x] : *v.d) items.push_back(pair(k, x));
      auto key = [&](const Value& it) {
        Value kv = (*it.l)[by_value ? 1 : 0];
        if (!sens && kv.is(T::kStr)) kv.s = ascii_lower(kv.s);
        return kv;
      };
      std::stable_sort(items.begin(), items.end(),
                       [&](const Value& x, const Value& y) { return compare(key(x), key(y)) < 0; });
      if (rev && truthy(*rev)) std::reverse(items.begin(), items.end());
      return Value::list(std::move(items));
    }
    if (n == "first" || n == "last") {
      List l = iterate(v);
      if (l.empty()) return Value::undef(n);
      return n == "first" ? l.front() : l.back();
    }
    if (n == "string") return Value::str(to_str(v));
    if (n == "int") {
      const Value* d = a.get(0, "default");
      const Value dflt = d ? *d : Value::integer(0);
      if (v.is(T::kInt)) return v;
      if (v.is(T::kBool)) return Value::integer(v.b);
      if (v.is(T::kFloat)) {
        if (!std::isfinite(v.f) || std::fabs(v.f) >= 9.2e18) return dflt;
        return Value::integer(int64_t(v.f));
      }
      if (v.is(T::kStr)) {
        const std::string t = py_strip(v.s, true, true, nullptr);
        int64_t x = 0;
        auto r = std::from_chars(t.data(), t.data() + t.size(), x);
        if (r.ec == std::errc() && r.ptr == t.data() + t.size()) return Value::integer(x);
        char* end = nullptr;
        const double f = std::strtod(t.c_str(), &end);
        if (!t.empty() && end == t.c_str() + t.size() && std::isfinite(f) && std::fabs(f) < 9.2e18)
          return Value::integer(int64_t(f));
      }
      return dflt;
    }
    if (n == "float") {
      if (v.numeric()) return Value::real(v.num());
      if (v.is(T::kStr)) {
        const std::string t = py_strip(v.s, true, true, nullptr);
        char* end = nullptr;
        const double f = std::strtod(t.c_str(), &end);
        if (!t.empty() && end == t.c_str() + t.size()) return Value::real(f);
      }
      const Value* d = a.get(0, "default");
      return d ? *d : Value::real(0);
    }
    if (n == "list") return Value::list(iterate(v));
    if (n == "reverse") {
      if (v.is(T::kStr)) {
        const auto o = cp_offsets(v.s);
        std::string s;
        for (size_t k = o.size() - 1; k-- > 0;) s.append(v.s, o[k], o[k + 1] - o[k]);
        return Value::str(s);
      }
      List l = iterate(v);
      std::reverse(l.begin(), l.end());
      return Value::list(std::move(l));
    }
    if (n == "sort") {
      List l = iterate(v);
      const Value* rev = a.get(0, "reverse");
      const Value* at = a.get(2, "attribute");
      std::stable_sort(l.begin(), l.end(), [&](const Value& x, const Value& y) {
        Value p = at ? attr_path(x, *at) : x, q = at ? attr_path(y, *at) : y;
        if (p.is(T::kStr) && q.is(T::kStr)) {
          p.s = ascii_lower(p.s);
          q.s = ascii_lower(q.s);
        }
        return compare(p, q) < 0;
      });
      if (rev && truthy(*rev)) std::reverse(l.begin(), l.end());
      return Value::list(std::move(l));
    }
    if (n == "unique") {
      List out;
      for (const Value& x : iterate(v)) {
        bool seen = false;
        for (const Value& y : out) seen = seen || equal(x, y);
        if (!seen) out.push_back(x);
      }
      return Value::list(std::move(out));
    }
    if (n == "abs") {
      if (v.is(T::kFloat)) return Value::real(std::fabs(v.f));
      if (v.is(T::kInt) && v.i != INT64_MIN) return Value::integer(v.i < 0 ? -v.i : v.i);
      err("abs: expected a number");
    }
    if (n == "round") {
      const Value* p = a.get(0, "precision");
      const int64_t prec = p ? std::clamp<int64_t>(need_int(p, "precision"), 0, 15) : 0;
      if (!v.numeric()) err("round: expected a number");
      const double m = std::pow(10.0, double(prec));
      return Value::real(std::nearbyint(v.num() * m) / m);
    }
    if (n == "safe" || n == "e" || n == "escape") {
      if (n == "safe") return v;
      std::string o;
      for (char c : to_str(v)) {
        switch (c) {
          case '&':
            o += "&amp;";
            break;
          case '<':
            o += "&lt;";
            break;
          case '>':
            o += "&gt;";
            break;
          case '"':
            o += "&#34;";
            break;
          case '\'':
            o += "&#39;";
            break;
          default:
            o += c;
        }
      }
      return Value::str(o);
    }
    if (n == "indent") {
      const Value* w = a.get(0, "width");
      const Value* f = a.get(1, "first");
      const Value* bl = a.get(2, "blank");
      const std::string pad =
          w && w->is(T::kStr)
              ? w->s
              : std::string(size_t(std::clamp<int64_t>(w ? need_int(w, "width") : 4, 0, 256)), ' ');
      const std::string s = to_str(v);
      std::string o;
      size_t b = 0;
      bool first = true;
      while (b <= s.size()) {
        size_t e = s.find('\n', b);
        const std::string line = s.substr(b, e == std::string::npos ? std::string::npos : e - b);
        const bool blank = py_strip(line, true, true, nullptr).empty();
        if ((!first || (f && truthy(*f))) && (!blank || (bl && truthy(*bl)))) o += pad;
        o += line;
        check_size(o.size());
        if (e == std::string::npos) break;
        o += '\n';
        b = e + 1;
        first = false;
      }
      return Value::str(o);
    }
    if (n == "wordcount") {
      return Value::integer(int64_t(method(Value::str(to_str(v)), "split", {}).l->size()));
    }
    err("unknown filter '" + n + "'");
  }
  const Value* need(const Value* v, const char* what) {
    if (!v) err(std::string(what) + ": missing argument");
    return v;
  }
  // attribute="a.b" or an integer index.
  Value attr_path(const Value& v, const Value& path) {
    if (path.is(T::kInt)) return index(v, path);
    Value cur = v;
    const std::string p = to_str(path);
    size_t b = 0;
    while (true) {
      const size_t e = p.find('.', b);
      const std::string part = p.substr(b, e == std::string::npos ? std::string::npos : e - b);
      if (cur.is(T::kUndef)) return cur;
      cur = index(cur, Value::str(part));
      if (e == std::string::npos) return cur;
      b = e + 1;
    }
  }

  Value filter(const Expr& e) {
    const Value v = eval(*e.a[0]);
    Args a = eval_args(e, 1);
    const std::string& n = e.name;
    if (n == "map") {
      List out;
      const Value* at = a.get(999, "attribute");
      if (at) {
        const Value* d = a.get(999, "default");
        for (const Value& x : iterate(v)) {
          Value r = attr_path(x, *at);
          out.push_back(r.is(T::kUndef) && d ? *d : r);
        }
        return Value::list(std::move(out));
      }
      if (a.pos.empty() || !a.pos[0].is(T::kStr)) err("map: expected a filter name");
      Args rest;
      rest.pos.assign(a.pos.begin() + 1, a.pos.end());
      rest.kw = a.kw;
      for (const Value& x : iterate(v)) out.push_back(apply_filter(a.pos[0].s, x, rest));
      return Value::list(std::move(out));
    }
    if (n == "select" || n == "reject" || n == "selectattr" || n == "rejectattr") {
      const bool by_attr = n == "selectattr" || n == "rejectattr";
      const bool keep_true = n == "select" || n == "selectattr";
      const size_t t0 = by_attr ? 1 : 0;
      if (by_attr && a.pos.empty()) err(n + ": expected an attribute");
      List out;
      for (const Value& x : iterate(v)) {
        const Value subject = by_attr ? attr_path(x, a.pos[0]) : x;
        bool r = truthy(subject);
        if (a.pos.size() > t0) {
          if (!a.pos[t0].is(T::kStr)) err(n + ": expected a test name");
          List targs(a.pos.begin() + long(t0) + 1, a.pos.end());
          r = run_test(a.pos[t0].s, subject, targs);
        }
        if (r == keep_true) out.push_back(x);
      }
      return Value::list(std::move(out));
    }
    return apply_filter(n, v, a);
  }

  bool test(const Expr& e) {
    const std::string& n = e.name;
    if (n == "defined" || n == "undefined") {
      const Value v = eval(*e.a[0]);
      return (n == "defined") != v.is(T::kUndef);
    }
    const Value v = eval(*e.a[0]);
    Args a = eval_args(e, 1);
    return run_test(n, v, a.pos);
  }

  bool run_test(const std::string& n, const Value& v, const List& args) {
    auto arg = [&]() -> const Value& {
      if (args.empty()) err("test '" + n + "' needs an argument");
      return args[0];
    };
    if (n == "defined") return !v.is(T::kUndef);
    if (n == "undefined") return v.is(T::kUndef);
    if (n == "none") return v.is(T::kNone);
    if (n == "string") return v.is(T::kStr);
    if (n == "number") return v.numeric();
    if (n == "integer") return v.is(T::kInt);
    if (n == "float") return v.is(T::kFloat);
    if (n == "boolean") return v.is(T::kBool);
    if (n == "true") return v.is(T::kBool) && v.b;
    if (n == "false") return v.is(T::kBool) && !v.b;
    if (n == "mapping") return v.is(T::kDict);
    if (n == "iterable") return v.is(T::kStr) || v.is(T::kList) || v.is(T::kDict);
    if (n == "sequence") return v.is(T::kStr) || v.is(T::kList) || v.is(T::kDict);
    if (n == "callable") return v.is(T::kMacro) || v.is(T::kFn);
    if (n == "even" || n == "odd") {
      if (!v.is(T::kInt)) err("test '" + n + "' expects an integer");
      return (v.i % 2 == 0) == (n == "even");
    }
    if (n == "divisibleby") {
      const int64_t d = need_int(&arg(), "divisibleby");
      if (d == 0) err("division by zero");
      return need_int(&v, "divisibleby operand") % d == 0;
    }
    if (n == "eq" || n == "equalto" || n == "==") return equal(v, arg());
    if (n == "ne" || n == "!=") return !equal(v, arg());
    if (n == "lt" || n == "lessthan" || n == "<") return compare(v, arg()) < 0;
    if (n == "gt" || n == "greaterthan" || n == ">") return compare(v, arg()) > 0;
    if (n == "le" || n == "<=") return compare(v, arg()) <= 0;
    if (n == "ge" || n == ">=") return compare(v, arg()) >= 0;
    if (n == "in") return contains(arg(), v);
    if (n == "sameas") return equal(v, arg()) && v.t == arg().t;
    if (n == "lower" || n == "upper") {
      const std::string s = to_str(v);
      return s == (n == "lower" ? ascii_lower(s) : ascii_upper(s));
    }
    err("unknown test '" + n + "'");
  }

  const Limits& lim_;
  std::string& out_;
  std::vector<Frame> frames_;
  size_t base_ = 0;  // first frame of the running macro (0: top level)
  int depth_ = 0;
  int64_t steps_ = 0;
  uint64_t alloc_ = 0;  // bytes of strings and lists built so far (check_size)
  size_t pending_ = 0;  // output held by callers while a macro or block set renders
  int line_ = 0;
};

}  // namespace
}  // namespace detail

Result<Template> Template::parse(std::string_view source, const Limits& limits) {
  if (source.size() > limits.max_source)
    return Status::error("chat template: " + std::to_string(source.size()) +
                         " bytes exceeds the limit of " + std::to_string(limits.max_source));
  try {
    auto prog = std::make_shared<Program>();
    detail::parse_program(source, *prog, limits.max_depth);
    Template t;
    t.prog_ = std::move(prog);
    t.limits_ = limits;
    return t;
  } catch (const detail::JinjaError& e) {
    return Status::error("chat template: " + e.msg);
  } catch (const std::exception& e) {
    return Status::error(std::string("chat template: ") + e.what());
  }
}

Result<std::string> Template::render(const Json& context) const {
  if (!prog_) return Status::error("chat template: not parsed");
  std::string out;
  try {
    detail::Renderer r(limits_, out);
    r.run(*prog_, context);
  } catch (const detail::JinjaError& e) {
    return Status::error("chat template: " + e.msg);
  } catch (const detail::BreakSignal&) {
    return Status::error("chat template: 'break' outside a loop");
  } catch (const detail::ContinueSignal&) {
    return Status::error("chat template: 'continue' outside a loop");
  } catch (const std::exception& e) {
    return Status::error(std::string("chat template: ") + e.what());
  }
  return out;
}

bool Template::uses_variable(std::string_view name) const {
  if (!prog_) return false;
  for (const std::string& n : prog_->names)
    if (n == name) return true;
  return false;
}

Result<std::string> render(std::string_view source, const Json& context, const Limits& limits) {
  Result<Template> t = Template::parse(source, limits);
  if (!t.ok()) return t.status();
  return t.value().render(context);
}

}  // namespace g4::jinja
