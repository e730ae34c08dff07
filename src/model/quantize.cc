#include "model/quantize.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <filesystem>
#include <mutex>
#include <thread>

#include "core/thread_pool.h"
#include "io/gguf_writer.h"
#include "kernels/quant.h"
#include "kernels/quantize_ref.h"

namespace g4 {

namespace {

bool ends_with(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool is_quantized(DType t) {
  return t != DType::kF32 && t != DType::kF16 && t != DType::kBF16;
}

bool readable(DType t) {
  switch (t) {
    case DType::kF32:
    case DType::kF16:
    case DType::kBF16:
    case DType::kQ4_0:
    case DType::kQ5_0:
    case DType::kQ8_0:
    case DType::kQ4_K:
    case DType::kQ6_K:
      return true;
    default:
      return false;
  }
}

}  // namespace

Result<DType> parse_quant_type(const std::string& name) {
  static const std::pair<const char*, DType> kTypes[] = {
      {"f16", DType::kF16},   {"bf16", DType::kBF16}, {"q8_0", DType::kQ8_0},
      {"q4_0", DType::kQ4_0}, {"q5_0", DType::kQ5_0}, {"q4_k", DType::kQ4_K},
      {"q6_k", DType::kQ6_K}};
  std::string lower = name;
  for (auto& c : lower) c = char(std::tolower(static_cast<unsigned char>(c)));
  for (const auto& [n, t] : kTypes)
    if (lower == n) return t;
  return Status::error("unsupported quantization type '" + name +
                       "' (choose f16, bf16, q8_0, q4_0, q5_0, q4_k or q6_k)");
}

uint32_t llama_ftype(DType target) {
  switch (target) {
    case DType::kF16:
      return 1;
    case DType::kQ4_0:
      return 2;
    case DType::kQ8_0:
      return 7;
    case DType::kQ5_0:
      return 8;
    case DType::kQ4_K:
      return 14;
    case DType::kQ6_K:
      return 18;
    case DType::kBF16:
      return 32;
    default:
      return 0;
  }
}

std::vector<TensorPlan> plan_quantization(const GgufFile& in, DType target) {
  const bool has_output = in.tensor("output.weight") != nullptr;
  std::vector<TensorPlan> plan;
  for (const auto& t : in.tensors()) {
    TensorPlan p{t.name, t.type, t.type};
    const bool quantize = ends_with(t.name, "weight") && t.n_dims >= 2 &&
                          t.name.find("_norm.weight") == std::string::npos &&
                          // llama-quant keeps the MoE router and the PLE projection as they are
                          t.name.find("ffn_gate_inp.weight") == std::string::npos &&
                          t.name.find("per_layer_model_proj") == std::string::npos;
    if (quantize) {
      DType to = target;
      const int64_t nx = t.ne[0];
      if (is_quantized(target) &&
          (t.name == "output.weight" || (!has_output && t.name == "token_embd.weight"))) {
        if (nx % info(target).block != 0)
          to = DType::kQ8_0;
        else if (target != DType::kQ8_0)
          to = DType::kQ6_K;
      }
      if (nx % info(to).block != 0) {
        p.fallback = true;
        if (to == DType::kQ4_K) to = DType::kQ5_0;
        if (to == DType::kQ6_K) to = DType::kQ8_0;
        if (nx % info(to).block != 0) to = DType::kF16;
      }
      p.to = to;
    }
    p.converted = p.to != p.from;
    plan.push_back(p);
  }
  return plan;
}

Result<QuantizeReport> quantize_model(const std::string& in_path, const std::string& out_path,
                                      const QuantizeOptions& opt) {
  namespace fs = std::filesystem;
  if (!can_quantize(opt.target) || opt.target == DType::kF32)
    return Status::error(std::string("cannot quantize to ") + info(opt.target).name);
  std::error_code ec;
  if (in_path == out_path || (fs::exists(out_path, ec) && fs::equivalent(in_path, out_path, ec)))
    return Status::error("input and output are the same file ('" + out_path + "')");
  auto inr = GgufFile::open(in_path);
  if (!inr.ok()) return inr.status();
  return quantize_gguf(*inr.value(), in_path, out_path, opt);
}

Result<QuantizeReport> quantize_gguf(const GgufFile& in, const std::string& in_path,
                                     const std::string& out_path, const QuantizeOptions& opt) {
  if (!can_quantize(opt.target) || opt.target == DType::kF32)
    return Status::error(std::string("cannot quantize to ") + info(opt.target).name);
  if (auto sc = in.get_uint("split.count"); sc.ok() && sc.value() && *sc.value() > 1)
    return Status::error(in_path + ": split GGUF files are not supported; merge them first");

  QuantizeReport rep;
  rep.plan = plan_quantization(in, opt.target);
  rep.in_bytes = in.file_size();
  GgufWriter w;
  for (const auto& [k, v] : in.metadata()) {
    if (k == "general.alignment" && v.type == GgufType::kU32) {
      w.set_u32(k, uint32_t(v.u));
      continue;
    }
    if (auto s = w.copy_kv(k, v); !s.ok()) return Status::error(in_path + ": " + s.message());
  }
  w.set_u32("general.quantization_version", 2);  // GGML_QNT_VERSION, as llama-quantize sets
  w.set_u32("general.file_type", llama_ftype(opt.target));
  w.set_string("general.quantized_by", "g4 quantize");
  for (size_t i = 0; i < rep.plan.size(); ++i) {
    const auto& t = in.tensors()[i];
    const auto& p = rep.plan[i];
    if (p.converted && !readable(p.from))
      return Status::error(in_path + ": tensor '" + t.name + "' has type " + info(p.from).name +
                           ", which g4 cannot convert");
    if (auto s = w.add_tensor(t.name, t.n_dims, t.ne, p.to); !s.ok()) return s;
    rep.tensors_by_type[info(p.to).name]++;
    rep.n_fallback += p.fallback ? 1 : 0;
  }
  rep.out_bytes = w.file_size();
  uint64_t total = 0;
  for (size_t i = 0; i < w.n_tensors(); ++i) total += w.tensor_nbytes(i);

  const int nt =
      opt.n_threads > 0 ? opt.n_threads : int(std::max(1u, std::thread::hardware_concurrency()));
  ThreadPool pool(nt);
  if (auto s = w.begin(out_path); !s.ok()) return s;
  uint64_t done = 0;
  std::vector<uint8_t> out;
  std::vector<std::vector<float>> scratch(size_t(pool.size()));
  for (size_t i = 0; i < rep.plan.size(); ++i) {
    const auto& t = in.tensors()[i];
    const auto& p = rep.plan[i];
    if (!p.converted) {
      if (auto s = w.write(t.data, t.nbytes); !s.ok()) return s;
      done += t.nbytes;
      if (opt.progress) opt.progress(done, total);
      continue;
    }
    const int64_t nx = t.ne[0], rows = t.rows();
    const size_t in_rb = row_bytes(p.from, nx), out_rb = row_bytes(p.to, nx);
    const int64_t slab = std::max<int64_t>(1, int64_t((16u << 20) / out_rb));
    for (auto& s : scratch) s.resize(size_t(nx));
    for (int64_t r0 = 0; r0 < rows; r0 += slab) {
      const int64_t n = std::min(slab, rows - r0);
      out.resize(size_t(n) * out_rb);
      std::atomic<int64_t> bad_row{-1};
      std::atomic<bool> f16_overflow{false};
      pool.parallel_for(size_t(n), 1, [&](size_t b, size_t e, int tid) {
        float* x = scratch[size_t(tid)].data();
        for (size_t r = b; r < e; ++r) {
          dequantize_row(p.from, t.data + size_t(r0 + int64_t(r)) * in_rb, x, nx);
          for (int64_t k = 0; k < nx; ++k) {
            if (!std::isfinite(x[k])) {
              bad_row = r0 + int64_t(r);
              return;
            }
            if (p.to == DType::kF16 && std::fabs(x[k]) >= 65520.f) f16_overflow = true;
          }
          quantize_row(p.to, x, out.data() + r * out_rb, nx);
        }
      });
      if (bad_row >= 0)
        return Status::error(in_path + ": tensor '" + t.name + "' row " +
                             std::to_string(bad_row.load()) + " has a NaN or infinite value");
      if (f16_overflow)
        return Status::error("tensor '" + t.name + "' has values beyond the F16 range; use bf16");
      if (auto s = w.write(out.data(), out.size()); !s.ok()) return s;
      done += out.size();
      if (opt.progress) opt.progress(done, total);
    }
  }
  if (auto s = w.finish(); !s.ok()) return s;
  return rep;
}

}  // namespace g4
