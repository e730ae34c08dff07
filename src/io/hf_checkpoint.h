// Hugging Face checkpoint directories (config.json + safetensors) loaded as an in-memory GGUF
// image: config.json becomes gemma2 / gemma3 / gemma4 GGUF metadata, HF tensor names become the
// GGUF names the binders use (gemma-architecture.md §3.3), and the converter transformations of
// §3.4 are applied on load (Gemma 2/3 RMSNorm weights w -> 1 + w; Gemma 4 rope_freqs from the
// proportional partial RoPE factor). The image is a complete GGUF v3 file in memory, so the
// GGUF reader, config readers and binders run unchanged, and a GGUF writer (`g4 convert`) only
// has to write `HfImage::data` to disk.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>

#include "core/status.h"

namespace g4 {

class GgufFile;

struct HfLoadOptions {
  HfLoadOptions(std::string dt = "auto") : dtype(std::move(dt)) {}  // NOLINT: {"f16"} reads well
  // Matrix storage type: "auto" (as stored in the checkpoint), "f32", "f16", "bf16", or
  // "q8_0" (matrices whose rows are not whole 32-element blocks become f16 instead); for
  // load_hf_checkpoint also "q4_0", "q5_0", "q4_k", "q6_k": the checkpoint as stored,
  // re-encoded by g4 quantize's rules (src/model/quantize.h) through a temporary file.
  // 1-D tensors (norms, scales) and the MoE router are always float32, as llama.cpp keeps them.
  std::string dtype;
  // Also write the tokenizer.ggml.* metadata from tokenizer.json (src/io/hf_tokenizer.h), as a
  // GGUF file on disk needs (`g4 convert`); token_embd then keeps only the tokenizer's rows, as
  // llama.cpp's converter does. Off for `g4 run -m DIR`, which reads tokenizer.json itself.
  bool tokenizer = false;
  // Called after each tensor is converted: bytes done, total bytes of tensor data.
  std::function<void(uint64_t, uint64_t)> progress;
};

struct HfImage {
  std::shared_ptr<const uint8_t[]> data;  // a GGUF v3 file image (64-byte aligned)
  size_t size = 0;
  std::string arch;  // "gemma2" | "gemma3" | "gemma4"
};

// True when `path` is a directory holding config.json.
bool is_hf_checkpoint_dir(const std::string& path);

Result<HfImage> convert_hf_checkpoint(const std::string& dir, const HfLoadOptions& opts);

// convert_hf_checkpoint, parsed (the GgufFile keeps the image alive).
Result<std::unique_ptr<GgufFile>> load_hf_checkpoint(const std::string& dir,
                                                     const HfLoadOptions& opts);

}  // namespace g4
