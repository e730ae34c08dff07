#include "eval/niah.h"

#include <chrono>
#include <cmath>

#include "g4/engine.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace g4 {

namespace {

uint64_t splitmix(uint64_t& s) {
  uint64_t z = (s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

template <size_t N>
const char* pick(uint64_t& s, const char* const (&words)[N]) {
  return words[splitmix(s) % N];
}

const char* const kAdj[] = {"quiet",  "bright", "old",    "narrow", "golden", "distant", "small",
                            "heavy",  "gentle", "rusty",  "silver", "hidden", "busy",    "green",
                            "frozen", "wooden", "hollow", "proud",  "sudden", "patient", "crisp",
                            "pale",   "loud",   "steady", "humble", "bitter", "windy",   "open"};
const char* const kNoun[] = {
    "river",   "village", "lantern", "harbor",   "orchard", "bridge", "painter", "engine",
    "library", "garden",  "market",  "mountain", "teacher", "window", "valley",  "sailor",
    "kitchen", "forest",  "station", "tower",    "farmer",  "meadow", "clock",   "castle",
    "island",  "road",    "bakery",  "student",  "violin",  "canyon", "wagon",   "lighthouse"};
const char* const kVerb[] = {"watched",    "crossed", "painted", "followed", "repaired",
                             "visited",    "passed",  "found",   "carried",  "described",
                             "remembered", "opened",  "guarded", "cleaned",  "measured",
                             "admired",    "studied", "reached"};
const char* const kTime[] = {
    "in the morning", "at dusk",     "every winter", "after the rain",      "before noon",
    "on market days", "at midnight", "last spring",  "during the festival", "once a year"};

std::string cap(std::string s) {
  if (!s.empty() && s[0] >= 'a' && s[0] <= 'z') s[0] = char(s[0] - 'a' + 'A');
  return s;
}

// One filler sentence: plain, varied, never about numbers.
std::string sentence(uint64_t& s) {
  switch (splitmix(s) % 5) {
    case 0:
      return cap(std::string("the ") + pick(s, kAdj) + " " + pick(s, kNoun) + " " + pick(s, kVerb) +
                 " the " + pick(s, kNoun) + " " + pick(s, kTime) + ".");
    case 1:
      return cap(std::string(pick(s, kTime)) + ", a " + pick(s, kAdj) + " " + pick(s, kNoun) + " " +
                 pick(s, kVerb) + " the " + pick(s, kAdj) + " " + pick(s, kNoun) + ".");
    case 2:
      return cap(std::string("nobody ") + pick(s, kVerb) + " the " + pick(s, kNoun) + " near the " +
                 pick(s, kAdj) + " " + pick(s, kNoun) + ".");
    case 3:
      return cap(std::string("the ") + pick(s, kNoun) + " was " + pick(s, kAdj) + " and the " +
                 pick(s, kNoun) + " was " + pick(s, kAdj) + ".");
    default:
      return cap(std::string("a ") + pick(s, kNoun) + " " + pick(s, kVerb) + " a " +
                 pick(s, kNoun) + ", and the " + pick(s, kNoun) + " " + pick(s, kVerb) + " it " +
                 pick(s, kTime) + ".");
  }
}

struct Parts {
  std::string before, needle, after, question, answer_prefix;
};

Result<std::vector<int32_t>> encode(const Tokenizer& tok, bool chat, bool gemma4, const Parts& p) {
  const std::string text = p.before + p.needle + p.after;
  if (!chat)
    return tok.encode(text + "\n\nQuestion: " + p.question + "\nAnswer: " + p.answer_prefix, true,
                      false);
  std::vector<ChatMessage> msgs{{"user", "Read the text and answer the question at its end.\n\n" +
                                             text + "\n\nQuestion: " + p.question}};
  auto ids = encode_chat(gemma4 ? ChatFormat::kGemma4 : ChatFormat::kGemma3, tok, msgs, true);
  if (!ids.ok()) return ids.status();
  auto tail = tok.encode(p.answer_prefix, false, false);
  ids.value().insert(ids.value().end(), tail.begin(), tail.end());
  return ids;
}

}  // namespace

uint64_t eval_random(uint64_t& state) {
  return splitmix(state);
}
std::string filler_sentence(uint64_t& state) {
  return sentence(state);
}
std::string filler_key(uint64_t& state) {
  std::string k = pick(state, kAdj);
  return k + "-" + pick(state, kNoun);
}

Result<NiahCase> make_niah_case(const Tokenizer& tok, bool gemma4_chat, const NiahOptions& o,
                                int64_t ctx, double depth, int trial) {
  if (ctx < 64) return Status::error("niah: a context of " + std::to_string(ctx) + " is too short");
  if (!(depth >= 0 && depth <= 1)) return Status::error("niah: depth must be in [0, 1]");
  uint64_t s = o.seed * 0x100000001B3ull ^ uint64_t(ctx) * 0x9E3779B97F4A7C15ull ^ uint64_t(trial);
  NiahCase c;
  c.key = std::string(pick(s, kAdj)) + "-" + pick(s, kNoun);
  c.answer = std::to_string(1000000 + splitmix(s) % 9000000);
  Parts p;
  p.needle = " The special magic number for " + c.key + " is: " + c.answer + ".";
  p.question = "What is the special magic number for " + c.key + " mentioned in the text?";
  p.answer_prefix = " The special magic number for " + c.key + " is:";
  // Sentences until their tokens pass the budget, then fewer until the prompt fits. The
  // count depends on (ctx, trial) only, so every depth shares the haystack.
  std::vector<std::string> sent;
  int64_t est = 0;
  while (est < ctx) {
    sent.push_back(sentence(s));
    est += int64_t(tok.encode(" " + sent.back(), false, false).size());
  }
  auto build = [&](size_t n, double d) {
    const size_t at = size_t(std::lround(d * double(n)));
    Parts q = p;
    for (size_t i = 0; i < n; ++i) (i < at ? q.before : q.after) += (i ? " " : "") + sent[i];
    if (at == 0 && !q.after.empty()) q.needle = q.needle.substr(1) + " ";  // needle first
    return q;
  };
  size_t n = sent.size();
  for (int guard = 0; guard < 64; ++guard) {
    auto ids = encode(tok, o.chat, gemma4_chat, build(n, 0.0));
    if (!ids.ok()) return ids.status();
    const int64_t over = int64_t(ids.value().size()) - ctx;
    if (over <= 0) break;
    const double per = double(est) / double(sent.size());
    n -= std::min(n, std::max<size_t>(1, size_t(double(over) / per)));
  }
  for (;; --n) {
    const Parts q = build(n, depth);
    auto ids = encode(tok, o.chat, gemma4_chat, q);
    if (!ids.ok()) return ids.status();
    if (int64_t(ids.value().size()) <= ctx || n == 0) {
      c.ids = std::move(ids).value();
      c.needle_token = int64_t(tok.encode(q.before, true, false).size());
      return c;
    }
  }
}

Result<NiahResult> run_niah(Engine& e, const NiahOptions& o,
                            const std::function<void(size_t, size_t)>& progress) {
  auto r = run_niah_routed(e, o, {}, progress);
  if (!r.ok()) return r.status();
  return std::move(r.value()[0]);
}

Result<std::vector<NiahResult>> run_niah_routed(
    Engine& e, const NiahOptions& o, const std::vector<SparseAttentionOptions>& routings,
    const std::function<void(size_t, size_t)>& progress) {
  if (o.contexts.empty() || o.depths.empty() || o.trials < 1)
    return Status::error("niah: give at least one context, one depth and one trial");
  for (int64_t c : o.contexts)
    if (c + o.answer_tokens > e.options().n_ctx)
      return Status::error("niah: a context of " + std::to_string(c) +
                           " tokens plus the answer exceeds the engine's " +
                           std::to_string(e.options().n_ctx));
  const bool gemma4 = chat_format_for_arch(e.model().config().arch) == ChatFormat::kGemma4;
  const auto t0 = std::chrono::steady_clock::now();
  const size_t n_var = std::max<size_t>(1, routings.size());
  std::vector<NiahResult> rs(n_var);
  const size_t total = o.contexts.size() * o.depths.size() * size_t(o.trials) * n_var;
  size_t done = 0;
  for (int64_t ctx : o.contexts) {
    Session session(e);  // one per context: depths share the prefix before their needle
    for (NiahResult& r : rs)
      for (double d : o.depths) r.cells.push_back({ctx, d, 0, 0});
    const size_t row0 = rs[0].cells.size() - o.depths.size();
    for (int t = 0; t < o.trials; ++t) {
      for (size_t k = 0; k < o.depths.size(); ++k) {
        auto c = make_niah_case(e.tokenizer(), gemma4, o, ctx, o.depths[k], t);
        if (!c.ok()) return c.status();
        for (size_t v = 0; v < n_var; ++v) {
          if (!routings.empty())
            if (Status s = session.set_routing(routings[v]); !s.ok()) return s;
          GenerateOptions g;
          g.sampling.temperature = 0;
          g.max_tokens = o.answer_tokens;
          g.stop = {"\n"};
          auto out = session.generate(c.value().ids, g);
          if (!out.ok()) return out.status();
          NiahSample smp{ctx,
                         o.depths[k],
                         t,
                         int64_t(c.value().ids.size()),
                         c.value().answer,
                         out.value().text,
                         false};
          smp.correct = smp.output.find(smp.expected) != std::string::npos;
          NiahCell& cell = rs[v].cells[row0 + k];
          cell.correct += smp.correct;
          cell.total += 1;
          rs[v].samples.push_back(std::move(smp));
          if (progress) progress(++done, total);
        }
      }
    }
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  for (NiahResult& r : rs) r.seconds = secs;
  return rs;
}

}  // namespace g4
