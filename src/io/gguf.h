// GGUF reader (versions 2 and 3, little-endian). The file is memory-mapped; metadata strings
// and tensor data are views into the map. Every length, offset and extent is validated
// against the file before use (ref: formats.md §1.4); a bad file yields one error naming
// what is wrong, never undefined behaviour.
#pragma once
#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/mmap_file.h"
#include "core/status.h"
#include "kernels/dtype.h"

namespace g4 {

enum class GgufType : uint32_t {
  kU8 = 0,
  kI8 = 1,
  kU16 = 2,
  kI16 = 3,
  kU32 = 4,
  kI32 = 5,
  kF32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kU64 = 10,
  kI64 = 11,
  kF64 = 12,
};
const char* gguf_type_name(GgufType t);
// Bytes of one scalar of type t (0 for strings and arrays).
size_t gguf_scalar_size(GgufType t);

struct GgufValue {
  GgufType type = GgufType::kU8;
  // Scalars (numeric and bool) are widened into one of these.
  uint64_t u = 0;
  int64_t i = 0;
  double f = 0;
  std::string_view str;  // kString
  // kArray:
  GgufType elem_type = GgufType::kU8;
  uint64_t count = 0;
  const uint8_t* elems = nullptr;         // numeric arrays: packed little-endian elements
  std::vector<std::string_view> strings;  // string arrays

  bool is_integer() const;
  bool is_float() const { return type == GgufType::kF32 || type == GgufType::kF64; }
  std::string to_string(size_t max_items = 8) const;
};

struct GgufTensor {
  std::string name;
  int n_dims = 0;
  std::array<int64_t, 4> ne{1, 1, 1, 1};  // ggml order: ne[0] contiguous
  DType type = DType::kF32;
  uint64_t offset = 0;  // relative to data start
  uint64_t nbytes = 0;
  const uint8_t* data = nullptr;
  int64_t n_elements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
  int64_t rows() const { return ne[1] * ne[2] * ne[3]; }
  std::string shape_string() const;
};

class GgufFile {
 public:
  // Opens and validates `path`. Errors name the field and offset that failed.
  static Result<std::unique_ptr<GgufFile>> open(const std::string& path);
  // Parses an in-memory image (used by the fuzzer and tests); `data` must outlive the object.
  static Result<std::unique_ptr<GgufFile>> parse(const uint8_t* data, size_t size,
                                                 std::string label = "<memory>");
  // Parses an image the object keeps alive (e.g. a checkpoint converted in memory).
  static Result<std::unique_ptr<GgufFile>> parse_owned(std::shared_ptr<const uint8_t[]> data,
                                                       size_t size, std::string label);

  uint32_t version() const { return version_; }
  uint32_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }
  size_t file_size() const { return size_; }
  const std::string& path() const { return label_; }

  const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return kv_; }
  const GgufValue* find(std::string_view key) const;
  const std::vector<GgufTensor>& tensors() const { return tensors_; }
  const GgufTensor* tensor(std::string_view name) const;

  // Typed getters; a present key of the wrong type is an error, a missing one returns nullopt.
  Result<std::optional<uint64_t>> get_uint(std::string_view key) const;
  Result<std::optional<double>> get_float(std::string_view key) const;
  Result<std::optional<std::string>> get_string(std::string_view key) const;
  Result<std::optional<bool>> get_bool(std::string_view key) const;

  // Hands the pages of [p, p + n) back to the kernel when the file is memory-mapped (they
  // re-fault from the file if touched again); a no-op for in-memory images.
  void release_pages(const void* p, size_t n) const;
  bool is_mapped() const { return map_ != nullptr; }
  void release_all() const { release_pages(base_, size_); }

 private:
  GgufFile() = default;
  Status parse_impl();

  std::unique_ptr<MmapFile> map_;
  std::shared_ptr<const uint8_t[]> owned_;
  const uint8_t* base_ = nullptr;
  size_t size_ = 0;
  std::string label_;
  uint32_t version_ = 0;
  uint32_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::vector<std::pair<std::string, GgufValue>> kv_;
  std::map<std::string, size_t, std::less<>> kv_index_;
  std::vector<GgufTensor> tensors_;
  std::map<std::string, size_t, std::less<>> tensor_index_;
};

}  // namespace g4
