// g4 convert: a Hugging Face checkpoint directory -> a GGUF file that g4 and llama.cpp load.
// The directory is converted in memory exactly as `g4 run -m DIR` loads it
// (src/io/hf_checkpoint.h: llama.cpp's tensor names and converter transformations), plus the
// tokenizer.ggml.* metadata from tokenizer.json (src/io/hf_tokenizer.h).
//  - f32, f16, bf16: the image with matrices in that type, written as is: what llama.cpp's
//    convert_hf_to_gguf.py --outtype writes (scripts/check_convert_vs_llamacpp.py);
//  - q8_0, q4_0, q5_0, q4_k, q6_k: the image in the checkpoint's own float type (lossless),
//    re-encoded with the quantizer's per-tensor rules (src/model/quantize.h), i.e. exactly
//    `g4 quantize` of the f32 conversion.
// The output appears under its name only when complete (written to OUT.tmp, then renamed).
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "cli/commands.h"
#include "io/gguf.h"
#include "io/hf_checkpoint.h"
#include "model/quantize.h"
#include "model/weights.h"

namespace g4::cli {

namespace {

struct ConvertArgs {
  std::string in, out, type = "f16";
  int threads = 0;
};

int fail(const std::string& msg) {
  std::fprintf(stderr, "g4: %s\n", msg.c_str());
  return 1;
}

// Writes `n` bytes to `path` through `path`.tmp and a rename.
Status write_atomic(const std::string& path, const uint8_t* data, size_t n) {
  namespace fs = std::filesystem;
  const std::string tmp = path + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (f == nullptr) return Status::error("cannot create " + tmp + ": " + std::strerror(errno));
  const size_t kChunk = size_t(64) << 20;
  bool ok = true;
  int err = 0;
  for (size_t off = 0; off < n && ok; off += kChunk) {
    ok = std::fwrite(data + off, 1, std::min(kChunk, n - off), f) == std::min(kChunk, n - off);
    if (!ok) err = errno;
    progress("write", n ? double(std::min(n, off + kChunk)) / double(n) : 1.0, off + kChunk >= n);
  }
  if (std::fclose(f) != 0 && ok) {
    ok = false;
    err = errno;
  }
  std::error_code ec;
  if (!ok) {
    fs::remove(tmp, ec);
    return Status::error("cannot write " + tmp + ": " + std::strerror(err));
  }
  fs::rename(tmp, path, ec);
  if (ec) {
    fs::remove(tmp, ec);
    return Status::error("cannot create " + path + ": " + ec.message());
  }
  return Status();
}

int convert(const ConvertArgs& a) {
  namespace fs = std::filesystem;
  std::string lower = a.type;
  for (auto& ch : lower) ch = char(std::tolower(static_cast<unsigned char>(ch)));
  const bool plain = lower == "f32" || lower == "f16" || lower == "bf16";
  DType target = DType::kF32;
  if (!plain) {
    auto t = parse_quant_type(a.type);
    if (!t.ok()) return fail(t.error() + " or f32");
    target = t.value();
  }
  std::error_code ec;
  if (!fs::is_directory(a.in, ec))
    return fail(a.in + " is not a directory (expected a Hugging Face checkpoint directory)");
  if (!is_hf_checkpoint_dir(a.in))
    return fail(a.in + " is not a Hugging Face checkpoint directory (no config.json)");
  if (fs::is_directory(a.out, ec)) return fail(a.out + " is a directory; give a file name");
  const fs::path parent = fs::absolute(a.out, ec).parent_path();
  if (!fs::is_directory(parent, ec)) return fail("no such directory: " + parent.string());

  const auto t0 = std::chrono::steady_clock::now();
  HfLoadOptions ho;
  ho.dtype = plain ? lower : "auto";
  ho.tokenizer = true;
  ho.progress = [](uint64_t done, uint64_t total) {
    progress("convert", total ? double(done) / double(total) : 1.0, done == total);
  };
  auto img = convert_hf_checkpoint(a.in, ho);
  if (!img.ok()) return fail(img.error());
  const HfImage& im = img.value();
  uint64_t bytes = im.size;
  // Nothing is written unless g4 can run the result: config and every tensor's shape checked.
  auto f = GgufFile::parse_owned(im.data, im.size, a.in);
  if (!f.ok()) return fail(f.error());
  if (Status s = validate_model_file(*f.value()); !s.ok())
    return fail(a.in + ": the converted model would not load: " + s.message());
  if (plain) {
    if (Status s = write_atomic(a.out, im.data.get(), im.size); !s.ok()) return fail(s.message());
  } else {
    QuantizeOptions o;
    o.target = target;
    o.n_threads = a.threads;
    o.progress = [](uint64_t done, uint64_t total) {
      progress("encode", total ? double(done) / double(total) : 1.0, done == total);
    };
    auto r = quantize_gguf(*f.value(), a.in, a.out, o);
    if (!r.ok()) return fail(r.error());
    bytes = r.value().out_bytes;
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("wrote %s (%s, %s, %.1f MB) in %.1f s\n", a.out.c_str(), im.arch.c_str(),
              a.type.c_str(), double(bytes) / 1e6, secs);
  return 0;
}

}  // namespace

Runner add_convert(CLI::App& app) {
  auto a = std::make_shared<ConvertArgs>();
  app.add_option("input", a->in, "Hugging Face checkpoint directory (config.json + safetensors)")
      ->required();
  app.add_option("output", a->out, "GGUF file to write")->required();
  app.add_option("--type", a->type, "f32, f16 (default), bf16, q8_0, q4_0, q5_0, q4_k or q6_k");
  app.add_option("-t,--threads", a->threads, "Threads for re-encoding (0 = all cores)");
  return [a] { return convert(*a); };
}

}  // namespace g4::cli
