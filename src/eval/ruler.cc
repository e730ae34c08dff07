#include "eval/ruler.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <set>

#include "eval/niah.h"
#include "g4/engine.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace g4 {

namespace {

struct TaskInfo {
  RulerTask task;
  const char* name;
  int max_tokens;
  bool list;  // several items: answers may span lines
};

const TaskInfo kTasks[] = {
    {RulerTask::kNiahSingle, "niah_single", 16, false},
    {RulerTask::kNiahMultiKey, "niah_multikey", 16, false},
    {RulerTask::kNiahMultiValue, "niah_multivalue", 56, true},
    {RulerTask::kNiahMultiQuery, "niah_multiquery", 80, true},
    {RulerTask::kVariableTracking, "vt", 40, true},
    {RulerTask::kCommonWords, "cwe", 96, true},
    {RulerTask::kFrequentWords, "fwe", 40, true},
    {RulerTask::kKvJson, "kv_json", 40, false},
};

const TaskInfo& info(RulerTask t) {
  for (const TaskInfo& i : kTasks)
    if (i.task == t) return i;
  return kTasks[0];
}

// Answer budget of the longest task (engines must hold ctx + this).
constexpr int kMaxAnswerTokens = 96;

uint64_t seed_of(uint64_t seed, int64_t ctx, int sample, uint64_t salt) {
  uint64_t s = seed * 0x100000001B3ull ^ uint64_t(ctx) * 0x9E3779B97F4A7C15ull ^
               (uint64_t(sample) + 1) * 0xC2B2AE3D27D4EB4Full ^ salt * 0x165667B19E3779F9ull;
  eval_random(s);
  return s;
}

double uniform(uint64_t& s) {
  return double(eval_random(s) >> 11) * 0x1.0p-53;
}

template <class T>
void shuffle(std::vector<T>& v, uint64_t s) {
  for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[eval_random(s) % i]);
}

// A made-up lowercase word of 2-3 consonant-vowel syllables (an optional final consonant):
// no prior frequency in the model's training text.
std::string coded_word(uint64_t& s) {
  static const char kC[] = "bdfgklmnprstvz", kV[] = "aeiou";
  std::string w;
  const int syl = 2 + int(eval_random(s) % 2);
  for (int i = 0; i < syl; ++i) {
    w += kC[eval_random(s) % (sizeof kC - 1)];
    w += kV[eval_random(s) % (sizeof kV - 1)];
  }
  if (eval_random(s) % 2) w += kC[eval_random(s) % (sizeof kC - 1)];
  return w;
}

// `count` distinct words from `make`, none equal to one in `taken` (which they join).
template <class Make>
std::vector<std::string> distinct(uint64_t& s, size_t count, std::set<std::string>& taken,
                                  Make make) {
  std::vector<std::string> out;
  while (out.size() < count) {
    std::string w = make(s);
    if (taken.insert(w).second) out.push_back(std::move(w));
  }
  return out;
}

std::string number(uint64_t& s, int digits) {
  uint64_t lo = 1;
  for (int i = 1; i < digits; ++i) lo *= 10;
  return std::to_string(lo + eval_random(s) % (9 * lo));
}

std::string uuid(uint64_t& s) {
  static const char kHex[] = "0123456789abcdef";
  std::string u;
  for (int g : {8, 4, 4, 4, 12}) {
    if (!u.empty()) u += '-';
    for (int i = 0; i < g; ++i) u += kHex[eval_random(s) % 16];
  }
  return u;
}

std::string join(const std::vector<std::string>& v, const char* sep, const char* last) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i == 0 ? "" : i + 1 == v.size() ? last : sep) + v[i];
  return s;
}

// Task description, then the text, then the question; the answer prefix starts the answer
// (after "Answer:" in a completion prompt, at the start of the model's turn in a chat).
struct Prompt {
  std::string preamble, body, question, answer_prefix;
};

Result<std::vector<int32_t>> encode(const Tokenizer& tok, bool chat, bool gemma4, const Prompt& p) {
  const std::string user = p.preamble + "\n\n" + p.body + "\n\nQuestion: " + p.question;
  if (!chat) return tok.encode(user + "\nAnswer: " + p.answer_prefix, true, false);
  auto ids =
      encode_chat(gemma4 ? ChatFormat::kGemma4 : ChatFormat::kGemma3, tok, {{"user", user}}, true);
  if (!ids.ok()) return ids.status();
  auto tail = tok.encode(p.answer_prefix, false, false);
  ids.value().insert(ids.value().end(), tail.begin(), tail.end());
  return ids;
}

// The largest unit count n >= min_units whose prompt build(n) fits in ctx tokens: secant
// steps on tokens per unit, then bisection. Returns that prompt's ids.
template <class Build>
Result<std::vector<int32_t>> fit(const Tokenizer& tok, bool chat, bool gemma4, int64_t ctx,
                                 size_t min_units, const char* task, Build build) {
  auto tokens = [&](size_t n) { return encode(tok, chat, gemma4, build(n)); };
  auto base = tokens(min_units);
  if (!base.ok()) return base.status();
  const int64_t t0 = int64_t(base.value().size());
  if (t0 > ctx)
    return Status::error(std::string("ruler: ") + task + " needs at least " + std::to_string(t0) +
                         " tokens; a context of " + std::to_string(ctx) + " is too short");
  auto probe = tokens(min_units + 32);
  if (!probe.ok()) return probe.status();
  const double per = std::max(0.5, double(int64_t(probe.value().size()) - t0) / 32.0);
  size_t lo = min_units, hi = std::numeric_limits<size_t>::max();
  std::vector<int32_t> best = std::move(base).value();
  size_t n = min_units + size_t(double(ctx - t0) / per);
  for (int it = 0; hi - lo > 1; ++it) {
    if (it >= 8) n = hi == std::numeric_limits<size_t>::max() ? 2 * lo + 1 : lo + (hi - lo) / 2;
    n = std::clamp(n, lo + 1, hi - 1);
    auto ids = tokens(n);
    if (!ids.ok()) return ids.status();
    const int64_t t = int64_t(ids.value().size());
    if (t <= ctx) {
      lo = n;
      best = std::move(ids).value();
      n += std::max<size_t>(1, size_t(double(ctx - t) / per));
    } else {
      hi = n;
      n -= std::min(n, std::max<size_t>(1, size_t(double(t - ctx) / per) + 1));
    }
  }
  return best;
}

// Filler sentences drawn in order from one state: sentence i does not depend on how many are
// asked for, so cases that share the state share their text.
struct Filler {
  uint64_t state;
  std::vector<std::string> sent;
  const std::vector<std::string>& first(size_t n) {
    while (sent.size() < n) sent.push_back(filler_sentence(state));
    return sent;
  }
};

// n filler sentences with `inserts` placed after sentence round(depth * n), in order.
std::string haystack(Filler& f, size_t n,
                     const std::vector<std::pair<double, std::string>>& inserts) {
  const auto& sent = f.first(n);
  std::vector<std::pair<size_t, size_t>> at;  // (sentence index, insert index)
  for (size_t i = 0; i < inserts.size(); ++i)
    at.emplace_back(size_t(std::lround(inserts[i].first * double(n))), i);
  std::stable_sort(at.begin(), at.end());
  std::string s;
  size_t k = 0;
  for (size_t i = 0; i <= n; ++i) {
    for (; k < at.size() && at[k].first == i; ++k)
      s += (s.empty() ? "" : " ") + inserts[at[k].second].second;
    if (i < n) s += (s.empty() ? "" : " ") + sent[i];
  }
  return s;
}

const char kNiahPreamble[] =
    "Some special magic numbers are hidden within the following text. Make sure to memorize "
    "it. I will quiz you about the numbers afterwards.";

Result<RulerCase> niah_case(const Tokenizer& tok, bool chat, bool gemma4, const RulerOptions& o,
                            RulerTask task, int64_t ctx, int sample, uint64_t s) {
  RulerCase c;
  std::set<std::string> taken;
  const int n_needles = 4;
  const int n_keys = task == RulerTask::kNiahSingle       ? 1
                     : task == RulerTask::kNiahMultiValue ? 1
                                                          : n_needles;
  const int n_vals = task == RulerTask::kNiahSingle ? 1 : n_needles;
  auto keys = distinct(s, size_t(n_keys), taken, filler_key);
  auto vals = distinct(s, size_t(n_vals), taken, [](uint64_t& r) { return number(r, 7); });
  std::vector<std::pair<double, std::string>> needles;
  for (int i = 0; i < n_vals; ++i)
    needles.emplace_back(uniform(s), "One of the special magic numbers for " +
                                         keys[size_t(i) % keys.size()] + " is: " + vals[size_t(i)] +
                                         ".");
  Prompt p;
  p.preamble = kNiahPreamble;
  switch (task) {
    case RulerTask::kNiahSingle:
    case RulerTask::kNiahMultiKey:  // the first key is asked; the others are distractors
      c.expected = {vals[0]};
      p.question = "What is the special magic number for " + keys[0] + " mentioned in the text?";
      p.answer_prefix = "The special magic number for " + keys[0] + " mentioned in the text is";
      break;
    case RulerTask::kNiahMultiValue:
      c.expected = vals;
      p.question =
          "What are all the special magic numbers for " + keys[0] + " mentioned in the text?";
      p.answer_prefix = "The special magic numbers for " + keys[0] + " mentioned in the text are";
      break;
    default: {
      c.expected = vals;
      const std::string ks = join(keys, ", ", " and ");
      p.question = "What are all the special magic numbers for " + ks + " mentioned in the text?";
      p.answer_prefix = "The special magic numbers for " + ks + " mentioned in the text are";
    }
  }
  // The needle tasks of one (ctx, sample) share the filler.
  Filler f{seed_of(o.seed, ctx, sample, 0xF111E5), {}};
  auto ids = fit(tok, chat, gemma4, ctx, 1, ruler_task_name(task), [&](size_t n) {
    Prompt q = p;
    q.body = haystack(f, n, needles);
    return q;
  });
  if (!ids.ok()) return ids.status();
  c.ids = std::move(ids).value();
  return c;
}

Result<RulerCase> vt_case(const Tokenizer& tok, bool chat, bool gemma4, const RulerOptions& o,
                          int64_t ctx, int sample, uint64_t s) {
  const int chains = 2, hops = 4;
  std::set<std::string> taken;
  auto names = distinct(s, size_t(chains * (hops + 1)), taken, [](uint64_t& r) {
    std::string w;
    for (int i = 0; i < 5; ++i) w += char('A' + eval_random(r) % 26);
    return w;
  });
  auto vals = distinct(s, size_t(chains), taken, [](uint64_t& r) { return number(r, 5); });
  std::vector<std::pair<double, std::string>> stmts;
  for (int c = 0; c < chains; ++c) {
    std::vector<double> d(size_t(hops + 1));
    for (double& x : d) x = uniform(s);
    std::sort(d.begin(), d.end());  // a chain is written in order
    const std::string* v = &names[size_t(c * (hops + 1))];
    stmts.emplace_back(d[0], "VAR " + v[0] + " = " + vals[size_t(c)] + ".");
    for (int h = 1; h <= hops; ++h)
      stmts.emplace_back(d[size_t(h)], "VAR " + v[h] + " = VAR " + v[h - 1] + ".");
  }
  RulerCase c;
  c.expected.assign(names.begin(), names.begin() + hops + 1);
  Prompt p;
  p.preamble =
      "Memorize and track the chain(s) of variable assignment hidden in the following text.";
  p.question = "Find all variables that are assigned the value " + vals[0] + " in the text above.";
  p.answer_prefix = "According to the chain(s) of variable assignment in the text above, " +
                    std::to_string(hops + 1) + " variables are assigned the value " + vals[0] +
                    ", they are:";
  Filler f{seed_of(o.seed, ctx, sample, 0x7A), {}};
  auto ids = fit(tok, chat, gemma4, ctx, 1, "vt", [&](size_t n) {
    Prompt q = p;
    q.body = haystack(f, n, stmts);
    return q;
  });
  if (!ids.ok()) return ids.status();
  c.ids = std::move(ids).value();
  return c;
}

// Common words: 10 words `fc` times each among n others `fu` times each, as a numbered list.
Result<RulerCase> cwe_case(const Tokenizer& tok, bool chat, bool gemma4, int64_t ctx, uint64_t s) {
  const size_t n_common = 10;
  const int fu = ctx >= 16384 ? 3 : ctx >= 8192 ? 2 : 1;
  const int fc = std::max(fu + 2, int(std::min<int64_t>(30, ctx / 300)));
  std::set<std::string> taken;
  std::vector<std::string> words = distinct(s, n_common, taken, coded_word);
  const uint64_t order = eval_random(s);
  RulerCase c;
  c.expected = words;
  Prompt p;
  p.preamble =
      "Below is a numbered list of words. In these words, some appear more often than others. "
      "Memorize the ones that appear most often.";
  p.question = "What are the 10 most common words in the list above?";
  p.answer_prefix = "The top 10 words that appear most often in the list are:";
  auto ids = fit(tok, chat, gemma4, ctx, 0, "cwe", [&](size_t n) {
    if (words.size() < n_common + n) {
      auto more = distinct(s, n_common + n - words.size(), taken, coded_word);
      words.insert(words.end(), more.begin(), more.end());
    }
    std::vector<const std::string*> list;
    for (size_t i = 0; i < n_common + n; ++i)
      for (int k = 0; k < (i < n_common ? fc : fu); ++k) list.push_back(&words[i]);
    shuffle(list, order ^ n);
    Prompt q = p;
    for (size_t i = 0; i < list.size(); ++i)
      q.body += (i ? "\n" : "") + std::to_string(i + 1) + ". " + *list[i];
    return q;
  });
  if (!ids.ok()) return ids.status();
  c.ids = std::move(ids).value();
  return c;
}

// Frequent words: n words of made-up text whose counts follow Zipf's law with exponent 2
// (rank r appears floor(n / (H * r^2)) times); the 3 most frequent are asked for.
Result<RulerCase> fwe_case(const Tokenizer& tok, bool chat, bool gemma4, int64_t ctx, uint64_t s) {
  const size_t vocab = 64, top = 3;
  std::set<std::string> taken;
  const std::vector<std::string> words = distinct(s, vocab, taken, coded_word);
  double h = 0;
  for (size_t r = 1; r <= vocab; ++r) h += 1.0 / double(r * r);
  auto count = [&](size_t n, size_t r) { return size_t(double(n) / (h * double(r * r))); };
  const uint64_t order = eval_random(s);
  RulerCase c;
  c.expected.assign(words.begin(), words.begin() + top);
  Prompt p;
  p.preamble =
      "Read the following coded text and track the frequency of each coded word. Find the three "
      "most frequently appeared coded words.";
  p.question = "What are the three most frequently appeared words in the coded text above?";
  p.answer_prefix =
      "According to the coded text above, the three most frequently appeared words are:";
  // 80 words: counts 48, 12, 5, 3, ... (the top three strictly ahead of the rest).
  auto ids = fit(tok, chat, gemma4, ctx, 80, "fwe", [&](size_t n) {
    std::vector<const std::string*> text;
    for (size_t r = 1; r <= vocab; ++r)
      for (size_t k = 0; k < count(n, r); ++k) text.push_back(&words[r - 1]);
    shuffle(text, order ^ n);
    Prompt q = p;
    for (size_t i = 0; i < text.size(); ++i) q.body += (i ? " " : "") + *text[i];
    return q;
  });
  if (!ids.ok()) return ids.status();
  c.ids = std::move(ids).value();
  return c;
}

// Key-value retrieval: a one-line JSON object of n UUID keys to UUID values.
Result<RulerCase> kv_case(const Tokenizer& tok, bool chat, bool gemma4, int64_t ctx, uint64_t s) {
  std::set<std::string> taken;
  std::vector<std::string> keys, vals;
  const double where = uniform(s);
  RulerCase c;
  Prompt p;
  p.preamble = "Extract the value corresponding to the specified key in the JSON object below.";
  auto ids = fit(tok, chat, gemma4, ctx, 1, "kv_json", [&](size_t n) {
    while (keys.size() < n) {
      keys.push_back(distinct(s, 1, taken, uuid)[0]);
      vals.push_back(distinct(s, 1, taken, uuid)[0]);
    }
    const size_t k = std::min(n - 1, size_t(where * double(n)));
    Prompt q = p;
    q.body = "JSON data:\n{";
    for (size_t i = 0; i < n; ++i)
      q.body += (i ? ", \"" : "\"") + keys[i] + "\": \"" + vals[i] + "\"";
    q.body += "}";
    q.question = "What is the value of the key \"" + keys[k] + "\" in the JSON object above?";
    q.answer_prefix = "The value associated with the key \"" + keys[k] + "\" is:";
    c.expected = {vals[k]};
    return q;
  });
  if (!ids.ok()) return ids.status();
  c.ids = std::move(ids).value();
  return c;
}

bool is_alnum(char ch) {
  return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
}

std::string lower(std::string_view s) {
  std::string r(s);
  for (char& ch : r)
    if (ch >= 'A' && ch <= 'Z') ch = char(ch - 'A' + 'a');
  return r;
}

}  // namespace

const std::vector<RulerTask>& all_ruler_tasks() {
  static const std::vector<RulerTask> all = [] {
    std::vector<RulerTask> v;
    for (const TaskInfo& i : kTasks) v.push_back(i.task);
    return v;
  }();
  return all;
}

const char* ruler_task_name(RulerTask t) {
  return info(t).name;
}

Result<std::vector<RulerTask>> parse_ruler_tasks(std::string_view list) {
  if (list == "all") return all_ruler_tasks();
  std::vector<RulerTask> out;
  size_t pos = 0;
  while (pos <= list.size()) {
    const size_t end = std::min(list.find(',', pos), list.size());
    const std::string_view name = list.substr(pos, end - pos);
    const TaskInfo* hit = nullptr;
    for (const TaskInfo& i : kTasks)
      if (name == i.name) hit = &i;
    if (!hit) {
      std::string known;
      for (const TaskInfo& i : kTasks) known += std::string(known.empty() ? "" : ", ") + i.name;
      return Status::error("ruler: unknown task '" + std::string(name) + "' (all, " + known + ")");
    }
    if (std::find(out.begin(), out.end(), hit->task) == out.end()) out.push_back(hit->task);
    pos = end + 1;
  }
  return out;
}

Result<RulerCase> make_ruler_case(const Tokenizer& tok, bool gemma4_chat, const RulerOptions& o,
                                  RulerTask task, int64_t ctx, int sample) {
  if (ctx < 128)
    return Status::error("ruler: a context of " + std::to_string(ctx) + " is too short");
  if (sample < 0) return Status::error("ruler: a negative sample index");
  const uint64_t s = seed_of(o.seed, ctx, sample, 1 + uint64_t(task));
  Result<RulerCase> c = Status::error("ruler: unknown task");
  switch (task) {
    case RulerTask::kNiahSingle:
    case RulerTask::kNiahMultiKey:
    case RulerTask::kNiahMultiValue:
    case RulerTask::kNiahMultiQuery:
      c = niah_case(tok, o.chat, gemma4_chat, o, task, ctx, sample, s);
      break;
    case RulerTask::kVariableTracking:
      c = vt_case(tok, o.chat, gemma4_chat, o, ctx, sample, s);
      break;
    case RulerTask::kCommonWords:
      c = cwe_case(tok, o.chat, gemma4_chat, ctx, s);
      break;
    case RulerTask::kFrequentWords:
      c = fwe_case(tok, o.chat, gemma4_chat, ctx, s);
      break;
    case RulerTask::kKvJson:
      c = kv_case(tok, o.chat, gemma4_chat, ctx, s);
      break;
  }
  if (!c.ok()) return c;
  c.value().task = task;
  c.value().max_tokens = info(task).max_tokens;
  c.value().stop = {info(task).list ? "\n\n" : "\n"};
  return c;
}

double ruler_score(const std::vector<std::string>& expected, std::string_view output) {
  if (expected.empty()) return 0;
  const std::string out = lower(output);
  int found = 0;
  for (const std::string& e : expected) {
    const std::string want = lower(e);
    if (want.empty()) continue;
    for (size_t at = out.find(want); at != std::string::npos; at = out.find(want, at + 1)) {
      const size_t end = at + want.size();
      if ((at == 0 || !is_alnum(out[at - 1])) && (end == out.size() || !is_alnum(out[end]))) {
        ++found;
        break;
      }
    }
  }
  return double(found) / double(expected.size());
}

Result<RulerResult> run_ruler(Engine& e, const RulerOptions& o,
                              const std::function<void(size_t, size_t)>& progress) {
  auto r = run_ruler_routed(e, o, {}, progress);
  if (!r.ok()) return r.status();
  return std::move(r.value()[0]);
}

Result<std::vector<RulerResult>> run_ruler_routed(
    Engine& e, const RulerOptions& o, const std::vector<SparseAttentionOptions>& routings,
    const std::function<void(size_t, size_t)>& progress) {
  if (o.contexts.empty() || o.tasks.empty() || o.samples < 1)
    return Status::error("ruler: give at least one context, one task and one sample");
  for (int64_t c : o.contexts)
    if (c + kMaxAnswerTokens > e.options().n_ctx)
      return Status::error("ruler: a context of " + std::to_string(c) +
                           " tokens plus the answer (" + std::to_string(kMaxAnswerTokens) +
                           ") exceeds the engine's " + std::to_string(e.options().n_ctx));
  const bool gemma4 = chat_format_for_arch(e.model().config().arch) == ChatFormat::kGemma4;
  const auto t0 = std::chrono::steady_clock::now();
  const size_t n_var = std::max<size_t>(1, routings.size());
  std::vector<RulerResult> rs(n_var);
  const size_t total = o.contexts.size() * size_t(o.samples) * o.tasks.size() * n_var;
  size_t done = 0;
  for (int64_t ctx : o.contexts) {
    Session session(e);  // one per context: the needle tasks of a sample share their filler
    for (int smp = 0; smp < o.samples; ++smp) {
      for (RulerTask task : o.tasks) {
        auto c = make_ruler_case(e.tokenizer(), gemma4, o, task, ctx, smp);
        if (!c.ok()) return c.status();
        const RulerCase& k = c.value();
        for (size_t v = 0; v < n_var; ++v) {
          if (!routings.empty())
            if (Status s = session.set_routing(routings[v]); !s.ok()) return s;
          GenerateOptions g;
          g.sampling.temperature = 0;
          g.max_tokens = k.max_tokens;
          // Stop strings count from the answer's first non-blank character (a base model often
          // starts a list with a blank line); decoding also stops once every item has appeared.
          std::string text;
          auto out = session.generate(k.ids, g, [&](std::string_view piece) {
            text += piece;
            const size_t start = text.find_first_not_of(" \t\n");
            if (start == std::string::npos) return true;
            for (const std::string& st : k.stop)
              if (const size_t at = text.find(st, start); at != std::string::npos) {
                text.resize(at);
                return false;
              }
            return ruler_score(k.expected, text) < 1;
          });
          if (!out.ok()) return out.status();
          RulerSample sample{task, ctx, smp, int64_t(k.ids.size()), k.expected, text, 0};
          sample.score = ruler_score(sample.expected, sample.output);
          rs[v].samples.push_back(std::move(sample));
          if (progress) progress(++done, total);
        }
      }
    }
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  for (RulerResult& r : rs) r.seconds = secs;
  return rs;
}

std::vector<RulerCell> ruler_cells(const RulerOptions& o, const std::vector<RulerSample>& s) {
  std::vector<RulerCell> cells;
  for (RulerTask t : o.tasks)
    for (int64_t ctx : o.contexts) {
      RulerCell c{t, ctx, 0, 0};
      double sum = 0;
      for (const RulerSample& x : s)
        if (x.task == t && x.ctx == ctx) sum += x.score, ++c.n;
      c.mean = c.n ? sum / c.n : 0;
      cells.push_back(c);
    }
  return cells;
}

}  // namespace g4
