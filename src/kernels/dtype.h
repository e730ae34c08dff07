// Weight/tensor element types, with GGUF/ggml type ids (ref: formats.md §2.1).
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>

namespace g4 {

enum class DType : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ5_0 = 6,
  kQ5_1 = 7,
  kQ8_0 = 8,
  kQ8_1 = 9,
  kQ2_K = 10,
  kQ3_K = 11,
  kQ4_K = 12,
  kQ5_K = 13,
  kQ6_K = 14,
  kQ8_K = 15,
  kBF16 = 30,
};

struct DTypeInfo {
  const char* name;
  int block;        // elements per block
  int block_bytes;  // bytes per block
  bool supported;   // the engine has kernels for it
};

// nullopt for ids the engine does not know (including ggml's removed/exotic types).
std::optional<DTypeInfo> dtype_info(uint32_t ggml_id);
inline DTypeInfo info(DType t) {
  return *dtype_info(uint32_t(t));
}
inline size_t row_bytes(DType t, int64_t n) {
  const auto i = info(t);
  return size_t(n / i.block) * size_t(i.block_bytes);
}

}  // namespace g4
