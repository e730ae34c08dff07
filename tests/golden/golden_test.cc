// Golden tests on the real default model (Gemma 3 270M Q4_K_M) against fixtures produced by
// llama.cpp through llama-cpp-python (scripts/gen_*_fixtures.py; commands in the JSON files).
// The model comes from `g4 pull` ($G4_MODEL overrides the path). A missing model is a failure,
// not a skip: CI fetches it before running the suite.
#include <gtest/gtest.h>

#include <unistd.h>
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>

#include "core/sha256.h"
#include "eval/perplexity.h"
#include "g4/engine.h"
#include "model/quantize.h"
#include "model_path.h"

namespace g4 {

namespace {

std::string model_path() {
  return test::default_model_path();
}

nlohmann::json load_fixture(const std::string& name) {
  std::ifstream in(std::string(G4_SOURCE_DIR) + "/tests/golden/" + name);
  EXPECT_TRUE(in.good()) << "missing fixture " << name;
  return nlohmann::json::parse(in);
}

std::string from_hex(const std::string& h) {
  std::string out;
  for (size_t i = 0; i + 1 < h.size(); i += 2) out += char(std::stoi(h.substr(i, 2), nullptr, 16));
  return out;
}

class Golden : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    EngineOptions o;
    o.model_path = model_path();
    o.n_ctx = 2048;
    o.n_threads = 2;
    auto e = Engine::load(o);
    ASSERT_TRUE(e.ok()) << e.error() << "\n(run `g4 pull` or set G4_MODEL)";
    engine_ = std::move(e).value().release();
  }
  static void TearDownTestSuite() {
    delete engine_;
    engine_ = nullptr;
  }
  static Engine* engine_;
};
Engine* Golden::engine_ = nullptr;

}  // namespace

TEST_F(Golden, TokenizerParity) {
  ASSERT_NE(engine_, nullptr);
  const auto fx = load_fixture("tokenizer_gemma3.json");
  size_t n = 0, bad = 0;
  for (const auto& c : fx["cases"]) {
    const std::string text = from_hex(c["hex"]);
    const auto ids = engine_->tokenizer().encode(text, c["add_bos"], c["special"]);
    const auto want = c["ids"].get<std::vector<int32_t>>();
    ++n;
    if (ids != want) {
      ++bad;
      ADD_FAILURE() << "case '" << c["name"].get<std::string>() << "' (special=" << c["special"]
                    << ") differs: got " << nlohmann::json(ids).dump() << " want "
                    << nlohmann::json(want).dump();
    }
  }
  EXPECT_GE(n, 300u);
  std::printf("tokenizer parity: %zu/%zu cases identical\n", n - bad, n);
}

struct ParityStats {
  size_t rows = 0, top1 = 0, near_tie_miss = 0;
  double kl_sum = 0, kl_max = 0, max_abs = 0;
  std::vector<std::string>
      hard_divergences;  // greedy divergences where the reference had no near-tie
  double agreement() const { return double(top1) / double(rows); }
  double mean_kl() const { return kl_sum / double(rows); }
};

// Compares `e` with a fixture of top-10 logits per row (prompt + greedy continuation).
// Per row: top-1 agreement and KL(ref || g4) over the reference's top-10 plus one bucket for
// the remaining mass (a lower bound of the full KL by the data-processing inequality). Rows
// are teacher-forced with the reference's tokens; separately, g4's own greedy continuation
// must equal the reference's up to the first step where the reference's top two logits were
// within 0.05 (a near-tie, reported).
static ParityStats logit_parity(Engine& e, const nlohmann::json& fx) {
  const int vocab = e.model().config().vocab_size;
  ParityStats st;
  for (const auto& p : fx["prompts"]) {
    const std::string name = p["name"];
    auto ids = p["prompt_ids"].get<std::vector<int32_t>>();
    const auto cont = p["continuation"].get<std::vector<int32_t>>();
    std::vector<int32_t> all = ids;
    all.insert(all.end(), cont.begin(), cont.end());
    Session s(e);
    auto lg = s.logits_all(all);
    EXPECT_TRUE(lg.ok()) << lg.error();
    if (!lg.ok()) return st;
    const auto& top_ids = p["top_ids"];
    const auto& top_logits = p["top_logits"];
    EXPECT_EQ(top_ids.size(), all.size());
    size_t p_rows = 0, p_top1 = 0;
    double p_kl = 0;
    for (size_t r = 0; r < all.size() && r < top_ids.size(); ++r) {
      const float* row = lg.value().data() + r * size_t(vocab);
      const double lse = logsumexp(row, vocab);
      const double ref_lse = p["logsumexp"][r].get<double>();
      double kl = 0, ref_mass = 0, our_mass = 0;
      for (size_t k = 0; k < top_ids[r].size(); ++k) {
        const int id = top_ids[r][k];
        const double ref_logit = top_logits[r][k].get<double>();
        const double lp_ref = ref_logit - ref_lse;
        const double lp_our = double(row[id]) - lse;
        kl += std::exp(lp_ref) * (lp_ref - lp_our);
        ref_mass += std::exp(lp_ref);
        our_mass += std::exp(lp_our);
        st.max_abs = std::max(st.max_abs, std::fabs(double(row[id]) - ref_logit));
      }
      const double ref_rest = std::max(1e-12, 1 - ref_mass),
                   our_rest = std::max(1e-12, 1 - our_mass);
      kl += ref_rest * std::log(ref_rest / our_rest);
      int ours = 0;
      for (int k = 1; k < vocab; ++k)
        if (row[k] > row[ours]) ours = k;
      if (ours == top_ids[r][0].get<int>()) {
        ++p_top1;
      } else if (top_logits[r][0].get<double>() - top_logits[r][1].get<double>() < 0.05) {
        ++st.near_tie_miss;
      }
      p_kl += kl;
      st.kl_max = std::max(st.kl_max, kl);
      ++p_rows;
    }
    std::printf("  %-12s rows %4zu  top-1 %5.1f%%  mean KL %.2e\n", name.c_str(), p_rows,
                100.0 * double(p_top1) / double(p_rows), p_kl / double(p_rows));
    st.rows += p_rows;
    st.top1 += p_top1;
    st.kl_sum += p_kl;

    Session g(e);
    GenerateOptions go;
    go.sampling.temperature = 0;
    go.max_tokens = int(cont.size());
    go.stop_at_eog = false;
    auto gen = g.generate(ids, go);
    EXPECT_TRUE(gen.ok()) << gen.error();
    if (!gen.ok()) return st;
    const auto& got = gen.value().tokens;
    EXPECT_EQ(got.size(), cont.size());
    for (size_t i = 0; i < cont.size() && i < got.size(); ++i) {
      if (got[i] == cont[i]) continue;
      const size_t r = ids.size() - 1 + i;
      const double gap = top_logits[r][0].get<double>() - top_logits[r][1].get<double>();
      std::printf("  %s: greedy continuation diverges at step %zu (reference top-2 gap %.4f%s)\n",
                  name.c_str(), i, gap, gap < 0.05 ? ", near-tie" : "");
      if (gap >= 0.05) st.hard_divergences.push_back(name + " step " + std::to_string(i));
      break;
    }
  }
  std::printf(
      "  => %zu rows: top-1 agreement %.2f%%, mean KL %.2e, max KL %.2e, max |logit diff| in "
      "top-10 %.4f, "
      "top-1 misses at reference near-ties %zu, hard greedy divergences %zu\n",
      st.rows, 100 * st.agreement(), st.mean_kl(), st.kl_max, st.max_abs, st.near_tie_miss,
      st.hard_divergences.size());
  return st;
}

static Engine* load_engine(bool exact, EmbedScale scale) {
  EngineOptions o;
  o.model_path = model_path();
  o.n_ctx = 2048;
  o.n_threads = 2;
  o.exact = exact;
  o.embed_scale = scale;
  auto e = Engine::load(o);
  EXPECT_TRUE(e.ok()) << e.error();
  return e.ok() ? std::move(e).value().release() : nullptr;
}

// g4's exact numerics (f32 activations) against an independent float64 NumPy forward over
// the same GGUF (scripts/gen_numpy_reference.py). All that separates them is f32 rounding and
// the fixture's 5-decimal logits, so the gates sit just above what is measured, far below
// what the default (int8-activation) numerics give (~96% top-1, KL ~5e-3 against llama.cpp).
// Measured 2026-12-06 on the 1614 rows (Zen 4, Release):
//                       top-1    mean KL   max KL    max |logit diff| (reference top-10)
//   AVX-512 kernels     100%     2.81e-7   4.83e-5   0.0267
//   G4_ISA=avx2         100%     2.81e-7   4.83e-5   0.0267   (the same numbers)
// (Not run under ASan: the sanitizer suite leaves out LogitParity*, see the Makefile.)
// Gates: no top-1 miss except at a reference near-tie (top-2 gap < 0.05, twice the largest
// logit error) and at most 1 of those; mean KL <= 1e-6 and max KL <= 2e-4 (about 3.5x and 4x
// the worst measured); max |logit diff| <= 0.05 (1.9x).
TEST_F(Golden, LogitParityExactVsNumpyFloat64) {
  std::unique_ptr<Engine> e(load_engine(true, EmbedScale::kBf16Rounded));
  ASSERT_NE(e, nullptr);
  const ParityStats st = logit_parity(*e, load_fixture("logits_numpy_gemma3_270m.json"));
  ASSERT_GT(st.rows, 1600u);
  EXPECT_EQ(st.top1 + st.near_tie_miss, st.rows) << "top-1 misses away from a near-tie";
  EXPECT_LE(st.near_tie_miss, 1u);
  EXPECT_LE(st.mean_kl(), 1e-6);
  EXPECT_LE(st.kl_max, 2e-4);
  EXPECT_LE(st.max_abs, 0.05);
  EXPECT_TRUE(st.hard_divergences.empty()) << st.hard_divergences.front();
}

namespace {

// The top-1 floor for g4's default numerics against llama.cpp on one file. Both round
// activations to int8 blocks (f16 for F16 weights in llama.cpp), so tiny summation-order
// differences flip near-tied rows; how often is measured per file by re-running llama.cpp
// itself with another batch size, which changes its kernels' order (self_top1). g4 is one
// more such ordering, so it is held to that rate, less 3 binomial standard deviations at the
// rate over the rows (a different, equally valid rounding re-draws which rows flip). Where
// llama.cpp agreed with itself on every row, its rate is below 3/rows (the rule of three, 95%),
// so that many misses are allowed and no more.
double top1_floor(double self_top1, size_t rows) {
  const double p = 1 - self_top1;
  if (p * double(rows) < 0.5) return 1 - 3.0 / double(rows);
  return self_top1 - 3 * std::sqrt(p * (1 - p) / double(rows));
}

}  // namespace

// g4's default numerics (int8 activation blocks, as llama.cpp) against llama.cpp itself on
// the default Q4_K_M file, with llama.cpp's embedding scale sqrtf(d). The noise reference is
// llama.cpp's n_batch 1 rerun (tests/golden/llamacpp_self_agreement.json): one token per
// call changes which kernels and summation orders it uses, the same kind of difference as
// g4's own kernels; its n_batch 8/64 reruns stay closer (99.3%) to the n_batch 512 fixture.
// Measured 2026-12-06 (1614 rows): llama.cpp n_batch 1 vs 512: top-1 96.34%, mean KL
// 4.44e-3; g4: top-1 95.97%, mean KL 4.93e-3 (1.11x). Gates: top-1 >= top1_floor (94.94%),
// mean KL <= 2x llama.cpp's own. Greedy continuations are reported, not asserted: after one
// noisy flip they legitimately differ.
TEST_F(Golden, LogitParityDefaultVsLlamaCpp) {
  std::unique_ptr<Engine> e(load_engine(false, EmbedScale::kExact));
  ASSERT_NE(e, nullptr);
  const ParityStats st = logit_parity(*e, load_fixture("logits_gemma3_270m.json"));
  const auto noise = load_fixture("llamacpp_self_agreement.json");
  const nlohmann::json* self = nullptr;
  for (const auto& r : noise["reruns"])
    if (r["n_batch"].get<int>() == 1) self = &r;
  ASSERT_NE(self, nullptr) << "llamacpp_self_agreement.json has no n_batch 1 rerun";
  const double floor = top1_floor((*self)["top1"].get<double>(), st.rows);
  const double self_kl = (*self)["mean_kl"].get<double>();
  std::printf(
      "  llama.cpp vs itself (n_batch 1): top-1 %.2f%%, mean KL %.2e; gates: top-1 >= "
      "%.2f%%, mean KL <= %.2e\n",
      100 * (*self)["top1"].get<double>(), self_kl, 100 * floor, 2 * self_kl);
  EXPECT_GE(st.agreement(), floor);
  EXPECT_LE(st.mean_kl(), 2 * self_kl);
}

TEST_F(Golden, PerplexityWithinOnePercent) {
  ASSERT_NE(engine_, nullptr);
  const auto fx = load_fixture("perplexity_gemma3_270m.json");
  std::ifstream in(fx["file"].get<std::string>(), std::ios::binary);
  ASSERT_TRUE(in.good()) << "missing " << fx["file"];
  const std::string text((std::istreambuf_iterator<char>(in)), {});
  // Same function as the reference: default numerics with llama.cpp's sqrtf(d) embedding scale.
  std::unique_ptr<Engine> e(load_engine(false, EmbedScale::kExact));
  ASSERT_NE(e, nullptr);
  auto r = perplexity(*e, text, fx["ctx"].get<int64_t>());
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_EQ(r.value().n_tokens_text, fx["n_tokens_text"].get<size_t>());
  const double ref = fx["perplexity"].get<double>();
  std::printf("perplexity: g4 %.4f, reference %.4f (ratio %.5f)\n", r.value().perplexity, ref,
              r.value().perplexity / ref);
  EXPECT_NEAR(r.value().perplexity / ref, 1.0, 0.01);
}

TEST_F(Golden, ChatTemplateIdsMatchReference) {
  ASSERT_NE(engine_, nullptr);
  const auto fx = load_fixture("chat_gemma3.json");
  for (const auto& c : fx["cases"]) {
    std::vector<ChatMessage> msgs;
    for (const auto& m : c["messages"]) msgs.push_back({m["role"], m["content"]});
    auto ids = encode_gemma3_chat(engine_->tokenizer(), msgs, c["add_generation_prompt"]);
    ASSERT_TRUE(ids.ok()) << ids.error();
    EXPECT_EQ(ids.value(), c["ids"].get<std::vector<int32_t>>()) << c["name"];
  }
}

TEST_F(Golden, ChatKeepsKvCacheBetweenTurns) {
  ASSERT_NE(engine_, nullptr);
  Session s(*engine_);
  GenerateOptions go;
  go.sampling.temperature = 0;
  go.max_tokens = 8;
  std::vector<ChatMessage> msgs{{"user", "Name a colour."}};
  auto ids1 = encode_gemma3_chat(engine_->tokenizer(), msgs, true);
  ASSERT_TRUE(ids1.ok());
  auto r1 = s.generate(ids1.value(), go);
  ASSERT_TRUE(r1.ok());
  msgs.push_back({"assistant", r1.value().text});
  msgs.push_back({"user", "Another one."});
  auto ids2 = encode_gemma3_chat(engine_->tokenizer(), msgs, true);
  ASSERT_TRUE(ids2.ok());
  auto r2 = s.generate(ids2.value(), go);
  ASSERT_TRUE(r2.ok());
  // The first turn's prompt is reused from the cache, not prefilled again.
  EXPECT_GE(r2.value().n_cached_tokens, int(ids1.value().size()));
  EXPECT_EQ(r2.value().n_prompt_tokens + r2.value().n_cached_tokens, int(ids2.value().size()));
  // And the answer equals a fresh session's answer to the same prompt.
  Session fresh(*engine_);
  auto r3 = fresh.generate(ids2.value(), go);
  ASSERT_TRUE(r3.ok());
  EXPECT_EQ(r2.value().tokens, r3.value().tokens);
}

TEST_F(Golden, StreamingAndStopStrings) {
  ASSERT_NE(engine_, nullptr);
  const auto ids = engine_->tokenizer().encode(
      "Paris is the capital of France. Berlin is the capital of", true, false);
  GenerateOptions go;
  go.sampling.temperature = 0;
  go.max_tokens = 24;
  Session s(*engine_);
  std::string streamed;
  auto full = s.generate(ids, go, [&](std::string_view p) {
    streamed += p;
    return true;
  });
  ASSERT_TRUE(full.ok());
  EXPECT_EQ(streamed, full.value().text);  // the stream is exactly the result
  EXPECT_EQ(full.value().finish_reason, "length");
  ASSERT_GE(full.value().text.size(), 4u);
  // Stop at a string that occurs in the greedy text: output ends right before it.
  const std::string stop = full.value().text.substr(full.value().text.size() / 2, 3);
  go.stop = {stop};
  Session s2(*engine_);
  std::string streamed2;
  auto cut = s2.generate(ids, go, [&](std::string_view p) {
    streamed2 += p;
    return true;
  });
  ASSERT_TRUE(cut.ok());
  EXPECT_EQ(cut.value().finish_reason, "stop");
  EXPECT_EQ(cut.value().text, full.value().text.substr(0, full.value().text.find(stop)));
  EXPECT_EQ(streamed2, cut.value().text);  // held-back tails never leak part of the stop string
  // Cancelling from the callback ends generation.
  Session s3(*engine_);
  int calls = 0;
  auto cancelled = s3.generate(
      ids, GenerateOptions{.sampling = {.temperature = 0}, .max_tokens = 24, .stop = {}},
      [&](std::string_view) { return ++calls < 2; });
  ASSERT_TRUE(cancelled.ok());
  EXPECT_EQ(cancelled.value().finish_reason, "cancelled");
}

TEST_F(Golden, BatchOfTwoEqualsSeparateRuns) {
  // The forward takes a ragged batch: two sequences in one step give the same logits as
  // each alone (the server's continuous batching stands on this).
  ASSERT_NE(engine_, nullptr);
  const Model& m = engine_->model();
  const auto a = engine_->tokenizer().encode("The quick brown fox", true, false);
  const auto b = engine_->tokenizer().encode("Bonjour, je m'appelle", true, false);
  KvCacheOptions ko;
  ko.n_ctx = ko.max_chunk = 64;
  ko.pool_tokens = 128;  // two sequences
  KvCache kv(m.kv_geometry(), ko);
  ASSERT_TRUE(kv.add_sequence(1).ok());
  ASSERT_TRUE(kv.add_sequence(2).ok());
  StepBatch batch;
  batch.seqs.push_back({1, a, 0, false});
  batch.seqs.push_back({2, b, 0, false});
  StepOutput out;
  ASSERT_TRUE(m.forward(batch, kv, engine_->exec(), out).ok());
  ASSERT_EQ(out.n_rows(), 2u);
  const int vocab = m.config().vocab_size;
  for (int which = 0; which < 2; ++which) {
    const auto& ids = which == 0 ? a : b;
    KvCache kv1(m.kv_geometry(), 64, 64);
    ASSERT_TRUE(kv1.add_sequence(0).ok());
    StepBatch one;
    one.seqs.push_back({0, ids, 0, false});
    StepOutput o1;
    ASSERT_TRUE(m.forward(one, kv1, engine_->exec(), o1).ok());
    for (int k = 0; k < vocab; k += 97) EXPECT_EQ(o1.row(0)[k], out.row(size_t(which))[k]);
  }
}

// --- g4 quantize on the default model -------------------------------------------------------

namespace {

// A scratch directory removed with everything in it when the test ends.
struct TempDir {
  std::filesystem::path path;
  TempDir() {
    path =
        std::filesystem::temp_directory_path() / ("g4_quantize_test_" + std::to_string(::getpid()));
    std::filesystem::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

std::unique_ptr<Engine> load_file(const std::string& path, EmbedScale scale) {
  EngineOptions o;
  o.model_path = path;
  o.n_ctx = 2048;
  o.n_threads = 2;
  o.embed_scale = scale;
  auto e = Engine::load(o);
  EXPECT_TRUE(e.ok()) << e.error();
  return e.ok() ? std::move(e).value() : nullptr;
}

// g4 quantize reproduces the file the fixture's llama.cpp logits were computed on (so the
// writer is deterministic), then g4's default numerics on that file agree with llama.cpp's
// logits at llama.cpp's own noise floor on that same file: its n_batch 1 rerun stored in the
// fixture (scripts/gen_quant_logit_fixtures.py), not the default model's rate. Gates as in
// LogitParityDefaultVsLlamaCpp: top-1 >= top1_floor, mean KL <= 2x llama.cpp's own.
// Measured 2026-12-06 (533 rows each):
//   Q8_0: llama.cpp vs itself top-1 98.50%, mean KL 1.53e-3; g4 97.75%, 2.64e-3 (1.73x);
//         floor 96.92%.
//   F16:  llama.cpp vs itself top-1 100%, mean KL 2.81e-6; g4 100%, 2.61e-6 (0.93x);
//         floor 99.44% (at most 3 rows: llama.cpp flipped none).
void quantized_parity(const std::string& type) {
  ASSERT_TRUE(std::filesystem::exists(model_path()))
      << "default model not found at " << model_path() << " (run `g4 pull` or set G4_MODEL)";
  const auto fx = load_fixture("logits_quant_" + type + ".json");
  TempDir tmp;
  const std::string out = tmp.file(type + ".gguf");
  QuantizeOptions o;
  o.target = parse_quant_type(type).value();
  o.n_threads = 2;
  auto q = quantize_model(model_path(), out, o);
  ASSERT_TRUE(q.ok()) << q.error();
  auto sha = sha256_file(out);
  ASSERT_TRUE(sha.ok()) << sha.error();
  ASSERT_EQ(sha.value(), fx["model_sha256"].get<std::string>())
      << "g4 quantize no longer writes the bytes the fixture was made from";
  auto e = load_file(out, EmbedScale::kExact);
  ASSERT_NE(e, nullptr);
  const ParityStats st = logit_parity(*e, fx);
  const double self_top1 = fx["self_agreement"]["top1"].get<double>();
  const double self_kl = fx["self_agreement"]["mean_kl"].get<double>();
  const double floor = top1_floor(self_top1, st.rows);
  std::printf(
      "  llama.cpp vs itself on this file (n_batch 1): top-1 %.2f%%, mean KL %.2e; "
      "gates: top-1 >= %.2f%%, mean KL <= %.2e\n",
      100 * self_top1, self_kl, 100 * floor, 2 * self_kl);
  EXPECT_GE(st.agreement(), floor);
  EXPECT_LE(st.mean_kl(), 2 * self_kl);
}

}  // namespace

TEST_F(Golden, LogitParityQuantizedQ8_0VsLlamaCpp) {
  quantized_parity("q8_0");
}

TEST_F(Golden, LogitParityQuantizedF16VsLlamaCpp) {
  quantized_parity("f16");
}

}  // namespace g4
